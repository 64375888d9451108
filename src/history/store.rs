//! The history file itself: checking that a file is ours before anything touches it,
//! one tcpchat at a time (a lock), the schema and its migrations, and the queries. Only
//! the history thread (mod.rs) uses it once the server runs.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, params};

use super::{Chunk, Found, StoredLine};
use crate::error::Error;

/// Marks a database as tcpchat's (`PRAGMA application_id`): "tcpc".
const APPLICATION_ID: u32 = 0x7463_7063;
/// The schema, one migration per version (`PRAGMA user_version` counts those applied).
/// Append, never edit: a file made by an earlier tcpchat is brought up to date by the
/// ones it lacks.
///
/// A row is a chunk: the lines one room got in one batch of the history thread (a fifth
/// of a second), one per line as `MILLIS<TAB>NICK<TAB>LINE`. One insert per room and
/// batch instead of one per line is what makes storing nearly free in a busy room (a
/// row costs microseconds; a busy room says tens of thousands of lines a second).
const MIGRATIONS: &[&str] = &["CREATE TABLE chunks (
        id INTEGER PRIMARY KEY,
        room TEXT NOT NULL,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        lines TEXT NOT NULL
    );
    CREATE INDEX chunks_by_room ON chunks (room COLLATE NOCASE, id);
    CREATE INDEX chunks_by_time ON chunks (last_ms);"];
/// Rooms whose history comes back at start-up: those spoken in last. The others' lines
/// stay in the file for `/search` until `--history-days` removes them.
const MAX_RESTORED_ROOMS: usize = 1000;
/// What every SQLite file starts with.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// An open history file, locked for this process.
pub(super) struct Store {
    connection: Connection,
    path: PathBuf,
    /// Holds the lock (flock) while the store is open.
    lock: File,
}

impl Store {
    /// Opens `path` (created if missing) after checking, without changing it, that it is
    /// a tcpchat history database of a version this tcpchat knows and that no other
    /// tcpchat uses it; then brings its schema up to date.
    pub(super) fn open(path: &Path) -> Result<Store, Error> {
        let refuse = |why: &str| {
            Error::History(format!(
                "{} is not a tcpchat history database ({why}); it was left as it is",
                path.display()
            ))
        };
        let open_error = |source| Error::OpenFile {
            path: path.to_owned(),
            source,
        };
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(open_error)?;
        // SAFETY: flock only reads the descriptor, which `lock` keeps open.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(Error::History(format!(
                    "{} is in use by another tcpchat (one file, one server)",
                    path.display()
                )));
            }
            return Err(open_error(error));
        }
        // Everything is decided from the file's header, read here, before SQLite opens
        // it: SQLite would roll back another program's unfinished transaction, or fold
        // its write-ahead log in, before anyone could ask it whose file it is.
        let is_new = lock.metadata().map_err(open_error)?.len() == 0;
        let known = MIGRATIONS.len() as u32;
        if !is_new {
            let mut header = [0u8; 100];
            let read = (&lock).read(&mut header).map_err(open_error)?;
            let field = |at: usize| {
                u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
            };
            if read < header.len() || !header.starts_with(SQLITE_HEADER) {
                return Err(refuse("not an SQLite file"));
            }
            // Header fields (sqlite.org/fileformat.html): the user version at 60, the
            // application id at 68. Every file this tcpchat makes has its id from its
            // first commit on.
            if field(68) != APPLICATION_ID {
                return Err(refuse("another program's SQLite database"));
            }
            let version = field(60);
            if version > known {
                return Err(Error::History(format!(
                    "{} was written by a newer tcpchat (schema version {version}; this one knows up to {known}); it was left as it is",
                    path.display()
                )));
            }
        }
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| refuse(&error.to_string()))?;
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|error| refuse(&error.to_string()))?;
        let store = Store {
            connection,
            path: path.to_owned(),
            lock,
        };
        store
            .prepare(version)
            .map_err(|error| store.error(&error))?;
        Ok(store)
    }

    /// A rollback journal (one thread reads and writes, so WAL's concurrent readers buy
    /// nothing, and a chunk is written once instead of to the WAL and again at each
    /// checkpoint), every commit on the disk before it returns (a power cut loses no
    /// committed line), and the migrations this file lacks.
    fn prepare(&self, version: i64) -> rusqlite::Result<()> {
        self.connection
            .pragma_update(None, "journal_mode", "TRUNCATE")?;
        self.connection.pragma_update(None, "synchronous", "FULL")?;
        self.connection.busy_timeout(Duration::from_secs(1))?;
        for (number, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let transaction = self.connection.unchecked_transaction()?;
            transaction.execute_batch(migration)?;
            transaction.pragma_update(None, "application_id", APPLICATION_ID)?;
            transaction.pragma_update(None, "user_version", number as i64 + 1)?;
            transaction.commit()?;
        }
        Ok(())
    }

    pub(super) fn error(&self, error: &rusqlite::Error) -> Error {
        Error::History(format!("history {}: {error}", self.path.display()))
    }

    /// Whether the file we hold is still the one at the path (not removed or replaced):
    /// writes to a removed file succeed and are lost.
    pub(super) fn is_still_there(&self) -> io::Result<()> {
        let held = self.lock.metadata()?;
        let at_path = std::fs::metadata(&self.path)?;
        if (held.dev(), held.ino()) == (at_path.dev(), at_path.ino()) {
            Ok(())
        } else {
            Err(io::Error::other("the file was replaced"))
        }
    }

    /// Stores chunks in one transaction, those of one room merged into one row.
    pub(super) fn store(&mut self, chunks: &[Chunk]) -> rusqlite::Result<()> {
        let mut rows: Vec<(&str, i64, i64, String)> = Vec::new();
        for chunk in chunks {
            match rows.iter_mut().find(|(room, ..)| *room == chunk.room) {
                Some(row) => {
                    row.2 = row.2.max(chunk.last_ms);
                    row.3.push_str(&chunk.lines);
                }
                None => rows.push((
                    &chunk.room,
                    chunk.first_ms,
                    chunk.last_ms,
                    chunk.lines.clone(),
                )),
            }
        }
        let transaction = self.connection.transaction()?;
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO chunks (room, first_ms, last_ms, lines) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (room, first, last, lines) in &rows {
                insert.execute(params![room, first, last, lines])?;
            }
        }
        transaction.commit()
    }

    /// Each room's last `per_room` lines, oldest first, for the [`MAX_RESTORED_ROOMS`]
    /// rooms spoken in last (a room restored is a room the server keeps, empty or not).
    pub(super) fn recent(&self, per_room: usize) -> rusqlite::Result<Vec<StoredLine>> {
        let mut rooms_query = self.connection.prepare(
            "SELECT room FROM chunks GROUP BY room COLLATE NOCASE ORDER BY max(id) DESC LIMIT ?1",
        )?;
        let mut rooms: Vec<String> = rooms_query
            .query_map([MAX_RESTORED_ROOMS as i64], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        rooms.reverse();
        let mut recent = Vec::new();
        for room in rooms {
            let (mut lines, _) = self.newest_first(&room, per_room, None, |_| true)?;
            lines.reverse();
            recent.extend(lines.into_iter().map(|(at, nick, line)| StoredLine {
                at,
                room: room.clone(),
                nick,
                line,
            }));
        }
        Ok(recent)
    }

    /// The last `limit` lines of `room` that contain `text` (ignoring case), oldest first,
    /// as far back as `budget` lets it read.
    pub(super) fn search(
        &self,
        room: &str,
        text: &str,
        limit: usize,
        budget: Duration,
    ) -> rusqlite::Result<Found> {
        let needle = fold_case(text);
        let deadline = Instant::now() + budget;
        let (lines, stopped_at) = self.newest_first(room, limit, Some(deadline), |line| {
            fold_case(said_text(line)).contains(&needle)
        })?;
        Ok(Found {
            lines: lines
                .into_iter()
                .rev()
                .map(|(at, _, line)| (at, line))
                .collect(),
            stopped_at,
        })
    }

    /// Up to `limit` lines of `room` that `wanted` accepts, newest first, and, if the
    /// `deadline` came first, the time of the last line read.
    fn newest_first(
        &self,
        room: &str,
        limit: usize,
        deadline: Option<Instant>,
        mut wanted: impl FnMut(&str) -> bool,
    ) -> rusqlite::Result<(Vec<Entry>, Option<SystemTime>)> {
        let mut found = Vec::new();
        if limit == 0 {
            return Ok((found, None));
        }
        let mut query = self.connection.prepare_cached(
            "SELECT lines FROM chunks WHERE room = ?1 COLLATE NOCASE ORDER BY id DESC",
        )?;
        let mut rows = query.query([room])?;
        while let Some(row) = rows.next()? {
            let text: String = row.get(0)?;
            let mut oldest = None;
            for (at, nick, line) in decode(&text).rev() {
                oldest = Some(at);
                if wanted(line) {
                    found.push((at, nick.to_owned(), line.to_owned()));
                    if found.len() == limit {
                        return Ok((found, None));
                    }
                }
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok((found, oldest));
            }
        }
        Ok((found, None))
    }

    /// Removes lines older than `days` days (whole chunks: a chunk spans a fifth of a
    /// second); returns how many lines.
    pub(super) fn forget_older_than(&self, days: u32) -> rusqlite::Result<u64> {
        let age = Duration::from_secs(u64::from(days) * 24 * 60 * 60);
        let cutoff = millis(SystemTime::now().checked_sub(age).unwrap_or(UNIX_EPOCH));
        let transaction = self.connection.unchecked_transaction()?;
        let lines: i64 = transaction.query_row(
            "SELECT coalesce(sum(length(lines) - length(replace(lines, char(10), ''))), 0)
             FROM chunks WHERE last_ms < ?1",
            [cutoff],
            |row| row.get(0),
        )?;
        transaction.execute("DELETE FROM chunks WHERE last_ms < ?1", [cutoff])?;
        transaction.commit()?;
        Ok(u64::try_from(lines).unwrap_or(0))
    }
}

/// Appends a line said at `at` (milliseconds since the epoch, in decimal: the caller
/// formats it once for many lines) to a chunk's text. Lines, nicks and rooms are
/// sanitised before they
/// get here (no control characters); a tab or line end is made a space all the same, so
/// that no text can break a chunk's format.
pub(crate) fn encode_line(chunk: &mut String, at: &str, nick: &str, line: &str) {
    chunk.push_str(at);
    chunk.push('\t');
    for (text, end) in [(nick, '\t'), (line, '\n')] {
        if text.bytes().any(|byte| byte == b'\t' || byte == b'\n') {
            chunk.push_str(&text.replace(['\t', '\n'], " "));
        } else {
            chunk.push_str(text);
        }
        chunk.push(end);
    }
}

/// A chunk's lines, oldest first: (when, nick, line). A malformed line is skipped.
fn decode(chunk: &str) -> impl DoubleEndedIterator<Item = (SystemTime, &str, &str)> {
    chunk.lines().filter_map(|entry| {
        let mut fields = entry.splitn(3, '\t');
        let at = fields.next()?.parse().ok()?;
        Some((from_millis(at), fields.next()?, fields.next()?))
    })
}

/// A stored line: when, who, what (as the room shows it).
type Entry = (SystemTime, String, String);

/// `text` with every character lower-cased on its own (so that a final sigma compares as
/// written), for searches that ignore case.
pub(crate) fn fold_case(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

/// What a line says, without the nick that starts it (`[ann] hello` -> `hello`), so that
/// a search finds words, not whoever said them.
pub(crate) fn said_text(line: &str) -> &str {
    match line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((_, text)) => text,
        None => line,
    }
}

pub(crate) fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}

fn from_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_gives_back_its_lines_and_no_text_can_break_it() {
        let mut chunk = String::new();
        encode_line(&mut chunk, "1000", "ann", "[ann] hello");
        encode_line(&mut chunk, "2000", "bob", "[bob] a\ttab and a\nline end");
        let lines: Vec<(SystemTime, &str, &str)> = decode(&chunk).collect();
        assert_eq!(
            lines,
            [
                (from_millis(1_000), "ann", "[ann] hello"),
                (from_millis(2_000), "bob", "[bob] a tab and a line end"),
            ]
        );
        assert_eq!(decode("garbage\n12\tonly two\n").count(), 0);
    }

    #[test]
    fn case_is_ignored_letter_by_letter() {
        assert!(fold_case("ΟΔΟΣΤΡΩΜΑ").contains(&fold_case("ΟΔΟΣ")));
        assert_eq!(fold_case("Homework"), "homework");
    }

    #[test]
    fn search_looks_at_what_was_said_not_at_who_said_it() {
        assert_eq!(said_text("[homework] done"), "done");
        assert_eq!(said_text("[ann] * waves"), "* waves");
        assert_eq!(said_text("no nick"), "no nick");
    }
}
