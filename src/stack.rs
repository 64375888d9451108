//! Giving back the stack pages an idle connection thread does not use: most clients wait
//! far longer than they work, and a thread per client must cost what its idle wait needs.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::sys::page_size;

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
/// Never inlined: the stack in use is found from the frame of a function it calls, which
/// is below every frame still in use (its own and its callers'), at the depth where the
/// madvise call then runs. Inlined into a caller, the caller's variables would sit below
/// the point measured only if that function were inlined too, which it never is.
#[inline(never)]
pub(crate) fn release_unused_stack() {
    /// Stack kept below the measured frame: the madvise call's own (its return address; a
    /// system call stub uses no more) must stay on a page that is not given back. The
    /// calls made before it (mincore, pthread_getattr_np) may reach lower: they have
    /// returned when the pages go.
    const MARGIN: usize = 256;
    let now = Instant::now();
    if STACK_RELEASED_AT
        .get()
        .is_some_and(|at| now - at < STACK_RELEASE_INTERVAL)
    {
        return;
    }
    STACK_RELEASED_AT.set(Some(now));
    let in_use = deepest_frame();
    let page = page_size();
    // Everything below the page that holds the margin (the wait to come takes the next
    // page back if it needs it).
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
    // variable of a frame called from this one, which is never inlined: this frame and
    // every caller's are above it. Below it, when madvise runs, is only madvise's own
    // return address, within the margin. Nothing lives in the range that anyone will read
    // before writing.
    unsafe {
        libc::madvise(low as *mut libc::c_void, end - low, libc::MADV_DONTNEED);
    }
}

/// The address of a variable in a frame called from the caller: below all of the caller's
/// frame.
#[inline(never)]
fn deepest_frame() -> usize {
    let marker = 0u8;
    std::hint::black_box(std::ptr::addr_of!(marker)) as usize
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
}
