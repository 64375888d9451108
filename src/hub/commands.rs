//! What the hub does with a client's lines: messages, commands, rooms, moderation.

use std::sync::Arc;
use std::time::Instant;

use log::{info, warn};

use super::notices::NoticeKind;
use super::{Hub, LeaveReason, OP_RETRY_DELAY};
use crate::outbox::line;
use crate::protocol::{self, Input, NickError};
use crate::rooms::{LOBBY, RoomId, clock_time};
use crate::shutdown::ConnectionId;

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
        self.announce(
            NoticeKind::Left(LeaveReason::Moved(new_name.clone())),
            id,
            nick.to_owned(),
            old_room,
        );
        self.flush_notices();
        self.commit_round();
        self.rooms.leave(old_room);
        self.rooms.enter(new_room);
        if let Some(client) = self.clients.get_mut(&id) {
            client.room = new_room;
            info!("{nick} ({}) is now in {new_name}", client.peer);
        }
        let here = self.clients.values().filter(|c| c.room == new_room).count();
        self.reply(id, format!("* you are now in {new_name} ({here} here)"));
        self.send_history(id, new_room);
        self.announce(NoticeKind::Joined, id, nick.to_owned(), new_room);
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
                self.broadcast(None, &["* notice from ", &nick, ": ", &text], None);
            }
            Input::Message(text) => self.say(id, room, &["[", &nick, "] ", &text]),
            Input::Me(action) => self.say(id, room, &["* ", &nick, " ", &action]),
            Input::Nick(new_nick) => self.rename(id, &nick, new_nick),
            Input::Who => {
                let mut nicks: Vec<&str> = self
                    .clients
                    .values()
                    .filter(|c| c.room == room)
                    .map(|c| c.nick.as_str())
                    .collect();
                nicks.sort_unstable_by_key(|n| n.to_ascii_lowercase());
                let text = format!(
                    "* in {} ({}): {}",
                    self.rooms.name(room),
                    nicks.len(),
                    nicks.join(", ")
                );
                self.reply(id, text);
            }
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
                None => self.reply(id, format!("! no such nick: {to}")),
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
    fn say(&mut self, id: ConnectionId, room: RoomId, parts: &[&str]) {
        let text = parts.concat();
        self.broadcast(Some(room), &[&text], Some(id));
        self.rooms.record(room, text);
    }

    /// `/op PASSWORD`. A wrong password makes the client wait OP_RETRY_DELAY before it
    /// may try again, so passwords cannot be guessed at line speed.
    pub(super) fn make_operator(&mut self, id: ConnectionId, nick: &str, password: &str) {
        let Some(expected) = self.settings.op_password.clone() else {
            return self.reply(id, String::from("! there are no operators on this server"));
        };
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client
            .wrong_password_at
            .is_some_and(|at| at.elapsed() < OP_RETRY_DELAY)
        {
            return self.reply(id, String::from("! too many tries: wait a few seconds"));
        }
        if password != expected {
            client.wrong_password_at = Some(Instant::now());
            warn!("wrong operator password from {nick} ({})", client.peer);
            return self.reply(id, String::from("! wrong password"));
        }
        client.is_operator = true;
        info!("{nick} ({}) is now an operator", client.peer);
        self.reply(id, String::from("* you are now an operator"));
    }

    pub(super) fn find_nick(&self, nick: &str) -> Option<ConnectionId> {
        self.nick_owners.get(&nick.to_ascii_lowercase()).copied()
    }

    /// `/kick NICK [REASON]`: the target is told why and closed; its room sees it leave.
    pub(super) fn kick(
        &mut self,
        id: ConnectionId,
        operator: &str,
        target: &str,
        reason: Option<String>,
    ) {
        let Some(target_id) = self.find_nick(target) else {
            return self.reply(id, format!("! no such nick: {target}"));
        };
        let target_nick = self.clients[&target_id].nick.clone();
        info!(
            "{operator} kicked {target_nick}{}",
            reason.as_ref().map_or(String::new(), |r| format!(": {r}"))
        );
        let farewell = match &reason {
            Some(reason) => format!("* you were kicked by {operator}: {reason}"),
            None => format!("* you were kicked by {operator}"),
        };
        let leave = LeaveReason::Kicked {
            by: operator.to_owned(),
            reason,
        };
        self.remove(target_id, leave, Some(&farewell));
        if target_id != id {
            self.reply(id, format!("* kicked {target_nick}"));
        }
    }

    /// `/mute NICK` and `/unmute NICK`, announced in the target's room.
    pub(super) fn set_muted(
        &mut self,
        id: ConnectionId,
        operator: &str,
        target: &str,
        muted: bool,
    ) {
        let Some(target_id) = self.find_nick(target) else {
            return self.reply(id, format!("! no such nick: {target}"));
        };
        let Some(client) = self.clients.get_mut(&target_id) else {
            return;
        };
        client.is_muted = muted;
        let (target_nick, room) = (client.nick.clone(), client.room);
        let verb = if muted { "muted" } else { "unmuted" };
        info!("{operator} {verb} {target_nick}");
        self.broadcast(
            Some(room),
            &["* ", &target_nick, " was ", verb, " by ", operator],
            None,
        );
        if self.clients.get(&id).is_some_and(|c| c.room != room) {
            self.reply(id, format!("* {target_nick} was {verb}"));
        }
    }

    pub(super) fn rename(&mut self, id: ConnectionId, old_nick: &str, new_nick: String) {
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
            Ok(()) => {}
        }
        let new_key = new_nick.to_ascii_lowercase();
        if let Some(&owner) = self.nick_owners.get(&new_key)
            && owner != id
        {
            return self.reply(id, format!("! nick {new_nick} is taken"));
        }
        self.nick_owners.remove(&old_nick.to_ascii_lowercase());
        self.nick_owners.insert(new_key, id);
        if let Some(client) = self.clients.get_mut(&id) {
            client.nick = new_nick.clone();
            info!("{old_nick} ({}) is now {new_nick}", client.peer);
        }
        self.reply(id, format!("* you are now {new_nick}"));
        let room = self.clients.get(&id).map_or(LOBBY, |c| c.room);
        self.broadcast(
            Some(room),
            &["* ", old_nick, " is now ", &new_nick],
            Some(id),
        );
    }
}
