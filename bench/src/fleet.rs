//! The fleet: many clients connected to the server under test, over the target's
//! transport (wire/), their sockets read by a few mio threads (reader.rs), a few of them
//! also kept as writers for the senders.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::clock::sleep_until;
use crate::histogram::Histogram;
use crate::marker::{SYNC_SENDER, send_marker};
use crate::procfs::{Scheduling, proc_sample, scheduling};
use crate::reader::{ReaderStats, read_loop};
use crate::wire::{Dialer, Handshakes, Incoming, Transport, Writer};

/// Reader threads: one per core, the load generator must not be the bottleneck.
const READER_THREADS: usize = 2;
/// Clients that keep a writer: the most senders a scenario may have.
pub const MAX_SENDERS: usize = 16;

/// The server under test: where it listens, over what, and which processes to sample. A
/// cluster is several addresses (its nodes) and several processes (its nodes and their
/// Redis).
#[derive(Clone)]
pub struct Target {
    /// Never empty; a fleet's clients go to these round-robin (client `i` to `i % len`).
    addrs: Vec<SocketAddr>,
    /// Never empty; CPU time is their sum, every other figure is the first one's.
    pids: Vec<u32>,
    transport: Transport,
}

impl Target {
    /// `None` unless there is at least one address and one process.
    pub fn new(addrs: Vec<SocketAddr>, pids: Vec<u32>, transport: Transport) -> Option<Target> {
        (!addrs.is_empty() && !pids.is_empty()).then_some(Target {
            addrs,
            pids,
            transport,
        })
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The first address: the one server of every scenario but fanout and latency.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The first process: the one whose memory, threads and descriptors are sampled.
    pub fn pid(&self) -> u32 {
        self.pids[0]
    }

    /// How many addresses the clients are spread over.
    pub fn nodes(&self) -> usize {
        self.addrs.len()
    }

    /// CPU seconds so far of each process, in the order they were given.
    pub fn cpu_s_each(&self) -> Vec<f64> {
        self.pids
            .iter()
            .map(|&pid| proc_sample(pid).cpu_s)
            .collect()
    }

    /// How all the target's processes' threads have been scheduled so far.
    pub fn scheduling(&self) -> Scheduling {
        let each = self.pids.iter().map(|&pid| scheduling(pid));
        each.fold(Scheduling::default(), Scheduling::add)
    }

    /// CPU seconds each process used since `before`, an earlier [`Target::cpu_s_each`].
    pub fn cpu_s_since(&self, before: &[f64]) -> Vec<f64> {
        self.cpu_s_each()
            .iter()
            .zip(before)
            .map(|(now, then)| now - then)
            .collect()
    }
}

/// What the fleet's threads share: the run's clock, its switches and its counters.
pub struct Shared {
    pub epoch: Instant,
    pub stop: AtomicBool,
    /// Receipts are counted only from the measurement's start.
    pub counting: AtomicBool,
    /// From the moment the stalled client joins, latencies go to the "during" histogram.
    pub stalling: AtomicBool,
    pub deliveries: AtomicU64,
    /// Highest sequence number of each sender that each client has seen, at
    /// `client * MAX_SENDERS + sender`; `u64::MAX` for a client that is gone (or never
    /// connected), which holds no sender back.
    pub progress: Vec<AtomicU64>,
    pub synced: AtomicUsize,
    pub last_receipt_ns: AtomicU64,
    /// Clients whose connection the server closed or reset.
    pub closed: AtomicUsize,
    /// How many addresses the clients are spread over: client `i` is on node `i % nodes`.
    pub nodes: usize,
    /// The node of each sender (sender `s` writes with [`Fleet::writer`]`(s)`).
    pub sender_nodes: Vec<usize>,
}

impl Shared {
    /// The highest sequence number of `sender` that every client still connected has seen:
    /// a windowed sender runs at most a window ahead of the slowest reader, so no client's
    /// backlog (and latency) grows past the window whatever the load generator's own
    /// threads get of the CPU. Sender `s` writes as client `s` ([`Fleet::writer`]).
    pub fn acknowledged(&self, sender: usize) -> u64 {
        self.progress
            .iter()
            .skip(sender)
            .step_by(MAX_SENDERS)
            .enumerate()
            // A chat does not send a line back to whoever said it.
            .filter(|&(client, _)| client != sender)
            .map(|(_, seen)| seen.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// `client` has seen `sender`'s line `seq` (lines of one sender arrive in order); a
    /// sender beyond [`MAX_SENDERS`] holds nobody back and is not followed.
    pub fn note_seen(&self, client: usize, sender: u64, seq: u64) {
        let sender = sender as usize;
        if sender < MAX_SENDERS
            && let Some(seen) = self.progress.get(client * MAX_SENDERS + sender)
        {
            seen.store(seq, Ordering::Release);
        }
    }

    /// `client` is gone: it holds no sender back any more.
    pub fn forget(&self, client: usize) {
        for sender in 0..MAX_SENDERS {
            self.note_seen(client, sender as u64, u64::MAX);
        }
    }
}

pub struct Fleet {
    pub shared: Arc<Shared>,
    writers: Vec<Writer>,
    readers: Vec<thread::JoinHandle<ReaderStats>>,
    pub connected: usize,
    connect_failures: usize,
    /// The TLS handshakes of the fleet's connections (none over plain transports).
    pub handshakes: Handshakes,
}

/// What the fleet saw, once its readers have stopped.
pub struct Stats {
    /// Counted receipts per client, in connection order.
    pub received: Vec<u64>,
    pub histogram: Histogram,
    pub histogram_before: Histogram,
    /// Latencies of the deliveries from a sender on another node (empty on one node).
    pub histogram_cross_node: Histogram,
    pub epoch: Instant,
    pub last_receipt_ns: u64,
    pub connected: usize,
    pub connect_failures: usize,
    pub closed: usize,
    pub per_second: Vec<u64>,
    pub rss_series: Vec<u64>,
    /// Server CPU seconds of each process during the measurement; the figures' server
    /// CPU is their sum.
    pub server_cpu_s_by_process: Vec<f64>,
    pub stalled_closed_after_s: Option<f64>,
}

impl Stats {
    pub fn total(&self) -> u64 {
        self.received.iter().sum()
    }

    pub fn min_received(&self) -> u64 {
        self.received.iter().copied().min().unwrap_or(0)
    }
}

impl Fleet {
    /// Opens `clients` connections at a steady `per_second` (so no accept queue
    /// overflows), round-robin over the target's addresses, and spreads them over the
    /// reader threads. The last client acknowledges.
    pub fn connect(target: &Target, clients: usize, per_second: f64) -> io::Result<Fleet> {
        Self::connect_until(target, clients, per_second, None)
    }

    /// Like [`Fleet::connect`], but stops connecting at `give_up`: the clients not yet
    /// connected count as failures. ncat, which drops about one connection attempt in
    /// twelve however slowly they come, would otherwise take a minute for 3,000.
    pub fn connect_until(
        target: &Target,
        clients: usize,
        per_second: f64,
        give_up: Option<Instant>,
    ) -> io::Result<Fleet> {
        let epoch = Instant::now();
        let dialer = Dialer::new(target.transport)?;
        let mut per_reader: Vec<Vec<(usize, Incoming)>> =
            (0..READER_THREADS).map(|_| Vec::new()).collect();
        let mut writers = Vec::new();
        let mut sender_nodes = Vec::new();
        let nodes = target.addrs.len();
        let mut connect_failures = 0;
        let start = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / per_second);
        let mut failures_in_a_row = 0;
        // Nobody holds a sender back until connected.
        let mut progress: Vec<AtomicU64> = (0..clients * MAX_SENDERS)
            .map(|_| AtomicU64::new(u64::MAX))
            .collect();
        for index in 0..clients {
            if give_up.is_some_and(|moment| Instant::now() >= moment) {
                connect_failures += clients - index;
                break;
            }
            sleep_until(start + interval * index as u32);
            let addr = target.addrs[index % nodes];
            let connection = match dialer.connect(addr, Duration::from_secs(1)) {
                Ok(connection) => connection,
                Err(_) => {
                    connect_failures += 1;
                    failures_in_a_row += 1;
                    // A server that stopped accepting: count the rest as failed too.
                    if failures_in_a_row == 20 {
                        connect_failures += clients - index - 1;
                        break;
                    }
                    continue;
                }
            };
            failures_in_a_row = 0;
            if index < MAX_SENDERS {
                writers.push(connection.writer()?);
                sender_nodes.push(index % nodes);
            }
            for seen in &mut progress[index * MAX_SENDERS..(index + 1) * MAX_SENDERS] {
                *seen.get_mut() = 0;
            }
            per_reader[index % READER_THREADS].push((index, connection.into_incoming()?));
        }
        let shared = Arc::new(Shared {
            epoch,
            stop: AtomicBool::new(false),
            counting: AtomicBool::new(false),
            stalling: AtomicBool::new(false),
            deliveries: AtomicU64::new(0),
            progress,
            synced: AtomicUsize::new(0),
            last_receipt_ns: AtomicU64::new(0),
            closed: AtomicUsize::new(0),
            nodes,
            sender_nodes,
        });
        let connected = clients - connect_failures;
        let readers = per_reader
            .into_iter()
            .map(|streams| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || read_loop(streams, &shared))
            })
            .collect();
        Ok(Fleet {
            shared,
            writers,
            readers,
            connected,
            connect_failures,
            handshakes: dialer.handshakes(),
        })
    }

    /// The writing side of the `index`-th client that connected (sharing its socket,
    /// non-blocking like the reading side, and its TLS session).
    pub fn writer(&self, index: usize) -> io::Result<Writer> {
        self.writers
            .get(index)
            .ok_or_else(|| io::Error::other("sender did not connect"))?
            .try_clone()
    }

    /// Sends sync lines until every client has received one: everyone is in the room.
    pub fn sync(&self, timeout: Duration) -> io::Result<()> {
        let mut writer = self.writer(0)?;
        let deadline = Instant::now() + timeout;
        let mut seq = 0;
        // Client 0 sends, so it never receives: everyone else must.
        while self.shared.synced.load(Ordering::SeqCst) < self.connected - 1 {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "frozen: only {} of {} clients in the room after {timeout:?}",
                    self.shared.synced.load(Ordering::SeqCst),
                    self.connected - 1
                )));
            }
            send_marker(&mut writer, &self.shared.epoch, SYNC_SENDER, seq)?;
            seq += 1;
            thread::sleep(Duration::from_millis(100));
        }
        // Sync lines still on their way must not count.
        thread::sleep(Duration::from_millis(200));
        self.shared.counting.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Waits until deliveries stop arriving (lines in flight), at most `limit`.
    pub fn settle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = self.shared.deliveries.load(Ordering::SeqCst);
        while Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
            let now = self.shared.deliveries.load(Ordering::SeqCst);
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// Stops the readers and gathers what they counted.
    pub fn finish(self) -> Stats {
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut all = ReaderStats::default();
        for reader in self.readers {
            let stats = reader.join().unwrap_or_default();
            all.received.extend(stats.received);
            all.histogram.merge(&stats.histogram);
            all.histogram_before.merge(&stats.histogram_before);
            all.histogram_cross_node.merge(&stats.histogram_cross_node);
        }
        Stats {
            received: all.received,
            histogram: all.histogram,
            histogram_before: all.histogram_before,
            histogram_cross_node: all.histogram_cross_node,
            epoch: self.shared.epoch,
            last_receipt_ns: self.shared.last_receipt_ns.load(Ordering::SeqCst),
            connected: self.connected,
            connect_failures: self.connect_failures,
            closed: self.shared.closed.load(Ordering::SeqCst),
            per_second: Vec::new(),
            rss_series: Vec::new(),
            server_cpu_s_by_process: Vec::new(),
            stalled_closed_after_s: None,
        }
    }
}

/// How long to wait for a server to take in or answer `clients` before calling it frozen:
/// 3 s, plus a second per thousand clients.
pub fn patience(clients: usize) -> Duration {
    Duration::from_secs(3) + Duration::from_millis(clients as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shared state for `clients` clients, all connected.
    fn shared_for(clients: usize) -> Shared {
        Shared {
            epoch: Instant::now(),
            stop: AtomicBool::new(false),
            counting: AtomicBool::new(true),
            stalling: AtomicBool::new(false),
            deliveries: AtomicU64::new(0),
            progress: (0..clients * MAX_SENDERS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            synced: AtomicUsize::new(0),
            last_receipt_ns: AtomicU64::new(0),
            closed: AtomicUsize::new(0),
            nodes: 1,
            sender_nodes: vec![0],
        }
    }

    #[test]
    fn a_sender_is_held_back_by_the_slowest_client_but_not_by_itself_or_the_gone() {
        let shared = shared_for(3);
        // Sender 0 is client 0: it never sees its own lines.
        shared.note_seen(1, 0, 900);
        shared.note_seen(2, 0, 400);
        assert_eq!(shared.acknowledged(0), 400);
        shared.forget(2);
        assert_eq!(shared.acknowledged(0), 900);
        // Another sender's progress is its own.
        assert_eq!(shared.acknowledged(1), 0);
        // A sender beyond MAX_SENDERS is not followed (it would land on another client).
        shared.note_seen(0, MAX_SENDERS as u64, 7);
        assert_eq!(shared.acknowledged(0), 900);
    }
}
