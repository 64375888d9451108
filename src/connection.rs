//! One chat client's thread: reads lines, parses them, hands them to the hub, and makes
//! sure the hub hears exactly once that the client left, however the thread ends.

use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use log::debug;

use crate::control::ConnectionId;
use crate::error::describe;
use crate::hub::{Event, LeaveReason};
use crate::protocol::{self, Decoded, Input, LineDecoder};
use crate::rate::TokenBucket;
use crate::service::{Connection, Received};
use crate::transport::telnet::Terminal;
use crate::transport::{DirectOutput, Transport};

/// Bytes read per system call. Small on purpose: a client that has said something keeps
/// the buffer (on the heap) while it is connected, and a larger one measured no faster in
/// fanout (the senders' windows, not the buffer, bound a read).
const READ_CHUNK: usize = 1024;
/// How long a client that quit or idled out, or was refused, has to close after the last
/// words it gets (the server closes the sending side; see `Connection::wait_for_close`).
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// Serves one chat client until it quits, closes, idles out or is closed by the hub;
/// `input` is how its bytes arrive (plain TCP with telnet, or WebSocket frames).
pub(crate) fn serve_client(
    connection: Connection,
    hub: &SyncSender<Event>,
    limits: ClientLimits,
    input: &mut dyn ClientInput,
) {
    let id = connection.id;
    let joined = Event::Joined {
        id,
        stream: connection.stream.clone(),
        peer: connection.peer,
        transport: input.transport(),
        tls: connection.tls.clone(),
    };
    if hub.send(joined).is_err() {
        return;
    }
    let mut presence = Presence {
        id,
        hub,
        reason: LeaveReason::ConnectionClosed,
    };
    let mut flood_control = TokenBucket::new(limits.rate, limits.burst, Instant::now());
    loop {
        let mut inputs = Vec::new();
        let Read { direct, end, cost } = input.read(&connection, &mut inputs);
        let quit = take_quit(&mut inputs);
        if !forward(&connection, hub, direct, inputs, cost, &mut flood_control) {
            return;
        }
        if let Some(reason) = quit {
            presence.reason = LeaveReason::Quit(reason);
            drop(presence);
            return connection.wait_for_close(LINGER);
        }
        match end {
            None => {}
            Some(End::Closed) => return,
            Some(End::IdleTimeout) => {
                presence.reason = LeaveReason::IdleTimeout;
                drop(presence);
                return connection.wait_for_close(LINGER);
            }
            Some(End::Failed(why)) => {
                debug!("#{id} ({}): {why}", connection.peer);
                return;
            }
        }
    }
}

/// How a chat client's bytes arrive and become lines.
pub(crate) trait ClientInput {
    /// The transport, which decides how the hub writes to this client.
    fn transport(&self) -> Transport;

    /// Blocks until the client sends something or the connection ends; adds the inputs
    /// that completes to `inputs`.
    fn read(&mut self, connection: &Connection, inputs: &mut Vec<Input>) -> Read;
}

/// What one [`ClientInput::read`] gave besides inputs.
#[derive(Default)]
pub(crate) struct Read {
    /// What the transport must write before the inputs are handled.
    pub direct: Option<Box<DirectOutput>>,
    /// The connection ended (after the inputs of this read).
    pub end: Option<End>,
    /// Flood-control tokens the read costs besides one per input: telnet commands,
    /// WebSocket frames that carry no line, and bulk bytes (see [`ByteMeter`]). Every kind
    /// of input is paced, so no client can make the server work faster than `--rate`
    /// allows, whatever it sends.
    pub cost: u32,
}

/// Bytes received per flood-control token, besides the token each line costs: a client
/// that sends no newlines (or huge lines) is paced too, at `--rate` times this many bytes
/// a second, while keys typed one at a time and ordinary lines cost nothing extra.
pub(crate) const BYTES_PER_TOKEN: usize = 4096;

/// What a read the server writes back to counts as, at least, in [`ByteMeter`]: 16 such
/// reads a token, so 160 keys a second at the default `--rate`, far beyond typing.
const ANSWERED_READ: usize = BYTES_PER_TOKEN / 16;

/// Counts a client's bytes into flood-control tokens.
#[derive(Debug, Default)]
pub(crate) struct ByteMeter {
    uncharged: usize,
}

impl ByteMeter {
    /// Adds `count` bytes; returns the whole tokens they complete.
    pub(crate) fn charge(&mut self, count: usize) -> u32 {
        self.uncharged += count;
        let tokens = self.uncharged / BYTES_PER_TOKEN;
        self.uncharged %= BYTES_PER_TOKEN;
        u32::try_from(tokens).unwrap_or(u32::MAX)
    }
}

/// How a client's connection ended.
pub(crate) enum End {
    /// The client closed (or the hub shut the socket down).
    Closed,
    /// Nothing arrived within `--idle-timeout`.
    IdleTimeout,
    /// The connection broke, or the client broke the protocol; the reason, for the log.
    Failed(String),
}

/// Plain TCP: nc, scripts, and telnet clients (whose commands and echo transport/telnet/
/// handles).
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
    fn transport(&self) -> Transport {
        Transport::Tcp
    }

    fn read(&mut self, connection: &Connection, inputs: &mut Vec<Input>) -> Read {
        // Most clients wait far longer than they work: what the work (the join, a burst of
        // lines) touched of the stack goes back before the wait.
        crate::limits::release_unused_stack();
        // Many clients never say anything (a lecture's audience): until its client's first
        // bytes arrive, a thread waits without a read buffer (1 KiB less per such client),
        // at the price of a second system call for that first read. The buffer is kept
        // from then on: given back, it would stay in this thread's free list anyway.
        let waited = if self.chunk.is_none() && connection.tls.is_none() {
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

/// Per-client limits applied on the client's own thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientLimits {
    pub max_line: usize,
    /// Lines per second (0 = no flood control).
    pub rate: u32,
    pub burst: u32,
}

/// Hands the inputs of one read to the hub, in as few events as flood control allows,
/// what the transport must write with the first. The read's `cost` is paid first, so that
/// what the transport writes back (telnet answers, pongs) is paced with what caused it.
/// Waiting for a token keeps this thread from reading, which is what slows a flooder down.
/// Returns false if the connection was closed meanwhile or the hub is gone.
#[inline(never)] // see serve_client
fn forward(
    connection: &Connection,
    hub: &SyncSender<Event>,
    mut direct: Option<Box<DirectOutput>>,
    inputs: Vec<Input>,
    cost: u32,
    flood_control: &mut Option<TokenBucket>,
) -> bool {
    let id = connection.id;
    let mut send = |inputs: Vec<Input>| {
        if inputs.is_empty() && direct.is_none() {
            return true;
        }
        hub.send(Event::Inputs {
            id,
            direct: direct.take(),
            inputs,
        })
        .is_ok()
    };
    let Some(bucket) = flood_control else {
        return send(inputs);
    };
    for _ in 0..cost {
        while let Err(wait) = bucket.take(Instant::now()) {
            connection.metrics.flood_pauses.inc();
            if !connection.pause(wait) {
                // Ended while paying: what was read is still said (see below).
                send(inputs);
                return false;
            }
        }
    }
    let mut batch = Vec::new();
    let mut inputs = inputs.into_iter();
    while let Some(input) = inputs.next() {
        while let Err(wait) = bucket.take(Instant::now()) {
            connection.metrics.flood_pauses.inc();
            if !send(std::mem::take(&mut batch)) {
                return false;
            }
            if !connection.pause(wait) {
                // The connection ended while these lines waited (the client closed and
                // a line to it came back as a reset, or the server is closing): what was
                // read is still said. It is one read's worth, so the room gets no flood.
                batch.push(input);
                batch.extend(inputs);
                send(batch);
                return false;
            }
        }
        batch.push(input);
    }
    send(batch)
}

/// Turns a decoded line into an input; `entered` sees its sanitised text first (for an
/// echo).
pub(crate) fn collect_input(
    item: Decoded<'_>,
    inputs: &mut Vec<Input>,
    mut entered: impl FnMut(&str),
) {
    let input = match item {
        Decoded::Line(raw) => {
            let text = protocol::sanitize(raw);
            entered(&text);
            protocol::parse_line(text)
        }
        Decoded::TooLong => Some(Input::TooLong),
    };
    inputs.extend(input);
}

/// Cuts the inputs at the first `/quit`: lines before it are delivered, lines after it are
/// not (the client asked to leave). Returns the quit's reason.
#[inline(never)] // see serve_client
fn take_quit(inputs: &mut Vec<Input>) -> Option<Option<String>> {
    let position = inputs
        .iter()
        .position(|input| matches!(input, Input::Quit(_)))?;
    match inputs.drain(position..).next() {
        Some(Input::Quit(reason)) => Some(reason),
        _ => None,
    }
}

/// The client's place in the chat: dropping it tells the hub the client left, exactly once.
struct Presence<'a> {
    id: ConnectionId,
    hub: &'a SyncSender<Event>,
    reason: LeaveReason,
}

impl Drop for Presence<'_> {
    fn drop(&mut self) {
        let reason = std::mem::replace(&mut self.reason, LeaveReason::ConnectionClosed);
        let _ = self.hub.send(Event::Left {
            id: self.id,
            reason,
        });
    }
}
