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
//! big-room-churn. fanout and latency also take a cluster: `--addr` once per node (the
//! clients go to them round-robin) and `--pid` once per process whose CPU time counts
//! (the nodes and their Redis: the server CPU figures are the sum). With several nodes
//! they also report the latency of the deliveries that crossed from one node to another.
//! `tcpchat-bench wait-linked --addr A --addr B ...` waits until the nodes pass lines to
//! each other (at most 10 s; exit status 1 if they do not).
//!
//! `--transport ws|tls|wss` (default `tcp`) runs fanout, latency, capacity or churn over
//! WebSocket (tcpchat's web port, `GET /ws`), TLS, or WebSocket over TLS, each line one
//! text message; TLS accepts any certificate, and resumes sessions as a browser does.
//! Capacity then holds 2,000 clients (200 with `--quick`): a TLS client costs the load
//! generator far more than a plain one, and the figure is per client.
//!
//! Reading order: scenarios/ (one file per scenario), then what they share: fleet.rs (the
//! connected clients) and reader.rs (their read loop), wire/ (the transports), marker.rs
//! (the line format),
//! histogram.rs, procfs.rs (samples of the server process), json.rs, clock.rs; linked.rs
//! (wait-linked) stands apart.

mod clock;
mod fleet;
mod histogram;
mod json;
mod linked;
mod marker;
mod procfs;
mod reader;
mod scenarios;
mod wire;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use fleet::Target;
use json::Json;
use procfs::{host_steal_ms, raise_descriptor_limit, self_cpu_seconds};
use scenarios::big_room::{self, Churn};
use scenarios::{capacity, churn, fanout, latency, stall};
use wire::Transport;

const USAGE: &str = "usage: tcpchat-bench SCENARIO --addr HOST:PORT --pid PID [--quick] [--transport T]\n\
    scenarios: fanout, fanout-large, latency, capacity, churn, stall, big-room, big-room-churn\n\
    fanout and latency against a cluster: --addr once per node, --pid once per process\n\
    --transport tcp (the default), ws, tls or wss: fanout, latency, capacity and churn only\n\
    tcpchat-bench wait-linked --addr HOST:PORT --addr HOST:PORT ...";
/// Scenarios that spread their clients over several nodes.
const CLUSTER_SCENARIOS: [&str; 2] = ["fanout", "latency"];
/// Scenarios that run over every transport.
const TRANSPORT_SCENARIOS: [&str; 4] = ["fanout", "latency", "capacity", "churn"];
/// How long wait-linked waits for a cluster's nodes to pass lines to each other.
const LINK_PATIENCE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = args.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let values_of = |flag: &str| -> Vec<String> {
        args.iter()
            .zip(args.iter().skip(1))
            .filter(|(name, _)| *name == flag)
            .map(|(_, value)| value.clone())
            .collect()
    };
    let Ok(addrs) = values_of("--addr")
        .iter()
        .map(|a| a.parse::<SocketAddr>())
        .collect::<Result<Vec<_>, _>>()
    else {
        eprintln!("bad --addr");
        return ExitCode::from(2);
    };
    if scenario == "wait-linked" {
        return wait_linked(&addrs);
    }
    let Ok(pids) = values_of("--pid")
        .iter()
        .map(|p| p.parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
    else {
        eprintln!("bad --pid");
        return ExitCode::from(2);
    };
    if (addrs.len() > 1 || pids.len() > 1) && !CLUSTER_SCENARIOS.contains(&scenario.as_str()) {
        eprintln!("only fanout and latency take several --addr or --pid");
        return ExitCode::from(2);
    }
    let transport_name = values_of("--transport").pop();
    let Some(transport) = Transport::from_name(transport_name.as_deref().unwrap_or("tcp")) else {
        eprintln!("--transport is one of tcp, ws, tls, wss");
        return ExitCode::from(2);
    };
    if transport != Transport::Tcp && !TRANSPORT_SCENARIOS.contains(&scenario.as_str()) {
        eprintln!("only fanout, latency, capacity and churn run over another --transport");
        return ExitCode::from(2);
    }
    let Some(target) = Target::new(addrs, pids, transport) else {
        eprintln!("--addr and --pid are required");
        return ExitCode::from(2);
    };
    let quick = args.iter().any(|a| a == "--quick");
    if let Err(error) = raise_descriptor_limit() {
        eprintln!("note: cannot raise the descriptor limit: {error}");
    }
    let before_self = self_cpu_seconds();
    // A virtual machine's host can take its CPUs away for tens of milliseconds, which shows
    // as a tail in whichever server runs then: every run says how much was taken.
    let steal_before = host_steal_ms();
    // Each scenario's size, full and --quick (shorter, and fewer clients where it counts).
    let result = match scenario.as_str() {
        "fanout" => fanout::fanout(&target, if quick { 1.0 } else { 3.0 }),
        "fanout-large" => {
            fanout::fanout_large(&target, if quick { (100, 1.0) } else { (500, 3.0) })
        }
        "latency" => latency::latency(&target, if quick { 1.0 } else { 10.0 }),
        "capacity" => capacity::capacity(
            &target,
            match (quick, transport) {
                (true, _) => 200,
                (false, Transport::Tcp) => 10_000,
                (false, _) => 2_000,
            },
        ),
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
    json = json
        .num("bench_cpu_s", self_cpu_seconds() - before_self)
        .num("host_steal_ms", host_steal_ms() - steal_before);
    println!("{}", json.finish());
    ExitCode::SUCCESS
}

/// Waits until every node's lines reach every other node; prints how long that took.
fn wait_linked(addrs: &[SocketAddr]) -> ExitCode {
    if addrs.len() < 2 {
        eprintln!("wait-linked needs the --addr of two nodes or more");
        return ExitCode::from(2);
    }
    match linked::wait_until_linked(addrs, LINK_PATIENCE) {
        Ok(took) => {
            let json = Json::new().num("linked_after_s", took.as_secs_f64());
            println!("{}", json.finish());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("wait-linked: {error}");
            ExitCode::FAILURE
        }
    }
}
