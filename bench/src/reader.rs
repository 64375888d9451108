//! One reader thread of the fleet: polls its share of the clients with mio, splits what
//! arrives (decrypted and out of its frames, wire/) into lines, and counts and times every
//! marker in them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};

use crate::clock::nanos_since;
use crate::fleet::Shared;
use crate::histogram::Histogram;
use crate::marker::{SYNC_SENDER, parse_marker};
use crate::wire::{Incoming, Received};

/// What one reader thread counted.
#[derive(Default)]
pub struct ReaderStats {
    /// Counted receipts per client, in connection order.
    pub received: Vec<u64>,
    /// Every counted delivery's latency.
    pub histogram: Histogram,
    /// Latencies before the stall scenario's stalled client joined.
    pub histogram_before: Histogram,
    /// Latencies of the deliveries whose sender is on another node than the receiver.
    pub histogram_cross_node: Histogram,
}

struct ClientState {
    index: usize,
    incoming: Incoming,
    pending: Vec<u8>,
    received: u64,
    synced: bool,
    is_closed: bool,
}

/// Reads `streams` until `shared.stop`, noting each client's progress through every
/// sender's lines in `shared`.
pub fn read_loop(streams: Vec<(usize, Incoming)>, shared: &Shared) -> ReaderStats {
    let mut stats = ReaderStats::default();
    let Ok(mut poll) = Poll::new() else {
        return stats;
    };
    let mut clients: HashMap<Token, ClientState> = HashMap::new();
    for (index, mut incoming) in streams {
        let token = Token(index);
        if poll
            .registry()
            .register(incoming.source(), token, Interest::READABLE)
            .is_ok()
        {
            clients.insert(
                token,
                ClientState {
                    index,
                    incoming,
                    pending: Vec::new(),
                    received: 0,
                    synced: false,
                    is_closed: false,
                },
            );
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut buffer = vec![0u8; 64 * 1024];
    while !shared.stop.load(Ordering::Relaxed) {
        if poll
            .poll(&mut events, Some(Duration::from_millis(10)))
            .is_err()
        {
            continue;
        }
        for event in &events {
            let Some(client) = clients.get_mut(&event.token()) else {
                continue;
            };
            loop {
                match client.incoming.receive(&mut buffer, &mut client.pending) {
                    Ok(Received::Text) => {
                        let now_ns = nanos_since(&shared.epoch);
                        take_lines(client, shared, &mut stats, now_ns);
                    }
                    Ok(Received::Nothing) => break,
                    Ok(Received::Closed) => {
                        // Lines that came with the end still count.
                        let now_ns = nanos_since(&shared.epoch);
                        take_lines(client, shared, &mut stats, now_ns);
                        note_closed(client, shared);
                        break;
                    }
                    Err(_) => {
                        note_closed(client, shared);
                        break;
                    }
                }
            }
        }
    }
    let mut ordered: Vec<&ClientState> = clients.values().collect();
    ordered.sort_by_key(|c| c.index);
    stats.received = ordered.iter().map(|c| c.received).collect();
    stats
}

fn note_closed(client: &mut ClientState, shared: &Shared) {
    if !client.is_closed {
        client.is_closed = true;
        shared.closed.fetch_add(1, Ordering::Relaxed);
        shared.forget(client.index);
    }
}

fn take_lines(client: &mut ClientState, shared: &Shared, stats: &mut ReaderStats, now_ns: u64) {
    let counting = shared.counting.load(Ordering::Relaxed);
    let stalling = shared.stalling.load(Ordering::Relaxed);
    let mut consumed = 0;
    while let Some(end) = client.pending[consumed..].iter().position(|&b| b == b'\n') {
        let line = &client.pending[consumed..consumed + end];
        consumed += end + 1;
        let mut rest = line;
        while let Some(marker) = parse_marker(rest) {
            rest = marker.rest;
            if !client.synced {
                client.synced = true;
                shared.synced.fetch_add(1, Ordering::SeqCst);
            }
            if marker.sender == SYNC_SENDER || !counting {
                continue;
            }
            client.received += 1;
            shared.deliveries.fetch_add(1, Ordering::Relaxed);
            shared.last_receipt_ns.fetch_max(now_ns, Ordering::Relaxed);
            let latency_ns = now_ns.saturating_sub(marker.sent_ns);
            if shared.nodes > 1
                && shared
                    .sender_nodes
                    .get(marker.sender as usize)
                    .is_some_and(|&node| node != client.index % shared.nodes)
            {
                stats.histogram_cross_node.record(latency_ns);
            }
            if stalling {
                stats.histogram.record(latency_ns);
            } else {
                stats.histogram_before.record(latency_ns);
                stats.histogram.record(latency_ns);
            }
            shared.note_seen(client.index, marker.sender, marker.seq);
        }
    }
    client.pending.drain(..consumed);
}
