//! Plain TCP: nc, scripts, and telnet clients, whose commands and echo telnet/ handles.

use super::telnet::Terminal;
use super::{ANSWERED_READ, ByteMeter, ClientInput, End, Read, collect_input};
use crate::error::describe;
use crate::port::Port;
use crate::protocol::{Input, LineDecoder};
use crate::service::{Connection, Received};

/// Bytes read per system call. Small on purpose: a client that has said something keeps
/// the buffer (on the heap) while it is connected, and a larger one measured no faster in
/// fanout (the senders' windows, not the buffer, bound a read).
const READ_CHUNK: usize = 1024;

/// Reads a plain TCP client's bytes into lines.
pub(crate) struct TcpInput {
    decoder: LineDecoder,
    terminal: Terminal,
    /// On the heap (a thread's stack stays within the pages it touches anyway), from the
    /// client's first bytes on.
    chunk: Option<Box<[u8]>>,
    telnet_free: Vec<u8>,
    bytes: ByteMeter,
}

impl TcpInput {
    pub(crate) fn new(max_line: usize) -> TcpInput {
        TcpInput {
            decoder: LineDecoder::new(max_line),
            terminal: Terminal::default(),
            chunk: None,
            telnet_free: Vec::new(),
            bytes: ByteMeter::default(),
        }
    }
}

impl ClientInput for TcpInput {
    fn port(&self) -> Port {
        Port::Chat
    }

    fn read(&mut self, connection: &Connection, inputs: &mut Vec<Input>) -> Read {
        // Most clients wait far longer than they work: what the work (the join, a burst of
        // lines) touched of the stack goes back before the wait.
        crate::stack::release_unused_stack();
        // Many clients never say anything (a lecture's audience): until its client's first
        // bytes arrive, a thread waits without a read buffer (1 KiB less per such client),
        // at the price of a second system call for that first read. The buffer is kept
        // from then on: given back, it would stay in this thread's free list anyway.
        let waited = if self.chunk.is_none() {
            connection.wait_for_data()
        } else {
            Ok(())
        };
        let received = match waited {
            Ok(()) => connection.receive(self.chunk.get_or_insert_with(read_buffer)),
            Err(end) => end,
        };
        let terminal = &mut self.terminal;
        match received {
            Received::Data(bytes) => {
                let received = bytes.len();
                let data = terminal.data(bytes, &mut self.telnet_free);
                self.decoder.feed(data, |item| {
                    collect_input(item, inputs, |text| terminal.line_entered(text))
                });
                let direct = terminal.end_of_read(self.decoder.unfinished_line());
                // A read the server answers (the echo of a key in character mode) costs at
                // least ANSWERED_READ bytes: keys typed by hand stay free, but one-byte
                // writes as fast as TCP carries them cannot make the hub echo at will.
                let counted = if direct.is_some() {
                    received.max(ANSWERED_READ)
                } else {
                    received
                };
                Read {
                    direct,
                    end: None,
                    cost: self
                        .bytes
                        .charge(counted)
                        .saturating_add(terminal.take_commands()),
                }
            }
            Received::Closed => {
                self.decoder
                    .finish(|item| collect_input(item, inputs, |_| {}));
                Read {
                    end: Some(End::Closed),
                    ..Read::default()
                }
            }
            Received::IdleTimeout => Read {
                end: Some(End::IdleTimeout),
                ..Read::default()
            },
            Received::Failed(error) => Read {
                end: Some(End::Failed(format!("read failed: {}", describe(&error)))),
                ..Read::default()
            },
        }
    }
}

/// A read buffer on the heap (not `Box::new([0; N])`, which builds the array on the stack
/// first).
fn read_buffer() -> Box<[u8]> {
    vec![0; READ_CHUNK].into_boxed_slice()
}
