//! `--history-db`: the rooms' history in a real SQLite file (in a temporary folder),
//! across kills and restarts of the real binary; `/search`; bad files refused untouched.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::{BinaryServer, LineClient, TempDir, failed_start};

fn start(db: &Path, extra: &[&str]) -> BinaryServer {
    // Ctrl-C closes at once: these tests stop servers with clients still there.
    let mut args = vec![
        "--history-db",
        db.to_str().expect("utf-8 path"),
        "--drain-timeout",
        "0",
    ];
    args.extend_from_slice(extra);
    BinaryServer::start(&args)
}

/// What a newcomer is shown as history, without the times (`* history HH:MM LINE`).
fn history_shown(client: &mut LineClient) -> Vec<String> {
    client.send("/who");
    let mut shown = Vec::new();
    loop {
        let line = client.next_line().expect("the welcome");
        if line.starts_with("* in ") {
            return shown;
        }
        if let Some(rest) = line.strip_prefix("* history ") {
            let (time, said) = rest.split_once(' ').expect("a time");
            assert_eq!(time.len(), 5, "{line}");
            shown.push(said.to_owned());
        }
    }
}

/// Stops the server with Ctrl-C; returns its exit code and last log lines.
fn interrupt(server: BinaryServer) -> (Option<i32>, Vec<String>) {
    server.signal("INT");
    let (status, log) = server.wait_exit();
    (status.code(), log)
}

#[test]
fn what_was_said_a_second_before_a_kill_comes_back_in_its_rooms_and_search_finds_it() {
    let dir = TempDir::new("history-kill");
    let db = dir.0.join("history.db");
    let server = start(&db, &[]);
    let (mut ann, ann_nick) = LineClient::join(server.address);
    let (mut bob, bob_nick) = LineClient::join(server.address);
    let (mut cy, _) = LineClient::join(server.address);
    ann.expect_line(&format!("{bob_nick} joined"));
    ann.send("before the Crash");
    ann.send("/me waves");
    ann.send(&format!("/msg {bob_nick} a private word"));
    bob.expect_line("a private word");
    bob.send("/join games");
    bob.expect_line("you are now in games");
    bob.send("a word in games");
    ann.send("last one");
    cy.expect_line("last one");
    // The promise under test: what reached the others a second before the kill is kept.
    std::thread::sleep(Duration::from_millis(1500));
    server.signal("KILL");
    let _ = server.wait_exit();

    let server = start(&db, &[]);
    let (mut newcomer, _) = LineClient::join(server.address);
    let expected = [
        format!("[{ann_nick}] before the Crash"),
        format!("[{ann_nick}] * waves"),
        format!("[{ann_nick}] last one"),
    ];
    assert_eq!(history_shown(&mut newcomer), expected);
    newcomer.send("/search crash");
    let found = newcomer.expect_line("before the Crash");
    assert!(found.starts_with("* 20"), "{found}");
    assert!(
        found.ends_with(&format!(" [{ann_nick}] before the Crash")),
        "{found}"
    );
    assert_eq!(
        newcomer.expect_line("found with"),
        "* 1 line found with \"crash\""
    );
    // Nothing from a private message or from another room.
    for text in ["private", "in games"] {
        newcomer.send(&format!("/search {text}"));
        assert_eq!(
            newcomer.expect_line("found with"),
            format!("* no line found with \"{text}\"")
        );
    }
    newcomer.send("/join games");
    newcomer.expect_line("you are now in games");
    newcomer.send("/search WORD");
    assert!(
        newcomer
            .expect_line("a word in games")
            .ends_with(&format!("[{bob_nick}] a word in games"))
    );
    newcomer.expect_line("* 1 line found with \"WORD\"");
}

#[test]
fn ctrl_c_loses_nothing_not_even_the_last_milliseconds() {
    let dir = TempDir::new("history-ctrl-c");
    let db = dir.0.join("history.db");
    let server = start(&db, &["--rate", "0", "--history", "200"]);
    let (mut ann, ann_nick) = LineClient::join(server.address);
    let (mut bob, _) = LineClient::join(server.address);
    ann.expect_line("joined");
    for n in 0..100 {
        ann.send(&format!("line {n}"));
    }
    bob.expect_line("line 99");
    let (code, _) = interrupt(server);
    assert_eq!(code, Some(0));

    let server = start(&db, &["--history", "200"]);
    let (mut newcomer, _) = LineClient::join(server.address);
    let expected: Vec<String> = (0..100).map(|n| format!("[{ann_nick}] line {n}")).collect();
    assert_eq!(history_shown(&mut newcomer), expected);
    let (code, _) = interrupt(server);
    assert_eq!(code, Some(0));
}

#[test]
fn search_without_a_file_looks_in_the_history_in_memory() {
    let server = BinaryServer::start(&[]);
    let (mut ann, ann_nick) = LineClient::join(server.address);
    ann.send("Homework is due");
    ann.send("/search homework");
    assert!(
        ann.expect_line("Homework is due")
            .ends_with(&format!("[{ann_nick}] Homework is due"))
    );
    ann.expect_line("* 1 line found with \"homework\"");
    ann.send("/search");
    ann.expect_line("/search TEXT");
}

#[test]
fn lines_older_than_history_days_are_removed() {
    let dir = TempDir::new("history-retention");
    let db = dir.0.join("history.db");
    let (code, _) = interrupt(start(&db, &[]));
    assert_eq!(code, Some(0));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let day = 24 * 60 * 60 * 1000;
    {
        let connection = rusqlite::Connection::open(&db).expect("open the history");
        // As the file keeps them: a chunk of lines per room, `MILLIS<TAB>NICK<TAB>LINE`.
        for (at, line) in [
            (now - 10 * day, "[old] ten days ago"),
            (now - day, "[old] yesterday"),
        ] {
            connection
                .execute(
                    "INSERT INTO chunks (room, first_ms, last_ms, lines) VALUES ('lobby', ?1, ?1, ?2)",
                    rusqlite::params![at, format!("{at}\told\t{line}\n")],
                )
                .expect("insert");
        }
    }
    let server = start(&db, &["--history-days", "7"]);
    let (mut newcomer, _) = LineClient::join(server.address);
    assert_eq!(history_shown(&mut newcomer), ["[old] yesterday"]);
    let (code, _) = interrupt(server);
    assert_eq!(code, Some(0));
    let connection = rusqlite::Connection::open(&db).expect("open the history");
    let left: i64 = connection
        .query_row("SELECT count(*) FROM chunks", [], |row| row.get(0))
        .expect("count");
    assert_eq!(left, 1);
}

#[test]
fn a_file_that_is_not_ours_or_is_newer_or_in_use_is_refused_and_left_as_it_is() {
    let dir = TempDir::new("history-bad-files");
    let random = dir.0.join("random.db");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&random, &bytes).expect("write");
    let other = dir.0.join("other.db");
    rusqlite::Connection::open(&other)
        .and_then(|c| {
            c.execute_batch("CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('mine');")
        })
        .expect("another program's database");
    // Another program's database with a write-ahead log not yet folded in: opening it
    // with SQLite would fold it in (and delete the log).
    let other_wal = dir.0.join("other-wal.db");
    let connection = rusqlite::Connection::open(&other_wal).expect("another database");
    connection
        .execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('mine');",
        )
        .expect("a database with a log");
    // Never closed (a crashed program): its log stays beside it.
    std::mem::forget(connection);
    let wal = dir.0.join("other-wal.db-wal");
    let wal_before = std::fs::read(&wal).expect("the log");
    let newer = dir.0.join("newer.db");
    let (code, _) = interrupt(start(&newer, &[]));
    assert_eq!(code, Some(0));
    rusqlite::Connection::open(&newer)
        .and_then(|c| c.pragma_update(None, "user_version", 99))
        .expect("a newer schema version");

    for (path, says) in [
        (
            &random,
            "is not a tcpchat history database (not an SQLite file)",
        ),
        (
            &other,
            "is not a tcpchat history database (another program's SQLite database)",
        ),
        (&newer, "was written by a newer tcpchat (schema version 99"),
        (
            &other_wal,
            "is not a tcpchat history database (another program's SQLite database)",
        ),
    ] {
        let before = std::fs::read(path).expect("read");
        let log = failed_start(&["--port", "0", "--history-db", path.to_str().expect("utf-8")]);
        let error = log
            .iter()
            .find(|line| line.starts_with("error: "))
            .expect("an error line");
        assert!(error.contains(says), "{error}");
        assert_eq!(
            std::fs::read(path).expect("read"),
            before,
            "{} changed",
            path.display()
        );
    }

    assert_eq!(std::fs::read(&wal).expect("the log"), wal_before);

    let db = dir.0.join("history.db");
    let first = start(&db, &[]);
    let log = failed_start(&["--port", "0", "--history-db", db.to_str().expect("utf-8")]);
    assert!(
        log.iter()
            .any(|line| line.contains("is in use by another tcpchat")),
        "{log:?}"
    );
    let (code, _) = interrupt(first);
    assert_eq!(code, Some(0));
}

#[test]
fn a_file_that_cannot_be_written_keeps_the_chat_going_and_ends_with_status_1() {
    let dir = TempDir::new("history-removed");
    let folder = dir.0.join("state");
    std::fs::create_dir(&folder).expect("folder");
    let db = folder.join("history.db");
    let mut server = start(&db, &[]);
    let (mut ann, ann_nick) = LineClient::join(server.address);
    let (mut bob, _) = LineClient::join(server.address);
    ann.expect_line("joined");
    ann.send("stored");
    bob.expect_line("stored");
    std::fs::remove_dir_all(&folder).expect("remove the folder");
    ann.send("not stored");
    bob.expect_line(&format!("[{ann_nick}] not stored"));
    server.expect_log("history: cannot write");
    ann.send("still chatting");
    bob.expect_line("still chatting");
    let (code, log) = interrupt(server);
    assert_eq!(code, Some(1), "{log:?}");
    assert!(
        log.iter()
            .any(|line| line.contains("lines of history not stored")),
        "{log:?}"
    );
}

/// A cluster node's history file: the node stores what it applies; at start-up the
/// cluster's shared history (Redis's stream) wins, and the file gives it back when Redis
/// has none (restarted empty). Never both: no line shown twice.
#[test]
fn a_cluster_node_takes_the_shared_history_and_falls_back_on_its_file() {
    let Some(mut redis) = crate::redis_server::RedisServer::start() else {
        return;
    };
    let dir = TempDir::new("history-cluster");
    let db = dir.0.join("history.db");
    let url = redis.url();
    let node = |name: &str| {
        BinaryServer::start(&[
            "--cluster",
            &url,
            "--node-name",
            name,
            "--history-db",
            db.to_str().expect("utf-8"),
            "--drain-timeout",
            "0",
        ])
    };
    let server = node("a");
    let (mut ann, ann_nick) = LineClient::join(server.address);
    let (mut bob, _) = LineClient::join(server.address);
    ann.expect_line("joined");
    ann.send("kept twice over");
    bob.expect_line("kept twice over");
    let (code, _) = interrupt(server);
    assert_eq!(code, Some(0));
    let said = format!("[{ann_nick}] kept twice over");

    // Redis still has it, and so has the file: shown once, also after the node has read
    // the stream (a line through it is the proof).
    let server = node("a");
    let (mut cy, cy_nick) = LineClient::join(server.address);
    let (mut dee, _) = LineClient::join(server.address);
    cy.expect_line("joined");
    cy.send("through the stream");
    dee.expect_line("through the stream");
    let expected = [said, format!("[{cy_nick}] through the stream")];
    let shows_history_once = |server: BinaryServer| {
        let (mut newcomer, _) = LineClient::join(server.address);
        assert_eq!(history_shown(&mut newcomer), expected);
        let (code, _) = interrupt(server);
        assert_eq!(code, Some(0));
    };
    shows_history_once(server);

    // Redis lost it: the file gives it back.
    redis.restart();
    shows_history_once(node("a"));
}

/// `TCPCHAT_HISTORY_DB=` (set but empty, as a line in /etc/default/tcpchat turns the
/// service's file off) keeps the history in memory, as an unset variable does.
#[test]
fn an_empty_history_db_variable_keeps_the_history_in_memory() {
    let folder = TempDir::new("history-empty-env");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tcpchat"));
    command
        .current_dir(&folder.0)
        .env("TCPCHAT_HISTORY_DB", "")
        .args(["--host", "127.0.0.1", "--port", "0", "--drain-timeout", "0"]);
    let (child, log) = crate::support::spawn_with_log(command);
    let server = BinaryServer::from_child(child, log);
    let (mut ann, _) = LineClient::join(server.address);
    ann.send("kept in memory");
    let (mut bob, _) = LineClient::join(server.address);
    assert_eq!(history_shown(&mut bob).len(), 1);
    server.signal("INT");
    let (status, _) = server.wait_exit();
    assert!(status.success(), "{status}");
    let files: Vec<_> = std::fs::read_dir(&folder.0).expect("folder").collect();
    assert!(files.is_empty(), "no history file: {files:?}");
}
