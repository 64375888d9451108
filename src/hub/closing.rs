//! The end of a drain: what is pending and a goodbye reach every client that reads within
//! a moment, then every client is closed and leaves (in the transcript, and for the other
//! nodes of a cluster).

use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::info;

use super::notices::NoticeKind;
use super::{Hub, LeaveReason};
use crate::cluster::wire::Shared;
use crate::outbox::{Chunk, line, wait_until_writable};

/// At shutdown, how long the hub tries to deliver pending output and the goodbye line to
/// clients that are slow to read, before closing them regardless.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

impl Hub {
    /// The end of the drain: every client gets its pending output and a goodbye line
    /// (within FINAL_FLUSH_TIMEOUT), then is closed.
    pub(super) fn close_all(&mut self) {
        self.flush_notices();
        self.commit_round();
        let goodbye = line("* server closed, bye!");
        for client in self.clients.values_mut() {
            client.outbox.push_last(Chunk::whole(Arc::clone(&goodbye)));
        }
        let deadline = Instant::now() + FINAL_FLUSH_TIMEOUT;
        loop {
            let mut waiting = Vec::new();
            for client in self.clients.values_mut() {
                if client.outbox.send_available(&client.stream).is_err() {
                    client.outbox.clear();
                }
                if !client.outbox.is_empty() {
                    waiting.push(&*client.stream);
                }
            }
            let now = Instant::now();
            if waiting.is_empty() || now >= deadline {
                break;
            }
            wait_until_writable(&waiting, deadline - now);
        }
        self.browsers = 0;
        self.round.set_browsers_present(false);
        for (id, client) in std::mem::take(&mut self.clients) {
            // The sending side only: the client's thread reads on until the peer closes
            // (or the supervisor's linger ends), so that no unread input turns the close
            // into a reset that would destroy the goodbye.
            let _ = client.stream.shutdown(Shutdown::Write);
            info!(
                "{} ({}) left: {}",
                client.nick,
                client.peer,
                LeaveReason::ServerShutdown
            );
            self.settings
                .metrics
                .count_client(client.port, client.tls, -1);
            if self.cluster.is_none() {
                // Nobody is left to tell, but the transcript has the joins: it gets the
                // leaves too. (In a cluster the published leave is recorded when applied.)
                let leave = NoticeKind::Left(LeaveReason::ServerShutdown.to_string());
                self.record(Some(client.room), &leave.line(&client.nick));
            } else {
                // The other nodes' clients see them go; nobody here is left to tell.
                self.publish(Shared::Left {
                    room: client.room,
                    id,
                    nick: client.nick,
                    reason: LeaveReason::ServerShutdown.to_string(),
                });
            }
        }
        self.nick_owners.clear();
        self.delivery.clear();
    }
}
