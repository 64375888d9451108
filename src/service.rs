//! What a subcommand is to the server: a [`Service`] that serves each [`Connection`] on
//! the connection's own thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::info;

use crate::control::{ConnectionId, ShutdownHandle};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::places::{ConnectionSlot, Refusal};
use crate::port::Port;
use crate::sys::{poll, timed_out};
use crate::transport::tls::TlsSession;

/// One accepted connection, handed to a [`Service`] on the connection's own thread.
pub struct Connection {
    /// Unique number of this connection.
    pub id: ConnectionId,
    /// The socket, shared (not duplicated) with whoever writes to it, so that each client
    /// costs one file descriptor.
    pub stream: Arc<TcpStream>,
    /// The client's address.
    pub peer: SocketAddr,
    /// Lets a service stop the whole server (the dump subcommand does when its file fails).
    pub shutdown: ShutdownHandle,
    /// The listener it came in on.
    pub port: Port,
    /// The server's counters.
    pub(crate) metrics: Arc<Metrics>,
    /// The TLS session, once the service has done the handshake (`--tls-*`).
    pub(crate) tls: Option<Arc<TlsSession>>,
    /// Its place among the server's connections, given back when the connection is dropped.
    pub(crate) slot: ConnectionSlot,
}

/// What one read from a client gave.
pub enum Received<'a> {
    /// Bytes arrived.
    Data(&'a [u8]),
    /// The client closed its side (or the server shut the socket down).
    Closed,
    /// Nothing arrived within `--idle-timeout`.
    IdleTimeout,
    /// The connection broke (reset, keepalive gave up, ...).
    Failed(io::Error),
}

impl Connection {
    /// A connection that came as a handshake (TLS, a web request) is a client from now on:
    /// it takes a `--max-clients` place, or is refused as a new client would be.
    pub(crate) fn become_client(&self) -> Result<(), Refusal> {
        self.slot.become_client()
    }

    /// Reads what the client sent next into `buffer`, blocking until something happens.
    pub fn receive<'a>(&self, buffer: &'a mut [u8]) -> Received<'a> {
        match read_or_end(|| self.read(buffer)) {
            Ok(count) => Received::Data(&buffer[..count]),
            Err(end) => end,
        }
    }

    /// Blocks, like [`Connection::receive`], until the client sends something or the
    /// connection ends, but leaves what arrived unread and needs no buffer: `Ok` when
    /// there is something to read, else how the connection ended.
    pub(crate) fn wait_for_data(&self) -> Result<(), Received<'static>> {
        match &self.tls {
            Some(session) => read_or_end(|| session.wait_for_plaintext(&self.stream)),
            None => read_or_end(|| self.stream.peek(&mut [0u8; 1])),
        }
        .map(|_| ())
    }

    /// Reads what the client sent, decrypted if it speaks TLS.
    pub(crate) fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            Some(session) => session.read(&self.stream, buffer),
            None => (&*self.stream).read(buffer),
        }
    }

    /// Writes all of `bytes`, blocking, encrypted if the client speaks TLS. Only for the
    /// connection's own thread before the client is the hub's (HTTP responses, the
    /// WebSocket handshake) and for the subcommands without a hub.
    pub(crate) fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        match &self.tls {
            Some(session) => session.write_all_blocking(&self.stream, bytes),
            None => (&*self.stream).write_all(bytes),
        }
    }

    /// Waits for `duration` unless the connection is shut down first (by the server, or a
    /// reset from the peer); returns false then. Used by flood control, so that a client
    /// waiting for its next token is still closed at once on shutdown.
    pub fn pause(&self, duration: Duration) -> bool {
        let mut fd = [libc::pollfd {
            fd: self.stream.as_raw_fd(),
            // No events asked for: poll reports only POLLHUP (both directions shut down)
            // and POLLERR, never the data a flooder keeps sending.
            events: 0,
            revents: 0,
        }];
        let deadline = Instant::now() + duration;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if poll(&mut fd, Some(left)) > 0 {
                return false;
            }
            // Time up, or interrupted by a signal: then wait for the rest.
            if Instant::now() >= deadline {
                return true;
            }
        }
    }

    /// Waits, for at most `timeout` in all, for the client to close, reading and dropping
    /// whatever it still sends. For after the server has sent its last bytes and closed its
    /// sending side: closing the socket with the client's input unread would make the
    /// kernel answer with a reset, which can destroy those last bytes (a goodbye, the end
    /// of a file) before the client has read them.
    pub fn wait_for_close(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut sink = [0u8; 256];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            if !matches!(self.receive(&mut sink), Received::Data(_)) {
                return;
            }
        }
    }

    /// Logs the chapter's "new connection" event for the subcommands without nicks.
    pub fn log_opened(&self) {
        info!("new connection from {}", self.peer);
    }

    /// Logs the end of the connection with how it ended.
    pub fn log_closed(&self, how: impl std::fmt::Display) {
        info!("connection from {} closed: {how}", self.peer);
    }
}

/// Runs `read` again while a signal interrupts it: how many bytes it gave, or how the
/// connection ended (nothing more to read, `--idle-timeout`, an error).
fn read_or_end(mut read: impl FnMut() -> io::Result<usize>) -> Result<usize, Received<'static>> {
    loop {
        return match read() {
            Ok(0) => Err(Received::Closed),
            Ok(count) => Ok(count),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if timed_out(&error) => Err(Received::IdleTimeout),
            Err(error) => Err(Received::Failed(error)),
        };
    }
}

/// What a subcommand does with its connections. The server calls these in order:
/// `serve` for each connection (on its own thread), then on shutdown `begin_drain`,
/// `close_all` if the drain timeout passes, and `finish` once every connection has ended.
pub trait Service: Send + Sync + 'static {
    /// Serves one connection until it ends. Returning closes the connection (once every
    /// other holder of the stream lets go of it).
    fn serve(&self, connection: Connection);

    /// The listener has closed; connections may go on until the drain timeout.
    fn begin_drain(&self) {}

    /// The drain timeout passed: send what is still owed to each connection. The server
    /// then writes [`Service::goodbye`] to each and closes them.
    fn close_all(&self) {}

    /// Lines for the start-up log after where to connect (the TLS fingerprint to compare).
    fn banner(&self) -> Vec<String> {
        Vec::new()
    }

    /// A last line for every connection the server closes itself, if any.
    fn goodbye(&self) -> Option<Vec<u8>> {
        None
    }

    /// Every connection has ended: flush, join helper threads, report a failure.
    fn finish(&self) -> Result<(), Error> {
        Ok(())
    }
}
