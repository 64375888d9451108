//! The system calls several layers share, in one place below them all.

use std::io;
use std::time::Duration;

/// Flags for a send that must never block the caller or raise SIGPIPE.
pub(crate) const SEND_NOW: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

/// poll(2): waits until one of `fds` is ready, for at most `timeout` (`None`: no limit;
/// less than a millisecond counts as one). Returns how many are ready, 0 when the time ran
/// out or a signal interrupted the wait.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> usize {
    let millis = timeout.map_or(-1, |timeout| {
        libc::c_int::try_from(timeout.as_millis())
            .unwrap_or(libc::c_int::MAX)
            .max(1)
    });
    let count = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `fds` is a valid slice of `count` pollfd structs for the whole call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), count, millis) };
    usize::try_from(ready).unwrap_or(0)
}

/// Whether a read failed only because its timeout ran out (a socket's read timeout shows
/// as WouldBlock or TimedOut depending on the platform).
pub(crate) fn timed_out(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The CPU time the calling thread has used so far (time it waited for a CPU, preempted,
/// does not count).
pub(crate) fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `now`, which lives for the call.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if result != 0 {
        return Duration::ZERO;
    }
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(now.tv_nsec).unwrap_or(0);
    Duration::new(seconds, nanos)
}

/// The system's page size (4 KiB on x86-64; 16 or 64 KiB on some ARM kernels).
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf only reads a value the kernel gave the process at start.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}
