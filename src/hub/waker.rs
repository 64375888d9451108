//! Wakes the hub when a client whose kernel buffer was full can take more, so that its
//! pending output goes out the moment it can, not at the next tick of a timer: a tick
//! either wastes wake-ups or adds its period to the latency of everyone a full buffer
//! held back.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};
use log::warn;

use super::Event;
use crate::sys::poll;

/// A thread that polls the sockets the hub could not finish writing to.
pub(crate) struct WritableWatch {
    sockets: Sender<Vec<RawFd>>,
    /// A byte on it makes the thread take the newest set; closing it ends the thread.
    nudge: Option<io::PipeWriter>,
    watched: Vec<RawFd>,
    /// False once the thread has woken the hub: it waits for the set again (even an
    /// unchanged one) before it polls, so that a socket still writable does not make it
    /// spin.
    armed: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WritableWatch {
    /// Starts the thread; `hub` receives [`Event::Writable`]. Without a thread (none could
    /// be started) the hub still retries on its timer.
    pub(crate) fn start(hub: SyncSender<Event>) -> WritableWatch {
        let (sockets, receiver) = crossbeam_channel::unbounded();
        let armed = Arc::new(AtomicBool::new(true));
        let mut watch = WritableWatch {
            sockets,
            nudge: None,
            watched: Vec::new(),
            armed: Arc::clone(&armed),
            thread: None,
        };
        let started = io::pipe().and_then(|(reader, writer)| {
            let thread = thread::Builder::new()
                .name(String::from("writable"))
                .spawn(move || run(&receiver, reader, &hub, &armed))?;
            Ok((writer, thread))
        });
        match started {
            Ok((writer, thread)) => {
                watch.nudge = Some(writer);
                watch.thread = Some(thread);
            }
            Err(error) => warn!("cannot start the writable watch: {error}; retrying on a timer"),
        }
        watch
    }

    /// Watches these sockets from now on (none: stops watching).
    pub(super) fn watch(&mut self, sockets: Vec<RawFd>) {
        if sockets == self.watched && self.armed.load(Ordering::SeqCst) {
            return;
        }
        self.armed.store(true, Ordering::SeqCst);
        self.watched = sockets.clone();
        if self.sockets.send(sockets).is_ok()
            && let Some(nudge) = &mut self.nudge
        {
            let _ = nudge.write_all(&[1]);
        }
    }
}

impl Drop for WritableWatch {
    fn drop(&mut self) {
        self.nudge = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    sockets: &Receiver<Vec<RawFd>>,
    mut nudges: io::PipeReader,
    hub: &SyncSender<Event>,
    armed: &AtomicBool,
) {
    let mut watched: Vec<RawFd> = Vec::new();
    loop {
        while let Ok(newest) = sockets.try_recv() {
            watched = newest;
        }
        let mut fds: Vec<libc::pollfd> = std::iter::once((nudges.as_raw_fd(), libc::POLLIN))
            .chain(watched.iter().map(|&fd| (fd, libc::POLLOUT)))
            .map(|(fd, events)| libc::pollfd {
                fd,
                events,
                revents: 0,
            })
            .collect();
        if poll(&mut fds, None) == 0 {
            continue; // interrupted by a signal
        }
        if fds[0].revents != 0 {
            let mut drained = [0u8; 64];
            match nudges.read(&mut drained) {
                Ok(0) | Err(_) => return, // the hub is gone
                Ok(_) => continue,
            }
        }
        if fds[1..].iter().any(|fd| fd.revents != 0) {
            // Disarmed first: the hub, once woken, then gives the set again even if it did
            // not change, and this thread waits for it.
            armed.store(false, Ordering::SeqCst);
            watched.clear();
            // Never waits: a hub whose channel is full is awake and sends soon anyway.
            if let Err(TrySendError::Disconnected(_)) = hub.try_send(Event::Writable) {
                return;
            }
        }
    }
}
