//! Transports: the ways bytes reach a chat client beyond plain lines. Each turns a socket
//! into lines on the way in (on the client's thread) and puts what it needs around the
//! shared bytes of the hub's lines on the way out (in the client's outbox).
//!
//! - `telnet/`: negotiation, character-mode echo, the input line kept below incoming chat.
//! - `websocket.rs`: browser clients (the HTTP side, the page and the handshake, is web/).
//! - `tls.rs`: TLS under either, with the session shared by the client's thread and the
//!   hub.
//!
//! A client's thread never writes to its socket once the client has joined: what its
//! transport must send (telnet answers and echo, WebSocket pongs and close frames) goes to
//! the hub as [`DirectOutput`] with the lines of the same read, and the hub, the one
//! writer, puts it in order with everything else it sends that client.

pub(crate) mod tcp;
pub(crate) mod telnet;
pub mod tls;
pub(crate) mod websocket;

use crate::port::Port;
use crate::protocol::{self, Decoded, Input};
use crate::service::Connection;

/// What a client's thread asks the hub to write as it is, before the lines it read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DirectOutput {
    /// Telnet: negotiation answers, then the echo of what was typed. WebSocket: control
    /// frames (pong, close).
    pub bytes: Vec<u8>,
    /// Telnet in character mode: the line being typed, as the echo left it on the client's
    /// screen; `None` when the client echoes for itself (and for WebSocket).
    pub input_line: Option<String>,
    /// The transport's last words (a WebSocket close frame): nothing may follow them, so
    /// the hub lets the client go as it writes them.
    pub closes: bool,
}

/// How a chat client's bytes arrive and become lines.
pub(crate) trait ClientInput {
    /// The port, which decides how the hub writes to this client.
    fn port(&self) -> Port;

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
