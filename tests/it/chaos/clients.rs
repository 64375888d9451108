//! The run's clients: each node's listener and talkers, their chat client (a socket whose
//! every line is kept with its time, in a transcript threads can wait on), and how the run
//! proves nodes linked with them (private lines between listeners). `Shared` is what the
//! run's threads share: who is in the run, the faults so far, notes for the table.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::NODES;
use super::record::{DONE, FaultWindow, seconds};
use crate::support::PATIENCE;

/// Each talker's pace: flood control's default rate (10 lines a second).
const TALK_INTERVAL: Duration = Duration::from_millis(100);
/// How long a new client may take to be linked: a fault may be under way meanwhile, and a
/// node retries Redis every 5 s at worst.
const LINK_PATIENCE: Duration = Duration::from_secs(30);
/// How long one round of private lines between the listeners may take.
const ROUND_PATIENCE: Duration = Duration::from_secs(5);
/// How long the nodes may take to be linked again after a fault is healed.
pub(super) const RELINK_PATIENCE: Duration = Duration::from_secs(60);

/// A clock shared by every thread of the run: times are since its start.
#[derive(Clone, Copy)]
pub(super) struct Clock(Instant);

impl Clock {
    /// A clock whose time 0 is now.
    pub(super) fn start() -> Clock {
        Clock(Instant::now())
    }

    pub(super) fn now(self) -> Duration {
        self.0.elapsed()
    }
}

/// The lines read from a socket or a process's stderr, with their time, for threads to
/// wait on.
pub(super) struct Transcript {
    state: Mutex<TranscriptState>,
    grew: Condvar,
}

#[derive(Default)]
struct TranscriptState {
    lines: Vec<(Duration, String)>,
    /// The stream ended.
    closed: bool,
}

impl Transcript {
    /// A transcript filled by a thread reading `stream` until it ends.
    pub(super) fn record(
        stream: impl Read + Send + 'static,
        clock: Clock,
    ) -> (Arc<Transcript>, JoinHandle<()>) {
        let transcript = Arc::new(Transcript {
            state: Mutex::new(TranscriptState::default()),
            grew: Condvar::new(),
        });
        let filled = Arc::clone(&transcript);
        let reader = thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            while let Ok(1..) = reader.read_until(b'\n', &mut line) {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\r', '\n']).to_owned();
                filled.state.lock().lines.push((clock.now(), text));
                filled.grew.notify_all();
                line.clear();
            }
            filled.state.lock().closed = true;
            filled.grew.notify_all();
        });
        (transcript, reader)
    }

    fn len(&self) -> usize {
        self.state.lock().lines.len()
    }

    fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    pub(super) fn lines(&self) -> Vec<(Duration, String)> {
        self.state.lock().lines.clone()
    }

    /// The first line from index `from` on that `matches`, waiting for it until
    /// `deadline`; None at the deadline, or once the stream ended without one.
    pub(super) fn wait_for(
        &self,
        from: usize,
        deadline: Instant,
        matches: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let mut state = self.state.lock();
        let mut next = from;
        loop {
            while let Some((_, line)) = state.lines.get(next) {
                if matches(line) {
                    return Some(line.clone());
                }
                next += 1;
            }
            if state.closed || self.grew.wait_until(&mut state, deadline).timed_out() {
                return None;
            }
        }
    }
}

/// A chat client: lines are sent from any thread; what arrives is in its transcript.
pub(super) struct ChatClient {
    writer: Mutex<TcpStream>,
    pub(super) transcript: Arc<Transcript>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl ChatClient {
    /// Connects and waits for the welcome line.
    pub(super) fn join(address: SocketAddr, clock: Clock) -> Option<ChatClient> {
        let stream = TcpStream::connect_timeout(&address, PATIENCE).ok()?;
        let (transcript, reader) = Transcript::record(stream.try_clone().ok()?, clock);
        let client = ChatClient {
            writer: Mutex::new(stream),
            transcript,
            reader: Mutex::new(Some(reader)),
        };
        let welcomed = client
            .transcript
            .wait_for(0, Instant::now() + PATIENCE, |line| {
                line.starts_with("* welcome, ")
            });
        welcomed.map(|_| client)
    }

    /// Sends a line; false once the connection is gone.
    fn send(&self, line: &str) -> bool {
        self.writer
            .lock()
            .write_all(format!("{line}\n").as_bytes())
            .is_ok()
    }

    /// Closes the connection (which ends its reader thread) and joins the reader.
    pub(super) fn close(&self) {
        let _ = self.writer.lock().shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.lock().take() {
            let _ = reader.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Role {
    Listener,
    Talker,
}

/// A listener or a talker of the run, on one node's incarnation.
pub(super) struct Member {
    pub(super) role: Role,
    pub(super) nick: String,
    pub(super) node: usize,
    pub(super) incarnation: usize,
    pub(super) client: ChatClient,
    pub(super) linked_at: Mutex<Option<Duration>>,
    pub(super) killed_at: Mutex<Option<Duration>>,
    /// A talker's lines: (N, when said).
    pub(super) said: Mutex<Vec<(u64, Duration)>>,
}

impl Member {
    fn is_gone(&self) -> bool {
        self.killed_at.lock().is_some() || self.client.transcript.is_closed()
    }
}

/// Who is in the run, as the fault thread and the joining threads see it.
#[derive(Default)]
pub(super) struct Members {
    pub(super) all: Vec<Arc<Member>>,
    /// Each node's listener now, the witness of others' links.
    pub(super) listener: [Option<Arc<Member>>; NODES],
    /// Each node's incarnation: how many times the run restarted it.
    pub(super) incarnation: [usize; NODES],
    /// When the run killed each (node, incarnation).
    pub(super) kills: HashMap<(usize, usize), Duration>,
}

/// What the run's threads share.
pub(super) struct Shared {
    pub(super) clock: Clock,
    addresses: [SocketAddr; NODES],
    pub(super) members: Mutex<Members>,
    /// Rung when a member is added or a node killed.
    pub(super) members_changed: Condvar,
    listeners_joined: AtomicUsize,
    talkers_joined: AtomicUsize,
    next_token: AtomicU64,
    /// Talkers go on while it is true.
    pub(super) talking: AtomicBool,
    pub(super) faults: Mutex<Vec<FaultWindow>>,
    pub(super) notes: Mutex<Vec<String>>,
    /// Threads that join clients or wait for the nodes to be linked again; each ends
    /// within its patience.
    pub(super) helpers: Mutex<Vec<JoinHandle<()>>>,
    pub(super) talkers: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    /// The shared state of a run whose nodes listen on `addresses`, nobody in it yet.
    pub(super) fn new(clock: Clock, addresses: [SocketAddr; NODES]) -> Shared {
        Shared {
            clock,
            addresses,
            members: Mutex::new(Members::default()),
            members_changed: Condvar::new(),
            listeners_joined: AtomicUsize::new(0),
            talkers_joined: AtomicUsize::new(0),
            next_token: AtomicU64::new(0),
            talking: AtomicBool::new(true),
            faults: Mutex::new(Vec::new()),
            notes: Mutex::new(Vec::new()),
            helpers: Mutex::new(Vec::new()),
            talkers: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn note(&self, note: String) {
        self.notes.lock().push(note);
    }

    fn token(&self) -> u64 {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn spawn_helper(self: &Arc<Self>, work: impl FnOnce(&Arc<Shared>) + Send + 'static) {
        let shared = Arc::clone(self);
        let helper = thread::spawn(move || work(&shared));
        self.helpers.lock().push(helper);
    }

    /// Joins a new client to `node` and gives it its nick (`listenerN`, `talkerN`: never
    /// used twice in a run).
    pub(super) fn join_member(
        &self,
        role: Role,
        node: usize,
        incarnation: usize,
    ) -> Option<Member> {
        let nick = match role {
            Role::Listener => format!(
                "listener{}",
                self.listeners_joined.fetch_add(1, Ordering::Relaxed) + 1
            ),
            Role::Talker => format!(
                "talker{}",
                self.talkers_joined.fetch_add(1, Ordering::Relaxed) + 1
            ),
        };
        let Some(client) = ChatClient::join(self.addresses[node], self.clock) else {
            self.note(format!("{nick} could not join n{}", node + 1));
            return None;
        };
        client.send(&format!("/nick {nick}"));
        let renamed = format!("* you are now {nick}");
        let deadline = Instant::now() + PATIENCE;
        if client
            .transcript
            .wait_for(0, deadline, |line| line == renamed)
            .is_none()
        {
            self.note(format!("{nick} on n{} did not get its nick", node + 1));
            client.close();
            return None;
        }
        Some(Member {
            role,
            nick,
            node,
            incarnation,
            client,
            linked_at: Mutex::new(None),
            killed_at: Mutex::new(None),
            said: Mutex::new(Vec::new()),
        })
    }

    /// Waits until `member`'s node is linked both ways (see mod.rs's header comment): a
    /// listener on another node sees it arrive, then sends it a private line.
    fn link(&self, member: &Member) -> bool {
        let deadline = Instant::now() + LINK_PATIENCE;
        let nick = member.nick.as_str();
        let renamed = format!(" is now {nick}");
        let arrived = |line: &str| {
            line.starts_with("* ")
                && ((line.ends_with(" joined") && mentions(line, nick)) || line.ends_with(&renamed))
        };
        while Instant::now() < deadline && !member.is_gone() {
            let Some(witness) = self.witness_for(member.node, deadline) else {
                break;
            };
            // In short slices, so that a member whose node is killed meanwhile gives up.
            let slice = deadline.min(Instant::now() + Duration::from_secs(1));
            if witness
                .client
                .transcript
                .wait_for(0, slice, arrived)
                .is_none()
            {
                continue;
            }
            let token = format!("link-{}", self.token());
            let told = format!("-> you] {token}");
            witness.client.send(&format!("/msg {nick} {token}"));
            let slice = deadline.min(Instant::now() + ROUND_PATIENCE);
            if member
                .client
                .transcript
                .wait_for(0, slice, |line| line.ends_with(&told))
                .is_some()
            {
                let now = self.clock.now();
                *member.linked_at.lock() = Some(now);
                // The witness's node is proven linked too (the first listener's only proof).
                witness.linked_at.lock().get_or_insert(now);
                return true;
            }
        }
        false
    }

    /// A listener on another node than `node`, still connected; waits for one.
    fn witness_for(&self, node: usize, deadline: Instant) -> Option<Arc<Member>> {
        let mut members = self.members.lock();
        loop {
            let witness = (1..NODES)
                .filter_map(|step| members.listener[(node + step) % NODES].clone())
                .find(|listener| !listener.is_gone());
            if witness.is_some() {
                return witness;
            }
            if self
                .members_changed
                .wait_until(&mut members, deadline)
                .timed_out()
            {
                return None;
            }
        }
    }

    /// Adds a linked member to the run: a listener becomes its node's witness, a talker
    /// starts talking. A member whose node was killed meanwhile counts as killed.
    pub(super) fn add(self: &Arc<Self>, member: Member) {
        let member = Arc::new(member);
        {
            let mut members = self.members.lock();
            let incarnation = (member.node, member.incarnation);
            if let Some(&killed_at) = members.kills.get(&incarnation) {
                *member.killed_at.lock() = Some(killed_at);
            } else if member.role == Role::Listener {
                members.listener[member.node] = Some(Arc::clone(&member));
            }
            members.all.push(Arc::clone(&member));
        }
        self.members_changed.notify_all();
        if member.role == Role::Talker {
            let shared = Arc::clone(self);
            let talker = thread::spawn(move || shared.talk(&member));
            self.talkers.lock().push(talker);
        }
    }

    /// Joins and links clients of these roles to `node`, one after the other.
    pub(super) fn populate(self: &Arc<Self>, node: usize, incarnation: usize, roles: &[Role]) {
        for &role in roles {
            let Some(member) = self.join_member(role, node, incarnation) else {
                continue;
            };
            if self.link(&member) {
                self.add(member);
            } else {
                let killed = self.members.lock().kills.contains_key(&(node, incarnation));
                if !killed {
                    self.note(format!(
                        "{} on n{} not linked within {LINK_PATIENCE:?}",
                        member.nick,
                        node + 1
                    ));
                }
                member.client.close();
            }
        }
    }

    /// A talker: `c 1`, `c 2`, ... at its pace until the run says stop, then `c done`.
    fn talk(&self, talker: &Member) {
        let mut next = Instant::now();
        let mut n = 0;
        while self.talking.load(Ordering::SeqCst) {
            next += TALK_INTERVAL;
            let now = Instant::now();
            if next > now {
                thread::sleep(next - now);
            } else {
                next = now; // behind (a slow machine): no burst to catch up
            }
            if talker.is_gone() {
                return;
            }
            n += 1;
            let at = self.clock.now();
            if !talker.client.send(&format!("c {n}")) {
                return;
            }
            talker.said.lock().push((n, at));
        }
        let at = self.clock.now();
        if !talker.is_gone() && talker.client.send("c done") {
            talker.said.lock().push((DONE, at));
        }
    }

    /// One round of private lines n1 to n2, n2 to n3 and n3 to n1 between the listeners,
    /// all linked; true if each arrived before `deadline`.
    fn round_of_private_lines(&self, deadline: Instant) -> bool {
        let listeners: Vec<Arc<Member>> = {
            let mut members = self.members.lock();
            loop {
                let ready: Vec<Arc<Member>> = members
                    .listener
                    .iter()
                    .flatten()
                    .filter(|listener| listener.linked_at.lock().is_some() && !listener.is_gone())
                    .cloned()
                    .collect();
                if ready.len() == NODES {
                    break ready;
                }
                if self
                    .members_changed
                    .wait_until(&mut members, deadline)
                    .timed_out()
                {
                    return false;
                }
            }
        };
        let mut awaited = Vec::new();
        for (index, from) in listeners.iter().enumerate() {
            let to = &listeners[(index + 1) % NODES];
            let token = format!("round-{}", self.token());
            let from_line = to.client.transcript.len();
            from.client.send(&format!("/msg {} {token}", to.nick));
            awaited.push((to, from_line, format!("-> you] {token}")));
        }
        awaited.into_iter().all(|(to, from_line, told)| {
            to.client
                .transcript
                .wait_for(from_line, deadline, |line| line.ends_with(&told))
                .is_some()
        })
    }

    /// Waits until a round of private lines started now goes through; returns when.
    pub(super) fn linked_again(&self, patience: Duration) -> Option<Duration> {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            let round_deadline = deadline.min(Instant::now() + ROUND_PATIENCE);
            if self.round_of_private_lines(round_deadline) {
                return Some(self.clock.now());
            }
        }
        None
    }

    /// Records when the nodes are linked again after fault `index`, on a thread of its own.
    pub(super) fn watch_relink(self: &Arc<Self>, index: usize) {
        self.spawn_helper(move |shared| {
            let linked = shared.linked_again(RELINK_PATIENCE);
            let mut faults = shared.faults.lock();
            let fault = &mut faults[index];
            fault.linked_again = linked;
            if linked.is_none() {
                let (what, at) = (fault.kind.describe(), seconds(fault.started));
                drop(faults);
                shared.note(format!(
                    "nodes not linked again within {RELINK_PATIENCE:?} after {what} at {at}"
                ));
            }
        });
    }
}

/// Whether `nick` is one of the names in a notice such as `* ann, bob and cy joined`.
fn mentions(line: &str, nick: &str) -> bool {
    line.split([' ', ',']).any(|word| word == nick)
}
