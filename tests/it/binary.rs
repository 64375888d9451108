//! The built binary: start-up, errors, signals, memory.

use std::net::TcpListener;

use crate::support::{
    BinaryServer, LineClient, PATIENCE, failed_start, is_refused, proc_status_field,
};

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

#[test]
fn connection_threads_are_reused_and_end_when_idle() {
    let server = BinaryServer::start(&[]);
    let threads = || proc_status_field(server.pid(), "Threads:");
    let at_rest = threads();
    // Connection threads are named `conn-N`, N counting the threads started.
    let connection_threads = || -> Vec<String> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid())).expect("tasks");
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| name.starts_with("conn-"))
            .collect()
    };
    let mut seen = std::collections::BTreeSet::new();
    // One client after another: each finds the previous one's thread waiting for it.
    for _ in 0..20 {
        let (mut client, _) = LineClient::join(server.address);
        seen.extend(connection_threads());
        client.send("/quit");
        client.expect_line("* bye!");
        client.expect_closed();
    }
    // Usually one thread serves them all; a client that comes before the last one's thread
    // is back waiting (a loaded machine) gets a new one. Without reuse: 20.
    assert!(seen.len() <= 10, "20 clients, threads {seen:?}");
    // A waiting thread ends after a couple of seconds without a client.
    let deadline = std::time::Instant::now() + PATIENCE;
    while threads() > at_rest {
        assert!(
            std::time::Instant::now() < deadline,
            "threads stay: {} ({:?})",
            threads(),
            connection_threads()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
