//! Who is on the other nodes of a cluster, as this node's hub knows them: members join,
//! leave and rename through the stream, whole nodes say who they have (after a split, or
//! the first time), and a node whose lease ran out is announced as lost.

use std::collections::HashMap;

use log::warn;

use super::cluster::RemoteMember;
use super::{Hub, NoticeKind};
use crate::cluster::wire::{Member, Shared};
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
}
