//! Browser clients over WebSocket (RFC 6455), after web/ has done the HTTP handshake.
//!
//! tungstenite parses the frames on the client's thread: masking, fragmentation, control
//! frames and the size cap are its business. It is given a stream whose writes are only
//! collected, never sent: the pongs and close replies it writes go to the hub as
//! [`DirectOutput`], so the hub stays the one writer. On the way out the hub frames lines
//! itself, with tungstenite's frame header before the shared bytes of each range.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame, FrameHeader};
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::{Error as WsError, Message, Utf8Bytes};

pub(crate) use tungstenite::protocol::frame::coding::CloseCode;

use super::tls::TlsSession;
use super::{ByteMeter, ClientInput, DirectOutput, End, Read as ReadOutcome, collect_input};
use crate::error::describe;
use crate::port::Port;
use crate::protocol::{Input, LineDecoder};
use crate::service::Connection;
use crate::sys::timed_out;

/// The largest message (or frame) a browser may send, in bytes; a larger one closes the
/// connection with 1009. 64 KiB: a pasted page of text, far beyond what the page sends, and
/// what the thread holds at most while a message arrives.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// How often a silent browser connection is pinged, so that proxies and NAT boxes on the
/// way keep it open. Browsers answer pings by themselves; a pong does not count as input
/// for `--idle-timeout`.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// What tungstenite reads per system call: small, as for TCP clients (memory per client).
const READ_BUFFER: usize = 4096;
/// Lines taken from a message per read: a message of many short lines (64 KiB holds 32,768)
/// is split a few lines at a time, as flood control lets them through, so a client holds
/// at most its message and these lines, never its message split into thousands of lines.
const LINES_PER_READ: usize = 32;

/// The header of a text frame holding `length` bytes, as a server sends it (unmasked).
pub(crate) fn text_frame_header(length: usize) -> Vec<u8> {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let length = u64::try_from(length).unwrap_or(u64::MAX);
    let mut bytes = Vec::with_capacity(header.len(length));
    // Writing into a Vec cannot fail.
    let _ = header.format(length, &mut bytes);
    bytes
}

/// A close frame with `code` and a short `reason` the browser can show.
pub(crate) fn close_frame(code: CloseCode, reason: &str) -> Vec<u8> {
    let frame = Frame::close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let mut bytes = Vec::with_capacity(frame.len());
    let _ = frame.format(&mut bytes);
    bytes
}

/// A browser client's input: WebSocket text frames, each one or more lines.
pub(crate) struct WebSocketInput {
    socket: WebSocket<Wire>,
    decoder: LineDecoder,
    idle_timeout: Option<Duration>,
    /// When the client last sent a line (pongs do not count).
    last_heard: Instant,
    /// The message whose lines are being taken, a few per read.
    message: Option<PendingMessage>,
    bytes: ByteMeter,
    /// A close frame was written: the connection is over.
    closed: bool,
}

/// A text message not yet wholly split into lines.
struct PendingMessage {
    text: Utf8Bytes,
    /// Where the lines not yet taken start.
    taken: usize,
    /// Inputs the message has given so far: one that gives none still costs a token.
    inputs: usize,
}

impl PendingMessage {
    fn new(text: Utf8Bytes) -> PendingMessage {
        PendingMessage {
            text,
            taken: 0,
            inputs: 0,
        }
    }

    /// Decodes up to [`LINES_PER_READ`] more lines into `inputs`; returns whether the
    /// message is done.
    fn take_lines(&mut self, decoder: &mut LineDecoder, inputs: &mut Vec<Input>) -> bool {
        let rest = &self.text.as_bytes()[self.taken..];
        // A bare CR ends a line too (the decoder's rule); a CR LF counted as two ends only
        // makes the piece shorter.
        let end = rest
            .iter()
            .enumerate()
            .filter(|&(_, &byte)| byte == b'\n' || byte == b'\r')
            .nth(LINES_PER_READ - 1)
            .map_or(rest.len(), |(line_end, _)| line_end + 1);
        let before = inputs.len();
        let mut feed =
            |bytes: &[u8]| decoder.feed(bytes, |item| collect_input(item, inputs, |_| {}));
        feed(&rest[..end]);
        self.taken += end;
        let finished = self.taken == self.text.len();
        // A message holds whole lines: its end ends the last one.
        if finished && !self.text.ends_with('\n') {
            feed(b"\n");
        }
        self.inputs += inputs.len() - before;
        finished
    }
}

/// Fuzzing (fuzz/): any bytes as what a browser sent after the handshake, read as the
/// server reads them (tungstenite with this server's limits), each text message split into
/// lines a few at a time: never a panic, and never more lines at once than a read takes.
#[cfg(fuzzing)]
pub(crate) fn fuzz_frames(data: &[u8]) {
    struct Stream<'a>(&'a [u8]);
    impl Read for Stream<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            self.0.read(buffer)
        }
    }
    impl Write for Stream<'_> {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut socket = WebSocket::from_raw_socket(Stream(data), Role::Server, Some(config()));
    let mut decoder = LineDecoder::new(64);
    while let Ok(message) = socket.read() {
        if let Message::Text(text) = message {
            let mut message = PendingMessage::new(text);
            loop {
                let mut inputs = Vec::new();
                let finished = message.take_lines(&mut decoder, &mut inputs);
                assert!(
                    inputs.len() <= LINES_PER_READ + 2,
                    "{} lines at once",
                    inputs.len()
                );
                if finished {
                    break;
                }
            }
        }
    }
}

/// What tungstenite is told of this server's limits.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// The socket as tungstenite sees it: reads come from the client, writes are collected
/// for the hub.
struct Wire {
    stream: Arc<TcpStream>,
    tls: Option<Arc<TlsSession>>,
    written: Vec<u8>,
}

impl Read for Wire {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            Some(session) => session.read(&self.stream, buffer),
            None => (&*self.stream).read(buffer),
        }
    }
}

impl Write for Wire {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WebSocketInput {
    /// Input from `stream` after the handshake; `already_read` holds bytes that came with
    /// the HTTP request (a first frame sent at once).
    pub(crate) fn new(
        stream: Arc<TcpStream>,
        tls: Option<Arc<TlsSession>>,
        already_read: Vec<u8>,
        max_line: usize,
        idle_timeout: Option<Duration>,
    ) -> WebSocketInput {
        let wire = Wire {
            stream,
            tls,
            written: Vec::new(),
        };
        WebSocketInput {
            socket: WebSocket::from_partially_read(
                wire,
                already_read,
                Role::Server,
                Some(config()),
            ),
            decoder: LineDecoder::new(max_line),
            idle_timeout,
            last_heard: Instant::now(),
            message: None,
            bytes: ByteMeter::default(),
            closed: false,
        }
    }

    /// Takes up to [`LINES_PER_READ`] more lines from the pending message; returns the
    /// tokens that costs besides the lines (a message that held no line costs one).
    fn take_lines(&mut self, inputs: &mut Vec<Input>) -> u32 {
        let Some(message) = &mut self.message else {
            return 0;
        };
        if !message.take_lines(&mut self.decoder, inputs) {
            return 0;
        }
        let gave_nothing = message.inputs == 0;
        self.message = None;
        u32::from(gave_nothing)
    }

    /// Waits at most until the next ping is due or the idle timeout runs out.
    fn set_read_deadline(&self) -> io::Result<()> {
        let mut wait = PING_INTERVAL;
        if let Some(idle_timeout) = self.idle_timeout {
            let left = idle_timeout.saturating_sub(self.last_heard.elapsed());
            wait = wait.min(left.max(Duration::from_millis(1)));
        }
        self.socket.get_ref().stream.set_read_timeout(Some(wait))
    }

    /// Ends the connection for breaking the protocol: a close frame with `code`.
    fn refuse(&mut self, code: CloseCode, reason: &str) -> Option<End> {
        let frame = close_frame(code, reason);
        self.socket.get_mut().written.extend_from_slice(&frame);
        self.closed = true;
        Some(End::Failed(format!("closed the WebSocket: {reason}")))
    }
}

impl ClientInput for WebSocketInput {
    fn port(&self) -> Port {
        Port::Web
    }

    fn read(&mut self, _connection: &Connection, inputs: &mut Vec<Input>) -> ReadOutcome {
        if self.message.is_some() {
            let cost = self.take_lines(inputs);
            return ReadOutcome {
                cost,
                ..ReadOutcome::default()
            };
        }
        if let Err(error) = self.set_read_deadline() {
            return ReadOutcome {
                end: Some(End::Failed(describe(&error))),
                ..ReadOutcome::default()
            };
        }
        let mut cost = 0;
        let end = match self.socket.read() {
            Ok(Message::Text(text)) => {
                self.last_heard = Instant::now();
                cost = self.bytes.charge(text.len());
                self.message = Some(PendingMessage::new(text));
                cost = cost.saturating_add(self.take_lines(inputs));
                None
            }
            Ok(Message::Binary(_)) => {
                self.refuse(CloseCode::Unsupported, "binary frames are not supported")
            }
            // tungstenite has queued the answering close frame.
            Ok(Message::Close(_)) => {
                self.closed = true;
                Some(End::Closed)
            }
            // A ping is answered (by tungstenite) and a pong read: paced like a line, so a
            // flood of them costs the server no more than a flood of lines.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {
                cost = 1;
                None
            }
            Err(WsError::Io(error)) if timed_out(&error) => {
                let silent_for = self.last_heard.elapsed();
                if self.idle_timeout.is_some_and(|limit| silent_for >= limit) {
                    Some(End::IdleTimeout)
                } else {
                    let mut ping = Vec::new();
                    let _ = Frame::ping(Vec::new()).format(&mut ping);
                    self.socket.get_mut().written.extend_from_slice(&ping);
                    None
                }
            }
            Err(WsError::Capacity(_)) => self.refuse(CloseCode::Size, "message too large"),
            Err(WsError::Utf8(_)) => self.refuse(CloseCode::Invalid, "text is not UTF-8"),
            Err(WsError::Protocol(error)) => self.refuse(CloseCode::Protocol, &error.to_string()),
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Some(End::Closed),
            Err(WsError::Io(error)) => {
                Some(End::Failed(format!("read failed: {}", describe(&error))))
            }
            Err(error) => Some(End::Failed(error.to_string())),
        };
        // Replies tungstenite queued while reading (a pong, the answer to a close).
        let _ = self.socket.flush();
        let bytes = std::mem::take(&mut self.socket.get_mut().written);
        ReadOutcome {
            direct: (!bytes.is_empty()).then(|| {
                Box::new(DirectOutput {
                    bytes,
                    input_line: None,
                    closes: self.closed,
                })
            }),
            end,
            cost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: lines ended by a bare CR were all taken at once.
    #[test]
    fn a_message_is_taken_a_few_lines_at_a_time_whatever_ends_its_lines() {
        for ending in ["\n", "\r", "\r\n", "\r\0"] {
            let text = format!("a{ending}").repeat(1000);
            let mut message = PendingMessage::new(Utf8Bytes::from(text));
            let mut decoder = LineDecoder::new(64);
            let mut total = 0;
            loop {
                let mut inputs = Vec::new();
                let finished = message.take_lines(&mut decoder, &mut inputs);
                assert!(
                    inputs.len() <= LINES_PER_READ,
                    "{ending:?}: {}",
                    inputs.len()
                );
                total += inputs.len();
                if finished {
                    break;
                }
            }
            assert_eq!(total, 1000, "{ending:?}");
        }
    }
}
