//! `--history-db FILE`: the rooms' history kept in an SQLite file, so that a restart
//! (a crash included) loses none of it, and `/search` over everything kept.
//!
//! The hub never waits for the disk: it hands each line to the history thread through a
//! bounded channel ([`Recorder::store`] never blocks), and a search is a request that the
//! thread answers through a callback the hub gives (the answer reaches the hub as an
//! event). The thread writes what gathered in a fifth of a second in one transaction, so
//! a line is on the disk well within a second of being said, however busy the chat. When the file cannot be
//! written, the chat goes on with its in-memory history, the thread keeps what it could
//! not store and tries again every second, and the server exits with status 1 at the end
//! if lines were never stored.
//!
//! store.rs is the file: checks, lock, schema, queries.

mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use log::{info, warn};
use parking_lot::Mutex;

use crate::error::Error;
use store::Store;

pub(crate) use store::said_text;

/// Requests that may wait for the history thread: a chunk per room and wake-up of the
/// hub, and searches.
const CHANNEL_CAPACITY: usize = 65_536;
/// Bytes of lines that may wait for the history thread, in the channel or for another
/// try while the file cannot be written. Far more than a second of the busiest chat:
/// beyond it the disk has stopped, and what does not fit is counted lost (the older half
/// of what waits for another try).
const MAX_WAITING_BYTES: usize = 64 * 1024 * 1024;
/// How long the history thread lets lines gather before it writes them: one transaction
/// (and one insert per room) for all of them, and no wake-up per line. Well within the
/// promise that a line said a second before a kill is kept.
const BATCH_WINDOW: Duration = Duration::from_millis(200);
/// How often writing is tried again after a failure.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How often lines older than `--history-days` are removed (and at start-up).
const RETENTION_EVERY: Duration = Duration::from_secs(24 * 60 * 60);
/// The most lines `/search` shows.
pub(crate) const SEARCH_LIMIT: usize = 20;
/// How long one search may read the file: a search of a big file for a word nobody said
/// reads all of it, and stores wait behind it (the hub allows few searches at a time).
pub(crate) const SEARCH_BUDGET: Duration = Duration::from_millis(100);

/// A line of a room's history, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredLine {
    pub at: SystemTime,
    pub room: String,
    pub nick: String,
    /// As the room shows it: `[nick] text`, `[nick] * action`.
    pub line: String,
}

/// Lines of one room, encoded as the file keeps them (see [`encode_line`]): what the hub
/// hands over once per wake-up, so that a line costs it a copy, not a message.
pub(crate) struct Chunk {
    pub room: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub lines: String,
}

pub(crate) use store::{encode_line, fold_case, millis};

/// Lines a search found, oldest first, with when each was said; and, if the search ran
/// out of time, how far back it got.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub lines: Vec<(SystemTime, String)>,
    pub stopped_at: Option<SystemTime>,
}

/// The answer to a search, called on the history thread.
pub(crate) type SearchReply = Box<dyn FnOnce(Result<Found, String>) + Send>;

enum Request {
    Store(Chunk),
    Search {
        room: String,
        text: String,
        reply: SearchReply,
    },
}

/// What the thread and the hub's side share: what went wrong, for the end.
#[derive(Default)]
struct Losses {
    /// Lines the channel had no room for.
    dropped: u64,
    /// Why the file could not be written, while it cannot.
    failing: Option<String>,
    /// Lines still not stored when the thread ended.
    unstored: usize,
}

/// The open history's thread. It ends when every [`Recorder`] is gone (the hub's goes
/// with the hub).
pub(crate) struct History {
    losses: Arc<Mutex<Losses>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    path: std::path::PathBuf,
}

/// The hub's side: hands lines and searches to the history thread, never waiting.
#[derive(Clone)]
pub(crate) struct Recorder {
    requests: Sender<Request>,
    losses: Arc<Mutex<Losses>>,
    /// Bytes of lines handed over and not yet taken by the thread.
    queued: Arc<AtomicUsize>,
}

impl History {
    /// Opens the file (see [`Store::open`]), removes lines older than `days` (0: keeps
    /// everything), and returns each room's last `per_room` lines with the running
    /// history and the hub's way to it.
    pub(crate) fn open(
        path: &std::path::Path,
        days: u32,
        per_room: usize,
    ) -> Result<(History, Recorder, Vec<StoredLine>), Error> {
        let store = Store::open(path)?;
        if days > 0 {
            let removed = store
                .forget_older_than(days)
                .map_err(|error| store.error(&error))?;
            if removed > 0 {
                info!("history: removed {} older than {days} days", lines(removed));
            }
        }
        let recent = store
            .recent(per_room)
            .map_err(|error| store.error(&error))?;
        info!(
            "history in {}: {} back in their rooms",
            path.display(),
            lines(recent.len() as u64)
        );
        let (requests, receiver) = crossbeam_channel::bounded(CHANNEL_CAPACITY);
        let losses = Arc::new(Mutex::new(Losses::default()));
        let queued = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (losses, queued) = (Arc::clone(&losses), Arc::clone(&queued));
            let path = path.display().to_string();
            thread::Builder::new()
                .name(String::from("history"))
                .spawn(move || run(store, receiver, days, &losses, &queued, &path))
                .map_err(|source| Error::Thread {
                    name: "history",
                    source,
                })?
        };
        let history = History {
            losses: Arc::clone(&losses),
            thread: Mutex::new(Some(thread)),
            path: path.to_owned(),
        };
        let recorder = Recorder {
            requests,
            losses,
            queued,
        };
        Ok((history, recorder, recent))
    }

    /// Waits until what was handed over is stored (call it once the hub, and with it the
    /// last [`Recorder`], is gone) and reports lines that could not be stored.
    pub(crate) fn finish(&self) -> Result<(), Error> {
        if let Some(thread) = self.thread.lock().take()
            && let Err(panic) = thread.join()
        {
            std::panic::resume_unwind(panic);
        }
        let losses = self.losses.lock();
        let lost = losses.dropped + losses.unstored as u64;
        if lost == 0 {
            return Ok(());
        }
        Err(Error::Store {
            path: self.path.clone(),
            source: std::io::Error::other(format!(
                "{} of history not stored ({})",
                lines(lost),
                losses
                    .failing
                    .as_deref()
                    .unwrap_or("the disk did not keep up")
            )),
        })
    }
}

impl Recorder {
    /// Hands lines to the history thread; if its channel is full (the disk stopped), they
    /// are counted lost instead of making the hub wait.
    pub(crate) fn store(&self, chunk: Chunk) {
        let bytes = chunk.lines.len();
        let refused = if self.queued.fetch_add(bytes, Ordering::Relaxed) + bytes > MAX_WAITING_BYTES
        {
            Some(chunk)
        } else {
            match self.requests.try_send(Request::Store(chunk)) {
                Ok(()) => None,
                Err(TrySendError::Full(request) | TrySendError::Disconnected(request)) => {
                    match request {
                        Request::Store(chunk) => Some(chunk),
                        Request::Search { .. } => None,
                    }
                }
            }
        };
        if let Some(chunk) = refused {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            let mut losses = self.losses.lock();
            if losses.dropped == 0 {
                warn!("history: the disk does not keep up; lines go unstored");
            }
            losses.dropped += chunk.lines.lines().count() as u64;
        }
    }

    /// Asks for the last lines of `room` containing `text`; `reply` gets them on the
    /// history thread, after every line handed over before. False (and `reply` dropped)
    /// if the thread has too much to do: the caller answers for it, never waiting.
    pub(crate) fn search(&self, room: String, text: String, reply: SearchReply) -> bool {
        self.requests
            .try_send(Request::Search { room, text, reply })
            .is_ok()
    }
}

/// `1 line`, `2 lines`.
fn lines(count: u64) -> String {
    match count {
        1 => String::from("1 line"),
        count => format!("{count} lines"),
    }
}

/// The history thread: stores what arrives, a batch per transaction, answers searches in
/// order with the stores, retries after failures, and applies the retention.
fn run(
    mut store: Store,
    requests: Receiver<Request>,
    days: u32,
    losses: &Mutex<Losses>,
    queued: &AtomicUsize,
    path: &str,
) {
    let mut unstored: Vec<Chunk> = Vec::new();
    let mut next_retention = Instant::now() + RETENTION_EVERY;
    let mut open = true;
    while open || !unstored.is_empty() {
        let wake_at = if unstored.is_empty() {
            next_retention
        } else {
            next_retention.min(Instant::now() + RETRY_EVERY)
        };
        let mut searches = Vec::new();
        match requests.recv_timeout(wake_at.saturating_duration_since(Instant::now())) {
            Ok(first) => {
                // Meanwhile nobody waits on the channel, so handing a line over costs the
                // hub no system call.
                thread::sleep(BATCH_WINDOW);
                for request in std::iter::once(first).chain(requests.try_iter()) {
                    match request {
                        Request::Store(chunk) => {
                            queued.fetch_sub(chunk.lines.len(), Ordering::Relaxed);
                            unstored.push(chunk);
                        }
                        Request::Search { room, text, reply } => {
                            searches.push((room, text, reply));
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        if !unstored.is_empty() {
            let result = store
                .is_still_there()
                .map_err(|error| format!("cannot write {path}: {error}"))
                .and_then(|()| {
                    store
                        .store(&unstored)
                        .map_err(|error| format!("cannot write {path}: {error}"))
                });
            let mut losses = losses.lock();
            match result {
                Ok(()) => {
                    unstored.clear();
                    if losses.failing.take().is_some() {
                        info!("history: writing {path} works again");
                    }
                }
                Err(why) => {
                    if losses.failing.is_none() {
                        warn!(
                            "history: {why}; the chat goes on, writing is tried again every second"
                        );
                    }
                    losses.failing = Some(why);
                    let waiting: usize = unstored.iter().map(|c| c.lines.len()).sum();
                    if waiting > MAX_WAITING_BYTES {
                        // The oldest go first; what is kept is tried again.
                        let excess = unstored.len() / 2;
                        let lost: usize = unstored
                            .drain(..excess)
                            .map(|c| c.lines.lines().count())
                            .sum();
                        losses.dropped += lost as u64;
                    }
                    if !open {
                        // One last try failed: what is left is reported, not retried.
                        losses.unstored = unstored.iter().map(|c| c.lines.lines().count()).sum();
                        break;
                    }
                }
            }
        }
        // After the stores before them: a search finds what was said until it was asked.
        // At the end (the hub gone) nobody waits for an answer.
        for (room, text, reply) in searches {
            if open {
                reply(
                    store
                        .search(&room, &text, SEARCH_LIMIT, SEARCH_BUDGET)
                        .map_err(|error| error.to_string()),
                );
            }
        }
        if Instant::now() >= next_retention {
            next_retention = Instant::now() + RETENTION_EVERY;
            if days > 0 {
                match store.forget_older_than(days) {
                    Ok(removed) if removed > 0 => {
                        info!("history: removed {} older than {days} days", lines(removed));
                    }
                    Ok(_) => {}
                    Err(error) => warn!("history: cannot remove old lines: {error}"),
                }
            }
        }
    }
}
