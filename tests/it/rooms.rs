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
        format!("[{alice_nick}] * rolls a die")
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
        (&second, format!("[{alice_nick}] * waves")),
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

/// How many people a join or leave notice names: `* a, b and 17 others joined; c left`
/// counts 19 joined and 1 left.
fn notice_counts(line: &str) -> (usize, usize) {
    let mut counts = (0, 0);
    for part in line.trim_start_matches("* ").split("; ") {
        let (names, joined) = match (part.strip_suffix(" joined"), part.strip_suffix(" left")) {
            (Some(names), _) => (names, true),
            (None, Some(names)) => (names, false),
            (None, None) => continue,
        };
        let count = match names.rsplit_once(" and ") {
            Some((shown, rest)) => {
                let others = match rest.strip_suffix(" others").or(rest.strip_suffix(" other")) {
                    Some(number) => number.parse().unwrap_or(1),
                    None => 1,
                };
                shown.split(", ").count() + others
            }
            None => 1,
        };
        if joined {
            counts.0 += count;
        } else {
            counts.1 += count;
        }
    }
    counts
}

#[test]
fn a_big_rooms_joins_and_leaves_are_announced_together() {
    let server = start_chat(Config::localhost());
    let (mut watcher, _) = LineClient::join(server.local_addr());
    // Up to 100 in the room, each join is announced as it happens (or with the others of
    // the same instant).
    let mut crowd: Vec<LineClient> = (0..99)
        .map(|_| LineClient::join(server.local_addr()).0)
        .collect();
    let mut announced = 0;
    while announced < 99 {
        let line = watcher.next_line().expect("a join notice");
        announced += notice_counts(&line).0;
    }
    // Beyond it, a herd of 40 joins and 10 leaves makes a few lines, not 50.
    for _ in 0..40 {
        crowd.push(LineClient::join(server.local_addr()).0);
    }
    for _ in 0..10 {
        crowd.pop().expect("a member").shutdown_write();
    }
    let (mut joined, mut left, mut lines) = (0, 0, 0);
    while joined < 40 || left < 10 {
        let line = watcher.next_line().expect("a gathered notice");
        let (more_joined, more_left) = notice_counts(&line);
        assert!(more_joined + more_left > 0, "unexpected {line:?}");
        joined += more_joined;
        left += more_left;
        lines += 1;
    }
    assert_eq!((joined, left), (40, 10));
    assert!(lines <= 6, "{lines} notices for a herd of 50");
}
