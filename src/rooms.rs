//! Rooms: everyone starts in the lobby; a room other than the lobby exists while someone
//! is in it; each room remembers its last messages for those who join later.

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

/// Number of a room, unique while the server runs.
pub(crate) type RoomId = u32;

/// The room every client starts in, which never disappears.
pub(crate) const LOBBY: RoomId = 0;

pub(crate) struct Rooms {
    /// Lower-cased name to room, so that names are unique ignoring case.
    by_name: HashMap<String, RoomId>,
    rooms: HashMap<RoomId, Room>,
    next_id: RoomId,
    history_len: usize,
}

struct Room {
    name: String,
    members: usize,
    /// The last `history_len` public lines, each with the time it was said.
    /// (formatted only when shown: recording runs for every message)
    history: VecDeque<(SystemTime, String)>,
}

impl Rooms {
    pub(crate) fn new(history_len: usize) -> Rooms {
        let mut rooms = Rooms {
            by_name: HashMap::new(),
            rooms: HashMap::new(),
            next_id: LOBBY,
            history_len,
        };
        rooms.find_or_create("lobby");
        rooms
    }

    /// The room called `name` (ignoring case), created if needed.
    pub(crate) fn find_or_create(&mut self, name: &str) -> RoomId {
        let key = name.to_ascii_lowercase();
        if let Some(&id) = self.by_name.get(&key) {
            return id;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.by_name.insert(key, id);
        self.rooms.insert(
            id,
            Room {
                name: name.to_owned(),
                members: 0,
                history: VecDeque::new(),
            },
        );
        id
    }

    pub(crate) fn name(&self, id: RoomId) -> &str {
        self.rooms
            .get(&id)
            .map_or("lobby", |room| room.name.as_str())
    }

    pub(crate) fn enter(&mut self, id: RoomId) {
        if let Some(room) = self.rooms.get_mut(&id) {
            room.members += 1;
        }
    }

    /// One member fewer; a room other than the lobby goes when its last member does.
    pub(crate) fn leave(&mut self, id: RoomId) {
        let Some(room) = self.rooms.get_mut(&id) else {
            return;
        };
        room.members = room.members.saturating_sub(1);
        if room.members == 0 && id != LOBBY {
            let key = room.name.to_ascii_lowercase();
            self.rooms.remove(&id);
            self.by_name.remove(&key);
        }
    }

    /// Remembers a public line said in the room now.
    pub(crate) fn record(&mut self, id: RoomId, line: String) {
        self.record_at(id, line, SystemTime::now());
    }

    /// Remembers a public line said in the room at `said_at`.
    pub(crate) fn record_at(&mut self, id: RoomId, line: String, said_at: SystemTime) {
        if self.history_len == 0 {
            return;
        }
        if let Some(room) = self.rooms.get_mut(&id) {
            if room.history.len() == self.history_len {
                room.history.pop_front();
            }
            room.history.push_back((said_at, line));
        }
    }

    /// Forgets every room's history (the cluster's shared history replaces a node's own).
    pub(crate) fn forget_histories(&mut self) {
        for room in self.rooms.values_mut() {
            room.history.clear();
        }
    }

    /// The room's remembered lines, oldest first, with the time each was said.
    pub(crate) fn history(
        &self,
        id: RoomId,
    ) -> impl DoubleEndedIterator<Item = &(SystemTime, String)> {
        self.rooms
            .get(&id)
            .into_iter()
            .flat_map(|room| room.history.iter())
    }

    /// How many are in room `id` (on every node).
    pub(crate) fn members(&self, id: RoomId) -> usize {
        self.rooms.get(&id).map_or(0, |room| room.members)
    }

    /// How many rooms [`Rooms::list`] lists.
    pub(crate) fn count(&self) -> usize {
        self.rooms
            .iter()
            .filter(|(id, room)| room.members > 0 || **id == LOBBY)
            .count()
    }

    /// Every room with its member count, by name. (An empty room other than the lobby
    /// exists only to keep the history a cluster shares: it is not listed.)
    pub(crate) fn list(&self) -> Vec<(&str, usize)> {
        let mut list: Vec<(&str, usize)> = self
            .rooms
            .iter()
            .filter(|(id, room)| room.members > 0 || **id == LOBBY)
            .map(|(_, room)| room)
            .map(|room| (room.name.as_str(), room.members))
            .collect();
        list.sort_by_key(|(name, _)| name.to_ascii_lowercase());
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_found_ignoring_case_and_vanish_when_empty() {
        let mut rooms = Rooms::new(2);
        let games = rooms.find_or_create("Games");
        assert_eq!(rooms.find_or_create("games"), games);
        rooms.enter(games);
        assert_eq!(rooms.list(), vec![("Games", 1), ("lobby", 0)]);
        rooms.leave(games);
        assert_eq!(rooms.list(), vec![("lobby", 0)]);
        rooms.leave(LOBBY);
        assert_eq!(rooms.list(), vec![("lobby", 0)]);
    }

    #[test]
    fn history_keeps_the_last_lines() {
        let mut rooms = Rooms::new(2);
        for line in ["one", "two", "three"] {
            rooms.record(LOBBY, line.to_owned());
        }
        let kept: Vec<&str> = rooms
            .history(LOBBY)
            .map(|(_, line)| line.as_str())
            .collect();
        assert_eq!(kept, vec!["two", "three"]);
    }
}
