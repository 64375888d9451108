//! wait-linked: whether a cluster's nodes pass lines to each other yet. A node chats
//! locally until its Redis link is up (the lines said before reach only its own clients),
//! so scripts/bench.sh waits for this before a cluster run: one client on every node, each
//! saying a probe line every 200 ms until the clients on all the other nodes have seen it.
//! The probes carry no marker, so the scenario's clients, who get them as the room's
//! history, ignore them.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How often each node's probe client says its line again while it has not gone round.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How long one read waits for a probe client's next bytes.
const READ_WAIT: Duration = Duration::from_millis(20);

/// Returns how long it took until every node's line reached every other node; fails after
/// `timeout`, naming the nodes whose lines had not gone round.
pub fn wait_until_linked(addrs: &[SocketAddr], timeout: Duration) -> io::Result<Duration> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut probes = addrs
        .iter()
        .map(|addr| ProbeClient::connect(*addr, timeout))
        .collect::<io::Result<Vec<_>>>()?;
    let nodes = probes.len();
    // heard[sender][receiver]: the line of node `sender` reached node `receiver`.
    let mut heard: Vec<Vec<bool>> = (0..nodes)
        .map(|sender| (0..nodes).map(|receiver| receiver == sender).collect())
        .collect();
    let has_gone_round = |heard: &[Vec<bool>], sender: usize| heard[sender].iter().all(|&h| h);
    let mut next_probe = started;
    loop {
        if (0..nodes).all(|sender| has_gone_round(&heard, sender)) {
            return Ok(started.elapsed());
        }
        if Instant::now() >= deadline {
            let silent: Vec<String> = (0..nodes)
                .filter(|&sender| !has_gone_round(&heard, sender))
                .map(|sender| addrs[sender].to_string())
                .collect();
            return Err(io::Error::other(format!(
                "not linked after {timeout:?}: lines from {} did not reach every other node",
                silent.join(", ")
            )));
        }
        if Instant::now() >= next_probe {
            for (sender, probe) in probes.iter_mut().enumerate() {
                if !has_gone_round(&heard, sender) {
                    probe.say(&probe_text(sender))?;
                }
            }
            next_probe += PROBE_INTERVAL;
        }
        for (receiver, probe) in probes.iter_mut().enumerate() {
            for line in probe.lines()? {
                for (sender, row) in heard.iter_mut().enumerate() {
                    if line.contains(&probe_text(sender)) {
                        row[receiver] = true;
                    }
                }
            }
        }
    }
}

/// The probe line of node `sender`; whole words, so that node 1's is not part of node 11's.
fn probe_text(sender: usize) -> String {
    format!("link-probe-{sender}-end")
}

/// One client on one node.
struct ProbeClient {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl ProbeClient {
    fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<ProbeClient> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|error| io::Error::new(error.kind(), format!("{addr}: {error}")))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(READ_WAIT))?;
        Ok(ProbeClient {
            stream,
            pending: Vec::new(),
        })
    }

    fn say(&mut self, text: &str) -> io::Result<()> {
        self.stream.write_all(format!("{text}\n").as_bytes())
    }

    /// The whole lines that arrived within [`READ_WAIT`], lossily decoded.
    fn lines(&mut self) -> io::Result<Vec<String>> {
        let mut buffer = [0u8; 4096];
        loop {
            match self.stream.read(&mut buffer) {
                Ok(0) => return Err(io::Error::from(ErrorKind::UnexpectedEof)),
                Ok(count) => self.pending.extend_from_slice(&buffer[..count]),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    break;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        let Some(last_newline) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let whole: Vec<u8> = self.pending.drain(..=last_newline).collect();
        Ok(String::from_utf8_lossy(&whole)
            .lines()
            .map(str::to_owned)
            .collect())
    }
}
