//! The hub's write side: the buffer one wake-up's broadcast lines are written into, and
//! each client's queue of what its kernel send buffer has not taken yet.
//!
//! A broadcast line is copied once, into the wake-up's [`Round`]. When the round is
//! sealed, every client's [`Outbox`] gets ranges of that one shared buffer, skipping the
//! lines it sent itself: a client that sent nothing gets the whole round as one range,
//! so the cost per recipient is one range and one `writev`, not one entry per line.
//!
//! Telnet clients get lines ending in CR LF: a sealed round makes that rendering once, when
//! its first telnet recipient asks, and shares it the same way. Their outbox also keeps
//! the line being typed below incoming lines (transport/telnet/screen.rs). A browser's
//! outbox puts a WebSocket frame header before each range: the payload stays shared.
//!
//! round.rs is the shared round; this file is each client's outbox.

mod round;

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use socket2::SockRef;

use crate::port::Port;
use crate::sys::{SEND_NOW, poll};
use crate::transport::telnet::Screen;
use crate::transport::tls::TlsSession;
use crate::transport::{DirectOutput, websocket};
pub(crate) use round::{Chunk, LineEnding, Round, SharedBytes, line};

/// Ranges handed to one `writev` (the kernel takes up to 1024).
const MAX_SLICES_PER_SEND: usize = 64;

/// Output for one client that its kernel send buffer has not taken yet.
#[derive(Default)]
pub(crate) struct Outbox {
    chunks: VecDeque<Chunk>,
    /// Bytes queued and not yet sent.
    queued: usize,
    /// Passed `--max-pending`: the client is to be disconnected as a slow consumer.
    pub(crate) overflowed: bool,
    encoding: Encoding,
    /// The client's TLS session: what is queued is plain text, encrypted when sent.
    tls: Option<Arc<TlsSession>>,
    /// The TLS session holds encrypted bytes the kernel has not taken yet.
    tls_pending: bool,
    /// After what is queued, end the TLS session (close_notify).
    tls_closing: bool,
    /// Where the bytes the kernel takes are counted (`--metrics`).
    sent_bytes: Counter<u64, AtomicU64>,
}

/// What a client's transport puts around the hub's lines.
#[derive(Default)]
enum Encoding {
    /// Lines as they are: nc, scripts, telnet clients that have not negotiated (yet).
    #[default]
    Plain,
    /// CR LF, and the input line of a character-mode client kept below incoming lines.
    Telnet(Box<Screen>),
    /// A WebSocket text frame around each run of lines.
    WebSocket,
}

impl Outbox {
    /// An outbox for a client of `transport`.
    pub(crate) fn new(
        port: Port,
        tls: Option<Arc<TlsSession>>,
        sent_bytes: Counter<u64, AtomicU64>,
    ) -> Outbox {
        Outbox {
            encoding: match port {
                Port::Chat => Encoding::Plain,
                Port::Web => Encoding::WebSocket,
                Port::Metrics => Encoding::Plain,
            },
            tls,
            sent_bytes,
            ..Outbox::default()
        }
    }

    /// Whether the client is a browser (the page gets event lines).
    pub(crate) fn is_browser(&self) -> bool {
        matches!(self.encoding, Encoding::WebSocket)
    }

    /// How this client's lines must end: chunks given to [`Outbox::push`] end so.
    pub(crate) fn line_ending(&self) -> LineEnding {
        match self.encoding {
            Encoding::Telnet(_) => LineEnding::CrLf,
            Encoding::Plain | Encoding::WebSocket => LineEnding::Lf,
        }
    }

    /// `chunk` (lines ending in LF) as this client's lines must end.
    pub(crate) fn encode(&self, chunk: Chunk) -> Chunk {
        match self.line_ending() {
            LineEnding::Lf => chunk,
            LineEnding::CrLf => chunk.with_crlf(),
        }
    }

    /// Queues lines, already in this client's line ending: for a telnet client a line
    /// being typed is cleared first (and drawn again before the next send), for a browser
    /// they become one text frame.
    pub(crate) fn push(&mut self, chunk: Chunk) {
        if chunk.len() == 0 {
            return;
        }
        match &mut self.encoding {
            Encoding::Plain => {}
            Encoding::Telnet(screen) => {
                if let Some(clear) = screen.clear_for_lines() {
                    self.push_bytes(Chunk::whole(clear));
                }
            }
            Encoding::WebSocket => {
                let header = websocket::text_frame_header(chunk.len());
                self.push_bytes(Chunk::whole(Arc::new(header)));
            }
        }
        self.push_bytes(chunk);
    }

    /// Ends the TLS session after what is queued (close_notify), for a client that goes
    /// without a farewell line (it closed, or its WebSocket did).
    pub(crate) fn end_tls(&mut self) {
        self.tls_closing = true;
    }

    /// Queues lines that are the last this client will see: a telnet client's input line
    /// is not drawn again after them, a browser gets a close frame (1001, going away) after
    /// them.
    pub(crate) fn push_last(&mut self, chunk: Chunk) {
        let chunk = self.encode(chunk);
        self.push(chunk);
        self.tls_closing = true;
        match &mut self.encoding {
            Encoding::Plain => {}
            Encoding::Telnet(screen) => screen.stop_redrawing(),
            Encoding::WebSocket => {
                let close = websocket::close_frame(websocket::GOING_AWAY, "");
                self.push_bytes(Chunk::whole(Arc::new(close)));
            }
        }
    }

    /// Queues what the client's thread asked to be written as it is (telnet answers and
    /// echo, WebSocket control frames). A plain client that sends it is a telnet client
    /// from now on.
    pub(crate) fn push_direct(&mut self, output: DirectOutput) {
        if let Encoding::Plain = self.encoding {
            self.encoding = Encoding::Telnet(Box::default());
        }
        if let Encoding::Telnet(screen) = &mut self.encoding
            && let Some(input_line) = screen.redraw()
        {
            // The echo continues the line as the client last saw it.
            self.push_bytes(Chunk::whole(input_line));
        }
        self.push_bytes(Chunk::whole(Arc::new(output.bytes)));
        if let Encoding::Telnet(screen) = &mut self.encoding {
            screen.set_input_line(output.input_line);
        }
    }

    fn push_bytes(&mut self, chunk: Chunk) {
        if chunk.len() == 0 {
            return;
        }
        self.queued += chunk.len();
        self.chunks.push_back(chunk);
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty() && !self.tls_pending
    }

    pub(crate) fn clear(&mut self) {
        self.chunks = VecDeque::new();
        self.queued = 0;
    }

    /// Sends what the kernel takes right now, without blocking.
    pub(crate) fn send_available(&mut self, stream: &TcpStream) -> io::Result<()> {
        if let Encoding::Telnet(screen) = &mut self.encoding
            && let Some(input_line) = screen.redraw()
        {
            self.push_bytes(Chunk::whole(input_line));
        }
        if let Some(session) = self.tls.clone() {
            return self.send_encrypted(&session, stream);
        }
        let socket = SockRef::from(stream);
        while !self.chunks.is_empty() {
            let result = {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES_PER_SEND];
                let mut count = 0;
                for (slot, chunk) in slices.iter_mut().zip(&self.chunks) {
                    *slot = IoSlice::new(&chunk.bytes[chunk.start..chunk.end]);
                    count += 1;
                }
                socket.send_vectored_with_flags(&slices[..count], SEND_NOW)
            };
            match result {
                Ok(sent) => {
                    self.sent_bytes.inc_by(sent as u64);
                    self.advance(sent);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        if self.chunks.is_empty() && self.chunks.capacity() > MAX_SLICES_PER_SEND {
            // A burst is over: give its memory back.
            self.chunks = VecDeque::new();
        }
        Ok(())
    }

    /// The TLS way: encrypt what the session takes, give the kernel what it takes, and
    /// again while both make progress.
    fn send_encrypted(&mut self, session: &TlsSession, stream: &TcpStream) -> io::Result<()> {
        loop {
            let mut encrypted = 0;
            while let Some(front) = self.chunks.front() {
                let taken = session.encrypt(&front.bytes[front.start..front.end]);
                encrypted += taken;
                let whole = taken == front.len();
                self.advance(taken);
                if !whole {
                    break; // the session's buffer is full
                }
            }
            if self.chunks.is_empty() && std::mem::take(&mut self.tls_closing) {
                session.close();
            }
            let (all_out, sent) = session.send_available(stream)?;
            self.sent_bytes.inc_by(sent as u64);
            self.tls_pending = !all_out;
            if !all_out || self.chunks.is_empty() || encrypted == 0 {
                return Ok(());
            }
        }
    }

    fn advance(&mut self, mut sent: usize) {
        self.queued -= sent;
        while sent > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if sent < front.len() {
                front.start += sent;
                return;
            }
            sent -= front.len();
            self.chunks.pop_front();
        }
    }
}

/// Blocks until one of `streams` can take more output, or `timeout` passes.
pub(crate) fn wait_until_writable(streams: &[&TcpStream], timeout: Duration) {
    let mut fds: Vec<libc::pollfd> = streams
        .iter()
        .map(|stream| libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        })
        .collect();
    poll(&mut fds, Some(timeout));
}
