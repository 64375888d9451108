//! soak-clients: a steady, realistic mix of every kind of client against a tcpchat
//! cluster, for as long as asked, checking what it can; scripts/soak.sh runs it beside
//! the nodes it samples.
//!
//! Usage: `soak-clients --node plain,CHAT_ADDR,WEB_ADDR,PID --node tls,CHAT_ADDR,WEB_ADDR,PID
//! --duration SECS [--scale F] [--nc PATH] [--phase-file PATH] [--progress SECS]`.
//! Each `--node` is a tcpchat node of one cluster, with `--web` (and, for `tls`, a
//! certificate): nc and telnet clients go to plain nodes, TLS line clients to TLS nodes,
//! browsers (the page, then its WebSocket) to both. `--scale` multiplies the number of
//! clients of each kind (witnesses excepted). The phase file says `linking`, `steady`,
//! `stopping`, then `done`, so that a sampler can tell the steady part of the run.
//!
//! What it checks: every marked line reaches every witness it was meant for within 30 s,
//! once, whole, and nobody else's (ledger.rs); the witnesses of a room, on either node,
//! hear its lines in one order; a telnet typist's echo shows what it meant to type; the
//! server answers every command, welcome and close in time, sends no `! ` error, never
//! loses its cluster link; the nodes stay alive. Prints a summary on stdout; exit status 1
//! if anything failed, 2 on bad arguments.
//!
//! Reading order: plan.rs (the mix), behaviour.rs (what each kind of client does),
//! session.rs (one connected client), ledger.rs (the checks); then how bytes reach a node:
//! links.rs (nc, line clients), browser.rs, telnet.rs with terminal.rs, wire.rs (TCP and
//! TLS); stats.rs (counters) and report.rs (the summary).

mod behaviour;
mod browser;
mod ledger;
mod links;
mod plan;
mod report;
mod session;
mod stats;
mod telnet;
mod terminal;
#[path = "../../wire/trust.rs"]
#[expect(
    dead_code,
    reason = "the soak names its TLS node by address, not SERVER_NAME"
)]
mod trust;
mod wire;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ledger::{DELIVERY_PATIENCE_S, LOBBY, Ledger};
use plan::{Node, Role};
use report::thousands;
use session::Context;
use stats::Stats;

const USAGE: &str = "usage: soak-clients --node plain|tls,CHAT_ADDR,WEB_ADDR,PID ... --duration SECS \
                     [--scale F] [--nc PATH] [--phase-file PATH] [--progress SECS]";
/// How long the witnesses may take to receive the last lines once the talkers have left.
const SETTLE_PATIENCE: Duration = Duration::from_secs(30);
/// How long the nodes may take to pass the first line to each other.
const LINK_PATIENCE: Duration = Duration::from_secs(20);

struct Options {
    nodes: Vec<Node>,
    duration: Duration,
    scale: f64,
    nc: String,
    phase_file: Option<String>,
    progress: Duration,
}

fn main() -> ExitCode {
    let options = match parse_options(std::env::args().skip(1).collect()) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("soak-clients: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let kinds = plan::plan(&options.nodes, options.scale);
    let witnesses: Vec<(usize, usize)> = kinds
        .iter()
        .enumerate()
        .filter_map(|(index, kind)| match kind.role {
            Role::Witness(room) => Some((index, room)),
            _ => None,
        })
        .collect();
    let witness_nicks: Vec<String> = (1..=witnesses.len()).map(|n| format!("w{n}")).collect();
    let witness_names: Vec<(String, usize)> = witnesses
        .iter()
        .zip(&witness_nicks)
        .map(|(&(kind, room), nick)| {
            let name = format!(
                "{nick} {}@{}",
                plan::transport_name(kinds[kind].transport),
                options.nodes[kinds[kind].node].name
            );
            (name, room)
        })
        .collect();
    let stats = Arc::new(Stats::new(options.nodes.len(), kinds.len()));
    let context = Context {
        ledger: Ledger::new(&witness_names),
        nodes: options.nodes,
        kinds,
        stats,
        stop: AtomicBool::new(false),
        witnesses_leave: AtomicBool::new(false),
        witness_nicks,
        nc: options.nc,
        tls: wire::tls_config(),
        next_session: AtomicU64::new(1),
    };
    let phase = |name: &str| {
        if let Some(path) = &options.phase_file {
            let temporary = format!("{path}.new");
            if std::fs::write(&temporary, format!("{name}\n"))
                .and_then(|()| std::fs::rename(&temporary, path))
                .is_err()
            {
                eprintln!("soak-clients: cannot write {path}");
            }
        }
    };
    phase("linking");
    plan::describe_plan(&context);
    let result = thread::scope(|scope| {
        run(
            &context,
            &witnesses,
            options.duration,
            options.progress,
            &phase,
            scope,
        )
    });
    if let Err(error) = result {
        eprintln!("soak-clients: {error}");
        context.stop.store(true, Ordering::Relaxed);
        phase("done");
        report::print_summary(&context, &[], options.duration);
        return ExitCode::FAILURE;
    }
    let witness_lines = context.ledger.finish(&context.stats);
    phase("done");
    report::print_summary(&context, &witness_lines, options.duration);
    if context.stats.failure_count() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The run: witnesses in place, the nodes linked, every slot running for `duration`, then
/// everyone leaving and the last lines given their time.
fn run<'scope, 'env>(
    context: &'env Context,
    witnesses: &[(usize, usize)],
    duration: Duration,
    progress: Duration,
    phase: &(dyn Fn(&str) + Sync),
    scope: &'scope thread::Scope<'scope, 'env>,
) -> Result<(), String> {
    let mut sessions = Vec::new();
    for (index, &(kind, room)) in witnesses.iter().enumerate() {
        let session = behaviour::witness_join(context, kind, index, room)
            .map_err(|_| format!("witness {} could not join", index + 1))?;
        sessions.push(session);
    }
    wait_until_linked(context, witnesses, &mut sessions)?;
    eprintln!(
        "[{:7.1} s] nodes linked, witnesses in place: starting the mix",
        context.stats.elapsed_s()
    );
    let mut witness_threads = Vec::new();
    for (index, session) in sessions.into_iter().enumerate() {
        witness_threads.push(scope.spawn(move || behaviour::witness_run(context, session, index)));
    }
    phase("steady");
    let started = Instant::now();
    let mut slot_threads = Vec::new();
    for (kind, spec) in context.kinds.iter().enumerate() {
        if matches!(spec.role, Role::Witness(_)) {
            continue;
        }
        for slot in 0..spec.slots {
            slot_threads.push(scope.spawn(move || behaviour::run_slot(context, kind, slot)));
        }
    }
    let monitor_done = Arc::new(AtomicBool::new(false));
    let monitor = {
        let done = Arc::clone(&monitor_done);
        scope.spawn(move || monitor(context, &done, progress))
    };
    while started.elapsed() < duration && !context.stop.load(Ordering::Relaxed) {
        thread::sleep((duration.saturating_sub(started.elapsed())).min(Duration::from_millis(250)));
    }
    context.stop.store(true, Ordering::Relaxed);
    phase("stopping");
    eprintln!(
        "[{:7.1} s] time is up: the clients leave",
        context.stats.elapsed_s()
    );
    for thread in slot_threads {
        if thread.join().is_err() {
            context
                .stats
                .fail(None, "driver thread panicked", "a client slot");
        }
    }
    let settle_deadline = Instant::now() + SETTLE_PATIENCE;
    while !context.ledger.all_received() && Instant::now() < settle_deadline {
        thread::sleep(Duration::from_millis(100));
    }
    context.witnesses_leave.store(true, Ordering::Relaxed);
    for thread in witness_threads {
        if thread.join().is_err() {
            context
                .stats
                .fail(None, "driver thread panicked", "a witness");
        }
    }
    monitor_done.store(true, Ordering::Relaxed);
    if monitor.join().is_err() {
        context
            .stats
            .fail(None, "driver thread panicked", "the monitor");
    }
    Ok(())
}

/// Waits until a line said in the lobby of each node reaches the lobby of every other:
/// a node chats alone until its Redis link is up.
fn wait_until_linked(
    context: &Context,
    witnesses: &[(usize, usize)],
    sessions: &mut [session::Session<'_>],
) -> Result<(), String> {
    let node_of = |index: usize| context.kinds[witnesses[index].0].node;
    // One witness in the lobby of each node speaks for it.
    let mut speakers: Vec<usize> = Vec::new();
    for (index, &(_, room)) in witnesses.iter().enumerate() {
        if room == LOBBY && !speakers.iter().any(|&s| node_of(s) == node_of(index)) {
            speakers.push(index);
        }
    }
    let probe = |node: usize| format!("link check from {}", context.nodes[node].name);
    // heard[a][b]: the probe of speaker a reached speaker b.
    let mut heard = vec![vec![false; speakers.len()]; speakers.len()];
    for (a, row) in heard.iter_mut().enumerate() {
        row[a] = true;
    }
    let deadline = Instant::now() + LINK_PATIENCE;
    while heard.iter().flatten().any(|h| !h) {
        if Instant::now() >= deadline {
            return Err(format!(
                "the nodes did not pass lines to each other within {LINK_PATIENCE:?}"
            ));
        }
        for (a, &speaker) in speakers.iter().enumerate() {
            if heard[a].iter().any(|h| !h) {
                sessions[speaker]
                    .say_unmarked(&probe(node_of(speaker)))
                    .map_err(|_| "a witness left")?;
            }
        }
        for (index, session) in sessions.iter_mut().enumerate() {
            let lines = session
                .read_for(Duration::from_millis(50))
                .map_err(|_| "a witness left")?;
            let Some(b) = speakers.iter().position(|&s| s == index) else {
                continue;
            };
            for (a, &speaker) in speakers.iter().enumerate() {
                if lines
                    .iter()
                    .any(|line| line.contains(&probe(node_of(speaker))))
                {
                    heard[a][b] = true;
                }
            }
        }
    }
    Ok(())
}

/// Every second: the nodes are alive, the connected count for the mean; every 5 s, lines
/// overdue; every `progress`, a line on stderr.
fn monitor(context: &Context, done: &AtomicBool, progress: Duration) {
    let stats = &context.stats;
    let started = Instant::now();
    let mut next_progress = started + progress;
    let mut dead = vec![false; context.nodes.len()];
    let mut ticks = 0u64;
    while !done.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_secs(1));
        ticks += 1;
        for (index, node) in context.nodes.iter().enumerate() {
            if !dead[index]
                && node.pid != 0
                && !std::path::Path::new(&format!("/proc/{}", node.pid)).exists()
            {
                dead[index] = true;
                stats.fail(
                    None,
                    "node died",
                    format!("{} (pid {})", node.name, node.pid),
                );
                context.stop.store(true, Ordering::Relaxed);
            }
        }
        if !context.stop.load(Ordering::Relaxed) {
            Stats::add(&stats.connected_samples, 1);
            Stats::add(&stats.connected_sum, stats.connected_now().max(0) as u64);
        }
        if ticks.is_multiple_of(5)
            && let Some(cutoff) =
                Instant::now().checked_sub(Duration::from_secs(DELIVERY_PATIENCE_S))
        {
            context.ledger.check_overdue(cutoff, stats);
        }
        if Instant::now() >= next_progress {
            next_progress += progress;
            let per_node: Vec<String> = context
                .nodes
                .iter()
                .zip(&stats.connected)
                .map(|(node, count)| format!("{} {}", node.name, count.load(Ordering::Relaxed)))
                .collect();
            let seconds = started.elapsed().as_secs_f64();
            let lines = Stats::get(&stats.lines_said);
            eprintln!(
                "[{:7.1} s] clients {} ({}), connections {}, lines {} ({:.1}/s), deliveries {}, failures {}",
                stats.elapsed_s(),
                stats.connected_now(),
                per_node.join(", "),
                thousands(Stats::get(&stats.connections_opened)),
                thousands(lines),
                lines as f64 / seconds,
                thousands(Stats::get(&stats.deliveries)),
                stats.failure_count()
            );
        }
    }
}

fn parse_options(args: Vec<String>) -> Result<Options, String> {
    let mut options = Options {
        nodes: Vec::new(),
        duration: Duration::ZERO,
        scale: 1.0,
        nc: String::from("nc"),
        phase_file: None,
        progress: Duration::from_secs(30),
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let seconds = |value: &str| {
            value
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0)
                .map(Duration::from_secs_f64)
        };
        match flag.as_str() {
            "--node" => options.nodes.push(parse_node(&value)?),
            "--duration" => options.duration = seconds(&value).ok_or("bad --duration")?,
            "--progress" => options.progress = seconds(&value).ok_or("bad --progress")?,
            "--scale" => {
                options.scale = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0)
                    .ok_or("bad --scale")?
            }
            "--nc" => options.nc = value,
            "--phase-file" => options.phase_file = Some(value),
            other => return Err(format!("unknown option {other}")),
        }
    }
    // Names say what a node speaks; a second node of the same kind gets a number.
    for index in 0..options.nodes.len() {
        let (earlier, rest) = options.nodes.split_at_mut(index);
        if earlier.iter().any(|node| node.name == rest[0].name) {
            rest[0].name = format!("{}{}", rest[0].name, index + 1);
        }
    }
    if options.nodes.is_empty() || options.duration.is_zero() {
        return Err(String::from("--node and --duration are required"));
    }
    Ok(options)
}

/// `plain,127.0.0.1:4001,127.0.0.1:8080,1234` (or `tls,...`).
fn parse_node(value: &str) -> Result<Node, String> {
    let parts: Vec<&str> = value.split(',').collect();
    let [security, chat, web, pid] = parts[..] else {
        return Err(format!("bad --node {value}"));
    };
    let address = |text: &str| {
        text.parse::<SocketAddr>()
            .map_err(|_| format!("bad address {text}"))
    };
    let tls = match security {
        "plain" => false,
        "tls" => true,
        _ => return Err(format!("bad --node {value}: plain or tls first")),
    };
    Ok(Node {
        name: security.to_owned(),
        chat: address(chat)?,
        web: address(web)?,
        pid: pid.parse().map_err(|_| format!("bad pid {pid}"))?,
        tls,
    })
}
