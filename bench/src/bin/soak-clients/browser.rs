//! A browser: the page loaded as a browser loads it, then its chat socket `/ws` (ws, or wss
//! on a TLS node), read and written with tungstenite.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use crate::links::Link;
use crate::wire::{
    CLOSE_PATIENCE, CONNECT_PATIENCE, Recorded, TlsEnd, Wire, connect_tcp, connect_tls,
    count_missing_close_notify, drain_until_closed, read_until, reset_tcp,
};

/// Loads the page as a browser does before it opens the chat socket: `/`, then its script
/// and style sheet, each on a connection of its own (the server answers one request per
/// connection). Returns how many connections it opened.
pub fn load_page(
    web: SocketAddr,
    tls: Option<&Arc<ClientConfig>>,
    paths: &[&str],
) -> io::Result<u64> {
    for path in paths {
        let mut wire: Box<dyn Wire> = match tls {
            Some(config) => Box::new(connect_tls(web, config)?),
            None => Box::new(connect_tcp(web)?),
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {web}\r\nUser-Agent: soak-clients\r\nAccept: */*\r\n\r\n"
        );
        wire.write_all(request.as_bytes())?;
        wire.flush()?;
        let deadline = Instant::now() + CONNECT_PATIENCE;
        let mut response = Vec::new();
        let mut buffer = [0; 8192];
        loop {
            match read_until(wire.as_mut(), &mut buffer, deadline) {
                Ok(Some(n)) => response.extend_from_slice(&buffer[..n]),
                Ok(None) => {
                    return Err(io::Error::new(
                        ErrorKind::TimedOut,
                        format!("GET {path}: no end"),
                    ));
                }
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
        let _ = wire.finish();
        if !response.starts_with(b"HTTP/1.1 200 ") {
            let head = String::from_utf8_lossy(&response[..response.len().min(60)]).into_owned();
            return Err(io::Error::other(format!("GET {path}: {head:?}")));
        }
    }
    Ok(paths.len() as u64)
}

/// A browser's chat socket, `/ws`, as the page opens it (its Origin is the page's).
pub struct WsLink<W: Wire> {
    socket: WebSocket<Recorded<W>>,
    lines: VecDeque<String>,
}

impl<W: Wire> WsLink<W> {
    pub fn open(wire: W, web: SocketAddr, tls: bool) -> io::Result<WsLink<W>> {
        let scheme = if tls { "wss" } else { "ws" };
        let mut request = format!("{scheme}://{web}/ws")
            .into_client_request()
            .map_err(io::Error::other)?;
        let origin = format!("{}://{web}", if tls { "https" } else { "http" });
        request
            .headers_mut()
            .insert("Origin", origin.parse().map_err(io::Error::other)?);
        wire.tcp().set_read_timeout(Some(CONNECT_PATIENCE))?;
        let wire = Recorded::new(wire);
        let (socket, _) =
            tungstenite::client(request, wire).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(WsLink {
            socket,
            lines: Default::default(),
        })
    }
}

fn ws_error(error: tungstenite::Error) -> io::Error {
    match error {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::Error::new(ErrorKind::UnexpectedEof, "WebSocket closed")
        }
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl<W: Wire + 'static> Link for WsLink<W> {
    fn send_line(&mut self, text: &str) -> io::Result<()> {
        // The page sends each line with its LF, one message per Enter.
        self.socket
            .send(Message::text(format!("{text}\n")))
            .map_err(ws_error)
    }

    fn next_line(&mut self, deadline: Instant) -> io::Result<Option<String>> {
        loop {
            if let Some(line) = self.lines.pop_front() {
                return Ok(Some(line));
            }
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return Ok(None);
            };
            self.socket.get_ref().tcp().set_read_timeout(Some(left))?;
            match self.socket.read() {
                Ok(Message::Text(text)) => {
                    for line in text.as_str().split_terminator('\n') {
                        self.lines.push_back(line.to_owned());
                    }
                }
                Ok(Message::Close(frame)) => {
                    let why = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        format!("closed by the server: {why}"),
                    ));
                }
                Ok(Message::Binary(_)) => {
                    return Err(io::Error::other("a binary frame from the server"));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(ws_error(e)),
            }
        }
    }

    fn close(mut self: Box<Self>, _after_quit: bool) -> io::Result<()> {
        // A tab closed: a close frame, then the server's close frame and its FIN.
        let _ = self.socket.close(None);
        let deadline = Instant::now() + CLOSE_PATIENCE;
        loop {
            self.socket.get_ref().tcp().set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))?;
            match self.socket.read() {
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    break;
                }
                // The server's close frame came, then its FIN without a close_notify.
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                    count_missing_close_notify(&e, TlsEnd::WebSocketClose);
                    return Ok(());
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    return Err(io::Error::new(
                        ErrorKind::TimedOut,
                        "no close frame from the server",
                    ));
                }
                Err(e) => {
                    let error = ws_error(e);
                    return Err(io::Error::new(
                        error.kind(),
                        format!("{error}; {}", self.recent()),
                    ));
                }
            }
        }
        let wire = self.socket.get_mut();
        let _ = wire.finish();
        drain_until_closed(wire, TlsEnd::WebSocketClose)
    }

    fn reset(self: Box<Self>) {
        reset_tcp(self.socket.get_ref().tcp());
    }

    fn recent(&self) -> String {
        self.socket.get_ref().shown()
    }
}
