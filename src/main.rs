//! The `tcpchat` command: parses the command line, sets up logging and Ctrl-C, runs the
//! chosen server and turns its result into an exit code.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use log::{LevelFilter, warn};

use tcpchat::{Certificate, Config, DumpOptions, Mode, SendOptions, ShutdownHandle, systemd};

mod assets;

/// The library's defaults: the command line shows and uses exactly these.
static DEFAULTS: LazyLock<Config> = LazyLock::new(Config::default);

/// A duration option as the command line takes it: whole seconds, 0 for none.
fn whole_seconds(duration: Option<Duration>) -> u64 {
    duration.map_or(0, |duration| duration.as_secs())
}

/// A TCP chat server anyone joins with `nc HOST 4001` or `telnet HOST 4001`.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = false)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    shared: SharedOptions,
}

#[derive(Subcommand)]
enum Command {
    /// The chat room: each line goes to everyone else (the default).
    Chat,
    /// Greet, send every line back, end on "quit".
    Echo,
    /// Append everything clients send to FILE (created if missing, never truncated).
    Dump {
        /// The file to append to.
        file: PathBuf,
        /// Prefix each line with a timestamp and the client's address.
        #[arg(long)]
        tag: bool,
        /// Flush each write to disk (fdatasync) before taking more.
        #[arg(long)]
        fsync: bool,
    },
    /// Send FILE to each client, then close the connection.
    Send {
        /// The file to send.
        file: PathBuf,
        /// Leave the connection open after the file until the client closes.
        #[arg(long)]
        keep_open: bool,
    },
}

// `tcpchat generate-assets DIR`, for packaging: a command line of its own rather than a
// hidden subcommand of `Cli`, because clap's completion scripts offer hidden ones too.
/// Write tcpchat's man pages and shell completions (bash, zsh, fish) into DIR.
#[derive(Parser)]
#[command(name = "tcpchat generate-assets", bin_name = "tcpchat generate-assets")]
struct GenerateAssets {
    /// The folder to write them in (created if missing).
    dir: PathBuf,
}

/// The first argument that runs [`GenerateAssets`] instead of the server.
const GENERATE_ASSETS: &str = "generate-assets";

/// Options every subcommand takes.
#[derive(Args)]
struct SharedOptions {
    /// Address to listen on (`::` for IPv6 and IPv4).
    #[arg(long, global = true, default_value_t = DEFAULTS.host.clone())]
    host: String,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, global = true, default_value_t = DEFAULTS.port)]
    port: u16,
    /// Most clients at once; one more is told `! server full`.
    #[arg(long, global = true, default_value_t = DEFAULTS.max_clients, value_name = "N")]
    max_clients: usize,
    /// Disconnect a client that sends nothing for SECS seconds (0 = never).
    #[arg(long, global = true, default_value_t = whole_seconds(DEFAULTS.idle_timeout), value_name = "SECS")]
    idle_timeout: u64,
    /// TCP keepalive: probe a silent peer after SECS seconds (0 = off).
    #[arg(long, global = true, default_value_t = whole_seconds(DEFAULTS.keepalive), value_name = "SECS")]
    keepalive: u64,
    /// Turn Nagle's algorithm back on (by default TCP_NODELAY is set).
    #[arg(long, global = true)]
    nagle: bool,
    /// Longest line in bytes; a longer one is dropped with `! line too long`.
    #[arg(long, global = true, default_value_t = DEFAULTS.max_line, value_name = "BYTES")]
    max_line: usize,
    /// Unsent output a client may have queued before it is disconnected as a slow consumer.
    #[arg(long, global = true, default_value_t = DEFAULTS.max_pending, value_name = "BYTES")]
    max_pending: usize,
    /// Chat flood control: lines per second per client after its burst (0 = off).
    #[arg(
        long,
        global = true,
        default_value_t = DEFAULTS.rate,
        value_name = "LINES_PER_SEC"
    )]
    rate: u32,
    /// Chat flood control: lines a client may send at once.
    #[arg(long, global = true, default_value_t = DEFAULTS.burst, value_name = "N")]
    burst: u32,
    /// Most connections from one IP address (0 = no limit).
    #[arg(long, global = true, default_value_t = DEFAULTS.max_per_ip, value_name = "N")]
    max_per_ip: usize,
    /// Chat: messages each room shows to whoever joins it (0 = off).
    #[arg(long, global = true, default_value_t = DEFAULTS.history, value_name = "N")]
    history: usize,
    /// Chat: the password for /op (operators can /kick, /mute, /unmute, /wall); without
    /// one nobody can become an operator.
    #[arg(
        long,
        global = true,
        env = "TCPCHAT_OP_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    op_password: Option<String>,
    /// Chat: show FILE to every client after the welcome (message of the day).
    #[arg(long, global = true, value_name = "FILE")]
    motd: Option<PathBuf>,
    /// Chat: append every public line, with its time and room, to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    transcript: Option<PathBuf>,
    /// Chat: keep every room's history in the SQLite file FILE (created if missing), so
    /// that it survives restarts and /search finds older lines.
    #[arg(long, global = true, env = "TCPCHAT_HISTORY_DB", value_name = "FILE")]
    history_db: Option<PathBuf>,
    /// Chat: with --history-db, remove lines older than N days (0 keeps everything).
    #[arg(long, global = true, default_value_t = DEFAULTS.history_days, value_name = "N")]
    history_days: u32,
    /// Chat: also serve the chat page and its WebSocket on [HOST:]PORT (0 picks a free port).
    #[arg(long, global = true, value_name = "[HOST:]PORT")]
    web: Option<String>,
    /// Chat: another origin allowed to open the WebSocket, e.g. http://chat.school.lan:8080
    /// (repeatable); its host name is accepted as Host too.
    #[arg(long, global = true, value_name = "ORIGIN")]
    web_origin: Vec<String>,
    /// Chat: join the nodes that share this Redis, redis://[:PASSWORD@]HOST:PORT[/DB].
    #[arg(
        long,
        global = true,
        env = "TCPCHAT_CLUSTER",
        hide_env_values = true,
        value_name = "URL"
    )]
    cluster: Option<String>,
    /// Chat: this node's name in the cluster [default: host name and port].
    #[arg(long, global = true, value_name = "NAME")]
    node_name: Option<String>,
    /// Chat: a node silent this long is lost; its clients are announced as gone.
    #[arg(long, global = true, default_value_t = DEFAULTS.cluster_timeout.as_secs(), value_name = "SECS")]
    cluster_timeout: u64,
    /// Serve /metrics for Prometheus on [HOST:]PORT (0 picks a free port).
    #[arg(long, global = true, value_name = "[HOST:]PORT")]
    metrics: Option<String>,
    /// Chat: speak TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<PathBuf>,
    /// Chat: the private key of --tls-cert (PEM).
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Chat: speak TLS with a certificate made at start-up (its fingerprint is logged).
    #[arg(long, global = true)]
    tls_self_signed: bool,
    /// After Ctrl-C, how long clients may go on before they are closed.
    #[arg(long, global = true, default_value_t = DEFAULTS.drain_timeout.as_secs(), value_name = "SECS")]
    drain_timeout: u64,
    /// Serve one client, then stop listening and exit when it leaves (like `nc -l`); web
    /// page requests and metrics scrapes do not count.
    #[arg(long, global = true)]
    once: bool,
    /// Log only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log more: -v for each connection's details, -vv for everything.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

impl SharedOptions {
    fn config(&self) -> Config {
        let seconds = |secs: u64| (secs > 0).then(|| Duration::from_secs(secs));
        Config {
            host: self.host.clone(),
            port: self.port,
            max_clients: self.max_clients,
            idle_timeout: seconds(self.idle_timeout),
            keepalive: seconds(self.keepalive),
            nagle: self.nagle,
            max_line: self.max_line.max(1),
            max_pending: self.max_pending,
            rate: self.rate,
            burst: self.burst,
            max_per_ip: self.max_per_ip,
            history: self.history,
            op_password: self.op_password.clone().filter(|p| !p.is_empty()),
            motd: self.motd.clone(),
            transcript: self.transcript.clone(),
            history_db: self.history_db.clone(),
            history_days: self.history_days,
            drain_timeout: Duration::from_secs(self.drain_timeout),
            web: self.web.clone(),
            metrics: self.metrics.clone(),
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(Certificate::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => self.tls_self_signed.then_some(Certificate::SelfSigned),
            },
            cluster: self.cluster.clone().filter(|url| !url.is_empty()),
            node_name: self.node_name.clone(),
            cluster_timeout: Duration::from_secs(self.cluster_timeout.max(1)),
            web_origins: self.web_origin.clone(),
            once: self.once,
            ..Config::default()
        }
    }

    fn log_level(&self) -> LevelFilter {
        match (self.quiet, self.verbose) {
            (true, _) => LevelFilter::Warn,
            (false, 0) => LevelFilter::Info,
            (false, 1) => LevelFilter::Debug,
            (false, _) => LevelFilter::Trace,
        }
    }
}

/// One malloc arena for every thread, instead of glibc's default of up to eight per core.
/// With a thread per client, each thread that allocates may take an arena of its own, and
/// a line read on one thread and kept by the hub (a room's history, a TLS session ticket)
/// pins that arena's pages: the soak test saw 15 arenas each grow by 100 to 400 KiB in
/// eight minutes, and the server's memory rise by 1.1 MiB (0.5 MiB with one arena). Each
/// thread's malloc cache (tcache) still serves most allocations without the arena's lock;
/// fanout and latency measured no slower side by side (docs/performance.md).
/// `MALLOC_ARENA_MAX` in the environment still decides, when set.
fn use_one_allocator_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt sets one of the allocator's tunables; no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// The settings read from the environment. One set but empty counts as unset, as systemd's
/// `Environment=TCPCHAT_HISTORY_DB=` or an empty line in /etc/default/tcpchat means:
/// `TCPCHAT_HISTORY_DB=` keeps the history in memory instead of failing on a missing value.
const SETTINGS_FROM_ENVIRONMENT: [&str; 3] = [
    "TCPCHAT_HISTORY_DB",
    "TCPCHAT_CLUSTER",
    "TCPCHAT_OP_PASSWORD",
];

fn forget_empty_settings() {
    for name in SETTINGS_FROM_ENVIRONMENT {
        if std::env::var_os(name).is_some_and(|value| value.is_empty()) {
            // SAFETY: no other thread exists yet to read the environment.
            unsafe { std::env::remove_var(name) };
        }
    }
}

fn main() -> ExitCode {
    use_one_allocator_arena();
    forget_empty_settings();
    if std::env::args_os()
        .nth(1)
        .is_some_and(|first| first == GENERATE_ASSETS)
    {
        let request = GenerateAssets::parse_from(std::env::args_os().skip(1));
        return generate_assets(&request.dir);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    init_logging(cli.shared.log_level());
    let config = cli.shared.config();
    let mode = match cli.command.unwrap_or(Command::Chat) {
        Command::Chat => Mode::Chat,
        Command::Echo => Mode::Echo,
        Command::Dump { file, tag, fsync } => Mode::Dump(DumpOptions {
            path: file,
            tag,
            fsync,
        }),
        Command::Send { file, keep_open } => Mode::Send(SendOptions {
            path: file,
            keep_open,
        }),
    };
    match run(&config, &mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The journal reads the priority of a line from its prefix: this one is an error.
            let priority = if systemd::stderr_is_journal() {
                "<3>"
            } else {
                ""
            };
            eprintln!("{priority}error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Prints what clap has to say about the command line. `--help` and `--version` exit 0;
/// a mistake exits 2 (the unit's `RestartPreventExitStatus`: a typo in the settings is not
/// mended by starting again), and under systemd every line of it is an error in the journal,
/// so that `journalctl -p err` shows why the service did not start.
fn usage_error(error: &clap::Error) -> ExitCode {
    if !error.use_stderr() {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let text = error.render().to_string();
    let journal = systemd::stderr_is_journal();
    for line in text.lines() {
        if journal {
            eprintln!("<3>{line}");
        } else {
            eprintln!("{line}");
        }
    }
    ExitCode::from(2)
}

fn generate_assets(dir: &std::path::Path) -> ExitCode {
    match assets::generate(Cli::command(), dir) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "error: cannot write to {}: {}",
                dir.display(),
                tcpchat::describe(&error)
            );
            ExitCode::FAILURE
        }
    }
}

fn run(config: &Config, mode: &Mode) -> Result<(), tcpchat::Error> {
    tcpchat::raise_open_file_limit();
    // The handler is installed before the server starts, so that every thread exists
    // once `listening on` is logged (scripts and tests count them from then on).
    let server_shutdown: Arc<OnceLock<ShutdownHandle>> = Arc::default();
    let interrupted = Arc::new(AtomicBool::new(false));
    let (handler_shutdown, handler_interrupted) =
        (Arc::clone(&server_shutdown), Arc::clone(&interrupted));
    // Ctrl-C and SIGTERM (the "termination" feature): the first drains, a second exits now.
    let installed = ctrlc::set_handler(move || {
        if handler_interrupted.swap(true, Ordering::SeqCst) {
            eprintln!("interrupted again: exiting now");
            std::process::exit(130);
        }
        // Before the server is up, `run` sees the flag once it has the handle.
        if let Some(shutdown) = handler_shutdown.get() {
            systemd::notify_stopping();
            shutdown.request();
        }
    });
    if let Err(error) = installed {
        warn!("cannot handle Ctrl-C: {error}");
    }
    let server = tcpchat::start(config, mode)?;
    // Before the handler can see the handle, so that STOPPING=1 always follows READY=1.
    systemd::notify_ready(server.local_addr());
    let shutdown = server.shutdown_handle();
    let _ = server_shutdown.set(shutdown.clone());
    if interrupted.load(Ordering::SeqCst) {
        // Interrupted while starting; asking twice is harmless if the handler saw it too.
        systemd::notify_stopping();
        shutdown.request();
    }
    server.join()
}

/// Log lines on stderr: `2026-11-26T16:00:00.123Z INFO  listening on 0.0.0.0:4001`, or,
/// when stderr is the journal, `<6>listening on 0.0.0.0:4001`: the journal stamps each
/// line itself and reads its priority from the `<N>` prefix.
/// RUST_LOG, when set, overrides -q and -v.
fn init_logging(level: LevelFilter) {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    if systemd::stderr_is_journal() {
        builder.format(|out, record| {
            let priority = systemd::syslog_priority(record.level());
            writeln!(out, "<{priority}>{}", record.args())
        });
    } else {
        builder.format(|out, record| {
            writeln!(
                out,
                "{} {:5} {}",
                out.timestamp_millis(),
                record.level(),
                record.args()
            )
        });
    }
    builder.init();
}
