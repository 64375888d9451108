//! What the hub hears: the events client threads, the chat service and the cluster send
//! it, and why a client left.

use std::fmt;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::cluster::Incoming;
use crate::control::ConnectionId;
use crate::history::Found;
use crate::port::Port;
use crate::protocol::Input;
use crate::transport::DirectOutput;
use crate::transport::tls::TlsSession;

/// What client threads and the chat service tell the hub.
pub(crate) enum Event {
    /// A connection arrived; the hub names it `guest-ID` and welcomes it.
    Joined {
        id: ConnectionId,
        stream: Arc<TcpStream>,
        peer: SocketAddr,
        port: Port,
        tls: Option<Arc<TlsSession>>,
    },
    /// Everything one read from a client produced, in order.
    Inputs {
        id: ConnectionId,
        /// What the client's transport must write before the inputs are handled.
        direct: Option<Box<DirectOutput>>,
        inputs: Vec<Input>,
    },
    /// The client's thread ended; sent exactly once per client.
    Left {
        id: ConnectionId,
        reason: LeaveReason,
    },
    /// The server stopped accepting; clients may go on chatting.
    Draining,
    /// The drain timeout passed: deliver what is pending, say goodbye, close everyone.
    CloseAll { done: Sender<()> },
    /// Every client thread has ended: return.
    Stop,
    /// A client the kernel would not take more from can take some now (waker.rs).
    Writable,
    /// News from the cluster's threads (`--cluster`).
    Cluster(Incoming),
    /// The history thread's answer to a client's `/search` (`--history-db`).
    Found {
        id: ConnectionId,
        text: String,
        result: Result<Found, String>,
    },
}

/// Why a client left, as shown to the others in `* nick left (REASON)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaveReason {
    Quit(Option<String>),
    ConnectionClosed,
    IdleTimeout,
    SlowConsumer,
    ServerShutdown,
    /// Went to another room (still connected).
    Moved(String),
    /// Removed by an operator: who, and why if they said.
    Kicked {
        by: String,
        reason: Option<String>,
    },
}

impl fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaveReason::Quit(None) => f.write_str("quit"),
            LeaveReason::Quit(Some(reason)) => write!(f, "quit: {reason}"),
            LeaveReason::ConnectionClosed => f.write_str("connection closed"),
            LeaveReason::IdleTimeout => f.write_str("idle timeout"),
            LeaveReason::SlowConsumer => f.write_str("slow consumer"),
            LeaveReason::ServerShutdown => f.write_str("server shutting down"),
            LeaveReason::Moved(room) => write!(f, "to {room}"),
            LeaveReason::Kicked { by, reason: None } => write!(f, "kicked by {by}"),
            LeaveReason::Kicked {
                by,
                reason: Some(reason),
            } => {
                write!(f, "kicked by {by}: {reason}")
            }
        }
    }
}
