//! The run's tcpchat nodes: real processes of the built binary on 127.0.0.1, each keeping
//! its name and port when killed and restarted, with their logs kept for the table's notes.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::NODES;
use super::clients::{Clock, Transcript};
use crate::support::PATIENCE;

/// A node that has not renewed its lease for this long is lost (`--cluster-timeout`):
/// short, so that the cluster forgets a killed node within the run.
pub(super) const CLUSTER_TIMEOUT: Duration = Duration::from_secs(3);

/// One tcpchat node: its name and port stay, its process changes when restarted.
pub(super) struct Node {
    pub(super) name: String,
    port: u16,
    cluster_url: String,
    process: NodeProcess,
    /// The logs of its earlier runs, for the report.
    earlier_logs: Vec<Arc<Transcript>>,
}

/// A running `tcpchat`, killed when dropped.
struct NodeProcess {
    child: Child,
    log: Arc<Transcript>,
}

impl Node {
    pub(super) fn start(index: usize, cluster_url: String, clock: Clock) -> Node {
        let port = free_port();
        let name = format!("n{}", index + 1);
        let process = NodeProcess::start(&name, port, &cluster_url, clock);
        Node {
            name,
            port,
            cluster_url,
            process,
            earlier_logs: Vec::new(),
        }
    }

    pub(super) fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether its process exited by itself: the exit, with its last log lines.
    pub(super) fn exited(&mut self) -> Option<String> {
        let status = self.process.child.try_wait().ok()??;
        let log = self.process.log.lines();
        let tail: Vec<&str> = log[log.len().saturating_sub(10)..]
            .iter()
            .map(|(_, line)| line.as_str())
            .collect();
        Some(format!(
            "{} exited ({status}); its log ended {tail:?}",
            self.name
        ))
    }

    /// SIGKILL, then the same name and port again.
    pub(super) fn kill_and_restart(&mut self, clock: Clock) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
        let process = NodeProcess::start(&self.name, self.port, &self.cluster_url, clock);
        let old = std::mem::replace(&mut self.process, process);
        self.earlier_logs.push(Arc::clone(&old.log));
    }

    fn logs(&self) -> impl Iterator<Item = &Arc<Transcript>> {
        self.earlier_logs.iter().chain([&self.process.log])
    }
}

impl NodeProcess {
    fn start(name: &str, port: u16, cluster_url: &str, clock: Clock) -> NodeProcess {
        let timeout = CLUSTER_TIMEOUT.as_secs().to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tcpchat"))
            .args(["--cluster", cluster_url, "--node-name", name])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--cluster-timeout", &timeout])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpchat");
        let stderr = child.stderr.take().expect("tcpchat's stderr");
        let (log, _reader) = Transcript::record(stderr, clock);
        let process = NodeProcess { child, log };
        let deadline = Instant::now() + PATIENCE;
        if process
            .log
            .wait_for(0, deadline, |line| line.contains("listening on "))
            .is_none()
        {
            panic!(
                "{name} did not start on port {port}: {:?}",
                process.log.lines()
            );
        }
        process
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The nodes' warnings and errors, one line per kind (numbers and addresses left out),
/// with how many each node logged, for the report's notes.
pub(super) fn node_warnings(nodes: &[Node]) -> Vec<String> {
    // (message, count per node), in the order first logged.
    let mut kinds: Vec<(String, [usize; NODES])> = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        for log in node.logs() {
            for (_, line) in log.lines() {
                if !(line.contains(" WARN ")
                    || line.contains(" ERROR ")
                    || line.contains("panicked"))
                {
                    continue;
                }
                let message = warning_kind(&line);
                match kinds.iter_mut().find(|(kind, _)| *kind == message) {
                    Some((_, counts)) => counts[index] += 1,
                    None => {
                        let mut counts = [0; NODES];
                        counts[index] = 1;
                        kinds.push((message, counts));
                    }
                }
            }
        }
    }
    kinds
        .into_iter()
        .map(|(message, counts)| {
            let counts: Vec<String> = counts
                .iter()
                .enumerate()
                .map(|(index, count)| format!("n{} {count}", index + 1))
                .collect();
            format!("logged ({}): {message}", counts.join(", "))
        })
        .collect()
}

/// A log line without its time stamp, spaces collapsed, any number as N and anything in
/// parentheses (the Redis URL, the error) left out: what kind of warning it is.
fn warning_kind(line: &str) -> String {
    let message = line.split_once("Z ").map_or(line, |(_, rest)| rest);
    let mut kind = String::new();
    let mut depth = 0;
    let mut in_number = false;
    for character in message.chars() {
        match character {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth > 0 => {}
            digit if digit.is_ascii_digit() => {
                if !in_number {
                    kind.push('N');
                }
                in_number = true;
                continue;
            }
            other => kind.push(other),
        }
        in_number = false;
    }
    kind.split_whitespace().collect::<Vec<_>>().join(" ")
}
