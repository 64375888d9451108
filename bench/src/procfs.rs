//! What the load generator reads about a server process (and itself) from /proc, and the
//! descriptor limit it needs for thousands of connections.

use std::io;
use std::path::Path;

/// One look at a process: CPU time so far, resident memory, threads, open descriptors.
pub struct ProcSample {
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub threads: u64,
    pub fds: usize,
}

/// Samples process `pid`; a field that cannot be read is 0 (the process may have died).
pub fn proc_sample(pid: u32) -> ProcSample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    ProcSample {
        cpu_s: cpu_seconds(&format!("/proc/{pid}/stat")),
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        fds: count_fds(pid),
    }
}

pub fn count_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// How a process's threads have been scheduled so far, summed over the threads it has now.
#[derive(Clone, Copy, Default)]
pub struct Scheduling {
    /// Context switches, voluntary and not: a thread-per-connection server pays one each
    /// time a thread waits for its socket.
    pub switches: u64,
    /// Nanoseconds the threads were ready to run but waited for a CPU, from the moment they
    /// were woken (or preempted) to the moment they ran (/proc/PID/task/TID/schedstat).
    pub waiting_ns: u64,
}

impl Scheduling {
    pub fn since(&self, before: &Scheduling) -> Scheduling {
        Scheduling {
            switches: self.switches.saturating_sub(before.switches),
            waiting_ns: self.waiting_ns.saturating_sub(before.waiting_ns),
        }
    }

    pub fn add(self, other: Scheduling) -> Scheduling {
        Scheduling {
            switches: self.switches + other.switches,
            waiting_ns: self.waiting_ns + other.waiting_ns,
        }
    }
}

/// Samples how process `pid`'s threads have been scheduled; what cannot be read counts 0.
pub fn scheduling(pid: u32) -> Scheduling {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Scheduling::default();
    };
    tasks
        .filter_map(|task| Some(task_scheduling(&task.ok()?.path())))
        .fold(Scheduling::default(), Scheduling::add)
}

/// One thread's figures, from its /proc/PID/task/TID directory.
fn task_scheduling(task: &Path) -> Scheduling {
    let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
    let switches = status
        .lines()
        .filter(|line| line.contains("ctxt_switches:"))
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    let schedstat = std::fs::read_to_string(task.join("schedstat")).unwrap_or_default();
    Scheduling {
        switches,
        waiting_ns: run_queue_wait_ns(&schedstat),
    }
}

/// The second of schedstat's "time on CPU, time waiting on a run queue, timeslices", all
/// in nanoseconds; 0 if it cannot be read.
fn run_queue_wait_ns(schedstat: &str) -> u64 {
    schedstat
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0)
}

pub fn self_cpu_seconds() -> f64 {
    cpu_seconds("/proc/self/stat")
}

/// Raises this process's soft limit on descriptors to its hard limit: the big-room and
/// capacity scenarios hold thousands of connections, more than the usual soft 1,024.
pub fn raise_descriptor_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit, which lives for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads one valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// utime + stime of a process, from /proc/.../stat.
fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / per_second
}

/// CPU time the machine's host has taken from this (virtual) machine so far, over all its
/// CPUs, in milliseconds ("steal" in /proc/stat); 0 where there is none to read.
pub fn host_steal_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let steal_ticks = stat
        .lines()
        .find_map(|line| line.strip_prefix("cpu "))
        .and_then(|fields| fields.split_whitespace().nth(7)?.parse::<f64>().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    steal_ticks * 1000.0 / per_second
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_queue_wait_is_schedstats_second_field() {
        assert_eq!(run_queue_wait_ns("5000 1234 7\n"), 1234);
        assert_eq!(run_queue_wait_ns(""), 0);
        assert_eq!(run_queue_wait_ns("5000 x 7"), 0);
    }

    #[test]
    fn a_thread_that_slept_counts_a_switch() {
        // This thread alone: other tests' threads may end between the two readings.
        let this_thread = Path::new("/proc/thread-self");
        let before = task_scheduling(this_thread);
        // Not a wait for anything: a sleep is the one way to be sure of giving up the CPU.
        std::thread::sleep(std::time::Duration::from_millis(1));
        assert!(task_scheduling(this_thread).since(&before).switches >= 1);
    }
}
