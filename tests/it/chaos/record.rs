//! What a chaos run records, as plain data: the faults and their windows, what each
//! talker said and when, what each listener received and when, nodes found dead. The run
//! fills it in (mod.rs), the checker reads it (check.rs), the table prints it.

use std::time::Duration;

/// The number a talker's last line, `c done`, stands for.
pub(super) const DONE: u64 = u64::MAX;

/// Everything a run recorded; times are since its start.
pub(super) struct ChaosRecord {
    pub(super) seed: u64,
    pub(super) fault_time: Duration,
    pub(super) run_time: Duration,
    pub(super) faults: Vec<FaultWindow>,
    pub(super) talkers: Vec<TalkerRecord>,
    pub(super) listeners: Vec<ListenerRecord>,
    /// Nodes the run did not kill that exited or did not answer, with what was seen.
    pub(super) dead_nodes: Vec<String>,
    /// What else happened worth telling: clients that could not be linked, node warnings.
    pub(super) notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum FaultKind {
    NodeKilled(usize),
    RedisPaused,
    RedisRestarted,
    ProxyBlackholed(usize),
}

impl FaultKind {
    pub(super) fn describe(self) -> String {
        match self {
            FaultKind::NodeKilled(node) => format!("n{} killed and restarted", node + 1),
            FaultKind::RedisPaused => String::from("redis paused"),
            FaultKind::RedisRestarted => String::from("redis restarted empty"),
            FaultKind::ProxyBlackholed(node) => format!("n{} cut from redis", node + 1),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct FaultWindow {
    pub(super) kind: FaultKind,
    pub(super) started: Duration,
    /// When it ended: Redis resumed or restarted, the proxy healed, the node restarted.
    pub(super) healed: Duration,
    /// When the nodes were proven linked again after it was healed; None: never.
    pub(super) linked_again: Option<Duration>,
}

pub(super) struct TalkerRecord {
    pub(super) nick: String,
    pub(super) node: usize,
    /// When the run killed its node.
    pub(super) killed_at: Option<Duration>,
    /// (N, when said), in order; N is [`DONE`] for `c done`.
    pub(super) said: Vec<(u64, Duration)>,
}

pub(super) struct ListenerRecord {
    pub(super) nick: String,
    pub(super) node: usize,
    /// When its node was proven linked after it joined; None: never.
    pub(super) linked_at: Option<Duration>,
    pub(super) killed_at: Option<Duration>,
    pub(super) received: Vec<Receipt>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Receipt {
    pub(super) talker: String,
    pub(super) n: u64,
    /// Came as `* said during the split: [nick] text`.
    pub(super) marked: bool,
    /// When it came.
    pub(super) at: Duration,
}

/// A talker's line as a listener got it, if the line is one: `[talker3] c 17`,
/// `* said during the split: [talker3] c 17`, `[talker3] c done`; it came at `at`.
pub(super) fn parse_receipt(line: &str, at: Duration) -> Option<Receipt> {
    let (marked, said) = match line.strip_prefix("* said during the split: ") {
        Some(said) => (true, said),
        None => (false, line),
    };
    let (nick, text) = said.strip_prefix('[')?.split_once("] ")?;
    if !nick.starts_with("talker") || nick.contains(' ') {
        return None; // someone else, or a private line (`[talker3 -> you]`)
    }
    let n = match text.strip_prefix("c ")? {
        "done" => DONE,
        number => number.parse().ok()?,
    };
    Some(Receipt {
        talker: nick.to_owned(),
        n,
        marked,
        at,
    })
}

/// A time of the run as the table and the checker's examples show it: `2.0 s`.
pub(super) fn seconds(at: Duration) -> String {
    format!("{:.1} s", at.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn receipts_are_read_marked_or_not_and_nothing_else_is() {
        let line = |talker: &str, n, marked| Receipt {
            talker: talker.to_owned(),
            n,
            marked,
            at: at(1),
        };
        assert_eq!(
            parse_receipt("[talker3] c 17", at(1)),
            Some(line("talker3", 17, false))
        );
        assert_eq!(
            parse_receipt("* said during the split: [talker3] c done", at(1)),
            Some(line("talker3", DONE, true))
        );
        assert_eq!(parse_receipt("* history 16:02 [talker3] c 17", at(1)), None);
        assert_eq!(parse_receipt("[talker3 -> you] c 1", at(1)), None);
        assert_eq!(parse_receipt("[listener1] c 1", at(1)), None);
        assert_eq!(parse_receipt("* talker3 joined", at(1)), None);
    }
}
