//! Helpers shared by the tests: line clients that wait for lines (never sleep), servers
//! started in-process or as the real binary.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tcpchat::{Config, Mode, Server};

/// How long a test waits for something that should happen at once. Generous: the test
/// machines are shared and slow, and a pass never waits for it.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Starts a chat server in-process on 127.0.0.1, port 0.
pub fn start_chat(config: Config) -> Server {
    start(config, Mode::Chat)
}

/// Starts any subcommand's server in-process.
pub fn start(config: Config, mode: Mode) -> Server {
    tcpchat::start(&config, &mode).expect("server starts")
}

/// A path in the temporary folder, unique to this test, removed when dropped.
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn new(name: &str) -> TempPath {
        let path = std::env::temp_dir().join(format!("tcpchat-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempPath(path)
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A folder in the temporary folder, unique to this test, removed with its contents when
/// dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("tcpchat-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temporary folder");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client speaking lines, as nc would.
pub struct LineClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl LineClient {
    pub fn connect(address: SocketAddr) -> LineClient {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let writer = stream.try_clone().expect("clone");
        LineClient {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Connects and reads the welcome line of the chat; returns the client and its nick.
    pub fn join(address: SocketAddr) -> (LineClient, String) {
        LineClient::welcomed(LineClient::connect(address))
    }

    /// [`LineClient::join`] from another local address, such as `127.0.0.2`.
    pub fn join_from(source: &str, address: SocketAddr) -> (LineClient, String) {
        let stream = connect_from(source, address);
        let writer = stream.try_clone().expect("clone");
        LineClient::welcomed(LineClient {
            reader: BufReader::new(stream),
            writer,
        })
    }

    fn welcomed(mut client: LineClient) -> (LineClient, String) {
        let welcome = client.expect_line("* welcome, ");
        let nick = welcome
            .trim_start_matches("* welcome, ")
            .split('!')
            .next()
            .expect("nick in welcome")
            .to_owned();
        (client, nick)
    }

    pub fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .expect("send line");
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send bytes");
    }

    /// The next line, or None at end of stream. Panics if nothing comes within PATIENCE.
    pub fn next_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => Some(
                String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => None,
            Err(error) => panic!("no line within {PATIENCE:?}: {error}"),
        }
    }

    /// Reads until a line containing `pattern` arrives; fails with what came instead.
    pub fn expect_line(&mut self, pattern: &str) -> String {
        let mut seen = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            match self.next_line() {
                Some(line) if line.contains(pattern) => return line,
                Some(line) => seen.push(line),
                None => panic!("connection closed before {pattern:?}; saw {seen:?}"),
            }
        }
        panic!("no line with {pattern:?} within {PATIENCE:?}; saw {seen:?}");
    }

    /// Reads until a line containing each pattern has arrived, in whatever order; returns
    /// them in the patterns' order. For lines from different nodes, whose order is not
    /// fixed.
    pub fn expect_lines_in_any_order<const N: usize>(
        &mut self,
        patterns: [&str; N],
    ) -> [String; N] {
        let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
        let mut seen = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        while found.iter().any(Option::is_none) && Instant::now() < deadline {
            let Some(line) = self.next_line() else {
                panic!("connection closed before {patterns:?}; saw {seen:?}");
            };
            // The first pattern still waited for that the line has.
            let awaited = (0..N).find(|&i| found[i].is_none() && line.contains(patterns[i]));
            match awaited {
                Some(i) => found[i] = Some(line),
                None => seen.push(line),
            }
        }
        found.map(|line| {
            line.unwrap_or_else(|| {
                panic!("not all of {patterns:?} within {PATIENCE:?}; saw {seen:?}")
            })
        })
    }

    /// Reads lines until the server closes the connection; returns them.
    pub fn expect_closed(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(line) = self.next_line() {
            seen.push(line);
        }
        seen
    }

    /// Asserts that nothing arrives before `marker` is echoed back by a round trip: sends
    /// `/who` and checks that its answer is the very next line.
    pub fn expect_nothing_pending(&mut self) {
        self.send("/who");
        let line = self.next_line().expect("answer to /who");
        assert!(line.starts_with("* in "), "unexpected line {line:?}");
    }

    /// The client's own address, as the server sees it.
    pub fn local_address(&self) -> SocketAddr {
        self.writer.local_addr().expect("local address")
    }

    /// The underlying socket.
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }

    /// Reads exactly `count` bytes.
    pub fn expect_bytes(&mut self, count: usize) -> Vec<u8> {
        let mut bytes = vec![0; count];
        self.reader
            .read_exact(&mut bytes)
            .expect("bytes within PATIENCE");
        bytes
    }

    /// Reads what is there (0 at end of stream).
    pub fn read_some(&mut self, buffer: &mut [u8]) -> usize {
        match self.reader.read(buffer) {
            Ok(count) => count,
            Err(error) if error.kind() == ErrorKind::ConnectionReset => 0,
            Err(error) => panic!("nothing to read within {PATIENCE:?}: {error}"),
        }
    }

    pub fn shutdown_write(&self) {
        self.writer
            .shutdown(Shutdown::Write)
            .expect("shutdown write");
    }
}

/// A process with its stderr read line by line, killed when dropped.
pub struct LoggedProcess {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl LoggedProcess {
    /// Runs `command` with its stderr forwarded line by line.
    pub fn spawn(command: Command) -> LoggedProcess {
        let (child, log) = spawn_with_log(command);
        LoggedProcess::new(child, log)
    }

    pub fn new(child: Child, log: mpsc::Receiver<String>) -> LoggedProcess {
        LoggedProcess { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a log line containing `pattern`; returns the lines up to and including
    /// it.
    pub fn expect_log(&mut self, pattern: &str) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(pattern);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(_) => panic!("no log line with {pattern:?}; saw {seen:?}"),
            }
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit; returns its status and the rest of its log.
    pub fn wait_exit(mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + PATIENCE;
        let mut rest = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => rest.push(line),
                // stderr closed: the process is exiting.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the process did not exit within {PATIENCE:?}; log {rest:?}")
                }
            }
        }
        let status = self.child.wait().expect("wait");
        (status, rest)
    }
}

impl Drop for LoggedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real `tcpchat` binary, with its log on stderr read line by line.
pub struct BinaryServer {
    process: LoggedProcess,
    pub address: SocketAddr,
}

impl BinaryServer {
    /// Runs `tcpchat ARGS --host 127.0.0.1 --port 0` and waits for `listening on ADDR`.
    pub fn start(args: &[&str]) -> BinaryServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tcpchat"));
        command
            .args(args)
            .args(["--host", "127.0.0.1", "--port", "0"]);
        let (child, log) = spawn_with_log(command);
        BinaryServer::from_child(child, log)
    }

    /// Wraps a started process (e.g. under a shell with a lower ulimit).
    pub fn from_child(child: Child, log: mpsc::Receiver<String>) -> BinaryServer {
        let mut server = BinaryServer {
            process: LoggedProcess::new(child, log),
            address: "0.0.0.0:0".parse().expect("address"),
        };
        let listening = server.expect_log("listening on ");
        let address = listening.rsplit(' ').next().expect("address in log");
        server.address = address.parse().expect("bound address");
        server
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits for a log line containing `pattern`, and returns it.
    pub fn expect_log(&mut self, pattern: &str) -> String {
        let mut seen = self.process.expect_log(pattern);
        seen.pop().expect("the line found")
    }

    pub fn signal(&self, signal: &str) {
        self.process.signal(signal);
    }

    /// Waits for the process to exit; returns its status and the rest of its log.
    pub fn wait_exit(self) -> (ExitStatus, Vec<String>) {
        self.process.wait_exit()
    }

    /// The server's resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        proc_status_field(self.pid(), "VmRSS:")
    }
}

/// Spawns a command with stderr forwarded line by line into a channel.
pub fn spawn_with_log(mut command: Command) -> (Child, mpsc::Receiver<String>) {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn tcpchat");
    let stderr = child.stderr.take().expect("stderr");
    (child, forward_lines(stderr))
}

/// The lines read from `stream`, as they come, on a thread of their own.
pub fn forward_lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// A numeric field of /proc/PID/status, e.g. "VmRSS:" in KiB or "Threads:".
pub fn proc_status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Runs the binary with `args`, which must fail to start: returns its stderr lines after
/// checking that it exited with status 1.
pub fn failed_start(args: &[&str]) -> Vec<String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tcpchat"));
    command.args(args);
    let (mut child, log) = spawn_with_log(command);
    let status = child.wait().expect("wait");
    assert_eq!(
        status.code(),
        Some(1),
        "tcpchat {args:?} exited with {status}"
    );
    log.iter().collect()
}

/// A connection to `address` from `source`: any 127.x.y.z reaches a server on 127.0.0.1,
/// so tests can be several addresses.
pub fn connect_from(source: &str, address: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let source: SocketAddr = format!("{source}:0").parse().expect("source");
    socket
        .bind(&source.into())
        .expect("bind the source address");
    socket.connect(&address.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
}

/// True if a connection to `address` is refused now.
pub fn is_refused(address: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&address, PATIENCE) {
        Err(error) => error.kind() == ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

/// Whether `programs` are all on PATH. A test that needs a missing one is skipped with a
/// note on stderr, except in CI (`CI` set), where a skip would hide a broken set-up
/// (.ci/run installs them all).
pub fn programs_available(programs: &[&str]) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|program| !std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!("{} not installed", missing.join(" and "));
    if std::env::var_os("CI").is_some() {
        panic!("{reason}: CI must run this test (.ci/run installs the packages)");
    }
    eprintln!("skipped: {reason}");
    false
}
