//! One chat client's thread: reads lines, parses them, hands them to the hub, and makes
//! sure the hub hears exactly once that the client left, however the thread ends.

use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use log::debug;

use crate::control::ConnectionId;
use crate::hub::{Event, LeaveReason};
use crate::protocol::Input;
use crate::rate::TokenBucket;
use crate::service::Connection;
use crate::transport::{ClientInput, DirectOutput, End, Read};

/// How long a client that quit or idled out, or was refused, has to close after the last
/// words it gets (the server closes the sending side; see `Connection::wait_for_close`).
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// Serves one chat client until it quits, closes, idles out or is closed by the hub;
/// `input` is how its bytes arrive (plain TCP with telnet, or WebSocket frames).
pub(crate) fn serve_client(
    connection: Connection,
    hub: &SyncSender<Event>,
    limits: ClientLimits,
    input: &mut dyn ClientInput,
) {
    let id = connection.id;
    let joined = Event::Joined {
        id,
        stream: connection.stream.clone(),
        peer: connection.peer,
        port: input.port(),
        tls: connection.tls.clone(),
    };
    if hub.send(joined).is_err() {
        return;
    }
    let mut presence = Presence {
        id,
        hub,
        reason: LeaveReason::ConnectionClosed,
    };
    let mut flood_control = TokenBucket::new(limits.rate, limits.burst, Instant::now());
    loop {
        let mut inputs = Vec::new();
        let Read { direct, end, cost } = input.read(&connection, &mut inputs);
        let quit = take_quit(&mut inputs);
        if !forward(&connection, hub, direct, inputs, cost, &mut flood_control) {
            return;
        }
        if let Some(reason) = quit {
            presence.reason = LeaveReason::Quit(reason);
            drop(presence);
            return connection.wait_for_close(LINGER);
        }
        match end {
            None => {}
            Some(End::Closed) => return,
            Some(End::IdleTimeout) => {
                presence.reason = LeaveReason::IdleTimeout;
                drop(presence);
                return connection.wait_for_close(LINGER);
            }
            Some(End::Failed(why)) => {
                debug!("#{id} ({}): {why}", connection.peer);
                return;
            }
        }
    }
}

/// Per-client limits applied on the client's own thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientLimits {
    pub max_line: usize,
    /// Lines per second (0 = no flood control).
    pub rate: u32,
    pub burst: u32,
}

/// Hands the inputs of one read to the hub, in as few events as flood control allows,
/// what the transport must write with the first. The read's `cost` is paid first, so that
/// what the transport writes back (telnet answers, pongs) is paced with what caused it.
/// Waiting for a token keeps this thread from reading, which is what slows a flooder down.
/// Returns false if the connection was closed meanwhile or the hub is gone.
#[inline(never)] // a frame of its own: ARCHITECTURE.md, "Stack sizes"
fn forward(
    connection: &Connection,
    hub: &SyncSender<Event>,
    mut direct: Option<Box<DirectOutput>>,
    inputs: Vec<Input>,
    cost: u32,
    flood_control: &mut Option<TokenBucket>,
) -> bool {
    let id = connection.id;
    let mut send = |inputs: Vec<Input>| {
        if inputs.is_empty() && direct.is_none() {
            return true;
        }
        hub.send(Event::Inputs {
            id,
            direct: direct.take(),
            inputs,
        })
        .is_ok()
    };
    let Some(bucket) = flood_control else {
        return send(inputs);
    };
    for _ in 0..cost {
        while let Err(wait) = bucket.take(Instant::now()) {
            connection.metrics.flood_pauses.inc();
            if !connection.pause(wait) {
                // Ended while paying: what was read is still said (see below).
                send(inputs);
                return false;
            }
        }
    }
    let mut batch = Vec::new();
    let mut inputs = inputs.into_iter();
    while let Some(input) = inputs.next() {
        while let Err(wait) = bucket.take(Instant::now()) {
            connection.metrics.flood_pauses.inc();
            if !send(std::mem::take(&mut batch)) {
                return false;
            }
            if !connection.pause(wait) {
                // The connection ended while these lines waited (the client closed and
                // a line to it came back as a reset, or the server is closing): what was
                // read is still said. It is one read's worth, so the room gets no flood.
                batch.push(input);
                batch.extend(inputs);
                send(batch);
                return false;
            }
        }
        batch.push(input);
    }
    send(batch)
}

/// Cuts the inputs at the first `/quit`: lines before it are delivered, lines after it are
/// not (the client asked to leave). Returns the quit's reason.
#[inline(never)] // a frame of its own: ARCHITECTURE.md, "Stack sizes"
fn take_quit(inputs: &mut Vec<Input>) -> Option<Option<String>> {
    let position = inputs
        .iter()
        .position(|input| matches!(input, Input::Quit(_)))?;
    match inputs.drain(position..).next() {
        Some(Input::Quit(reason)) => Some(reason),
        _ => None,
    }
}

/// The client's place in the chat: dropping it tells the hub the client left, exactly once.
struct Presence<'a> {
    id: ConnectionId,
    hub: &'a SyncSender<Event>,
    reason: LeaveReason,
}

impl Drop for Presence<'_> {
    fn drop(&mut self) {
        let reason = std::mem::replace(&mut self.reason, LeaveReason::ConnectionClosed);
        let _ = self.hub.send(Event::Left {
            id: self.id,
            reason,
        });
    }
}
