//! The listener every subcommand shares: binding, the accept loop, socket options, one
//! thread per connection, and the supervisor that drains and joins them on shutdown.
//!
//! ```text
//!  acceptor ──spawns──> connection threads ──(Service::serve)
//!     │                        │ slot guard: Finished
//!     └── Spawned/AcceptStopped ┴──> supervisor <── ShutdownHandle (Ctrl-C)
//! ```

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::{debug, info, warn};
use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};

use crate::addresses;
use crate::config::Config;
use crate::control::{ConnectionId, Control, ShutdownHandle};
use crate::error::{Error, describe};
use crate::metrics::Metrics;
use crate::os_thread::{self, OsThread};
use crate::places::{PlaceKind, Places};
use crate::port::Port;
use crate::service::{Connection, Service};
use crate::shutdown::Supervisor;
use crate::sys::{SEND_NOW, poll};
use crate::web;

/// How many connections may wait in the kernel's accept queue (capped by somaxconn).
/// Large, so a class connecting at once or a load test is not refused.
const LISTEN_BACKLOG: i32 = 4096;
/// After the first keepalive probe, probe this often (or every `keepalive` if shorter).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the kernel declares the peer gone.
const KEEPALIVE_PROBES: u32 = 3;
/// How long the acceptor waits before retrying after running out of file descriptors or
/// memory: long enough not to spin, short enough to recover as soon as resources free up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds the listening socket: address reuse on (a restarted server does not wait for old
/// connections in TIME_WAIT), a large backlog, and `::` accepting IPv4 too.
pub fn bind(config: &Config) -> Result<TcpListener, Error> {
    bind_to(&config.host, config.port)
}

/// The listeners a server accepts on: the main port, and the `--web` and `--metrics` ones.
pub struct Listeners {
    pub main: TcpListener,
    pub web: Option<TcpListener>,
    pub metrics: Option<TcpListener>,
}

/// Binds the `--web` or `--metrics` listener, if asked for: `PORT` listens on the main
/// host, `HOST:PORT` (`[::]:PORT` for IPv6) where it says.
pub fn bind_extra(config: &Config, spec: &Option<String>) -> Result<Option<TcpListener>, Error> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let bad_spec = || Error::Listen {
        address: spec.clone(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "expected PORT or HOST:PORT"),
    };
    let (host, port) = match spec.rsplit_once(':') {
        Some((host, port)) => (host.trim_start_matches('[').trim_end_matches(']'), port),
        None => (config.host.as_str(), spec.as_str()),
    };
    let port = port.parse().map_err(|_| bad_spec())?;
    bind_to(host, port).map(Some)
}

fn bind_to(host: &str, port: u16) -> Result<TcpListener, Error> {
    let address = format_host_port(host, port);
    let listen_error = |source| Error::Listen {
        address: address.clone(),
        source,
    };
    let socket_address = (host, port)
        .to_socket_addrs()
        .map_err(listen_error)?
        .next()
        .ok_or_else(|| listen_error(io::Error::new(io::ErrorKind::NotFound, "no such host")))?;
    let socket = Socket::new(Domain::for_address(socket_address), Type::STREAM, None)
        .map_err(listen_error)?;
    socket.set_reuse_address(true).map_err(listen_error)?;
    if socket_address.is_ipv6() {
        socket.set_only_v6(false).map_err(listen_error)?;
    }
    socket.bind(&socket_address.into()).map_err(listen_error)?;
    socket.listen(LISTEN_BACKLOG).map_err(listen_error)?;
    Ok(socket.into())
}

fn format_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A running server: its threads accept and serve until it is shut down.
pub struct Server {
    local_addr: SocketAddr,
    web_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    shutdown: ShutdownHandle,
    supervisor: JoinHandle<Result<(), Error>>,
}

impl Server {
    /// Starts accepting on `listeners` (the main port, and the `--web` and `--metrics`
    /// ones if any) and serving each connection with `service`: one acceptor numbers the
    /// connections of all of them and one supervisor drains them. `metrics` is the one
    /// object every part counts in (the service's too). Logs `listening on ADDR` with the
    /// real bound address. [`crate::start`] does this for the built-in services.
    pub fn start(
        listeners: Listeners,
        config: &Config,
        service: Arc<dyn Service>,
        metrics: Arc<Metrics>,
    ) -> Result<Server, Error> {
        let Listeners {
            main: listener,
            web: web_listener,
            metrics: metrics_listener,
        } = listeners;
        let address_of = |listener: &TcpListener| {
            listener.local_addr().map_err(|source| Error::Listen {
                address: format_host_port(&config.host, config.port),
                source,
            })
        };
        let local_addr = address_of(&listener)?;
        let web_addr = web_listener.as_ref().map(address_of).transpose()?;
        let metrics_addr = metrics_listener.as_ref().map(address_of).transpose()?;
        let setup_error = |source| Error::Listen {
            address: local_addr.to_string(),
            source,
        };
        // The acceptor waits in poll() for a connection or for a byte on this pipe, the
        // supervisor's way of telling it to stop.
        let (stop_receiver, stop_sender) = io::pipe().map_err(setup_error)?;
        let mut listeners = vec![(listener, Port::Chat)];
        listeners.extend(web_listener.map(|listener| (listener, Port::Web)));
        listeners.extend(metrics_listener.map(|listener| (listener, Port::Metrics)));
        for (listener, _) in &listeners {
            listener.set_nonblocking(true).map_err(setup_error)?;
            configure_socket(SockRef::from(listener), config).map_err(setup_error)?;
        }
        let (control_sender, control_receiver) = crossbeam_channel::unbounded();
        let shutdown = ShutdownHandle::new(control_sender.clone());
        let (parked, waiting_for_jobs) = crossbeam_channel::bounded(0);
        let workers = Arc::new(Workers {
            service: Arc::clone(&service),
            control: control_sender.clone(),
            waiting_for_jobs,
        });
        let acceptor = Acceptor {
            listeners,
            config: config.clone(),
            control: control_sender,
            shutdown: shutdown.clone(),
            places: Places::new(config, Arc::clone(&metrics)),
            stop_receiver,
            next_id: 1,
            in_error_burst: false,
            metrics: Arc::clone(&metrics),
            parked,
            workers,
            next_worker: 1,
        };
        let acceptor_thread = thread::Builder::new()
            .name(String::from("acceptor"))
            .spawn(move || acceptor.run())
            .map_err(|source| Error::Thread {
                name: "acceptor",
                source,
            })?;
        // Every thread exists before the log says it listens (scripts and tests count
        // them from then on).
        let banner = service.banner();
        let supervisor = Supervisor::new(
            control_receiver,
            acceptor_thread,
            stop_sender,
            service,
            config.drain_timeout,
        );
        let supervisor = thread::Builder::new()
            .name(String::from("supervisor"))
            .spawn(move || supervisor.run())
            .map_err(|source| Error::Thread {
                name: "supervisor",
                source,
            })?;
        info!("listening on {local_addr}");
        let tls = config.tls.is_some();
        if let Some(web_addr) = web_addr {
            info!("web page on {}", web::page_url(web_addr, tls));
        }
        if let Some(metrics_addr) = metrics_addr {
            info!("metrics on http://{metrics_addr}/metrics");
        }
        for ip in addresses::reachable_addresses(local_addr) {
            info!(
                "join with: {}",
                addresses::join_command(ip, local_addr.port(), tls)
            );
        }
        for ip in web_addr
            .map(addresses::reachable_addresses)
            .unwrap_or_default()
        {
            let port = web_addr.map_or(0, |address| address.port());
            info!("open {}", web::page_url(SocketAddr::new(ip, port), tls));
        }
        for line in banner {
            info!("{line}");
        }
        Ok(Server {
            local_addr,
            web_addr,
            metrics_addr,
            shutdown,
            supervisor,
        })
    }

    /// The address the server is bound to (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the `--web` listener, if there is one.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web_addr
    }

    /// The address of the `--metrics` listener, if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A handle that asks this server to shut down, e.g. from a Ctrl-C handler.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Stops accepting and starts draining; see [`ShutdownHandle::request`].
    pub fn shutdown(&self) {
        self.shutdown.request();
    }

    /// Waits until the server has closed: the listener is gone, every connection has ended
    /// and every thread has been joined.
    pub fn join(self) -> Result<(), Error> {
        match self.supervisor.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// The accept loop, on its own thread.
struct Acceptor {
    /// The main listener first, then the web and metrics ones if any.
    listeners: Vec<(TcpListener, Port)>,
    config: Config,
    control: Sender<Control>,
    shutdown: ShutdownHandle,
    places: Places,
    stop_receiver: io::PipeReader,
    next_id: ConnectionId,
    in_error_burst: bool,
    metrics: Arc<Metrics>,
    /// Hands a connection to a thread that waits for one (zero capacity: only a thread
    /// waiting right now takes it). Dropped with the acceptor, which ends the waiting.
    parked: Sender<Job>,
    /// What every connection thread shares.
    workers: Arc<Workers>,
    next_worker: u64,
}

/// What the connection threads share: one reference each instead of a copy of each part.
struct Workers {
    service: Arc<dyn Service>,
    control: Sender<Control>,
    /// Where a thread that finished its client waits for the next.
    waiting_for_jobs: Receiver<Job>,
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
    fn run(mut self) {
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

/// A connection (holding its place), waiting for a thread.
struct Job {
    connection: Connection,
}

/// How long a connection thread that finished its client waits for another before it
/// ends. Long enough to carry a burst of short connections, short enough that a quiet
/// server does not keep threads it no longer needs.
const WORKER_IDLE: Duration = Duration::from_secs(2);

/// A connection thread: serves its first client, then whoever the acceptor hands it next,
/// one at a time, until none comes within [`WORKER_IDLE`] or the acceptor is gone.
fn run_worker(first: Job, service: &dyn Service, jobs: &Receiver<Job>) {
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
// thread stays at the stack pages it would touch without reuse (measured: 13.5 KiB per
// idle client with them inlined into the loop, 15.9 without).
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
struct WorkerEnded<'a> {
    worker: u64,
    control: &'a Sender<Control>,
}

impl Drop for WorkerEnded<'_> {
    fn drop(&mut self) {
        let _ = self.control.send(Control::WorkerEnded(self.worker));
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

/// Applies the per-connection socket options from the config to a listener: Linux gives
/// every connection it accepts the listener's options (Nagle, read timeout, keepalive),
/// which saves five system calls per connection.
fn configure_socket(socket: SockRef<'_>, config: &Config) -> io::Result<()> {
    socket.set_nodelay(!config.nagle)?;
    socket.set_read_timeout(config.idle_timeout)?;
    match config.keepalive {
        Some(idle) => {
            let keepalive = TcpKeepalive::new()
                .with_time(idle)
                .with_interval(KEEPALIVE_INTERVAL.min(idle))
                .with_retries(KEEPALIVE_PROBES);
            socket.set_tcp_keepalive(&keepalive)
        }
        None => socket.set_keepalive(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection accepted by a listener configured from `config`.
    fn accepted_pair(config: &Config) -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        configure_socket(SockRef::from(&listener), config).expect("configure");
        let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (server_side, _) = listener.accept().expect("accept");
        (server_side, client)
    }

    #[test]
    fn socket_options_from_the_config_reach_every_accepted_socket() {
        let config = Config {
            idle_timeout: Some(Duration::from_secs(5)),
            keepalive: Some(Duration::from_secs(30)),
            ..Config::localhost()
        };
        let (stream, _client) = accepted_pair(&config);
        let socket = SockRef::from(&stream);
        assert!(socket.keepalive().expect("keepalive"));
        assert_eq!(
            socket.keepalive_time().expect("time"),
            Duration::from_secs(30)
        );
        assert_eq!(
            socket.keepalive_interval().expect("interval"),
            KEEPALIVE_INTERVAL
        );
        assert_eq!(
            socket.keepalive_retries().expect("retries"),
            KEEPALIVE_PROBES
        );
        assert!(socket.nodelay().expect("nodelay"));
        assert_eq!(
            stream.read_timeout().expect("timeout"),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn nagle_and_keepalive_can_be_turned_off() {
        let config = Config {
            keepalive: None,
            nagle: true,
            ..Config::localhost()
        };
        let (stream, _client) = accepted_pair(&config);
        let socket = SockRef::from(&stream);
        assert!(!socket.keepalive().expect("keepalive"));
        assert!(!socket.nodelay().expect("nodelay"));
        assert_eq!(stream.read_timeout().expect("timeout"), None);
    }
}
