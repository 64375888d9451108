//! The hub's write side: the buffer one wake-up's broadcast lines are written into, and
//! each client's queue of what its kernel send buffer has not taken yet.
//!
//! A broadcast line is copied once, into the wake-up's [`Round`]. When the round is
//! sealed, every client's [`Outbox`] gets ranges of that one shared buffer, skipping the
//! lines it sent itself: a client that sent nothing gets the whole round as one range,
//! so the cost per recipient is one range and one `writev`, not one entry per line.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;

use crate::rooms::RoomId;
use crate::server::{SEND_NOW, poll};
use crate::shutdown::ConnectionId;

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

    /// A copy with `prefix` before each line (for a client that asked for timestamps).
    pub(crate) fn with_line_prefix(&self, prefix: &str) -> Chunk {
        let lines = &self.bytes[self.start..self.end];
        let mut bytes = Vec::with_capacity(lines.len() + prefix.len() * 4);
        for line in lines.split_inclusive(|&byte| byte == b'\n') {
            bytes.extend_from_slice(prefix.as_bytes());
            bytes.extend_from_slice(line);
        }
        Chunk::whole(Arc::new(bytes))
    }
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
}

impl Outbox {
    pub(crate) fn push(&mut self, chunk: Chunk) {
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
        self.chunks.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.chunks = VecDeque::new();
        self.queued = 0;
    }

    /// Sends what the kernel takes right now, without blocking.
    pub(crate) fn send_available(&mut self, stream: &TcpStream) -> io::Result<()> {
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
                Ok(sent) => self.advance(sent),
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
}

/// Consecutive lines that all go to everyone in `room` (every room if `None`) but `except`.
#[derive(Clone, Copy)]
struct Segment {
    end: usize,
    except: Option<ConnectionId>,
    room: Option<RoomId>,
}

impl Segment {
    fn is_for(&self, recipient: ConnectionId, recipient_room: RoomId) -> bool {
        self.except != Some(recipient) && self.room.is_none_or(|room| room == recipient_room)
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
        for part in parts {
            self.bytes.extend_from_slice(part.as_bytes());
        }
        self.bytes.push(b'\n');
        let end = self.bytes.len();
        match self.segments.last_mut() {
            Some(last) if last.except == except && last.room == room => last.end = end,
            _ => self.segments.push(Segment { end, except, room }),
        }
    }

    /// Hands the round over as shared bytes and starts an empty one.
    pub(crate) fn seal(&mut self) -> Option<SealedRound> {
        if self.bytes.is_empty() {
            return None;
        }
        let capacity = self.bytes.capacity();
        let bytes = std::mem::replace(&mut self.bytes, Vec::with_capacity(capacity.min(1 << 16)));
        Some(SealedRound {
            bytes: Arc::new(bytes),
            segments: std::mem::take(&mut self.segments),
        })
    }
}

/// A finished round, shared by all recipients.
pub(crate) struct SealedRound {
    bytes: SharedBytes,
    segments: Vec<Segment>,
}

impl SealedRound {
    /// The ranges `recipient`, in `room`, gets: its room's lines and everyone's, but not
    /// its own; adjacent ranges merged.
    pub(crate) fn chunks_for(
        &self,
        recipient: ConnectionId,
        room: RoomId,
        mut take: impl FnMut(Chunk),
    ) {
        let mut run_start = None;
        let mut start = 0;
        for segment in &self.segments {
            let wanted = segment.is_for(recipient, room);
            match (wanted, run_start) {
                (true, None) => run_start = Some(start),
                (false, Some(from)) => {
                    take(self.chunk(from, start));
                    run_start = None;
                }
                _ => {}
            }
            start = segment.end;
        }
        if let Some(from) = run_start {
            take(self.chunk(from, start));
        }
    }

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
        round.chunks_for(id, room, |chunk| {
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
        round.push_line(&["[d] elsewhere"], Some(4), Some(1));
        let sealed = round.seal().expect("lines");
        assert_eq!(ranges_for(&sealed, 1), vec!["[b] three\n* notice\n"]);
        assert_eq!(
            ranges_for(&sealed, 2),
            vec!["[a] one\n[a] two\n", "* notice\n"]
        );
        assert_eq!(
            ranges_for(&sealed, 3),
            vec!["[a] one\n[a] two\n[b] three\n* notice\n"]
        );
        // Client 4 is in room 1: only what is for every room reaches it.
        assert_eq!(ranges_for(&sealed, 4), vec!["* notice\n"]);
        assert!(round.seal().is_none());
    }
}
