//! `/search TEXT` and the history file: what the hub hands the history thread
//! (`--history-db`), and how a search is answered, from the file or, without one, from
//! the rooms' history in memory.

use std::time::SystemTime;

use super::{Event, Hub};
use crate::clock::date_and_time;
use crate::control::ConnectionId;
use crate::history::{self, Chunk, Found, SEARCH_LIMIT, StoredLine};
use crate::rooms::RoomId;

impl Hub {
    /// Puts lines kept in the history file back in their rooms' history (at start-up).
    pub(super) fn restore_history(&mut self, lines: Vec<StoredLine>) {
        for stored in lines {
            let room = self.rooms.find_or_create(&stored.room);
            self.rooms.record_at(room, stored.line, stored.at);
        }
    }

    /// Keeps a line said in `room` for the history file, if there is one: it goes with
    /// the others of this wake-up ([`Hub::flush_history`]).
    pub(super) fn store_history(&mut self, room: RoomId, nick: &str, line: &str) {
        if self.settings.history_db.is_none() {
            return;
        }
        // One time for the wake-up's lines, formatted once.
        let (_, now) = self.history_now.get_or_insert_with(|| {
            let millis = history::millis(SystemTime::now());
            (millis, millis.to_string())
        });
        // The room's name now: a room can empty and vanish before the wake-up ends.
        let pending = match self.history_pending.iter().position(|(r, ..)| *r == room) {
            Some(index) => &mut self.history_pending[index].2,
            None => {
                let name = self.rooms.name(room).to_owned();
                self.history_pending.push((room, name, String::new()));
                &mut self.history_pending.last_mut().expect("just pushed").2
            }
        };
        history::encode_line(pending, now, nick, line);
    }

    /// Hands this wake-up's lines to the history thread: one chunk per room.
    pub(super) fn flush_history(&mut self) {
        let Some((now, _)) = self.history_now.take() else {
            return;
        };
        let Some((recorder, _)) = &self.settings.history_db else {
            return;
        };
        for (_, room, lines) in self.history_pending.drain(..) {
            recorder.store(Chunk {
                room,
                first_ms: now,
                last_ms: now,
                lines,
            });
        }
    }

    /// `/search TEXT` in `room`: asked of the history thread (answered with
    /// [`Event::Found`]), or answered now from the history in memory.
    pub(super) fn search(&mut self, id: ConnectionId, room: RoomId, text: String) {
        match &self.settings.history_db {
            Some((recorder, hub)) => {
                let hub = hub.clone();
                let asked = text.clone();
                let answer = Box::new(move |result| {
                    let _ = hub.send(Event::Found {
                        id,
                        text: asked,
                        result,
                    });
                });
                recorder.search(self.rooms.name(room).to_owned(), text, answer);
            }
            None => {
                let needle = text.to_lowercase();
                let mut found: Found = self
                    .rooms
                    .history(room)
                    .rev()
                    .filter(|(_, line)| history::said_text(line).to_lowercase().contains(&needle))
                    .take(SEARCH_LIMIT)
                    .cloned()
                    .collect();
                found.reverse();
                self.found(id, &text, Ok(found));
            }
        }
    }

    /// Shows a search's result: each line with its date and time, then how many.
    pub(super) fn found(&mut self, id: ConnectionId, text: &str, result: Result<Found, String>) {
        let found = match result {
            Ok(found) => found,
            Err(why) => return self.reply(id, format!("! search failed: {why}")),
        };
        let mut reply = String::new();
        for (at, line) in &found {
            reply.push_str(&format!("* {} {line}\n", date_and_time(*at)));
        }
        reply.push_str(&match found.len() {
            0 => format!("* no line found with \"{text}\""),
            1 => format!("* 1 line found with \"{text}\""),
            SEARCH_LIMIT => format!(
                "* {SEARCH_LIMIT} lines found with \"{text}\" (the most recent {SEARCH_LIMIT}; there may be more)"
            ),
            count => format!("* {count} lines found with \"{text}\""),
        });
        self.reply(id, reply);
    }
}
