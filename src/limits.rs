//! Connection places: `--max-clients` and `--max-per-ip`, held by a slot guard that gives
//! its place back when dropped, and the ceiling the machine itself puts on threads.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::control::{ConnectionId, Control};
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

/// Connections open now, in total and per address.
#[derive(Debug, Default)]
pub(crate) struct Occupancy {
    total: usize,
    /// Kept only when `--max-per-ip` is set.
    per_ip: HashMap<IpAddr, usize>,
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
}

impl Places {
    pub(crate) fn new(max_clients: usize, max_per_ip: usize) -> Places {
        Places {
            occupancy: Arc::default(),
            max_clients,
            max_per_ip,
        }
    }

    /// Takes a place for a connection from `ip`, or says why there is none.
    pub(crate) fn take(
        &self,
        id: ConnectionId,
        ip: IpAddr,
        control: Sender<Control>,
    ) -> Result<ConnectionSlot, Refusal> {
        let mut occupancy = self.occupancy.lock();
        if occupancy.total >= self.max_clients {
            return Err(Refusal::ServerFull);
        }
        if self.max_per_ip > 0 {
            let from_ip = occupancy.per_ip.entry(ip).or_insert(0);
            if *from_ip >= self.max_per_ip {
                return Err(Refusal::TooManyFromAddress);
            }
            *from_ip += 1;
        }
        occupancy.total += 1;
        Ok(ConnectionSlot {
            id,
            ip,
            places: Some(self.clone()),
            control,
        })
    }

    /// A slot that takes no place: for `/metrics` scrapes, which must work on a full
    /// server. It still reports the end of its connection to the supervisor.
    pub(crate) fn uncounted(
        id: ConnectionId,
        ip: IpAddr,
        control: Sender<Control>,
    ) -> ConnectionSlot {
        ConnectionSlot {
            id,
            ip,
            places: None,
            control,
        }
    }

    fn give_back(&self, ip: IpAddr) {
        let mut occupancy = self.occupancy.lock();
        occupancy.total -= 1;
        if let Some(count) = occupancy.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                occupancy.per_ip.remove(&ip);
            }
        }
    }
}

/// Holds one connection's place; gives it back and reports the end of the connection to
/// the supervisor when dropped, however its thread ends (return, error or panic).
pub(crate) struct ConnectionSlot {
    id: ConnectionId,
    ip: IpAddr,
    /// Where its place goes back to (`None`: it took none).
    places: Option<Places>,
    control: Sender<Control>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(places) = &self.places {
            places.give_back(self.ip);
        }
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

    #[test]
    fn places_are_limited_in_total_and_per_address_and_given_back() {
        let places = Places::new(3, 2);
        let (control, _finished) = crossbeam_channel::unbounded();
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let first = places.take(1, a, control.clone()).expect("first");
        let _second = places.take(2, a, control.clone()).expect("second");
        assert_eq!(
            places.take(3, a, control.clone()).err(),
            Some(Refusal::TooManyFromAddress)
        );
        let _third = places.take(4, b, control.clone()).expect("other address");
        assert_eq!(
            places.take(5, b, control.clone()).err(),
            Some(Refusal::ServerFull)
        );
        drop(first);
        assert!(places.take(6, a, control).is_ok());
    }

    #[test]
    fn max_per_ip_zero_lets_one_address_fill_every_place() {
        let places = Places::new(2, 0);
        let (control, _finished) = crossbeam_channel::unbounded();
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let first = places.take(1, a, control.clone()).expect("first");
        let _second = places.take(2, a, control.clone()).expect("second");
        assert_eq!(
            places.take(3, a, control.clone()).err(),
            Some(Refusal::ServerFull)
        );
        drop(first);
        assert!(places.take(4, a, control).is_ok());
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
