//! The fleet: many clients connected to the server under test, their sockets read by a
//! few mio threads (reader.rs), a few of them also kept as writers for the senders.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;

use crate::clock::sleep_until;
use crate::histogram::Histogram;
use crate::marker::{SYNC_SENDER, send_marker};
use crate::reader::{ReaderStats, read_loop};

/// Reader threads: one per core, the load generator must not be the bottleneck.
const READER_THREADS: usize = 2;
/// Clients that keep a writer: the most senders a scenario may have.
pub const MAX_SENDERS: usize = 16;

/// The server under test: where it listens and which process to sample.
pub struct Target {
    pub addr: SocketAddr,
    pub pid: u32,
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
    /// Highest sequence number of each sender seen by the acknowledging client.
    pub acked: Vec<AtomicU64>,
    pub synced: AtomicUsize,
    pub last_receipt_ns: AtomicU64,
    /// Clients whose connection the server closed or reset.
    pub closed: AtomicUsize,
}

pub struct Fleet {
    pub shared: Arc<Shared>,
    writers: Vec<TcpStream>,
    readers: Vec<thread::JoinHandle<ReaderStats>>,
    pub connected: usize,
    connect_failures: usize,
}

/// What the fleet saw, once its readers have stopped.
pub struct Stats {
    /// Counted receipts per client, in connection order.
    pub received: Vec<u64>,
    pub histogram: Histogram,
    pub histogram_before: Histogram,
    pub epoch: Instant,
    pub last_receipt_ns: u64,
    pub connected: usize,
    pub connect_failures: usize,
    pub closed: usize,
    pub per_second: Vec<u64>,
    pub rss_series: Vec<u64>,
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
    /// overflows) and spreads them over the reader threads. The last client acknowledges.
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
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            stop: AtomicBool::new(false),
            counting: AtomicBool::new(false),
            stalling: AtomicBool::new(false),
            deliveries: AtomicU64::new(0),
            acked: (0..MAX_SENDERS).map(|_| AtomicU64::new(0)).collect(),
            synced: AtomicUsize::new(0),
            last_receipt_ns: AtomicU64::new(0),
            closed: AtomicUsize::new(0),
        });
        let mut per_reader: Vec<Vec<(usize, MioStream)>> =
            (0..READER_THREADS).map(|_| Vec::new()).collect();
        let mut writers = Vec::new();
        let mut connect_failures = 0;
        let start = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / per_second);
        let mut failures_in_a_row = 0;
        for index in 0..clients {
            if give_up.is_some_and(|moment| Instant::now() >= moment) {
                connect_failures += clients - index;
                break;
            }
            sleep_until(start + interval * index as u32);
            let stream = match TcpStream::connect_timeout(&target.addr, Duration::from_secs(1)) {
                Ok(stream) => stream,
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
            stream.set_nodelay(true)?;
            if index < MAX_SENDERS {
                writers.push(stream.try_clone()?);
            }
            stream.set_nonblocking(true)?;
            per_reader[index % READER_THREADS].push((index, MioStream::from_std(stream)));
        }
        let connected = clients - connect_failures;
        let acknowledger = clients - 1;
        let readers = per_reader
            .into_iter()
            .map(|streams| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || read_loop(streams, &shared, acknowledger))
            })
            .collect();
        Ok(Fleet {
            shared,
            writers,
            readers,
            connected,
            connect_failures,
        })
    }

    /// The writing side of the `index`-th client that connected (a clone of its socket,
    /// non-blocking like the reading side).
    pub fn writer(&self, index: usize) -> io::Result<TcpStream> {
        self.writers
            .get(index)
            .ok_or_else(|| io::Error::other("sender did not connect"))?
            .try_clone()
    }

    /// Sends sync lines until every client has received one: everyone is in the room.
    pub fn sync(&self, timeout: Duration) -> io::Result<()> {
        let writer = self.writer(0)?;
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
            send_marker(&writer, &self.shared.epoch, SYNC_SENDER, seq)?;
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
        }
        Stats {
            received: all.received,
            histogram: all.histogram,
            histogram_before: all.histogram_before,
            epoch: self.shared.epoch,
            last_receipt_ns: self.shared.last_receipt_ns.load(Ordering::SeqCst),
            connected: self.connected,
            connect_failures: self.connect_failures,
            closed: self.shared.closed.load(Ordering::SeqCst),
            per_second: Vec::new(),
            rss_series: Vec::new(),
            stalled_closed_after_s: None,
        }
    }
}

/// How long to wait for a server to take in or answer `clients` before calling it frozen:
/// 3 s, plus a second per thousand clients.
pub fn patience(clients: usize) -> Duration {
    Duration::from_secs(3) + Duration::from_millis(clients as u64)
}
