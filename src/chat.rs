//! The chat service: starts the hub and gives each connection a client thread.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, SyncSender};
use std::thread::{self, JoinHandle};

use log::info;
use parking_lot::Mutex;

use crate::addresses;
use crate::append::AppendFile;
use crate::client_thread::{self, ClientLimits};
use crate::cluster::{self, Cluster, ClusterSettings, ToHub};
use crate::config::Config;
use crate::error::Error;
use crate::error::describe;
use crate::history::History;
use crate::hub::{self, Event, HubSettings, WritableWatch};
use crate::metrics::Metrics;
use crate::places::Refusal;
use crate::port::Port;
use crate::protocol;
use crate::service::{Connection, Service};
use crate::transport::tcp::TcpInput;
use crate::transport::tls::Tls;
use crate::web::{self, WebSettings};

/// Events that may wait for the hub before client threads block on sending. Blocking is
/// the point: a client that floods faster than the hub routes is slowed by TCP backpressure
/// instead of growing a queue.
const HUB_QUEUE_CAPACITY: usize = 1024;

/// The chat room of the chapter: every line goes to everyone else.
pub struct Chat {
    events: SyncSender<Event>,
    /// With `--cluster`: its threads, stopped after the hub.
    cluster: Mutex<Option<Cluster>>,
    transcript: Option<Arc<AppendFile>>,
    /// With `--history-db`: the history thread, finished after the hub.
    history: Option<History>,
    hub_thread: Mutex<Option<JoinHandle<()>>>,
    client_limits: ClientLimits,
    web: WebSettings,
    /// With `--tls-*`: every connection starts with a handshake.
    tls: Option<Tls>,
}

impl Chat {
    /// Starts the hub thread.
    pub fn start(config: &Config, metrics: Arc<Metrics>) -> Result<Chat, Error> {
        // std's bounded channel (its port of crossbeam's), not crossbeam's own: waking a
        // waiting receiver, crossbeam asks for the sender's `thread::current()`, which
        // allocates in a thread std did not start (os_thread.rs), and a thread's first
        // allocation costs it glibc's 0.65 KiB per-thread cache for as long as it lives.
        let (events, receiver) = mpsc::sync_channel(HUB_QUEUE_CAPACITY);
        let motd = match &config.motd {
            Some(path) => Some(read_motd(path)?),
            None => None,
        };
        let transcript = match &config.transcript {
            Some(path) => Some(Arc::new(AppendFile::open(path, false)?)),
            None => None,
        };
        let tls = match &config.tls {
            Some(certificate) => Some(Tls::new(certificate, certificate_names(config))?),
            None => None,
        };
        // Before the cluster's threads: a history file refused stops the start with
        // nothing to stop.
        let (history, restored) = match &config.history_db {
            Some(path) => {
                let (history, recorder, restored) =
                    History::open(path, config.history_days, config.history)?;
                (Some((history, recorder)), restored)
            }
            None => (None, Vec::new()),
        };
        let cluster = match &config.cluster {
            Some(url) => {
                // The cluster's news reaches the hub as one more kind of event.
                let hub = events.clone();
                let to_hub: ToHub =
                    Arc::new(move |incoming| hub.send(Event::Cluster(incoming)).is_ok());
                Some(Cluster::start(cluster_settings(config, url), to_hub)?)
            }
            None => None,
        };
        let settings = HubSettings {
            max_line: config.max_line,
            max_pending: config.max_pending,
            history: config.history,
            op_password: config.op_password.clone(),
            motd,
            transcript: transcript.clone(),
            cluster: cluster.as_ref().map(|cluster| cluster.hub_link()),
            history_db: history
                .as_ref()
                .map(|(_, recorder)| (recorder.clone(), events.clone())),
            restored,
            metrics,
        };
        let history = history.map(|(history, _)| history);
        // Started here, so that every thread of the server exists once it listens.
        let writable = WritableWatch::start(events.clone());
        // The lobby exists from the start: a scrape before the hub's first wake-up says so.
        settings.metrics.rooms.set(1);
        let hub_thread = thread::Builder::new()
            .name(String::from("hub"))
            .spawn(move || hub::run(receiver, settings, writable))
            .map_err(|source| Error::Thread {
                name: "hub",
                source,
            })?;
        Ok(Chat {
            events,
            cluster: Mutex::new(cluster),
            tls,
            transcript,
            history,
            hub_thread: Mutex::new(Some(hub_thread)),
            client_limits: ClientLimits {
                max_line: config.max_line,
                rate: config.rate,
                burst: config.burst,
            },
            web: WebSettings {
                extra_origins: config.web_origins.clone(),
                idle_timeout: config.idle_timeout,
            },
        })
    }
}

impl Service for Chat {
    fn serve(&self, mut connection: Connection) {
        if let Some(tls) = &self.tls
            && !handshake(tls, &mut connection)
        {
            return;
        }
        match connection.port {
            Port::Chat => {
                if let Err(refusal) = connection.become_client() {
                    return refuse_after_handshake(&connection, &refusal);
                }
                serve_tcp(connection, &self.events, self.client_limits)
            }
            Port::Web => web::serve(connection, &self.events, self.client_limits, &self.web),
            // The server serves the metrics port itself.
            Port::Metrics => {}
        }
    }

    fn banner(&self) -> Vec<String> {
        self.tls
            .iter()
            .map(|tls| format!("TLS certificate SHA-256 fingerprint: {}", tls.fingerprint))
            .collect()
    }

    fn begin_drain(&self) {
        let _ = self.events.send(Event::Draining);
    }

    fn close_all(&self) {
        let (done, finished) = crossbeam_channel::bounded(1);
        if self.events.send(Event::CloseAll { done }).is_ok() {
            let _ = finished.recv();
        }
    }

    fn finish(&self) -> Result<(), Error> {
        let _ = self.events.send(Event::Stop);
        if let Some(hub_thread) = self.hub_thread.lock().take()
            && let Err(panic) = hub_thread.join()
        {
            std::panic::resume_unwind(panic);
        }
        // After the hub: the leaves of the drain are written to the stream first.
        if let Some(cluster) = self.cluster.lock().take() {
            cluster.stop();
        }
        // After the hub: its last lines are handed over, and its Recorder is gone.
        let history = match &self.history {
            Some(history) => history.finish(),
            None => Ok(()),
        };
        let transcript = match &self.transcript {
            Some(transcript) => transcript.finish(),
            None => Ok(()),
        };
        history.and(transcript)
    }
}

/// The cluster settings from the config: the node's name defaults to the host name and
/// port (the process id when the port is chosen by the system).
fn cluster_settings(config: &Config, url: &str) -> ClusterSettings {
    let node = config.node_name.clone().unwrap_or_else(|| {
        let host = addresses::host_name();
        match config.port {
            0 => format!("{host}:pid{}", std::process::id()),
            port => format!("{host}:{port}"),
        }
    });
    ClusterSettings {
        url: url.to_owned(),
        redacted_url: cluster::redact(url),
        node,
        incarnation: cluster::now_micros(),
        timeout: config.cluster_timeout,
        history_entries: (config.history * 100).clamp(100, 10_000),
    }
}

// The functions a connection thread goes through on its way to waiting for its client
// each have a frame of their own (never inlined): the stack in use while it waits is then
// what that path needs, not the sum of every path's locals (an idle client costs the
// stack pages it touched: 8 KiB rather than 12).

/// The TLS handshake; false (logged) if it failed.
#[inline(never)]
fn handshake(tls: &Tls, connection: &mut Connection) -> bool {
    match tls.accept(&connection.stream) {
        Ok(session) => {
            connection.tls = Some(session);
            true
        }
        Err(error) => {
            connection.metrics.refused("bad_handshake");
            info!(
                "{}: TLS handshake failed: {}",
                connection.peer,
                describe(&error)
            );
            false
        }
    }
}

/// Refuses a client whose TLS handshake is done (so it can read why) for want of a place.
fn refuse_after_handshake(connection: &Connection, refusal: &Refusal) {
    info!("refused {}: {}", connection.peer, refusal.reason());
    connection.metrics.refused(refusal.label());
    let _ = connection.write_all(&refusal.line());
    if let Some(session) = &connection.tls {
        session.close();
        let _ = session.write_all_blocking(&connection.stream, b"");
    }
    let _ = connection.stream.shutdown(std::net::Shutdown::Write);
    connection.wait_for_close(client_thread::LINGER);
}

/// A chat client on the main port.
#[inline(never)]
fn serve_tcp(connection: Connection, hub: &SyncSender<Event>, limits: ClientLimits) {
    let mut input = TcpInput::new(limits.max_line);
    client_thread::serve_client(connection, hub, limits, &mut input);
}

/// The names a self-signed certificate is made for: this machine's name, `localhost`, and
/// every address it has.
fn certificate_names(config: &Config) -> Vec<String> {
    let mut names = vec![
        addresses::host_name(),
        String::from("localhost"),
        config.host.clone(),
    ];
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    names.extend(
        interfaces
            .iter()
            .map(|interface| interface.ip().to_string()),
    );
    names.sort();
    names.dedup();
    names
}

/// The message of the day, as the lines clients receive after the welcome.
fn read_motd(path: &Path) -> Result<Arc<Vec<u8>>, Error> {
    let text = std::fs::read(path).map_err(|source| Error::OpenFile {
        path: path.to_owned(),
        source,
    })?;
    // Made safe like a client's line: it reaches terminals and browsers, and a browser
    // takes only UTF-8 (a Latin-1 file would make every page close and reconnect).
    let mut motd = Vec::with_capacity(text.len() + 1);
    for line in text.split(|&byte| byte == b'\n') {
        let line = protocol::sanitize(line.strip_suffix(b"\r").unwrap_or(line));
        motd.extend_from_slice(line.as_bytes());
        motd.push(b'\n');
    }
    // split gives an empty last piece when the file ends with a newline.
    if text.ends_with(b"\n") {
        motd.pop();
    }
    Ok(Arc::new(motd))
}
