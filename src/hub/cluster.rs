//! The hub's side of the cluster: this node's place in the stream's order, what happens
//! when the link to Redis goes and comes back, and nicks and guest numbers across nodes
//! (who is on the other nodes: remote.rs).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;
use log::{debug, info, warn};

use super::Hub;
use super::shared::Origin;
use crate::cluster::wire::{Envelope, Shared};
use crate::cluster::{GUEST_BLOCK, Incoming, Outgoing, now_micros};
use crate::control::ConnectionId;
use crate::rooms::RoomId;

/// Events said while the link was down that are sent to the others when it is back.
const BACKLOG: usize = 1000;
/// How long this node remembers its events that came back from the stream, in case Redis
/// loses the stream (restarted empty) before every other node has read them. Another node
/// reads an entry milliseconds after it is written, so seconds are plenty.
const RESEND_WINDOW: Duration = Duration::from_secs(10);

/// What the hub knows of the cluster.
pub(super) struct ClusterView {
    requests: Sender<Outgoing>,
    pub(super) node: String,
    incarnation: u64,
    next_seq: u64,
    /// This node's events sent to the stream and not yet back from it, by sequence number:
    /// applied here when they come back, or at once when the link goes down first.
    awaiting_echo: BTreeMap<u64, Envelope>,
    /// This node's events that came back from the stream in the last [`RESEND_WINDOW`]
    /// (at most [`BACKLOG`]): sent again if Redis loses the stream.
    recently_delivered: VecDeque<(Instant, Envelope)>,
    /// The reader found the stream lost (Redis restarted empty): send the recent events
    /// again when the link is back.
    stream_lost: bool,
    /// Lines said here before the stream's history arrived (the link was down at start),
    /// to keep after it; `None` once it arrived.
    said_before_history: Option<Vec<(RoomId, String, SystemTime)>>,
    /// The last sequence number seen from each origin (node, incarnation).
    last_seen: HashMap<(String, u64), u64>,
    linked: bool,
    /// Clients were told the link is lost (and are to be told it is back).
    told_lost: bool,
    /// Events applied here while the link was down, to send when it is back, by sequence
    /// number: they must reach the stream in order, or the others would skip them.
    backlog: BTreeMap<u64, Envelope>,
    /// Clients on other nodes, by (node, id), and their nicks (lower case).
    pub(super) remote: HashMap<(String, u64), RemoteMember>,
    pub(super) remote_nicks: HashMap<String, (String, u64)>,
    guest_numbers: Range<u64>,
    asked_for_guests: bool,
    /// When each local client took its nick, for settling who keeps it after a split.
    pub(super) claimed_at: HashMap<ConnectionId, u64>,
    /// Renames waiting for Redis to grant the nick, in the order asked (Redis answers in
    /// that order).
    pub(super) pending_renames: HashMap<ConnectionId, VecDeque<String>>,
}

pub(super) struct RemoteMember {
    pub(super) nick: String,
    pub(super) room: RoomId,
}

impl ClusterView {
    pub(super) fn new(requests: Sender<Outgoing>, node: String, incarnation: u64) -> ClusterView {
        ClusterView {
            requests,
            node,
            incarnation,
            next_seq: 1,
            awaiting_echo: BTreeMap::new(),
            recently_delivered: VecDeque::new(),
            stream_lost: false,
            said_before_history: Some(Vec::new()),
            last_seen: HashMap::new(),
            linked: false,
            told_lost: false,
            backlog: BTreeMap::new(),
            remote: HashMap::new(),
            remote_nicks: HashMap::new(),
            guest_numbers: 0..0,
            asked_for_guests: true,
            claimed_at: HashMap::new(),
            pending_renames: HashMap::new(),
        }
    }

    /// Sends an event to the stream; returns true if it must be applied here now instead
    /// (the link is down: it is kept for when the link is back).
    pub(super) fn send(&mut self, event: Shared) -> bool {
        let seq = self.next_seq;
        self.next_seq += 1;
        let envelope = Envelope {
            node: self.node.clone(),
            incarnation: self.incarnation,
            seq,
            split: !self.linked,
            event,
        };
        if self.linked {
            self.awaiting_echo.insert(seq, envelope.clone());
            let _ = self.requests.send(Outgoing::Publish(envelope));
            false
        } else {
            self.keep_for_later(envelope);
            true
        }
    }

    fn keep_for_later(&mut self, envelope: Envelope) {
        self.backlog.insert(envelope.seq, envelope);
        if self.backlog.len() > BACKLOG {
            self.backlog.pop_first();
        }
    }

    /// One of this node's events came back from the stream: it is applied now, and
    /// remembered for a while in case the stream is lost. False if it was applied already
    /// (while the link was down).
    fn echoed(&mut self, seq: u64) -> bool {
        let Some(envelope) = self.awaiting_echo.remove(&seq) else {
            return false;
        };
        self.remember_delivered(envelope);
        true
    }

    /// Remembers an event of this node's that is in the stream now, for
    /// [`RESEND_WINDOW`].
    fn remember_delivered(&mut self, envelope: Envelope) {
        self.forget_old_deliveries();
        if self.recently_delivered.len() >= BACKLOG {
            self.recently_delivered.pop_front();
        }
        self.recently_delivered
            .push_back((Instant::now(), envelope));
    }

    fn forget_old_deliveries(&mut self) {
        let now = Instant::now();
        while self
            .recently_delivered
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RESEND_WINDOW)
        {
            self.recently_delivered.pop_front();
        }
    }

    /// A line said here is in its room's history: kept to put back after the stream's
    /// history if that has not arrived yet (at most a room's worth per room is useful:
    /// the cap only bounds memory).
    pub(super) fn said_here(&mut self, room: RoomId, line: &str) {
        if let Some(said) = &mut self.said_before_history
            && said.len() < BACKLOG
        {
            said.push((room, line.to_owned(), SystemTime::now()));
        }
    }

    /// The link went down: what was sent and has not come back yet is taken back, in the
    /// order said, to be applied here now (before anything said from now on) and sent
    /// again when the link is back. If it did land in the stream, the others skip the
    /// second copy and this node skips the echo.
    fn take_back_unechoed(&mut self) -> Vec<Envelope> {
        let unechoed: Vec<Envelope> = std::mem::take(&mut self.awaiting_echo)
            .into_values()
            .collect();
        for envelope in &unechoed {
            self.keep_for_later(Envelope {
                split: true,
                ..envelope.clone()
            });
        }
        unechoed
    }

    pub(super) fn request(&self, request: Outgoing) {
        let _ = self.requests.send(request);
    }

    pub(super) fn is_linked(&self) -> bool {
        self.linked
    }

    /// A guest number from the cluster's counter, if one is left.
    fn take_guest_number(&mut self) -> Option<u64> {
        let number = self.guest_numbers.next();
        if self.guest_numbers.end - self.guest_numbers.start < GUEST_BLOCK / 2
            && !self.asked_for_guests
        {
            self.asked_for_guests = true;
            let in_use = self.guest_numbers.end;
            self.request(Outgoing::NeedGuests { in_use });
        }
        number
    }

    /// The nick held on another node, if any (any case).
    pub(super) fn remote_holder(&self, nick: &str) -> Option<&RemoteMember> {
        let key = self.remote_nicks.get(&nick.to_ascii_lowercase())?;
        self.remote.get(key)
    }

    /// Members on other nodes in `room`, their nicks.
    pub(super) fn remote_in(&self, room: RoomId) -> impl Iterator<Item = &str> {
        self.remote
            .values()
            .filter(move |member| member.room == room)
            .map(|member| member.nick.as_str())
    }

    pub(super) fn remote_count(&self) -> usize {
        self.remote.len()
    }
}

impl Hub {
    /// The name for a newcomer: `guest-N`, numbered across the cluster.
    pub(super) fn guest_nick_for(&mut self, id: ConnectionId) -> String {
        match &mut self.cluster {
            None => crate::protocol::guest_nick(id),
            Some(cluster) => match cluster.take_guest_number() {
                Some(number) => crate::protocol::guest_nick(number),
                // Redis has given none yet: a name no other node can give.
                None => {
                    let node: String = cluster
                        .node
                        .chars()
                        .filter(char::is_ascii_alphanumeric)
                        .take(12)
                        .collect();
                    format!("guest-{node}-{id}")
                }
            },
        }
    }

    /// Clients on this node and on the others.
    pub(super) fn online_count(&self) -> usize {
        self.clients.len() + self.cluster.as_ref().map_or(0, ClusterView::remote_count)
    }

    /// Handles what the cluster's threads report.
    pub(super) fn handle_cluster(&mut self, incoming: Incoming) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        match incoming {
            Incoming::History(entries) => {
                let said_here = cluster.said_before_history.take().unwrap_or_default();
                // The cluster's history is everyone's: it replaces what this node's
                // history file gave back, unless Redis has none (it lost it). What was said
                // here since the start (the link was down) stays, after it.
                if entries
                    .iter()
                    .any(|(_, e)| matches!(e.event, Shared::Said { .. }))
                {
                    self.rooms.forget_histories();
                }
                for (at, envelope) in entries {
                    // Events read as history are not applied again if a node sends them
                    // once more (after Redis lost the stream).
                    let origin = (envelope.node.clone(), envelope.incarnation);
                    if let Some(cluster) = &mut self.cluster {
                        let last = cluster.last_seen.entry(origin).or_insert(0);
                        *last = (*last).max(envelope.seq);
                    }
                    if let Shared::Said { room, line, .. } = envelope.event {
                        let room = self.rooms.find_or_create(&room);
                        self.rooms.record_at(room, line, at);
                    }
                }
                for (room, line, at) in said_here {
                    self.rooms.record_at(room, line, at);
                }
            }
            Incoming::Delivered { envelope, late } => {
                let ours =
                    envelope.node == cluster.node && envelope.incarnation == cluster.incarnation;
                let origin = if ours {
                    if !cluster.echoed(envelope.seq) {
                        debug!("cluster: own #{} applied already", envelope.seq);
                        return; // applied here already, while the link was down
                    }
                    Origin::Here
                } else {
                    let key = (envelope.node.clone(), envelope.incarnation);
                    let last = cluster.last_seen.entry(key).or_insert(0);
                    if envelope.seq <= *last {
                        debug!(
                            "cluster: {} #{} seen before (last #{})",
                            envelope.node, envelope.seq, *last
                        );
                        return; // seen before: written twice after a timeout
                    }
                    if *last != 0 && envelope.seq > *last + 1 {
                        // Trimmed from the stream before this node read them (it fell
                        // behind by more than the stream's length), or dropped from a full
                        // backlog on the other side.
                        warn!(
                            "cluster: {} events from {} were lost on their way here",
                            envelope.seq - *last - 1,
                            envelope.node
                        );
                    }
                    *last = envelope.seq;
                    Origin::Node {
                        name: envelope.node,
                        during_split: envelope.split || late,
                    }
                };
                let rooms = &mut self.rooms;
                let event = envelope.event.map_room(|name| rooms.find_or_create(&name));
                self.apply(event, origin);
            }
            Incoming::Unpublished(envelope) => {
                // Kept for the next time the link is back, whether it was a new event
                // (applied here now, as said during the split) or one said during an earlier
                // split that failed to go out again.
                let not_applied = cluster.awaiting_echo.remove(&envelope.seq).is_some();
                debug!(
                    "cluster: #{} not sent (applied here now: {not_applied})",
                    envelope.seq
                );
                let event = not_applied.then(|| envelope.event.clone());
                cluster.keep_for_later(Envelope {
                    split: true,
                    ..envelope
                });
                if let Some(event) = event {
                    let rooms = &mut self.rooms;
                    let event = event.map_room(|name| rooms.find_or_create(&name));
                    self.apply(event, Origin::Here);
                }
            }
            Incoming::LinkDown => {
                debug!("cluster: link down");
                cluster.linked = false;
                self.settings.metrics.cluster_link_up.set(0);
                for envelope in cluster.take_back_unechoed() {
                    let rooms = &mut self.rooms;
                    let event = envelope.event.map_room(|name| rooms.find_or_create(&name));
                    self.apply(event, Origin::Here);
                }
                let Some(cluster) = &mut self.cluster else {
                    return;
                };
                if !cluster.told_lost {
                    cluster.told_lost = true;
                    warn!("cluster link lost: chatting on this node only until it is back");
                    self.broadcast(
                        None,
                        &["* cluster link lost: you are chatting with this server only"],
                        None,
                    );
                }
            }
            Incoming::LinkUp => {
                debug!("cluster: link up");
                self.settings.metrics.cluster_link_up.set(1);
                self.link_back();
            }
            Incoming::NickClaimed {
                id,
                nick,
                granted,
                taken_from,
            } => self.nick_claimed(id, nick, granted, taken_from),
            Incoming::GuestNumbers(numbers) => {
                cluster.guest_numbers = numbers;
                cluster.asked_for_guests = false;
            }
            Incoming::NodeExpired(node) => self.publish(Shared::NodeLost { node }),
            Incoming::StreamLost => {
                warn!(
                    "cluster: Redis lost the stream (restarted empty?): this node's last {} events go again",
                    cluster.recently_delivered.len()
                );
                cluster.stream_lost = true;
            }
        }
    }

    /// The link works (again): send what was said meanwhile, say who is here, settle the
    /// nicks taken on both sides.
    fn link_back(&mut self) {
        let members = self.local_members();
        let claims: Vec<(ConnectionId, String, u64)> = self
            .clients
            .iter()
            .filter(|(_, client)| !client.nick.starts_with("guest-"))
            .map(|(&id, client)| {
                let at = self
                    .cluster
                    .as_ref()
                    .and_then(|c| c.claimed_at.get(&id).copied());
                (id, client.nick.clone(), at.unwrap_or_else(now_micros))
            })
            .collect();
        let guests_in_use = self.highest_guest_number();
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.linked = true;
        // What the others may have missed when Redis lost the stream, then what was said
        // during the split: in the order said, so that the others' sequence numbers rise.
        if std::mem::take(&mut cluster.stream_lost) {
            cluster.forget_old_deliveries();
            for (_, envelope) in &cluster.recently_delivered {
                let again = Envelope {
                    split: true,
                    ..envelope.clone()
                };
                cluster.request(Outgoing::Publish(again));
            }
        }
        for (_, envelope) in std::mem::take(&mut cluster.backlog) {
            debug!("cluster: sending #{} said during the split", envelope.seq);
            // Applied here already: in the stream from now on, like any delivered event.
            cluster.remember_delivered(envelope.clone());
            cluster.request(Outgoing::Publish(envelope));
        }
        // Before the claims, so that a client renamed for losing its nick gets a number. A
        // Redis that restarted empty would hand out the numbers in use again: above them.
        let in_use = guests_in_use.max(cluster.guest_numbers.end);
        cluster.asked_for_guests = true;
        cluster.request(Outgoing::NeedGuests { in_use });
        for (id, nick, claimed_at) in claims {
            cluster.request(Outgoing::ClaimNick {
                id,
                nick,
                claimed_at,
            });
        }

        let told_lost = std::mem::take(&mut cluster.told_lost);
        self.publish(Shared::Hello { members });
        if told_lost {
            info!("cluster link back");
            self.broadcast(None, &["* cluster link back"], None);
        }
    }

    /// The highest `guest-N` here or on the nodes this node knows of.
    fn highest_guest_number(&self) -> u64 {
        let remote = self
            .cluster
            .iter()
            .flat_map(|c| c.remote.values().map(|m| m.nick.as_str()));
        self.clients
            .values()
            .map(|client| client.nick.as_str())
            .chain(remote)
            .filter_map(|nick| nick.strip_prefix("guest-")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    }
}
