//! The driver's summary on stdout: the load it made, what it counted, each kind of client,
//! each witness, and every kind of failure with examples.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::plan::Role;
use crate::session::Context;
use crate::stats::Stats;
use crate::wire;

pub fn print_summary(context: &Context, witness_lines: &[String], duration: Duration) {
    let stats = &context.stats;
    let seconds = duration.as_secs_f64().max(1.0);
    let get = Stats::get;
    let nodes: Vec<String> = context
        .nodes
        .iter()
        .map(|n| {
            format!(
                "{} {} (web {}{})",
                n.name,
                n.chat,
                n.web,
                if n.tls { ", TLS" } else { "" }
            )
        })
        .collect();
    println!(
        "soak-clients: {:.0} s of load on {}",
        seconds,
        nodes.join(", ")
    );
    let samples = get(&stats.connected_samples).max(1);
    println!(
        "clients at once: mean {:.1}, at most {}; connections opened {} ({:.1}/s); sessions {} ({:.2}/s)",
        get(&stats.connected_sum) as f64 / samples as f64,
        stats.peak_connected.load(Ordering::Relaxed),
        thousands(get(&stats.connections_opened)),
        get(&stats.connections_opened) as f64 / seconds,
        thousands(context.next_session.load(Ordering::Relaxed) - 1),
        (context.next_session.load(Ordering::Relaxed) - 1) as f64 / seconds,
    );
    println!(
        "lines said {} ({:.1}/s); deliveries {} ({:.0}/s); history lines {}; page events {}; telnet echoes checked {}",
        thousands(get(&stats.lines_said)),
        get(&stats.lines_said) as f64 / seconds,
        thousands(get(&stats.deliveries)),
        get(&stats.deliveries) as f64 / seconds,
        thousands(get(&stats.history_lines)),
        thousands(get(&stats.page_events)),
        thousands(get(&stats.echoes_checked)),
    );
    let without_close_notify = |end: wire::TlsEnd| {
        thousands(wire::ENDED_WITHOUT_CLOSE_NOTIFY[end as usize].load(Ordering::Relaxed))
    };
    println!(
        "TLS sessions the server ended without close_notify: {} after /quit, {} after the client's close_notify, {} after WebSocket close frames",
        without_close_notify(wire::TlsEnd::Quit),
        without_close_notify(wire::TlsEnd::ClientClose),
        without_close_notify(wire::TlsEnd::WebSocketClose),
    );
    println!(
        "  {:<28} {:<6} {:>6} {:>9} {:>11} {:>9}",
        "kind", "node", "slots", "sessions", "lines said", "failures"
    );
    for (kind, counts) in context.kinds.iter().zip(&stats.by_kind) {
        if matches!(kind.role, Role::Witness(_)) {
            continue;
        }
        println!(
            "  {:<28} {:<6} {:>6} {:>9} {:>11} {:>9}",
            kind.name,
            context.nodes[kind.node].name,
            kind.slots,
            thousands(get(&counts.sessions)),
            thousands(get(&counts.lines_said)),
            get(&counts.failures)
        );
    }
    for line in witness_lines {
        println!("{line}");
    }
    let failures = stats.failure_lines();
    if failures.is_empty() {
        println!("failures: none");
    } else {
        println!("failures: {}", stats.failure_count());
        for line in failures {
            println!("{line}");
        }
    }
}

pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
