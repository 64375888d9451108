//! tcpchat-bench: a load generator for any line-based TCP chat server.
//!
//! Every line it sends carries a marker `~B<sender>.<seq>.<nanos>~` (sender id, sequence
//! number, send time in monotonic nanoseconds since the run began). It recognises the
//! marker anywhere in a received line, so it works whatever the server prefixes (`[nick] `
//! for tcpchat, `<userN> ` for ncat, nothing for the chapter's Node server); other lines
//! (welcomes, notices) are ignored. Readers are multiplexed with mio on a few threads so
//! that 10,000 connections fit on 2 cores.
//!
//! Usage: `tcpchat-bench SCENARIO --addr HOST:PORT --pid PID [--quick]`, one JSON object
//! on stdout. Scenarios: fanout, fanout-large, latency, capacity, churn, stall.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

/// Reader threads: one per core, the load generator must not be the bottleneck.
const READER_THREADS: usize = 2;
/// Sender id of the lines that check every client is really in the room.
const SYNC_SENDER: u64 = 65_535;
/// How many of its lines a window-bound sender may have unacknowledged.
const WINDOW: u64 = 1000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = args.first().cloned() else {
        eprintln!("usage: tcpchat-bench SCENARIO --addr HOST:PORT --pid PID [--quick]");
        return ExitCode::from(2);
    };
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(addr), Some(pid)) = (value_of("--addr"), value_of("--pid")) else {
        eprintln!("--addr and --pid are required");
        return ExitCode::from(2);
    };
    let (Ok(addr), Ok(pid)) = (addr.parse::<SocketAddr>(), pid.parse::<u32>()) else {
        eprintln!("bad --addr or --pid");
        return ExitCode::from(2);
    };
    let quick = args.iter().any(|a| a == "--quick");
    let target = Target { addr, pid };
    let before_self = self_cpu_seconds();
    let result = match scenario.as_str() {
        "fanout" => fanout(&target, if quick { 1.0 } else { 3.0 }),
        "fanout-large" => fanout_large(&target, if quick { (100, 1.0) } else { (500, 3.0) }),
        "latency" => latency(&target, if quick { 1.0 } else { 3.0 }),
        "capacity" => capacity(&target, if quick { 200 } else { 10_000 }),
        "churn" => churn(&target, if quick { 1.0 } else { 10.0 }),
        "stall" => stall(&target, if quick { (1.0, 2.0) } else { (5.0, 10.0) }),
        other => {
            eprintln!("unknown scenario {other}");
            return ExitCode::from(2);
        }
    };
    let mut json = match result {
        Ok(json) => json,
        Err(error) => Json::new().text("error", &error.to_string()),
    };
    json = json.num("bench_cpu_s", self_cpu_seconds() - before_self);
    println!("{}", json.finish());
    ExitCode::SUCCESS
}

struct Target {
    addr: SocketAddr,
    pid: u32,
}

// ---------------------------------------------------------------- scenarios

fn fanout(target: &Target, seconds: f64) -> io::Result<Json> {
    let run = WindowedRun::new(target, 50, 5, seconds)?;
    let (sent, stats, cpu, elapsed) = run.measure(None)?;
    let expected = sent * 49;
    let deliveries = stats.total();
    Ok(Json::new()
        .num("deliveries_per_s", deliveries as f64 / elapsed)
        .num("delivery_ratio", ratio(deliveries, expected))
        .num("min_client_received", stats.min_received() as f64)
        .num("server_cpu_s", cpu)
        .num(
            "server_ns_per_delivery",
            cpu * 1e9 / deliveries.max(1) as f64,
        ))
}

fn fanout_large(target: &Target, (clients, seconds): (usize, f64)) -> io::Result<Json> {
    rate_run(target, clients, 2, 20.0, seconds).map(|(json, _)| json)
}

fn latency(target: &Target, seconds: f64) -> io::Result<Json> {
    let (json, histogram) = rate_run(target, 100, 1, 100.0, seconds)?;
    Ok(json
        .num("p50_ms", histogram.quantile(0.50))
        .num("p99_ms", histogram.quantile(0.99))
        .num("max_ms", histogram.max()))
}

/// `clients` connected, `senders` of them sending `per_second` lines each for `seconds`.
fn rate_run(
    target: &Target,
    clients: usize,
    senders: usize,
    per_second: f64,
    seconds: f64,
) -> io::Result<(Json, Histogram)> {
    let fleet = Fleet::connect(target, clients, 2000.0)?;
    fleet.sync(patience(clients))?;
    let cpu_before = proc_sample(target.pid).cpu_s;
    let start = Instant::now();
    let threads: Vec<_> = (0..senders)
        .map(|sender| {
            let writer = fleet.writer(sender)?;
            let shared = Arc::clone(&fleet.shared);
            Ok(thread::spawn(move || {
                let mut sent = 0u64;
                let interval = Duration::from_secs_f64(1.0 / per_second);
                let deadline = start + Duration::from_secs_f64(seconds);
                let mut next = start;
                while next < deadline {
                    sleep_until(next);
                    if send_marker(&writer, &shared, sender as u64, sent).is_err() {
                        break;
                    }
                    sent += 1;
                    next += interval;
                }
                sent
            }))
        })
        .collect::<io::Result<_>>()?;
    let sent: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    fleet.settle(Duration::from_secs(2));
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = proc_sample(target.pid).cpu_s - cpu_before;
    let stats = fleet.finish();
    let deliveries = stats.total();
    let expected = sent * (clients as u64 - 1);
    let json = Json::new()
        .num("deliveries_per_s", deliveries as f64 / elapsed)
        .num("delivery_ratio", ratio(deliveries, expected))
        .num("server_cpu_s", cpu);
    Ok((json, stats.histogram))
}

fn capacity(target: &Target, clients: usize) -> io::Result<Json> {
    let connect_started = Instant::now();
    let fleet = Fleet::connect(target, clients, 4000.0)?;
    let connect_s = connect_started.elapsed().as_secs_f64();
    // Every server holds one descriptor per client: wait until it has them all.
    let deadline = Instant::now() + patience(clients);
    while count_fds(target.pid) < fleet.connected && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(500));
    let idle = proc_sample(target.pid);
    fleet.shared.counting.store(true, Ordering::SeqCst);
    let writer = fleet.writer(0)?;
    let sent_at = Instant::now();
    send_marker(&writer, &fleet.shared, 0, 0)?;
    let expected = fleet.connected as u64 - 1;
    let deadline = sent_at + patience(clients);
    while fleet.shared.deliveries.load(Ordering::SeqCst) < expected && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let stats = fleet.finish();
    let received = stats.total();
    let last_ms = stats
        .last_receipt_ns
        .saturating_sub(nanos_between(&sent_at, &stats.epoch)) as f64
        / 1e6;
    Ok(Json::new()
        .num("clients", clients as f64)
        .num("connected", stats.connected as f64)
        .num("connect_failures", stats.connect_failures as f64)
        .num("connect_s", connect_s)
        .num("received", received as f64)
        .num("all_received", if received >= expected { 1.0 } else { 0.0 })
        .num(
            "last_receipt_ms",
            if received > 0 { last_ms } else { f64::NAN },
        )
        .num("server_rss_kib", idle.rss_kib as f64)
        .num(
            "server_kib_per_client",
            idle.rss_kib as f64 / clients as f64,
        )
        .num("server_threads", idle.threads as f64))
}

fn churn(target: &Target, seconds: f64) -> io::Result<Json> {
    let before = proc_sample(target.pid);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let addr = target.addr;
    let loops: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let (mut done, mut errors) = (0u64, 0u64);
                while Instant::now() < deadline {
                    match churn_once(addr) {
                        Ok(()) => done += 1,
                        Err(_) => errors += 1,
                    }
                }
                (done, errors)
            })
        })
        .collect();
    let started = Instant::now();
    let (mut done, mut errors) = (0, 0);
    for handle in loops {
        let (d, e) = handle.join().unwrap_or((0, 1));
        done += d;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Give the server a moment to close and join what it still holds.
    let settle = Instant::now() + Duration::from_secs(3);
    let mut after = proc_sample(target.pid);
    while (after.fds != before.fds || after.threads != before.threads) && Instant::now() < settle {
        thread::sleep(Duration::from_millis(20));
        after = proc_sample(target.pid);
    }
    Ok(Json::new()
        .num("connections_per_s", done as f64 / elapsed)
        .num("errors", errors as f64)
        .num("fds_before", before.fds as f64)
        .num("fds_after", after.fds as f64)
        .num("threads_before", before.threads as f64)
        .num("threads_after", after.threads as f64)
        .num("rss_before_kib", before.rss_kib as f64)
        .num("rss_after_kib", after.rss_kib as f64))
}

/// Connect, send a line, close our side, read until the server closes, close.
fn churn_once(addr: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"churn\n")?;
    stream.shutdown(Shutdown::Write)?;
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink)? > 0 {}
    Ok(())
}

fn stall(target: &Target, (before_s, during_s): (f64, f64)) -> io::Result<Json> {
    let run = WindowedRun::new(target, 20, 2, before_s + during_s)?;
    let stall_at = Duration::from_secs_f64(before_s);
    let (_sent, stats, _cpu, _elapsed) = run.measure(Some(stall_at))?;
    let series = stats.per_second.clone();
    let frozen = series.iter().filter(|&&n| n == 0).count();
    let rss = &stats.rss_series;
    Ok(Json::new()
        .num("p99_before_ms", stats.histogram_before.quantile(0.99))
        .num("p99_during_ms", stats.histogram.quantile(0.99))
        .num("frozen_seconds", frozen as f64)
        .num(
            "stalled_disconnected_after_s",
            stats.stalled_closed_after_s.unwrap_or(f64::NAN),
        )
        .num("rss_start_kib", rss.first().copied().unwrap_or(0) as f64)
        .num("rss_max_kib", rss.iter().copied().max().unwrap_or(0) as f64)
        .list("deliveries_per_second", &series))
}

/// Clients of which some send as fast as a window of unacknowledged lines allows.
struct WindowedRun {
    fleet: Fleet,
    pid: u32,
    addr: SocketAddr,
    senders: usize,
    seconds: f64,
}

impl WindowedRun {
    fn new(target: &Target, clients: usize, senders: usize, seconds: f64) -> io::Result<Self> {
        let fleet = Fleet::connect(target, clients, 2000.0)?;
        fleet.sync(patience(clients))?;
        Ok(WindowedRun {
            fleet,
            pid: target.pid,
            addr: target.addr,
            senders,
            seconds,
        })
    }

    /// Runs the senders; with `stall_at`, a client that never reads joins at that moment.
    fn measure(self, stall_at: Option<Duration>) -> io::Result<(u64, Stats, f64, f64)> {
        let cpu_before = proc_sample(self.pid).cpu_s;
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(self.seconds);
        let threads: Vec<_> = (0..self.senders)
            .map(|sender| {
                let writer = self.fleet.writer(sender)?;
                let shared = Arc::clone(&self.fleet.shared);
                Ok(thread::spawn(move || {
                    let mut sent = 0u64;
                    while Instant::now() < deadline {
                        let acked = shared.acked[sender].load(Ordering::Acquire);
                        if sent >= acked + WINDOW {
                            thread::sleep(Duration::from_micros(50));
                            continue;
                        }
                        if send_marker(&writer, &shared, sender as u64, sent).is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    sent
                }))
            })
            .collect::<io::Result<_>>()?;
        // Sample deliveries and server memory once a second; join the stalled client.
        let mut per_second = Vec::new();
        let mut rss_series = vec![proc_sample(self.pid).rss_kib];
        let mut stalled: Option<TcpStream> = None;
        // The server's descriptor count with the stalled client in: when it drops, the
        // server has let go of it (the client itself may never see a FIN, queued as it is
        // behind the data the client does not read).
        let mut fds_with_stalled = None;
        let mut stalled_closed_after_s = None;
        let mut last = 0;
        let mut tick = start;
        while tick < deadline {
            tick += Duration::from_secs(1);
            if let Some(at) = stall_at {
                let stall_time = start + at;
                if stalled.is_none() && Instant::now() < stall_time {
                    sleep_until(stall_time.min(tick));
                }
                if stalled.is_none() && Instant::now() >= stall_time {
                    self.fleet.shared.stalling.store(true, Ordering::SeqCst);
                    let before = count_fds(self.pid);
                    // Connects like any other client, and never reads a byte.
                    stalled = Some(TcpStream::connect(self.addr)?);
                    let accepted = Instant::now() + Duration::from_secs(1);
                    while count_fds(self.pid) <= before && Instant::now() < accepted {
                        thread::sleep(Duration::from_millis(1));
                    }
                    fds_with_stalled = Some(count_fds(self.pid));
                }
            }
            while Instant::now() < tick {
                thread::sleep(Duration::from_millis(20));
                if let (Some(fds), None, Some(at)) =
                    (fds_with_stalled, stalled_closed_after_s, stall_at)
                    && count_fds(self.pid) < fds
                {
                    stalled_closed_after_s = Some((start.elapsed() - at).as_secs_f64());
                }
            }
            let now = self.fleet.shared.deliveries.load(Ordering::SeqCst);
            per_second.push(now - last);
            last = now;
            rss_series.push(proc_sample(self.pid).rss_kib);
        }
        let sent: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        self.fleet.settle(Duration::from_secs(2));
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = proc_sample(self.pid).cpu_s - cpu_before;
        let mut stats = self.fleet.finish();
        stats.per_second = per_second;
        stats.rss_series = rss_series;
        stats.stalled_closed_after_s = stalled_closed_after_s;
        drop(stalled);
        Ok((sent, stats, cpu, elapsed))
    }
}

// ---------------------------------------------------------------- the fleet of clients

struct Shared {
    epoch: Instant,
    stop: AtomicBool,
    /// Receipts are counted only from the measurement's start.
    counting: AtomicBool,
    /// From the moment the stalled client joins, latencies go to the "during" histogram.
    stalling: AtomicBool,
    deliveries: AtomicU64,
    /// Highest sequence number of each sender seen by the acknowledging client.
    acked: Vec<AtomicU64>,
    synced: AtomicUsize,
    last_receipt_ns: AtomicU64,
}

struct Fleet {
    shared: Arc<Shared>,
    writers: Vec<TcpStream>,
    readers: Vec<thread::JoinHandle<ReaderStats>>,
    connected: usize,
    connect_failures: usize,
}

#[derive(Default)]
struct ReaderStats {
    received: Vec<u64>,
    histogram: Histogram,
    histogram_before: Histogram,
}

struct Stats {
    received: Vec<u64>,
    histogram: Histogram,
    histogram_before: Histogram,
    epoch: Instant,
    last_receipt_ns: u64,
    connected: usize,
    connect_failures: usize,
    per_second: Vec<u64>,
    rss_series: Vec<u64>,
    stalled_closed_after_s: Option<f64>,
}

impl Stats {
    fn total(&self) -> u64 {
        self.received.iter().sum()
    }

    fn min_received(&self) -> u64 {
        self.received.iter().copied().min().unwrap_or(0)
    }
}

impl Fleet {
    /// Opens `clients` connections at a steady `per_second` (so no accept queue
    /// overflows) and spreads them over the reader threads. The last client acknowledges.
    fn connect(target: &Target, clients: usize, per_second: f64) -> io::Result<Fleet> {
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            stop: AtomicBool::new(false),
            counting: AtomicBool::new(false),
            stalling: AtomicBool::new(false),
            deliveries: AtomicU64::new(0),
            acked: (0..16).map(|_| AtomicU64::new(0)).collect(),
            synced: AtomicUsize::new(0),
            last_receipt_ns: AtomicU64::new(0),
        });
        let mut per_reader: Vec<Vec<(usize, MioStream)>> =
            (0..READER_THREADS).map(|_| Vec::new()).collect();
        let mut writers = Vec::new();
        let mut connect_failures = 0;
        let start = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / per_second);
        let mut failures_in_a_row = 0;
        for index in 0..clients {
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
            if index < 16 {
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

    fn writer(&self, index: usize) -> io::Result<TcpStream> {
        self.writers
            .get(index)
            .ok_or_else(|| io::Error::other("sender did not connect"))?
            .try_clone()
    }

    /// Sends sync lines until every client has received one: everyone is in the room.
    fn sync(&self, timeout: Duration) -> io::Result<()> {
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
            send_marker(&writer, &self.shared, SYNC_SENDER, seq)?;
            seq += 1;
            thread::sleep(Duration::from_millis(100));
        }
        // Sync lines still on their way must not count.
        thread::sleep(Duration::from_millis(200));
        self.shared.counting.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Waits until deliveries stop arriving (lines in flight), at most `limit`.
    fn settle(&self, limit: Duration) {
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

    fn finish(self) -> Stats {
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
            per_second: Vec::new(),
            rss_series: Vec::new(),
            stalled_closed_after_s: None,
        }
    }
}

struct ClientState {
    index: usize,
    stream: MioStream,
    pending: Vec<u8>,
    received: u64,
    synced: bool,
}

fn read_loop(
    streams: Vec<(usize, MioStream)>,
    shared: &Shared,
    acknowledger: usize,
) -> ReaderStats {
    let mut stats = ReaderStats::default();
    let Ok(mut poll) = Poll::new() else {
        return stats;
    };
    let mut clients: HashMap<Token, ClientState> = HashMap::new();
    for (index, mut stream) in streams {
        let token = Token(index);
        if poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
            .is_ok()
        {
            clients.insert(
                token,
                ClientState {
                    index,
                    stream,
                    pending: Vec::new(),
                    received: 0,
                    synced: false,
                },
            );
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut buffer = vec![0u8; 64 * 1024];
    while !shared.stop.load(Ordering::Relaxed) {
        if poll
            .poll(&mut events, Some(Duration::from_millis(10)))
            .is_err()
        {
            continue;
        }
        for event in &events {
            let Some(client) = clients.get_mut(&event.token()) else {
                continue;
            };
            loop {
                match client.stream.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(count) => {
                        let now_ns = nanos_since(&shared.epoch);
                        client.pending.extend_from_slice(&buffer[..count]);
                        take_lines(client, shared, &mut stats, now_ns, acknowledger);
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
    }
    let mut ordered: Vec<&ClientState> = clients.values().collect();
    ordered.sort_by_key(|c| c.index);
    stats.received = ordered.iter().map(|c| c.received).collect();
    stats
}

fn take_lines(
    client: &mut ClientState,
    shared: &Shared,
    stats: &mut ReaderStats,
    now_ns: u64,
    acknowledger: usize,
) {
    let counting = shared.counting.load(Ordering::Relaxed);
    let stalling = shared.stalling.load(Ordering::Relaxed);
    let mut consumed = 0;
    while let Some(end) = client.pending[consumed..].iter().position(|&b| b == b'\n') {
        let line = &client.pending[consumed..consumed + end];
        consumed += end + 1;
        let mut rest = line;
        while let Some(marker) = parse_marker(rest) {
            rest = marker.rest;
            if !client.synced {
                client.synced = true;
                shared.synced.fetch_add(1, Ordering::SeqCst);
            }
            if marker.sender == SYNC_SENDER || !counting {
                continue;
            }
            client.received += 1;
            shared.deliveries.fetch_add(1, Ordering::Relaxed);
            shared.last_receipt_ns.fetch_max(now_ns, Ordering::Relaxed);
            let latency_ns = now_ns.saturating_sub(marker.sent_ns);
            if stalling {
                stats.histogram.record(latency_ns);
            } else {
                stats.histogram_before.record(latency_ns);
                stats.histogram.record(latency_ns);
            }
            if client.index == acknowledger
                && let Some(acked) = shared.acked.get(marker.sender as usize)
            {
                acked.fetch_max(marker.seq, Ordering::Release);
            }
        }
    }
    client.pending.drain(..consumed);
}

struct Marker<'a> {
    sender: u64,
    seq: u64,
    sent_ns: u64,
    rest: &'a [u8],
}

/// Finds `~B<sender>.<seq>.<nanos>~` anywhere in `line`.
fn parse_marker(line: &[u8]) -> Option<Marker<'_>> {
    let start = line.windows(2).position(|w| w == b"~B")? + 2;
    let body = &line[start..];
    let end = body.iter().position(|&b| b == b'~')?;
    let text = std::str::from_utf8(&body[..end]).ok()?;
    let mut fields = text.split('.').map(|f| f.parse::<u64>().ok());
    Some(Marker {
        sender: fields.next()??,
        seq: fields.next()??,
        sent_ns: fields.next()??,
        rest: &body[end + 1..],
    })
}

fn send_marker(writer: &TcpStream, shared: &Shared, sender: u64, seq: u64) -> io::Result<()> {
    let line = format!("~B{sender}.{seq}.{}~ bench\n", nanos_since(&shared.epoch));
    write_all_waiting(writer, line.as_bytes())
}

/// write_all on a non-blocking socket: waits in poll when the kernel buffer is full.
fn write_all_waiting(mut writer: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match writer.write(bytes) {
            Ok(0) => return Err(io::Error::from(ErrorKind::WriteZero)),
            Ok(count) => bytes = &bytes[count..],
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                let mut fd = libc::pollfd {
                    fd: writer.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                unsafe { libc::poll(&mut fd, 1, 100) };
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- measurement helpers

/// Latencies in microsecond buckets below 1 ms, then 64 buckets per power of two.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; 1024 + 54 * 64],
            total: 0,
            max_ns: 0,
        }
    }
}

impl Histogram {
    fn bucket(micros: u64) -> usize {
        if micros < 1024 {
            return micros as usize;
        }
        let log = 63 - micros.leading_zeros() as usize;
        1024 + (log - 10) * 64 + ((micros >> (log - 6)) as usize & 63)
    }

    fn bucket_value_ms(bucket: usize) -> f64 {
        if bucket < 1024 {
            return bucket as f64 / 1000.0;
        }
        let log = (bucket - 1024) / 64 + 10;
        let mantissa = ((bucket - 1024) % 64) as u64 | 64;
        (mantissa << (log - 6)) as f64 / 1000.0
    }

    fn record(&mut self, latency_ns: u64) {
        self.counts[Self::bucket(latency_ns / 1000)] += 1;
        self.total += 1;
        self.max_ns = self.max_ns.max(latency_ns);
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return f64::NAN;
        }
        let rank = (q * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::bucket_value_ms(bucket);
            }
        }
        self.max()
    }

    fn max(&self) -> f64 {
        self.max_ns as f64 / 1e6
    }
}

struct ProcSample {
    cpu_s: f64,
    rss_kib: u64,
    threads: u64,
    fds: usize,
}

fn proc_sample(pid: u32) -> ProcSample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    ProcSample {
        cpu_s: cpu_seconds(&format!("/proc/{pid}/stat")),
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        fds: count_fds(pid),
    }
}

fn count_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// utime + stime of a process, from /proc/.../stat.
fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / per_second
}

fn self_cpu_seconds() -> f64 {
    cpu_seconds("/proc/self/stat")
}

fn nanos_since(epoch: &Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

fn nanos_between(later: &Instant, epoch: &Instant) -> u64 {
    later.saturating_duration_since(*epoch).as_nanos() as u64
}

fn sleep_until(moment: Instant) {
    let now = Instant::now();
    if moment > now {
        thread::sleep(moment - now);
    }
}

/// How long to wait for a server to take in or answer `clients` before calling it frozen:
/// 3 s, plus a second per thousand clients.
fn patience(clients: usize) -> Duration {
    Duration::from_secs(3) + Duration::from_millis(clients as u64)
}

fn ratio(got: u64, expected: u64) -> f64 {
    if expected == 0 {
        f64::NAN
    } else {
        got as f64 / expected as f64
    }
}

/// A flat JSON object, written by hand to keep the bench free of dependencies.
struct Json {
    fields: Vec<String>,
}

impl Json {
    fn new() -> Json {
        Json { fields: Vec::new() }
    }

    fn num(mut self, key: &str, value: f64) -> Json {
        let value = if value.is_finite() {
            format!("{value:.6}")
        } else {
            String::from("null")
        };
        self.fields.push(format!("\"{key}\": {value}"));
        self
    }

    fn text(mut self, key: &str, value: &str) -> Json {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        self.fields.push(format!("\"{key}\": \"{escaped}\""));
        self
    }

    fn list(mut self, key: &str, values: &[u64]) -> Json {
        let items: Vec<String> = values.iter().map(u64::to_string).collect();
        self.fields
            .push(format!("\"{key}\": [{}]", items.join(", ")));
        self
    }

    fn finish(self) -> String {
        format!("{{{}}}", self.fields.join(", "))
    }
}
