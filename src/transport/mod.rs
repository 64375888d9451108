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

pub(crate) mod telnet;
pub mod tls;
pub(crate) mod websocket;

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The main port: nc, telnet, socat, scripts.
    Tcp,
    /// The `--web` port: HTTP for the page, WebSocket for the chat.
    Web,
    /// The `--metrics` port: `/metrics` for Prometheus (served by the server, not the chat).
    Metrics,
}

/// What a client's thread asks the hub to write as it is, before the lines it read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DirectOutput {
    /// Telnet: negotiation answers, then the echo of what was typed. WebSocket: control
    /// frames (pong, close).
    pub bytes: Vec<u8>,
    /// Telnet in character mode: the line being typed, as the echo left it on the client's
    /// screen; `None` when the client echoes for itself (and for WebSocket).
    pub input_line: Option<String>,
}
