//! What the hub does with a client's lines: messages, commands, rooms, moderation.

use std::sync::Arc;
use std::time::Instant;

use log::{info, warn};

use super::{Hub, LeaveReason};
use crate::clock::clock_time;
use crate::cluster::wire::Shared;
use crate::cluster::{Outgoing, now_micros};
use crate::control::ConnectionId;
use crate::outbox::line;
use crate::protocol::{self, Input, NickError, page_events};
use crate::rooms::RoomId;

impl Hub {
    /// Shows a client arriving in `room` what was said there lately.
    pub(super) fn send_history(&mut self, id: ConnectionId, room: RoomId) {
        let mut text = String::new();
        for (said_at, said) in self.rooms.history(room) {
            text.push_str(&format!("* history {} {said}\n", clock_time(*said_at)));
        }
        if !text.is_empty() {
            self.queue(id, Arc::new(text.into_bytes()));
        }
    }

    /// `/join ROOM`: leave the current room (announced there), enter the new one.
    pub(super) fn switch_room(&mut self, id: ConnectionId, nick: &str, name: &str) {
        if !protocol::is_valid_name(name) {
            return self.reply(
                id,
                String::from("! invalid room name: use 1 to 20 of A-Z a-z 0-9 _ -"),
            );
        }
        let Some(old_room) = self.clients.get(&id).map(|c| c.room) else {
            return;
        };
        let new_room = self.rooms.find_or_create(name);
        if new_room == old_room {
            return self.reply(
                id,
                format!("! you are already in {}", self.rooms.name(old_room)),
            );
        }
        // Lines already broadcast to the old room are still this client's to receive. The
        // flush also leaves the move's own leave notice alone in its batch, which is what
        // keeps it from the mover (see NoticeBatch::send).
        self.flush_notices();
        self.commit_round();
        let new_name = self.rooms.name(new_room).to_owned();
        self.publish(Shared::Left {
            room: old_room,
            id,
            nick: nick.to_owned(),
            reason: LeaveReason::Moved(new_name.clone()).to_string(),
        });
        self.flush_notices();
        self.commit_round();
        self.rooms.leave(old_room);
        self.rooms.enter(new_room);
        if let Some(client) = self.clients.get_mut(&id) {
            client.room = new_room;
            info!("{nick} ({}) is now in {new_name}", client.peer);
        }
        let here = self.clients.values().filter(|c| c.room == new_room).count()
            + self
                .cluster
                .as_ref()
                .map_or(0, |c| c.remote_in(new_room).count());
        self.reply(id, format!("* you are now in {new_name} ({here} here)"));
        self.tell_page(id, |_| page_events::you(nick, &new_name));
        self.tell_page(id, |hub| hub.people_event(new_room));
        self.send_history(id, new_room);
        self.publish(Shared::Joined {
            room: new_room,
            id,
            nick: nick.to_owned(),
        });
    }

    pub(super) fn handle_input(&mut self, id: ConnectionId, input: Input) {
        let Some((nick, room, is_operator, is_muted)) = self
            .clients
            .get(&id)
            .map(|c| (c.nick.clone(), c.room, c.is_operator, c.is_muted))
        else {
            return; // already removed (slow consumer); its last lines go nowhere
        };
        let speaks = matches!(
            input,
            Input::Message(_) | Input::Me(_) | Input::Private { .. }
        );
        if is_muted && speaks {
            return self.reply(id, String::from("! you are muted"));
        }
        let moderates = matches!(
            input,
            Input::Kick { .. } | Input::Mute(_) | Input::Unmute(_) | Input::Wall(_)
        );
        if moderates && !is_operator {
            return self.reply(id, String::from("! operators only (see /op)"));
        }
        match input {
            Input::Op(password) => self.make_operator(id, &nick, &password),
            Input::Kick {
                nick: target,
                reason,
            } => self.kick(id, &nick, &target, reason),
            Input::Mute(target) => self.set_muted(id, &nick, &target, true),
            Input::Unmute(target) => self.set_muted(id, &nick, &target, false),
            Input::Wall(text) => {
                info!("{nick} to every room: {text}");
                let line = format!("* notice from {nick}: {text}");
                self.publish(Shared::Notice { room: None, line });
            }
            Input::Message(text) => self.say(id, room, nick, &["[", "", "] ", &text]),
            // `[ann] * waves`: a line a client chose starts with its nick in brackets, so
            // none can read as a server notice (`* ann left (quit)`).
            Input::Me(action) => self.say(id, room, nick, &["[", "", "] * ", &action]),
            Input::Nick(new_nick) => self.rename(id, new_nick),
            Input::Who => {
                let nicks = self.nicks_in(room);
                let text = format!(
                    "* in {} ({}): {}",
                    self.rooms.name(room),
                    nicks.len(),
                    nicks.join(", ")
                );
                self.reply(id, text);
                self.tell_page(id, |hub| hub.people_event(room));
            }
            Input::Search(text) => self.search(id, room, text),
            Input::Rooms => {
                let list: Vec<String> = self
                    .rooms
                    .list()
                    .iter()
                    .map(|(name, members)| format!("{name} ({members})"))
                    .collect();
                self.reply(id, format!("* rooms ({}): {}", list.len(), list.join(", ")));
            }
            Input::Join(name) => self.switch_room(id, &nick, &name),
            Input::Time(on) => {
                if let Some(client) = self.clients.get_mut(&id) {
                    client.shows_time = on;
                }
                self.reply(
                    id,
                    format!("* timestamps {}", if on { "on" } else { "off" }),
                );
            }
            Input::Private { to, text } => match self.find_nick(&to) {
                Some(target) => {
                    let target_nick = self.clients[&target].nick.clone();
                    self.flush_notices();
                    self.queue(target, line(&format!("[{nick} -> you] {text}")));
                    self.queue(id, line(&format!("[you -> {target_nick}] {text}")));
                }
                None => match self.remote_nick(&to) {
                    Some(target_nick) => {
                        self.reply(id, format!("[you -> {target_nick}] {text}"));
                        self.publish(Shared::Private {
                            from: nick,
                            to: target_nick,
                            text,
                        });
                    }
                    None => self.reply(id, format!("! no such nick: {to}")),
                },
            },
            Input::Help => {
                self.flush_notices();
                self.queue(id, Arc::new(protocol::HELP.as_bytes().to_vec()));
            }
            Input::Usage(usage) => self.reply(id, format!("! usage: {usage}")),
            Input::Unknown(command) => {
                self.reply(id, format!("! unknown command: /{command} (try /help)"))
            }
            Input::TooLong => self.reply(
                id,
                format!(
                    "! line too long (over {} bytes), dropped",
                    self.settings.max_line
                ),
            ),
            // The client thread turns /quit into Left; nothing to do if one slips through.
            Input::Quit(_) => {}
        }
    }

    /// A message or `/me` from `id`: to the others in the room, and into its history.
    /// `parts` has an empty slot where the nick goes.
    fn say(&mut self, id: ConnectionId, room: RoomId, nick: String, parts: &[&str; 4]) {
        let line = [parts[0], &nick, parts[2], parts[3]].concat();
        self.publish(Shared::Said {
            room,
            id,
            nick,
            line,
        });
    }

    /// `/op PASSWORD`. A wrong password makes every connection from the client's address
    /// wait before it may try again (hub/guesses.rs), so passwords cannot be guessed at line
    /// speed, nor at line speed times the connections one opens.
    pub(super) fn make_operator(&mut self, id: ConnectionId, nick: &str, password: &str) {
        let Some(expected) = self.settings.op_password.clone() else {
            return self.reply(id, String::from("! there are no operators on this server"));
        };
        let Some(peer) = self.clients.get(&id).map(|client| client.peer) else {
            return;
        };
        let now = Instant::now();
        if let Some(left) = self.guesses.wait_left(peer.ip(), now) {
            let seconds = left.as_secs_f64().ceil();
            return self.reply(
                id,
                format!("! too many tries from your address: wait {seconds} s"),
            );
        }
        if password != expected {
            let wait = self.guesses.failed(peer.ip(), now);
            warn!("wrong operator password from {nick} ({peer})");
            return self.reply(
                id,
                format!("! wrong password (next try in {} s)", wait.as_secs()),
            );
        }
        self.guesses.succeeded(peer.ip());
        if let Some(client) = self.clients.get_mut(&id) {
            client.is_operator = true;
        }
        info!("{nick} ({peer}) is now an operator");
        self.reply(id, String::from("* you are now an operator"));
    }

    pub(super) fn find_nick(&self, nick: &str) -> Option<ConnectionId> {
        self.nick_owners.get(&nick.to_ascii_lowercase()).copied()
    }

    /// The nick as spelled by its owner on another node, if someone there has it.
    pub(super) fn remote_nick(&self, nick: &str) -> Option<String> {
        let member = self.cluster.as_ref()?.remote_holder(nick)?;
        Some(member.nick.clone())
    }

    /// `/kick NICK [REASON]`: the target is told why and closed; its room sees it leave.
    /// A target on another node is kicked there.
    pub(super) fn kick(
        &mut self,
        id: ConnectionId,
        operator: &str,
        target: &str,
        reason: Option<String>,
    ) {
        let target_nick = match self.find_nick(target) {
            Some(target_id) => {
                let target_nick = self.clients[&target_id].nick.clone();
                self.kick_here(target_id, operator, reason);
                if target_id == id {
                    return;
                }
                target_nick
            }
            None => match self.remote_nick(target) {
                Some(target_nick) => {
                    self.publish(Shared::Kick {
                        target: target_nick.clone(),
                        by: operator.to_owned(),
                        reason,
                    });
                    target_nick
                }
                None => return self.reply(id, format!("! no such nick: {target}")),
            },
        };
        self.reply(id, format!("* kicked {target_nick}"));
    }

    /// `/mute NICK` and `/unmute NICK`, announced in the target's room, on any node.
    pub(super) fn set_muted(
        &mut self,
        id: ConnectionId,
        operator: &str,
        target: &str,
        muted: bool,
    ) {
        let (target_nick, room) = match self.find_nick(target) {
            Some(target_id) => {
                let client = &self.clients[&target_id];
                (client.nick.clone(), client.room)
            }
            None => match (self.remote_nick(target), self.remote_room_of(target)) {
                (Some(nick), Some(room)) => (nick, room),
                _ => return self.reply(id, format!("! no such nick: {target}")),
            },
        };
        self.publish(Shared::Mute {
            target: target_nick.clone(),
            by: operator.to_owned(),
            muted,
        });
        if self.clients.get(&id).is_some_and(|c| c.room != room) {
            let verb = if muted { "muted" } else { "unmuted" };
            self.reply(id, format!("* {target_nick} was {verb}"));
        }
    }

    /// `/nick NEW`: checked here; in a cluster whose link works, Redis has the last word
    /// (hub/cluster.rs completes it when it answers).
    pub(super) fn rename(&mut self, id: ConnectionId, new_nick: String) {
        match protocol::validate_nick(&new_nick) {
            Err(NickError::Invalid) => {
                return self.reply(
                    id,
                    String::from("! invalid nick: use 1 to 20 of A-Z a-z 0-9 _ -"),
                );
            }
            Err(NickError::Reserved) => {
                return self.reply(
                    id,
                    String::from("! nicks starting with guest- are reserved"),
                );
            }
            Err(NickError::ServerWord) => {
                return self.reply(id, format!("! nick {new_nick} is reserved for the server"));
            }
            Ok(()) => {}
        }
        let taken_here = self.find_nick(&new_nick).is_some_and(|owner| owner != id);
        if taken_here || self.remote_nick(&new_nick).is_some() {
            self.reply(id, format!("! nick {new_nick} is taken"));
            return self.tell_page(id, |_| page_events::taken(&new_nick));
        }
        match &mut self.cluster {
            Some(cluster) if cluster.is_linked() => {
                let claimed_at = now_micros();
                cluster.claimed_at.insert(id, claimed_at);
                cluster
                    .pending_renames
                    .entry(id)
                    .or_default()
                    .push_back(new_nick.clone());
                cluster.request(Outgoing::ClaimNick {
                    id,
                    nick: new_nick,
                    claimed_at,
                });
            }
            Some(cluster) => {
                cluster.claimed_at.insert(id, now_micros());
                self.complete_rename(id, new_nick);
            }
            None => self.complete_rename(id, new_nick),
        }
    }

    /// Gives client `id` its new nick, and tells it and its room.
    pub(super) fn complete_rename(&mut self, id: ConnectionId, new_nick: String) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let old_nick = std::mem::replace(&mut client.nick, new_nick.clone());
        let room = client.room;
        info!("{old_nick} ({}) is now {new_nick}", client.peer);
        self.nick_owners.remove(&old_nick.to_ascii_lowercase());
        self.nick_owners.insert(new_nick.to_ascii_lowercase(), id);
        if let Some(cluster) = &self.cluster {
            cluster.request(Outgoing::ReleaseNick(old_nick.clone()));
        }
        self.reply(id, format!("* you are now {new_nick}"));
        let room_name = self.rooms.name(room).to_owned();
        self.tell_page(id, |_| page_events::you(&new_nick, &room_name));
        self.publish(Shared::Renamed {
            room,
            id,
            old: old_nick,
            new: new_nick,
        });
    }
}
