//! The broadcaster: the one thread that owns the client list.
//!
//! Client threads send it [`Event`]s on one bounded channel; it routes lines and writes to
//! every socket itself with non-blocking sends, so a client that stops reading only ever
//! fills its own outbox and never delays anyone else. Each wake-up drains every queued
//! event first, writing broadcast lines once into a shared round (outbox.rs), and then
//! gives each client one `writev` for all of its new output: at once for a client's own
//! output, in paced passes for broadcasts (hub/delivery.rs).

use std::collections::{HashMap, HashSet};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Instant, SystemTime};

use log::info;

use crate::append::AppendFile;
use crate::cluster::Outgoing;
use crate::cluster::wire::Shared;
use crate::control::ConnectionId;
use crate::history::{Recorder, StoredLine};
use crate::metrics::Metrics;
use crate::outbox::{Chunk, Outbox, Round, SharedBytes, line};
use crate::port::Port;
use crate::protocol::page_events::{self, Closing};
use crate::rooms::{LOBBY, RoomId, Rooms};
use crate::transport::DirectOutput;
use crate::transport::tls::TlsSession;

mod closing;
mod cluster;
mod commands;
mod delivery;
mod events;
mod guesses;
mod notices;
mod page;
mod remote;
mod search;
mod shared;
mod waker;

use cluster::ClusterView;
use delivery::Delivery;
pub(crate) use events::{Event, LeaveReason};
use notices::{BIG_ROOM, GatheredNotices, NoticeBatch, NoticeKind};
pub(crate) use waker::WritableWatch;

/// Events handled per wake-up before writing, so a flood of input cannot postpone output
/// indefinitely.
const MAX_EVENTS_PER_WAKEUP: usize = 4096;

/// What the hub enforces and offers.
#[derive(Clone)]
pub(crate) struct HubSettings {
    pub max_line: usize,
    pub max_pending: usize,
    /// Messages a room remembers for those who join later.
    pub history: usize,
    /// `/op` password; `None`: no operators.
    pub op_password: Option<String>,
    /// Message of the day, shown after the welcome.
    pub motd: Option<SharedBytes>,
    /// Where every public line goes, with its time and room.
    pub transcript: Option<Arc<AppendFile>>,
    /// What the hub counts (`--metrics`).
    pub metrics: Arc<Metrics>,
    /// With `--cluster`: where to send shared events, this node's name and incarnation.
    pub cluster: Option<(crossbeam_channel::Sender<Outgoing>, String, u64)>,
    /// With `--history-db`: the history thread, and the hub's own channel for the answers
    /// to searches.
    pub history_db: Option<(Recorder, SyncSender<Event>)>,
    /// Lines the history file kept, put back in their rooms at start-up.
    pub restored: Vec<StoredLine>,
}

/// Runs the hub on the current thread until [`Event::Stop`].
pub(crate) fn run(events: Receiver<Event>, settings: HubSettings, mut writable: WritableWatch) {
    let mut hub = Hub {
        clients: HashMap::new(),
        nick_owners: HashMap::new(),
        draining: false,
        notices: NoticeBatch::default(),
        gathered: GatheredNotices::default(),
        rooms: Rooms::new(settings.history),
        round: Round::default(),
        delivery: Delivery::new(settings.max_pending),
        cluster: settings
            .cluster
            .clone()
            .map(|(requests, node, incarnation)| ClusterView::new(requests, node, incarnation)),
        settings,
        transcript_pending: Vec::new(),
        history_pending: Vec::new(),
        history_now: None,
        searching: HashSet::new(),
        guesses: guesses::Guesses::default(),
        browsers: 0,
    };
    let restored = std::mem::take(&mut hub.settings.restored);
    hub.restore_history(restored);
    loop {
        // Wait for an event, or for what is due: a pass over waiting output, a retry of
        // blocked output, or the close of a big room's window of notices.
        let wake_at = match (
            hub.delivery.next_due(Instant::now()),
            hub.gathered.next_due(),
        ) {
            (Some(output), Some(notices)) => Some(output.min(notices)),
            (output, notices) => output.or(notices),
        };
        let first = match wake_at {
            None => match events.recv() {
                Ok(event) => Some(event),
                Err(_) => return,
            },
            Some(wake_at) => {
                match events.recv_timeout(wake_at.saturating_duration_since(Instant::now())) {
                    Ok(event) => Some(event),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        };
        let mut stop = false;
        if let Some(event) = first {
            stop = hub.handle(event);
            for event in events.try_iter().take(MAX_EVENTS_PER_WAKEUP) {
                if stop {
                    break;
                }
                stop = hub.handle(event);
            }
        }
        // Before anyone hears of a change, so that a scrape never lags what clients saw.
        hub.settings.metrics.rooms.set(hub.rooms.count() as i64);
        hub.flush_notices();
        hub.gathered.send_due(Instant::now(), &mut hub.round);
        hub.send_pending_output();
        hub.write_transcript();
        hub.flush_history();
        writable.watch(hub.delivery.blocked_sockets(&hub.clients));
        if stop {
            return;
        }
    }
}

struct Hub {
    clients: HashMap<ConnectionId, Client>,
    /// Lower-cased nick to its owner, for uniqueness ignoring case and for `/msg`.
    nick_owners: HashMap<String, ConnectionId>,
    settings: HubSettings,
    /// Transcript lines of this wake-up, not yet written.
    transcript_pending: Vec<u8>,
    /// History lines of this wake-up for the history file, by room, and their time (one
    /// per wake-up), not yet handed over.
    history_pending: Vec<(RoomId, String, String)>,
    history_now: Option<(i64, String)>,
    /// Clients whose `/search` of the history file is under way (search.rs).
    searching: HashSet<ConnectionId>,
    draining: bool,
    notices: NoticeBatch,
    /// Joins and leaves of big rooms, announced a window at a time.
    gathered: GatheredNotices,
    rooms: Rooms,
    /// Broadcast lines of this wake-up, not yet handed to the outboxes.
    round: Round,
    delivery: Delivery,
    /// The other nodes, with `--cluster`.
    cluster: Option<ClusterView>,
    /// Wrong `/op` passwords by address.
    guesses: guesses::Guesses,
    /// Clients that are browsers: without one, no event line for the page is made.
    browsers: usize,
}

struct Client {
    nick: String,
    peer: SocketAddr,
    stream: Arc<TcpStream>,
    room: RoomId,
    /// `/time on`: each line this client receives starts with HH:MM.
    shows_time: bool,
    is_operator: bool,
    is_muted: bool,
    outbox: Outbox,
    /// It has output the kernel has not taken yet (delivery.rs).
    is_dirty: bool,
    /// The last sweep of sends that reached it (delivery.rs).
    sweep: u64,
    /// How it is connected, for the metrics.
    port: Port,
    tls: bool,
}

impl Hub {
    /// Handles one event; returns true on `Stop`.
    fn handle(&mut self, event: Event) -> bool {
        match event {
            Event::Joined {
                id,
                stream,
                peer,
                port,
                tls,
            } => self.join(id, stream, peer, port, tls),
            Event::Inputs { id, direct, inputs } => {
                let lines = inputs.len() as u64;
                self.settings.metrics.lines_received.inc_by(lines);
                match direct {
                    // The transport's last words (a WebSocket close frame): what the read
                    // said is handled first, then they are written and the client goes, so
                    // that nothing (a broadcast line, a reply) follows them.
                    Some(update) if update.closes => {
                        for input in inputs {
                            self.handle_input(id, input);
                        }
                        self.write_direct(id, *update);
                        self.remove(id, LeaveReason::ConnectionClosed, None);
                    }
                    direct => {
                        if let Some(update) = direct {
                            self.write_direct(id, *update);
                        }
                        for input in inputs {
                            self.handle_input(id, input);
                        }
                    }
                }
            }
            Event::Left { id, reason } => {
                let farewell = match &reason {
                    LeaveReason::IdleTimeout => Some("* idle timeout, disconnecting, bye!"),
                    LeaveReason::Quit(_) => Some("* bye!"),
                    _ => None,
                };
                self.remove(id, reason, farewell);
            }
            Event::Draining => {
                self.draining = true;
                self.broadcast(None, &["* server is shutting down"], None);
            }
            Event::CloseAll { done } => {
                self.close_all();
                let _ = done.send(());
            }
            Event::Stop => return true,
            Event::Writable => {}
            Event::Cluster(incoming) => self.handle_cluster(incoming),
            Event::Found { id, text, result } => self.found(id, &text, result),
        }
        false
    }

    fn join(
        &mut self,
        id: ConnectionId,
        stream: Arc<TcpStream>,
        peer: SocketAddr,
        port: Port,
        tls: Option<Arc<TlsSession>>,
    ) {
        let has_tls = tls.is_some();
        let outbox = Outbox::new(port, tls, self.settings.metrics.bytes_sent.clone());
        self.settings.metrics.count_client(port, has_tls, 1);
        let nick = self.guest_nick_for(id);
        info!("{nick} joined from {peer}");
        if !self.notices.is_joins() {
            // Leaves that happened before this client came are not its business.
            self.flush_notices();
        }
        // Nor is anything said before it came.
        self.commit_round();
        self.nick_owners.insert(nick.to_ascii_lowercase(), id);
        self.count_browser(port, 1);
        self.clients.insert(
            id,
            Client {
                nick: nick.clone(),
                peer,
                stream,
                room: LOBBY,
                shows_time: false,
                is_operator: false,
                is_muted: false,
                outbox,
                is_dirty: false,
                sweep: 0,
                port,
                tls: has_tls,
            },
        );
        self.rooms.enter(LOBBY);
        let online = self.online_count();
        let others = if online == 1 {
            String::from("you are the only one here")
        } else {
            format!("{online} online")
        };
        // The welcome skips the notice batch: the joiner is not among its recipients.
        self.queue(
            id,
            line(&format!(
                "* welcome, {nick}! {others}. Type /help for commands."
            )),
        );
        self.tell_page(id, |hub| page_events::you(&nick, hub.rooms.name(LOBBY)));
        self.tell_page(id, |hub| hub.people_event(LOBBY));
        if let Some(motd) = self.settings.motd.clone() {
            self.queue(id, motd);
        }
        if self.draining {
            self.queue(id, line("* server is shutting down"));
        }
        self.send_history(id, LOBBY);
        self.publish(Shared::Joined {
            room: LOBBY,
            id,
            nick,
        });
    }

    /// Removes a client: says `farewell` to it if given, closes it, and tells the others.
    fn remove(&mut self, id: ConnectionId, reason: LeaveReason, farewell: Option<&str>) {
        if !self.clients.contains_key(&id) {
            return; // already removed by the hub itself
        }
        // What was said before the client left is still its to read.
        self.commit_round();
        let Some(mut client) = self.clients.remove(&id) else {
            return; // removed as a slow consumer by the commit
        };
        self.count_browser(client.port, -1);
        self.nick_owners.remove(&client.nick.to_ascii_lowercase());
        self.settings
            .metrics
            .count_client(client.port, client.tls, -1);
        if let Some(farewell) = farewell {
            let closing = match reason {
                LeaveReason::Quit(_) => Some(Closing::Quit),
                LeaveReason::IdleTimeout => Some(Closing::Idle),
                LeaveReason::Kicked { .. } => Some(Closing::Kicked),
                _ => None,
            };
            if let Some(closing) = closing.filter(|_| client.outbox.is_browser()) {
                let event = Chunk::whole(line(&page_events::closing(closing)));
                client.outbox.push(event);
            }
            client.outbox.push_last(Chunk::whole(line(farewell)));
        }
        if reason != LeaveReason::SlowConsumer {
            // Over TLS a client is told the session ends (close_notify), as TLS asks.
            client.outbox.end_tls();
            let _ = client.outbox.send_available(&client.stream);
        }
        // A client that quit or idled out is closed on its sending side only: its thread
        // lingers, reading, until the peer closes too (see client_thread.rs). Anyone else's
        // thread is woken by shutting down both sides; queued bytes still go out.
        let how = match reason {
            LeaveReason::Quit(_) | LeaveReason::IdleTimeout => Shutdown::Write,
            _ => Shutdown::Both,
        };
        let _ = client.stream.shutdown(how);
        info!("{} ({}) left: {reason}", client.nick, client.peer);
        let room = client.room;
        if let Some(cluster) = &mut self.cluster {
            cluster.claimed_at.remove(&id);
            cluster.pending_renames.remove(&id);
            cluster.request(Outgoing::ReleaseNick(client.nick.clone()));
        }
        self.publish(Shared::Left {
            room,
            id,
            nick: client.nick,
            reason: reason.to_string(),
        });
        self.rooms.leave(room);
    }

    fn reply(&mut self, id: ConnectionId, text: String) {
        self.flush_notices();
        self.queue(id, line(&text));
    }

    /// Adds a line made of `parts` for everyone in `room` (every room if `None`) but
    /// `except` to this wake-up's round, and to the transcript.
    fn broadcast(&mut self, room: Option<RoomId>, parts: &[&str], except: Option<ConnectionId>) {
        self.flush_notices();
        if self.settings.transcript.is_some() {
            self.record(room, &parts.concat());
        }
        self.round.push_line(parts, except, room);
    }

    /// A join or leave: batched for the room (see NoticeBatch), one line each in the
    /// transcript.
    fn announce(&mut self, kind: NoticeKind, id: ConnectionId, nick: String, room: RoomId) {
        if self.settings.transcript.is_some() {
            self.record(Some(room), &kind.line(&nick));
        }
        if self.rooms.members(room) >= BIG_ROOM {
            self.gathered.add(kind, nick, room, Instant::now());
        } else {
            self.notices.add(kind, id, nick, room, &mut self.round);
        }
    }

    /// Appends a public line to the transcript's pending text (written once a wake-up).
    fn record(&mut self, room: Option<RoomId>, text: &str) {
        if self.settings.transcript.is_none() {
            return;
        }
        let room = room.map_or("*", |room| self.rooms.name(room));
        let now = humantime::format_rfc3339_millis(SystemTime::now());
        self.transcript_pending
            .extend_from_slice(format!("{now} {room} {text}\n").as_bytes());
    }

    /// Writes the wake-up's transcript lines in one append. A failure is logged once by
    /// the file, and reported again when the server exits.
    fn write_transcript(&mut self) {
        if let Some(file) = &self.settings.transcript
            && !self.transcript_pending.is_empty()
        {
            let _ = file.store(&self.transcript_pending);
            self.transcript_pending.clear();
        }
    }

    /// Queues lines for one client, after everything broadcast before them.
    fn queue(&mut self, id: ConnectionId, bytes: SharedBytes) {
        self.commit_round();
        if let Some(client) = self.clients.get_mut(&id) {
            let lines = bytes.iter().filter(|&&byte| byte == b'\n').count();
            self.settings.metrics.deliveries.inc_by(lines as u64);
            let chunk = client.outbox.encode(Chunk::whole(bytes));
            self.delivery.push(client, id, chunk);
            self.delivery.send_soon(id);
        }
        self.remove_slow_consumers();
    }

    /// Writes what a client's transport asked for (telnet answers and echo, WebSocket
    /// control frames), after everything broadcast before it.
    fn write_direct(&mut self, id: ConnectionId, update: DirectOutput) {
        self.commit_round();
        if let Some(client) = self.clients.get_mut(&id)
            && !client.outbox.overflowed
        {
            client.outbox.push_direct(update);
            self.delivery.check(client, id);
            self.delivery.send_soon(id);
        }
        self.remove_slow_consumers();
    }

    fn flush_notices(&mut self) {
        std::mem::take(&mut self.notices).send(&mut self.round);
    }

    /// Hands the round's lines to every outbox: one shared buffer, ranges per client.
    fn commit_round(&mut self) {
        let Some(sealed) = self.round.seal() else {
            return;
        };
        let mut deliveries = 0;
        for (&id, client) in self.clients.iter_mut() {
            let room = client.room;
            let ending = client.outbox.line_ending();
            let is_browser = client.outbox.is_browser();
            deliveries += sealed.chunks_for(id, room, ending, is_browser, |chunk| {
                self.delivery.push(client, id, chunk)
            });
        }
        self.settings.metrics.deliveries.inc_by(deliveries);
        self.remove_slow_consumers();
    }

    /// Hands the kernel what is due (delivery.rs): one non-blocking send per client.
    fn send_pending_output(&mut self) {
        self.flush_notices();
        self.commit_round();
        for id in self.delivery.send(&mut self.clients) {
            self.remove(id, LeaveReason::ConnectionClosed, None);
        }
        self.remove_slow_consumers();
        // Leaves found while sending go out with the next wake-up's round.
        self.flush_notices();
    }

    fn remove_slow_consumers(&mut self) {
        while let Some(id) = self.delivery.slow.pop() {
            self.settings.metrics.slow_consumers.inc();
            self.remove(id, LeaveReason::SlowConsumer, None);
        }
    }
}
