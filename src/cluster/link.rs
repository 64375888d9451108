//! What the cluster's two Redis connections share. Each is on a thread of its own, so that
//! the hub never waits on Redis: the writer (writer.rs) takes the hub's requests from a
//! channel (publish an event, claim a nick, ...) and keeps the node's lease; the reader
//! (reader.rs) follows the stream and hands every entry to the hub, in the stream's order.
//! Here: the Redis keys, the timeouts, connecting, and the link's state as the hub hears it.
//!
//! Redis data (keys under `tcpchat:`):
//! - `events`: the stream every node writes its shared events to (XADD, bounded by MAXLEN)
//!   and reads them all back from (XREAD BLOCK from the last id it saw).
//! - `node:NAME`: the node's lease, renewed every third of `--cluster-timeout`.
//! - `nodes`: the names of the nodes, to check each other's leases.
//! - `nicks`: lower-cased nick to `NODE<TAB>CLAIMED_AT_MICROS`, claimed atomically (a script).
//! - `guests`: the counter guest numbers are taken from, 64 at a time.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{info, warn};
use parking_lot::Mutex;

use super::{ClusterSettings, Incoming, ToHub};

pub(super) const STREAM: &str = "tcpchat:events";
pub(super) const NODES: &str = "tcpchat:nodes";
pub(super) const NICKS: &str = "tcpchat:nicks";
pub(super) const GUESTS: &str = "tcpchat:guests";
pub(super) const NODE_PREFIX: &str = "tcpchat:node:";
/// Guest numbers taken from Redis at a time.
pub(crate) const GUEST_BLOCK: u64 = 64;
/// How long a connection attempt or a command may take before the link counts as down.
/// Short: while a stalled Redis is not yet found out, this node's own lines wait for it.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long the reader waits in XREAD for new entries before asking again.
pub(super) const BLOCK: Duration = Duration::from_millis(500);
pub(super) const FIRST_RETRY: Duration = Duration::from_millis(100);
pub(super) const LAST_RETRY: Duration = Duration::from_secs(5);
/// Whether each of the two connections works; the hub hears when both together change.
pub(crate) struct LinkState {
    inner: Mutex<(bool, bool, bool)>,
    hub: ToHub,
}

impl LinkState {
    pub(crate) fn new(hub: ToHub) -> Arc<LinkState> {
        Arc::new(LinkState {
            inner: Mutex::new((false, false, false)),
            hub,
        })
    }

    pub(super) fn set(&self, writer: Option<bool>, reader: Option<bool>) {
        let mut state = self.inner.lock();
        let (old_writer, old_reader, reported) = *state;
        let (writer, reader) = (writer.unwrap_or(old_writer), reader.unwrap_or(old_reader));
        let up = writer && reader;
        *state = (writer, reader, up);
        if up != reported {
            // Sent under the lock, so that the hub hears the changes in the order they
            // happened.
            let incoming = if up {
                Incoming::LinkUp
            } else {
                Incoming::LinkDown
            };
            (self.hub)(incoming);
        }
    }
}

pub(super) fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(url)?;
    let connection = client.get_connection_with_timeout(COMMAND_TIMEOUT)?;
    connection.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    Ok(connection)
}

/// Microseconds since the epoch: when a nick was claimed (fine enough that two claims a
/// moment apart are told apart), and a node's incarnation.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

/// Logs a failure once per outage.
pub(super) struct Outage {
    pub(super) what: &'static str,
    pub(super) logged: bool,
}

impl Outage {
    pub(super) fn failed(&mut self, settings: &ClusterSettings, error: &redis::RedisError) {
        if !self.logged {
            warn!(
                "cluster {} lost ({}): {error}; retrying",
                self.what, settings.redacted_url
            );
            self.logged = true;
        }
    }

    pub(super) fn recovered(&mut self, settings: &ClusterSettings) {
        if std::mem::take(&mut self.logged) {
            info!("cluster {} back ({})", self.what, settings.redacted_url);
        }
    }
}
