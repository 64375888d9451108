//! The cluster's writer thread: the hub's requests (publish events, claim nicks, take
//! guest numbers) in order, on a Redis connection of its own, and the node's lease.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::warn;

use super::link::{
    COMMAND_TIMEOUT, FIRST_RETRY, GUEST_BLOCK, GUESTS, LAST_RETRY, LinkState, NICKS, NODE_PREFIX,
    NODES, Outage, STREAM, connect,
};
use super::wire::Envelope;
use super::{ClusterSettings, Incoming, Outgoing, ToHub};

/// Entries the stream keeps (approximately): history for late joiners, and what a node
/// that lost its link for a moment reads when it comes back.
const STREAM_LENGTH: usize = 100_000;
/// Events written to the stream in one round trip at most: what waited while the last
/// round trip was under way.
const PUBLISH_BATCH: usize = 256;
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
