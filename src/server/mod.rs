//! The listener every subcommand shares: binding, the accept loop, socket options, one
//! thread per connection, and the supervisor that drains and joins them on shutdown.
//!
//! ```text
//!  acceptor ──spawns──> connection threads ──(Service::serve)
//!     │                        │ slot guard: Finished
//!     └── Spawned/AcceptStopped ┴──> supervisor <── ShutdownHandle (Ctrl-C)
//! ```
//!
//! - bind.rs: the listeners and the socket options connections inherit;
//! - acceptor.rs: the accept loop, places and refusals;
//! - workers.rs: the connection threads;
//! - this file: the [`Server`] handle, which starts them and the supervisor
//!   (shutdown.rs) and logs where to join.

mod acceptor;
mod bind;
mod workers;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use log::info;
use socket2::SockRef;

use crate::addresses;
use crate::config::Config;
use crate::control::ShutdownHandle;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::places::Places;
use crate::port::Port;
use crate::service::Service;
use crate::shutdown::Supervisor;
use crate::web;
use acceptor::Acceptor;
pub use bind::{Listeners, bind, bind_extra};
use bind::{configure_socket, format_host_port};
use workers::Workers;

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
