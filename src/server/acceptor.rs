//! The accept loop, on its own thread: waits on every listener at once, gives each
//! connection its place (or refuses it with a reason) and a thread to be served on.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use log::{debug, info, warn};
use socket2::SockRef;

use super::workers::{Job, WorkerEnded, Workers, run_worker};
use crate::config::Config;
use crate::control::{ConnectionId, Control, ShutdownHandle};
use crate::error::describe;
use crate::metrics::Metrics;
use crate::os_thread::{self, OsThread};
use crate::places::{PlaceKind, Places};
use crate::port::Port;
use crate::service::Connection;
use crate::sys::{SEND_NOW, poll};
use crate::web;

/// How long the acceptor waits before retrying after running out of file descriptors or
/// memory: long enough not to spin, short enough to recover as soon as resources free up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The accept loop, on its own thread.
pub(super) struct Acceptor {
    /// The main listener first, then the web and metrics ones if any.
    pub(super) listeners: Vec<(TcpListener, Port)>,
    pub(super) config: Config,
    pub(super) control: Sender<Control>,
    pub(super) shutdown: ShutdownHandle,
    pub(super) places: Places,
    pub(super) stop_receiver: io::PipeReader,
    pub(super) next_id: ConnectionId,
    pub(super) in_error_burst: bool,
    pub(super) metrics: Arc<Metrics>,
    /// Hands a connection to a thread that waits for one (zero capacity: only a thread
    /// waiting right now takes it). Dropped with the acceptor, which ends the waiting.
    pub(super) parked: Sender<Job>,
    /// What every connection thread shares.
    pub(super) workers: Arc<Workers>,
    pub(super) next_worker: u64,
}

enum Wake {
    /// Connections wait on these listeners (indexes).
    Incoming(Vec<usize>),
    Stop,
}

/// Blocks until a connection is waiting or the supervisor asks the acceptor to stop.
fn wait_for_listeners_or_stop(listeners: &[(TcpListener, Port)], stop: &io::PipeReader) -> Wake {
    let mut fds: Vec<libc::pollfd> = listeners
        .iter()
        .map(|(listener, _)| listener.as_raw_fd())
        .chain([stop.as_raw_fd()])
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        if poll(&mut fds, None) > 0 {
            let (stop, listening) = fds.split_last().expect("the stop pipe is polled");
            if stop.revents != 0 {
                return Wake::Stop;
            }
            let ready = listening
                .iter()
                .enumerate()
                .filter(|(_, fd)| fd.revents != 0)
                .map(|(index, _)| index)
                .collect();
            return Wake::Incoming(ready);
        }
        // Interrupted by a signal: wait again.
    }
}

impl Acceptor {
    pub(super) fn run(mut self) {
        loop {
            match wait_for_listeners_or_stop(&self.listeners, &self.stop_receiver) {
                Wake::Stop => {
                    // Connections the kernel already completed are clients that believe
                    // they are connected and may have sent data: serve them too.
                    for index in 0..self.listeners.len() {
                        self.accept_ready(index);
                    }
                    break;
                }
                Wake::Incoming(ready) => {
                    for index in ready {
                        self.accept_ready(index);
                    }
                }
            }
        }
        self.listeners.clear();
        info!("stopped accepting connections");
        let _ = self.control.send(Control::AcceptStopped);
    }

    /// Accepts every connection waiting in the kernel's queue of listener `index`.
    fn accept_ready(&mut self, index: usize) {
        let port = self.listeners[index].1;
        loop {
            match self.listeners[index].0.accept() {
                Ok((stream, peer)) => {
                    if self.admit(stream, peer, port) {
                        self.in_error_burst = false;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if is_transient_accept_error(&error) => {
                    debug!("accept: {}", describe(&error));
                }
                Err(error) => {
                    // Out of descriptors or memory: the connection stays queued and poll
                    // reports it again at once, so log once per burst and give resources a
                    // moment to come back instead of spinning.
                    if !self.in_error_burst {
                        warn!("cannot accept connections: {}; retrying", describe(&error));
                        self.in_error_burst = true;
                    }
                    thread::sleep(ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// Starts a thread for the connection, or refuses it. Returns whether it was admitted.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, port: Port) -> bool {
        let id = self.next_id;
        // A connection that must finish a handshake (TLS, an HTTP request) before it is a
        // client takes a handshake place, so that stalled handshakes hold no client place.
        let kind = match port {
            Port::Metrics => PlaceKind::Scrape,
            Port::Web => PlaceKind::Handshake,
            Port::Chat if self.config.tls.is_some() => PlaceKind::Handshake,
            Port::Chat => PlaceKind::Client,
        };
        let stream = Arc::new(stream);
        let taken = self
            .places
            .take(id, peer.ip(), kind, &stream, self.control.clone());
        let slot = match taken {
            Ok(slot) => slot,
            Err(refusal) => {
                info!("refused {peer}: {}", refusal.reason());
                self.metrics.refused(refusal.label());
                let line = if self.speaks_tls(port) {
                    Vec::new() // no words before a handshake: a TLS client could not read them
                } else {
                    refusal.line()
                };
                refuse(&stream, port, &line);
                return false;
            }
        };
        self.next_id += 1;
        let connection = Connection {
            id,
            stream: Arc::clone(&stream),
            peer,
            shutdown: self.shutdown.clone(),
            port,
            tls: None,
            metrics: Arc::clone(&self.metrics),
            slot,
        };
        debug!("connection #{id} from {peer}");
        let _ = self.control.send(Control::Spawned {
            id,
            stream: Arc::clone(&stream),
        });
        // A thread that finished its last client waits a moment for the next: taking it
        // costs a wake-up, where a new thread costs a stack mapped and unmapped.
        let job = match self.parked.try_send(Job { connection }) {
            Ok(()) => return true,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => job,
        };
        let worker = self.next_worker;
        let workers = Arc::clone(&self.workers);
        let spawned = OsThread::spawn(self.config.thread_stack_size, move || {
            os_thread::set_name(format_args!("conn-{worker}"));
            let _ended = WorkerEnded {
                worker,
                control: &workers.control,
            };
            run_worker(job, &*workers.service, &workers.waiting_for_jobs);
        });
        match spawned {
            Ok(thread) => {
                self.next_worker += 1;
                let _ = self.control.send(Control::WorkerStarted { worker, thread });
                true
            }
            Err(error) => {
                // The closure, and with it the slot, was dropped: the supervisor hears
                // Finished for this id. Tell the client why it is being closed, and give
                // the machine a moment, as for any other shortage.
                if !self.in_error_burst {
                    warn!("cannot start a thread for {peer}: {}", describe(&error));
                    self.in_error_burst = true;
                }
                self.metrics.refused("busy");
                let line: &[u8] = if self.speaks_tls(port) {
                    b""
                } else {
                    b"! server busy, try again later\n"
                };
                refuse(&stream, port, line);
                thread::sleep(ACCEPT_BACKOFF);
                false
            }
        }
    }
}

impl Acceptor {
    /// Whether connections on `transport` start with a TLS handshake (the metrics port
    /// never does).
    fn speaks_tls(&self, port: Port) -> bool {
        self.config.tls.is_some() && port != Port::Metrics
    }
}

/// Errors that concern one connection attempt, not the listener.
fn is_transient_accept_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::ECONNRESET | libc::EPERM)
    )
}

/// Sends a one-line reason and closes, without ever blocking the acceptor.
/// A browser or a scraper gets the line as the body of a 503 response; an empty line is no words
/// (TLS: nothing is readable before the handshake).
fn refuse(stream: &TcpStream, port: Port, line: &[u8]) {
    if line.is_empty() {
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    let response;
    let bytes = match port {
        Port::Chat => line,
        Port::Web | Port::Metrics => {
            response = web::unavailable_response(line);
            &response
        }
    };
    let _ = SockRef::from(stream).send_with_flags(bytes, SEND_NOW);
    let _ = stream.shutdown(Shutdown::Both);
}
