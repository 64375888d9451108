//! `--web`: the chat from a browser. A connection on the web port is one HTTP request:
//! the page (`/`, `/app.js`, `/app.css`, compiled into the binary), or the WebSocket
//! endpoint `/ws`, after whose handshake the connection is a chat client like any other
//! (transport/websocket.rs). Read http.rs for the request and responses.
//!
//! The connection's thread writes the HTTP response and the handshake itself: until the
//! handshake is done the connection is not a chat client and the hub does not know it.
//! From then on the hub is its one writer.

pub(crate) mod http;
pub(crate) mod scrape;

#[cfg(fuzzing)]
pub(crate) use http::fuzz_head;

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use log::{debug, info};

use crate::client_thread::{self, ClientLimits};
use crate::error::describe;
use crate::hub::Event;
use crate::service::Connection;
use crate::transport::websocket::WebSocketInput;
use http::{Body, Request, host_name, respond, respond_error};

const PAGE: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/app.css");
/// After a response, how long the browser has to close its side (see
/// `Connection::wait_for_close`).
const LINGER: Duration = Duration::from_secs(2);

/// What the web side needs beyond the chat's limits.
#[derive(Debug, Clone, Default)]
pub(crate) struct WebSettings {
    /// Origins allowed besides this server's own (`--web-origin`), e.g.
    /// `http://chat.school.lan:8080`; their host names are accepted in `Host` too.
    pub extra_origins: Vec<String>,
    pub idle_timeout: Option<Duration>,
}

/// Serves one connection on the web port: a page, an error, or a chat client.
#[inline(never)] // its frame only for web connections: ARCHITECTURE.md, "Stack sizes"
pub(crate) fn serve(
    connection: Connection,
    hub: &SyncSender<Event>,
    limits: ClientLimits,
    settings: &WebSettings,
) {
    if let Some(browser) = answer(connection, limits, settings) {
        let Browser {
            connection,
            mut input,
        } = *browser;
        client_thread::serve_client(connection, hub, limits, &mut input);
    }
}

/// A browser whose WebSocket is open.
struct Browser {
    connection: Connection,
    input: WebSocketInput,
}

/// Answers the request: a page or an error, or the WebSocket's handshake, which makes the
/// connection a browser client. Never inlined, so that its frame (and the handshake's) is
/// gone while the client is served: an idle client's thread waits on one page of stack
/// less (ARCHITECTURE.md, "Stack sizes").
#[inline(never)]
fn answer(
    connection: Connection,
    limits: ClientLimits,
    settings: &WebSettings,
) -> Option<Box<Browser>> {
    let peer = connection.peer;
    let stream = &connection.stream;
    let (request, already_read) = match http::read_request(&connection) {
        Ok(request) => request,
        Err(error) => {
            if let Some((status, why)) = error.refusal(&connection, "web") {
                finish(&connection, status, why, Body::Sent);
            }
            return None;
        }
    };
    let local_ip = stream.local_addr().map(|address| address.ip()).ok();
    if let Err(why) = settings.check_destination(&request, local_ip) {
        info!("web {peer}: refused: {why}");
        connection.metrics.refused("bad_request");
        let body = Body::for_method(&request.method);
        finish(&connection, "403 Forbidden", &why, body);
        return None;
    }
    let page = match (request.method.as_str(), request.path.as_str()) {
        (_, "/ws") => return upgrade(connection, limits, settings, request, already_read),
        ("GET" | "HEAD", "/") => Some(("text/html; charset=utf-8", PAGE)),
        ("GET" | "HEAD", "/app.js") => Some(("text/javascript; charset=utf-8", SCRIPT)),
        ("GET" | "HEAD", "/app.css") => Some(("text/css; charset=utf-8", STYLE)),
        ("GET" | "HEAD", _) => None,
        _ => {
            finish(
                &connection,
                "405 Method Not Allowed",
                "only GET and HEAD are served",
                Body::Sent,
            );
            return None;
        }
    };
    let sent = Body::for_method(&request.method);
    let _ = match page {
        Some((content_type, page)) => {
            debug!("web {peer}: {} {}", request.method, request.path);
            respond(&connection, "200 OK", content_type, page.as_bytes(), sent)
        }
        None => respond_error(&connection, "404 Not Found", "no such page", sent),
    };
    close(&connection);
    None
}

/// Checks the WebSocket handshake; the browser, if it is one the chat takes.
fn upgrade(
    connection: Connection,
    limits: ClientLimits,
    settings: &WebSettings,
    request: Request,
    already_read: Vec<u8>,
) -> Option<Box<Browser>> {
    let peer = connection.peer;
    let key = match &request.websocket_key {
        Some(key) if request.method == "GET" && request.wants_websocket => key,
        _ => {
            info!("web {peer}: refused: bad WebSocket handshake");
            connection.metrics.refused("bad_handshake");
            let body = Body::for_method(&request.method);
            finish(
                &connection,
                "400 Bad Request",
                "bad WebSocket handshake",
                body,
            );
            return None;
        }
    };
    if request.websocket_version.as_deref() != Some("13") {
        info!("web {peer}: refused: WebSocket version is not 13");
        connection.metrics.refused("bad_handshake");
        finish(
            &connection,
            "426 Upgrade Required",
            "WebSocket version 13 only",
            Body::for_method(&request.method),
        );
        return None;
    }
    if let Err(refusal) = connection.become_client() {
        info!("web {peer}: refused: {}", refusal.reason());
        connection.metrics.refused(refusal.label());
        let _ = respond(
            &connection,
            "503 Service Unavailable",
            "text/plain; charset=utf-8",
            &refusal.line(),
            Body::Sent,
        );
        close(&connection);
        return None;
    }
    if let Err(error) = http::respond_switching_protocols(&connection, key) {
        debug!("web {peer}: handshake failed: {}", describe(&error));
        return None;
    }
    debug!("web {peer}: WebSocket open");
    let input = WebSocketInput::new(already_read, limits.max_line, settings.idle_timeout);
    Some(Box::new(Browser { connection, input }))
}

/// Sends an error response (its body unless it answers HEAD) and closes.
fn finish(connection: &Connection, status: &str, why: &str, body: Body) {
    let _ = respond_error(connection, status, why, body);
    close(connection);
}

/// Closes after a response, letting the browser read all of it first.
fn close(connection: &Connection) {
    let _ = connection.stream.shutdown(std::net::Shutdown::Write);
    connection.wait_for_close(LINGER);
}

impl WebSettings {
    /// Whether the request is meant for this server: its `Host` names this server (the
    /// address the browser reached, `localhost`, or a `--web-origin` host), so that a page
    /// elsewhere cannot reach it through a DNS name of its own, and its `Origin`, if any,
    /// is this server's or listed, so that no other web site can open a chat socket from a
    /// student's browser.
    fn check_destination(&self, request: &Request, local_ip: Option<IpAddr>) -> Result<(), String> {
        let Some(host) = request.host.as_deref() else {
            return Err(String::from("no Host header"));
        };
        let name = host_name(host);
        let is_local_ip = match (name.parse::<IpAddr>(), local_ip) {
            (Ok(ip), Some(local)) => ip.to_canonical() == local.to_canonical(),
            _ => false,
        };
        let is_listed = self
            .extra_origins
            .iter()
            .any(|origin| host_name(authority(origin)).eq_ignore_ascii_case(name));
        if !(is_local_ip || name.eq_ignore_ascii_case("localhost") || is_listed) {
            return Err(format!("Host {host} is not this server (see --web-origin)"));
        }
        if let Some(origin) = request.origin.as_deref() {
            let same_origin = ["http://", "https://"].iter().any(|scheme| {
                origin
                    .strip_prefix(scheme)
                    .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
            });
            let listed = self
                .extra_origins
                .iter()
                .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin));
            if !same_origin && !listed {
                return Err(format!(
                    "Origin {origin} is not this server (see --web-origin)"
                ));
            }
        }
        Ok(())
    }
}

/// `chat.lan:8080` out of `http://chat.lan:8080/`.
fn authority(origin: &str) -> &str {
    let rest = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// A 503 response holding `line` (`! server full`), for a refusal at accept time.
pub fn unavailable_response(line: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        line.len()
    )
    .into_bytes();
    response.extend_from_slice(line);
    response
}

/// The web page's address, for the log: `http://0.0.0.0:8080/` (`https` with TLS).
pub fn page_url(address: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{address}/")
}
