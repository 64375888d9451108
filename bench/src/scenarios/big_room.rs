//! big-room and big-room-churn: a room of thousands, 10 of them talking at a steady pace,
//! every line timestamped so each receiver measures its latency. In big-room-churn, 8
//! loops beside them connect, wait for the server's first line and leave, as fast as they
//! can. Does a crowd coming and going slow the room down? A server that tells the room of
//! every arrival and departure sends each of those notices to thousands.
//!
//! The churn loops wait for whatever the server sends first: tcpchat's welcome, ncat's
//! announcement, and for the chapter's Node server, which greets nobody, the next line a
//! sender says, so its churn is paced by the talk in the room (a line every 10 ms).
//!
//! Everything stops by itself: the senders give up on a line the server no longer reads,
//! a churn connection gives up after 2 s, and half a second after the run's end.

use std::io::{self, ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::fleet::{Fleet, Target, patience};
use crate::histogram::Histogram;
use crate::json::Json;
use crate::procfs::proc_sample;

use super::paced::{Phases, spawn_paced_senders};
use super::ratio;

/// Clients that talk; the others only listen.
const SENDERS: usize = 10;
/// Lines per second from each sender: 100 lines a second into the room in all.
const LINES_PER_SECOND: f64 = 10.0;
/// Churn loops beside the room, as many as the churn scenario has.
const CHURN_LOOPS: usize = 8;
/// The fleet joins at this pace; 3,000 clients take 1.5 s.
const CONNECTS_PER_SECOND: f64 = 2000.0;
/// How long a churn connection may take to connect and receive its first line before it
/// counts as an error.
const FIRST_LINE_PATIENCE: Duration = Duration::from_secs(2);
/// How long past the end of the run a churn connection under way may finish (uncounted).
const OVERTIME: Duration = Duration::from_millis(500);

/// Whether connections come and go beside the room.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Churn {
    Off,
    Beside,
}

/// `clients` in the room, [`SENDERS`] of them sending [`LINES_PER_SECOND`] each for
/// `seconds`, with or without [`CHURN_LOOPS`] churn loops beside them.
pub fn big_room(
    target: &Target,
    (clients, seconds): (usize, f64),
    churn: Churn,
) -> io::Result<Json> {
    // The pace's own time, then as long as a server may take to answer that many.
    let connect_time = Duration::from_secs_f64(clients as f64 / CONNECTS_PER_SECOND);
    let give_up_connecting = Instant::now() + connect_time + patience(clients);
    let fleet = Fleet::connect_until(
        target,
        clients,
        CONNECTS_PER_SECOND,
        Some(give_up_connecting),
    )?;
    fleet.sync(patience(clients))?;
    let before = proc_sample(target.pid());
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    // A server that stops reading must not hold the run past its time limit.
    let give_up = deadline + Duration::from_secs(2);
    let senders = spawn_paced_senders(
        &fleet,
        SENDERS,
        LINES_PER_SECOND,
        Phases::Spread,
        start,
        seconds,
        Some(give_up),
    )?;
    let addr = target.addr();
    let loops: Vec<_> = match churn {
        Churn::Off => Vec::new(),
        Churn::Beside => (0..CHURN_LOOPS)
            .map(|_| thread::spawn(move || churn_loop(addr, deadline)))
            .collect(),
    };
    let sent: u64 = senders.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let mut churned = ChurnStats::default();
    for handle in loops {
        let stats = handle.join().unwrap_or_else(|_| ChurnStats {
            errors: 1,
            ..ChurnStats::default()
        });
        churned.merge(&stats);
    }
    fleet.settle(Duration::from_secs(2));
    let elapsed = start.elapsed().as_secs_f64();
    let after = proc_sample(target.pid());
    // A server that died (ncat --chat can, under churn) has no CPU time left to read.
    let is_alive = after.threads > 0;
    let stats = fleet.finish();
    let deliveries = stats.total();
    let expected = sent * (stats.connected as u64).saturating_sub(1);
    let json = Json::new()
        .num("clients", clients as f64)
        .num("connected", stats.connected as f64)
        .num("connect_failures", stats.connect_failures as f64)
        .num("members_lost", stats.closed as f64)
        .num("senders", SENDERS as f64)
        .num("lines_sent", sent as f64)
        .num("deliveries_per_s", deliveries as f64 / elapsed)
        .num("delivery_ratio", ratio(deliveries, expected))
        .num("p50_ms", stats.histogram.quantile(0.50))
        .num("p99_ms", stats.histogram.quantile(0.99))
        .num("max_ms", stats.histogram.max())
        .num(
            "server_cpu_s",
            if is_alive {
                after.cpu_s - before.cpu_s
            } else {
                f64::NAN
            },
        )
        .num("server_rss_kib_before", before.rss_kib as f64)
        .num("server_rss_kib_after", after.rss_kib as f64)
        .num("server_threads_after", after.threads as f64);
    Ok(match churn {
        Churn::Off => json,
        Churn::Beside => json
            .num("churn_loops", CHURN_LOOPS as f64)
            .num(
                "churn_connections_per_s",
                churned.connections as f64 / seconds,
            )
            .num("churn_errors", churned.errors as f64)
            .num("churn_first_line_p50_ms", churned.first_line.quantile(0.50))
            .num("churn_first_line_p99_ms", churned.first_line.quantile(0.99)),
    })
}

/// What one churn loop counted.
#[derive(Default)]
struct ChurnStats {
    connections: u64,
    errors: u64,
    /// From starting to connect to having the server's first whole line.
    first_line: Histogram,
}

impl ChurnStats {
    fn merge(&mut self, other: &ChurnStats) {
        self.connections += other.connections;
        self.errors += other.errors;
        self.first_line.merge(&other.first_line);
    }
}

/// Connections until `deadline`; one that is still under way then is abandoned at most
/// [`OVERTIME`] later and not counted, so the rate is connections per second of the run.
fn churn_loop(addr: SocketAddr, deadline: Instant) -> ChurnStats {
    let mut stats = ChurnStats::default();
    while Instant::now() < deadline {
        let began = Instant::now();
        let patience = (deadline + OVERTIME)
            .saturating_duration_since(began)
            .min(FIRST_LINE_PATIENCE);
        let outcome = connect_until_first_line(addr, patience);
        if Instant::now() > deadline {
            break;
        }
        match outcome {
            Ok(()) => {
                stats.connections += 1;
                stats.first_line.record(began.elapsed().as_nanos() as u64);
            }
            Err(_) => {
                stats.errors += 1;
                // A server that refuses at once must not turn the loop into a busy spin
                // that takes the CPU the room needs.
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    stats
}

/// Connects, reads until the server's first line is complete, and closes; fails if that
/// takes more than `patience`. The server may have sent more behind the line (history,
/// notices): closing with it unread resets the connection, as a client that vanishes does.
fn connect_until_first_line(addr: SocketAddr, patience: Duration) -> io::Result<()> {
    let began = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, patience)?;
    let mut buffer = [0u8; 4096];
    loop {
        let left = patience.saturating_sub(began.elapsed());
        if left.is_zero() {
            return Err(io::Error::from(ErrorKind::TimedOut));
        }
        stream.set_read_timeout(Some(left))?;
        let count = stream.read(&mut buffer)?;
        if count == 0 {
            return Err(io::Error::from(ErrorKind::UnexpectedEof));
        }
        if buffer[..count].contains(&b'\n') {
            return Ok(());
        }
    }
}
