//! `--web`: the page, the WebSocket chat beside nc clients, and every bad request refused
//! without touching anyone else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use tcpchat::{Config, Server};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use crate::support::{LineClient, PATIENCE, start_chat};

pub(crate) fn start_with_web(config: Config) -> (Server, SocketAddr) {
    let server = start_chat(Config {
        web: Some(String::from("127.0.0.1:0")),
        ..config
    });
    let web = server.web_addr().expect("a web address");
    (server, web)
}

/// A browser-like WebSocket client.
pub(crate) struct Browser {
    socket: WebSocket<TcpStream>,
}

impl Browser {
    pub(crate) fn connect(web: SocketAddr) -> Browser {
        let stream = TcpStream::connect(web).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let (socket, _) = tungstenite::client(format!("ws://{web}/ws"), stream).expect("handshake");
        Browser { socket }
    }

    /// Connects and reads the welcome; returns the client and its nick.
    pub(crate) fn join(web: SocketAddr) -> (Browser, String) {
        let mut browser = Browser::connect(web);
        let welcome = browser.expect_line("* welcome, ");
        let nick = welcome["* welcome, ".len()..]
            .split('!')
            .next()
            .expect("nick")
            .to_owned();
        (browser, nick)
    }

    /// The socket under the WebSocket, for raw frames.
    pub(crate) fn stream(&mut self) -> &mut TcpStream {
        self.socket.get_mut()
    }

    pub(crate) fn send(&mut self, text: &str) {
        self.socket
            .send(Message::text(text))
            .expect("send a text frame");
    }

    /// The next text frame; panics on anything else.
    pub(crate) fn next_frame(&mut self) -> String {
        loop {
            match self.socket.read().expect("a frame within PATIENCE") {
                Message::Text(text) => return text.to_string(),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("expected text, got {other:?}"),
            }
        }
    }

    /// Reads frames until a line containing `pattern`; every frame must hold whole lines.
    pub(crate) fn expect_line(&mut self, pattern: &str) -> String {
        let mut seen = Vec::new();
        loop {
            let frame = self.next_frame();
            assert!(frame.ends_with('\n'), "a frame of whole lines: {frame:?}");
            for line in frame.lines() {
                if line.contains(pattern) {
                    return line.to_owned();
                }
                seen.push(line.to_owned());
            }
            assert!(seen.len() < 100, "no {pattern:?} in {seen:?}");
        }
    }

    /// Reads until the server's close frame; returns its code.
    pub(crate) fn expect_close(&mut self) -> CloseCode {
        loop {
            match self.socket.read() {
                Ok(Message::Close(Some(frame))) => return frame.code,
                Ok(Message::Close(None)) => panic!("a close frame without a code"),
                Ok(_) => {}
                Err(error) => panic!("no close frame: {error}"),
            }
        }
    }
}

/// Sends raw bytes as one HTTP request and returns the whole response.
pub(crate) fn http(web: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(web).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream.write_all(request).expect("send request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

pub(crate) fn get(web: SocketAddr, path: &str) -> String {
    http(
        web,
        format!("GET {path} HTTP/1.1\r\nHost: {web}\r\n\r\n").as_bytes(),
    )
}

#[test]
fn a_browser_and_an_nc_client_chat_both_ways() {
    let (server, web) = start_with_web(Config::localhost());
    let (mut nc, nc_nick) = LineClient::join(server.local_addr());
    let (mut browser, browser_nick) = Browser::join(web);
    nc.expect_line(&format!("* {browser_nick} joined"));

    browser.send("hello from the web\n");
    assert_eq!(
        nc.expect_line("hello"),
        format!("[{browser_nick}] hello from the web")
    );
    nc.send("hi from nc");
    assert_eq!(
        browser.expect_line("hi from nc"),
        format!("[{nc_nick}] hi from nc")
    );
    // A frame holds one or more lines, handled exactly as typed lines; a frame's end ends
    // its last line.
    browser.send("/nick webby\nfirst\nsecond");
    assert_eq!(browser.expect_line("you are now"), "* you are now webby");
    assert_eq!(
        nc.expect_line("is now"),
        format!("* {browser_nick} is now webby")
    );
    assert_eq!(nc.next_line().as_deref(), Some("[webby] first"));
    assert_eq!(nc.next_line().as_deref(), Some("[webby] second"));
    browser.send("/who");
    let who = browser.expect_line("* in lobby");
    assert!(who.contains(&nc_nick) && who.contains("webby"), "{who}");
}

#[test]
fn the_page_is_served_with_a_strict_content_security_policy() {
    let (_server, web) = start_with_web(Config::localhost());
    let page = get(web, "/");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(
        page.contains("Content-Security-Policy: default-src 'none'"),
        "{page}"
    );
    assert!(page.contains("/app.js"), "{page}");
    let projector = get(web, "/?view=projector");
    assert!(projector.starts_with("HTTP/1.1 200 OK\r\n"), "{projector}");
    for (path, content_type) in [("/app.js", "text/javascript"), ("/app.css", "text/css")] {
        let response = get(web, path);
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.contains(&format!("Content-Type: {content_type}")),
            "{response}"
        );
    }
    assert!(get(web, "/secret").starts_with("HTTP/1.1 404 "));
    let post = http(
        web,
        format!("POST / HTTP/1.1\r\nHost: {web}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    );
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
}

#[test]
fn bad_requests_are_refused_while_others_chat_on() {
    let (server, web) = start_with_web(Config::localhost());
    let (mut alice, _) = LineClient::join(server.local_addr());
    let (mut bob, bob_nick) = LineClient::join(server.local_addr());
    alice.expect_line("joined");
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    let cases = [
        (
            "not HTTP".to_owned(),
            "hello there\r\n\r\n".to_owned(),
            "400",
        ),
        (
            "a Host that is not this server (DNS rebinding)".to_owned(),
            "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_owned(),
            "403",
        ),
        (
            "no Host".to_owned(),
            "GET / HTTP/1.1\r\n\r\n".to_owned(),
            "403",
        ),
        (
            "another site's page opening the socket".to_owned(),
            format!(
                "GET /ws HTTP/1.1\r\nHost: {web}\r\nOrigin: http://evil.example\r\n{upgrade}{key}Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            "403",
        ),
        (
            "a handshake without a key".to_owned(),
            format!(
                "GET /ws HTTP/1.1\r\nHost: {web}\r\n{upgrade}Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            "400",
        ),
        (
            "an old WebSocket version".to_owned(),
            format!(
                "GET /ws HTTP/1.1\r\nHost: {web}\r\n{upgrade}{key}Sec-WebSocket-Version: 8\r\n\r\n"
            ),
            "426",
        ),
        (
            "a huge request head".to_owned(),
            format!(
                "GET / HTTP/1.1\r\nHost: {web}\r\nX-Junk: {}\r\n\r\n",
                "x".repeat(20_000)
            ),
            "431",
        ),
    ];
    for (what, request, status) in cases {
        let response = http(web, request.as_bytes());
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {response}"
        );
    }
    bob.send("still here");
    assert_eq!(
        alice.expect_line("still here"),
        format!("[{bob_nick}] still here")
    );
}

/// A response's head (up to and including its blank line) and the bytes after it.
fn split_response(response: &str) -> (&str, &str) {
    let end = response.find("\r\n\r\n").expect("a complete head") + 4;
    response.split_at(end)
}

#[test]
fn head_answers_like_get_without_the_body() {
    let (_server, web) = start_with_web(Config::localhost());
    for path in ["/", "/app.js", "/app.css", "/secret"] {
        let get = get(web, path);
        let (get_head, get_body) = split_response(&get);
        assert!(
            get_head.contains(&format!("Content-Length: {}\r\n", get_body.len())),
            "{get}"
        );
        assert!(!get_body.is_empty(), "{get}");
        let head = http(
            web,
            format!("HEAD {path} HTTP/1.1\r\nHost: {web}\r\n\r\n").as_bytes(),
        );
        // The same status and headers, Content-Length included, and no byte after them.
        assert_eq!(head, get_head, "HEAD {path}");
    }
}

/// A complete request head of exactly `length` bytes for `/`.
fn head_of_length(web: SocketAddr, length: usize) -> String {
    let start = format!("GET / HTTP/1.1\r\nHost: {web}\r\nX-Pad: ");
    let end = "\r\n\r\n";
    let pad = "x".repeat(length - start.len() - end.len());
    format!("{start}{pad}{end}")
}

#[test]
fn a_head_over_8_kib_is_refused_even_in_one_write() {
    let (_server, web) = start_with_web(Config::localhost());
    let at_cap = http(web, head_of_length(web, 8 * 1024).as_bytes());
    assert!(at_cap.starts_with("HTTP/1.1 200 OK\r\n"), "{at_cap}");
    // Just over the cap, up to what a read past it would have taken in whole.
    for length in [8 * 1024 + 1, 8 * 1024 + 512, 9 * 1024] {
        let response = http(web, head_of_length(web, length).as_bytes());
        assert!(
            response.starts_with("HTTP/1.1 431 "),
            "{length} bytes: {response}"
        );
    }
}

#[test]
fn a_request_that_trickles_in_is_cut_off_at_the_deadline() {
    let (server, web) = start_with_web(Config::localhost());
    let mut slow = TcpStream::connect(web).expect("connect");
    slow.set_read_timeout(Some(PATIENCE * 2)).expect("timeout");
    slow.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").expect("send");
    // Others are served meanwhile.
    let (mut browser, _) = Browser::join(web);
    let (mut nc, nc_nick) = LineClient::join(server.local_addr());
    nc.send("meanwhile");
    assert_eq!(
        browser.expect_line("meanwhile"),
        format!("[{nc_nick}] meanwhile")
    );
    let mut response = String::new();
    let _ = slow.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 408 "), "{response}");
}

#[test]
fn frames_that_break_the_rules_close_that_socket_only() {
    let (server, web) = start_with_web(Config {
        max_line: 100,
        ..Config::localhost()
    });
    let (mut nc, nc_nick) = LineClient::join(server.local_addr());

    let (mut binary, _) = Browser::join(web);
    binary
        .socket
        .send(Message::binary(vec![1, 2, 3]))
        .expect("send binary");
    assert_eq!(binary.expect_close(), CloseCode::Unsupported);

    let (mut huge, _) = Browser::join(web);
    huge.send(&"x".repeat(100_000));
    assert_eq!(huge.expect_close(), CloseCode::Size);

    // A line over --max-line is dropped with a reason, and the socket stays open.
    let (mut long, long_nick) = Browser::join(web);
    long.send(&"y".repeat(500));
    long.expect_line("! line too long");
    long.send("short");
    assert_eq!(nc.expect_line("short"), format!("[{long_nick}] short"));

    // An unmasked frame from a client is a protocol error (RFC 6455 5.1).
    let mut raw = TcpStream::connect(web).expect("connect");
    raw.set_read_timeout(Some(PATIENCE)).expect("timeout");
    raw.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {web}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("handshake");
    raw.write_all(&[0x81, 0x02, b'h', b'i'])
        .expect("unmasked frame");
    let mut received = Vec::new();
    let _ = raw.read_to_end(&mut received);
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
    // A close frame (0x88) with status 1002 (0x03 0xea).
    assert!(
        received
            .windows(4)
            .any(|w| w[0] == 0x88 && w[2..4] == [0x03, 0xea]),
        "{received:?}"
    );

    nc.send("all fine");
    assert_eq!(
        long.expect_line("all fine"),
        format!("[{nc_nick}] all fine")
    );
}

#[test]
fn browsers_count_against_max_clients_and_hear_the_drain() {
    let (server, web) = start_with_web(Config {
        max_clients: 2,
        drain_timeout: std::time::Duration::from_secs(0),
        ..Config::localhost()
    });
    let (mut nc, _) = LineClient::join(server.local_addr());
    let (mut browser, _) = Browser::join(web);
    nc.expect_line("joined");
    // The page is no client: it is served on a full server, the chat socket is not.
    assert!(get(web, "/").starts_with("HTTP/1.1 200 "));
    let full = http(
        web,
        format!(
            "GET /ws HTTP/1.1\r\nHost: {web}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(full.starts_with("HTTP/1.1 503 "), "{full}");
    assert!(full.ends_with("! server full\n"), "{full}");
    server.shutdown();
    browser.expect_line("* server is shutting down");
    browser.expect_line("* server closed, bye!");
    assert_eq!(browser.expect_close(), CloseCode::Away);
    server.join().expect("clean exit");
}

#[test]
fn an_idle_browser_is_timed_out_like_any_client() {
    let (_server, web) = start_with_web(Config {
        idle_timeout: Some(std::time::Duration::from_millis(300)),
        ..Config::localhost()
    });
    let (mut browser, _) = Browser::join(web);
    browser.expect_line("* idle timeout, disconnecting, bye!");
    assert_eq!(browser.expect_close(), CloseCode::Away);
}

#[test]
fn a_latin_1_motd_reaches_browsers_as_valid_utf_8() {
    let motd = crate::support::TempPath::new("latin-1-motd");
    std::fs::write(&motd.0, b"caf\xe9 au \x1b[31mlait\r\nsecond line\n").expect("write motd");
    let (_server, web) = start_with_web(Config {
        motd: Some(motd.0.clone()),
        ..Config::localhost()
    });
    // A text frame that is not UTF-8 would end this read with an error.
    let (mut browser, _) = Browser::join(web);
    let motd = loop {
        let frame = browser.next_frame();
        if frame.contains("caf") {
            break frame;
        }
    };
    assert_eq!(motd, "caf\u{fffd} au lait\nsecond line\n");
    browser.send("/who");
    browser.expect_line("* in lobby (1)");
}

#[test]
fn browsers_get_event_lines_that_nc_users_never_see() {
    let (server, web) = start_with_web(Config {
        op_password: Some(String::from("sesame")),
        ..Config::localhost()
    });
    let (mut nc, nc_nick) = LineClient::join(server.local_addr());
    let (mut browser, browser_nick) = Browser::join(web);
    assert_eq!(
        browser.expect_line("\u{1}{\"you\""),
        format!("\u{1}{{\"you\":{{\"nick\":\"{browser_nick}\",\"room\":\"lobby\"}}}}")
    );
    nc.expect_line(&format!("* {browser_nick} joined"));
    nc.send("/nick zed");
    assert_eq!(
        browser.expect_line("renamed"),
        format!("\u{1}{{\"renamed\":{{\"old\":\"{nc_nick}\",\"new\":\"zed\"}}}}")
    );
    // With /time on, text lines are stamped; event lines still start with their mark.
    browser.send("/time on\n/who");
    let people = browser.expect_line("\u{1}{\"people\"");
    assert!(people.starts_with('\u{1}'), "{people:?}");
    nc.send("/op sesame");
    nc.expect_line("operator");
    nc.send(&format!("/kick {browser_nick} enough"));
    assert_eq!(
        browser.expect_line("closing"),
        "\u{1}{\"closing\":\"kicked\"}"
    );
    // The nc client saw only text: its next line answers its own /who.
    nc.send("/who");
    for line in std::iter::from_fn(|| nc.next_line()).take_while(|line| !line.starts_with("* in "))
    {
        assert!(!line.contains('\u{1}'), "{line:?}");
    }
}

/// The frames of a server's byte stream (unmasked, as a server sends them): each opcode.
fn frame_opcodes(mut bytes: &[u8]) -> Vec<u8> {
    let mut opcodes = Vec::new();
    while bytes.len() >= 2 {
        let (opcode, short) = (bytes[0] & 0x0f, usize::from(bytes[1] & 0x7f));
        let (length, header) = match short {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => (
                usize::try_from(u64::from_be_bytes(
                    bytes[2..10].try_into().expect("8 bytes"),
                ))
                .expect("a length"),
                10,
            ),
            length => (length, 2),
        };
        opcodes.push(opcode);
        bytes = &bytes[(header + length).min(bytes.len())..];
    }
    opcodes
}

#[test]
fn nothing_follows_the_close_frame_while_others_talk() {
    // The talkers read everything too, but on a loaded machine they may fall behind:
    // room to do so instead of being cut as slow consumers.
    let (server, web) = start_with_web(Config {
        rate: 0,
        max_pending: 256 * 1024 * 1024,
        ..Config::localhost()
    });
    // Three clients talk as fast as they can, so that lines reach the hub between a
    // browser's close and its leaving.
    let talking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let floods: Vec<_> = (0..3)
        .map(|_| {
            let (talker, _) = LineClient::join(server.local_addr());
            let mut writer = talker.stream().try_clone().expect("a second handle");
            let talking = std::sync::Arc::clone(&talking);
            // It reads what everyone says too, or it would be cut as a slow consumer.
            std::thread::spawn(move || {
                let mut reader = talker.stream();
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
            });
            std::thread::spawn(move || {
                while talking.load(std::sync::atomic::Ordering::Relaxed) {
                    let line = b"a line for everyone, the closing browser included\n";
                    if writer.write_all(line).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    for _ in 0..25 {
        let mut stream = TcpStream::connect(web).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {web}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("handshake");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream
                .read_exact(&mut byte)
                .expect("the handshake's answer");
            head.push(byte[0]);
        }
        // A masked close frame (code 1000), while lines keep coming.
        stream
            .write_all(&[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2])
            .expect("close");
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        let opcodes = frame_opcodes(&rest);
        let close = opcodes.iter().position(|&opcode| opcode == 0x8);
        assert_eq!(
            close,
            Some(opcodes.len() - 1),
            "frames after the close: {opcodes:?}"
        );
    }
    talking.store(false, std::sync::atomic::Ordering::Relaxed);
    for flood in floods {
        flood.join().expect("a talker");
    }
}
