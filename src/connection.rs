//! One chat client's thread: reads lines, parses them, hands them to the hub, and makes
//! sure the hub hears exactly once that the client left, however the thread ends.

use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::debug;

use crate::error::describe;
use crate::hub::{Event, LeaveReason};
use crate::protocol::{self, Decoded, Input, LineDecoder};
use crate::rate::TokenBucket;
use crate::server::{Connection, Received};
use crate::shutdown::ConnectionId;
use crate::telnet::{Terminal, TerminalUpdate};

/// Bytes read per system call. Small on purpose: the buffer lives on the thread's stack
/// for as long as the client is connected, and at 1 KiB an idle client's stack stays at
/// two resident pages (10,000 idle clients: 10.6 KiB each with 1 KiB, 14.6 KiB with 4 KiB),
/// while fanout throughput measured the same (the hub batches per wake-up, not per read).
const READ_CHUNK: usize = 1024;
/// How long a client that quit or idled out has to close after the hub's goodbye (the
/// hub closes the sending side; see `Connection::wait_for_close`).
const LINGER: Duration = Duration::from_secs(2);

/// Serves one chat client until it quits, closes, idles out or is closed by the hub.
pub(crate) fn serve_client(connection: Connection, hub: &Sender<Event>, limits: ClientLimits) {
    let id = connection.id;
    let joined = Event::Joined {
        id,
        stream: connection.stream.clone(),
        peer: connection.peer,
    };
    if hub.send(joined).is_err() {
        return;
    }
    let mut presence = Presence {
        id,
        hub,
        reason: LeaveReason::ConnectionClosed,
    };
    let mut decoder = LineDecoder::new(limits.max_line);
    let mut terminal = Terminal::default();
    let mut flood_control = TokenBucket::new(limits.rate, limits.burst, Instant::now());
    let mut chunk = [0u8; READ_CHUNK];
    let mut telnet_free = Vec::new();
    loop {
        let mut inputs = Vec::new();
        let mut terminal_update = None;
        let ended = match connection.receive(&mut chunk) {
            Received::Data(bytes) => {
                let data = terminal.data(bytes, &mut telnet_free);
                decoder.feed(data, |item| collect_input(item, &mut inputs, &mut terminal));
                terminal_update = terminal.end_of_read(decoder.unfinished_line());
                false
            }
            Received::Closed => {
                decoder.finish(|item| collect_input(item, &mut inputs, &mut terminal));
                true
            }
            Received::IdleTimeout => {
                presence.reason = LeaveReason::IdleTimeout;
                drop(presence);
                return connection.wait_for_close(LINGER);
            }
            Received::Failed(error) => {
                debug!(
                    "#{id} ({}): read failed: {}",
                    connection.peer,
                    describe(&error)
                );
                return;
            }
        };
        let quit = take_quit(&mut inputs);
        if !forward(
            &connection,
            hub,
            terminal_update,
            inputs,
            &mut flood_control,
        ) {
            return;
        }
        if let Some(reason) = quit {
            presence.reason = LeaveReason::Quit(reason);
            drop(presence);
            return connection.wait_for_close(LINGER);
        }
        if ended {
            return;
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
/// the telnet answers and echo with the first (they cost no token: they are not lines).
/// Waiting for a token keeps this thread from reading, which is what slows a flooder down.
/// Returns false if the connection was closed meanwhile or the hub is gone.
fn forward(
    connection: &Connection,
    hub: &Sender<Event>,
    mut terminal: Option<Box<TerminalUpdate>>,
    inputs: Vec<Input>,
    flood_control: &mut Option<TokenBucket>,
) -> bool {
    let id = connection.id;
    let mut send = |inputs: Vec<Input>| {
        if inputs.is_empty() && terminal.is_none() {
            return true;
        }
        let terminal = terminal.take();
        hub.send(Event::Inputs {
            id,
            terminal,
            inputs,
        })
        .is_ok()
    };
    let Some(bucket) = flood_control else {
        return send(inputs);
    };
    let mut batch = Vec::new();
    for input in inputs {
        while let Err(wait) = bucket.take(Instant::now()) {
            if !send(std::mem::take(&mut batch)) || !connection.pause(wait) {
                return false;
            }
        }
        batch.push(input);
    }
    send(batch)
}

fn collect_input(item: Decoded<'_>, inputs: &mut Vec<Input>, terminal: &mut Terminal) {
    let input = match item {
        Decoded::Line(raw) => {
            let text = protocol::sanitize(raw);
            terminal.line_entered(&text);
            protocol::parse_line(text)
        }
        Decoded::TooLong => Some(Input::TooLong),
    };
    inputs.extend(input);
}

/// Cuts the inputs at the first `/quit`: lines before it are delivered, lines after it are
/// not (the client asked to leave). Returns the quit's reason.
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
    hub: &'a Sender<Event>,
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
