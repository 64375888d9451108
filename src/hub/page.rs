//! What the hub does for the browser page: it counts the browsers (without one, no event
//! line is made at all) and sends one browser an event line of its own.

use super::Hub;
use crate::control::ConnectionId;
use crate::outbox::{Chunk, line};
use crate::port::Port;
use crate::protocol::page_events;
use crate::rooms::RoomId;

impl Hub {
    /// Counts a browser in or out: the round makes the page's event lines only while there
    /// is one.
    pub(super) fn count_browser(&mut self, port: Port, change: isize) {
        if port == Port::Web {
            self.browsers = self.browsers.saturating_add_signed(change);
            self.round.set_browsers_present(self.browsers > 0);
        }
    }

    /// Queues an event line for the web page (protocol/page_events.rs) if `id` is a
    /// browser; nobody else gets one, and for nobody else is it made.
    /// `event` is made only for a browser: a room's list of people is long.
    pub(super) fn tell_page(&mut self, id: ConnectionId, event: impl FnOnce(&Hub) -> String) {
        if !self.clients.get(&id).is_some_and(|c| c.outbox.is_browser()) {
            return;
        }
        let event = event(self);
        self.commit_round();
        if let Some(client) = self.clients.get_mut(&id)
            && client.outbox.is_browser()
        {
            self.delivery.push(client, id, Chunk::whole(line(&event)));
            self.delivery.send_soon(id);
        }
        self.remove_slow_consumers();
    }

    /// Everyone in `room`, on this node and the others, sorted ignoring case.
    pub(super) fn nicks_in(&self, room: RoomId) -> Vec<&str> {
        let mut nicks: Vec<&str> = self
            .clients
            .values()
            .filter(|c| c.room == room)
            .map(|c| c.nick.as_str())
            .chain(self.cluster.iter().flat_map(|c| c.remote_in(room)))
            .collect();
        nicks.sort_unstable_by_key(|n| n.to_ascii_lowercase());
        nicks
    }

    /// The page's list of the people in `room`.
    pub(super) fn people_event(&self, room: RoomId) -> String {
        page_events::people(self.rooms.name(room), self.nicks_in(room))
    }
}
