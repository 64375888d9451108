//! How the load generator reaches a server: lines over plain TCP, over WebSocket (ws://),
//! over TLS, or over WebSocket over TLS (wss://). A [`Dialer`] connects and completes the
//! transport's handshakes (blocking, as each client joins); a [`Connection`] then gives a
//! [`Writer`] for its sender and becomes the non-blocking [`Incoming`] its reader thread
//! polls. Every transport carries the same marked lines (marker.rs), so the scenarios do
//! not know which one they run on.
//!
//! Reading order: this file, then incoming.rs and writer.rs (the two directions),
//! websocket.rs (framing), tls.rs (the session) and trust.rs (the client configuration).

mod incoming;
mod tls;
pub mod trust;
mod websocket;
mod writer;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::ClientConfig;

pub use incoming::{Incoming, Received};
pub use writer::Writer;

use tls::Session;
use websocket::FrameDecoder;

/// What the lines travel in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    Tcp,
    WebSocket,
    Tls,
    WebSocketTls,
}

impl Transport {
    /// `tcp`, `ws`, `tls` or `wss`, as `--transport` takes it.
    pub fn from_name(name: &str) -> Option<Transport> {
        match name {
            "tcp" => Some(Transport::Tcp),
            "ws" => Some(Transport::WebSocket),
            "tls" => Some(Transport::Tls),
            "wss" => Some(Transport::WebSocketTls),
            _ => None,
        }
    }

    fn is_encrypted(self) -> bool {
        matches!(self, Transport::Tls | Transport::WebSocketTls)
    }

    fn is_websocket(self) -> bool {
        matches!(self, Transport::WebSocket | Transport::WebSocketTls)
    }
}

/// Connects clients over one transport, and counts their TLS handshakes. One per run: its
/// TLS configuration, and with it the session store, is shared by every connection, so a
/// connection after the first resumes a session as a browser's next one would.
pub struct Dialer {
    transport: Transport,
    tls: Option<Arc<ClientConfig>>,
    full_handshakes: AtomicU64,
    resumed_handshakes: AtomicU64,
}

/// A run's TLS handshakes so far: full, and resumed from an earlier session's ticket.
#[derive(Clone, Copy, Default)]
pub struct Handshakes {
    pub full: u64,
    pub resumed: u64,
}

impl Dialer {
    pub fn new(transport: Transport) -> io::Result<Dialer> {
        let tls = if transport.is_encrypted() {
            Some(trust::client_config().map_err(io::Error::other)?)
        } else {
            None
        };
        Ok(Dialer {
            transport,
            tls,
            full_handshakes: AtomicU64::new(0),
            resumed_handshakes: AtomicU64::new(0),
        })
    }

    /// Connects to `addr` and completes the transport's handshakes, each system call
    /// within `patience`. The connection is blocking; see [`Connection::into_incoming`].
    pub fn connect(&self, addr: SocketAddr, patience: Duration) -> io::Result<Connection> {
        let mut stream = TcpStream::connect_timeout(&addr, patience)?;
        stream.set_nodelay(true)?;
        if self.transport != Transport::Tcp {
            // The handshakes block: a server that stops answering must not hold us.
            stream.set_read_timeout(Some(patience))?;
            stream.set_write_timeout(Some(patience))?;
        }
        let session = match &self.tls {
            Some(config) => {
                let (session, resumed) = tls::handshake(config, &mut stream)?;
                let count = if resumed {
                    &self.resumed_handshakes
                } else {
                    &self.full_handshakes
                };
                count.fetch_add(1, Ordering::Relaxed);
                Some(session)
            }
            None => None,
        };
        let mut connection = Connection {
            stream,
            session,
            frames: None,
            early: Vec::new(),
        };
        if self.transport.is_websocket() {
            connection.upgrade(addr)?;
        }
        Ok(connection)
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    pub fn handshakes(&self) -> Handshakes {
        Handshakes {
            full: self.full_handshakes.load(Ordering::Relaxed),
            resumed: self.resumed_handshakes.load(Ordering::Relaxed),
        }
    }
}

/// One client, connected and past its handshakes.
pub struct Connection {
    stream: TcpStream,
    session: Option<Session>,
    /// WebSocket only: the server's frames.
    frames: Option<FrameDecoder>,
    /// Plaintext that came in with the handshakes' last bytes (tcpchat's page greets a
    /// browser at once), not yet taken apart into frames.
    early: Vec<u8>,
}

impl Connection {
    /// The writing side, for a sender (it shares the socket and the TLS session).
    pub fn writer(&self) -> io::Result<Writer> {
        Writer::new(
            self.stream.try_clone()?,
            self.session.clone(),
            self.frames.is_some(),
        )
    }

    /// The reading side, non-blocking, for a reader thread's poll. The socket is shared
    /// with any [`Writer`] taken before, which becomes non-blocking too.
    pub fn into_incoming(mut self) -> io::Result<Incoming> {
        self.stream.set_nonblocking(true)?;
        if let Some(session) = &self.session {
            tls::take_buffered(session, &mut self.early)?;
        }
        Ok(Incoming::new(
            self.stream,
            self.session,
            self.frames,
            self.early,
        ))
    }

    /// Reads (blocking) until the server closes the connection, and throws away what it
    /// sends: TLS records are still decrypted, so that the session tickets in them reach
    /// the session store.
    pub fn read_until_closed(&mut self) -> io::Result<()> {
        let mut buffer = [0u8; 4096];
        let mut plain = Vec::new();
        let mut session_closed = false;
        loop {
            let count = match self.stream.read(&mut buffer) {
                Ok(0) => return Ok(()),
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if let Some(session) = self.session.as_ref().filter(|_| !session_closed) {
                session_closed = tls::decrypt(session, &buffer[..count], &mut plain)?;
                plain.clear();
            }
        }
    }

    /// Asks for the WebSocket at `addr` and waits for the answer.
    fn upgrade(&mut self, addr: SocketAddr) -> io::Result<()> {
        let request = websocket::upgrade_request(&addr.to_string());
        let bytes = match &self.session {
            Some(session) => tls::encrypt(session, request.as_bytes())?,
            None => request.into_bytes(),
        };
        self.stream.write_all(&bytes)?;
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            if let Some(answer) = websocket::upgrade_answer(&received) {
                let head = answer.map_err(io::Error::other)?;
                self.early = received.split_off(head);
                self.frames = Some(FrameDecoder::default());
                return Ok(());
            }
            let count = self.stream.read(&mut buffer)?;
            if count == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            match &self.session {
                Some(session) => {
                    tls::decrypt(session, &buffer[..count], &mut received)?;
                }
                None => received.extend_from_slice(&buffer[..count]),
            }
        }
    }
}
