//! fanout: a few senders as fast as they may, to a small room; fanout-large: a slow pace
//! to a large room.

use std::io;

use crate::fleet::Target;
use crate::json::Json;

use super::paced::rate_run;
use super::windowed::WindowedRun;
use super::{delivery_figures, ratio};

/// 50 clients, 5 of them sending as fast as their windows allow, for `seconds`; spread
/// over the target's nodes when it has several.
pub fn fanout(target: &Target, seconds: f64) -> io::Result<Json> {
    let run = WindowedRun::new(target, 50, 5, seconds)?;
    let scheduling_before = target.scheduling();
    let (sent, stats, cpu, elapsed) = run.measure(None)?;
    let switches = target.scheduling().since(&scheduling_before).switches;
    let expected = sent * 49;
    let deliveries = stats.total();
    let json = Json::new()
        .num("deliveries_per_s", deliveries as f64 / elapsed)
        .num("delivery_ratio", ratio(deliveries, expected))
        .num("min_client_received", stats.min_received() as f64)
        .num("server_cpu_s", cpu)
        .num(
            "server_ns_per_delivery",
            cpu * 1e9 / deliveries.max(1) as f64,
        )
        .num(
            "server_switches_per_1000_deliveries",
            switches as f64 * 1000.0 / deliveries.max(1) as f64,
        )
        // Latency at full speed: mostly the time a line waits behind the windows' lines.
        .num("p50_ms", stats.histogram.quantile(0.50))
        .num("p99_ms", stats.histogram.quantile(0.99));
    Ok(delivery_figures(json, &stats, expected, target.nodes()))
}

/// `clients` clients, 2 of them sending 20 lines/s each, for `seconds`.
pub fn fanout_large(target: &Target, (clients, seconds): (usize, f64)) -> io::Result<Json> {
    rate_run(target, clients, 2, 20.0, seconds).map(|run| run.json)
}
