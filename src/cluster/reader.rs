//! The cluster's reader thread: follows the stream on a Redis connection of its own and
//! hands every entry to the hub, in the stream's order (the history first).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};

use super::link::{
    BLOCK, COMMAND_TIMEOUT, FIRST_RETRY, LAST_RETRY, LinkState, Outage, STREAM, connect,
};
use super::wire::Envelope;
use super::{ClusterSettings, Incoming, Outgoing, ToHub};

/// The reader thread: every entry of the stream, in order, to the hub. On the first
/// connection it loads the recent entries for the rooms' history.
pub(crate) fn run_reader(
    settings: ClusterSettings,
    hub: ToHub,
    writer: Sender<Outgoing>,
    link: Arc<LinkState>,
    stop: Arc<AtomicBool>,
) {
    let mut last_id: Option<String> = None;
    let mut retry = FIRST_RETRY;
    let mut outage = Outage {
        what: "link (reader)",
        logged: false,
    };
    while !stop.load(Ordering::SeqCst) {
        let result = connect(&settings.url).and_then(|mut con| {
            con.set_read_timeout(Some(BLOCK + COMMAND_TIMEOUT))?;
            // Entries written before this moment that this node has not read were written
            // while it was away: they are marked as said during the split.
            let away_until = match &last_id {
                None => {
                    last_id = Some(load_history(&mut con, &settings, &hub)?);
                    None
                }
                Some(last) => {
                    if last != "0-0" && !stream_has(&mut con, last)? {
                        hub(Incoming::StreamLost);
                    }
                    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query(&mut con)?;
                    Some(seconds * 1000 + micros / 1000)
                }
            };
            outage.recovered(&settings);
            retry = FIRST_RETRY;
            link.set(None, Some(true));
            follow(&mut con, &hub, &stop, last_id.as_mut(), away_until)
        });
        if let Err(error) = result {
            outage.failed(&settings, &error);
            link.set(None, Some(false));
            let _ = writer.send(Outgoing::CheckLink);
            if !stop.load(Ordering::SeqCst) {
                std::thread::sleep(retry);
                retry = (retry * 2).min(LAST_RETRY);
            }
        }
    }
}

/// Reads the stream's recent entries (oldest first) for the history; returns the id to
/// follow from.
fn load_history(
    con: &mut redis::Connection,
    settings: &ClusterSettings,
    hub: &ToHub,
) -> redis::RedisResult<String> {
    let reply: StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(settings.history_entries)
        .query(con)?;
    let last = reply
        .ids
        .first()
        .map_or_else(|| String::from("0-0"), |entry| entry.id.clone());
    let entries: Vec<(SystemTime, Envelope)> = reply.ids.iter().rev().filter_map(decode).collect();
    hub(Incoming::History(entries));
    Ok(last)
}

/// Whether the entry `id` is still in the stream.
fn stream_has(con: &mut redis::Connection, id: &str) -> redis::RedisResult<bool> {
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(STREAM)
        .arg(id)
        .arg(id)
        .query(con)?;
    Ok(!reply.ids.is_empty())
}

/// Follows the stream until an error or `stop`.
fn follow(
    con: &mut redis::Connection,
    hub: &ToHub,
    stop: &AtomicBool,
    last_id: Option<&mut String>,
    away_until: Option<u64>,
) -> redis::RedisResult<()> {
    let Some(last_id) = last_id else {
        return Ok(());
    };
    let block_millis = u64::try_from(BLOCK.as_millis()).unwrap_or(500);
    while !stop.load(Ordering::SeqCst) {
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(512)
            .arg("BLOCK")
            .arg(block_millis)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(last_id.as_str())
            .query(con)?;
        for key in reply.map(|reply| reply.keys).unwrap_or_default() {
            for entry in &key.ids {
                *last_id = entry.id.clone();
                let Some((_, envelope)) = decode(entry) else {
                    continue;
                };
                let late = away_until.is_some_and(|until| entry_millis(&entry.id) < until);
                let delivered = Incoming::Delivered { envelope, late };
                if !hub(delivered) {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// The millisecond time in an entry id (`1733070000000-0`).
fn entry_millis(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// Fuzzing (fuzz/): any bytes as Redis's answer to XREAD, read as the link reads it: never a
/// panic, and what it delivers is as safe as a client's input (see `wire::fuzz_fields`).
#[cfg(fuzzing)]
pub(crate) fn fuzz_reply(data: &[u8]) {
    let Ok(value) = redis::parse_redis_value(data) else {
        return;
    };
    let Ok(Some(reply)) = redis::from_redis_value::<Option<StreamReadReply>>(value) else {
        return;
    };
    for key in reply.keys {
        for entry in &key.ids {
            let _ = entry_millis(&entry.id);
            if let Some((_, envelope)) = decode(entry) {
                super::wire::check_safe(&envelope);
            }
        }
    }
}

fn decode(entry: &StreamId) -> Option<(SystemTime, Envelope)> {
    let fields: HashMap<String, String> = entry
        .map
        .iter()
        .filter_map(|(name, value)| {
            let value: String = redis::from_redis_value_ref(value).ok()?;
            Some((name.clone(), value))
        })
        .collect();
    let at = UNIX_EPOCH + Duration::from_millis(entry_millis(&entry.id));
    Envelope::from_fields(&fields).map(|envelope| (at, envelope))
}
