//! Rooms, history and timestamps.

use tcpchat::Config;

use crate::support::{LineClient, start_chat};

#[test]
fn two_rooms_chat_without_hearing_each_other() {
    let server = start_chat(Config::localhost());
    let address = server.local_addr();
    let (mut alice, alice_nick) = LineClient::join(address);
    let (mut bob, _) = LineClient::join(address);
    let (mut carol, carol_nick) = LineClient::join(address);
    alice.send("/join Games");
    // The mover gets its confirmation, and never its own leave notice.
    loop {
        let line = alice.next_line().expect("confirmation");
        assert!(!line.contains("left"), "the mover saw {line:?}");
        if line.starts_with("* you are now in") {
            assert_eq!(line, "* you are now in Games (1 here)");
            break;
        }
    }
    assert_eq!(
        bob.expect_line("left"),
        format!("* {alice_nick} left (to Games)")
    );
    carol.send("/join games");
    assert_eq!(
        carol.expect_line("you are now in"),
        "* you are now in Games (2 here)"
    );
    assert_eq!(
        alice.expect_line("joined"),
        format!("* {carol_nick} joined")
    );

    alice.send("in the games room");
    assert_eq!(
        carol.expect_line("games room"),
        format!("[{alice_nick}] in the games room")
    );
    alice.send("/me rolls a die");
    assert_eq!(
        carol.expect_line("rolls"),
        format!("* {alice_nick} rolls a die")
    );
    // Bob, in the lobby, heard none of it: his next line answers his own /who.
    bob.expect_line(&format!("* {carol_nick} left (to Games)"));
    bob.send("/who");
    assert!(bob.next_line().expect("who").starts_with("* in lobby (1)"));
    alice.send("/who");
    assert_eq!(
        alice.expect_line("* in "),
        format!("* in Games (2): {alice_nick}, {carol_nick}")
    );
    // Private messages cross rooms.
    alice.send(&format!("/msg {} across", "guest-2"));
    assert_eq!(
        bob.expect_line("across"),
        format!("[{alice_nick} -> you] across")
    );
}

#[test]
fn rooms_are_listed_with_counts_and_vanish_when_empty() {
    let server = start_chat(Config::localhost());
    let (mut alice, _) = LineClient::join(server.local_addr());
    let (mut bob, _) = LineClient::join(server.local_addr());
    bob.send("/join quiet");
    bob.expect_line("you are now in");
    alice.send("/rooms");
    assert_eq!(
        alice.expect_line("* rooms"),
        "* rooms (2): lobby (1), quiet (1)"
    );
    bob.send("/join lobby");
    bob.expect_line("you are now in");
    alice.send("/rooms");
    assert_eq!(alice.expect_line("* rooms"), "* rooms (1): lobby (2)");
    alice.send("/join lobby");
    assert_eq!(alice.expect_line("!"), "! you are already in lobby");
    alice.send("/join no/such");
    assert!(alice.expect_line("!").starts_with("! invalid room name"));
}

#[test]
fn a_late_joiner_first_sees_recent_history_with_times() {
    let server = start_chat(Config {
        history: 2,
        ..Config::localhost()
    });
    let (mut alice, alice_nick) = LineClient::join(server.local_addr());
    for text in ["first", "second", "third"] {
        alice.send(text);
    }
    alice.send("/me waves");
    alice.expect_nothing_pending();
    let mut late = LineClient::connect(server.local_addr());
    late.expect_line("* welcome, ");
    let first = late.next_line().expect("history");
    let second = late.next_line().expect("history");
    for (line, said) in [
        (&first, format!("[{alice_nick}] third")),
        (&second, format!("* {alice_nick} waves")),
    ] {
        let rest = line.strip_prefix("* history ").expect("marked as history");
        let (time, text) = rest.split_at(5);
        assert!(
            time.as_bytes()[2] == b':' && time.replace(':', "").parse::<u32>().is_ok(),
            "{line}"
        );
        assert_eq!(text.trim_start(), said);
    }
    late.expect_nothing_pending();
}

#[test]
fn history_zero_shows_nothing() {
    let server = start_chat(Config {
        history: 0,
        ..Config::localhost()
    });
    let (mut alice, _) = LineClient::join(server.local_addr());
    alice.send("said before");
    alice.expect_nothing_pending();
    let (mut late, _) = LineClient::join(server.local_addr());
    late.expect_nothing_pending();
}

#[test]
fn time_on_prefixes_every_line_received() {
    let server = start_chat(Config::localhost());
    let (mut alice, _) = LineClient::join(server.local_addr());
    let (mut bob, bob_nick) = LineClient::join(server.local_addr());
    alice.send("/time on");
    let on = alice.expect_line("timestamps on");
    assert!(on.ends_with(" * timestamps on"), "{on}");
    bob.send("hello");
    let line = alice.expect_line("hello");
    let (time, text) = line.split_at(5);
    assert_eq!(&time[2..3], ":", "{line}");
    assert_eq!(text, format!(" [{bob_nick}] hello"));
    alice.send("/time off");
    alice.expect_line("timestamps off");
    bob.send("again");
    assert_eq!(alice.expect_line("again"), format!("[{bob_nick}] again"));
}
