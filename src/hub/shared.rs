//! The chat's shared events (messages, joins, leaves, renames, moderation): published by
//! the hub, and applied where everyone sees their effect. On one node `publish` applies an
//! event at once. In a cluster it goes to the stream, and every node, this one included,
//! applies it when it comes back, so that all nodes apply all events in one order
//! (hub/cluster.rs).

use log::info;

use super::notices::NoticeKind;
use super::{Hub, LeaveReason};
use crate::cluster::wire::Shared;
use crate::control::ConnectionId;
use crate::outbox::line;
use crate::protocol::page_events;
use crate::rooms::RoomId;

/// Who an event comes from, as the hub applying it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Origin {
    /// This node: ids in the event are local connection ids.
    Here,
    /// Another node.
    Node {
        name: String,
        /// Said on the other side while the two were not linked.
        during_split: bool,
    },
}

/// The id of no local client: the `except` of a notice about someone on another node.
pub(super) const NOBODY: ConnectionId = 0;

impl Hub {
    /// Shares an event: applied now on one node, through the stream in a cluster.
    pub(super) fn publish(&mut self, event: Shared<RoomId>) {
        if self.cluster.is_none() {
            return self.apply(event, Origin::Here);
        }
        let rooms = &self.rooms;
        let wire = event.clone().map_room(|room| rooms.name(room).to_owned());
        let applied_now = self
            .cluster
            .as_mut()
            .is_some_and(|cluster| cluster.send(wire));
        if applied_now {
            self.apply(event, Origin::Here);
        }
    }

    /// Carries out an event's effects for this node's clients.
    pub(super) fn apply(&mut self, event: Shared<RoomId>, origin: Origin) {
        let here = origin == Origin::Here;
        let except = |id: u64| if here { Some(id) } else { None };
        match event {
            Shared::Said {
                room,
                id,
                nick,
                line,
            } => {
                self.store_history(room, &nick, &line);
                if let Origin::Node {
                    during_split: true, ..
                } = origin
                {
                    self.broadcast(Some(room), &["* said during the split: ", &line], None);
                } else {
                    self.broadcast(Some(room), &[&line], except(id));
                }
                if let Some(cluster) = &mut self.cluster {
                    cluster.said_here(room, &line);
                }
                self.rooms.record(room, line);
            }
            Shared::Joined { room, id, nick } => {
                if let Origin::Node { name, .. } = &origin {
                    self.remote_joined(name, id, &nick, room);
                }
                let id = if here { id } else { NOBODY };
                self.announce(NoticeKind::Joined, id, nick, room);
            }
            Shared::Left {
                room,
                id,
                nick,
                reason,
            } => {
                if let Origin::Node { name, .. } = &origin {
                    self.remote_left(name, id);
                }
                let id = if here { id } else { NOBODY };
                self.announce(NoticeKind::Left(reason), id, nick, room);
            }
            Shared::Renamed { room, id, old, new } => {
                if let Origin::Node { name, .. } = &origin {
                    self.remote_renamed(name, id, &new);
                }
                self.broadcast(Some(room), &["* ", &old, " is now ", &new], except(id));
                if self.round.wants_browser_lines() {
                    let event = page_events::renamed(&old, &new);
                    self.round.push_browser_line(&event, except(id), Some(room));
                    self.gathered.renamed(room);
                }
            }
            Shared::Notice { room, line } => self.broadcast(room, &[&line], None),
            Shared::Private { from, to, text } => {
                if let Some(target) = self.find_nick(&to) {
                    self.flush_notices();
                    self.queue(target, line(&format!("[{from} -> you] {text}")));
                }
            }
            Shared::Kick { target, by, reason } => {
                if let Some(target_id) = self.find_nick(&target) {
                    self.kick_here(target_id, &by, reason);
                }
            }
            Shared::Mute { target, by, muted } => {
                let verb = if muted { "muted" } else { "unmuted" };
                let room = match self.find_nick(&target) {
                    Some(target_id) => self.clients.get_mut(&target_id).map(|client| {
                        client.is_muted = muted;
                        info!("{by} {verb} {}", client.nick);
                        client.room
                    }),
                    None => self.remote_room_of(&target),
                };
                if let Some(room) = room {
                    self.broadcast(
                        Some(room),
                        &["* ", &target, " was ", verb, " by ", &by],
                        None,
                    );
                }
            }
            Shared::Hello { members } => {
                if let Origin::Node { name, .. } = &origin {
                    self.remote_members(name, members);
                    self.answer_hello();
                }
            }
            Shared::Members { members } => {
                if let Origin::Node { name, .. } = &origin {
                    self.remote_members(name, members);
                }
            }
            Shared::NodeLost { node } => self.node_lost(&node),
            Shared::NickLost { node, nick } => self.nick_lost(&node, &nick),
        }
    }

    /// Removes `target_id` at an operator's word: it is told why and closed.
    pub(super) fn kick_here(&mut self, target_id: ConnectionId, by: &str, reason: Option<String>) {
        let Some(target_nick) = self.clients.get(&target_id).map(|c| c.nick.clone()) else {
            return;
        };
        info!(
            "{by} kicked {target_nick}{}",
            reason.as_ref().map_or(String::new(), |r| format!(": {r}"))
        );
        let farewell = match &reason {
            Some(reason) => format!("* you were kicked by {by}: {reason}"),
            None => format!("* you were kicked by {by}"),
        };
        let leave = LeaveReason::Kicked {
            by: by.to_owned(),
            reason,
        };
        self.remove(target_id, leave, Some(&farewell));
    }
}
