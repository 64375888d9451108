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
use tungstenite::{Error as WsError, Message};

pub(crate) use tungstenite::protocol::frame::coding::CloseCode;

use super::tls::TlsSession;
use super::{DirectOutput, Transport};
use crate::connection::{ClientInput, End, Read as ReadOutcome, collect_input};
use crate::error::describe;
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
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let wire = Wire {
            stream,
            tls,
            written: Vec::new(),
        };
        WebSocketInput {
            socket: WebSocket::from_partially_read(wire, already_read, Role::Server, Some(config)),
            decoder: LineDecoder::new(max_line),
            idle_timeout,
            last_heard: Instant::now(),
        }
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
        Some(End::Failed(format!("closed the WebSocket: {reason}")))
    }
}

impl ClientInput for WebSocketInput {
    fn transport(&self) -> Transport {
        Transport::Web
    }

    fn read(&mut self, _connection: &Connection, inputs: &mut Vec<Input>) -> ReadOutcome {
        if let Err(error) = self.set_read_deadline() {
            return ReadOutcome {
                direct: None,
                end: Some(End::Failed(describe(&error))),
            };
        }
        let end = match self.socket.read() {
            Ok(Message::Text(text)) => {
                self.last_heard = Instant::now();
                let mut feed = |bytes: &[u8]| {
                    self.decoder
                        .feed(bytes, |item| collect_input(item, inputs, |_| {}))
                };
                feed(text.as_bytes());
                // A frame holds whole lines: its end ends the last one.
                if !text.ends_with('\n') {
                    feed(b"\n");
                }
                None
            }
            Ok(Message::Binary(_)) => {
                self.refuse(CloseCode::Unsupported, "binary frames are not supported")
            }
            Ok(Message::Close(_)) => Some(End::Closed),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => None,
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
                })
            }),
            end,
        }
    }
}
