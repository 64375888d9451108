//! capacity: many idle clients, what they cost the server, and one broadcast to them all.
//! What a client costs is the server's RSS with them all idle over the number it holds
//! (`server_kib_per_client`, as the plain TCP tables have always given it), and the growth
//! of its RSS from before the first connected over the number connected
//! (`server_kib_per_client_growth`, which leaves out what the server holds with no
//! client: the transport tables' figure). Over the other transports the server's RSS is
//! sampled once it has stopped moving (see [`wait_for_steady_rss`]).

use std::io;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::clock::nanos_between;
use crate::fleet::{Fleet, Target, patience};
use crate::json::Json;
use crate::marker::send_marker;
use crate::procfs::{count_fds, proc_sample};
use crate::wire::Transport;

/// The server's RSS counts as steady once it moves less than this in [`STEADY_FOR`].
const STEADY_KIB: u64 = 256;
const STEADY_FOR: Duration = Duration::from_secs(1);

/// `clients` idle clients connected at 4,000/s (or as fast as their handshakes allow),
/// then one line from the first to all.
pub fn capacity(target: &Target, clients: usize) -> io::Result<Json> {
    let empty = proc_sample(target.pid());
    let connect_started = Instant::now();
    let fleet = Fleet::connect(target, clients, 4000.0)?;
    let connect_s = connect_started.elapsed().as_secs_f64();
    // Every server holds one descriptor per client: wait until it has them all.
    let deadline = Instant::now() + patience(clients);
    while count_fds(target.pid()) < fleet.connected && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(500));
    if target.transport() != Transport::Tcp {
        wait_for_steady_rss(target.pid(), patience(clients));
    }
    let idle = proc_sample(target.pid());
    fleet.shared.counting.store(true, Ordering::SeqCst);
    let mut writer = fleet.writer(0)?;
    let handshakes = fleet.handshakes;
    let sent_at = Instant::now();
    send_marker(&mut writer, &fleet.shared.epoch, 0, 0)?;
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
        .num("server_threads", idle.threads as f64)
        .num("server_rss_before_kib", empty.rss_kib as f64)
        .num(
            "server_kib_per_client_growth",
            (idle.rss_kib as f64 - empty.rss_kib as f64) / stats.connected as f64,
        )
        .num("full_handshakes", handshakes.full as f64)
        .num("resumed_handshakes", handshakes.resumed as f64))
}

/// Waits (at most `limit`) until the server's RSS stops moving. A browser is not idle the
/// moment it is connected: tcpchat tells every page who joined and who is in the room,
/// for a few seconds after 2,000 arrivals, and memory measured meanwhile is what those
/// lines take in flight, not what an idle client costs. (Plain TCP keeps the fixed half
/// second it always had, so that its figures compare with earlier runs.)
fn wait_for_steady_rss(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = proc_sample(pid).rss_kib;
    while Instant::now() < deadline {
        thread::sleep(STEADY_FOR);
        let now = proc_sample(pid).rss_kib;
        if now.abs_diff(last) < STEADY_KIB {
            return;
        }
        last = now;
    }
}
