//! The ceiling the machine itself puts on threads and descriptors, and giving back the
//! stack pages an idle connection thread does not use.

use std::cell::Cell;
use std::time::{Duration, Instant};

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
///
/// Never inlined: the stack in use is found from a variable of this function's own frame,
/// which is then below every caller's frame. Inlined into a caller, the variable would sit
/// somewhere in the caller's frame, and the caller's variables below it (a buffer) could
/// be given back while in use.
#[inline(never)]
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
    let in_use = std::hint::black_box(std::ptr::addr_of!(marker)) as usize;
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
    // SAFETY: [low, end) is this thread's own stack, at least MARGIN bytes below a
    // variable of this frame, which is never inlined (so every caller's frame is above
    // it); below it are only the rest of this frame and the madvise call's, within the
    // margin. Nothing lives in the range that anyone will read before writing.
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
    fn a_caller_s_variables_survive_the_release_however_large_its_frame() {
        let thread = std::thread::Builder::new().stack_size(256 * 1024);
        let intact = thread
            .spawn(|| {
                let _ = touch_stack::<{ 64 * 1024 }>();
                // Lives in this frame, partly more than a page below its other variables.
                let buffer = std::hint::black_box([7u8; 16 * 1024]);
                release_unused_stack();
                std::hint::black_box(&buffer).iter().all(|&byte| byte == 7)
            })
            .expect("spawn")
            .join()
            .expect("join");
        assert!(intact, "the caller's buffer was given back while in use");
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
