//! The connection threads: each serves its client, then waits a moment for the next one
//! the acceptor hands it, and tells the supervisor when it ends.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::control::Control;
use crate::port::Port;
use crate::service::{Connection, Service};
use crate::web;

/// What the connection threads share: one reference each instead of a copy of each part.
pub(super) struct Workers {
    pub(super) service: Arc<dyn Service>,
    pub(super) control: Sender<Control>,
    /// Where a thread that finished its client waits for the next.
    pub(super) waiting_for_jobs: Receiver<Job>,
}

/// A connection (holding its place), waiting for a thread.
pub(super) struct Job {
    pub(super) connection: Connection,
}

/// How long a connection thread that finished its client waits for another before it
/// ends. Long enough to carry a burst of short connections, short enough that a quiet
/// server does not keep threads it no longer needs.
const WORKER_IDLE: Duration = Duration::from_secs(2);

/// A connection thread: serves its first client, then whoever the acceptor hands it next,
/// one at a time, until none comes within [`WORKER_IDLE`] or the acceptor is gone.
pub(super) fn run_worker(first: Job, service: &dyn Service, jobs: &Receiver<Job>) {
    let mut job = first;
    loop {
        serve_job(job, service);
        job = match next_job(jobs) {
            Some(next) => next,
            None => return,
        };
    }
}

// The two halves of a worker's loop in frames of their own (never inlined): what one of
// them needs on the stack is not held while the other runs, so that an idle client's
// thread stays at the stack pages it would touch without reuse (ARCHITECTURE.md, "Stack
// sizes"; the memory per idle client is in docs/performance.md).
#[inline(never)]
fn serve_job(job: Job, service: &dyn Service) {
    let Job { connection } = job;
    match connection.port {
        Port::Metrics => web::scrape::serve(connection),
        Port::Chat | Port::Web => service.serve(connection),
    }
}

#[inline(never)]
fn next_job(jobs: &Receiver<Job>) -> Option<Job> {
    jobs.recv_timeout(WORKER_IDLE).ok()
}

/// Tells the supervisor a connection thread ended, however it ends (a panic included).
pub(super) struct WorkerEnded<'a> {
    pub(super) worker: u64,
    pub(super) control: &'a Sender<Control>,
}

impl Drop for WorkerEnded<'_> {
    fn drop(&mut self) {
        let _ = self.control.send(Control::WorkerEnded(self.worker));
    }
}
