//! The scenarios, one module each; main.rs picks one by name and gives it its size.
//!
//! Read fanout.rs and latency.rs first: they show the two ways lines are sent, as fast as
//! a window of unacknowledged lines allows (windowed.rs) or at a fixed pace (paced.rs),
//! to a fleet of clients that all read (../fleet.rs). capacity.rs, churn.rs and stall.rs
//! each test one way a server can fail its clients; big_room.rs puts the paced senders
//! and the churn together in one large room. fanout and latency also run against a
//! cluster: their clients, senders included, go round-robin to the nodes given.

pub mod big_room;
pub mod capacity;
pub mod churn;
pub mod fanout;
pub mod latency;
pub mod stall;

mod paced;
mod windowed;

use crate::fleet::Stats;
use crate::json::Json;

/// `got / expected`, NaN (null in the JSON) when nothing was expected.
fn ratio(got: u64, expected: u64) -> f64 {
    if expected == 0 {
        f64::NAN
    } else {
        got as f64 / expected as f64
    }
}

/// What fanout and latency add to their figures: the deliveries counted and expected (the
/// ratio alone, written to 6 decimals, hides a few lines lost among millions), and with
/// several nodes, the latency of the deliveries that crossed from one node to another;
/// with several processes, each one's CPU time in ms, in the order of the `--pid`s.
fn delivery_figures(json: Json, stats: &Stats, expected: u64, nodes: usize) -> Json {
    let mut json = json
        .num("deliveries", stats.total() as f64)
        .num("expected_deliveries", expected as f64);
    let by_process = &stats.server_cpu_s_by_process;
    if by_process.len() > 1 {
        let ms: Vec<u64> = by_process
            .iter()
            .map(|s| (s * 1e3).round() as u64)
            .collect();
        json = json.list("server_cpu_ms_by_process", &ms);
    }
    if nodes < 2 {
        return json;
    }
    let cross = &stats.histogram_cross_node;
    json.num("nodes", nodes as f64)
        .num("cross_node_deliveries", cross.count() as f64)
        .num("cross_node_p50_ms", cross.quantile(0.50))
        .num("cross_node_p99_ms", cross.quantile(0.99))
        .num("cross_node_max_ms", cross.max())
}
