//! stall: a client that never reads joins a busy room; do the others notice?

use std::io;

use crate::fleet::Target;
use crate::json::Json;

use super::windowed::WindowedRun;

/// 20 clients, 2 sending as fast as their windows allow; after `before_s` a client that
/// never reads joins, and the run goes on for `during_s`.
pub fn stall(target: &Target, (before_s, during_s): (f64, f64)) -> io::Result<Json> {
    let run = WindowedRun::new(target, 20, 2, before_s + during_s)?;
    let stall_at = std::time::Duration::from_secs_f64(before_s);
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
