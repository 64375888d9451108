//! What was said and who must hear it. Every chat line the driver sends is registered here
//! first, with its audience (a room, or one witness by `/msg`), and carries a marker
//! `~S<id>~` followed by words that depend on the id alone, so any receiver can tell
//! whether the line arrived whole. Witnesses are clients that stay the whole run in one
//! room: each must receive every line said to its room (or to it) exactly once, nothing
//! said elsewhere, and, since the cluster promises one order, the lines of its room in the
//! same order as every other witness of that room, on whichever node.

use std::sync::Mutex;
use std::time::Instant;

use crate::stats::{Stats, mix};

/// The rooms the clients chat in; witnesses sit in each.
pub const ROOMS: [&str; 2] = ["lobby", "games"];
pub const LOBBY: usize = 0;

/// Who must receive a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Everyone in the room (index into [`ROOMS`]) but the sender.
    Room(usize),
    /// One witness, by `/msg`.
    Witness(usize),
}

/// Who received a line: a witness (its index) or any other client.
#[derive(Debug, Clone, Copy)]
pub enum Receiver {
    Witness(usize),
    Other,
}

/// What a received line was, for the session reading it.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// A marked chat line (checked and counted).
    Chat,
    /// Anything else: notices, replies, page events, history.
    Other,
}

/// How long after it was said a line must have reached every witness it was meant for.
pub const DELIVERY_PATIENCE_S: u64 = 30;

struct Said {
    audience: Audience,
    at: Instant,
}

struct WitnessLog {
    name: String,
    room: usize,
    /// One bit per line id: received.
    received: Vec<u64>,
    received_count: u64,
    /// The room's lines in the order they arrived (private lines are left out).
    order: Vec<u32>,
    duplicates: u64,
    misdelivered: u64,
    /// Lines counted as missing so far (late ones, then at the end).
    missing: u64,
    /// The witness lost its connection at this point: lines said later are not expected.
    lost_at: Option<usize>,
}

pub struct Ledger {
    said: Mutex<Vec<Said>>,
    witnesses: Vec<Mutex<WitnessLog>>,
    /// Lines below this id have been checked against every witness.
    checked_upto: Mutex<usize>,
}

/// The line with marker `id`: the marker, then two to eight words chosen by the id (a
/// few of them not ASCII, which must arrive unchanged).
pub fn text_of(id: u64) -> String {
    const WORDS: [&str; 32] = [
        "hello",
        "anyone",
        "done",
        "exercise",
        "three",
        "yet",
        "what",
        "about",
        "the",
        "next",
        "one",
        "lunch",
        "soon",
        "ok",
        "thanks",
        "see",
        "page",
        "twelve",
        "question",
        "answer",
        "maybe",
        "later",
        "sure",
        "café",
        "who",
        "has",
        "notes",
        "naïve",
        "monday",
        "日本語",
        "deadline",
        "friday",
    ];
    let mut hash = mix(id);
    let words = 2 + hash % 7;
    let mut text = format!("~S{id}~");
    for _ in 0..words {
        hash = mix(hash);
        text.push(' ');
        text.push_str(WORDS[(hash % WORDS.len() as u64) as usize]);
    }
    text
}

/// The marker's id and where the marker starts, if `line` holds one.
fn find_marker(line: &str) -> Option<(u64, usize)> {
    let start = line.find("~S")?;
    let digits = &line[start + 2..];
    let end = digits.find('~')?;
    Some((digits[..end].parse().ok()?, start))
}

impl Ledger {
    /// A ledger for witnesses with these names, each in its room.
    pub fn new(witnesses: &[(String, usize)]) -> Ledger {
        Ledger {
            said: Mutex::new(Vec::new()),
            witnesses: witnesses
                .iter()
                .map(|(name, room)| {
                    Mutex::new(WitnessLog {
                        name: name.clone(),
                        room: *room,
                        received: Vec::new(),
                        received_count: 0,
                        order: Vec::new(),
                        duplicates: 0,
                        misdelivered: 0,
                        missing: 0,
                        lost_at: None,
                    })
                })
                .collect(),
            checked_upto: Mutex::new(0),
        }
    }

    /// Registers a line for `audience` and returns its text, to be sent at once.
    pub fn say(&self, audience: Audience) -> String {
        let mut said = lock(&self.said);
        let id = said.len() as u64;
        said.push(Said {
            audience,
            at: Instant::now(),
        });
        text_of(id)
    }

    /// Checks and counts a received line. Marked lines must be whole; a witness must be
    /// among their audience and must not get one twice. History lines are counted apart
    /// (whoever enters a room gets its last lines again, by design).
    pub fn observe(
        &self,
        receiver: Receiver,
        line: &str,
        stats: &Stats,
        kind: Option<usize>,
    ) -> Heard {
        let Some((id, start)) = find_marker(line) else {
            return Heard::Other;
        };
        let expected = text_of(id);
        let audience = lock(&self.said).get(id as usize).map(|said| said.audience);
        let Some(audience) = audience else {
            stats.fail(kind, "unknown marker", format!("{line:?}"));
            return Heard::Other;
        };
        if line[start..] != expected {
            stats.fail(
                kind,
                "garbled line",
                format!("{line:?}, expected {expected:?}"),
            );
        }
        if line.starts_with("* history ") {
            Stats::add(&stats.history_lines, 1);
            return Heard::Other;
        }
        Stats::add(&stats.deliveries, 1);
        let Receiver::Witness(index) = receiver else {
            return Heard::Chat;
        };
        let mut witness = lock(&self.witnesses[index]);
        let meant_for_it = match audience {
            Audience::Room(room) => room == witness.room,
            Audience::Witness(to) => to == index,
        };
        if !meant_for_it {
            witness.misdelivered += 1;
            let name = witness.name.clone();
            drop(witness);
            stats.fail(
                kind,
                "line reached someone it was not for",
                format!("{name} got {line:?}"),
            );
            return Heard::Chat;
        }
        let (word, bit) = (id as usize / 64, id % 64);
        if witness.received.len() <= word {
            witness.received.resize(word + 1, 0);
        }
        if witness.received[word] & (1 << bit) != 0 {
            witness.duplicates += 1;
            let name = witness.name.clone();
            drop(witness);
            stats.fail(
                kind,
                "line received twice",
                format!("{name} got {line:?} again"),
            );
            return Heard::Chat;
        }
        witness.received[word] |= 1 << bit;
        witness.received_count += 1;
        if let Audience::Room(_) = audience {
            witness.order.push(id as u32);
        }
        Heard::Chat
    }

    /// The witness lost its connection: from now on it is not expected to receive lines.
    pub fn witness_lost(&self, index: usize) {
        let said = lock(&self.said).len();
        lock(&self.witnesses[index]).lost_at.get_or_insert(said);
    }

    /// Counts as failures the lines said before `cutoff` that some witness they were meant
    /// for has not received (each line and witness once).
    pub fn check_overdue(&self, cutoff: Instant, stats: &Stats) {
        let said = lock(&self.said);
        let mut checked = lock(&self.checked_upto);
        let end = said[*checked..]
            .iter()
            .position(|line| line.at > cutoff)
            .map_or(said.len(), |offset| *checked + offset);
        self.count_missing(&said, *checked..end, stats, "line not received in time");
        *checked = end;
    }

    /// Whether every witness has every line meant for it so far (to wait for the last ones).
    pub fn all_received(&self) -> bool {
        let said = lock(&self.said);
        let checked = *lock(&self.checked_upto);
        self.witnesses.iter().enumerate().all(|(index, witness)| {
            let witness = lock(witness);
            (checked..said.len())
                .all(|id| !expects(&witness, index, id, &said[id]) || has(&witness, id))
        })
    }

    /// Checks the lines not yet checked (at the end, after the last ones had their time),
    /// and that the witnesses of each room heard its lines in one order. Returns one
    /// summary line per witness.
    pub fn finish(&self, stats: &Stats) -> Vec<String> {
        {
            let said = lock(&self.said);
            let mut checked = lock(&self.checked_upto);
            self.count_missing(&said, *checked..said.len(), stats, "line never received");
            *checked = said.len();
        }
        let said = lock(&self.said);
        let mut lines = vec![format!(
            "  {:<24} {:<6} {:>9} {:>9} {:>8} {:>10} {:>13}  order",
            "witness", "room", "expected", "received", "missing", "duplicates", "misdelivered"
        )];
        let logs: Vec<_> = self.witnesses.iter().map(lock).collect();
        for (index, witness) in logs.iter().enumerate() {
            let expected = said
                .iter()
                .enumerate()
                .filter(|(id, line)| expects(witness, index, *id, line))
                .count();
            // Compared with the first witness of the same room that stayed connected.
            let reference = logs
                .iter()
                .position(|other| other.room == witness.room && other.lost_at.is_none());
            let order = match reference {
                _ if witness.lost_at.is_some() => String::from("(lost its connection)"),
                Some(reference) if reference == index => String::from("reference"),
                Some(reference) => match first_difference(&logs[reference].order, &witness.order) {
                    None => format!("same as {}", logs[reference].name),
                    Some(at) => {
                        stats.fail(
                            None,
                            "one order broken",
                            format!(
                                "{} and {} differ at line {at} of {}",
                                logs[reference].name, witness.name, ROOMS[witness.room]
                            ),
                        );
                        format!("DIFFERS from {} at {at}", logs[reference].name)
                    }
                },
                None => String::from("-"),
            };
            lines.push(format!(
                "  {:<24} {:<6} {:>9} {:>9} {:>8} {:>10} {:>13}  {order}",
                witness.name,
                ROOMS[witness.room],
                expected,
                witness.received_count,
                witness.missing,
                witness.duplicates,
                witness.misdelivered
            ));
        }
        lines
    }

    fn count_missing(&self, said: &[Said], ids: std::ops::Range<usize>, stats: &Stats, what: &str) {
        for (index, witness) in self.witnesses.iter().enumerate() {
            let mut witness = lock(witness);
            let mut missing = 0;
            let mut first = None;
            for id in ids.clone() {
                if expects(&witness, index, id, &said[id]) && !has(&witness, id) {
                    missing += 1;
                    first.get_or_insert(id);
                }
            }
            if let Some(first) = first {
                witness.missing += missing;
                let name = witness.name.clone();
                drop(witness);
                stats.fail(
                    None,
                    what,
                    format!(
                        "{name} lacks {missing} line(s), the first {:?}",
                        text_of(first as u64)
                    ),
                );
            }
        }
    }
}

/// Whether line `id` was meant for witness `index` (and said while it was there).
fn expects(witness: &WitnessLog, index: usize, id: usize, said: &Said) -> bool {
    if witness.lost_at.is_some_and(|lost| id >= lost) {
        return false;
    }
    match said.audience {
        Audience::Room(room) => room == witness.room,
        Audience::Witness(to) => to == index,
    }
}

fn has(witness: &WitnessLog, id: usize) -> bool {
    witness
        .received
        .get(id / 64)
        .is_some_and(|word| word & (1 << (id % 64)) != 0)
}

/// Where two sequences first differ, if they do (one a prefix of the other counts: a
/// witness that lacks the last lines is reported as missing them).
fn first_difference(a: &[u32], b: &[u32]) -> Option<usize> {
    let common = a.len().min(b.len());
    (0..common).find(|&i| a[i] != b[i])
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_checked_whole_and_once_per_witness() {
        let stats = Stats::new(1, 1);
        let ledger = Ledger::new(&[(String::from("w0"), LOBBY), (String::from("w1"), 1)]);
        let text = ledger.say(Audience::Room(LOBBY));
        let heard = ledger.observe(Receiver::Witness(0), &format!("[ann] {text}"), &stats, None);
        assert_eq!(heard, Heard::Chat);
        assert_eq!(stats.failure_count(), 0);
        ledger.observe(Receiver::Witness(0), &format!("[ann] {text}"), &stats, None);
        assert_eq!(stats.failure_count(), 1, "a duplicate");
        ledger.observe(Receiver::Witness(1), &format!("[ann] {text}"), &stats, None);
        assert_eq!(stats.failure_count(), 2, "the other room's witness");
        ledger.observe(
            Receiver::Other,
            &format!("[ann] {text} extra"),
            &stats,
            None,
        );
        assert_eq!(stats.failure_count(), 3, "garbled");
        assert!(ledger.all_received());
        let private = ledger.say(Audience::Witness(1));
        assert!(!ledger.all_received());
        ledger.observe(
            Receiver::Witness(1),
            &format!("[ann -> you] {private}"),
            &stats,
            None,
        );
        assert!(ledger.all_received());
        ledger.finish(&stats);
        assert_eq!(stats.failure_count(), 3);
    }

    #[test]
    fn markers_are_found_anywhere_and_texts_depend_on_the_id_alone() {
        assert_eq!(find_marker("[a] * ~S42~ x"), Some((42, 6)));
        assert_eq!(find_marker("no marker ~S~"), None);
        assert_eq!(text_of(7), text_of(7));
        assert_ne!(text_of(7), text_of(8));
    }
}
