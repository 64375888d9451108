//! Senders at a fixed pace: latency, fanout-large and the big room.

use std::io;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::clock::sleep_until;
use crate::fleet::{Fleet, Stats, Target, patience};
use crate::json::Json;
use crate::marker::send_marker_before;
use crate::procfs::Scheduling;

use super::ratio;

/// What a paced run measured: its common figures, the fleet's stats, how many lines were
/// sent and deliveries there should have been, and how the server's threads were
/// scheduled meanwhile.
pub struct RateRun {
    pub json: Json,
    pub stats: Stats,
    pub sent: u64,
    pub expected: u64,
    pub scheduling: Scheduling,
}

/// `clients` connected, `senders` of them sending `per_second` lines each for `seconds`.
pub fn rate_run(
    target: &Target,
    clients: usize,
    senders: usize,
    per_second: f64,
    seconds: f64,
) -> io::Result<RateRun> {
    let fleet = Fleet::connect(target, clients, 2000.0)?;
    fleet.sync(patience(clients))?;
    let cpu_before = target.cpu_s_each();
    let scheduling_before = target.scheduling();
    let start = Instant::now();
    let threads = spawn_paced_senders(
        &fleet,
        senders,
        per_second,
        Phases::Together,
        start,
        seconds,
        None,
    )?;
    let sent: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    fleet.settle(Duration::from_secs(2));
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_by_process = target.cpu_s_since(&cpu_before);
    let scheduling = target.scheduling().since(&scheduling_before);
    let cpu = cpu_by_process.iter().sum();
    let mut stats = fleet.finish();
    stats.server_cpu_s_by_process = cpu_by_process;
    let deliveries = stats.total();
    let expected = sent * (clients as u64 - 1);
    let json = Json::new()
        .num("deliveries_per_s", deliveries as f64 / elapsed)
        .num("delivery_ratio", ratio(deliveries, expected))
        .num("server_cpu_s", cpu);
    Ok(RateRun {
        json,
        stats,
        sent,
        expected,
        scheduling,
    })
}

/// When each paced sender sends within its interval.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Phases {
    /// All at once: a burst of `senders` lines every interval.
    Together,
    /// Spread evenly over the interval, as people who do not wait for each other talk.
    Spread,
}

/// Starts `senders` threads, the fleet's first clients, each sending `per_second` marked
/// lines from `start` until `seconds` later; each returns how many lines it sent. With
/// `give_up`, a sender stops at that moment even if the server stopped reading its line.
pub fn spawn_paced_senders(
    fleet: &Fleet,
    senders: usize,
    per_second: f64,
    phases: Phases,
    start: Instant,
    seconds: f64,
    give_up: Option<Instant>,
) -> io::Result<Vec<JoinHandle<u64>>> {
    (0..senders)
        .map(|sender| {
            let mut writer = fleet.writer(sender)?;
            let epoch = fleet.shared.epoch;
            Ok(thread::spawn(move || {
                let mut sent = 0u64;
                let interval = Duration::from_secs_f64(1.0 / per_second);
                let deadline = start + Duration::from_secs_f64(seconds);
                let mut next = match phases {
                    Phases::Together => start,
                    Phases::Spread => start + interval.mul_f64(sender as f64 / senders as f64),
                };
                while next < deadline {
                    sleep_until(next);
                    if send_marker_before(&mut writer, &epoch, sender as u64, sent, give_up)
                        .is_err()
                    {
                        break;
                    }
                    sent += 1;
                    next += interval;
                }
                sent
            }))
        })
        .collect()
}
