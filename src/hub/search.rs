//! `/search TEXT` and the history file: what the hub hands the history thread
//! (`--history-db`), and how a search is answered, from the file or, without one, from
//! the rooms' history in memory.

use std::time::SystemTime;

use super::{Event, Hub};
use crate::clock::date_and_time;
use crate::control::ConnectionId;
use crate::history::{self, Chunk, Found, SEARCH_LIMIT, StoredLine};

/// Searches of the history file under way at once, in the whole server.
const SEARCHES_AT_ONCE: usize = 4;
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
    /// [`Event::Found`]), or answered now from the history in memory. A client has one
    /// search under way at a time, and the server [`SEARCHES_AT_ONCE`]: a search reads the
    /// file, and lines wait to be stored behind it.
    pub(super) fn search(&mut self, id: ConnectionId, room: RoomId, text: String) {
        let Some((recorder, hub)) = &self.settings.history_db else {
            let needle = history::fold_case(&text);
            let mut lines: Vec<(SystemTime, String)> = self
                .rooms
                .history(room)
                .rev()
                .filter(|(_, line)| history::fold_case(history::said_text(line)).contains(&needle))
                .take(SEARCH_LIMIT)
                .cloned()
                .collect();
            lines.reverse();
            let found = Found {
                lines,
                stopped_at: None,
            };
            return self.found(id, &text, Ok(found));
        };
        if self.searching.contains(&id) {
            return self.reply(id, String::from("! your last search is still under way"));
        }
        if self.searching.len() >= SEARCHES_AT_ONCE {
            return self.reply(
                id,
                String::from("! the history is busy, search again in a moment"),
            );
        }
        let hub = hub.clone();
        let asked = text.clone();
        let answer = Box::new(move |result| {
            // The history thread waits here if the hub's channel is full, never the hub.
            let _ = hub.send(Event::Found {
                id,
                text: asked,
                result,
            });
        });
        if recorder.search(self.rooms.name(room).to_owned(), text, answer) {
            self.searching.insert(id);
        } else {
            self.reply(
                id,
                String::from("! the history is busy, search again in a moment"),
            );
        }
    }

    /// Shows a search's result: each line with its date and time, then how many.
    pub(super) fn found(&mut self, id: ConnectionId, text: &str, result: Result<Found, String>) {
        self.searching.remove(&id);
        let found = match result {
            Ok(found) => found,
            Err(why) => return self.reply(id, format!("! search failed: {why}")),
        };
        let mut reply = String::new();
        for (at, line) in &found.lines {
            reply.push_str(&format!("* {} {line}\n", date_and_time(*at)));
        }
        reply.push_str(&match found.lines.len() {
            0 => format!("* no line found with \"{text}\""),
            1 => format!("* 1 line found with \"{text}\""),
            SEARCH_LIMIT => format!(
                "* {SEARCH_LIMIT} lines found with \"{text}\" (the most recent {SEARCH_LIMIT}; there may be more)"
            ),
            count => format!("* {count} lines found with \"{text}\""),
        });
        if let Some(at) = found.stopped_at {
            reply.push_str(&format!(
                " (searched back to {} only: the rest would take too long)",
                date_and_time(at)
            ));
        }
        self.reply(id, reply);
    }
}
