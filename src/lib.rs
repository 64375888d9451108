//! tcpchat: a TCP chat server anyone joins with `nc HOST 4001` or `telnet HOST 4001`, or
//! from a browser (`--web`), plus the chapter's echo, dump and send servers on the same
//! listener.
//!
//! One OS thread per connection, blocking reads; one hub thread owns the chat's client
//! list and does every write, non-blocking, so a stalled client only fills its own outbox.
//!
//! ```text
//!             ┌──────────── server.rs ────────────┐
//!  TCP ──> acceptor ──spawn──> connection thread ─┼─ events ─> hub (chat)   ─writev─> clients
//!  web ──┘    │    (client_thread.rs, transport/, web/)      (hub.rs)  <──> cluster/ <──> Redis
//!  Ctrl-C ──> supervisor: stop accepting, drain, close, join (shutdown.rs)
//! ```
//!
//! Subcommands are [`Service`]s: chat.rs, echo.rs, dump.rs and send.rs. protocol/ is
//! pure code (decoding, sanitising, commands) and config.rs holds every limit.
//! systemd.rs is what a systemd service needs: the listeners of socket activation (taken
//! in [`start`] instead of binding), `READY=1` and `STOPPING=1`, and the journal's format.

mod addresses;
mod append;
mod chat;
mod client_thread;
mod clock;
mod cluster;
mod config;
mod control;
mod dump;
mod echo;
mod error;
mod history;
mod hub;
mod limits;
mod metrics;
mod os_thread;
mod outbox;
mod places;
mod port;
mod protocol;
mod rate;
mod rooms;
mod send;
mod server;
mod service;
mod shutdown;
mod stack;
mod sys;
pub mod systemd;
mod transport;
mod web;

#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;

use std::sync::Arc;

// The library's whole API: what main.rs, the tests and examples/ use. Everything else is
// the crate's own.
pub use config::Config;
pub use control::ShutdownHandle;
pub use dump::DumpOptions;
pub use error::{Error, describe};
pub use limits::raise_open_file_limit;
pub use metrics::Metrics;
pub use send::SendOptions;
pub use server::{Listeners, Server, bind};
pub use service::{Connection, Received, Service};
pub use transport::tls::Certificate;

use chat::Chat;
use dump::Dump;
use echo::Echo;
use send::SendFile;

/// Lowers `max_clients` to what the machine can hold (see [`limits::connection_ceiling`]),
/// with one warning, so that a client too many is refused instead of crashing the server.
fn clamp_to_machine(config: &Config) -> Config {
    let mut ceiling = limits::connection_ceiling();
    // Handshakes and scrapes have places of their own beside the clients'.
    ceiling.connections = ceiling
        .connections
        .saturating_sub(places::MAX_HANDSHAKES + places::MAX_SCRAPES);
    let mut config = config.clone();
    if config.max_clients > ceiling.connections {
        log::warn!(
            "--max-clients {} is more than this machine allows: using {} (limited by {})",
            config.max_clients,
            ceiling.connections,
            ceiling.limited_by
        );
        config.max_clients = ceiling.connections;
    }
    config
}

/// Which server to run.
#[derive(Debug, Clone)]
pub enum Mode {
    /// The chat room (the default).
    Chat,
    /// The chapter's echo server.
    Echo,
    /// Append everything clients send to a file.
    Dump(DumpOptions),
    /// Send a file to every client.
    Send(SendOptions),
}

/// Binds per `config` (or takes the sockets systemd passed, see
/// [`systemd::inherited_listeners`]), builds the service for `mode` (opening its file)
/// and starts serving; whatever fails stops what was started before it. The binary does exactly this;
/// tests and embedders call it with port 0.
pub fn start(config: &Config, mode: &Mode) -> Result<Server, Error> {
    // First, while no thread of ours reads the environment: taking them unsets LISTEN_*.
    let inherited = systemd::inherited_listeners()?;
    let config = &clamp_to_machine(config);
    check_mode(config, mode)?;
    // The listeners before the service: a port that cannot be had fails the start before
    // any thread (the hub, the cluster's link) or file (dump's) exists.
    let (listener, web_listener) = match inherited {
        Some(inherited) if inherited.web.is_some() && !matches!(mode, Mode::Chat) => {
            return Err(Error::Usage(String::from(
                "systemd passed a second socket, for the web page, which serves the chat only",
            )));
        }
        // With one socket passed, --web (if given) binds its own port as usual.
        Some(inherited) => match inherited.web {
            Some(web) => (inherited.main, Some(web)),
            None => (inherited.main, server::bind_extra(config, &config.web)?),
        },
        None => (
            server::bind(config)?,
            server::bind_extra(config, &config.web)?,
        ),
    };
    let listeners = server::Listeners {
        main: listener,
        web: web_listener,
        metrics: server::bind_extra(config, &config.metrics)?,
    };
    let metrics = Arc::new(Metrics::new(config.cluster.is_some()));
    let service: Arc<dyn Service> = match mode {
        Mode::Chat => Arc::new(Chat::start(config, Arc::clone(&metrics))?),
        Mode::Echo => Arc::new(Echo::new(config.max_line)),
        Mode::Dump(options) => Arc::new(Dump::open(options.clone(), config.max_line)?),
        Mode::Send(options) => Arc::new(SendFile::open(options.clone())?),
    };
    Server::start(listeners, config, Arc::clone(&service), metrics).inspect_err(|_| {
        // Its threads (the hub, the cluster's) end with it.
        let _ = service.finish();
    })
}

/// The options that serve the chat only, refused with the other subcommands.
fn check_mode(config: &Config, mode: &Mode) -> Result<(), Error> {
    if matches!(mode, Mode::Chat) {
        return Ok(());
    }
    let refused = if config.web.is_some() {
        "--web serves the chat only"
    } else if config.cluster.is_some() {
        "--cluster joins chat servers only"
    } else if config.tls.is_some() {
        "--tls-* serves the chat only"
    } else if config.history_db.is_some() {
        "--history-db keeps the chat's history only"
    } else {
        return Ok(());
    };
    Err(Error::Usage(String::from(refused)))
}
