//! The checker: a pure function from a run's record to the promises it broke (the rules
//! are in mod.rs's header comment), with the unit tests that pin each rule down.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::record::{ChaosRecord, DONE, FaultKind, FaultWindow, ListenerRecord, Receipt, seconds};

/// Lines said this long before their talker's node was killed may be lost with it.
const IN_FLIGHT: Duration = Duration::from_secs(5);
/// A fault's window for the cross-order check starts this long before the fault...
const BEFORE_FAULT: Duration = Duration::from_secs(2);
/// ... and ends this long after the nodes are linked again.
const AFTER_LINKED: Duration = Duration::from_secs(3);
/// Examples printed per kind of violation.
const EXAMPLES: usize = 5;

/// The promises the record breaks (see mod.rs's header comment for each rule).
pub(super) fn check(record: &ChaosRecord) -> Violations {
    let mut violations = Violations::default();
    let said_at: HashMap<(&str, u64), Duration> = record
        .talkers
        .iter()
        .flat_map(|talker| {
            let nick = talker.nick.as_str();
            talker.said.iter().map(move |&(n, at)| ((nick, n), at))
        })
        .collect();
    for listener in &record.listeners {
        check_one_listener(record, &said_at, listener, &mut violations);
    }
    for (index, first) in record.listeners.iter().enumerate() {
        for second in &record.listeners[index + 1..] {
            check_cross_order(record, &said_at, first, second, &mut violations);
        }
    }
    for dead in &record.dead_nodes {
        violations.dead_node.add(1, || dead.clone());
    }
    violations
}

/// What the checker found: the violations of each kind.
#[derive(Default)]
pub(super) struct Violations {
    duplicate: Violation,
    lost: Violation,
    talker_order: Violation,
    cross_order: Violation,
    dead_node: Violation,
}

impl Violations {
    pub(super) fn kinds(&self) -> [(&'static str, &Violation); 5] {
        [
            ("duplicate", &self.duplicate),
            ("lost", &self.lost),
            ("talker order", &self.talker_order),
            ("cross order", &self.cross_order),
            ("dead node", &self.dead_node),
        ]
    }

    pub(super) fn count(&self) -> usize {
        self.kinds().iter().map(|(_, kind)| kind.count).sum()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.count() == 0
    }
}

/// The violations of one kind: how many, and the first few.
#[derive(Default)]
pub(super) struct Violation {
    pub(super) count: usize,
    pub(super) examples: Vec<String>,
}

impl Violation {
    fn add(&mut self, count: usize, example: impl FnOnce() -> String) {
        self.count += count;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }
}

impl FaultKind {
    /// Whether the fault keeps `node`'s lines from reaching Redis for a while.
    fn cuts_off(self, node: usize) -> bool {
        match self {
            FaultKind::RedisPaused | FaultKind::RedisRestarted => true,
            FaultKind::ProxyBlackholed(cut) => cut == node,
            FaultKind::NodeKilled(_) => false,
        }
    }
}

impl FaultWindow {
    /// Whether a line said at `at` is exempt from the cross-order check.
    pub(super) fn covers(&self, at: Duration) -> bool {
        let from = self.started.saturating_sub(BEFORE_FAULT);
        let until = self.settled().saturating_add(AFTER_LINKED);
        from <= at && at <= until
    }

    /// Until when it may hold lines back: until the nodes are linked again.
    fn settled(&self) -> Duration {
        self.linked_again.unwrap_or(Duration::MAX)
    }
}

fn line_name(talker: &str, n: u64) -> String {
    if n == DONE {
        format!("{talker}'s c done")
    } else {
        format!("{talker}'s c {n}")
    }
}

/// `talker1's c 2 (said at 2.0 s, got at 3.0 s, marked)`.
fn describe(receipt: &Receipt, said_at: &HashMap<(&str, u64), Duration>) -> String {
    let said = said_at
        .get(&(receipt.talker.as_str(), receipt.n))
        .map_or_else(
            || String::from("never said"),
            |&at| format!("said at {}", seconds(at)),
        );
    format!(
        "{} ({said}, got at {}{})",
        line_name(&receipt.talker, receipt.n),
        seconds(receipt.at),
        if receipt.marked { ", marked" } else { "" }
    )
}

/// Duplicates, talker order and losses on one listener.
fn check_one_listener(
    record: &ChaosRecord,
    said_at: &HashMap<(&str, u64), Duration>,
    listener: &ListenerRecord,
    found: &mut Violations,
) {
    let who = format!("{} (n{})", listener.nick, listener.node + 1);
    let mut got: HashMap<(&str, u64), &Receipt> = HashMap::new();
    let mut highest: HashMap<&str, &Receipt> = HashMap::new();
    for receipt in &listener.received {
        let talker = receipt.talker.as_str();
        if let Some(first) = got.insert((talker, receipt.n), receipt) {
            found.duplicate.add(1, || {
                format!(
                    "{who} got {} then again at {}{}",
                    describe(first, said_at),
                    seconds(receipt.at),
                    if receipt.marked { ", marked" } else { "" }
                )
            });
            got.insert((talker, receipt.n), first);
            continue;
        }
        let highest = highest.entry(talker).or_insert(receipt);
        if receipt.n < highest.n {
            found.talker_order.add(1, || {
                format!(
                    "{who} got {} after {}",
                    describe(receipt, said_at),
                    describe(highest, said_at)
                )
            });
        } else {
            *highest = receipt;
        }
    }
    let Some(linked_at) = listener.linked_at else {
        return; // never proven linked: what it missed proves nothing
    };
    for talker in &record.talkers {
        // Runs of lines said one after the other and missed, for short examples.
        let mut missed: Vec<Vec<(u64, Duration)>> = Vec::new();
        let mut in_run = false;
        for &(n, at) in &talker.said {
            let faults = &record.faults;
            let owed = at >= linked_at
                && !in_flight(talker.killed_at, at, &[talker.node], faults)
                && !in_flight(
                    listener.killed_at,
                    at,
                    &[talker.node, listener.node],
                    faults,
                );
            if owed && !got.contains_key(&(talker.nick.as_str(), n)) {
                match missed.last_mut() {
                    Some(run) if in_run => run.push((n, at)),
                    _ => missed.push(vec![(n, at)]),
                }
                in_run = true;
            } else {
                in_run = false;
            }
        }
        for run in missed {
            let (first, last) = (run[0], run[run.len() - 1]);
            found.lost.add(run.len(), || {
                let nick = &talker.nick;
                if run.len() == 1 {
                    format!(
                        "{who} never got {} (said at {})",
                        line_name(nick, first.0),
                        seconds(first.1)
                    )
                } else {
                    format!(
                        "{who} never got {} to {} ({} lines said from {} to {})",
                        line_name(nick, first.0),
                        line_name(nick, last.0),
                        run.len(),
                        seconds(first.1),
                        seconds(last.1)
                    )
                }
            });
        }
    }
}

/// Whether a line said at `at` may not have got through by `kill` (its talker's node
/// killed, or its listener's): said in the [`IN_FLIGHT`] before it or after it, or after
/// the start of a fault that kept one of `nodes` from Redis and was not settled by then.
fn in_flight(
    kill: Option<Duration>,
    at: Duration,
    nodes: &[usize],
    faults: &[FaultWindow],
) -> bool {
    let Some(kill) = kill else {
        return false;
    };
    at.saturating_add(IN_FLIGHT) >= kill
        || faults.iter().any(|fault| {
            nodes.iter().any(|&node| fault.kind.cuts_off(node))
                && fault.started <= at
                && fault.started <= kill
                && kill <= fault.settled()
        })
}

/// Lines both listeners got unmarked, outside every fault's window, in the same order.
fn check_cross_order(
    record: &ChaosRecord,
    said_at: &HashMap<(&str, u64), Duration>,
    first: &ListenerRecord,
    second: &ListenerRecord,
    found: &mut Violations,
) {
    let exempt = |talker: &str, n: u64| match said_at.get(&(talker, n)) {
        Some(&at) => record.faults.iter().any(|fault| fault.covers(at)),
        None => true, // not said by a talker of the record: nothing to compare
    };
    let place_in_second: HashMap<(String, u64), usize> = first_unmarked(second)
        .into_iter()
        .enumerate()
        .map(|(place, line)| (line, place))
        .collect();
    // The line of `first` furthest on in `second` so far: a later line of `first` that
    // `second` got before it was seen in another order.
    let mut furthest: Option<(usize, (String, u64))> = None;
    for line in first_unmarked(first) {
        if exempt(&line.0, line.1) {
            continue;
        }
        let Some(&place) = place_in_second.get(&line) else {
            continue;
        };
        match &furthest {
            Some((furthest_place, earlier)) if place < *furthest_place => {
                found.cross_order.add(1, || {
                    let said = |(talker, n): &(String, u64)| {
                        let at = said_at.get(&(talker.as_str(), *n)).copied();
                        format!(
                            "{} (said at {})",
                            line_name(talker, *n),
                            seconds(at.unwrap_or_default())
                        )
                    };
                    format!(
                        "{} got {} before {}, {} the other way round",
                        first.nick,
                        said(earlier),
                        said(&line),
                        second.nick
                    )
                });
            }
            _ => furthest = Some((place, line)),
        }
    }
}

/// The lines a listener got unmarked, each once, in the order it first got them.
fn first_unmarked(listener: &ListenerRecord) -> Vec<(String, u64)> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for receipt in listener.received.iter().filter(|receipt| !receipt.marked) {
        if seen.insert((receipt.talker.as_str(), receipt.n)) {
            order.push((receipt.talker.clone(), receipt.n));
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::record::TalkerRecord;

    fn at(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    /// A talker on n1 saying `c 1` to `c COUNT`, one a second from 1 s on.
    fn talker(nick: &str, count: u64) -> TalkerRecord {
        TalkerRecord {
            nick: nick.to_owned(),
            node: 0,
            killed_at: None,
            said: (1..=count).map(|n| (n, at(n))).collect(),
        }
    }

    fn listener(nick: &str, received: &[(&str, u64, bool)]) -> ListenerRecord {
        ListenerRecord {
            nick: nick.to_owned(),
            node: 1,
            linked_at: Some(at(0)),
            killed_at: None,
            // The first line got at 1 s, the next at 2 s, ...
            received: (1..)
                .zip(received)
                .map(|(second, &(talker, n, marked))| Receipt {
                    talker: talker.to_owned(),
                    n,
                    marked,
                    at: at(second),
                })
                .collect(),
        }
    }

    fn record(
        talkers: Vec<TalkerRecord>,
        listeners: Vec<ListenerRecord>,
        faults: Vec<FaultWindow>,
    ) -> ChaosRecord {
        ChaosRecord {
            seed: 0,
            fault_time: at(10),
            run_time: at(12),
            faults,
            talkers,
            listeners,
            dead_nodes: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn a_line_got_twice_is_a_duplicate_even_once_marked() {
        let record = record(
            vec![talker("talker1", 2)],
            vec![listener(
                "listener1",
                &[
                    ("talker1", 1, true),
                    ("talker1", 1, false),
                    ("talker1", 2, false),
                ],
            )],
            Vec::new(),
        );
        let violations = check(&record);
        assert_eq!(violations.duplicate.count, 1);
        assert_eq!(violations.count(), 1, "{:?}", violations.duplicate.examples);
    }

    #[test]
    fn a_line_missed_is_lost_unless_in_flight_when_its_node_was_killed() {
        let mut killed = talker("talker1", 12);
        killed.killed_at = Some(at(12));
        // c 2 never came, nor c 8 to c 12, said in the 5 s before the kill.
        let received: Vec<(&str, u64, bool)> = (1..=7)
            .filter(|&n| n != 2)
            .map(|n| ("talker1", n, false))
            .collect();
        let violations = check(&record(
            vec![killed],
            vec![listener("listener1", &received)],
            Vec::new(),
        ));
        assert_eq!(violations.lost.count, 1, "{:?}", violations.lost.examples);
        assert!(violations.lost.examples[0].contains("talker1's c 2 "));
    }

    #[test]
    fn lines_said_while_a_fault_cut_off_the_killed_node_may_be_lost() {
        let mut killed = talker("talker1", 20);
        killed.killed_at = Some(at(20));
        let received: Vec<(&str, u64, bool)> = (1..=5).map(|n| ("talker1", n, false)).collect();
        let cut = FaultWindow {
            kind: FaultKind::RedisPaused,
            started: at(6),
            healed: at(8),
            linked_again: Some(at(25)),
        };
        let violations = check(&record(
            vec![killed],
            vec![listener("listener1", &received)],
            vec![cut],
        ));
        assert!(violations.is_empty(), "{:?}", violations.lost.examples);
    }

    #[test]
    fn a_listener_owes_the_lines_said_while_it_was_linked_and_not_about_to_be_killed() {
        // Killed at 10 s: it owes c 1 to c 4 (said over 5 s before), and missed c 2 and c 4.
        let mut gone = listener("listener1", &[("talker1", 1, false), ("talker1", 3, false)]);
        gone.killed_at = Some(at(10));
        // Linked at 7 s: it owes c 7 on.
        let mut late = listener("listener2", &[("talker1", 7, false), ("talker1", 8, false)]);
        late.linked_at = Some(at(7));
        let violations = check(&record(
            vec![talker("talker1", 8)],
            vec![gone, late],
            Vec::new(),
        ));
        assert_eq!(violations.lost.count, 2, "{:?}", violations.lost.examples);
        assert_eq!(
            violations.lost.examples,
            [
                "listener1 (n2) never got talker1's c 2 (said at 2.0 s)",
                "listener1 (n2) never got talker1's c 4 (said at 4.0 s)"
            ]
        );
        // Its node was cut from Redis from 3 s until after the kill: c 4 may be held there.
        let cut = FaultWindow {
            kind: FaultKind::ProxyBlackholed(1),
            started: at(3),
            healed: at(11),
            linked_again: Some(at(12)),
        };
        let mut gone = listener("listener1", &[("talker1", 1, false), ("talker1", 2, false)]);
        gone.killed_at = Some(at(10));
        let violations = check(&record(vec![talker("talker1", 8)], vec![gone], vec![cut]));
        assert!(violations.is_empty(), "{:?}", violations.lost.examples);
    }

    #[test]
    fn a_talkers_lines_out_of_order_on_a_listener_are_found() {
        let violations = check(&record(
            vec![talker("talker1", 3)],
            vec![listener(
                "listener1",
                &[
                    ("talker1", 1, false),
                    ("talker1", 3, true),
                    ("talker1", 2, false),
                ],
            )],
            Vec::new(),
        ));
        assert_eq!(violations.talker_order.count, 1);
        assert_eq!(
            violations.talker_order.examples[0],
            "listener1 (n2) got talker1's c 2 (said at 2.0 s, got at 3.0 s) after \
             talker1's c 3 (said at 3.0 s, got at 2.0 s, marked)"
        );
    }

    #[test]
    fn two_listeners_that_saw_two_lines_in_another_order_are_found() {
        let in_order = [
            ("talker1", 1, false),
            ("talker2", 1, false),
            ("talker1", 2, false),
        ];
        let swapped = [
            ("talker2", 1, false),
            ("talker1", 1, false),
            ("talker1", 2, false),
        ];
        let violations = check(&record(
            vec![talker("talker1", 2), talker("talker2", 1)],
            vec![
                listener("listener1", &in_order),
                listener("listener2", &swapped),
            ],
            Vec::new(),
        ));
        assert_eq!(violations.cross_order.count, 1);
        assert_eq!(
            violations.cross_order.examples[0],
            "listener1 got talker1's c 1 (said at 1.0 s) before talker2's c 1 (said at 1.0 s), \
             listener2 the other way round"
        );
    }

    #[test]
    fn another_order_during_a_fault_or_marked_is_not_a_violation() {
        // talker2's c 1 was said at 1 s, in the window of a fault that started at 2 s.
        let fault = FaultWindow {
            kind: FaultKind::ProxyBlackholed(2),
            started: at(2),
            healed: at(4),
            linked_again: Some(at(5)),
        };
        let in_order = [
            ("talker1", 1, false),
            ("talker2", 1, false),
            ("talker1", 2, false),
        ];
        let swapped = [
            ("talker2", 1, false),
            ("talker1", 1, false),
            ("talker1", 2, false),
        ];
        let violations = check(&record(
            vec![talker("talker1", 2), talker("talker2", 1)],
            vec![
                listener("listener1", &in_order),
                listener("listener2", &swapped),
            ],
            vec![fault],
        ));
        assert!(
            violations.is_empty(),
            "{:?}",
            violations.cross_order.examples
        );
        // Without the fault, but with the early line marked on one side.
        let marked = [
            ("talker2", 1, true),
            ("talker1", 1, false),
            ("talker1", 2, false),
        ];
        let violations = check(&record(
            vec![talker("talker1", 2), talker("talker2", 1)],
            vec![
                listener("listener1", &in_order),
                listener("listener2", &marked),
            ],
            Vec::new(),
        ));
        assert!(
            violations.is_empty(),
            "{:?}",
            violations.cross_order.examples
        );
    }
}
