//! Connection threads, started with `pthread_create` itself rather than `std::thread`.
//!
//! A server with a thread per client keeps a thread for every idle client, so what a
//! thread costs besides its stack is paid per client. `std::thread` gives each thread a
//! signal stack for reporting a stack overflow (two more memory mappings, so only half as
//! many threads fit under vm.max_map_count), an entry in a process-wide map of thread
//! names, a shared handle and result packet, and spawn hooks: about 0.8 KiB of heap and
//! two mappings per thread (measured with heaptrack and /proc/PID/maps). These threads
//! have none of that: one allocation for the body, the name set from the stack, and a
//! panic caught and reported by [`OsThread::join`] (std's panic message calls the thread
//! `<unnamed>`; the supervisor's log line after it gives its number). A stack overflow
//! still lands on the guard page glibc puts below every stack and ends the process, with a
//! plain SIGSEGV instead of std's message.

use std::fmt;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

use crate::sys::page_size;

/// What a thread's start routine returns when its body panicked (success returns null).
const PANICKED: *mut libc::c_void = ptr::without_provenance_mut(1);
/// Longest thread name Linux keeps (16 bytes with the terminating zero).
const MAX_NAME: usize = 15;

/// A running thread, to be joined; dropped unjoined, it is detached (it frees itself
/// when it ends).
#[derive(Debug)]
pub(crate) struct OsThread {
    id: libc::pthread_t,
}

/// The thread's body panicked (the panic hook has already printed why).
#[derive(Debug)]
pub(crate) struct Panicked;

impl OsThread {
    /// Starts `body` on a new thread with a stack of `stack_size` bytes (at least the
    /// system's minimum). Fails, dropping `body`, if the system has no thread to give.
    pub(crate) fn spawn<F>(stack_size: usize, body: F) -> io::Result<OsThread>
    where
        F: FnOnce() + Send + 'static,
    {
        // Whole pages, as std asks for (glibc takes any size from its minimum up).
        let stack_size = stack_size
            .max(libc::PTHREAD_STACK_MIN)
            .next_multiple_of(page_size());
        let mut attributes = MaybeUninit::<libc::pthread_attr_t>::uninit();
        let argument = Box::into_raw(Box::new(body));
        let mut id: libc::pthread_t = 0;
        // SAFETY: the attributes are used and destroyed only once initialised; the start
        // routine takes back the box `argument` points to exactly once, and only if
        // pthread_create succeeded, so it is freed here otherwise.
        let error = unsafe {
            let mut error = libc::pthread_attr_init(attributes.as_mut_ptr());
            if error == 0 {
                error = libc::pthread_attr_setstacksize(attributes.as_mut_ptr(), stack_size);
                if error == 0 {
                    error = libc::pthread_create(
                        &mut id,
                        attributes.as_ptr(),
                        start::<F>,
                        argument.cast(),
                    );
                }
                libc::pthread_attr_destroy(attributes.as_mut_ptr());
            }
            if error != 0 {
                drop(Box::from_raw(argument));
            }
            error
        };
        match error {
            0 => Ok(OsThread { id }),
            error => Err(io::Error::from_raw_os_error(error)),
        }
    }

    /// Waits for the thread to end.
    pub(crate) fn join(self) -> Result<(), Panicked> {
        let id = self.id;
        std::mem::forget(self); // joined here, so not detached
        let mut result = ptr::null_mut();
        // SAFETY: `id` is a thread this handle started, not joined or detached before (the
        // handle is consumed, and only its drop detaches).
        let error = unsafe { libc::pthread_join(id, &mut result) };
        // It can only fail for a thread that is not joinable, which the handle rules out.
        debug_assert_eq!(error, 0, "pthread_join");
        if result == PANICKED {
            Err(Panicked)
        } else {
            Ok(())
        }
    }
}

impl Drop for OsThread {
    fn drop(&mut self) {
        // SAFETY: `id` is a thread this handle started and has not joined.
        unsafe { libc::pthread_detach(self.id) };
    }
}

/// The start routine: runs the body `spawn` boxed, and reports a panic instead of letting
/// it unwind into C (which would abort the process).
extern "C" fn start<F>(argument: *mut libc::c_void) -> *mut libc::c_void
where
    F: FnOnce() + Send + 'static,
{
    // SAFETY: `argument` is the `Box<F>` that `spawn` gave up for this thread; nobody else
    // takes it back.
    let body = unsafe { Box::from_raw(argument.cast::<F>()) };
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(()) => ptr::null_mut(),
        Err(_) => PANICKED,
    }
}

/// Names the calling thread (as `ps -L`, `top -H` and perf show it), cut to 15 bytes,
/// without allocating.
pub(crate) fn set_name(name: fmt::Arguments<'_>) {
    let mut buffer = [0u8; MAX_NAME + 1];
    let mut rest = &mut buffer[..MAX_NAME];
    let _ = rest.write_fmt(name); // too long: cut where the buffer ends
    // SAFETY: `buffer` ends with a zero byte and lives for the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, buffer.as_ptr()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_thread_runs_its_body_and_is_joined() {
        let (sender, receiver) = mpsc::channel();
        let thread = OsThread::spawn(64 * 1024, move || {
            set_name(format_args!("test-{}", 7));
            let name = std::fs::read_to_string("/proc/thread-self/comm").expect("comm");
            let _ = sender.send(name);
        })
        .expect("spawn");
        assert_eq!(receiver.recv().expect("name"), "test-7\n");
        assert!(thread.join().is_ok());
    }

    #[test]
    fn a_panic_is_reported_by_join_and_the_process_goes_on() {
        let thread = OsThread::spawn(64 * 1024, || panic!("on purpose")).expect("spawn");
        assert!(thread.join().is_err());
    }

    #[test]
    fn a_name_is_cut_to_what_linux_keeps() {
        let thread = OsThread::spawn(64 * 1024, || {
            set_name(format_args!("a-very-long-thread-name"));
            let name = std::fs::read_to_string("/proc/thread-self/comm").expect("comm");
            assert_eq!(name, "a-very-long-thr\n");
        })
        .expect("spawn");
        assert!(thread.join().is_ok());
    }
}
