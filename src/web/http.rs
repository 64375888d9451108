//! The HTTP side of `--web`: reading one request within a deadline and a size cap, checking
//! that it is meant for this server, and the responses.

use std::io;

use crate::service::Connection;
use crate::sys::timed_out;
use std::time::{Duration, Instant};

/// The most a request's head (request line and headers) may take. 8 KiB: a browser's
/// request with cookies fits many times over.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a client has to send its whole request head. A slowloris client that trickles
/// headers is cut off after this, whatever its pace.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Headers read at most.
const MAX_HEADERS: usize = 32;

/// What the responses carry so that the page can only talk to this server and load only
/// its own script and style.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The parts of a request the server acts on.
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    /// The path without its query.
    pub path: String,
    pub host: Option<String>,
    pub origin: Option<String>,
    /// `Upgrade: websocket` and `Connection: upgrade` were both asked for.
    pub wants_websocket: bool,
    pub websocket_key: Option<String>,
    pub websocket_version: Option<String>,
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum RequestError {
    /// Not HTTP, or malformed: 400.
    Malformed,
    /// The head passed [`MAX_REQUEST_HEAD`]: 431.
    TooLarge,
    /// The deadline passed before the head was complete: 408.
    TooSlow,
    /// The client went away.
    Closed,
    Io(io::Error),
}

impl RequestError {
    /// Logs a request that could not be read (`PORT PEER: refused: WHY`, or a debug line
    /// when the client went away) and counts it as `bad_request`; returns what to answer
    /// with, if anyone is left to answer.
    pub(crate) fn refusal(
        &self,
        connection: &Connection,
        port: &str,
    ) -> Option<(&'static str, &'static str)> {
        let peer = connection.peer;
        let Some((status, why)) = self.status() else {
            if let RequestError::Io(error) = self {
                log::debug!(
                    "{port} {peer}: read failed: {}",
                    crate::error::describe(error)
                );
            }
            return None;
        };
        log::info!("{port} {peer}: refused: {why}");
        connection.metrics.refused("bad_request");
        Some((status, why))
    }

    /// The status and the one-line reason to answer with, the same on every port that
    /// reads requests (web and metrics); `None` when nobody is left to answer (the client
    /// went away, or its socket failed).
    pub fn status(&self) -> Option<(&'static str, &'static str)> {
        match self {
            RequestError::Malformed => Some(("400 Bad Request", "not an HTTP request")),
            RequestError::TooLarge => Some((
                "431 Request Header Fields Too Large",
                "request head too large",
            )),
            RequestError::TooSlow => Some(("408 Request Timeout", "request too slow")),
            RequestError::Closed | RequestError::Io(_) => None,
        }
    }
}

/// Reads one request head within [`REQUEST_DEADLINE`]; returns it with whatever bytes came
/// after it (the start of a WebSocket stream).
pub fn read_request(connection: &Connection) -> Result<(Request, Vec<u8>), RequestError> {
    let stream = &connection.stream;
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RequestError::TooSlow);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(RequestError::Io)?;
        // Never past the cap: a head that has not ended within it is too large, however
        // the client cut it into packets. (The head stops short of the cap, or parse_head
        // has refused it.)
        let room = (MAX_REQUEST_HEAD - head.len()).min(chunk.len());
        let count = match connection.read(&mut chunk[..room]) {
            Ok(0) => return Err(RequestError::Closed),
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if timed_out(&error) => {
                return Err(RequestError::TooSlow);
            }
            Err(error) => return Err(RequestError::Io(error)),
        };
        head.extend_from_slice(&chunk[..count]);
        if let Some((request, length)) = parse_head(&head)? {
            return Ok((request, head[length..].to_vec()));
        }
    }
}

/// Fuzzing (fuzz/): any bytes as what a client sent. Never a panic; a head is found only
/// within the cap, and a longer one is too large.
#[cfg(fuzzing)]
pub(crate) fn fuzz_head(data: &[u8]) {
    match parse_head(data) {
        Ok(Some((_, length))) => assert!(length <= data.len() && length <= MAX_REQUEST_HEAD),
        Ok(None) => assert!(data.len() <= MAX_REQUEST_HEAD),
        Err(_) => {}
    }
}

/// What the bytes received so far say: a request and the length of its head, or not yet
/// (`None`). A head longer than [`MAX_REQUEST_HEAD`] is too large, ended or not.
fn parse_head(received: &[u8]) -> Result<Option<(Request, usize)>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(received) {
        Ok(httparse::Status::Complete(length)) if length > MAX_REQUEST_HEAD => {
            Err(RequestError::TooLarge)
        }
        Ok(httparse::Status::Complete(length)) => Ok(Some((Request::from_parsed(&parsed), length))),
        Ok(httparse::Status::Partial) if received.len() >= MAX_REQUEST_HEAD => {
            Err(RequestError::TooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(RequestError::TooLarge),
        Err(_) => Err(RequestError::Malformed),
    }
}

impl Request {
    fn from_parsed(parsed: &httparse::Request<'_, '_>) -> Request {
        let header = |name: &str| {
            parsed
                .headers
                .iter()
                .find(|header| header.name.eq_ignore_ascii_case(name))
                .and_then(|header| std::str::from_utf8(header.value).ok())
                .map(|value| value.trim().to_owned())
        };
        let has_token = |name: &str, token: &str| {
            parsed
                .headers
                .iter()
                .filter(|header| header.name.eq_ignore_ascii_case(name))
                .filter_map(|header| std::str::from_utf8(header.value).ok())
                .flat_map(|value| value.split(','))
                .any(|value| value.trim().eq_ignore_ascii_case(token))
        };
        let target = parsed.path.unwrap_or("/");
        Request {
            method: parsed.method.unwrap_or("").to_owned(),
            path: target.split('?').next().unwrap_or("/").to_owned(),
            host: header("host"),
            origin: header("origin"),
            wants_websocket: has_token("upgrade", "websocket")
                && has_token("connection", "upgrade"),
            websocket_key: header("sec-websocket-key"),
            websocket_version: header("sec-websocket-version"),
        }
    }
}

/// The host part of a `Host` header or an origin's authority (`[::1]:80` gives `::1`).
pub fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Whether a response carries its body: not in answer to HEAD, whose response is the head
/// GET's would have, Content-Length included, and nothing after it (RFC 9110, 9.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Sent,
    Omitted,
}

impl Body {
    /// [`Body::Omitted`] in answer to HEAD, [`Body::Sent`] to any other method.
    pub fn for_method(method: &str) -> Body {
        if method == "HEAD" {
            Body::Omitted
        } else {
            Body::Sent
        }
    }
}

/// Writes a whole response (without `body` if [`Body::Omitted`]). Responses are small, so
/// a client that does not read them still cannot hold this thread for long: the socket's
/// send buffer takes them whole.
pub fn respond(
    connection: &Connection,
    status: &str,
    content_type: &str,
    body: &[u8],
    sent: Body,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\n\
         Content-Type: {content_type}\r\n\
         Content-Length: {}\r\n\
         Content-Security-Policy: {CONTENT_SECURITY_POLICY}\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\n\
         Cache-Control: no-cache\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let mut response = head.into_bytes();
    if sent == Body::Sent {
        response.extend_from_slice(body);
    }
    connection.write_all(&response)
}

/// A plain-text error response: `status` and one line saying why.
pub fn respond_error(
    connection: &Connection,
    status: &str,
    why: &str,
    sent: Body,
) -> io::Result<()> {
    respond(
        connection,
        status,
        "text/plain; charset=utf-8",
        format!("{why}\n").as_bytes(),
        sent,
    )
}

/// The 101 response that turns the connection into a WebSocket.
pub fn respond_switching_protocols(connection: &Connection, key: &str) -> io::Result<()> {
    let accept = accept_key(key);
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    connection.write_all(head.as_bytes())
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455, 4.2.2): the base64 of the
/// SHA-1 of the key and the protocol's GUID.
fn accept_key(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key.as_bytes());
    context.update(GUID.as_bytes());
    let digest = context.finish();
    let mut encoded = String::with_capacity(28);
    for group in digest.as_ref().chunks(3) {
        let bits = group.iter().enumerate().fold(0u32, |bits, (index, &byte)| {
            bits | u32::from(byte) << (16 - 8 * index)
        });
        for index in 0..4 {
            if index <= group.len() {
                encoded.push(char::from(
                    BASE64[(bits >> (18 - 6 * index) & 0x3f) as usize],
                ));
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455's own example (section 1.3).
    #[test]
    fn the_accept_key_is_the_rfc_s() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn host_names_come_without_ports_or_brackets() {
        assert_eq!(host_name("192.168.1.23:8080"), "192.168.1.23");
        assert_eq!(host_name("chat.school.lan"), "chat.school.lan");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("[fe80::1]"), "fe80::1");
    }

    /// A complete request head of exactly `length` bytes.
    fn head_of_length(length: usize) -> Vec<u8> {
        let start = "GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: ";
        let end = "\r\n\r\n";
        let pad = "x".repeat(length - start.len() - end.len());
        format!("{start}{pad}{end}").into_bytes()
    }

    #[test]
    fn a_head_longer_than_the_cap_is_too_large_ended_or_not() {
        let at_cap = head_of_length(MAX_REQUEST_HEAD);
        let (request, length) = parse_head(&at_cap)
            .expect("at the cap is allowed")
            .expect("complete");
        assert_eq!((request.path.as_str(), length), ("/", MAX_REQUEST_HEAD));
        for length in [MAX_REQUEST_HEAD + 1, MAX_REQUEST_HEAD + 1024] {
            let over = head_of_length(length);
            assert!(matches!(parse_head(&over), Err(RequestError::TooLarge)));
            // The cap's worth of a head that has not ended yet is enough to decide.
            assert!(matches!(
                parse_head(&over[..MAX_REQUEST_HEAD]),
                Err(RequestError::TooLarge)
            ));
        }
        assert!(matches!(
            parse_head(&at_cap[..MAX_REQUEST_HEAD - 1]),
            Ok(None)
        ));
    }

    #[test]
    fn every_port_answers_a_request_error_with_one_status() {
        let status = |error: RequestError| error.status().map(|(status, _)| status);
        assert_eq!(status(RequestError::Malformed), Some("400 Bad Request"));
        assert_eq!(
            status(RequestError::TooLarge),
            Some("431 Request Header Fields Too Large")
        );
        assert_eq!(status(RequestError::TooSlow), Some("408 Request Timeout"));
        assert_eq!(status(RequestError::Closed), None);
        assert_eq!(
            status(RequestError::Io(io::Error::from(
                io::ErrorKind::ConnectionReset
            ))),
            None
        );
    }
}
