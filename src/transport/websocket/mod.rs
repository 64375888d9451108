//! Browser clients over WebSocket (RFC 6455), after web/ has done the HTTP handshake.
//!
//! frames.rs reads what the browser sends. The pongs and close replies go to the hub as
//! [`DirectOutput`], so the hub stays the one writer. On the way out the hub frames lines
//! itself, with a frame header before the shared bytes of each range.

mod frames;

use std::time::{Duration, Instant};

use frames::{Frame, FrameReader, Violation, server_frame};
pub(crate) use frames::{close_frame, text_frame_header};

use super::{ByteMeter, ClientInput, DirectOutput, End, Read as ReadOutcome, collect_input};
use crate::error::describe;
use crate::port::Port;
use crate::protocol::{Input, LineDecoder};
use crate::service::{Connection, Received};

/// How often a silent browser connection is pinged, so that proxies and NAT boxes on the
/// way keep it open. Browsers answer pings by themselves; a pong does not count as input
/// for `--idle-timeout`.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// Bytes read per system call, into a buffer on the stack that exists only while there is
/// something to read.
const READ_CHUNK: usize = 4096;
/// Lines taken from a message per read: a message of many short lines (64 KiB holds 32,768)
/// is split a few lines at a time, as flood control lets them through, so a client holds
/// at most its message and these lines, never its message split into thousands of lines.
const LINES_PER_READ: usize = 32;
/// The close code sent to a browser that stays when the server goes (1001, going away).
pub(crate) const GOING_AWAY: u16 = 1001;

/// A browser client's input: WebSocket text frames, each one or more lines.
pub(crate) struct WebSocketInput {
    frames: FrameReader,
    decoder: LineDecoder,
    idle_timeout: Option<Duration>,
    /// When the client last sent a line (pongs do not count).
    last_heard: Instant,
    /// The message whose lines are being taken, a few per read.
    message: Option<PendingMessage>,
    /// Counts every byte received into flood-control tokens, frames that make no message
    /// (pieces of one, empty ones) included.
    bytes: ByteMeter,
    /// Tokens the bytes received so far cost, not yet charged.
    unpaid: u32,
    /// Frames for the hub to send (pongs, a ping, the close frame).
    replies: Vec<u8>,
    /// A close frame was written: the connection is over.
    closed: bool,
}

/// A text message not yet wholly split into lines.
struct PendingMessage {
    text: String,
    /// Where the lines not yet taken start.
    taken: usize,
    /// Inputs the message has given so far: one that gives none still costs a token.
    inputs: usize,
}

impl PendingMessage {
    fn new(text: String) -> PendingMessage {
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

/// Fuzzing (fuzz/): any bytes as what a browser sent after the handshake, in reads of any
/// size, taken as the server takes them, each text message split into lines a few at a
/// time: never a panic, never more lines at once than a read takes, and never more bytes
/// held than one frame and one read.
#[cfg(fuzzing)]
pub(crate) fn fuzz_frames(data: &[u8]) {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1) * 16;
    let mut frames = FrameReader::default();
    let mut decoder = LineDecoder::new(64);
    for piece in data.chunks(chunk) {
        frames.receive(piece);
        loop {
            match frames.next() {
                Ok(Some(Frame::Text(text))) => {
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
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        let bound = 2 * frames::MAX_MESSAGE + frames::MAX_HEADER + chunk;
        assert!(frames.held() <= bound, "{} bytes held", frames.held());
    }
}

impl WebSocketInput {
    /// Input from a browser after the handshake; `already_read` holds bytes that came with
    /// the HTTP request (a first frame sent at once).
    pub(crate) fn new(
        already_read: Vec<u8>,
        max_line: usize,
        idle_timeout: Option<Duration>,
    ) -> WebSocketInput {
        WebSocketInput {
            frames: FrameReader::new(already_read),
            decoder: LineDecoder::new(max_line),
            idle_timeout,
            last_heard: Instant::now(),
            message: None,
            bytes: ByteMeter::default(),
            unpaid: 0,
            replies: Vec::new(),
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
    fn read_deadline(&self) -> Duration {
        let mut wait = PING_INTERVAL;
        if let Some(idle_timeout) = self.idle_timeout {
            let left = idle_timeout.saturating_sub(self.last_heard.elapsed());
            wait = wait.min(left.max(Duration::from_millis(1)));
        }
        wait
    }

    /// Ends the connection for breaking the protocol: a close frame with its code.
    fn refuse(&mut self, violation: &Violation) -> Option<End> {
        let reason = violation.reason();
        self.replies
            .extend_from_slice(&close_frame(violation.code(), reason));
        self.closed = true;
        Some(End::Failed(format!("closed the WebSocket: {reason}")))
    }

    /// Waits for the browser's next bytes and adds them to the frames; `None` once some
    /// arrived, else how the wait ended.
    fn receive(&mut self, connection: &Connection) -> Option<End> {
        // As for TCP clients (tcp.rs): what the handshake and the last message touched of
        // the stack goes back before the wait, and the wait needs no buffer.
        crate::stack::release_unused_stack();
        if let Err(error) = connection
            .stream
            .set_read_timeout(Some(self.read_deadline()))
        {
            return Some(End::Failed(describe(&error)));
        }
        let received = match connection.wait_for_data() {
            Ok(()) => read_available(connection, &mut self.frames),
            Err(ended) => Err(ended),
        };
        match received {
            Ok(count) => {
                self.unpaid = self.unpaid.saturating_add(self.bytes.charge(count));
                None
            }
            Err(Received::Data(_)) => None,
            Err(Received::Closed) => Some(End::Closed),
            Err(Received::IdleTimeout) => {
                let silent_for = self.last_heard.elapsed();
                if self.idle_timeout.is_some_and(|limit| silent_for >= limit) {
                    Some(End::IdleTimeout)
                } else {
                    self.replies.extend_from_slice(&server_frame(0x9, &[]));
                    None
                }
            }
            Err(Received::Failed(error)) => {
                Some(End::Failed(format!("read failed: {}", describe(&error))))
            }
        }
    }
}

/// Reads what has arrived into `frames`, through a buffer that is on the stack only for
/// this call (never while the thread waits); returns how many bytes.
#[inline(never)]
fn read_available(
    connection: &Connection,
    frames: &mut FrameReader,
) -> Result<usize, Received<'static>> {
    let mut chunk = [0u8; READ_CHUNK];
    match connection.receive(&mut chunk) {
        Received::Data(bytes) => {
            frames.receive(bytes);
            Ok(bytes.len())
        }
        Received::Closed => Err(Received::Closed),
        Received::IdleTimeout => Err(Received::IdleTimeout),
        Received::Failed(error) => Err(Received::Failed(error)),
    }
}

impl ClientInput for WebSocketInput {
    fn port(&self) -> Port {
        Port::Web
    }

    fn read(&mut self, connection: &Connection, inputs: &mut Vec<Input>) -> ReadOutcome {
        let mut cost = 0;
        let end = if self.message.is_some() {
            cost = self.take_lines(inputs);
            None
        } else {
            // A frame already here is taken at once; otherwise one wait for more bytes
            // (a ping is due, or the browser sent some).
            let mut waited = false;
            loop {
                match self.frames.next() {
                    Ok(Some(Frame::Text(text))) => {
                        self.last_heard = Instant::now();
                        self.message = Some(PendingMessage::new(text));
                        cost = self.take_lines(inputs);
                        break None;
                    }
                    // A ping answered and a pong read are paced like a line, so a flood of
                    // them costs the server no more than a flood of lines.
                    Ok(Some(Frame::Ping(payload))) => {
                        self.replies.extend_from_slice(&server_frame(0xA, &payload));
                        cost = 1;
                        break None;
                    }
                    Ok(Some(Frame::Pong)) => {
                        cost = 1;
                        break None;
                    }
                    // The browser leaves: its close frame is answered with its code.
                    Ok(Some(Frame::Close(code))) => {
                        let reply = match code {
                            Some(code) => close_frame(code, ""),
                            None => server_frame(0x8, &[]),
                        };
                        self.replies.extend_from_slice(&reply);
                        self.closed = true;
                        break Some(End::Closed);
                    }
                    Err(violation) => break self.refuse(&violation),
                    Ok(None) if waited => break None,
                    Ok(None) => {
                        waited = true;
                        if let Some(end) = self.receive(connection) {
                            break Some(end);
                        }
                    }
                }
            }
        };
        let cost = cost.saturating_add(std::mem::take(&mut self.unpaid));
        let bytes = std::mem::take(&mut self.replies);
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
            let mut message = PendingMessage::new(text);
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
