//! latency: send-to-receipt time of every delivery, at a pace no server finds hard.

use std::io;

use crate::fleet::Target;
use crate::json::Json;

use super::paced::rate_run;

/// 100 clients, 1 sending 100 lines/s, for `seconds`.
pub fn latency(target: &Target, seconds: f64) -> io::Result<Json> {
    let (json, histogram) = rate_run(target, 100, 1, 100.0, seconds)?;
    Ok(json
        .num("p50_ms", histogram.quantile(0.50))
        .num("p99_ms", histogram.quantile(0.99))
        .num("max_ms", histogram.max()))
}
