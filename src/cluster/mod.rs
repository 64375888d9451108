//! Several tcpchat nodes as one chat, joined through Redis (`--cluster`). Read in this
//! order: this file (what the hub and the cluster tell each other), wire.rs (the events in
//! the stream), link.rs (the Redis keys and what both connections share), writer.rs and
//! reader.rs (the two connections' threads), and hub/cluster.rs (what the hub does with
//! them).
//!
//! ```text
//!   hub ──Outgoing (unbounded)──> writer thread ──XADD, claims, lease──> Redis
//!    ^                                                                    │
//!    └──────── Event::Cluster(Incoming) <── reader thread <──XREAD BLOCK──┘
//! ```
//!
//! The hub stays the one owner of chat state and never waits on Redis: it hands its
//! shared events (messages, joins, leaves, renames, moderation) to the writer, and applies
//! them when they come back from the stream, together with every other node's, in the
//! stream's one order. While the link is down it applies them at once and keeps them to
//! send when the link is back.

mod link;
mod reader;
pub(crate) mod wire;
mod writer;

#[cfg(fuzzing)]
pub(crate) use reader::fuzz_reply;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use crossbeam_channel::Sender;
use log::info;

pub(crate) use link::{GUEST_BLOCK, now_micros};
use wire::Envelope;

use crate::control::ConnectionId;
use crate::error::Error;

/// Where the cluster's threads send what they learn: into the hub's channel, as wired by
/// whoever starts both (chat.rs), so that the cluster knows nothing of the hub. False once
/// the hub is gone.
pub(crate) type ToHub = Arc<dyn Fn(Incoming) -> bool + Send + Sync>;

/// Where the cluster is and who this node is in it.
#[derive(Debug, Clone)]
pub(crate) struct ClusterSettings {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`
    pub url: String,
    /// The URL with any password replaced, for the log.
    pub redacted_url: String,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// Tells this run of the node from an earlier one with the same name.
    pub incarnation: u64,
    /// A node whose lease is older than this is lost.
    pub timeout: Duration,
    /// Stream entries read at start-up for the rooms' history.
    pub history_entries: usize,
}

/// What the hub asks of the cluster.
pub(crate) enum Outgoing {
    /// Write a shared event to the stream.
    Publish(Envelope),
    /// Claim a nick for client `id`; answered with [`Incoming::NickClaimed`].
    ClaimNick {
        id: ConnectionId,
        nick: String,
        claimed_at: u64,
    },
    /// This node's client no longer uses the nick.
    ReleaseNick(String),
    /// Send more guest numbers ([`Incoming::GuestNumbers`]), all above `in_use` (the
    /// highest this node knows to be taken: a Redis restarted empty must not give them
    /// again).
    NeedGuests {
        in_use: u64,
    },
    /// The reader lost its connection: the writer's, idle, may be dead too (Redis
    /// restarted); try it now rather than at the next heartbeat, so that the link is not
    /// reported back while one connection is dead.
    CheckLink,
    Stop,
}

/// What the cluster tells the hub.
pub(crate) enum Incoming {
    /// The stream's recent entries, oldest first: its messages are the rooms' history,
    /// and every entry says how far each node's events were read.
    History(Vec<(SystemTime, Envelope)>),
    /// The next entry of the stream. `late`: written while this node's link was down.
    Delivered {
        envelope: Envelope,
        late: bool,
    },
    /// Both connections work.
    LinkUp,
    /// A connection failed: chat locally until [`Incoming::LinkUp`].
    LinkDown,
    /// An event the writer could not send (the link went down): the hub delivers it
    /// locally instead.
    Unpublished(Envelope),
    /// The answer to a claim: `granted` is `None` when Redis could not be asked.
    /// `taken_from`: the node that had claimed it later (during a split).
    NickClaimed {
        id: ConnectionId,
        nick: String,
        granted: Option<bool>,
        taken_from: Option<String>,
    },
    GuestNumbers(Range<u64>),
    /// This node found that `node`'s lease ran out.
    NodeExpired(String),
    /// The last entry this node read is no longer in the stream (Redis restarted empty,
    /// or trimmed it): what this node wrote lately may not have reached every node.
    /// Comes before the [`Incoming::LinkUp`] of the same reconnection.
    StreamLost,
}

/// The running cluster link: its two threads.
pub(crate) struct Cluster {
    requests: Sender<Outgoing>,
    node: String,
    incarnation: u64,
    stop_reader: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// Starts the writer and reader threads; they connect in the background, so that a
    /// node starts (and chats locally) whether Redis answers or not.
    pub(crate) fn start(settings: ClusterSettings, hub: ToHub) -> Result<Cluster, Error> {
        let (requests, receiver) = crossbeam_channel::unbounded();
        let state = link::LinkState::new(Arc::clone(&hub));
        let stop_reader = Arc::new(AtomicBool::new(false));
        let spawn = |name: &'static str, run: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(String::from(name))
                .spawn(run)
                .map_err(|source| Error::Thread { name, source })
        };
        let writer = {
            let (settings, hub, state) = (settings.clone(), Arc::clone(&hub), Arc::clone(&state));
            spawn(
                "cluster-writer",
                Box::new(move || writer::run_writer(settings, receiver, hub, state)),
            )?
        };
        let reader = {
            let stop = Arc::clone(&stop_reader);
            let (settings, writer) = (settings.clone(), requests.clone());
            spawn(
                "cluster-reader",
                Box::new(move || reader::run_reader(settings, hub, writer, state, stop)),
            )?
        };
        info!(
            "cluster {} as node {}",
            settings.redacted_url, settings.node
        );
        let (node, incarnation) = (settings.node.clone(), settings.incarnation);
        Ok(Cluster {
            node,
            incarnation,
            requests,
            stop_reader,
            threads: vec![writer, reader],
        })
    }

    /// What the hub needs: where to send requests, the node's name and incarnation.
    pub(crate) fn hub_link(&self) -> (Sender<Outgoing>, String, u64) {
        (self.requests.clone(), self.node.clone(), self.incarnation)
    }

    /// Sends what is queued, gives the lease back and joins both threads (the reader
    /// within one XREAD block).
    pub(crate) fn stop(self) {
        let _ = self.requests.send(Outgoing::Stop);
        self.stop_reader.store(true, Ordering::SeqCst);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// `redis://:secret@host:6379/0` as `redis://:***@host:6379/0`.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_reaches_the_log() {
        assert_eq!(redact("redis://:sesame@db:6379/2"), "redis://***@db:6379/2");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
