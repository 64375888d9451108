//! Shutdown through the library: stop accepting, drain, close with a goodbye.

use std::time::Duration;

use tcpchat::Config;

use crate::support::{LineClient, is_refused, start_chat};

#[test]
fn shutdown_refuses_newcomers_while_existing_clients_keep_chatting() {
    let server = start_chat(Config::localhost());
    let address = server.local_addr();
    let (mut alice, alice_nick) = LineClient::join(address);
    let (mut bob, bob_nick) = LineClient::join(address);
    server.shutdown();
    alice.expect_line("* server is shutting down");
    bob.expect_line("* server is shutting down");
    assert!(is_refused(address), "listener still accepts after shutdown");

    alice.send("still here");
    assert_eq!(
        bob.expect_line("still"),
        format!("[{alice_nick}] still here")
    );
    bob.send("/quit");
    alice.expect_line(&format!("* {bob_nick} left (quit)"));
    alice.send("/quit");
    alice.expect_closed();
    server
        .join()
        .expect("server ends cleanly once the last client left");
}

#[test]
fn the_drain_timeout_closes_clients_after_their_pending_output_and_a_goodbye() {
    let server = start_chat(Config {
        drain_timeout: Duration::ZERO,
        ..Config::localhost()
    });
    let (mut alice, _) = LineClient::join(server.local_addr());
    let (mut bob, bob_nick) = LineClient::join(server.local_addr());
    bob.send("said before shutdown");
    alice.expect_line("said before shutdown");
    server.shutdown();
    let rest = alice.expect_closed();
    assert_eq!(
        rest,
        vec![
            "* server is shutting down".to_owned(),
            "* server closed, bye!".to_owned()
        ]
    );
    assert!(
        bob.expect_closed()
            .ends_with(&["* server closed, bye!".to_owned()])
    );
    server.join().expect("clean exit");
    let _ = bob_nick;
}

#[test]
fn once_serves_one_connection_then_stops() {
    let server = start_chat(Config {
        once: true,
        ..Config::localhost()
    });
    let address = server.local_addr();
    let (mut only, _) = LineClient::join(address);
    only.expect_nothing_pending();
    // The listener closes as soon as the first connection is in.
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    while !is_refused(address) {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after --once"
        );
    }
    only.send("/quit");
    only.expect_closed();
    server.join().expect("server ends with its one connection");
}
