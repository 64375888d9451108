//! `tcpchat echo`: the chapter's echo server.

use tcpchat::{Config, Mode};

use crate::support::{BinaryServer, LineClient, is_refused, start};

const GREETING: &str = "Hello! You can start typing. Type \"quit\" to exit!";

#[test]
fn echo_greets_sends_lines_back_and_says_bye_on_quit() {
    let server = start(Config::localhost(), Mode::Echo);
    let mut client = LineClient::connect(server.local_addr());
    assert_eq!(client.next_line().as_deref(), Some(GREETING));
    client.send("hello");
    assert_eq!(client.next_line().as_deref(), Some("hello"));
    client.send_bytes(b"over telnet\r\n");
    assert_eq!(client.next_line().as_deref(), Some("over telnet"));
    client.send_bytes(b"  QuIt \r\nnot echoed\n");
    assert_eq!(client.expect_closed(), vec!["Bye Bye!".to_owned()]);
}

#[test]
fn echo_is_binary_safe_and_streams_long_lines() {
    let server = start(
        Config {
            max_line: 16,
            ..Config::localhost()
        },
        Mode::Echo,
    );
    let mut client = LineClient::connect(server.local_addr());
    client.expect_line("Hello!");
    let binary: Vec<u8> = (0u8..=255).filter(|&b| b != b'\n').chain([b'\n']).collect();
    client.send_bytes(&binary);
    assert_eq!(client.expect_bytes(binary.len()), binary);
    // Longer than --max-line and no newline yet: it comes back anyway, in pieces.
    let long = vec![b'x'; 10_000];
    client.send_bytes(&long);
    assert_eq!(client.expect_bytes(long.len()), long);
    // A partial last line is sent back when the client closes its side.
    client.send_bytes(b"tail");
    client.shutdown_write();
    assert_eq!(client.expect_closed(), vec!["tail".to_owned()]);
}

#[test]
fn echo_once_serves_one_client_then_exits() {
    let mut server = BinaryServer::start(&["echo", "--once"]);
    let mut client = LineClient::connect(server.address);
    client.expect_line("Hello!");
    server.expect_log("stopped accepting");
    assert!(is_refused(server.address));
    client.send("quit");
    client.expect_line("Bye Bye!");
    drop(client); // the server waits for the client to close before it ends
    let (status, log) = server.wait_exit();
    assert!(status.success());
    assert!(
        log.iter().any(|line| line.ends_with("server closed")),
        "{log:?}"
    );
}

#[test]
fn echo_idle_clients_get_the_chapter_line() {
    let server = BinaryServer::start(&["echo", "--idle-timeout", "1"]);
    let mut client = LineClient::connect(server.address);
    client.expect_line("Hello!");
    assert_eq!(
        client.expect_closed(),
        vec!["idle timeout, disconnecting, bye!".to_owned()]
    );
}

#[test]
fn bye_bye_survives_a_client_that_is_behind_on_reading_and_still_sending() {
    const ECHOED: usize = 40;
    let server = start(Config::localhost(), Mode::Echo);
    // The smallest receive window the kernel allows (about 1 KB), not read from yet: the
    // echoes back up in the server's send queue, with "Bye Bye!" behind them.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(1).expect("rcvbuf");
    socket
        .connect(&server.local_addr().into())
        .expect("connect");
    let stream = std::net::TcpStream::from(socket);
    stream
        .set_read_timeout(Some(crate::support::PATIENCE))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    // 2.5 KB of echoes, then quit, then more input the server never echoes. Closing with
    // that input unread would reset the connection and throw away the queued echoes.
    let sender = std::thread::spawn(move || {
        let mut input = lines(&"x".repeat(63), ECHOED);
        input.push_str("quit\n");
        input.push_str(&lines(&"after quit".repeat(10), 1000));
        // A reset ends the writing early: that is what this test is about, not a panic.
        let _ = std::io::Write::write_all(&mut writer, input.as_bytes());
    });
    let _ = sender.join();
    let mut received = Vec::new();
    let end = std::io::Read::read_to_end(&mut &stream, &mut received);
    let text = String::from_utf8_lossy(&received);
    assert!(
        end.is_ok(),
        "connection reset after {} bytes",
        received.len()
    );
    assert!(text.starts_with(GREETING), "{text:.80}");
    assert!(
        text.ends_with("\nBye Bye!\n"),
        "ends with {:?}",
        &text[text.len().saturating_sub(80)..]
    );
    assert_eq!(text.matches(&"x".repeat(63)).count(), ECHOED);
}

/// `text` as `count` lines.
fn lines(text: &str, count: usize) -> String {
    format!("{text}\n").repeat(count)
}

#[test]
fn echo_recognises_quit_ended_by_cr_or_cr_nul_and_stays_byte_exact() {
    let server = start(Config::localhost(), Mode::Echo);
    for (typed, ending) in [(&b"quit\r"[..], "bare CR"), (b"QUIT\r\0", "CR NUL")] {
        let mut client = LineClient::connect(server.local_addr());
        client.expect_line("Hello!");
        // A CR inside the stream is echoed back as it came.
        client.send_bytes(b"one\rtwo\r\0three\n");
        assert_eq!(client.expect_bytes(15), b"one\rtwo\r\0three\n");
        client.send_bytes(typed);
        assert_eq!(
            client.expect_closed(),
            vec!["Bye Bye!".to_owned()],
            "quit with {ending}"
        );
    }
}
