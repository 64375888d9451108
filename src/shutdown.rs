//! The supervisor that carries out the shutdown sequence: stop accepting, drain, close
//! what is left, join every thread.
//!
//! The supervisor (see server.rs) reads one channel of [`Control`] messages (control.rs):
//! shutdown
//! requests, and the births and deaths of connection threads. Keeping them on one channel
//! keeps their order: a connection the acceptor reported before it stopped is always seen
//! before the acceptor's `AcceptStopped`.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{info, warn};
use socket2::SockRef;

use crate::control::{ConnectionId, Control};
use crate::error::Error;
use crate::os_thread::OsThread;
use crate::service::Service;
use crate::sys::SEND_NOW;

/// What the supervisor knows of one connection. An entry is complete, and removed, once
/// both the acceptor's `Spawned` and the slot's `Finished` have arrived (in either order).
#[derive(Default)]
struct TrackedConnection {
    spawned: bool,
    finished: bool,
    stream: Option<Arc<TcpStream>>,
}

/// After the goodbye, how long peers get to close their side before the server resets
/// whatever is left. Closing a socket that still holds unread input makes the kernel send a
/// reset, and a reset can destroy the goodbye (and all pending output) on its way to the
/// client; nc and telnet close as soon as they see the server's FIN.
const LINGER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Serving,
    /// Not accepting; connections go on until the drain deadline.
    Draining {
        deadline: Instant,
    },
    /// Goodbyes sent and sending sides closed; waiting for peers to close theirs.
    Lingering {
        deadline: Instant,
    },
    /// Every connection is shut down; waiting for their threads to end.
    Closed,
}

impl Phase {
    fn deadline(self) -> Option<Instant> {
        match self {
            Phase::Draining { deadline } | Phase::Lingering { deadline } => Some(deadline),
            Phase::Serving | Phase::Closed => None,
        }
    }

    fn is_closing(self) -> bool {
        matches!(self, Phase::Lingering { .. } | Phase::Closed)
    }
}

/// Owns every thread handle; turns shutdown requests into the shutdown sequence:
/// stop accepting, drain, close what is left, join everything, finish the service.
pub(crate) struct Supervisor {
    control: Receiver<Control>,
    acceptor: Option<JoinHandle<()>>,
    /// Until `AcceptStopped` arrives, `Spawned` reports of connections may still be queued.
    acceptor_reported_stop: bool,
    /// Closing it (or writing to it) tells the acceptor to stop.
    stop_sender: Option<io::PipeWriter>,
    service: Arc<dyn Service>,
    drain_timeout: Duration,
    connections: HashMap<ConnectionId, TrackedConnection>,
    /// Connection threads, each serving one connection at a time, joined when they end.
    workers: HashMap<u64, OsThread>,
    /// Threads whose end was reported before their start.
    workers_ended_early: HashSet<u64>,
}

impl Supervisor {
    pub(crate) fn new(
        control: Receiver<Control>,
        acceptor: JoinHandle<()>,
        stop_sender: io::PipeWriter,
        service: Arc<dyn Service>,
        drain_timeout: Duration,
    ) -> Supervisor {
        Supervisor {
            control,
            acceptor: Some(acceptor),
            acceptor_reported_stop: false,
            stop_sender: Some(stop_sender),
            service,
            drain_timeout,
            connections: HashMap::new(),
            workers: HashMap::new(),
            workers_ended_early: HashSet::new(),
        }
    }

    pub(crate) fn run(mut self) -> Result<(), Error> {
        let mut phase = Phase::Serving;
        // Connection threads outlive their connections a moment (they wait for the next);
        // once the acceptor is gone they end, and are joined, too.
        while !self.acceptor_reported_stop
            || !self.connections.is_empty()
            || !self.workers.is_empty()
        {
            let received = match phase.deadline() {
                Some(deadline) => self.control.recv_deadline(deadline),
                None => self
                    .control
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            let control = match received {
                Ok(control) => control,
                Err(RecvTimeoutError::Timeout) => {
                    phase = self.next_closing_phase(phase);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            match control {
                Control::Shutdown if phase == Phase::Serving => {
                    info!(
                        "shutting down: {} may go on for up to {}s",
                        connections(self.connections.len()),
                        self.drain_timeout.as_secs()
                    );
                    self.stop_accepting();
                    self.service.begin_drain();
                    phase = Phase::Draining {
                        deadline: Instant::now() + self.drain_timeout,
                    };
                }
                Control::Abort if !phase.is_closing() => {
                    self.stop_accepting();
                    phase = self.next_closing_phase(Phase::Draining {
                        deadline: Instant::now(),
                    });
                }
                Control::Shutdown | Control::Abort => {}
                Control::Spawned { id, stream } => {
                    if phase.is_closing() {
                        // Accepted just before the listener closed: too late to be served.
                        let _ = stream.shutdown(Shutdown::Both);
                    }
                    let tracked = self.connections.entry(id).or_default();
                    tracked.spawned = true;
                    tracked.stream = Some(stream);
                    self.reap(id);
                }
                Control::WorkerStarted { worker, thread } => {
                    if self.workers_ended_early.remove(&worker) {
                        join_worker(worker, thread);
                    } else {
                        self.workers.insert(worker, thread);
                    }
                }
                // It can end before the acceptor reports it started (a short connection).
                Control::WorkerEnded(worker) => match self.workers.remove(&worker) {
                    Some(thread) => join_worker(worker, thread),
                    None => {
                        self.workers_ended_early.insert(worker);
                    }
                },
                Control::Finished(id) => {
                    self.connections.entry(id).or_default().finished = true;
                    self.reap(id);
                }
                Control::OneClientCame => {
                    if phase == Phase::Serving {
                        info!("serving one client (--once): no longer accepting");
                        self.stop_accepting();
                    }
                }
                // stop_accepting joined it, or it stopped by itself (its thread failed).
                Control::AcceptStopped => {
                    self.acceptor_reported_stop = true;
                    self.stop_accepting();
                }
            }
        }
        let result = self.service.finish();
        info!("server closed");
        result
    }

    /// The drain deadline passed: goodbye and FIN to everyone, then linger. The linger
    /// passed: shut down what is left, which wakes every thread still reading.
    fn next_closing_phase(&mut self, phase: Phase) -> Phase {
        match phase {
            Phase::Draining { .. } => {
                info!(
                    "drain timeout: closing {} still open",
                    connections(self.connections.len())
                );
                self.say_goodbye();
                Phase::Lingering {
                    deadline: Instant::now() + LINGER,
                }
            }
            _ => {
                for stream in self.connections.values().filter_map(|c| c.stream.as_ref()) {
                    let _ = stream.shutdown(Shutdown::Both);
                }
                Phase::Closed
            }
        }
    }

    /// Returns once the listener is closed, so that whatever comes next (telling clients
    /// the server is shutting down) never happens while newcomers can still get in.
    fn stop_accepting(&mut self) {
        // Dropping the pipe's only writer makes its reader readable (end of file). The
        // acceptor never waits on the supervisor (its channel is unbounded), so joining it
        // here cannot deadlock; it only finishes accepting what the kernel already queued.
        self.stop_sender = None;
        if let Some(acceptor) = self.acceptor.take()
            && acceptor.join().is_err()
        {
            // It will never send `AcceptStopped`: do not wait for it.
            warn!("the acceptor thread panicked");
            self.acceptor_reported_stop = true;
        }
    }

    /// Lets the service send what it still owes, then writes the goodbye and closes the
    /// sending side of each connection, so that peers see the end and close theirs.
    fn say_goodbye(&mut self) {
        self.service.close_all();
        let goodbye = self.service.goodbye();
        for stream in self.connections.values().filter_map(|c| c.stream.as_ref()) {
            if let Some(line) = &goodbye {
                let _ = SockRef::from(&**stream).send_with_flags(line, SEND_NOW);
            }
            let _ = stream.shutdown(Shutdown::Write);
        }
    }

    /// Forgets a connection once both its start and its end have been reported.
    fn reap(&mut self, id: ConnectionId) {
        let complete = self
            .connections
            .get(&id)
            .is_some_and(|tracked| tracked.spawned && tracked.finished);
        if complete {
            self.connections.remove(&id);
        }
    }
}

/// Joins a connection thread that has ended (at once: it has no more work).
fn join_worker(worker: u64, thread: OsThread) {
    if thread.join().is_err() {
        warn!("connection thread {worker} panicked; the server carries on");
    }
}

/// "1 connection", "2 connections", for the log.
fn connections(count: usize) -> String {
    match count {
        1 => String::from("1 connection"),
        _ => format!("{count} connections"),
    }
}
