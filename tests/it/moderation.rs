//! Operators: /op, /kick, /mute, /unmute, /wall.

use tcpchat::Config;

use crate::support::{BinaryServer, LineClient, start_chat};

fn with_password() -> Config {
    Config {
        op_password: Some(String::from("sesame")),
        ..Config::localhost()
    }
}

/// Joins, becomes an operator, returns the client and its nick.
fn operator(address: std::net::SocketAddr) -> (LineClient, String) {
    let (mut client, nick) = LineClient::join(address);
    client.send("/op sesame");
    assert_eq!(client.expect_line("operator"), "* you are now an operator");
    (client, nick)
}

#[test]
fn without_a_password_nobody_becomes_an_operator() {
    let server = start_chat(Config::localhost());
    let (mut client, _) = LineClient::join(server.local_addr());
    client.send("/op anything");
    assert_eq!(
        client.expect_line("!"),
        "! there are no operators on this server"
    );
    client.send("/kick someone");
    assert_eq!(client.expect_line("!"), "! operators only (see /op)");
}

#[test]
fn wrong_passwords_are_refused_slowed_down_and_logged() {
    let mut server = BinaryServer::start(&["--op-password", "sesame"]);
    let (mut guesser, nick) = LineClient::join(server.address);
    guesser.send("/op guess1");
    assert_eq!(
        guesser.expect_line("!"),
        "! wrong password (next try in 3 s)"
    );
    server.expect_log(&format!("wrong operator password from {nick} (127.0.0.1:"));
    // Even the right one is refused while the client must wait.
    guesser.send("/op sesame");
    assert_eq!(
        guesser.expect_line("!"),
        "! too many tries from your address: wait 3 s"
    );
}

#[test]
fn guessing_waits_per_address_whatever_connection_it_comes_from() {
    let server = start_chat(with_password());
    let address = server.local_addr();
    let mut guessers: Vec<LineClient> = (0..5)
        .map(|_| LineClient::join_from("127.0.0.2", address).0)
        .collect();
    guessers[0].send("/op guess");
    assert_eq!(
        guessers[0].expect_line("!"),
        "! wrong password (next try in 3 s)"
    );
    // A new connection from the same address guesses no sooner.
    for guesser in &mut guessers[1..] {
        guesser.send("/op sesame");
        assert!(
            guesser
                .expect_line("!")
                .starts_with("! too many tries from your address: wait ")
        );
    }
    // The teacher, on another address, is not locked out.
    let (mut teacher, _) = LineClient::join_from("127.0.0.3", address);
    teacher.send("/op sesame");
    assert_eq!(teacher.expect_line("operator"), "* you are now an operator");
}

#[test]
fn the_password_can_come_from_the_environment() {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tcpchat"));
    command
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env("TCPCHAT_OP_PASSWORD", "sesame");
    let (child, log) = crate::support::spawn_with_log(command);
    let server = BinaryServer::from_child(child, log);
    let _ = operator(server.address);
}

#[test]
fn an_operator_kicks_with_a_reason_and_the_room_is_told() {
    let server = start_chat(with_password());
    let (mut op, op_nick) = operator(server.local_addr());
    let (mut target, target_nick) = LineClient::join(server.local_addr());
    let (mut witness, _) = LineClient::join(server.local_addr());
    op.send(&format!("/kick {target_nick} flooding"));
    assert_eq!(
        target.expect_closed().last().map(String::as_str),
        Some(format!("* you were kicked by {op_nick}: flooding").as_str())
    );
    assert_eq!(
        witness.expect_line("left"),
        format!("* {target_nick} left (kicked by {op_nick}: flooding)")
    );
    op.send("/kick nobody");
    assert_eq!(op.expect_line("!"), "! no such nick: nobody");
}

#[test]
fn a_muted_client_is_refused_until_unmuted() {
    let server = start_chat(with_password());
    let (mut op, op_nick) = operator(server.local_addr());
    let (mut loud, loud_nick) = LineClient::join(server.local_addr());
    let (mut listener, _) = LineClient::join(server.local_addr());
    op.send(&format!("/mute {loud_nick}"));
    let notice = format!("* {loud_nick} was muted by {op_nick}");
    assert_eq!(listener.expect_line("muted"), notice);
    assert_eq!(loud.expect_line("muted"), notice);
    loud.send("can anyone hear me");
    assert_eq!(loud.expect_line("!"), "! you are muted");
    loud.send("/me shouts");
    assert_eq!(loud.expect_line("!"), "! you are muted");
    op.send(&format!("/unmute {loud_nick}"));
    listener.expect_line(&format!("* {loud_nick} was unmuted by {op_nick}"));
    loud.send("back again");
    assert_eq!(
        listener.expect_line("back again"),
        format!("[{loud_nick}] back again")
    );
}

#[test]
fn wall_reaches_every_room() {
    let server = start_chat(with_password());
    let (mut op, op_nick) = operator(server.local_addr());
    let (mut elsewhere, _) = LineClient::join(server.local_addr());
    elsewhere.send("/join games");
    elsewhere.expect_line("you are now in");
    op.send("/wall five minutes left");
    assert_eq!(
        elsewhere.expect_line("notice"),
        format!("* notice from {op_nick}: five minutes left")
    );
}
