//! The built binary: start-up, errors, signals, memory.

use std::net::TcpListener;

use crate::support::{BinaryServer, LineClient, failed_start, is_refused};

#[test]
fn the_binary_logs_its_address_and_serves_chat() {
    let mut server = BinaryServer::start(&[]);
    let (mut alice, _) = LineClient::join(server.address);
    let (mut bob, bob_nick) = LineClient::join(server.address);
    server.expect_log(&format!("{bob_nick} joined from 127.0.0.1:"));
    bob.send("hi");
    assert_eq!(alice.expect_line("hi"), format!("[{bob_nick}] hi"));
}

#[test]
fn a_port_in_use_is_one_clear_error_and_a_failing_exit() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let lines = failed_start(&["--host", "127.0.0.1", "--port", &port.to_string()]);
    assert_eq!(
        lines,
        vec![format!(
            "error: cannot listen on 127.0.0.1:{port}: address already in use"
        )]
    );
}

#[test]
fn ctrl_c_stops_accepting_drains_and_exits_zero() {
    let mut server = BinaryServer::start(&[]);
    let address = server.address;
    let (mut alice, _) = LineClient::join(address);
    let (mut bob, bob_nick) = LineClient::join(address);
    server.signal("INT");
    alice.expect_line("* server is shutting down");
    server.expect_log("stopped accepting");
    assert!(is_refused(address));
    bob.send("after ctrl-c");
    assert_eq!(
        alice.expect_line("after"),
        format!("[{bob_nick}] after ctrl-c")
    );
    bob.send("/quit");
    alice.send("/quit");
    alice.expect_closed();
    let (status, log) = server.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        log.iter().any(|line| line.contains("server closed")),
        "{log:?}"
    );
}

#[test]
fn sigterm_drains_like_ctrl_c_and_the_drain_timeout_ends_it() {
    let server = BinaryServer::start(&["--drain-timeout", "0"]);
    let (mut alice, _) = LineClient::join(server.address);
    server.signal("TERM");
    let lines = alice.expect_closed();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("* server closed, bye!")
    );
    let (status, _) = server.wait_exit();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let mut server = BinaryServer::start(&[]);
    let (mut alice, _) = LineClient::join(server.address);
    server.signal("INT");
    alice.expect_line("* server is shutting down");
    server.expect_log("stopped accepting");
    server.signal("INT");
    let (status, _) = server.wait_exit();
    assert_eq!(status.code(), Some(130));
}
