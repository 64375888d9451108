//! --transcript and --motd.

use tcpchat::Config;

use crate::support::{BinaryServer, LineClient, TempPath, failed_start, start_chat};

/// The transcript's lines without their timestamps, checking each has one.
fn transcript_lines(path: &TempPath) -> Vec<String> {
    let contents = std::fs::read_to_string(&path.0).expect("read transcript");
    contents
        .lines()
        .map(|line| {
            let (time, rest) = line.split_once(' ').expect("timestamp");
            assert!(time.starts_with("20") && time.ends_with('Z'), "{line}");
            rest.to_owned()
        })
        .collect()
}

#[test]
fn the_transcript_holds_everything_said_with_room_and_keeps_what_was_there() {
    let path = TempPath::new("transcript");
    std::fs::write(&path.0, "2026-01-01T00:00:00.000Z lobby earlier run\n").expect("seed");
    let server = start_chat(Config {
        transcript: Some(path.0.clone()),
        ..Config::localhost()
    });
    let (mut alice, alice_nick) = LineClient::join(server.local_addr());
    let (mut bob, bob_nick) = LineClient::join(server.local_addr());
    alice.expect_line("joined");
    alice.send("hello everyone");
    bob.expect_line("hello everyone");
    bob.send("/me waves");
    alice.expect_line("waves");
    bob.send("/join games");
    bob.expect_line("you are now in");
    bob.send("nobody here");
    bob.expect_nothing_pending();
    alice.expect_line("left (to games)");
    alice.send("/quit");
    alice.expect_closed();
    bob.send("/quit");
    bob.expect_closed();
    server.shutdown();
    server.join().expect("clean exit");
    let lines = transcript_lines(&path);
    assert_eq!(
        lines,
        vec![
            "lobby earlier run".to_owned(),
            format!("lobby * {alice_nick} joined"),
            format!("lobby * {bob_nick} joined"),
            format!("lobby [{alice_nick}] hello everyone"),
            format!("lobby [{bob_nick}] * waves"),
            format!("lobby * {bob_nick} left (to games)"),
            format!("games * {bob_nick} joined"),
            format!("games [{bob_nick}] nobody here"),
            format!("lobby * {alice_nick} left (quit)"),
            format!("games * {bob_nick} left (quit)"),
            "* * server is shutting down".to_owned(),
        ]
    );
}

#[test]
fn ctrl_c_loses_no_transcript_line() {
    let path = TempPath::new("transcript-ctrl-c");
    let server = BinaryServer::start(&["--transcript", path.as_str(), "--drain-timeout", "0"]);
    let (mut alice, alice_nick) = LineClient::join(server.address);
    let (mut bob, _) = LineClient::join(server.address);
    alice.send("last words before ctrl-c");
    bob.expect_line("last words");
    server.signal("INT");
    alice.expect_closed();
    bob.expect_closed();
    let (status, _) = server.wait_exit();
    assert!(status.success());
    let lines = transcript_lines(&path);
    assert!(
        lines.contains(&format!("lobby [{alice_nick}] last words before ctrl-c")),
        "{lines:?}"
    );
}

#[test]
fn the_message_of_the_day_follows_the_welcome() {
    let motd = TempPath::new("motd");
    std::fs::write(&motd.0, "Exercise 3 is due Friday.\r\nBe kind.\n").expect("motd");
    let server = start_chat(Config {
        motd: Some(motd.0.clone()),
        ..Config::localhost()
    });
    let mut client = LineClient::connect(server.local_addr());
    client.expect_line("* welcome, ");
    assert_eq!(
        client.next_line().as_deref(),
        Some("Exercise 3 is due Friday.")
    );
    assert_eq!(client.next_line().as_deref(), Some("Be kind."));
    client.expect_nothing_pending();
}

#[test]
fn a_missing_motd_or_transcript_folder_is_one_error_line() {
    for args in [
        ["--motd", "/no/such/motd"],
        ["--transcript", "/no/such/dir/log"],
    ] {
        assert_eq!(
            failed_start(&[args[0], args[1], "--port", "0"]),
            vec![format!(
                "error: cannot open {}: no such file or directory",
                args[1]
            )]
        );
    }
}

#[test]
fn clients_still_there_when_the_drain_ends_leave_in_the_transcript_too() {
    let path = TempPath::new("transcript-drain");
    let server = start_chat(Config {
        transcript: Some(path.0.clone()),
        drain_timeout: std::time::Duration::from_secs(0),
        ..Config::localhost()
    });
    let (mut stayer, stayer_nick) = LineClient::join(server.local_addr());
    stayer.expect_nothing_pending();
    server.shutdown();
    stayer.expect_line("* server closed, bye!");
    server.join().expect("clean exit");
    let lines = transcript_lines(&path);
    assert_eq!(
        lines.last(),
        Some(&format!(
            "lobby * {stayer_nick} left (server shutting down)"
        )),
        "{lines:?}"
    );
}
