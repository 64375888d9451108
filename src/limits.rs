//! Connection places: `--max-clients`, `--max-per-ip` (every port), the handshakes and
//! scrapes allowed at once, held by a slot guard that gives its place back when dropped,
//! and the ceiling the machine itself puts on threads.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::info;
use parking_lot::Mutex;

use crate::config::Config;
use crate::control::{ConnectionId, Control};
use crate::metrics::Metrics;
use crate::sys::page_size;

/// Memory mappings one connection thread costs: its stack and the guard page below it
/// (os_thread.rs: no signal stack; glibc's allocator arenas are few and shared).
const MAPPINGS_PER_THREAD: usize = 2;
/// Mappings kept for everything else before the threads are counted: the program and its
/// libraries, the other threads (std's cost 4 each), the allocator's arenas as they grow,
/// the hub's large tables (each its own mapping): 63 with 19,000 clients, measured.
const MAPPINGS_KEPT: usize = 2048;
/// Threads and descriptors kept for everything that is not a client (the acceptor, hub and
/// supervisor, log output, the files of dump and send, the program's own mappings): a
/// sixteenth of each limit, at least 8 and at most 256.
fn reserved(limit: usize) -> usize {
    (limit / 16).clamp(8, 256)
}

/// Connections on the way to becoming clients that may be in progress at once: TLS
/// handshakes, web page requests and WebSocket handshakes. A real one takes milliseconds,
/// so 256 carries a class whose browsers all load the page at once; when they are all
/// taken, the oldest is closed to make room, so connections that stall (never send a
/// ClientHello, trickle a request) can delay real ones by nothing more than their turn.
pub const MAX_HANDSHAKES: usize = 256;
/// `/metrics` scrapes served at once. Prometheus scrapes one at a time; 16 leaves room for
/// a few more watchers. When they are all taken, the oldest is closed to make room.
pub const MAX_SCRAPES: usize = 16;

/// What a connection holds a place for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlaceKind {
    /// A client: `--max-clients` (chat, echo, dump and send alike).
    Client,
    /// Not a client yet ([`MAX_HANDSHAKES`]): it becomes one with
    /// [`ConnectionSlot::become_client`].
    Handshake,
    /// A `/metrics` scrape ([`MAX_SCRAPES`]).
    Scrape,
}

/// Connections open now: clients, handshakes, scrapes, and per address.
#[derive(Debug, Default)]
pub(crate) struct Occupancy {
    clients: usize,
    /// Every connection from an address, whatever its port; kept only when `--max-per-ip`
    /// is set.
    per_ip: HashMap<IpAddr, usize>,
    /// Handshakes in progress by connection number (so oldest first), with their sockets,
    /// to close the oldest when all are taken.
    handshakes: BTreeMap<ConnectionId, Arc<TcpStream>>,
    scrapes: BTreeMap<ConnectionId, Arc<TcpStream>>,
    /// `--once`: the one client has come; nobody else becomes one.
    once_taken: bool,
}

/// Why a connection was refused, as the line the client gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    ServerFull,
    TooManyFromAddress,
}

impl Refusal {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Refusal::ServerFull => "server full",
            Refusal::TooManyFromAddress => "too many connections from your address",
        }
    }

    /// The reason as a metrics label.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Refusal::ServerFull => "server_full",
            Refusal::TooManyFromAddress => "per_ip",
        }
    }

    /// The line the refused client receives before the connection closes.
    pub(crate) fn line(&self) -> Vec<u8> {
        format!("! {}\n", self.reason()).into_bytes()
    }
}

/// Shared by the acceptor (which takes places) and the slots (which give them back).
#[derive(Clone)]
pub(crate) struct Places {
    occupancy: Arc<Mutex<Occupancy>>,
    max_clients: usize,
    max_per_ip: usize,
    /// `--once`: one client, then the supervisor is told to stop accepting.
    once: bool,
    metrics: Arc<Metrics>,
}

impl Places {
    pub(crate) fn new(config: &Config, metrics: Arc<Metrics>) -> Places {
        Places {
            occupancy: Arc::default(),
            max_clients: config.max_clients,
            max_per_ip: config.max_per_ip,
            once: config.once,
            metrics,
        }
    }

    /// Takes a place of `kind` for connection `id` from `ip`, or says why there is none. A
    /// handshake or scrape always gets one: when all are taken, the oldest is closed.
    pub(crate) fn take(
        &self,
        id: ConnectionId,
        ip: IpAddr,
        kind: PlaceKind,
        stream: &Arc<TcpStream>,
        control: Sender<Control>,
    ) -> Result<ConnectionSlot, Refusal> {
        let mut occupancy = self.occupancy.lock();
        if kind == PlaceKind::Client {
            self.check_client_place(&occupancy)?;
        }
        if self.max_per_ip > 0 {
            let from_ip = occupancy.per_ip.entry(ip).or_insert(0);
            if *from_ip >= self.max_per_ip {
                return Err(Refusal::TooManyFromAddress);
            }
            *from_ip += 1;
        }
        match kind {
            PlaceKind::Client => self.count_client(&mut occupancy, &control),
            PlaceKind::Handshake => {
                let evicted = make_room(&mut occupancy.handshakes, MAX_HANDSHAKES);
                self.report_eviction(evicted, "handshakes_full", "handshakes in progress");
                occupancy.handshakes.insert(id, Arc::clone(stream));
            }
            PlaceKind::Scrape => {
                let evicted = make_room(&mut occupancy.scrapes, MAX_SCRAPES);
                self.report_eviction(evicted, "scrapes_full", "metrics scrapes");
                occupancy.scrapes.insert(id, Arc::clone(stream));
            }
        }
        Ok(ConnectionSlot {
            id,
            ip,
            kind: Cell::new(kind),
            places: self.clone(),
            control,
        })
    }

    fn check_client_place(&self, occupancy: &Occupancy) -> Result<(), Refusal> {
        if occupancy.clients >= self.max_clients || (self.once && occupancy.once_taken) {
            return Err(Refusal::ServerFull);
        }
        Ok(())
    }

    fn count_client(&self, occupancy: &mut Occupancy, control: &Sender<Control>) {
        occupancy.clients += 1;
        if self.once && !occupancy.once_taken {
            occupancy.once_taken = true;
            let _ = control.send(Control::OneClientCame);
        }
    }

    fn report_eviction(&self, evicted: Option<ConnectionId>, label: &'static str, what: &str) {
        if let Some(id) = evicted {
            info!("closed connection #{id}, the oldest of {what}: all places taken");
            self.metrics.refused(label);
        }
    }

    fn give_back(&self, id: ConnectionId, ip: IpAddr, kind: PlaceKind) {
        let mut occupancy = self.occupancy.lock();
        match kind {
            PlaceKind::Client => occupancy.clients -= 1,
            PlaceKind::Handshake => {
                occupancy.handshakes.remove(&id);
            }
            PlaceKind::Scrape => {
                occupancy.scrapes.remove(&id);
            }
        }
        if let Some(count) = occupancy.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                occupancy.per_ip.remove(&ip);
            }
        }
    }
}

/// Closes the oldest connection of `places` if all `capacity` are taken; returns its number.
fn make_room(
    places: &mut BTreeMap<ConnectionId, Arc<TcpStream>>,
    capacity: usize,
) -> Option<ConnectionId> {
    if places.len() < capacity {
        return None;
    }
    let (id, stream) = places.pop_first()?;
    // Wakes its thread, blocked in a read, which then ends the connection.
    let _ = stream.shutdown(Shutdown::Both);
    Some(id)
}

/// Holds one connection's place; gives it back and reports the end of the connection to
/// the supervisor when dropped, however its thread ends (return, error or panic).
pub(crate) struct ConnectionSlot {
    id: ConnectionId,
    ip: IpAddr,
    kind: Cell<PlaceKind>,
    places: Places,
    control: Sender<Control>,
}

impl ConnectionSlot {
    /// A handshake that is done becomes a client: it takes a client place (its address
    /// keeps its one count), or is refused as a new client would be.
    pub(crate) fn become_client(&self) -> Result<(), Refusal> {
        if self.kind.get() != PlaceKind::Handshake {
            return Ok(());
        }
        let places = &self.places;
        let mut occupancy = places.occupancy.lock();
        places.check_client_place(&occupancy)?;
        occupancy.handshakes.remove(&self.id);
        places.count_client(&mut occupancy, &self.control);
        self.kind.set(PlaceKind::Client);
        Ok(())
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.places.give_back(self.id, self.ip, self.kind.get());
        let _ = self.control.send(Control::Finished(self.id));
    }
}

/// The most connections this machine lets the process hold, and what sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceiling {
    pub connections: usize,
    pub limited_by: &'static str,
}

/// Each client is a thread and a file descriptor. Threads run out at vm.max_map_count /
/// MAPPINGS_PER_THREAD (about 31,700 with the default 65530) long before memory, and a
/// thread that cannot map its stack makes spawn fail (or the process abort), so the
/// server must know the ceiling rather than find it.
pub fn connection_ceiling() -> Ceiling {
    let mut candidates = Vec::new();
    if let Some(maps) = read_proc_number("/proc/sys/vm/max_map_count") {
        let for_threads = maps.saturating_sub(MAPPINGS_KEPT);
        candidates.push((for_threads / MAPPINGS_PER_THREAD, "vm.max_map_count"));
    }
    if let Some(threads) = read_proc_number("/proc/sys/kernel/threads-max") {
        candidates.push((threads, "kernel.threads-max"));
    }
    if let Some(files) = open_file_limit() {
        candidates.push((files, "the open-file limit (ulimit -n)"));
    }
    candidates
        .into_iter()
        .map(|(limit, limited_by)| Ceiling {
            connections: limit.saturating_sub(reserved(limit)),
            limited_by,
        })
        .min_by_key(|ceiling| ceiling.connections)
        .unwrap_or(Ceiling {
            connections: usize::MAX,
            limited_by: "nothing known",
        })
}

fn read_proc_number(path: &str) -> Option<usize> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn open_file_limit() -> Option<usize> {
    let limit = open_file_rlimit()?;
    Some(usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

/// Lifts the soft limit on open files to the hard limit: each client is one descriptor,
/// and the usual soft limit of 1024 would cap the server far below --max-clients.
pub fn raise_open_file_limit() {
    if let Some(mut limit) = open_file_rlimit()
        && limit.rlim_cur < limit.rlim_max
    {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads the struct passed to it.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
}

fn open_file_rlimit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (result == 0).then_some(limit)
}

/// This machine's host name (for a cluster node's default name); `localhost` if unknown.
pub fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at most that.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(buffer.len());
    match (result, std::str::from_utf8(&buffer[..end])) {
        (0, Ok(name)) if !name.is_empty() => name.to_owned(),
        _ => String::from("localhost"),
    }
}

/// At most how often a thread gives back the stack pages it is not using.
const STACK_RELEASE_INTERVAL: Duration = Duration::from_secs(1);

thread_local! {
    /// This thread's stack, lowest address and size, once asked (pthread_getattr_np reads
    /// the thread's CPU set from the kernel each time it is called).
    static STACK: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
    /// When this thread last gave back its unused stack pages.
    static STACK_RELEASED_AT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Gives back the pages of this thread's stack below the one in use, unless it did so
/// less than [`STACK_RELEASE_INTERVAL`] ago: the kernel counts them in nobody's memory
/// until they are touched again (then they read as zero, which is all an unused stack
/// holds). A connection thread calls it before it waits for its client: the join or a
/// burst of work may have reached a page deeper than the wait needs (a full hub channel
/// makes the join's send take the slow, deeper path), and an idle client should not keep
/// it. Once a second is enough for that, and keeps a busy client's reads free of the cost.
pub(crate) fn release_unused_stack() {
    /// Stack kept below this frame's variables: the rest of this frame and the system calls
    /// it makes must stay on pages that are not given back (a return address zeroed under
    /// a call would crash it).
    const MARGIN: usize = 1024;
    let now = Instant::now();
    if STACK_RELEASED_AT
        .get()
        .is_some_and(|at| now - at < STACK_RELEASE_INTERVAL)
    {
        return;
    }
    STACK_RELEASED_AT.set(Some(now));
    let marker = 0u8;
    let in_use = std::ptr::addr_of!(marker) as usize;
    let page = page_size();
    // Everything below the page that holds the margin (the wait to come needs a few
    // hundred bytes, and takes the next page back if it needs it).
    let end = in_use.saturating_sub(MARGIN) & !(page - 1);
    // A stack is touched from the top down without gaps (Rust probes every page of a
    // large frame), so when the page below `end` is not resident, none below it is:
    // nothing to give back, and no need to ask for the stack's bounds. That keeps idle
    // threads from asking at all: pthread_getattr_np allocates and frees, and an idle
    // thread would keep the freed 256 bytes in its malloc cache for as long as it waits.
    if !is_resident(end.wrapping_sub(page)) {
        return;
    }
    let Some((low, size)) = STACK.get().or_else(|| {
        let found = this_thread_stack();
        STACK.set(found);
        found
    }) else {
        return;
    };
    if in_use < low || in_use >= low + size || end <= low {
        return;
    }
    // SAFETY: [low, end) is this thread's own stack, at least MARGIN bytes below this
    // frame's variables, so below every frame in use (this one's and the call's own
    // included); nothing lives there that anyone will read before writing.
    unsafe {
        libc::madvise(low as *mut libc::c_void, end - low, libc::MADV_DONTNEED);
    }
}

/// Whether the page at `address` (page-aligned) is in memory; false if it is not mapped.
fn is_resident(address: usize) -> bool {
    let mut state = 0u8;
    // SAFETY: mincore writes one byte per page asked about into `state`; an address that
    // is not mapped makes it fail (ENOMEM), it does not fault.
    let result = unsafe { libc::mincore(address as *mut libc::c_void, 1, &mut state) };
    result == 0 && state & 1 != 0
}

/// The calling thread's stack: its lowest address and its size.
fn this_thread_stack() -> Option<(usize, usize)> {
    // SAFETY: pthread_getattr_np fills `attributes` for the calling thread, and
    // pthread_attr_getstack reads the stack's lowest address and size out of it; both are
    // plain data, released by pthread_attr_destroy.
    unsafe {
        let mut attributes: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attributes) != 0 {
            return None;
        }
        let mut low: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let found = libc::pthread_attr_getstack(&attributes, &mut low, &mut size);
        libc::pthread_attr_destroy(&mut attributes);
        (found == 0).then_some((low as usize, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a buffer of `N` bytes on the stack; returns its lowest address.
    #[inline(never)]
    fn touch_stack<const N: usize>() -> usize {
        let buffer = std::hint::black_box([1u8; N]);
        buffer.as_ptr() as usize
    }

    #[test]
    fn stack_pages_below_the_caller_are_given_back_and_its_own_kept() {
        let thread = std::thread::Builder::new().stack_size(256 * 1024);
        let (deep_page_kept, own_page_kept) = thread
            .spawn(|| {
                let page = page_size();
                let deep_page = touch_stack::<{ 64 * 1024 }>() & !(page - 1);
                assert!(is_resident(deep_page), "the buffer's pages were touched");
                release_unused_stack();
                let marker = 0u8;
                let own_page = std::ptr::addr_of!(marker) as usize & !(page - 1);
                (is_resident(deep_page), is_resident(own_page))
            })
            .expect("spawn")
            .join()
            .expect("join");
        assert!(!deep_page_kept);
        assert!(own_page_kept);
    }

    /// Places for `max_clients` and `max_per_ip`, with a socket to give each connection.
    struct PlacesUnderTest {
        places: Places,
        control: Sender<Control>,
        heard: crossbeam_channel::Receiver<Control>,
        listener: std::net::TcpListener,
    }

    impl PlacesUnderTest {
        fn new(max_clients: usize, max_per_ip: usize, once: bool) -> PlacesUnderTest {
            let config = Config {
                max_clients,
                max_per_ip,
                once,
                ..Config::localhost()
            };
            let (control, heard) = crossbeam_channel::unbounded();
            PlacesUnderTest {
                places: Places::new(&config, Arc::default()),
                control,
                heard,
                listener: std::net::TcpListener::bind("127.0.0.1:0").expect("bind"),
            }
        }

        /// A connected socket (the server's side), and the client's.
        fn socket(&self) -> (Arc<TcpStream>, TcpStream) {
            let client =
                TcpStream::connect(self.listener.local_addr().expect("address")).expect("connect");
            let (server_side, _) = self.listener.accept().expect("accept");
            (Arc::new(server_side), client)
        }

        fn take(&self, id: u64, ip: &str, kind: PlaceKind) -> Result<ConnectionSlot, Refusal> {
            let (stream, _client) = self.socket();
            let ip = ip.parse().expect("ip");
            self.places
                .take(id, ip, kind, &stream, self.control.clone())
        }
    }

    #[test]
    fn places_are_limited_in_total_and_per_address_and_given_back() {
        let test = PlacesUnderTest::new(3, 2, false);
        let first = test.take(1, "10.0.0.1", PlaceKind::Client).expect("first");
        let _second = test.take(2, "10.0.0.1", PlaceKind::Client).expect("second");
        assert_eq!(
            test.take(3, "10.0.0.1", PlaceKind::Client).err(),
            Some(Refusal::TooManyFromAddress)
        );
        let _third = test
            .take(4, "10.0.0.2", PlaceKind::Client)
            .expect("other address");
        assert_eq!(
            test.take(5, "10.0.0.2", PlaceKind::Client).err(),
            Some(Refusal::ServerFull)
        );
        drop(first);
        assert!(test.take(6, "10.0.0.1", PlaceKind::Client).is_ok());
    }

    #[test]
    fn max_per_ip_zero_lets_one_address_fill_every_place() {
        let test = PlacesUnderTest::new(2, 0, false);
        let first = test.take(1, "10.0.0.1", PlaceKind::Client).expect("first");
        let _second = test.take(2, "10.0.0.1", PlaceKind::Client).expect("second");
        assert_eq!(
            test.take(3, "10.0.0.1", PlaceKind::Client).err(),
            Some(Refusal::ServerFull)
        );
        drop(first);
        assert!(test.take(4, "10.0.0.1", PlaceKind::Client).is_ok());
    }

    #[test]
    fn handshakes_and_scrapes_count_per_address_but_take_no_client_place() {
        let test = PlacesUnderTest::new(1, 2, false);
        let _scrape = test.take(1, "10.0.0.1", PlaceKind::Scrape).expect("scrape");
        let handshake = test
            .take(2, "10.0.0.1", PlaceKind::Handshake)
            .expect("handshake");
        assert_eq!(
            test.take(3, "10.0.0.1", PlaceKind::Client).err(),
            Some(Refusal::TooManyFromAddress)
        );
        let _client = test.take(4, "10.0.0.2", PlaceKind::Client).expect("client");
        // The handshake is done, but the one client place is taken.
        assert_eq!(handshake.become_client(), Err(Refusal::ServerFull));
    }

    #[test]
    fn a_handshake_that_becomes_a_client_takes_a_client_place() {
        let test = PlacesUnderTest::new(1, 0, false);
        let handshake = test
            .take(1, "10.0.0.1", PlaceKind::Handshake)
            .expect("handshake");
        handshake.become_client().expect("a client place");
        assert_eq!(
            test.take(2, "10.0.0.1", PlaceKind::Client).err(),
            Some(Refusal::ServerFull)
        );
        drop(handshake);
        assert!(test.take(3, "10.0.0.1", PlaceKind::Client).is_ok());
    }

    #[test]
    fn when_every_handshake_place_is_taken_the_oldest_is_closed() {
        let test = PlacesUnderTest::new(1, 0, false);
        let mut clients = Vec::new();
        let mut slots = Vec::new();
        for id in 1..=MAX_HANDSHAKES as u64 + 1 {
            let (stream, client) = test.socket();
            let ip = "10.0.0.1".parse().expect("ip");
            let taken =
                test.places
                    .take(id, ip, PlaceKind::Handshake, &stream, test.control.clone());
            slots.push(taken.expect("a handshake always gets a place"));
            clients.push(client);
        }
        // The first connection was shut down: its client reads the end at once.
        let mut buffer = [0u8; 1];
        clients[0]
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        assert_eq!(
            std::io::Read::read(&mut clients[0], &mut buffer).ok(),
            Some(0)
        );
        assert_eq!(
            test.places.occupancy.lock().handshakes.len(),
            MAX_HANDSHAKES
        );
        assert!(!test.places.occupancy.lock().handshakes.contains_key(&1));
    }

    #[test]
    fn once_lets_one_client_in_and_tells_the_supervisor() {
        let test = PlacesUnderTest::new(10, 0, true);
        let _page = test
            .take(1, "10.0.0.1", PlaceKind::Handshake)
            .expect("page");
        let _scrape = test.take(2, "10.0.0.1", PlaceKind::Scrape).expect("scrape");
        assert!(
            test.heard.try_recv().is_err(),
            "pages and scrapes do not count"
        );
        let client = test
            .take(3, "10.0.0.1", PlaceKind::Handshake)
            .expect("client");
        client.become_client().expect("the one client");
        assert!(matches!(test.heard.try_recv(), Ok(Control::OneClientCame)));
        assert_eq!(
            test.take(4, "10.0.0.1", PlaceKind::Client).err(),
            Some(Refusal::ServerFull)
        );
        drop(client);
        assert_eq!(
            test.take(5, "10.0.0.1", PlaceKind::Client).err(),
            Some(Refusal::ServerFull),
            "one client, ever"
        );
    }

    #[test]
    fn the_ceiling_is_below_the_machine_limits() {
        let ceiling = connection_ceiling();
        assert!(ceiling.connections > 0);
        if let Some(maps) = read_proc_number("/proc/sys/vm/max_map_count") {
            assert!(ceiling.connections <= maps / MAPPINGS_PER_THREAD);
        }
    }
}
