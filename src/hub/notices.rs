//! Join and leave notices, batched per wake-up and room.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::control::ConnectionId;
use crate::outbox::Round;
use crate::protocol::{self, page_events};
use crate::rooms::RoomId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NoticeKind {
    Joined,
    /// With the reason shown: `quit`, `to games`, `node lost`, ...
    Left(String),
}

impl NoticeKind {
    /// The notice for one client: `* ann joined`, `* ann left (quit)`.
    pub(super) fn line(&self, nick: &str) -> String {
        match self {
            NoticeKind::Joined => format!("* {nick} joined"),
            NoticeKind::Left(reason) => format!("* {nick} left ({reason})"),
        }
    }
}

/// Join or leave notices of one wake-up, sent as one line. When hundreds join at once,
/// telling everyone about each of them would be quadratic: this keeps it one line each.
#[derive(Default)]
pub(super) struct NoticeBatch {
    room: RoomId,
    /// Shown with the reason for leaves.
    names: NameCount,
    /// The first notice of the batch, whose kind is the batch's kind.
    first: Option<(ConnectionId, NoticeKind, String)>,
}

impl NoticeBatch {
    pub(super) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Whether the batch holds joins (false when it is empty or holds leaves).
    pub(super) fn is_joins(&self) -> bool {
        matches!(self.first, Some((_, NoticeKind::Joined, _)))
    }

    /// Adds an arrival or departure; a change of kind or room sends what was collected
    /// first, so joins and leaves are seen in the order they happened.
    pub(super) fn add(
        &mut self,
        kind: NoticeKind,
        id: ConnectionId,
        nick: String,
        room: RoomId,
        round: &mut Round,
    ) {
        let joins = kind == NoticeKind::Joined;
        if !self.is_empty() && (self.is_joins() != joins || self.room != room) {
            std::mem::take(self).send(round);
        }
        self.room = room;
        self.names.add(&kind, &nick);
        if self.first.is_none() {
            self.first = Some((id, kind, nick));
        }
    }

    pub(super) fn send(self, round: &mut Round) {
        let Some((first_id, first_kind, first_nick)) = self.first else {
            return;
        };
        let event = round
            .wants_browser_lines()
            .then(|| self.names.event(&first_kind));
        if self.names.total == 1 {
            // Not for the client it is about: a leaver that only moved rooms is still here.
            let text = first_kind.line(&first_nick);
            round.push_line(&[&text], Some(first_id), Some(self.room));
            if let Some(event) = event {
                round.push_browser_line(&event, Some(first_id), Some(self.room));
            }
            return;
        }
        let verb = match first_kind {
            NoticeKind::Joined => "joined",
            NoticeKind::Left(_) => "left",
        };
        let names = self.names.shown_list();
        round.push_line(&["* ", &names, " ", verb], None, Some(self.room));
        if let Some(event) = event {
            round.push_browser_line(&event, None, Some(self.room));
        }
    }
}

/// A room at least this big has its joins and leaves gathered for [`GATHER_WINDOW`] and
/// announced together: telling 3,000 people about each arrival at the start of a lecture
/// would cost the server 3,000 writes per arrival, and tell them nothing they can read.
pub(super) const BIG_ROOM: usize = 100;
/// How long a big room's joins and leaves are gathered before they are announced.
pub(super) const GATHER_WINDOW: Duration = Duration::from_millis(500);

/// Joins and leaves of big rooms, gathered per room until their window closes.
#[derive(Default)]
pub(super) struct GatheredNotices {
    rooms: HashMap<RoomId, Gathered>,
}

/// One big room's gathered notices.
struct Gathered {
    due: Instant,
    joined: NameCount,
    left: NameCount,
    /// Someone in the room was renamed while the window was open: the page cannot apply
    /// the gathered names one by one.
    crossed_a_rename: bool,
}

/// Up to three names (as shown, and as nicks for the page), and how many in all.
#[derive(Default)]
struct NameCount {
    shown: Vec<String>,
    nicks: Vec<String>,
    total: usize,
}

impl NameCount {
    /// Counts `nick`, shown (with the reason of a leave) if among the first three.
    fn add(&mut self, kind: &NoticeKind, nick: &str) {
        if self.shown.len() < 3 {
            self.shown.push(match kind {
                NoticeKind::Joined => nick.to_owned(),
                NoticeKind::Left(reason) => format!("{nick} ({reason})"),
            });
            self.nicks.push(nick.to_owned());
        }
        self.total += 1;
    }

    /// `ann, bob, cy and 7 others`.
    fn shown_list(&self) -> String {
        protocol::name_list(&self.shown, self.total)
    }

    /// The page's event for these names, arrivals or departures as `kind` says.
    fn event(&self, kind: &NoticeKind) -> String {
        let nicks = self.nicks.iter().map(String::as_str);
        let unnamed = self.total - self.nicks.len();
        match kind {
            NoticeKind::Joined => page_events::joined(nicks, unnamed),
            NoticeKind::Left(_) => page_events::left(nicks, unnamed),
        }
    }
}

impl GatheredNotices {
    pub(super) fn add(&mut self, kind: NoticeKind, nick: String, room: RoomId, now: Instant) {
        let gathered = self.rooms.entry(room).or_insert_with(|| Gathered {
            due: now + GATHER_WINDOW,
            joined: NameCount::default(),
            left: NameCount::default(),
            crossed_a_rename: false,
        });
        match kind {
            NoticeKind::Joined => gathered.joined.add(&kind, &nick),
            NoticeKind::Left(_) => gathered.left.add(&kind, &nick),
        }
    }

    /// Someone in `room` was renamed (announced at once, while its joins and leaves wait).
    pub(super) fn renamed(&mut self, room: RoomId) {
        if let Some(gathered) = self.rooms.get_mut(&room) {
            gathered.crossed_a_rename = true;
        }
    }

    /// When the next window closes, if any is open.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.rooms.values().map(|gathered| gathered.due).min()
    }

    /// Announces the rooms whose window has closed: `* ann, bob and 212 others joined; cy
    /// (quit) and 56 others left`, one line to the whole room.
    pub(super) fn send_due(&mut self, now: Instant, round: &mut Round) {
        if self.next_due().is_none_or(|due| due > now) {
            return;
        }
        let due: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, gathered)| gathered.due <= now)
            .map(|(&room, _)| room)
            .collect();
        for room in due {
            let Some(gathered) = self.rooms.remove(&room) else {
                continue;
            };
            let part = |names: &NameCount, verb: &str| {
                (names.total > 0).then(|| format!("{} {verb}", names.shown_list()))
            };
            let parts: Vec<String> = [
                part(&gathered.joined, "joined"),
                part(&gathered.left, "left"),
            ]
            .into_iter()
            .flatten()
            .collect();
            round.push_line(&["* ", &parts.join("; ")], None, Some(room));
            if !round.wants_browser_lines() {
                continue;
            }
            let kinds = [
                (&gathered.joined, NoticeKind::Joined),
                (&gathered.left, NoticeKind::Left(String::new())),
            ];
            for (names, kind) in kinds.iter().filter(|(names, _)| names.total > 0) {
                round.push_browser_line(&names.event(kind), None, Some(room));
            }
            // Joins are told before leaves, so someone who left and came back within the
            // window would end up gone.
            let came_back = gathered.joined.nicks.iter().any(|joined| {
                let left = &gathered.left.nicks;
                left.iter().any(|nick| nick.eq_ignore_ascii_case(joined))
            });
            if gathered.crossed_a_rename || came_back {
                round.push_browser_line(&page_events::stale(), None, Some(room));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::LineEnding;

    /// What a browser in `room` gets of the round.
    fn browser_text(round: &mut Round, room: RoomId) -> String {
        let sealed = round.seal().expect("lines");
        let mut text = String::new();
        sealed.chunks_for(99, room, LineEnding::Lf, true, |chunk| {
            text.push_str(&String::from_utf8_lossy(chunk.bytes()));
        });
        text
    }

    #[test]
    fn a_window_whose_names_cannot_be_applied_one_by_one_says_the_list_is_stale() {
        let start = Instant::now();
        let after = start + GATHER_WINDOW;
        let mut round = Round::default();
        round.set_browsers_present(true);
        let mut plain = GatheredNotices::default();
        plain.add(NoticeKind::Joined, "ann".into(), 1, start);
        plain.send_due(after, &mut round);
        assert!(!browser_text(&mut round, 1).contains("stale"));

        let mut came_back = GatheredNotices::default();
        came_back.add(NoticeKind::Left("quit".into()), "ann".into(), 1, start);
        came_back.add(NoticeKind::Joined, "Ann".into(), 1, start);
        came_back.send_due(after, &mut round);
        assert!(browser_text(&mut round, 1).contains("\u{1}{\"stale\":true}"));

        let mut renamed = GatheredNotices::default();
        renamed.add(NoticeKind::Joined, "guest-5".into(), 1, start);
        renamed.renamed(1);
        renamed.send_due(after, &mut round);
        assert!(browser_text(&mut round, 1).contains("\u{1}{\"stale\":true}"));
    }
}
