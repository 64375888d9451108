//! `tcpchat dump FILE`: everything clients send is appended to a file.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::thread;

use tcpchat::{Config, DumpOptions, Mode};

use crate::support::{BinaryServer, LineClient, TempPath, is_refused, start};

fn dump_mode(path: &TempPath, tag: bool) -> Mode {
    Mode::Dump(DumpOptions {
        path: path.0.clone(),
        tag,
        fsync: false,
    })
}

#[test]
fn fifty_concurrent_clients_lose_no_line_and_tear_none() {
    const CLIENTS: usize = 50;
    const LINES: usize = 10_000;
    let path = TempPath::new("dump-concurrent");
    std::fs::write(&path.0, "kept from before\n").expect("seed file");
    let server = start(Config::localhost(), dump_mode(&path, false));
    let address = server.local_addr();
    let senders: Vec<_> = (0..CLIENTS)
        .map(|client| {
            thread::spawn(move || {
                let stream = TcpStream::connect(address).expect("connect");
                let mut writer = BufWriter::new(&stream);
                for line in 0..LINES {
                    writeln!(
                        writer,
                        "client {client:02} line {line:05} {}",
                        "-".repeat(client)
                    )
                    .expect("send");
                }
                writer.flush().expect("flush");
            })
        })
        .collect();
    for sender in senders {
        sender.join().expect("sender");
    }
    server.shutdown();
    server.join().expect("clean exit");

    let contents = std::fs::read_to_string(&path.0).expect("read dump");
    let mut lines = contents.lines();
    assert_eq!(
        lines.next(),
        Some("kept from before"),
        "the file was truncated"
    );
    let mut next_line_of: HashMap<usize, usize> = HashMap::new();
    let mut count = 0;
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let [_, client, _, number, padding] = fields[..] else {
            panic!("torn line {line:?}");
        };
        let client: usize = client.parse().expect("client number");
        let number: usize = number.parse().expect("line number");
        assert_eq!(padding.len(), client, "torn line {line:?}");
        let expected = next_line_of.entry(client).or_insert(0);
        assert_eq!(number, *expected, "client {client} out of order");
        *expected += 1;
        count += 1;
    }
    assert_eq!(count, CLIENTS * LINES);
}

#[test]
fn tagged_lines_carry_time_and_peer_and_a_last_line_gets_its_newline() {
    let path = TempPath::new("dump-tag");
    let server = start(Config::localhost(), dump_mode(&path, true));
    let mut client = LineClient::connect(server.local_addr());
    let peer = client_address(&client);
    client.send_bytes(b"first\nsecond without newline");
    client.shutdown_write();
    client.expect_closed();
    server.shutdown();
    server.join().expect("clean exit");
    let contents = std::fs::read_to_string(&path.0).expect("read dump");
    let lines: Vec<&str> = contents.lines().collect();
    assert_eq!(lines.len(), 2, "{contents:?}");
    assert!(contents.ends_with('\n'));
    for (line, text) in lines.iter().zip(["first", "second without newline"]) {
        let fields: Vec<&str> = line.splitn(3, ' ').collect();
        assert!(
            fields[0].starts_with("20") && fields[0].ends_with('Z'),
            "{line}"
        );
        assert_eq!(fields[1], peer);
        assert_eq!(fields[2], text);
    }
}

fn client_address(client: &LineClient) -> String {
    client.local_address().to_string()
}

#[test]
fn ctrl_c_loses_nothing_received_not_even_a_partial_line() {
    let path = TempPath::new("dump-ctrl-c");
    let server = BinaryServer::start(&["dump", path.as_str(), "--drain-timeout", "0"]);
    let mut client = LineClient::connect(server.address);
    client.send_bytes(b"complete line\npartial line");
    wait_for_file_to_contain(&path, "complete line\n");
    server.signal("INT");
    client.expect_closed();
    let (status, _) = server.wait_exit();
    assert!(status.success());
    let contents = std::fs::read_to_string(&path.0).expect("read dump");
    assert_eq!(contents, "complete line\npartial line\n");
}

#[test]
fn clients_keep_sending_during_the_drain_and_everything_is_stored() {
    let path = TempPath::new("dump-drain");
    let mut server = BinaryServer::start(&["dump", path.as_str()]);
    let mut clients: Vec<LineClient> = (0..5)
        .map(|_| LineClient::connect(server.address))
        .collect();
    for (number, client) in clients.iter_mut().enumerate() {
        client.send(&format!("before {number}"));
    }
    server.signal("INT");
    server.expect_log("stopped accepting");
    assert!(is_refused(server.address));
    for (number, client) in clients.iter_mut().enumerate() {
        client.send(&format!("after {number}"));
        client.shutdown_write();
        client.expect_closed();
    }
    let (status, _) = server.wait_exit();
    assert!(status.success());
    let contents = std::fs::read_to_string(&path.0).expect("read dump");
    for number in 0..5 {
        assert!(
            contents.contains(&format!("before {number}\n")),
            "{contents}"
        );
        assert!(
            contents.contains(&format!("after {number}\n")),
            "{contents}"
        );
    }
}

#[test]
fn a_full_disk_is_reported_to_clients_and_ends_the_server_with_an_error() {
    let server = BinaryServer::start(&["dump", "/dev/full"]);
    let mut idle = LineClient::connect(server.address);
    let mut writer = LineClient::connect(server.address);
    writer.send("this cannot be stored");
    assert_eq!(
        writer.expect_closed(),
        vec!["! cannot store data: no space left on device".to_owned()]
    );
    assert_eq!(
        idle.expect_closed(),
        vec!["! cannot store data: no space left on device".to_owned()]
    );
    let (status, log) = server.wait_exit();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        log.last().map(String::as_str),
        Some("error: cannot store data in /dev/full: no space left on device")
    );
}

#[test]
fn dump_once_stores_one_client_then_exits() {
    let path = TempPath::new("dump-once");
    let server = BinaryServer::start(&["dump", path.as_str(), "--once"]);
    let mut client = LineClient::connect(server.address);
    client.send("only one");
    client.shutdown_write();
    client.expect_closed();
    let (status, _) = server.wait_exit();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(&path.0).expect("read"),
        "only one\n"
    );
}

/// Reads the file until it holds `text`: the server has received what came before it.
fn wait_for_file_to_contain(path: &TempPath, text: &str) {
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    loop {
        let contents = std::fs::read_to_string(&path.0).unwrap_or_default();
        if contents.contains(text) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "file never held {text:?}"
        );
        thread::yield_now();
    }
}

#[test]
fn a_usage_error_leaves_no_file_behind() {
    let path = TempPath::new("never-created");
    let log = crate::support::failed_start(&["dump", path.as_str(), "--web", "0"]);
    assert!(
        log.iter()
            .any(|line| line == "error: --web serves the chat only"),
        "{log:?}"
    );
    assert!(!path.0.exists(), "the usage error created the file");
}
