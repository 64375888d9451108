//! latency: send-to-receipt time of every delivery, at a pace no server finds hard.

use std::io;

use crate::fleet::Target;
use crate::json::Json;

use super::delivery_figures;
use super::paced::rate_run;

/// 100 clients, 1 sending 100 lines/s, for `seconds`; spread over the target's nodes when
/// it has several (the sender on the first, two thirds of the receivers elsewhere on 3).
pub fn latency(target: &Target, seconds: f64) -> io::Result<Json> {
    let run = rate_run(target, 100, 1, 100.0, seconds)?;
    let histogram = &run.stats.histogram;
    let lines = run.sent.max(1) as f64;
    let json = run
        .json
        .num("p50_ms", histogram.quantile(0.50))
        .num("p99_ms", histogram.quantile(0.99))
        .num("max_ms", histogram.max())
        // What a line costs the server in scheduling: how often its threads switched, and
        // how long they waited for a CPU after being woken, per line (all its threads).
        .num(
            "server_switches_per_line",
            run.scheduling.switches as f64 / lines,
        )
        .num(
            "server_wait_us_per_line",
            run.scheduling.waiting_ns as f64 / 1e3 / lines,
        );
    Ok(delivery_figures(
        json,
        &run.stats,
        run.expected,
        target.nodes(),
    ))
}
