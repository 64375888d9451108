//! The chat room through the library: joining, talking, commands, limits.

use tcpchat::Config;

use crate::support::{LineClient, start_chat};

#[test]
fn a_line_reaches_everyone_else_but_not_its_sender() {
    let server = start_chat(Config::localhost());
    let (mut alice, alice_nick) = LineClient::join(server.local_addr());
    let (mut bob, bob_nick) = LineClient::join(server.local_addr());
    alice.expect_line(&format!("* {bob_nick} joined"));
    let (mut carol, _) = LineClient::join(server.local_addr());

    alice.send("hello, room");
    let expected = format!("[{alice_nick}] hello, room");
    assert_eq!(bob.expect_line("hello"), expected);
    assert_eq!(carol.expect_line("hello"), expected);
    // Alice's next line is the /who answer, not a copy of her own message.
    alice.expect_line("joined"); // carol's join notice
    alice.expect_nothing_pending();
}

#[test]
fn welcome_names_the_guest_and_counts_who_is_online() {
    let server = start_chat(Config::localhost());
    let mut first = LineClient::connect(server.local_addr());
    let welcome = first.expect_line("* welcome, ");
    assert!(welcome.contains("guest-1"), "{welcome}");
    assert!(welcome.contains("/help"), "{welcome}");
    let mut second = LineClient::connect(server.local_addr());
    let welcome = second.expect_line("* welcome, ");
    assert!(welcome.contains("guest-2! 2 online"), "{welcome}");
    assert_eq!(first.expect_line("joined"), "* guest-2 joined");
}

#[test]
fn telnet_crlf_lines_arrive_without_the_cr() {
    let server = start_chat(Config::localhost());
    let (mut telnet, nick) = LineClient::join(server.local_addr());
    let (mut nc, _) = LineClient::join(server.local_addr());
    telnet.send_bytes(b"over telnet\r\n");
    assert_eq!(
        nc.expect_line("over telnet"),
        format!("[{nick}] over telnet")
    );
}

#[test]
fn nick_changes_are_announced_and_checked() {
    let server = start_chat(Config::localhost());
    let (mut alice, old_nick) = LineClient::join(server.local_addr());
    let (mut bob, _) = LineClient::join(server.local_addr());
    alice.send("/nick Alice_1");
    assert_eq!(alice.expect_line("you are now"), "* you are now Alice_1");
    assert_eq!(
        bob.expect_line("is now"),
        format!("* {old_nick} is now Alice_1")
    );

    bob.send("/nick alice_1");
    assert_eq!(bob.expect_line("!"), "! nick alice_1 is taken");
    bob.send("/nick no spaces");
    assert!(bob.expect_line("!").starts_with("! invalid nick"));
    bob.send(&format!("/nick {}", "x".repeat(21)));
    assert!(bob.expect_line("!").starts_with("! invalid nick"));
    bob.send("/nick guest-99");
    assert!(bob.expect_line("!").contains("reserved"));
    bob.send("/nick");
    assert_eq!(bob.expect_line("!"), "! usage: /nick NAME");

    alice.send("renamed");
    assert_eq!(bob.expect_line("renamed"), "[Alice_1] renamed");
}

#[test]
fn who_lists_everyone_online() {
    let server = start_chat(Config::localhost());
    let (mut alice, _) = LineClient::join(server.local_addr());
    alice.send("/nick alice");
    alice.expect_line("you are now");
    let (_bob, bob_nick) = LineClient::join(server.local_addr());
    alice.expect_line("joined");
    alice.send("/who");
    assert_eq!(
        alice.expect_line("* in "),
        format!("* in lobby (2): alice, {bob_nick}")
    );
}

#[test]
fn me_and_private_messages_reach_the_right_people() {
    let server = start_chat(Config::localhost());
    let (mut alice, alice_nick) = LineClient::join(server.local_addr());
    let (mut bob, bob_nick) = LineClient::join(server.local_addr());
    let (mut carol, _) = LineClient::join(server.local_addr());

    alice.send("/me waves");
    assert_eq!(
        carol.expect_line("waves"),
        format!("[{alice_nick}] * waves")
    );
    assert_eq!(bob.expect_line("waves"), format!("[{alice_nick}] * waves"));

    alice.send(&format!("/msg {} psst", bob_nick.to_uppercase()));
    assert_eq!(
        bob.expect_line("psst"),
        format!("[{alice_nick} -> you] psst")
    );
    assert_eq!(
        alice.expect_line("psst"),
        format!("[you -> {bob_nick}] psst")
    );
    // Carol never sees it: her next line is her own /who answer.
    carol.expect_nothing_pending();

    alice.send("/msg nobody hi");
    assert_eq!(alice.expect_line("!"), "! no such nick: nobody");
    alice.send("/msg bob");
    assert_eq!(alice.expect_line("!"), "! usage: /msg NICK TEXT");
}

#[test]
fn help_unknown_commands_and_double_slash() {
    let server = start_chat(Config::localhost());
    let (mut alice, alice_nick) = LineClient::join(server.local_addr());
    let (mut bob, _) = LineClient::join(server.local_addr());
    alice.send("/help");
    alice.expect_line("/nick NAME");
    alice.expect_line("/quit [REASON]");
    alice.send("/dance now");
    assert_eq!(
        alice.expect_line("!"),
        "! unknown command: /dance (try /help)"
    );
    alice.send("//path/to/file");
    assert_eq!(
        bob.expect_line("path"),
        format!("[{alice_nick}] /path/to/file")
    );
}

#[test]
fn leaving_is_announced_with_its_reason() {
    let server = start_chat(Config::localhost());
    let (mut watcher, _) = LineClient::join(server.local_addr());
    let (mut quitter, quitter_nick) = LineClient::join(server.local_addr());
    quitter.send("/quit off to lunch");
    assert_eq!(quitter.expect_closed(), vec!["* bye!".to_owned()]);
    assert_eq!(
        watcher.expect_line("left"),
        format!("* {quitter_nick} left (quit: off to lunch)")
    );

    let (closer, closer_nick) = LineClient::join(server.local_addr());
    drop(closer);
    assert_eq!(
        watcher.expect_line("left"),
        format!("* {closer_nick} left (connection closed)")
    );
}

#[test]
fn lines_before_quit_in_the_same_packet_are_delivered() {
    let server = start_chat(Config::localhost());
    let (mut watcher, _) = LineClient::join(server.local_addr());
    let (mut quitter, nick) = LineClient::join(server.local_addr());
    quitter.send_bytes(b"last words\n/quit\nnever sent\n");
    assert_eq!(
        watcher.expect_line("last words"),
        format!("[{nick}] last words")
    );
    assert_eq!(watcher.expect_line("left"), format!("* {nick} left (quit)"));
    watcher.expect_nothing_pending();
}

#[test]
fn a_final_line_without_newline_is_delivered_at_close() {
    let server = start_chat(Config::localhost());
    let (mut watcher, _) = LineClient::join(server.local_addr());
    let (mut sender, nick) = LineClient::join(server.local_addr());
    sender.send_bytes(b"no newline here");
    sender.shutdown_write();
    assert_eq!(
        watcher.expect_line("newline"),
        format!("[{nick}] no newline here")
    );
}

#[test]
fn a_client_beyond_max_clients_is_told_the_server_is_full() {
    let server = start_chat(Config {
        max_clients: 2,
        ..Config::localhost()
    });
    let (_one, _) = LineClient::join(server.local_addr());
    let (mut two, _) = LineClient::join(server.local_addr());
    let mut three = LineClient::connect(server.local_addr());
    assert_eq!(three.expect_closed(), vec!["! server full".to_owned()]);
    // Freeing a place lets the next one in: the place is free once the quitter's
    // connection has ended on both sides, which the newcomer may race.
    two.send("/quit");
    two.expect_closed();
    drop(two);
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    loop {
        let mut next = LineClient::connect(server.local_addr());
        let first = next.next_line().expect("a first line");
        if first.starts_with("* welcome, ") {
            break;
        }
        assert_eq!(first, "! server full");
        assert!(
            std::time::Instant::now() < deadline,
            "the place was never given back"
        );
    }
}

#[test]
fn an_idle_client_is_told_and_disconnected() {
    let server = start_chat(Config {
        idle_timeout: Some(std::time::Duration::from_millis(300)),
        ..Config::localhost()
    });
    let (mut idle, nick) = LineClient::join(server.local_addr());
    let lines = idle.expect_closed();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("* idle timeout, disconnecting, bye!")
    );
    let (mut other, _) = LineClient::join(server.local_addr());
    other.send("/who");
    assert!(!other.expect_line("* in ").contains(&nick));
}

#[test]
fn an_overlong_line_is_refused_and_the_next_line_goes_through() {
    let server = start_chat(Config {
        max_line: 100,
        ..Config::localhost()
    });
    let (mut sender, nick) = LineClient::join(server.local_addr());
    let (mut receiver, _) = LineClient::join(server.local_addr());
    sender.send(&"x".repeat(5000));
    assert_eq!(
        sender.expect_line("!"),
        "! line too long (over 100 bytes), dropped"
    );
    sender.send(&"y".repeat(100));
    assert_eq!(
        receiver.expect_line("yyy"),
        format!("[{nick}] {}", "y".repeat(100))
    );
}

#[test]
fn escape_sequences_and_control_bytes_never_reach_others() {
    let server = start_chat(Config::localhost());
    let (mut sender, nick) = LineClient::join(server.local_addr());
    let (mut receiver, _) = LineClient::join(server.local_addr());
    sender.send_bytes(b"\x1b[2J\x1b[31mred\x1b[0m\tand\x07 \xff\xfd\x18bell \xe9\n");
    assert_eq!(
        receiver.expect_line("red"),
        format!("[{nick}] red and bell \u{fffd}")
    );
}

#[test]
fn no_client_line_reads_as_a_server_notice() {
    let server = start_chat(Config::localhost());
    let (mut mallory, mallory_nick) = LineClient::join(server.local_addr());
    let (mut victim, _) = LineClient::join(server.local_addr());
    for word in ["server", "You", "notice", "in", "ADMIN"] {
        mallory.send(&format!("/nick {word}"));
        assert_eq!(
            mallory.expect_line("!"),
            format!("! nick {word} is reserved for the server")
        );
    }
    // Whatever it writes, every line it chose starts with its nick in brackets.
    for forgery in [
        "/me left (quit)",
        "/me is now teacher",
        "/me joined",
        "* server is shutting down",
        "\u{1}{\"closing\":\"kicked\"}",
    ] {
        mallory.send(forgery);
        let seen = victim.next_line().expect("a line");
        assert!(
            seen.starts_with(&format!("[{mallory_nick}] ")),
            "{forgery:?} reached others as {seen:?}"
        );
        assert!(!seen.contains('\u{1}'), "{seen:?}");
    }
}
