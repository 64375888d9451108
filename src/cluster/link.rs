//! The cluster's two Redis connections, each on a thread of its own, so that the hub never
//! waits on Redis: the writer takes the hub's requests from a channel (publish an event,
//! claim a nick, ...) and keeps the node's lease; the reader follows the stream and hands
//! every entry to the hub, in the stream's order.
//!
//! Redis data (keys under `tcpchat:`):
//! - `events`: the stream every node writes its shared events to (XADD, bounded by MAXLEN)
//!   and reads them all back from (XREAD BLOCK from the last id it saw).
//! - `node:NAME`: the node's lease, renewed every third of `--cluster-timeout`.
//! - `nodes`: the names of the nodes, to check each other's leases.
//! - `nicks`: lower-cased nick to `NODE<TAB>CLAIMED_AT_MICROS`, claimed atomically (a script).
//! - `guests`: the counter guest numbers are taken from, 64 at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{info, warn};
use parking_lot::Mutex;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};

use super::wire::Envelope;
use super::{ClusterSettings, Incoming, Outgoing, ToHub};

const STREAM: &str = "tcpchat:events";
const NODES: &str = "tcpchat:nodes";
const NICKS: &str = "tcpchat:nicks";
const GUESTS: &str = "tcpchat:guests";
const NODE_PREFIX: &str = "tcpchat:node:";
/// Entries the stream keeps (approximately): history for late joiners, and what a node
/// that lost its link for a moment reads when it comes back.
const STREAM_LENGTH: usize = 100_000;
/// Events written to the stream in one round trip at most: what waited while the last
/// round trip was under way.
const PUBLISH_BATCH: usize = 256;
/// Guest numbers taken from Redis at a time.
pub(crate) const GUEST_BLOCK: u64 = 64;
/// How long a connection attempt or a command may take before the link counts as down.
/// Short: while a stalled Redis is not yet found out, this node's own lines wait for it.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long the reader waits in XREAD for new entries before asking again.
const BLOCK: Duration = Duration::from_millis(500);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// Claims a nick for a node: granted if free, held by this node, held by a node whose lease
/// ran out, or held by another node that claimed it later (during a split; that node is
/// named in the reply so that its user can be renamed). Returns {granted, previous owner}.
const CLAIM_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
local mine = ARGV[2] .. '\t' .. ARGV[3]
if current then
  local owner, at = string.match(current, '^(.-)\t(%d+)$')
  if owner and owner ~= ARGV[2] and redis.call('EXISTS', ARGV[4] .. owner) == 1 then
    if tonumber(at) <= tonumber(ARGV[3]) then
      return {0, owner}
    end
    redis.call('HSET', KEYS[1], ARGV[1], mine)
    return {1, owner}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], mine)
return {1, ''}
";

/// Takes a block of ARGV[2] guest numbers, all above ARGV[1]; returns the block's last.
const GUESTS_SCRIPT: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return redis.call('INCRBY', KEYS[1], ARGV[2])
";

/// Deletes the nicks held by node ARGV[1].
const RELEASE_NODE_SCRIPT: &str = r"
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.match(all[i + 1], '^(.-)\t') == ARGV[1] then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return 0
";

/// Deletes nick ARGV[1] if node ARGV[2] holds it.
const RELEASE_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and string.match(current, '^(.-)\t') == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
";

/// A command that failed, with the requests it was carrying (handed back to the hub).
type Failure = Box<(redis::RedisError, Vec<Outgoing>)>;

/// Whether each of the two connections works; the hub hears when both together change.
pub(crate) struct LinkState {
    inner: Mutex<(bool, bool, bool)>,
    hub: ToHub,
}

impl LinkState {
    pub(crate) fn new(hub: ToHub) -> Arc<LinkState> {
        Arc::new(LinkState {
            inner: Mutex::new((false, false, false)),
            hub,
        })
    }

    fn set(&self, writer: Option<bool>, reader: Option<bool>) {
        let mut state = self.inner.lock();
        let (old_writer, old_reader, reported) = *state;
        let (writer, reader) = (writer.unwrap_or(old_writer), reader.unwrap_or(old_reader));
        let up = writer && reader;
        *state = (writer, reader, up);
        if up != reported {
            // Sent under the lock, so that the hub hears the changes in the order they
            // happened.
            let incoming = if up {
                Incoming::LinkUp
            } else {
                Incoming::LinkDown
            };
            (self.hub)(incoming);
        }
    }
}

fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(url)?;
    let connection = client.get_connection_with_timeout(COMMAND_TIMEOUT)?;
    connection.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    Ok(connection)
}

/// Microseconds since the epoch: when a nick was claimed (fine enough that two claims a
/// moment apart are told apart), and a node's incarnation.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

/// Logs a failure once per outage.
struct Outage {
    what: &'static str,
    logged: bool,
}

impl Outage {
    fn failed(&mut self, settings: &ClusterSettings, error: &redis::RedisError) {
        if !self.logged {
            warn!(
                "cluster {} lost ({}): {error}; retrying",
                self.what, settings.redacted_url
            );
            self.logged = true;
        }
    }

    fn recovered(&mut self, settings: &ClusterSettings) {
        if std::mem::take(&mut self.logged) {
            info!("cluster {} back ({})", self.what, settings.redacted_url);
        }
    }
}

/// The writer thread: the hub's requests, in order, and the node's lease.
pub(crate) fn run_writer(
    settings: ClusterSettings,
    requests: Receiver<Outgoing>,
    hub: ToHub,
    link: Arc<LinkState>,
) {
    let mut connection: Option<redis::Connection> = None;
    let mut retry = FIRST_RETRY;
    let mut next_try = Instant::now();
    let mut next_heartbeat = Instant::now();
    let mut outage = Outage {
        what: "link (writer)",
        logged: false,
    };
    let heartbeat_every = settings.timeout / 3;
    // A request taken from the channel while gathering a batch, to be handled next.
    let mut taken: Option<Outgoing> = None;
    loop {
        if connection.is_none() && Instant::now() >= next_try {
            match connect(&settings.url).and_then(|mut con| {
                con.set_read_timeout(Some(COMMAND_TIMEOUT))?;
                register(&mut con, &settings)?;
                Ok(con)
            }) {
                Ok(con) => {
                    outage.recovered(&settings);
                    connection = Some(con);
                    retry = FIRST_RETRY;
                    next_heartbeat = Instant::now() + heartbeat_every;
                    link.set(Some(true), None);
                }
                Err(error) => {
                    outage.failed(&settings, &error);
                    link.set(Some(false), None);
                    next_try = Instant::now() + retry;
                    retry = (retry * 2).min(LAST_RETRY);
                }
            }
        }
        let wake_at = if connection.is_some() {
            next_heartbeat
        } else {
            next_try
        };
        let received = match taken.take() {
            Some(request) => Ok(request),
            None => requests.recv_timeout(wake_at.saturating_duration_since(Instant::now())),
        };
        let request = match received {
            Ok(Outgoing::Stop) | Err(RecvTimeoutError::Disconnected) => {
                if let Some(con) = &mut connection {
                    unregister(con, &settings);
                }
                return;
            }
            Ok(request) => Some(request),
            Err(RecvTimeoutError::Timeout) => None,
        };
        let Some(con) = &mut connection else {
            if let Some(request) = request {
                refuse(request, &hub);
            }
            continue;
        };
        let result = match request {
            // Events waiting behind this one go in the same round trip to Redis.
            Some(Outgoing::Publish(envelope)) => {
                let mut batch = vec![envelope];
                while batch.len() < PUBLISH_BATCH {
                    match requests.try_recv() {
                        Ok(Outgoing::Publish(next)) => batch.push(next),
                        Ok(other) => {
                            taken = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                publish(con, batch)
            }
            Some(Outgoing::CheckLink) => {
                next_heartbeat = Instant::now() + heartbeat_every;
                heartbeat(con, &settings, &hub)
            }
            Some(request) => execute(con, &settings, request, &hub),
            None => {
                next_heartbeat = Instant::now() + heartbeat_every;
                heartbeat(con, &settings, &hub)
            }
        };
        if let Err(failure) = result {
            let (error, carried) = *failure;
            outage.failed(&settings, &error);
            connection = None;
            next_try = Instant::now() + retry;
            link.set(Some(false), None);
            for request in carried.into_iter().chain(taken.take()) {
                if let Outgoing::Stop = request {
                    return;
                }
                refuse(request, &hub);
            }
            // What the hub asked for meanwhile is handed back, not sent later: the hub
            // delivers it locally now that the link is down.
            for request in requests.try_iter() {
                if let Outgoing::Stop = request {
                    return;
                }
                refuse(request, &hub);
            }
        }
    }
}

/// Takes the node's lease and puts its name on the list.
fn register(con: &mut redis::Connection, settings: &ClusterSettings) -> redis::RedisResult<()> {
    let key = format!("{NODE_PREFIX}{}", settings.node);
    let holder: Option<String> = redis::cmd("GET").arg(&key).query(con)?;
    if let Some(holder) = holder
        && holder != settings.incarnation.to_string()
    {
        warn!(
            "another live node uses the name {} (see --node-name)",
            settings.node
        );
    }
    lease(con, settings)?;
    redis::cmd("SADD")
        .arg(NODES)
        .arg(&settings.node)
        .query::<()>(con)
}

fn lease(con: &mut redis::Connection, settings: &ClusterSettings) -> redis::RedisResult<()> {
    let millis = u64::try_from(settings.timeout.as_millis()).unwrap_or(u64::MAX);
    redis::cmd("SET")
        .arg(format!("{NODE_PREFIX}{}", settings.node))
        .arg(settings.incarnation)
        .arg("PX")
        .arg(millis)
        .query(con)
}

/// A clean stop: the lease and the node's nicks go at once.
fn unregister(con: &mut redis::Connection, settings: &ClusterSettings) {
    let _ = redis::cmd("DEL")
        .arg(format!("{NODE_PREFIX}{}", settings.node))
        .query::<()>(con);
    let _ = redis::cmd("SREM")
        .arg(NODES)
        .arg(&settings.node)
        .query::<()>(con);
    let _ = redis::Script::new(RELEASE_NODE_SCRIPT)
        .key(NICKS)
        .arg(&settings.node)
        .invoke::<()>(con);
}

/// Renews the lease and looks for nodes whose lease ran out: the first node to see one
/// gone (SREM answers 1 to it alone) frees its nicks and tells its hub.
fn heartbeat(
    con: &mut redis::Connection,
    settings: &ClusterSettings,
    hub: &ToHub,
) -> Result<(), Failure> {
    let failed = |error| Box::new((error, Vec::new()));
    lease(con, settings).map_err(failed)?;
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(NODES)
        .query(con)
        .map_err(failed)?;
    for node in nodes.iter().filter(|node| **node != settings.node) {
        let alive: bool = redis::cmd("EXISTS")
            .arg(format!("{NODE_PREFIX}{node}"))
            .query(con)
            .map_err(failed)?;
        if alive {
            continue;
        }
        let removed: i64 = redis::cmd("SREM")
            .arg(NODES)
            .arg(node)
            .query(con)
            .map_err(failed)?;
        if removed == 1 {
            redis::Script::new(RELEASE_NODE_SCRIPT)
                .key(NICKS)
                .arg(node)
                .invoke::<()>(con)
                .map_err(failed)?;
            hub(Incoming::NodeExpired(node.clone()));
        }
    }
    Ok(())
}

fn execute(
    con: &mut redis::Connection,
    settings: &ClusterSettings,
    request: Outgoing,
    hub: &ToHub,
) -> Result<(), Failure> {
    match request {
        Outgoing::Publish(envelope) => publish(con, vec![envelope]),
        Outgoing::ClaimNick {
            id,
            nick,
            claimed_at,
        } => {
            let reply: redis::RedisResult<(i64, String)> = redis::Script::new(CLAIM_SCRIPT)
                .key(NICKS)
                .arg(nick.to_ascii_lowercase())
                .arg(&settings.node)
                .arg(claimed_at)
                .arg(NODE_PREFIX)
                .invoke(con);
            match reply {
                Ok((granted, previous)) => {
                    let answer = Incoming::NickClaimed {
                        id,
                        nick,
                        granted: Some(granted == 1),
                        taken_from: (granted == 1 && !previous.is_empty()).then_some(previous),
                    };
                    hub(answer);
                    Ok(())
                }
                Err(error) => Err(Box::new((
                    error,
                    vec![Outgoing::ClaimNick {
                        id,
                        nick,
                        claimed_at,
                    }],
                ))),
            }
        }
        Outgoing::ReleaseNick(nick) => redis::Script::new(RELEASE_SCRIPT)
            .key(NICKS)
            .arg(nick.to_ascii_lowercase())
            .arg(&settings.node)
            .invoke::<()>(con)
            .map_err(|error| Box::new((error, Vec::new()))),
        Outgoing::NeedGuests { in_use } => {
            let reply = redis::Script::new(GUESTS_SCRIPT)
                .key(GUESTS)
                .arg(in_use)
                .arg(GUEST_BLOCK)
                .invoke::<u64>(con);
            match reply {
                Ok(end) => {
                    let numbers = end.saturating_sub(GUEST_BLOCK) + 1..end + 1;
                    hub(Incoming::GuestNumbers(numbers));
                    Ok(())
                }
                Err(error) => Err(Box::new((error, vec![Outgoing::NeedGuests { in_use }]))),
            }
        }
        Outgoing::CheckLink | Outgoing::Stop => Ok(()),
    }
}

/// Writes events to the stream, all in one round trip. If it fails, any of them may have
/// landed or not: all go back to the hub, and the sequence numbers make sure that one that
/// did land and is sent again later is applied once.
fn publish(con: &mut redis::Connection, batch: Vec<Envelope>) -> Result<(), Failure> {
    let mut pipeline = redis::pipe();
    for envelope in &batch {
        let command = pipeline
            .cmd("XADD")
            .arg(STREAM)
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_LENGTH)
            .arg("*");
        for (name, value) in envelope.to_fields() {
            command.arg(name).arg(value);
        }
    }
    match pipeline.query::<Vec<String>>(con) {
        Ok(_) => Ok(()),
        Err(error) => {
            let requests = batch.into_iter().map(Outgoing::Publish).collect();
            Err(Box::new((error, requests)))
        }
    }
}

/// What the hub asked for while the link is down goes back to it, answered locally.
fn refuse(request: Outgoing, hub: &ToHub) {
    let answer = match request {
        Outgoing::Publish(envelope) => Incoming::Unpublished(envelope),
        Outgoing::ClaimNick { id, nick, .. } => Incoming::NickClaimed {
            id,
            nick,
            granted: None,
            taken_from: None,
        },
        Outgoing::ReleaseNick(_)
        | Outgoing::NeedGuests { .. }
        | Outgoing::CheckLink
        | Outgoing::Stop => return,
    };
    hub(answer);
}

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
    let mut entries: Vec<(SystemTime, Envelope)> =
        reply.ids.iter().rev().filter_map(decode).collect();
    entries.retain(|(_, envelope)| matches!(envelope.event, super::wire::Shared::Said { .. }));
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
