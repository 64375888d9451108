//! `tcpchat send FILE`: every client receives the file.

use std::io::Write;
use std::thread;

use crate::support::{BinaryServer, LineClient, TempPath, failed_start, proc_status_field};

/// The byte at `offset` of the test file: a pattern that catches reordering and loss.
fn pattern_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

fn write_pattern_file(path: &TempPath, size: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path.0).expect("create"));
    let block: Vec<u8> = (0..251 * 4096).map(pattern_byte).collect();
    let mut written = 0;
    while written < size {
        let take = (size - written).min(block.len() as u64) as usize;
        file.write_all(&block[..take]).expect("write");
        written += take as u64;
    }
    file.flush().expect("flush");
}

/// Reads to the end, checking every byte against the pattern; returns the count.
fn receive_pattern(client: &mut LineClient) -> u64 {
    let mut buffer = vec![0u8; 1 << 16];
    let mut received: u64 = 0;
    loop {
        let count = client.read_some(&mut buffer);
        if count == 0 {
            return received;
        }
        for (index, &byte) in buffer[..count].iter().enumerate() {
            let offset = received + index as u64;
            assert_eq!(byte, pattern_byte(offset), "wrong byte at offset {offset}");
        }
        received += count as u64;
    }
}

#[test]
fn a_file_over_100_mb_reaches_three_clients_in_constant_memory() {
    const SIZE: u64 = 110 * 1024 * 1024;
    let path = TempPath::new("send-large");
    write_pattern_file(&path, SIZE);
    let server = BinaryServer::start(&["send", path.as_str()]);
    let address = server.address;
    let readers: Vec<_> = (0..3)
        .map(|_| thread::spawn(move || receive_pattern(&mut LineClient::connect(address))))
        .collect();
    for reader in readers {
        assert_eq!(reader.join().expect("reader"), SIZE);
    }
    let peak_kib = proc_status_field(server.pid(), "VmHWM:");
    assert!(peak_kib < 32 * 1024, "server peak RSS {peak_kib} KiB");
}

#[test]
fn keep_open_leaves_the_connection_open_after_the_file() {
    let path = TempPath::new("send-keep-open");
    std::fs::write(&path.0, "line one\nline two\n").expect("write");
    let mut server = BinaryServer::start(&["send", path.as_str(), "--keep-open"]);
    let mut client = LineClient::connect(server.address);
    assert_eq!(client.next_line().as_deref(), Some("line one"));
    assert_eq!(client.next_line().as_deref(), Some("line two"));
    server.expect_log("new connection");
    // Still open: what the client types is taken (and dropped), and the server only logs
    // the end when the client closes.
    client.send("anything");
    client.shutdown_write();
    assert!(client.expect_closed().is_empty());
    let closed = server.expect_log("closed");
    assert!(
        closed.ends_with("18 bytes sent, then client closed"),
        "{closed}"
    );
}

#[test]
fn without_keep_open_the_connection_closes_after_the_file() {
    let path = TempPath::new("send-close");
    std::fs::write(&path.0, "hello from a file\n").expect("write");
    let server = BinaryServer::start(&["send", path.as_str()]);
    let mut client = LineClient::connect(server.address);
    assert_eq!(client.expect_closed(), vec!["hello from a file".to_owned()]);
}

#[test]
fn a_missing_file_is_one_error_line_and_a_failing_exit() {
    assert_eq!(
        failed_start(&["send", "/no/such/file", "--port", "0"]),
        vec!["error: cannot open /no/such/file: no such file or directory".to_owned()]
    );
}

#[test]
fn send_once_serves_one_client_then_exits() {
    let path = TempPath::new("send-once");
    std::fs::write(&path.0, "once\n").expect("write");
    let server = BinaryServer::start(&["send", path.as_str(), "--once"]);
    let mut client = LineClient::connect(server.address);
    assert_eq!(client.expect_closed(), vec!["once".to_owned()]);
    let (status, _) = server.wait_exit();
    assert!(status.success());
}
