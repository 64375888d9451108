//! `--metrics`: the Prometheus endpoint's numbers move as a scripted session expects.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::support::{BinaryServer, LineClient, PATIENCE};

/// `GET /metrics`; the whole response, which must be a 200.
pub(crate) fn scrape(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {address}\r\n\r\n").expect("request");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    response
}

/// The value of the sample `name` (with its labels, exactly as printed).
pub(crate) fn value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

/// Sends raw bytes as one request and returns the whole response.
fn http(address: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream.write_all(request).expect("send request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// Runs the binary with `--metrics 127.0.0.1:0` and `args`; returns it and the metrics
/// port's address, read from the log.
pub(crate) fn start_with_metrics(args: &[&str]) -> (BinaryServer, SocketAddr) {
    let mut server = BinaryServer::start(&[&["--metrics", "127.0.0.1:0"], args].concat());
    let line = server.expect_log("metrics on http://");
    let address: SocketAddr = line
        .rsplit("http://")
        .next()
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .expect("address")
        .parse()
        .expect("socket address");
    (server, address)
}

#[test]
fn metrics_count_what_a_scripted_session_did() {
    let (server, address) =
        start_with_metrics(&["--max-clients", "2", "--rate", "1", "--burst", "1"]);
    let before = scrape(address);
    assert_eq!(value(&before, "tcpchat_lines_received_total"), 0.0);
    assert_eq!(value(&before, "tcpchat_rooms"), 1.0);

    let (mut ann, ann_nick) = LineClient::join(server.address);
    let (mut bob, _) = LineClient::join(server.address);
    ann.expect_line("joined");
    // Two lines at once with a burst of one: the second waits for flood control.
    ann.send("one");
    ann.send("two");
    bob.expect_line(&format!("[{ann_nick}] two"));
    bob.send("/join games");
    bob.expect_line("you are now in games");
    // The server is full for a third; a scrape still gets through.
    let mut third = LineClient::connect(server.address);
    assert_eq!(third.next_line().as_deref(), Some("! server full"));

    let after = scrape(address);
    assert_eq!(value(&after, "tcpchat_lines_received_total"), 3.0);
    assert_eq!(
        value(&after, "tcpchat_clients{transport=\"tcp\",tls=\"no\"}"),
        2.0
    );
    assert_eq!(value(&after, "tcpchat_rooms"), 2.0);
    assert_eq!(
        value(&after, "tcpchat_refusals_total{reason=\"server_full\"}"),
        1.0
    );
    assert!(
        value(&after, "tcpchat_flood_pauses_total") >= 1.0,
        "{after}"
    );
    // Each line to each recipient: welcomes, the join notice, two lines to bob, bob's move
    // (the notice to ann and the answer to bob).
    assert!(value(&after, "tcpchat_deliveries_total") >= 7.0, "{after}");
    assert!(value(&after, "tcpchat_sent_bytes_total") > 100.0, "{after}");
    assert_eq!(value(&after, "tcpchat_slow_consumers_total"), 0.0);
    bob.send("/quit");
    bob.expect_line("* bye!");
    let later = scrape(address);
    assert_eq!(
        value(&later, "tcpchat_clients{transport=\"tcp\",tls=\"no\"}"),
        1.0
    );
}

#[test]
fn bad_requests_are_answered_as_the_web_port_answers_and_counted() {
    let (_server, address) = start_with_metrics(&[]);
    let not_http = http(address, b"hello there\r\n\r\n");
    assert!(not_http.starts_with("HTTP/1.1 400 "), "{not_http}");
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nX-Junk: {}\r\n\r\n",
        "x".repeat(20_000)
    );
    let response = http(address, huge.as_bytes());
    assert!(
        response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{response}"
    );
    // A 9 KiB head in one write: over the 8 KiB cap, however it arrives.
    let start = format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nX-Pad: ");
    let pad = "x".repeat(9 * 1024 - start.len() - "\r\n\r\n".len());
    let response = http(address, format!("{start}{pad}\r\n\r\n").as_bytes());
    assert!(response.starts_with("HTTP/1.1 431 "), "{response}");
    assert_eq!(
        value(
            &scrape(address),
            "tcpchat_refusals_total{reason=\"bad_request\"}"
        ),
        3.0
    );
}

#[test]
fn head_of_metrics_answers_like_get_without_the_body() {
    let (_server, address) = start_with_metrics(&[]);
    let request = |method: &str, path: &str| {
        http(
            address,
            format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes(),
        )
    };
    for path in ["/metrics", "/elsewhere"] {
        // Nothing happens in the chat between the two, and scrapes count nothing: the
        // text, and its length, stay the same.
        let head = request("HEAD", path);
        let get = request("GET", path);
        let end = get.find("\r\n\r\n").expect("a complete head") + 4;
        let (get_head, get_body) = get.split_at(end);
        assert!(
            get_head.contains(&format!("Content-Length: {}\r\n", get_body.len())),
            "{get}"
        );
        assert!(!get_body.is_empty(), "{get}");
        assert_eq!(head, get_head, "HEAD {path}");
    }
}
