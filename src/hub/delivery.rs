//! When the hub hands queued output to the kernel: a client's own output at once,
//! broadcast lines in paced passes over everyone.
//!
//! A send costs one system call whose price barely depends on how many lines it carries
//! (on loopback most of it is the kernel waking the reader). In a room of thousands where
//! lines come faster than one pass over the room takes, sending each line on its own has
//! the hub spend all its time in passes of one line each, and leaves no CPU for anything
//! else (people arriving, for one). So a pass begins no sooner than [`PASS_SPACING`] times
//! the CPU time the previous pass took after that one began: the hub spends at most a
//! quarter of its time in passes, and lines said in between go out together, one send per
//! client.
//! A pass over 3,000 clients holds the next for tens of milliseconds, never more than
//! [`MAX_PASS_HOLD`]; one of fewer than [`PACED_PASS_SENDS`] sends holds nothing. The first
//! line after a quiet spell goes out at once.
//!
//! Never held for a pass: a client's own output (its welcome, a reply, its telnet echo),
//! and output the kernel refused at the last try, which goes out as soon as the writable
//! watch (waker.rs) says the socket can take it.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant, SystemTime};

use log::debug;

use super::Client;
use crate::clock::clock_time;
use crate::control::ConnectionId;
use crate::error::describe;
use crate::outbox::Chunk;
use crate::sys::thread_cpu_time;

/// The next pass begins at least this many times the last pass's CPU time after it began.
const PASS_SPACING: u32 = 4;
/// Only a pass with at least this many sends holds the next: a pass over a few dozen
/// clients costs little whatever it carries. Holding every pass in the fanout benchmark
/// (50 clients, 5 senders at full speed) made a third fewer sends and saved no CPU: there
/// the cost is in the connection threads' reads, and a hold only delays lines.
const PACED_PASS_SENDS: usize = 256;
/// However long the last pass took, the next may begin this long after it.
const MAX_PASS_HOLD: Duration = Duration::from_millis(50);
/// While some client has output the kernel would not take, retry this often even if the
/// writable watch says nothing: a safety net, not the way output moves on.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Who has output waiting, and when it goes.
pub(super) struct Delivery {
    max_pending: usize,
    /// Clients with output queued since they were last sent to. May hold an id twice or
    /// one whose output already went: `Client::is_dirty` says whether it still waits.
    waiting: Vec<ConnectionId>,
    /// Clients with output of their own, sent at the end of this wake-up.
    own_output: Vec<ConnectionId>,
    /// Clients whose kernel buffer was full at their last send.
    blocked: Vec<ConnectionId>,
    /// Clients whose outbox passed `max_pending`, to be disconnected.
    pub(super) slow: Vec<ConnectionId>,
    /// When the last pass began, and how long it holds the next one after that.
    pass_began: Instant,
    pass_hold: Duration,
    /// Counts sends to everyone waiting; a client sent to in this sweep is skipped.
    sweep: u64,
}

impl Delivery {
    pub(super) fn new(max_pending: usize) -> Delivery {
        Delivery {
            max_pending,
            waiting: Vec::new(),
            own_output: Vec::new(),
            blocked: Vec::new(),
            slow: Vec::new(),
            pass_began: Instant::now(),
            pass_hold: Duration::ZERO,
            sweep: 0,
        }
    }

    /// Queues `chunk` for `client` (a timestamp before each line if it asked for them).
    pub(super) fn push(&mut self, client: &mut Client, id: ConnectionId, chunk: Chunk) {
        if client.outbox.overflowed {
            return;
        }
        let chunk = if client.shows_time {
            chunk.with_line_prefix(&format!("{} ", clock_time(SystemTime::now())))
        } else {
            chunk
        };
        client.outbox.push(chunk);
        self.check(client, id);
    }

    /// After queueing for `client`: marks it as waiting, or for removal as a slow consumer.
    pub(super) fn check(&mut self, client: &mut Client, id: ConnectionId) {
        if client.outbox.queued() > self.max_pending {
            // Before calling it slow, let the kernel take what it can: a burst larger than
            // max_pending within one wake-up is not the client's fault.
            let sent = client.outbox.send_available(&client.stream);
            if sent.is_err() || client.outbox.queued() > self.max_pending {
                client.outbox.clear();
                client.outbox.overflowed = true;
                self.slow.push(id);
                return;
            }
        }
        if !client.is_dirty {
            client.is_dirty = true;
            self.waiting.push(id);
        }
    }

    /// What was just queued for `id` is its own (a reply, its welcome, echo): it goes out
    /// at the end of this wake-up, not with the next pass.
    pub(super) fn send_soon(&mut self, id: ConnectionId) {
        if self.own_output.last() != Some(&id) {
            self.own_output.push(id);
        }
    }

    /// Sends what is due: own output and blocked clients always, everyone waiting if a
    /// pass is due. Returns the clients whose socket failed: they are gone.
    pub(super) fn send(
        &mut self,
        clients: &mut HashMap<ConnectionId, Client>,
    ) -> Vec<ConnectionId> {
        let mut closed = Vec::new();
        let mut blocked = Vec::new();
        // One sweep: a client is sent to once, whichever lists it is on.
        self.sweep += 1;
        let own_output = std::mem::take(&mut self.own_output);
        let retries = std::mem::take(&mut self.blocked);
        let ids = own_output.into_iter().chain(retries);
        self.send_each(ids, clients, &mut blocked, &mut closed);
        let start = Instant::now();
        if !self.waiting.is_empty() && start >= self.next_pass_at() {
            let waiting = std::mem::take(&mut self.waiting);
            // The pass's cost is the CPU it took, not the time it lasted: a pass preempted
            // for 10 ms by a busy machine must not hold the next for 40 more. Reading the
            // thread's CPU clock is a system call, so only a pass that may hold is timed
            // (`waiting` may list a client twice: it bounds the sends from above).
            let cpu_before = (waiting.len() >= PACED_PASS_SENDS).then(thread_cpu_time);
            let sends = self.send_each(waiting.into_iter(), clients, &mut blocked, &mut closed);
            self.pass_began = start;
            self.pass_hold = match cpu_before {
                Some(before) if sends >= PACED_PASS_SENDS => {
                    let cost = thread_cpu_time().saturating_sub(before);
                    (cost * PASS_SPACING).min(MAX_PASS_HOLD)
                }
                _ => Duration::ZERO,
            };
        }
        self.blocked = blocked;
        closed
    }

    /// One non-blocking send to each of `ids` that still has output and was not sent to
    /// in this sweep; those the kernel could not take in full go to `blocked`. Returns
    /// how many sends it made.
    fn send_each(
        &self,
        ids: impl Iterator<Item = ConnectionId>,
        clients: &mut HashMap<ConnectionId, Client>,
        blocked: &mut Vec<ConnectionId>,
        closed: &mut Vec<ConnectionId>,
    ) -> usize {
        let mut sends = 0;
        for id in ids {
            let Some(client) = clients.get_mut(&id) else {
                continue; // gone since
            };
            if !client.is_dirty || client.sweep == self.sweep {
                continue;
            }
            client.sweep = self.sweep;
            sends += 1;
            match client.outbox.send_available(&client.stream) {
                Ok(()) if client.outbox.is_empty() => client.is_dirty = false,
                Ok(()) => blocked.push(id),
                Err(error) => {
                    debug!("{}: write failed: {}", client.nick, describe(&error));
                    closed.push(id);
                }
            }
        }
        sends
    }

    fn next_pass_at(&self) -> Instant {
        self.pass_began + self.pass_hold
    }

    /// When the hub must wake up for output even if no event comes: the next pass, or the
    /// safety retry of blocked clients.
    pub(super) fn next_due(&self, now: Instant) -> Option<Instant> {
        let pass = (!self.waiting.is_empty()).then(|| self.next_pass_at());
        let retry = (!self.blocked.is_empty()).then(|| now + RETRY_INTERVAL);
        match (pass, retry) {
            (Some(pass), Some(retry)) => Some(pass.min(retry)),
            (pass, retry) => pass.or(retry),
        }
    }

    /// The sockets of the clients whose output the kernel has not taken in full.
    pub(super) fn blocked_sockets(&self, clients: &HashMap<ConnectionId, Client>) -> Vec<RawFd> {
        self.blocked
            .iter()
            .filter_map(|id| clients.get(id))
            .map(|client| client.stream.as_raw_fd())
            .collect()
    }

    /// Forgets everyone (the hub closed all clients).
    pub(super) fn clear(&mut self) {
        self.waiting.clear();
        self.own_output.clear();
        self.blocked.clear();
        self.slow.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;

    use super::*;
    use crate::outbox::{Outbox, line};
    use crate::port::Port;
    use crate::rooms::LOBBY;

    /// A client of the hub whose socket's other end is returned to read from.
    fn connected_client() -> (Client, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let peer = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (stream, address) = listener.accept().expect("accept");
        stream.set_nonblocking(true).expect("non-blocking");
        let client = Client {
            nick: String::from("ann"),
            peer: address,
            stream: Arc::new(stream),
            room: LOBBY,
            shows_time: false,
            is_operator: false,
            is_muted: false,
            outbox: Outbox::new(Port::Chat, None, Default::default()),
            is_dirty: false,
            sweep: 0,
            port: Port::Chat,
            tls: false,
        };
        (client, peer)
    }

    /// Reads until `expected` has arrived (at most 5 s), and returns all that did.
    fn read_until(peer: &mut TcpStream, expected: &str) -> String {
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut text = Vec::new();
        let mut buffer = [0u8; 256];
        while text.len() < expected.len() {
            match peer.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(count) => text.extend_from_slice(&buffer[..count]),
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    #[test]
    fn broadcast_output_waits_for_the_pass_and_own_output_does_not() {
        let (ann, mut ann_end) = connected_client();
        let (bob, mut bob_end) = connected_client();
        let mut clients = HashMap::from([(1, ann), (2, bob)]);
        let mut delivery = Delivery::new(1 << 20);
        // A pass just took long: the next one is an hour away.
        delivery.pass_hold = Duration::from_secs(3600);
        let pass_at = delivery.next_pass_at();
        for id in [1, 2] {
            let client = clients.get_mut(&id).expect("client");
            delivery.push(client, id, Chunk::whole(line("[cat] hello")));
        }
        let client = clients.get_mut(&2).expect("bob");
        delivery.push(client, 2, Chunk::whole(line("* you are bob")));
        delivery.send_soon(2);

        assert!(delivery.send(&mut clients).is_empty());
        // Bob's reply went out at once, and what was queued before it with it.
        let expected = "[cat] hello\n* you are bob\n";
        assert_eq!(read_until(&mut bob_end, expected), expected);
        assert!(
            clients[&1].outbox.queued() > 0,
            "ann's line waits for the pass"
        );
        assert_eq!(delivery.next_due(Instant::now()), Some(pass_at));

        delivery.pass_hold = Duration::ZERO;
        assert!(delivery.send(&mut clients).is_empty());
        assert_eq!(read_until(&mut ann_end, "[cat] hello\n"), "[cat] hello\n");
        assert!(clients.values().all(|client| client.outbox.is_empty()));
        assert_eq!(delivery.next_due(Instant::now()), None);
    }

    fn queue_for_all(
        delivery: &mut Delivery,
        clients: &mut HashMap<ConnectionId, Client>,
        text: &str,
    ) {
        for (&id, client) in clients.iter_mut() {
            delivery.push(client, id, Chunk::whole(line(text)));
        }
    }

    #[test]
    fn only_a_pass_of_many_sends_holds_the_next() {
        for (count, holds) in [(10, false), (PACED_PASS_SENDS + 10, true)] {
            let mut ends = Vec::new(); // kept open: a closed peer would fail the sends
            let mut clients = HashMap::new();
            for id in 1..=count as ConnectionId {
                let (client, peer_end) = connected_client();
                clients.insert(id, client);
                ends.push(peer_end);
            }
            let mut delivery = Delivery::new(1 << 20);
            queue_for_all(&mut delivery, &mut clients, "[cat] hello");
            assert!(delivery.send(&mut clients).is_empty());
            queue_for_all(&mut delivery, &mut clients, "[cat] again");
            // The second line waits for the next pass only after a big first one. (Not
            // compared with the time now: a test preempted for longer than the hold would
            // find the pass due.)
            let due = delivery.next_due(Instant::now()).expect("a pass is due");
            assert_eq!(due, delivery.pass_began + delivery.pass_hold);
            assert_eq!(
                delivery.pass_hold > Duration::ZERO,
                holds,
                "{count} clients"
            );
        }
    }
}
