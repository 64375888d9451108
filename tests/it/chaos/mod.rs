//! Chaos for the cluster: three real `tcpchat` nodes and a real `redis-server`, faults
//! chosen by a seeded generator while clients chat, then a check that no promise of
//! README's "Several machines" was broken.
//!
//! The run: nodes n1, n2 and n3, each on a port of its own that it keeps when restarted;
//! n3 reaches Redis through a proxy in the test that can be blackholed (it forwards nothing
//! either way and closes nothing, as a cut cable). Each node has one listener and two
//! talkers: a talker says `c 1`, `c 2`, ... ten lines a second (flood control's rate, so
//! nothing waits), and `c done` at the end. Every 3 to 8 s comes one fault:
//! - a node killed (SIGKILL) and restarted at once with its name and port; new clients
//!   join it, with new nicks;
//! - Redis paused (SIGSTOP, then SIGCONT);
//! - Redis killed and restarted empty on its port;
//! - n3's proxy blackholed, then healed.
//!
//! At the end everything is healed, every living talker says `c done`, and the run waits
//! until every living listener has them all. Then what the listeners received is checked,
//! a line marked `* said during the split: [nick] text` counting as the line:
//! 1. duplicate: no listener gets a line twice;
//! 2. lost: a listener linked when a line was said gets it, unless the line was in flight
//!    when the talker's node was killed, or the listener's: said in the 5 s before the kill
//!    (or after it), or after the start of a fault not yet settled at the kill (Redis
//!    paused or down, or either node cut from it, and the nodes not linked again since).
//!    So a listener alive to the end owes every line said while it was linked;
//! 3. talker order: each talker's lines reach each listener in the order said;
//! 4. cross order: two listeners get two lines in the same relative order. Only lines both
//!    got unmarked count, and not lines said in a fault's window (from 2 s before it starts
//!    to 3 s after it is healed and the nodes are linked again): during a split each node
//!    applies its own lines at once, so one order across nodes is promised only while they
//!    are linked;
//! 5. dead node: every node the run did not kill is running and answers at the end.
//!
//! "Linked" is proven, never assumed: a client's node is linked once a listener on another
//! node has seen the client arrive and the client has got a private line from that
//! listener; after a fault the nodes are linked again once private lines have gone round
//! the three listeners (n1 to n2, n2 to n3, n3 to n1), sent after it was healed.
//!
//! `a_short_seeded_chaos_run_breaks_no_promise` has 30 s of faults with a fixed seed
//! (`TCPCHAT_CHAOS_SEED` replaces it); `long_chaos_run`, ignored (scripts/chaos.sh runs it),
//! has `TCPCHAT_CHAOS_SECONDS` of them (300) and a seed from the clock, printed. Both print
//! a table of the run (shown with `--nocapture` or on failure) and fail on a broken promise.
//!
//! # Layout
//! This file has the tests, the run (nodes started, faults scheduled and healed, the
//! record taken at the end) and its table. Below it, in reading order: clients.rs (the
//! talkers and listeners, and how the nodes are proven linked), nodes.rs (the tcpchat
//! processes), record.rs (what a run records, as plain data) and check.rs (the rules
//! above, as a pure function over that record). The blackholing proxy is tests/it/proxy.rs,
//! Redis is tests/it/redis_server.rs.

mod check;
mod clients;
mod nodes;
mod record;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use check::{Violations, check};
use clients::{ChatClient, Clock, RELINK_PATIENCE, Role, Shared};
use nodes::{CLUSTER_TIMEOUT, Node, node_warnings};
use record::{
    ChaosRecord, DONE, FaultKind, FaultWindow, ListenerRecord, TalkerRecord, parse_receipt, seconds,
};

use crate::proxy::Proxy;
use crate::redis_server::RedisServer;

#[test]
fn a_short_seeded_chaos_run_breaks_no_promise() {
    let seed = seed_from_env().unwrap_or(SHORT_RUN_SEED);
    chaos_run_breaks_no_promise(seed, Duration::from_secs(30));
}

#[test]
#[ignore = "minutes long: scripts/chaos.sh runs it"]
fn long_chaos_run() {
    let seconds = std::env::var("TCPCHAT_CHAOS_SECONDS")
        .ok()
        .map(|value| value.parse().expect("TCPCHAT_CHAOS_SECONDS: whole seconds"))
        .unwrap_or(300);
    let seed = seed_from_env().unwrap_or_else(|| {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970");
        since_epoch.as_secs() ^ u64::from(since_epoch.subsec_nanos())
    });
    eprintln!("chaos: seed {seed} (TCPCHAT_CHAOS_SEED={seed} replays these faults)");
    chaos_run_breaks_no_promise(seed, Duration::from_secs(seconds));
}

/// The short run's seed: one whose 30 s bring every kind of fault.
const SHORT_RUN_SEED: u64 = 20;
/// Time between the starts of two faults.
const FAULT_GAP: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(8));
/// How long Redis stays paused. A lease is renewed every third of the timeout and lasts
/// the timeout, so a pause longer than two thirds of it, less the time a node takes to
/// renew once Redis answers again, would make every node's lease run out at once.
const PAUSE: (Duration, Duration) = (Duration::from_millis(1000), Duration::from_millis(1500));
/// How long n3 is cut from Redis. Over two thirds of the timeout the others find its
/// lease gone and announce it lost: a partition, which the cluster must also survive.
const BLACKHOLE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(5));
/// How long the listeners may take to get every `c done` at the end.
const DONE_PATIENCE: Duration = Duration::from_secs(30);
const NODES: usize = 3;
/// The node that reaches Redis through the proxy.
const CUT_NODE: usize = 2;

fn seed_from_env() -> Option<u64> {
    let value = std::env::var("TCPCHAT_CHAOS_SEED").ok()?;
    Some(value.parse().expect("TCPCHAT_CHAOS_SEED: a number"))
}

fn chaos_run_breaks_no_promise(seed: u64, fault_time: Duration) {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let record = Run::start(redis, seed).faults_then_end(fault_time);
    let violations = check(&record);
    eprintln!("{}", report(&record, &violations));
    assert!(
        violations.is_empty(),
        "the chaos run with seed {seed} broke {} promises (see the table above; \
         TCPCHAT_CHAOS_SEED={seed} replays its faults)",
        violations.count()
    );
}

/// The run as a table: what was done, what was seen, what was broken.
fn report(record: &ChaosRecord, violations: &Violations) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "chaos run: seed {}, {} of faults, {} in all, cluster timeout {}",
        record.seed,
        seconds(record.fault_time),
        seconds(record.run_time),
        seconds(CLUSTER_TIMEOUT)
    );
    let kinds = [
        ("node killed", FaultKind::NodeKilled(0)),
        ("redis paused", FaultKind::RedisPaused),
        ("redis restarted empty", FaultKind::RedisRestarted),
        ("n3 cut from redis", FaultKind::ProxyBlackholed(CUT_NODE)),
    ];
    let counts: Vec<String> = kinds
        .iter()
        .map(|&(name, kind)| {
            let same = |fault: &&FaultWindow| match fault.kind {
                FaultKind::NodeKilled(_) => matches!(kind, FaultKind::NodeKilled(_)),
                other => other == kind,
            };
            format!("{name} {}", record.faults.iter().filter(same).count())
        })
        .collect();
    let _ = writeln!(out, "faults: {}", counts.join(", "));
    for fault in &record.faults {
        let linked = fault
            .linked_again
            .map_or_else(|| String::from("never"), seconds);
        let _ = writeln!(
            out,
            "  {:>7}  {:<28} healed {:>7}, linked again {linked}",
            seconds(fault.started),
            fault.kind.describe(),
            seconds(fault.healed)
        );
    }
    let said: usize = record.talkers.iter().map(|talker| talker.said.len()).sum();
    let outside = record
        .talkers
        .iter()
        .flat_map(|talker| &talker.said)
        .filter(|&&(_, at)| !record.faults.iter().any(|fault| fault.covers(at)))
        .count();
    let _ = writeln!(
        out,
        "lines said: {said} by {} talkers, {outside} of them outside every fault's window \
         (compared for cross order)",
        record.talkers.len()
    );
    for node in 0..NODES {
        let talkers: Vec<String> = record
            .talkers
            .iter()
            .filter(|talker| talker.node == node)
            .map(|talker| {
                let from = talker.said.first().map_or(Duration::ZERO, |&(_, at)| at);
                let until = talker
                    .killed_at
                    .map_or_else(|| String::from("the end"), seconds);
                format!("{} {} to {until}", talker.nick, seconds(from))
            })
            .collect();
        let _ = writeln!(out, "  n{} talkers: {}", node + 1, talkers.join(", "));
    }
    for listener in &record.listeners {
        let marked = listener.received.iter().filter(|r| r.marked).count();
        let linked = listener
            .linked_at
            .map_or_else(|| String::from("never"), seconds);
        let until = listener
            .killed_at
            .map_or_else(|| String::from("the end"), seconds);
        let _ = writeln!(
            out,
            "  {:<11} n{}  linked {linked:>7} until {until:>7}: {:>6} lines received ({marked} marked)",
            listener.nick,
            listener.node + 1,
            listener.received.len()
        );
    }
    for note in &record.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let counts: Vec<String> = violations
        .kinds()
        .iter()
        .map(|(name, kind)| format!("{name} {}", kind.count))
        .collect();
    let _ = writeln!(out, "violations: {}", counts.join(", "));
    for (name, kind) in violations.kinds() {
        for example in &kind.examples {
            let _ = writeln!(out, "  {name}: {example}");
        }
    }
    out
}

/// A seeded generator (splitmix64): the same seed gives the same faults.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % bound as u64).expect("below a usize")
    }

    /// A duration in `low..=high`, to the millisecond.
    fn between(&mut self, (low, high): (Duration, Duration)) -> Duration {
        let spread = u64::try_from((high - low).as_millis()).expect("a short spread");
        low + Duration::from_millis(self.next() % (spread + 1))
    }
}

/// A run: the processes (killed when dropped, nodes first), the shared state, the faults'
/// generator.
struct Run {
    nodes: Vec<Node>,
    proxy: Proxy,
    redis: RedisServer,
    shared: Arc<Shared>,
    random: SplitMix64,
    seed: u64,
}

impl Run {
    /// Starts the nodes and joins and links every node's clients.
    fn start(redis: RedisServer, seed: u64) -> Run {
        let clock = Clock::start();
        let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], redis.port())));
        let nodes: Vec<Node> = (0..NODES)
            .map(|index| {
                let url = if index == CUT_NODE {
                    format!("redis://{}", proxy.address())
                } else {
                    redis.url()
                };
                Node::start(index, url, clock)
            })
            .collect();
        let addresses = std::array::from_fn(|index| nodes[index].address());
        let shared = Arc::new(Shared::new(clock, addresses));
        let run = Run {
            nodes,
            proxy,
            redis,
            shared,
            random: SplitMix64(seed),
            seed,
        };
        // n1's first listener has no witness yet: it becomes one unlinked, and is proven
        // linked with n2's listener.
        let first = run
            .shared
            .join_member(Role::Listener, 0, 0)
            .expect("a listener joins n1");
        run.shared.add(first);
        use Role::{Listener, Talker};
        for node in 1..NODES {
            run.shared.populate(node, 0, &[Listener, Talker, Talker]);
        }
        run.shared.populate(0, 0, &[Talker, Talker]);
        let linked = run.shared.members.lock().all.len();
        assert_eq!(
            linked,
            3 * NODES,
            "the nodes did not link at start: {:?}",
            run.shared.notes.lock()
        );
        run
    }

    /// Faults for `fault_time`, then the end: everything healed, `c done`, the record.
    fn faults_then_end(mut self, fault_time: Duration) -> ChaosRecord {
        let faults_start = self.shared.clock.now();
        let faults_end = Instant::now() + fault_time;
        let mut next_fault = Instant::now() + self.random.between(FAULT_GAP);
        // Faults that end later: (when, index in the record).
        let mut heals: Vec<(Instant, usize)> = Vec::new();
        loop {
            let next_heal = heals.iter().map(|&(at, _)| at).min();
            let next_event = next_heal
                .map_or(next_fault, |heal| heal.min(next_fault))
                .min(faults_end);
            thread::sleep(next_event.saturating_duration_since(Instant::now()));
            if Instant::now() >= faults_end {
                for (_, index) in std::mem::take(&mut heals) {
                    self.heal(index);
                }
                break;
            }
            if next_heal == Some(next_event) {
                let place = heals.iter().position(|&(at, _)| at == next_event);
                let (_, index) = heals.swap_remove(place.expect("the heal due"));
                self.heal(index);
            } else {
                next_fault = Instant::now() + self.random.between(FAULT_GAP);
                if let Some(heal) = self.start_fault(&heals) {
                    heals.push(heal);
                }
            }
        }
        let fault_time = self.shared.clock.now() - faults_start;
        self.end(fault_time)
    }

    /// Starts a fault the generator picks among those possible now; returns when a
    /// lasting one is to be healed.
    fn start_fault(&mut self, lasting: &[(Instant, usize)]) -> Option<(Instant, usize)> {
        let going_on: Vec<FaultKind> = {
            let faults = self.shared.faults.lock();
            lasting
                .iter()
                .map(|&(_, index)| faults[index].kind)
                .collect()
        };
        let redis_busy = going_on.contains(&FaultKind::RedisPaused);
        let cut_busy = going_on.contains(&FaultKind::ProxyBlackholed(CUT_NODE));
        let mut kinds = vec![FaultKind::NodeKilled(0)];
        if !redis_busy {
            kinds.extend([FaultKind::RedisPaused, FaultKind::RedisRestarted]);
        }
        if !cut_busy {
            kinds.push(FaultKind::ProxyBlackholed(CUT_NODE));
        }
        let mut kind = kinds[self.random.below(kinds.len())];
        if kind == FaultKind::NodeKilled(0) {
            kind = FaultKind::NodeKilled(self.random.below(NODES));
        }
        let clock = self.shared.clock;
        let started = clock.now();
        let mut lasts = None;
        match kind {
            FaultKind::NodeKilled(node) => self.kill_and_restart(node),
            FaultKind::RedisPaused => {
                self.redis.signal("STOP");
                lasts = Some(self.random.between(PAUSE));
            }
            FaultKind::RedisRestarted => self.redis.restart(),
            FaultKind::ProxyBlackholed(_) => {
                self.proxy.blackhole();
                lasts = Some(self.random.between(BLACKHOLE));
            }
        }
        let index = {
            let mut faults = self.shared.faults.lock();
            faults.push(FaultWindow {
                kind,
                started,
                healed: if lasts.is_some() {
                    Duration::MAX
                } else {
                    clock.now()
                },
                linked_again: None,
            });
            faults.len() - 1
        };
        match lasts {
            Some(lasts) => Some((Instant::now() + lasts, index)),
            None => {
                self.shared.watch_relink(index);
                None
            }
        }
    }

    /// Kills a node (its clients with it) and restarts it; new clients join it.
    fn kill_and_restart(&mut self, node: usize) {
        let killed_at = self.shared.clock.now();
        let incarnation = {
            let mut members = self.shared.members.lock();
            let incarnation = members.incarnation[node];
            members.kills.insert((node, incarnation), killed_at);
            for member in &members.all {
                if (member.node, member.incarnation) == (node, incarnation) {
                    member.killed_at.lock().get_or_insert(killed_at);
                }
            }
            members.listener[node] = None;
            members.incarnation[node] += 1;
            members.incarnation[node]
        };
        self.shared.members_changed.notify_all();
        if let Some(exit) = self.nodes[node].exited() {
            self.shared.note(format!("dead node: {exit}"));
        }
        self.nodes[node].kill_and_restart(self.shared.clock);
        use Role::{Listener, Talker};
        self.shared.spawn_helper(move |shared| {
            shared.populate(node, incarnation, &[Listener, Talker, Talker]);
        });
    }

    fn heal(&mut self, index: usize) {
        let kind = self.shared.faults.lock()[index].kind;
        match kind {
            FaultKind::RedisPaused => self.redis.signal("CONT"),
            FaultKind::ProxyBlackholed(_) => self.proxy.heal(),
            FaultKind::NodeKilled(_) | FaultKind::RedisRestarted => {}
        }
        self.shared.faults.lock()[index].healed = self.shared.clock.now();
        self.shared.watch_relink(index);
    }

    /// Everything healed and linked, `c done` from every living talker, every living
    /// listener given time to get them all; then the record.
    fn end(mut self, fault_time: Duration) -> ChaosRecord {
        let shared = Arc::clone(&self.shared);
        let helpers = std::mem::take(&mut *shared.helpers.lock());
        for helper in helpers {
            let _ = helper.join();
        }
        if shared.linked_again(RELINK_PATIENCE).is_none() {
            shared.note(format!(
                "the nodes were not linked at the end within {RELINK_PATIENCE:?}"
            ));
        }
        shared.talking.store(false, Ordering::SeqCst);
        let talkers = std::mem::take(&mut *shared.talkers.lock());
        for talker in talkers {
            let _ = talker.join();
        }
        let members = shared.members.lock().all.clone();
        let done_by: Vec<String> = members
            .iter()
            .filter(|member| member.said.lock().last().is_some_and(|&(n, _)| n == DONE))
            .map(|talker| format!("[{}] c done", talker.nick))
            .collect();
        let deadline = Instant::now() + DONE_PATIENCE;
        for listener in members
            .iter()
            .filter(|member| member.role == Role::Listener && member.killed_at.lock().is_none())
        {
            for done in &done_by {
                // Its absence is a lost line, which the check reports.
                let _ = listener
                    .client
                    .transcript
                    .wait_for(0, deadline, |line| line.ends_with(done.as_str()));
            }
        }
        let run_time = shared.clock.now();
        let mut dead_nodes = Vec::new();
        for node in &mut self.nodes {
            if let Some(exit) = node.exited() {
                dead_nodes.push(exit);
            } else if let Some(client) = ChatClient::join(node.address(), shared.clock) {
                client.close();
            } else {
                dead_nodes.push(format!("{} does not answer at the end", node.name));
            }
        }
        for member in &members {
            member.client.close();
        }
        let mut notes = std::mem::take(&mut *shared.notes.lock());
        // Nodes that exited before the run killed them.
        dead_nodes.extend(
            notes
                .iter()
                .filter_map(|note| note.strip_prefix("dead node: "))
                .map(str::to_owned),
        );
        notes.retain(|note| !note.starts_with("dead node: "));
        notes.extend(node_warnings(&self.nodes));
        ChaosRecord {
            seed: self.seed,
            fault_time,
            run_time,
            faults: shared.faults.lock().clone(),
            talkers: members
                .iter()
                .filter(|member| member.role == Role::Talker)
                .map(|talker| TalkerRecord {
                    nick: talker.nick.clone(),
                    node: talker.node,
                    killed_at: *talker.killed_at.lock(),
                    said: talker.said.lock().clone(),
                })
                .collect(),
            listeners: members
                .iter()
                .filter(|member| member.role == Role::Listener)
                .map(|listener| ListenerRecord {
                    nick: listener.nick.clone(),
                    node: listener.node,
                    linked_at: *listener.linked_at.lock(),
                    killed_at: *listener.killed_at.lock(),
                    received: listener
                        .client
                        .transcript
                        .lines()
                        .iter()
                        .filter_map(|(at, line)| parse_receipt(line, *at))
                        .collect(),
                })
                .collect(),
            dead_nodes,
            notes,
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Talkers stop on their own once the nodes are gone; this stops them sooner.
        self.shared.talking.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_repeats_itself_for_a_seed() {
        let draws = |seed| {
            let mut random = SplitMix64(seed);
            (0..5)
                .map(|_| random.between(FAULT_GAP))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        assert!(
            draws(7)
                .iter()
                .all(|gap| (FAULT_GAP.0..=FAULT_GAP.1).contains(gap))
        );
    }
}
