//! Senders as fast as a window of unacknowledged lines allows: fanout and stall.

use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::clock::sleep_until;
use crate::fleet::{Fleet, Stats, Target, patience};
use crate::marker::send_marker;
use crate::procfs::{count_fds, proc_sample};

/// How many of its lines a window-bound sender may have that some client has not read.
const WINDOW: u64 = 1000;

/// Clients of which some send as fast as a window of lines not yet read by all allows.
pub struct WindowedRun {
    fleet: Fleet,
    target: Target,
    senders: usize,
    seconds: f64,
}

/// What a windowed run measured: lines sent, the fleet's stats, server CPU s, elapsed s.
pub type Measured = (u64, Stats, f64, f64);

impl WindowedRun {
    /// Connects `clients` and checks they are all in the room.
    pub fn new(target: &Target, clients: usize, senders: usize, seconds: f64) -> io::Result<Self> {
        let fleet = Fleet::connect(target, clients, 2000.0)?;
        fleet.sync(patience(clients))?;
        Ok(WindowedRun {
            fleet,
            target: target.clone(),
            senders,
            seconds,
        })
    }

    /// Runs the senders; with `stall_at`, a client that never reads joins at that moment.
    pub fn measure(self, stall_at: Option<Duration>) -> io::Result<Measured> {
        let cpu_before = self.target.cpu_s_each();
        let pid = self.target.pid();
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(self.seconds);
        let threads: Vec<_> = (0..self.senders)
            .map(|sender| {
                let mut writer = self.fleet.writer(sender)?;
                let shared = Arc::clone(&self.fleet.shared);
                Ok(thread::spawn(move || {
                    let mut sent = 0u64;
                    let mut acknowledged = 0;
                    while Instant::now() < deadline {
                        if sent >= acknowledged + WINDOW {
                            acknowledged = shared.acknowledged(sender);
                            if sent >= acknowledged + WINDOW {
                                thread::sleep(Duration::from_micros(50));
                                continue;
                            }
                        }
                        if send_marker(&mut writer, &shared.epoch, sender as u64, sent).is_err() {
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
        let mut rss_series = vec![proc_sample(pid).rss_kib];
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
                    let before = count_fds(pid);
                    // Connects like any other client, and never reads a byte.
                    stalled = Some(TcpStream::connect(self.target.addr())?);
                    let accepted = Instant::now() + Duration::from_secs(1);
                    while count_fds(pid) <= before && Instant::now() < accepted {
                        thread::sleep(Duration::from_millis(1));
                    }
                    fds_with_stalled = Some(count_fds(pid));
                }
            }
            while Instant::now() < tick {
                thread::sleep(Duration::from_millis(20));
                if let (Some(fds), None, Some(at)) =
                    (fds_with_stalled, stalled_closed_after_s, stall_at)
                    && count_fds(pid) < fds
                {
                    stalled_closed_after_s = Some((start.elapsed() - at).as_secs_f64());
                }
            }
            let now = self.fleet.shared.deliveries.load(Ordering::SeqCst);
            per_second.push(now - last);
            last = now;
            rss_series.push(proc_sample(pid).rss_kib);
        }
        let sent: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        self.fleet.settle(Duration::from_secs(2));
        let elapsed = start.elapsed().as_secs_f64();
        let cpu_by_process = self.target.cpu_s_since(&cpu_before);
        let cpu = cpu_by_process.iter().sum();
        let mut stats = self.fleet.finish();
        stats.per_second = per_second;
        stats.rss_series = rss_series;
        stats.server_cpu_s_by_process = cpu_by_process;
        stats.stalled_closed_after_s = stalled_closed_after_s;
        drop(stalled);
        Ok((sent, stats, cpu, elapsed))
    }
}
