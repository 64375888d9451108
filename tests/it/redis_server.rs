//! A `redis-server` of the test's own on 127.0.0.1 (persistence off), for the cluster's
//! tests: started on a free port or a given one, paused and resumed with signals, killed
//! and restarted empty on the same port, asked a command, and killed when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crate::support::{self, PATIENCE};

/// A running redis-server, killed when dropped.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts one on a free port, or returns None (with a note) where redis-server is not
    /// installed.
    pub fn start() -> Option<RedisServer> {
        if !support::programs_available(&["redis-server"]) {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        Some(RedisServer::start_on(port))
    }

    /// Starts one on `port` and waits until it accepts connections.
    pub fn start_on(port: u16) -> RedisServer {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let log = support::forward_lines(child.stdout.take().expect("redis-server's stdout"));
        let redis = RedisServer { child, port };
        // Its log says when it listens: waiting for that line is waiting for the event.
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            match log.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("Ready to accept connections") => break,
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("redis-server on port {port} exited at start: {seen:?}")
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("redis-server on port {port} not ready within {PATIENCE:?}: {seen:?}")
                }
            }
        }
        // The rest of its log is read (and dropped) by forward_lines' thread until it
        // exits, so that a full pipe never stalls it.
        std::thread::spawn(move || log.iter().for_each(drop));
        redis
    }

    /// `redis://127.0.0.1:PORT`, for `--cluster`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends it a signal by name, e.g. `STOP` or `CONT`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} redis-server failed");
    }

    /// Waits until one of the clients that read the stream sent no command for a second:
    /// a node that stands still (a moving node's reader asks again every half second).
    pub fn wait_until_a_reader_is_idle(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let clients = self.command("CLIENT LIST");
            let idle_reader = clients.lines().any(|client| {
                client.contains(" cmd=xread")
                    && client
                        .split(' ')
                        .find_map(|field| field.strip_prefix("idle="))
                        .and_then(|idle| idle.parse::<u64>().ok())
                        .is_some_and(|idle| idle >= 1)
            });
            if idle_reader {
                return;
            }
            assert!(Instant::now() < deadline, "no reader went idle: {clients}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends an inline command and returns the bulk string it answers.
    pub fn command(&self, command: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to Redis");
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .expect("send to Redis");
        let mut reader = BufReader::new(stream);
        let mut header = String::new();
        reader.read_line(&mut header).expect("Redis answers");
        let length: usize = header
            .trim()
            .strip_prefix('$')
            .and_then(|length| length.parse().ok())
            .unwrap_or_else(|| panic!("not a bulk string: {header}"));
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("the answer");
        String::from_utf8_lossy(&body).into_owned()
    }

    /// Kills it (paused or not) and starts a new, empty one on the same port.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = RedisServer::start_on(self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
