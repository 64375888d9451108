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

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use socket2::SockRef;

use crate::control::ConnectionId;
use crate::port::Port;
use crate::protocol::page_events;
use crate::rooms::RoomId;
use crate::sys::{SEND_NOW, poll};
use crate::transport::telnet::Screen;
use crate::transport::tls::TlsSession;
use crate::transport::{DirectOutput, websocket};

/// Ranges handed to one `writev` (the kernel takes up to 1024).
const MAX_SLICES_PER_SEND: usize = 64;

/// Bytes shared by every outbox that holds a range of them.
pub(crate) type SharedBytes = Arc<Vec<u8>>;

/// A range of shared bytes waiting to be sent.
pub(crate) struct Chunk {
    bytes: SharedBytes,
    start: usize,
    end: usize,
}

impl Chunk {
    /// All of `bytes`.
    pub(crate) fn whole(bytes: SharedBytes) -> Chunk {
        let end = bytes.len();
        Chunk {
            bytes,
            start: 0,
            end,
        }
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    /// The bytes of the range.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// The same lines ending in CR LF instead of LF (a copy).
    fn with_crlf(&self) -> Chunk {
        Chunk::whole(Arc::new(crlf_copy(&self.bytes[self.start..self.end])))
    }

    /// A copy with `prefix` before each line (for a client that asked for timestamps),
    /// but the page's event lines, which must start with their mark.
    pub(crate) fn with_line_prefix(&self, prefix: &str) -> Chunk {
        let lines = &self.bytes[self.start..self.end];
        let mut bytes = Vec::with_capacity(lines.len() + prefix.len() * 4);
        for line in lines.split_inclusive(|&byte| byte == b'\n') {
            if !line.starts_with(&[page_events::EVENT_MARK as u8]) {
                bytes.extend_from_slice(prefix.as_bytes());
            }
            bytes.extend_from_slice(line);
        }
        Chunk::whole(Arc::new(bytes))
    }
}

/// `lines` with each LF turned into CR LF.
fn crlf_copy(lines: &[u8]) -> Vec<u8> {
    let mut copy = Vec::with_capacity(lines.len() + lines.len() / 16 + 2);
    for line in lines.split_inclusive(|&byte| byte == b'\n') {
        match line.strip_suffix(b"\n") {
            Some(text) => {
                copy.extend_from_slice(text);
                copy.extend_from_slice(b"\r\n");
            }
            None => copy.extend_from_slice(line),
        }
    }
    copy
}

/// How a client's lines end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineEnding {
    /// LF, as nc users and scripts expect.
    Lf,
    /// CR LF, the telnet newline (RFC 854).
    CrLf,
}

/// A line of text as shared bytes, with its newline.
pub(crate) fn line(text: &str) -> SharedBytes {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(b'\n');
    Arc::new(bytes)
}

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
                let close = websocket::close_frame(websocket::CloseCode::Away, "");
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

/// One wake-up's broadcast lines, in one buffer, with who must not get which.
#[derive(Default)]
pub(crate) struct Round {
    bytes: Vec<u8>,
    segments: Vec<Segment>,
    /// Some client is a browser: only then are the page's event lines made and kept.
    browsers_present: bool,
}

/// Consecutive lines that all go to everyone in `room` (every room if `None`) but `except`.
#[derive(Clone, Copy)]
struct Segment {
    end: usize,
    except: Option<ConnectionId>,
    room: Option<RoomId>,
    /// Lines in the segment, for counting deliveries.
    lines: u32,
    /// Event lines for the web page (protocol/page_events.rs), which only browsers get.
    browsers_only: bool,
}

impl Segment {
    fn is_for(&self, recipient: ConnectionId, recipient_room: RoomId, is_browser: bool) -> bool {
        self.except != Some(recipient)
            && self.room.is_none_or(|room| room == recipient_room)
            && (is_browser || !self.browsers_only)
    }
}

impl Round {
    /// Appends a line made of `parts` (and a newline) for everyone in `room` (every room
    /// if `None`) but `except`.
    pub(crate) fn push_line(
        &mut self,
        parts: &[&str],
        except: Option<ConnectionId>,
        room: Option<RoomId>,
    ) {
        self.push(parts, except, room, false);
    }

    /// Tells the round whether any client is a browser, that is, whether event lines for
    /// the page are wanted at all.
    pub(crate) fn set_browsers_present(&mut self, present: bool) {
        self.browsers_present = present;
    }

    /// Whether event lines for the page are wanted: without a browser nobody makes them.
    pub(crate) fn wants_browser_lines(&self) -> bool {
        self.browsers_present
    }

    /// Appends an event line for the web page (protocol/page_events.rs) for the browsers
    /// in `room` (every room if `None`) but `except`; nothing when no client is a browser.
    pub(crate) fn push_browser_line(
        &mut self,
        event: &str,
        except: Option<ConnectionId>,
        room: Option<RoomId>,
    ) {
        if self.browsers_present {
            self.push(&[event], except, room, true);
        }
    }

    fn push(
        &mut self,
        parts: &[&str],
        except: Option<ConnectionId>,
        room: Option<RoomId>,
        browsers_only: bool,
    ) {
        for part in parts {
            self.bytes.extend_from_slice(part.as_bytes());
        }
        self.bytes.push(b'\n');
        let end = self.bytes.len();
        match self.segments.last_mut() {
            Some(last)
                if last.except == except
                    && last.room == room
                    && last.browsers_only == browsers_only =>
            {
                last.end = end;
                last.lines += 1;
            }
            _ => self.segments.push(Segment {
                end,
                except,
                room,
                lines: 1,
                browsers_only,
            }),
        }
    }

    /// Hands the round over as shared bytes and starts an empty one.
    pub(crate) fn seal(&mut self) -> Option<SealedRound> {
        if self.bytes.is_empty() {
            return None;
        }
        let capacity = self.bytes.capacity();
        let bytes = std::mem::replace(&mut self.bytes, Vec::with_capacity(capacity.min(1 << 16)));
        let segments = std::mem::take(&mut self.segments);
        Some(SealedRound {
            lf: Rendering {
                segment_ends: segments.iter().map(|segment| segment.end).collect(),
                bytes: Arc::new(bytes),
            },
            crlf: OnceCell::new(),
            segments,
        })
    }
}

/// A finished round, shared by all recipients.
pub(crate) struct SealedRound {
    segments: Vec<Segment>,
    lf: Rendering,
    /// Made for the first telnet recipient, if there is one.
    crlf: OnceCell<Rendering>,
}

/// The round's lines with one line ending, and where each segment ends in them.
struct Rendering {
    bytes: SharedBytes,
    segment_ends: Vec<usize>,
}

impl SealedRound {
    /// The ranges `recipient`, in `room`, gets: its room's lines and everyone's, but not
    /// its own, and the page's event lines only if it is a browser; adjacent ranges merged;
    /// lines ending in `ending`. Returns how many lines.
    pub(crate) fn chunks_for(
        &self,
        recipient: ConnectionId,
        room: RoomId,
        ending: LineEnding,
        is_browser: bool,
        mut take: impl FnMut(Chunk),
    ) -> u64 {
        let mut lines = 0;
        let rendering = match ending {
            LineEnding::Lf => &self.lf,
            LineEnding::CrLf => self.crlf.get_or_init(|| self.render_crlf()),
        };
        let mut run_start = None;
        let mut start = 0;
        for (segment, &end) in self.segments.iter().zip(&rendering.segment_ends) {
            let wanted = segment.is_for(recipient, room, is_browser);
            // The page's events are not deliveries of chat lines.
            if wanted && !segment.browsers_only {
                lines += u64::from(segment.lines);
            }
            match (wanted, run_start) {
                (true, None) => run_start = Some(start),
                (false, Some(from)) => {
                    take(rendering.chunk(from, start));
                    run_start = None;
                }
                _ => {}
            }
            start = end;
        }
        if let Some(from) = run_start {
            take(rendering.chunk(from, start));
        }
        lines
    }

    fn render_crlf(&self) -> Rendering {
        let mut bytes = Vec::with_capacity(self.lf.bytes.len() * 2);
        let mut segment_ends = Vec::with_capacity(self.segments.len());
        let mut start = 0;
        for &end in &self.lf.segment_ends {
            bytes.extend_from_slice(&crlf_copy(&self.lf.bytes[start..end]));
            segment_ends.push(bytes.len());
            start = end;
        }
        Rendering {
            bytes: Arc::new(bytes),
            segment_ends,
        }
    }
}

impl Rendering {
    fn chunk(&self, start: usize, end: usize) -> Chunk {
        Chunk {
            bytes: Arc::clone(&self.bytes),
            start,
            end,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges_for(round: &SealedRound, id: ConnectionId) -> Vec<String> {
        let mut out = Vec::new();
        let room = if id == 4 { 1 } else { 0 };
        round.chunks_for(id, room, LineEnding::Lf, id == 3, |chunk| {
            out.push(String::from_utf8_lossy(&chunk.bytes[chunk.start..chunk.end]).into_owned())
        });
        out
    }

    #[test]
    fn each_recipient_gets_the_round_without_its_own_lines() {
        let mut round = Round::default();
        round.push_line(&["[a] ", "one"], Some(1), Some(0));
        round.push_line(&["[a] ", "two"], Some(1), Some(0));
        round.push_line(&["[b] three"], Some(2), Some(0));
        round.push_line(&["* notice"], None, None);
        round.set_browsers_present(true);
        round.push_browser_line("\u{1}event", None, None);
        round.push_line(&["[d] elsewhere"], Some(4), Some(1));
        let sealed = round.seal().expect("lines");
        assert_eq!(ranges_for(&sealed, 1), vec!["[b] three\n* notice\n"]);
        assert_eq!(
            ranges_for(&sealed, 2),
            vec!["[a] one\n[a] two\n", "* notice\n"]
        );
        // Client 3 is a browser: it gets the event line too.
        assert_eq!(
            ranges_for(&sealed, 3),
            vec!["[a] one\n[a] two\n[b] three\n* notice\n\u{1}event\n"]
        );
        // Client 4 is in room 1: only what is for every room reaches it.
        assert_eq!(ranges_for(&sealed, 4), vec!["* notice\n"]);
        assert!(round.seal().is_none());
    }

    #[test]
    fn a_time_prefix_leaves_event_lines_alone() {
        let chunk = Chunk::whole(line("[a] one\n\u{1}{}\n[b] two"));
        let prefixed = chunk.with_line_prefix("12:34 ");
        assert_eq!(
            &prefixed.bytes[..],
            "12:34 [a] one\n\u{1}{}\n12:34 [b] two\n".as_bytes()
        );
    }

    #[test]
    fn telnet_recipients_share_one_crlf_rendering_of_the_round() {
        let mut round = Round::default();
        round.push_line(&["[a] one"], Some(1), Some(0));
        round.push_line(&["[b] two"], Some(2), Some(0));
        let sealed = round.seal().expect("lines");
        let mut seen = Vec::new();
        for id in [1, 3] {
            sealed.chunks_for(id, 0, LineEnding::CrLf, false, |chunk| seen.push(chunk));
        }
        let text = |chunk: &Chunk| {
            String::from_utf8_lossy(&chunk.bytes[chunk.start..chunk.end]).into_owned()
        };
        assert_eq!(text(&seen[0]), "[b] two\r\n");
        assert_eq!(text(&seen[1]), "[a] one\r\n[b] two\r\n");
        assert!(Arc::ptr_eq(&seen[0].bytes, &seen[1].bytes));
    }
}
