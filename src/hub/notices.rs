//! Join and leave notices, batched per wake-up and room.

use crate::outbox::Round;
use crate::protocol;
use crate::rooms::RoomId;
use crate::shutdown::ConnectionId;

use super::LeaveReason;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NoticeKind {
    Joined,
    Left(LeaveReason),
}

/// Join or leave notices of one wake-up, sent as one line. When hundreds join at once,
/// telling everyone about each of them would be quadratic: this keeps it one line each.
#[derive(Default)]
pub(super) struct NoticeBatch {
    pub(super) joined: bool,
    room: RoomId,
    /// Up to three names shown, with the reason for leaves.
    shown: Vec<String>,
    total: usize,
    first: Option<(ConnectionId, NoticeKind, String)>,
}

impl NoticeBatch {
    pub(super) fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Adds an arrival or departure; a change of kind sends what was collected first,
    /// so joins and leaves are seen in the order they happened.
    pub(super) fn add(
        &mut self,
        kind: NoticeKind,
        id: ConnectionId,
        nick: String,
        room: RoomId,
        round: &mut Round,
    ) {
        let joined = kind == NoticeKind::Joined;
        if !self.is_empty() && (self.joined != joined || self.room != room) {
            std::mem::take(self).send(round);
        }
        self.joined = joined;
        self.room = room;
        if self.shown.len() < 3 {
            self.shown.push(match &kind {
                NoticeKind::Joined => nick.clone(),
                NoticeKind::Left(reason) => format!("{nick} ({reason})"),
            });
        }
        if self.total == 0 {
            self.first = Some((id, kind, nick));
        }
        self.total += 1;
    }

    pub(super) fn send(self, round: &mut Round) {
        let Some((first_id, first_kind, first_nick)) = self.first else {
            return;
        };
        let (text, except) = match (self.total, first_kind) {
            (1, NoticeKind::Joined) => (format!("* {first_nick} joined"), Some(first_id)),
            // A leaver that only moved to another room is still here: not for it.
            (1, NoticeKind::Left(reason)) => {
                (format!("* {first_nick} left ({reason})"), Some(first_id))
            }
            (total, _) => {
                let verb = if self.joined { "joined" } else { "left" };
                (
                    format!("* {} {verb}", protocol::name_list(&self.shown, total)),
                    None,
                )
            }
        };
        round.push_line(&[&text], except, Some(self.room));
    }
}
