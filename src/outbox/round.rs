//! One wake-up's broadcast lines, written once into a shared buffer ([`Round`]), and the
//! ranges of it that each recipient gets ([`SealedRound::chunks_for`]): a client that sent
//! nothing gets the whole round as one range. Telnet clients get lines ending in CR LF: a
//! sealed round renders that copy once, when its first telnet recipient asks.

use std::cell::OnceCell;
use std::sync::Arc;

use crate::control::ConnectionId;
use crate::protocol::page_events;
use crate::rooms::RoomId;

/// Bytes shared by every outbox that holds a range of them.
pub(crate) type SharedBytes = Arc<Vec<u8>>;

/// A range of shared bytes waiting to be sent.
pub(crate) struct Chunk {
    pub(crate) bytes: SharedBytes,
    pub(crate) start: usize,
    pub(crate) end: usize,
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

    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    /// The bytes of the range.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// The same lines ending in CR LF instead of LF (a copy).
    pub(crate) fn with_crlf(&self) -> Chunk {
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
