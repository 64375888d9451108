//! The ceiling the machine itself puts on threads and descriptors.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_is_below_the_machine_limits() {
        let ceiling = connection_ceiling();
        assert!(ceiling.connections > 0);
        if let Some(maps) = read_proc_number("/proc/sys/vm/max_map_count") {
            assert!(ceiling.connections <= maps / MAPPINGS_PER_THREAD);
        }
    }
}
