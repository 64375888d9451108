//! Who is on the other nodes of a cluster, as this node's hub knows them: members join,
//! leave and rename through the stream, whole nodes say who they have (after a split, or
//! the first time), a node whose lease ran out is announced as lost, and a nick taken on
//! both sides of a split stays with whoever took it first.

use std::collections::HashMap;

use log::warn;

use super::cluster::RemoteMember;
use super::{Hub, NoticeKind};
use crate::cluster::Outgoing;
use crate::cluster::wire::{Member, Shared};
use crate::control::ConnectionId;
use crate::protocol::page_events;
use crate::rooms::RoomId;

impl Hub {
    pub(super) fn local_members(&self) -> Vec<Member<RoomId>> {
        self.clients
            .iter()
            .map(|(&id, client)| Member {
                id,
                nick: client.nick.clone(),
                room: client.room,
            })
            .collect()
    }

    /// Another node said hello: it learns who is here.
    pub(super) fn answer_hello(&mut self) {
        let members = self.local_members();
        self.publish(Shared::Members { members });
    }

    pub(super) fn remote_joined(&mut self, node: &str, id: u64, nick: &str, room: RoomId) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let key = (node.to_owned(), id);
        cluster
            .remote_nicks
            .insert(nick.to_ascii_lowercase(), key.clone());
        let previous = cluster.remote.insert(
            key,
            RemoteMember {
                nick: nick.to_owned(),
                room,
            },
        );
        if let Some(previous) = previous {
            self.rooms.leave(previous.room);
        }
        self.rooms.enter(room);
    }

    pub(super) fn remote_left(&mut self, node: &str, id: u64) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if let Some(member) = cluster.remote.remove(&(node.to_owned(), id)) {
            cluster
                .remote_nicks
                .remove(&member.nick.to_ascii_lowercase());
            self.rooms.leave(member.room);
        }
    }

    pub(super) fn remote_renamed(&mut self, node: &str, id: u64, new: &str) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let key = (node.to_owned(), id);
        if let Some(member) = cluster.remote.get_mut(&key) {
            cluster
                .remote_nicks
                .remove(&member.nick.to_ascii_lowercase());
            member.nick = new.to_owned();
            cluster.remote_nicks.insert(new.to_ascii_lowercase(), key);
        }
    }

    pub(super) fn remote_room_of(&self, nick: &str) -> Option<RoomId> {
        self.cluster
            .as_ref()?
            .remote_holder(nick)
            .map(|member| member.room)
    }

    /// `node`'s members as it says they are now: the differences from what this node knew
    /// are announced. After a split, who came and went meanwhile; the first time, everyone
    /// there, to whoever is here already (clients of a node that reached Redis late, or that
    /// was announced as lost and is back); nobody hears of them twice, since a member this
    /// node knew of is no difference.
    pub(super) fn remote_members(&mut self, node: &str, members: Vec<Member<RoomId>>) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let now: HashMap<u64, Member<RoomId>> = members
            .into_iter()
            .map(|member| (member.id, member))
            .collect();
        let gone: Vec<(u64, String, RoomId)> = cluster
            .remote
            .iter()
            .filter(|((owner, id), _)| owner == node && !now.contains_key(id))
            .map(|((_, id), member)| (*id, member.nick.clone(), member.room))
            .collect();
        let new: Vec<Member<RoomId>> = now
            .into_values()
            .filter(|member| {
                cluster
                    .remote
                    .get(&(node.to_owned(), member.id))
                    .is_none_or(|known| known.nick != member.nick || known.room != member.room)
            })
            .collect();
        for (id, nick, room) in gone {
            self.remote_left(node, id);
            let reason = String::from("connection closed");
            self.announce(NoticeKind::Left(reason), super::shared::NOBODY, nick, room);
        }
        for member in new {
            self.remote_left(node, member.id);
            self.remote_joined(node, member.id, &member.nick, member.room);
            let nick = member.nick;
            self.announce(NoticeKind::Joined, super::shared::NOBODY, nick, member.room);
        }
    }

    /// A node's lease ran out: its members left.
    pub(super) fn node_lost(&mut self, node: &str) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if node == cluster.node {
            return;
        }
        let lost: Vec<(u64, String, RoomId)> = cluster
            .remote
            .iter()
            .filter(|((owner, _), _)| owner == node)
            .map(|((_, id), member)| (*id, member.nick.clone(), member.room))
            .collect();
        if !lost.is_empty() {
            warn!("cluster node {node} lost with {} clients", lost.len());
        }
        for (id, nick, room) in lost {
            self.remote_left(node, id);
            let reason = String::from("node lost");
            self.announce(NoticeKind::Left(reason), super::shared::NOBODY, nick, room);
        }
    }

    /// Another node's user claimed `nick` first (during a split): ours becomes a guest.
    pub(super) fn nick_lost(&mut self, node: &str, nick: &str) {
        if self.cluster.as_ref().is_none_or(|c| c.node != node) {
            return;
        }
        if let Some(id) = self.find_nick(nick) {
            self.rename_to_guest(id, nick);
        }
    }

    /// Redis answered a claim.
    pub(super) fn nick_claimed(
        &mut self,
        id: ConnectionId,
        nick: String,
        granted: Option<bool>,
        taken_from: Option<String>,
    ) {
        if self.cluster.is_none() {
            return;
        }
        if let Some(other) = taken_from {
            self.publish(Shared::NickLost {
                node: other,
                nick: nick.clone(),
            });
        }
        // The answer to a /nick this client is waiting for, or to a re-claim after a split,
        // or to a claim of a client that has gone (its nick goes back).
        let awaited = self.cluster.as_mut().is_some_and(|cluster| {
            let Some(queue) = cluster.pending_renames.get_mut(&id) else {
                return false;
            };
            let awaited = queue.front() == Some(&nick);
            if awaited {
                queue.pop_front();
            }
            if queue.is_empty() {
                cluster.pending_renames.remove(&id);
            }
            awaited
        });
        let holds_it = self
            .clients
            .get(&id)
            .is_some_and(|c| c.nick.eq_ignore_ascii_case(&nick));
        match (awaited, granted) {
            (true, Some(true) | None) => self.complete_rename(id, nick),
            (true, Some(false)) => {
                self.reply(id, format!("! nick {nick} is taken"));
                self.tell_page(id, |_| page_events::taken(&nick));
            }
            (false, Some(false)) if holds_it => self.rename_to_guest(id, &nick),
            (false, Some(true)) if !holds_it => {
                if let Some(cluster) = &self.cluster {
                    cluster.request(Outgoing::ReleaseNick(nick));
                }
            }
            _ => {}
        }
    }

    /// Renames a client who lost its nick to someone who had it first.
    fn rename_to_guest(&mut self, id: ConnectionId, nick: &str) {
        let guest = self.guest_nick_for(id);
        self.reply(
            id,
            format!(
                "! someone on another server had the nick {nick} first while the servers were apart; you are now {guest}"
            ),
        );
        self.complete_rename(id, guest);
    }
}
