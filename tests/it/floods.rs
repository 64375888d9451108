//! Flood control covers every kind of input: telnet commands, WebSocket control frames,
//! empty frames and bulk bytes are paced like lines, so a flooder is read more slowly (its
//! writes back up) instead of making the server work for it, and the others chat on.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tcpchat::Config;

use crate::support::{BinaryServer, LineClient, connect_from, start_chat};
use crate::web::{Browser, start_with_web};

const IAC: u8 = 255;
const DO: u8 = 253;
const DONT: u8 = 254;
const ECHO: u8 = 1;

/// Writes `unit` over and over until the server stops taking it (a write times out) or
/// `limit` bytes went out; returns how the writing ended and how much went out.
fn write_until_held(stream: &mut TcpStream, unit: &[u8], limit: usize) -> (ErrorKind, usize) {
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let chunk: Vec<u8> = unit
        .iter()
        .copied()
        .cycle()
        .take(unit.len() * 1024)
        .collect();
    let mut written = 0;
    while written < limit {
        match stream.write(&chunk) {
            Ok(count) => written += count,
            Err(error) => return (error.kind(), written),
        }
    }
    (ErrorKind::Other, written)
}

/// The kinds of error a write that the server holds back ends with.
fn held_back(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// A masked client frame with no payload: `0x89` a ping, `0x81` a text frame, `0x01` a
/// text message's first piece, `0x00` a piece that continues it.
fn empty_frame(first_byte: u8) -> [u8; 6] {
    [first_byte, 0x80, 1, 2, 3, 4]
}

#[test]
fn a_telnet_negotiation_flood_is_paced_not_answered_at_line_speed() {
    let server = start_chat(Config::localhost());
    let (flooder, _) = LineClient::join(server.local_addr());
    // It never reads what comes back: unpaced, the answers would pile up until it was cut
    // off as a slow consumer; paced, the server stops reading it, and its writes wait.
    let (ended, written) = write_until_held(
        &mut flooder.stream().try_clone().expect("clone"),
        &[IAC, DO, ECHO, IAC, DONT, ECHO],
        64 << 20,
    );
    assert!(held_back(ended), "{ended:?} after {written} bytes");
    let (mut ann, ann_nick) = LineClient::join(server.local_addr());
    let (mut bob, _) = LineClient::join(server.local_addr());
    ann.send("unbothered");
    bob.expect_line(&format!("[{ann_nick}] unbothered"));
}

/// How many times flood control made a client wait, from the metrics port.
fn flood_pauses(metrics: SocketAddr) -> f64 {
    crate::metrics::value(
        &crate::metrics::scrape(metrics),
        "tcpchat_flood_pauses_total",
    )
}

#[test]
fn websocket_ping_and_empty_frame_floods_are_paced() {
    let (server, web) = start_with_web(Config {
        metrics: Some(String::from("127.0.0.1:0")),
        ..Config::localhost()
    });
    let metrics = server.metrics_addr().expect("metrics port");
    // Pings, empty messages, and a message begun and then continued by empty pieces
    // forever (never a whole message, so nothing but its bytes can pay for it).
    for first_byte in [0x89, 0x81, 0x00] {
        let pauses_before = flood_pauses(metrics);
        let mut flooder = Browser::connect(web);
        if first_byte == 0x00 {
            flooder
                .stream()
                .write_all(&empty_frame(0x01))
                .expect("a message's first piece");
        }
        let (ended, written) =
            write_until_held(flooder.stream(), &empty_frame(first_byte), 64 << 20);
        assert!(
            held_back(ended),
            "frame {first_byte:#x}: {ended:?} after {written} bytes"
        );
        assert!(
            flood_pauses(metrics) > pauses_before,
            "frame {first_byte:#x}"
        );
    }
    let (mut ann, ann_nick) = LineClient::join(server.local_addr());
    let (mut bob, _) = Browser::join(web);
    ann.send("unbothered");
    bob.expect_line(&format!("[{ann_nick}] unbothered"));
}

#[test]
fn bytes_without_newlines_are_paced_too() {
    let server = start_chat(Config::localhost());
    let (flooder, _) = LineClient::join(server.local_addr());
    let (ended, written) = write_until_held(
        &mut flooder.stream().try_clone().expect("clone"),
        b"no newline ever ",
        256 << 20,
    );
    assert!(held_back(ended), "{ended:?} after {written} bytes");
}

#[test]
fn floods_from_several_addresses_leave_a_pair_chatting_with_nothing_lost() {
    let (server, web) = start_with_web(Config::localhost());
    let address = server.local_addr();
    // Each flooder on its own address and thread, writing until the server holds it back.
    let flooders: Vec<_> = [
        ("127.0.0.2", vec![IAC, DO, ECHO, IAC, DONT, ECHO], address),
        ("127.0.0.3", empty_frame(0x89).to_vec(), web),
        ("127.0.0.4", empty_frame(0x81).to_vec(), web),
        ("127.0.0.5", b"y\n".to_vec(), address),
    ]
    .into_iter()
    .map(|(source, unit, port)| {
        std::thread::spawn(move || {
            let mut stream = if port == web {
                let stream = connect_from(source, web);
                upgrade(stream, web)
            } else {
                connect_from(source, port)
            };
            write_until_held(&mut stream, &unit, 64 << 20)
        })
    })
    .collect();
    let (mut ann, ann_nick) = LineClient::join(address);
    let (mut bob, bob_nick) = LineClient::join(address);
    for round in 0..20 {
        ann.send(&format!("ann {round}"));
        bob.expect_line(&format!("[{ann_nick}] ann {round}"));
        bob.send(&format!("bob {round}"));
        ann.expect_line(&format!("[{bob_nick}] bob {round}"));
    }
    for flooder in flooders {
        let (ended, written) = flooder.join().expect("flooder");
        assert!(held_back(ended), "{ended:?} after {written} bytes");
    }
}

/// Does a WebSocket handshake by hand on `stream` and returns it, ready for raw frames.
fn upgrade(mut stream: TcpStream, web: SocketAddr) -> TcpStream {
    write!(
        stream,
        "GET /ws HTTP/1.1\r\nHost: {web}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .expect("handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(&mut stream, &mut byte).expect("response");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    stream
}

#[test]
fn a_browser_message_of_many_lines_is_held_as_one_message_not_as_its_lines() {
    let mut server = BinaryServer::start(&["--web", "127.0.0.1:0"]);
    let web: SocketAddr = server
        .expect_log("web page on http://")
        .rsplit("http://")
        .next()
        .and_then(|rest| rest.strip_suffix('/'))
        .expect("address")
        .parse()
        .expect("socket address");
    let (mut watcher, _) = LineClient::join(server.address);
    let before = server.rss_kib();
    // 64 KiB of one-character lines: 32,768 lines, let through at --rate.
    let message = "a\n".repeat(32 * 1024);
    let mut senders = Vec::new();
    for _ in 0..40 {
        let (mut sender, nick) = Browser::join(web);
        sender.send(&message);
        // Its first line reached the room: the server has read the whole message.
        watcher.expect_line(&format!("[{nick}] a"));
        senders.push(sender);
    }
    let grown = server.rss_kib().saturating_sub(before);
    // Split at once, each message took 2.8 MiB (112 MiB for 40). One held message and a
    // few lines each is a few MiB for all.
    assert!(grown < 24 * 1024, "grew by {grown} KiB");
}

#[test]
fn a_paste_whose_sender_closes_at_once_is_said_whole_while_others_talk() {
    // Flood control on (10 lines a second after 20): the paste waits to be said.
    let server = start_chat(Config::localhost());
    let address = server.local_addr();
    let (mut listener, _) = LineClient::join(address);
    let (mut talker, _) = LineClient::join(address);
    let (mut paster, paster_nick) = LineClient::join(address);
    let paste: String = (0..60).map(|n| format!("pasted {n}\n")).collect();
    paster.send_bytes(paste.as_bytes());
    // Like `nc -q0`: closed at once. The next line to it comes back as a reset.
    drop(paster);
    talker.send("anyone there?");
    let mut next = 0;
    while next < 60 {
        let line = listener.next_line().expect("a line");
        if line.starts_with(&format!("[{paster_nick}] ")) {
            assert_eq!(line, format!("[{paster_nick}] pasted {next}"));
            next += 1;
        }
    }
}
