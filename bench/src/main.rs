//! tcpchat-bench: a load generator for any line-based TCP chat server.
//!
//! Every line it sends carries a marker `~B<sender>.<seq>.<nanos>~` (sender id, sequence
//! number, send time in monotonic nanoseconds since the run began). It recognises the
//! marker anywhere in a received line, so it works whatever the server prefixes (`[nick] `
//! for tcpchat, `<userN> ` for ncat, nothing for the chapter's Node server); other lines
//! (welcomes, notices) are ignored. Readers are multiplexed with mio on a few threads so
//! that 10,000 connections fit on 2 cores.
//!
//! Usage: `tcpchat-bench SCENARIO --addr HOST:PORT --pid PID [--quick]`, one JSON object
//! on stdout. Scenarios: fanout, fanout-large, latency, capacity, churn, stall, big-room,
//! big-room-churn.
//!
//! Reading order: scenarios/ (one file per scenario), then what they share: fleet.rs (the
//! connected clients) and reader.rs (their read loop), marker.rs (the line format),
//! histogram.rs, procfs.rs (samples of the server process), json.rs, clock.rs.

mod clock;
mod fleet;
mod histogram;
mod json;
mod marker;
mod procfs;
mod reader;
mod scenarios;

use std::net::SocketAddr;
use std::process::ExitCode;

use fleet::Target;
use json::Json;
use procfs::{raise_descriptor_limit, self_cpu_seconds};
use scenarios::big_room::{self, Churn};
use scenarios::{capacity, churn, fanout, latency, stall};

const USAGE: &str = "usage: tcpchat-bench SCENARIO --addr HOST:PORT --pid PID [--quick]\n\
    scenarios: fanout, fanout-large, latency, capacity, churn, stall, big-room, big-room-churn";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = args.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(addr), Some(pid)) = (value_of("--addr"), value_of("--pid")) else {
        eprintln!("--addr and --pid are required");
        return ExitCode::from(2);
    };
    let (Ok(addr), Ok(pid)) = (addr.parse::<SocketAddr>(), pid.parse::<u32>()) else {
        eprintln!("bad --addr or --pid");
        return ExitCode::from(2);
    };
    let quick = args.iter().any(|a| a == "--quick");
    if let Err(error) = raise_descriptor_limit() {
        eprintln!("note: cannot raise the descriptor limit: {error}");
    }
    let target = Target { addr, pid };
    let before_self = self_cpu_seconds();
    // Each scenario's size, full and --quick (shorter, and fewer clients where it counts).
    let result = match scenario.as_str() {
        "fanout" => fanout::fanout(&target, if quick { 1.0 } else { 3.0 }),
        "fanout-large" => {
            fanout::fanout_large(&target, if quick { (100, 1.0) } else { (500, 3.0) })
        }
        "latency" => latency::latency(&target, if quick { 1.0 } else { 3.0 }),
        "capacity" => capacity::capacity(&target, if quick { 200 } else { 10_000 }),
        "churn" => churn::churn(&target, if quick { 1.0 } else { 10.0 }),
        "stall" => stall::stall(&target, if quick { (1.0, 2.0) } else { (5.0, 10.0) }),
        "big-room" | "big-room-churn" => big_room::big_room(
            &target,
            if quick { (200, 1.0) } else { (3000, 5.0) },
            if scenario == "big-room" {
                Churn::Off
            } else {
                Churn::Beside
            },
        ),
        other => {
            eprintln!("unknown scenario {other}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut json = match result {
        Ok(json) => json,
        Err(error) => Json::new().text("error", &error.to_string()),
    };
    json = json.num("bench_cpu_s", self_cpu_seconds() - before_self);
    println!("{}", json.finish());
    ExitCode::SUCCESS
}
