//! Abuse and faults: stalled readers, flooders, long lines, connection limits, exhausted
//! descriptors, leaks, vanishing peers, panics, shutdown under load.

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use socket2::SockRef;
use tcpchat::{Config, Connection, Server, Service};

use crate::support::{BinaryServer, LineClient, PATIENCE, proc_status_field, start_chat};

fn unthrottled() -> Config {
    Config {
        rate: 0,
        ..Config::localhost()
    }
}

#[test]
fn one_stalled_client_among_fifty_active_ones_costs_nobody_anything() {
    const WATCHERS: usize = 50;
    const LINES: usize = 10_000;
    let server = start_chat(Config {
        max_pending: 64 * 1024,
        ..unthrottled()
    });
    let address = server.local_addr();
    // A small receive window makes the stalled client's kernel buffer fill quickly.
    let stalled =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    stalled.set_recv_buffer_size(4096).expect("rcvbuf");
    stalled.connect(&address.into()).expect("connect stalled");
    let watchers: Vec<_> = (0..WATCHERS).map(|_| LineClient::join(address).0).collect();
    let (mut sender, sender_nick) = LineClient::join(address);
    let payload = "z".repeat(500);
    let readers: Vec<_> = watchers
        .into_iter()
        .map(|mut watcher| {
            let prefix = format!("[{sender_nick}] ");
            thread::spawn(move || {
                let mut next = 0;
                let mut saw_slow_consumer = false;
                while next < LINES {
                    let line = watcher.next_line().expect("watcher line");
                    if line.contains("left (slow consumer)") {
                        saw_slow_consumer = true;
                    } else if let Some(message) = line.strip_prefix(&prefix) {
                        let number = message.split(' ').next().expect("number");
                        assert_eq!(number, next.to_string(), "line out of order or lost");
                        next += 1;
                    }
                }
                if !saw_slow_consumer {
                    watcher.expect_line("left (slow consumer)");
                }
            })
        })
        .collect();
    for number in 0..LINES {
        sender.send(&format!("{number} {payload}"));
    }
    for reader in readers {
        reader
            .join()
            .expect("every watcher got every line, in order");
    }
    drop(stalled);
}

#[test]
fn a_flooder_is_slowed_down_loses_nothing_and_does_not_hold_up_others() {
    let server = start_chat(Config {
        rate: 100,
        burst: 10,
        ..Config::localhost()
    });
    let address = server.local_addr();
    let (mut receiver, _) = LineClient::join(address);
    let (mut flooder, flooder_nick) = LineClient::join(address);
    let (mut other, other_nick) = LineClient::join(address);
    receiver.expect_line(&format!("{other_nick} joined"));
    let flood: String = (0..100).map(|n| format!("flood {n}\n")).collect();
    flooder.send_bytes(flood.as_bytes());
    receiver.expect_line(&format!("[{flooder_nick}] flood 20"));
    other.send("not held up");
    let mut next_flood = 21;
    let mut other_arrived_during_flood = false;
    while next_flood < 100 {
        let line = receiver.next_line().expect("line");
        if line == format!("[{other_nick}] not held up") {
            other_arrived_during_flood = true;
        } else {
            assert_eq!(line, format!("[{flooder_nick}] flood {next_flood}"));
            next_flood += 1;
        }
    }
    assert!(other_arrived_during_flood, "the flood was not throttled");
}

#[test]
fn a_200_mb_line_without_newline_leaves_memory_within_a_few_mb() {
    // Flood control off: it would read the line at --rate times 4 KiB a second, and this
    // test is about what the server holds while it reads as fast as it can.
    let server = BinaryServer::start(&["--rate", "0"]);
    let (mut flooder, _) = LineClient::join(server.address);
    let (mut watcher, _) = LineClient::join(server.address);
    watcher.expect_nothing_pending();
    let before = server.rss_kib();
    let chunk = vec![b'a'; 1024 * 1024];
    for _ in 0..200 {
        flooder.send_bytes(&chunk);
    }
    flooder.send_bytes(b"\nafter the flood\n");
    flooder.expect_line("! line too long");
    watcher.expect_line("after the flood");
    let after = server.rss_kib();
    assert!(
        after < before + 4 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn max_per_ip_refuses_one_more_with_a_clear_line() {
    let server = start_chat(Config {
        max_per_ip: 2,
        ..Config::localhost()
    });
    let (_one, _) = LineClient::join(server.local_addr());
    let (_two, _) = LineClient::join(server.local_addr());
    let mut three = LineClient::connect(server.local_addr());
    assert_eq!(
        three.expect_closed(),
        vec!["! too many connections from your address".to_owned()]
    );
}

#[test]
fn running_out_of_descriptors_is_logged_once_and_recovers_by_itself() {
    let mut server = BinaryServer::start(&[]);
    // Lower the running server's descriptor limit below what the crowd needs.
    let status = std::process::Command::new("prlimit")
        .args([&format!("--pid={}", server.pid()), "--nofile=24:24"])
        .status()
        .expect("run prlimit");
    assert!(status.success());
    let crowd: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(server.address).expect("connect (kernel backlog)"))
        .collect();
    server.expect_log("cannot accept connections: too many open files; retrying");
    drop(crowd);
    let (mut late, _) = LineClient::join(server.address);
    late.send("/quit");
    late.expect_closed();
    server.signal("INT");
    let (status, log) = server.wait_exit();
    assert!(status.success());
    // Retries happen every 100 ms while descriptors are short; the warning is not
    // repeated with each of them (only a new burst, after a success, logs again).
    let repeats = log.iter().filter(|l| l.contains("cannot accept")).count();
    assert!(repeats <= 2, "the warning repeated {repeats} more times");
}

#[test]
fn ten_thousand_connections_leave_no_descriptor_or_thread_behind() {
    let server = BinaryServer::start(&[]);
    let pid = server.pid();
    let (mut probe, _) = LineClient::join(server.address);
    probe.expect_nothing_pending();
    let fds_before = count_fds(pid);
    let threads_before = proc_status_field(pid, "Threads:");
    let address = server.address;
    let loops: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..1250 {
                    let (mut client, _) = LineClient::join(address);
                    client.send("hello and goodbye");
                }
            })
        })
        .collect();
    for churn in loops {
        churn.join().expect("churn loop");
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (fds, threads) = (count_fds(pid), proc_status_field(pid, "Threads:"));
        if fds == fds_before && threads == threads_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fds {fds_before} -> {fds}, threads {threads_before} -> {threads}"
        );
        thread::yield_now();
    }
    probe.send("/who");
    probe.expect_line("* in lobby (1)");
}

fn count_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count()
}

#[test]
fn a_peer_that_resets_mid_write_is_removed_and_others_carry_on() {
    let server = start_chat(unthrottled());
    let address = server.local_addr();
    let (mut watcher, _) = LineClient::join(address);
    let (resetter, resetter_nick) = LineClient::join(address);
    let (mut talker, talker_nick) = LineClient::join(address);
    watcher.expect_line(&format!("{talker_nick} joined"));
    let big = "x".repeat(3000);
    for _ in 0..200 {
        talker.send(&big);
    }
    // Close with SO_LINGER 0: the kernel sends RST instead of FIN.
    SockRef::from(resetter.stream())
        .set_linger(Some(std::time::Duration::ZERO))
        .expect("linger");
    drop(resetter);
    watcher.expect_line(&format!("* {resetter_nick} left (connection closed)"));
    talker.send("still working");
    watcher.expect_line("still working");
}

/// A service that panics on its second connection and greets the others.
struct PanicsOnSecond;

impl Service for PanicsOnSecond {
    fn serve(&self, connection: Connection) {
        if connection.id == 2 {
            panic!("deliberate panic in a connection thread");
        }
        let _ = (&*connection.stream).write_all(b"hello\n");
    }
}

#[test]
fn a_client_that_quits_but_keeps_trickling_bytes_is_closed_anyway() {
    // One place: it is given back only when the quitter's thread has ended.
    let server = start_chat(Config {
        max_clients: 1,
        ..Config::localhost()
    });
    let (mut quitter, _) = LineClient::join(server.local_addr());
    quitter.send("/quit");
    quitter.expect_line("* bye!");
    // Whatever the server reads after the goodbye must not keep the connection (and its
    // thread and place) alive beyond the linger.
    let writer = quitter.stream().try_clone().expect("clone");
    let trickler = thread::spawn(move || {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline && (&writer).write_all(b".").is_ok() {
            thread::sleep(std::time::Duration::from_millis(50)); // the trickle's pace
        }
    });
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut next = LineClient::connect(server.local_addr());
        if next
            .next_line()
            .is_some_and(|line| line.starts_with("* welcome, "))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the trickler kept its place");
    }
    trickler.join().expect("trickler");
}

#[test]
fn a_panic_in_one_connection_thread_does_not_take_the_server_down() {
    let config = Config::localhost();
    let listener = tcpchat::bind(&config).expect("bind");
    let listeners = tcpchat::Listeners {
        main: listener,
        web: None,
        metrics: None,
    };
    let server =
        Server::start(listeners, &config, Arc::new(PanicsOnSecond), Arc::default()).expect("start");
    let mut first = LineClient::connect(server.local_addr());
    assert_eq!(first.expect_closed(), vec!["hello".to_owned()]);
    let mut second = LineClient::connect(server.local_addr());
    assert!(second.expect_closed().is_empty());
    let mut third = LineClient::connect(server.local_addr());
    assert_eq!(third.expect_closed(), vec!["hello".to_owned()]);
    server.shutdown();
    server.join().expect("clean exit after a panic");
}

#[test]
fn shutdown_under_load_delivers_every_accepted_message_before_the_goodbye() {
    const CLIENTS: usize = 100;
    // Flood control stays on (the default), as on a real server: each client sends as
    // fast as it can and is slowed down to its rate.
    let server = start_chat(Config {
        drain_timeout: std::time::Duration::ZERO,
        ..Config::localhost()
    });
    let address = server.local_addr();
    let (first_message_seen, first_message) = std::sync::mpsc::channel();
    // Everyone joins before anyone talks, so that every message has the same audience.
    let everyone_joined = Arc::new(std::sync::Barrier::new(CLIENTS));
    let talkers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (mut client, nick) = LineClient::join(address);
            let mut writer = client.stream().try_clone().expect("clone");
            let first_message_seen = first_message_seen.clone();
            let everyone_joined = Arc::clone(&everyone_joined);
            thread::spawn(move || {
                everyone_joined.wait();
                // More than flood control lets through before the shutdown.
                let sending = thread::spawn(move || {
                    for number in 0..200 {
                        if writer
                            .write_all(format!("msg {number}\n").as_bytes())
                            .is_err()
                        {
                            break;
                        }
                    }
                });
                let mut lines = Vec::new();
                while let Some(line) = client.next_line() {
                    if line.starts_with('[') {
                        let _ = first_message_seen.send(());
                    }
                    lines.push(line);
                }
                let _ = sending.join();
                (nick, lines)
            })
        })
        .collect();
    first_message.recv_timeout(PATIENCE).expect("messages flow");
    server.shutdown();
    let results: Vec<(String, Vec<String>)> = talkers
        .into_iter()
        .map(|t| t.join().expect("client"))
        .collect();
    // Every message the hub accepted went to everyone then connected: all clients saw the
    // same messages from each sender (a sender does not see its own), and the goodbye last.
    let messages_of = |lines: &[String]| -> HashSet<String> {
        lines
            .iter()
            .filter(|l| l.starts_with('['))
            .cloned()
            .collect()
    };
    let all: HashSet<String> = results
        .iter()
        .flat_map(|(_, lines)| messages_of(lines))
        .collect();
    for (nick, lines) in &results {
        assert_eq!(
            lines.last().map(String::as_str),
            Some("* server closed, bye!"),
            "{nick}"
        );
        let own_prefix = format!("[{nick}] ");
        let expected: HashSet<String> = all
            .iter()
            .filter(|m| !m.starts_with(&own_prefix))
            .cloned()
            .collect();
        let received = messages_of(lines);
        let missing: Vec<&String> = expected.difference(&received).take(5).collect();
        let extra = received.difference(&expected).count();
        assert!(
            missing.is_empty() && extra == 0,
            "{nick} missed {missing:?}, {extra} unexpected"
        );
    }
    server.join().expect("clean exit");
}
