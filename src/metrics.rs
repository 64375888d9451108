//! `--metrics [HOST:]PORT`: what the server is doing, for Prometheus, at `/metrics`.
//!
//! The counters are atomics that the threads doing the work bump as they go (the acceptor,
//! the connection threads, the hub): a scrape reads them and never asks anyone anything,
//! so it cannot slow the chat down.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::port::Port;

/// Every number the server exposes.
pub struct Metrics {
    registry: Registry,
    /// Clients connected now, by transport (`tcp`, `web`) and whether they speak TLS.
    pub clients: Family<ClientLabels, Gauge>,
    /// Rooms that exist now (the lobby included).
    pub rooms: Gauge,
    /// Lines received from chat clients (messages and commands).
    pub lines_received: Counter,
    /// Lines queued for a recipient: one line to 30 people is 30 deliveries.
    pub deliveries: Counter,
    /// Bytes the kernel took from the hub (after TLS and WebSocket framing).
    pub bytes_sent: Counter<u64, AtomicU64>,
    /// Clients disconnected for not reading (`--max-pending`).
    pub slow_consumers: Counter,
    /// Connections refused, by reason: `server_full`, `per_ip`, `busy`, `bad_request`,
    /// `bad_handshake`.
    pub refusals: Family<ReasonLabels, Counter>,
    /// Times a client's thread waited for flood control (`--rate`).
    pub flood_pauses: Counter,
    /// 1 while the link to the cluster works, 0 while it does not (with `--cluster`).
    pub cluster_link_up: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    pub transport: &'static str,
    pub tls: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(false)
    }
}

impl Metrics {
    /// The metrics, registered under `tcpchat_`; the cluster's gauge only with a cluster.
    pub fn new(clustered: bool) -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("tcpchat"),
            clients: Family::default(),
            rooms: Gauge::default(),
            lines_received: Counter::default(),
            deliveries: Counter::default(),
            bytes_sent: Counter::default(),
            slow_consumers: Counter::default(),
            refusals: Family::default(),
            flood_pauses: Counter::default(),
            cluster_link_up: Gauge::default(),
        };
        let registry = &mut metrics.registry;
        registry.register("clients", "Clients connected now", metrics.clients.clone());
        registry.register("rooms", "Rooms that exist now", metrics.rooms.clone());
        registry.register(
            "lines_received",
            "Lines received from chat clients",
            metrics.lines_received.clone(),
        );
        registry.register(
            "deliveries",
            "Lines queued for a recipient",
            metrics.deliveries.clone(),
        );
        registry.register(
            "sent_bytes",
            "Bytes the kernel took from the hub",
            metrics.bytes_sent.clone(),
        );
        registry.register(
            "slow_consumers",
            "Clients disconnected for not reading",
            metrics.slow_consumers.clone(),
        );
        registry.register("refusals", "Connections refused", metrics.refusals.clone());
        registry.register(
            "flood_pauses",
            "Times a client waited for flood control",
            metrics.flood_pauses.clone(),
        );
        if clustered {
            registry.register(
                "cluster_link_up",
                "1 while the link to the cluster works",
                metrics.cluster_link_up.clone(),
            );
        }
        metrics
    }

    /// A client joined (`+1`) or left (`-1`) on `transport`.
    pub(crate) fn count_client(&self, transport: Port, tls: bool, change: i64) {
        let labels = ClientLabels {
            transport: match transport {
                Port::Chat => "tcp",
                Port::Web => "web",
                Port::Metrics => "metrics",
            },
            tls: if tls { "yes" } else { "no" },
        };
        self.clients.get_or_create(&labels).inc_by(change);
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
