//! The ways a client reaches a node, behind one interface (`Link`): a line client over
//! plain TCP or TLS, and a real `nc` process. A browser is browser.rs; telnet, which types
//! instead of sending lines, is telnet.rs.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, ErrorKind, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::wire::{CLOSE_PATIENCE, TlsEnd, Wire, drain_until_closed, read_until, reset_tcp};

/// A connected chat client.
pub trait Link: Send {
    /// Sends one line as this client would (a line and its end, or a WebSocket message).
    fn send_line(&mut self, text: &str) -> io::Result<()>;
    /// The next line received, waiting until `deadline` at most: `Ok(None)` when none came
    /// in time, an error once the connection is closed (`UnexpectedEof` for a clean close).
    fn next_line(&mut self, deadline: Instant) -> io::Result<Option<String>>;
    /// Leaves as this client leaves: `after_quit` when the server has already said `* bye!`.
    fn close(self: Box<Self>, after_quit: bool) -> io::Result<()>;
    /// Leaves with a reset (a laptop that drops off the network, a killed client).
    fn reset(self: Box<Self>);
    /// The last bytes received, to show with a failure (empty where not kept).
    fn recent(&self) -> String {
        String::new()
    }
    /// Telnet only: switches to character mode (`true`) or back to line mode.
    fn telnet_mode(&mut self, _character: bool) -> io::Result<()> {
        Ok(())
    }
}

/// Splits received bytes into lines (LF, with a CR before it dropped).
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, bytes: &[u8], lines: &mut VecDeque<String>) {
        for &byte in bytes {
            if byte == b'\n' {
                if self.pending.last() == Some(&b'\r') {
                    self.pending.pop();
                }
                lines.push_back(String::from_utf8_lossy(&self.pending).into_owned());
                self.pending.clear();
            } else {
                self.pending.push(byte);
            }
        }
    }
}

/// A line client (what socat, a script or `openssl s_client` is) over TCP or TLS.
pub struct LineLink<W: Wire> {
    wire: W,
    splitter: LineSplitter,
    lines: VecDeque<String>,
}

impl<W: Wire> LineLink<W> {
    pub fn new(wire: W) -> LineLink<W> {
        LineLink {
            wire,
            splitter: LineSplitter::default(),
            lines: Default::default(),
        }
    }
}

impl<W: Wire + 'static> Link for LineLink<W> {
    fn send_line(&mut self, text: &str) -> io::Result<()> {
        self.wire.write_all(format!("{text}\n").as_bytes())?;
        self.wire.flush()
    }

    fn next_line(&mut self, deadline: Instant) -> io::Result<Option<String>> {
        let mut buffer = [0; 4096];
        loop {
            if let Some(line) = self.lines.pop_front() {
                return Ok(Some(line));
            }
            match read_until(&mut self.wire, &mut buffer, deadline)? {
                Some(n) => self.splitter.push(&buffer[..n], &mut self.lines),
                None => return Ok(None),
            }
        }
    }

    fn close(mut self: Box<Self>, after_quit: bool) -> io::Result<()> {
        if after_quit {
            // The server closes after `* bye!`: read to its end, then close our side.
            let result = drain_until_closed(&mut self.wire, TlsEnd::Quit);
            let _ = self.wire.finish();
            return result;
        }
        self.wire.finish()?;
        drain_until_closed(&mut self.wire, TlsEnd::ClientClose)
    }

    fn reset(self: Box<Self>) {
        reset_tcp(self.wire.tcp());
    }
}

/// How an nc user leaves when the server has not closed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcStyle {
    /// `nc HOST PORT` in a terminal: leaves with Ctrl-C.
    Interactive,
    /// `nc -N HOST PORT` in a script: the end of its input closes the connection's sending side.
    Script,
}

/// A real netcat-openbsd process; its output is read by a thread of its own.
pub struct NcLink {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    style: NcStyle,
}

impl NcLink {
    pub fn spawn(nc: &str, address: SocketAddr, style: NcStyle) -> io::Result<NcLink> {
        let mut command = Command::new(nc);
        if style == NcStyle::Script {
            command.arg("-N");
        }
        command
            .arg(address.ip().to_string())
            .arg(address.port().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // SAFETY: prctl and signal are async-signal-safe. PR_SET_PDEATHSIG makes nc die
        // with the thread that started it, so no nc outlives the driver however it ends;
        // SIGINT is restored because a shell starts background jobs with it ignored, and
        // Ctrl-C is how an nc user leaves.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let (sender, lines) = mpsc::channel();
        thread::Builder::new()
            .name(String::from("nc-output"))
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            let text = String::from_utf8_lossy(&line);
                            let text = text.trim_end_matches(['\n', '\r']).to_owned();
                            if sender.send(text).is_err() {
                                return;
                            }
                        }
                    }
                }
            })?;
        Ok(NcLink {
            child,
            stdin,
            lines,
            style,
        })
    }

    /// Waits for nc to exit; kills it if it does not in time.
    fn wait_exit(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + CLOSE_PATIENCE;
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(io::Error::new(ErrorKind::TimedOut, "nc did not exit"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Link for NcLink {
    fn send_line(&mut self, text: &str) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other("stdin closed"))?;
        stdin.write_all(format!("{text}\n").as_bytes())?;
        stdin.flush()
    }

    fn next_line(&mut self, deadline: Instant) -> io::Result<Option<String>> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => Ok(Some(line)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                Err(io::Error::new(ErrorKind::UnexpectedEof, "nc exited"))
            }
        }
    }

    fn close(mut self: Box<Self>, after_quit: bool) -> io::Result<()> {
        if after_quit || self.style == NcStyle::Script {
            // Ctrl-D: the end of nc's input (with -N, its FIN; after /quit, nc's exit).
            drop(self.stdin.take());
        } else {
            // Ctrl-C.
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        }
        self.wait_exit()
    }

    fn reset(mut self: Box<Self>) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NcLink {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
