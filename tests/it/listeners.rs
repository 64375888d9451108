//! Every port is bounded and counted: no port can take the descriptors or threads the chat
//! needs, `--max-per-ip` counts a client's connections on all of them, and `--once` is one
//! chat client, whatever pages and scrapes came before it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use tcpchat::Config;

use crate::metrics::{scrape, start_with_metrics};
use crate::support::{LineClient, PATIENCE, connect_from, start_chat};
use crate::web::{Browser, get, start_with_web};

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

#[test]
fn idle_metrics_connections_cannot_take_the_descriptors_the_chat_needs() {
    let (server, metrics) = start_with_metrics(&[]);
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(metrics).expect("connect"))
        .collect();
    // Accepted in order: when this scrape is answered, every idle one was accepted before.
    let response = scrape(metrics);
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(
        response.contains("tcpchat_refusals_total{reason=\"scrapes_full\"}"),
        "{response}"
    );
    // The oldest were closed to make room: the server holds a few dozen descriptors, not
    // hundreds (their threads end a moment after their sockets are shut down).
    let deadline = Instant::now() + PATIENCE;
    while open_descriptors(server.pid()) > 100 {
        assert!(
            Instant::now() < deadline,
            "{} descriptors open",
            open_descriptors(server.pid())
        );
        std::thread::yield_now();
    }
    let (mut ann, ann_nick) = LineClient::join(server.address);
    let (mut bob, _) = LineClient::join(server.address);
    ann.send("the chat is not starved");
    bob.expect_line(&format!("[{ann_nick}] the chat is not starved"));
    drop(idle);
}

#[test]
fn max_per_ip_counts_an_address_on_every_port() {
    let server = start_chat(Config {
        max_per_ip: 2,
        metrics: Some(String::from("127.0.0.1:0")),
        web: Some(String::from("127.0.0.1:0")),
        ..Config::localhost()
    });
    let web = server.web_addr().expect("web port");
    let metrics = server.metrics_addr().expect("metrics port");
    // Two chat clients from one address use up its share...
    let (_first, _) = LineClient::join_from("127.0.0.2", server.local_addr());
    let (_second, _) = LineClient::join_from("127.0.0.2", server.local_addr());
    // ...on the other ports too.
    for port in [web, metrics] {
        // Refused at once, before any request (none is sent: the server would close with
        // it unread, and the reset could overtake the answer).
        let mut refused = connect_from("127.0.0.2", port);
        let mut response = String::new();
        let _ = refused.read_to_string(&mut response);
        assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
        assert!(
            response.ends_with("! too many connections from your address\n"),
            "{response}"
        );
    }
    // Another address is not concerned.
    let mut other = connect_from("127.0.0.3", metrics);
    write!(other, "GET /metrics HTTP/1.1\r\nHost: {metrics}\r\n\r\n").expect("request");
    let mut response = String::new();
    let _ = other.read_to_string(&mut response);
    assert!(
        response.contains("tcpchat_refusals_total{reason=\"per_ip\"} 2"),
        "{response}"
    );
}

#[test]
fn once_with_web_serves_the_page_then_its_one_browser_then_exits() {
    let (server, web) = start_with_web(Config {
        once: true,
        ..Config::localhost()
    });
    for path in ["/", "/app.js", "/app.css", "/no-such-page"] {
        let response = get(web, path);
        assert!(response.starts_with("HTTP/1.1 "), "{path}: {response}");
    }
    let (mut browser, _) = Browser::join(web);
    browser.send("/quit");
    browser.expect_line("* bye!");
    server.join().expect("the server ends with its one client");
}

#[test]
fn once_with_metrics_is_not_used_up_by_a_scrape() {
    let (server, metrics) = start_with_metrics(&["--once"]);
    assert!(scrape(metrics).starts_with("HTTP/1.1 200 "));
    assert!(scrape(metrics).starts_with("HTTP/1.1 200 "));
    let (mut only, _) = LineClient::join(server.address);
    only.send("/quit");
    only.expect_closed();
    let (status, _) = server.wait_exit();
    assert!(status.success(), "{status}");
}

#[test]
fn the_metrics_port_speaks_plain_http_to_refusals_even_with_tls() {
    let server = start_chat(Config {
        max_per_ip: 1,
        metrics: Some(String::from("127.0.0.1:0")),
        tls: Some(tcpchat::Certificate::SelfSigned),
        ..Config::localhost()
    });
    let metrics = server.metrics_addr().expect("metrics port");
    // An idle connection holds the address's one place (until the 10 s request deadline).
    let _idle = connect_from("127.0.0.2", metrics);
    let mut refused = connect_from("127.0.0.2", metrics);
    let mut response = String::new();
    let _ = refused.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 503 "), "{response:?}");
}
