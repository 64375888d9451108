//! What the driver counts while it runs (sessions, lines, deliveries, connections per
//! node) and every failure it sees, by kind, with the first few examples of each; and the
//! small random number generator the sessions draw their timing from.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

/// Failures of one kind printed as they happen; the rest are only counted (an hour of a
/// broken node would otherwise bury the log).
const PRINTED_PER_KIND: u64 = 5;
/// Examples of each kind of failure kept for the summary.
const KEPT_PER_KIND: usize = 3;

/// Counters shared by every session. Relaxed atomics: they are tallies, not signals.
pub struct Stats {
    pub started: Instant,
    pub lines_said: AtomicU64,
    /// Chat lines with a marker received by any client (a line to 80 people is 80).
    pub deliveries: AtomicU64,
    /// Marked lines received as a room's history (`* history ...`) on entering it.
    pub history_lines: AtomicU64,
    /// Event lines for the web page (U+0001 and JSON) received by WebSocket clients.
    pub page_events: AtomicU64,
    /// Lines a telnet client in character mode typed whose echo came back as typed.
    pub echoes_checked: AtomicU64,
    /// TCP connections opened to the nodes: sessions, page loads, silent visitors.
    pub connections_opened: AtomicU64,
    /// Clients connected now and the most at once, per node.
    pub connected: Vec<AtomicI64>,
    pub peak_connected: AtomicI64,
    /// Sum of the connected samples and how many, for the mean (taken by the monitor).
    pub connected_samples: AtomicU64,
    pub connected_sum: AtomicU64,
    /// Per kind of session (see `Plan`): sessions started, lines said, failures.
    pub by_kind: Vec<KindStats>,
    failures: Mutex<BTreeMap<String, Failures>>,
}

#[derive(Default)]
pub struct KindStats {
    pub sessions: AtomicU64,
    pub lines_said: AtomicU64,
    pub failures: AtomicU64,
}

#[derive(Default)]
struct Failures {
    count: u64,
    examples: Vec<String>,
}

impl Stats {
    pub fn new(nodes: usize, kinds: usize) -> Stats {
        Stats {
            started: Instant::now(),
            lines_said: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            history_lines: AtomicU64::new(0),
            page_events: AtomicU64::new(0),
            echoes_checked: AtomicU64::new(0),
            connections_opened: AtomicU64::new(0),
            connected: (0..nodes).map(|_| AtomicI64::new(0)).collect(),
            peak_connected: AtomicI64::new(0),
            connected_samples: AtomicU64::new(0),
            connected_sum: AtomicU64::new(0),
            by_kind: (0..kinds).map(|_| KindStats::default()).collect(),
            failures: Mutex::new(BTreeMap::new()),
        }
    }

    /// Seconds since the driver started, for log lines.
    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Records a failure of kind `what`, attributed to session kind `kind` if known.
    pub fn fail(&self, kind: Option<usize>, what: &str, detail: impl Display) {
        if let Some(stats) = kind.and_then(|kind| self.by_kind.get(kind)) {
            stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        let detail = detail.to_string();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let entry = failures.entry(what.to_owned()).or_default();
        entry.count += 1;
        if entry.examples.len() < KEPT_PER_KIND {
            entry.examples.push(detail.clone());
        }
        if entry.count <= PRINTED_PER_KIND {
            eprintln!("[{:7.1} s] FAIL {what}: {detail}", self.elapsed_s());
        } else if entry.count == PRINTED_PER_KIND + 1 {
            eprintln!(
                "[{:7.1} s] FAIL {what}: more of these are only counted",
                self.elapsed_s()
            );
        }
    }

    pub fn failure_count(&self) -> u64 {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.values().map(|f| f.count).sum()
    }

    /// Each kind of failure with its count and examples, for the summary.
    pub fn failure_lines(&self) -> Vec<String> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines = Vec::new();
        for (what, failure) in failures.iter() {
            lines.push(format!("  {what}: {}", failure.count));
            for example in &failure.examples {
                lines.push(format!("      e.g. {example}"));
            }
        }
        lines
    }

    /// A client connected to node `node`; the guard counts it out when dropped.
    pub fn count_in(&self, node: usize) -> ConnectedGuard<'_> {
        self.connected[node].fetch_add(1, Ordering::Relaxed);
        let total = self.connected_now();
        self.peak_connected.fetch_max(total, Ordering::Relaxed);
        ConnectedGuard { stats: self, node }
    }

    pub fn connected_now(&self) -> i64 {
        self.connected
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One connected client, counted for as long as it lives.
pub struct ConnectedGuard<'a> {
    stats: &'a Stats,
    node: usize,
}

impl Drop for ConnectedGuard<'_> {
    fn drop(&mut self) {
        self.stats.connected[self.node].fetch_sub(1, Ordering::Relaxed);
    }
}

/// splitmix64: enough randomness for timings and choices, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A number in `low..high` (`low` when the range is empty).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.next_u64() % (high - low)
    }

    /// A fraction in `0.0..1.0`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Seconds, uniform in `low..high`.
    pub fn seconds(&mut self, low: f64, high: f64) -> std::time::Duration {
        std::time::Duration::from_secs_f64(low + (high - low) * self.unit())
    }
}

/// splitmix64's output function: a well-spread 64-bit hash of `value`.
pub fn mix(value: u64) -> u64 {
    let mut z = value;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
