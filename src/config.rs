//! Every setting and limit in one place, with its default and the reason for it.

use std::time::Duration;

/// Settings shared by every subcommand: where to listen, socket options, limits, shutdown.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address or host name to listen on. Default `0.0.0.0` (every IPv4 interface);
    /// `::` listens on IPv6 and IPv4 both.
    pub host: String,
    /// Port to listen on. Default 4001, the chapter's port; 0 picks a free one.
    pub port: u16,
    /// Most connections served at once; one more is told `! server full` and closed.
    /// Default 1000: a large classroom with room to spare, far below the thread ceiling.
    pub max_clients: usize,
    /// Close a connection that sends nothing for this long. Default `None` (never), as in
    /// the chapter, where `socket.setTimeout` is opt-in.
    pub idle_timeout: Option<Duration>,
    /// TCP keepalive idle time, so a peer that vanished without a FIN is noticed.
    /// Default 60 s; `None` turns keepalive off.
    pub keepalive: Option<Duration>,
    /// Leave Nagle's algorithm on. Default false: chat lines are small and latency matters,
    /// so TCP_NODELAY is set.
    pub nagle: bool,
    /// Longest line in bytes, line ending excluded. Default 4096: several screens of text,
    /// and the most a client's unfinished line can hold in server memory.
    pub max_line: usize,
    /// Most output a chat client may have queued beyond its kernel send buffer before it is
    /// disconnected as a slow consumer. Default 1 MiB: thousands of lines of slack for a
    /// briefly stalled reader, bounded so one stuck client cannot grow the server.
    pub max_pending: usize,
    /// Chat flood control: lines per second a client may send once its burst is used up;
    /// 0 turns it off. Default 10: faster than anyone types, slow enough that a script
    /// piping `yes` cannot drown the room.
    pub rate: u32,
    /// Chat flood control: lines a client may send at once (a pasted paragraph). Default 20.
    pub burst: u32,
    /// Most connections from one IP address; 0 = no limit (the default: a classroom behind
    /// one NAT address must still fit).
    pub max_per_ip: usize,
    /// Chat: messages each room remembers and shows, marked as history, to whoever joins
    /// it. Default 20: the last minute or two of a lively class; 0 turns it off.
    pub history: usize,
    /// Chat: the password `/op` asks for. Default `None`: nobody can become an operator.
    pub op_password: Option<String>,
    /// Chat: a file shown to every client after the welcome. Default none.
    pub motd: Option<std::path::PathBuf>,
    /// Chat: a file every public line is appended to, with its time and room (never
    /// truncated). Default none.
    pub transcript: Option<std::path::PathBuf>,
    /// Chat: an SQLite file that keeps every room's history across restarts (created if
    /// missing), and that `/search` searches. Default none: history lives in memory.
    pub history_db: Option<std::path::PathBuf>,
    /// Chat: with `history_db`, lines older than this many days are removed (at start-up
    /// and once a day). Default 30; 0 keeps everything.
    pub history_days: u32,
    /// After Ctrl-C, how long connections may go on before they are closed. Default 30 s.
    pub drain_timeout: Duration,
    /// Chat: also serve the chat page and its WebSocket on this `[HOST:]PORT` (a port alone
    /// listens on `host`). Default `None`: no web port.
    pub web: Option<String>,
    /// Chat: origins allowed to open the WebSocket besides the server's own, e.g.
    /// `http://chat.school.lan:8080`; their host names are accepted in `Host` too. Default
    /// none: only pages served by this server, reached by its address or `localhost`.
    pub web_origins: Vec<String>,
    /// Chat: join the cluster of nodes that share this Redis (or Valkey) URL,
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`. Default `None`: a single node.
    pub cluster: Option<String>,
    /// This node's name in the cluster, unique among its nodes. Default: the host name and
    /// port (`lab-1:4001`).
    pub node_name: Option<String>,
    /// How long a node may go without renewing its lease before the others count it lost
    /// and announce its clients as gone. Default 10 s: long enough for a busy machine, short
    /// enough that a class notices a crash within seconds.
    pub cluster_timeout: Duration,
    /// Chat: speak TLS on every port, with this certificate. Default `None`: plain text.
    pub tls: Option<crate::transport::tls::Certificate>,
    /// Serve `/metrics` for Prometheus on this `[HOST:]PORT`. Default `None`: no metrics port.
    pub metrics: Option<String>,
    /// Serve one client, then stop listening and exit when it leaves (like `nc -l`). Page
    /// requests and `/metrics` scrapes do not count: with `--web` the one client may be a
    /// browser.
    pub once: bool,
    /// Stack size of each connection thread. Default 64 KiB: the deepest path (logging a
    /// formatted line, unwinding a panic) needs a fraction of it, and small stacks let
    /// thousands of clients fit in memory.
    pub thread_stack_size: usize,
}

/// The port the chapter's chat server listens on.
pub const DEFAULT_PORT: u16 = 4001;

impl Default for Config {
    fn default() -> Self {
        Config {
            host: String::from("0.0.0.0"),
            port: DEFAULT_PORT,
            max_clients: 1000,
            idle_timeout: None,
            keepalive: Some(Duration::from_secs(60)),
            nagle: false,
            max_line: 4096,
            max_pending: 1024 * 1024,
            rate: 10,
            burst: 20,
            max_per_ip: 0,
            history: 20,
            op_password: None,
            motd: None,
            transcript: None,
            history_db: None,
            history_days: 30,
            drain_timeout: Duration::from_secs(30),
            web: None,
            cluster: None,
            tls: None,
            metrics: None,
            node_name: None,
            cluster_timeout: Duration::from_secs(10),
            web_origins: Vec::new(),
            once: false,
            thread_stack_size: 64 * 1024,
        }
    }
}

impl Config {
    /// A config for tests and embedding: 127.0.0.1 on a free port, other values default.
    pub fn localhost() -> Self {
        Config {
            host: String::from("127.0.0.1"),
            port: 0,
            ..Config::default()
        }
    }
}
