//! capacity: many idle clients, what they cost the server, and one broadcast to them all.

use std::io;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::clock::nanos_between;
use crate::fleet::{Fleet, Target, patience};
use crate::json::Json;
use crate::marker::send_marker;
use crate::procfs::{count_fds, proc_sample};

/// `clients` idle clients connected at 4,000/s, then one line from the first to all.
pub fn capacity(target: &Target, clients: usize) -> io::Result<Json> {
    let connect_started = Instant::now();
    let fleet = Fleet::connect(target, clients, 4000.0)?;
    let connect_s = connect_started.elapsed().as_secs_f64();
    // Every server holds one descriptor per client: wait until it has them all.
    let deadline = Instant::now() + patience(clients);
    while count_fds(target.pid()) < fleet.connected && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(500));
    let idle = proc_sample(target.pid());
    fleet.shared.counting.store(true, Ordering::SeqCst);
    let writer = fleet.writer(0)?;
    let sent_at = Instant::now();
    send_marker(&writer, &fleet.shared.epoch, 0, 0)?;
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
