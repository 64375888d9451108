//! What TLS costs tcpchat per delivery: the same load over plain TCP and over TLS, one after
//! the other against servers the caller started (`--plain ADDR --plain-pid PID --tls ADDR
//! --tls-pid PID`), the server's CPU time per delivered line for each, as one JSON object.
//!
//! Load: 50 clients, 5 of them sending 2,000 lines each at 1,000 lines/s; every client
//! reads on a thread of its own until it has every line of the others. The TLS clients
//! accept any certificate (the server's is made at start-up, `--tls-self-signed`): this
//! measures cost, not trust.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

// The load generator's client configuration (any certificate, a session store).
#[path = "../wire/trust.rs"]
mod trust;

const CLIENTS: usize = 50;
const SENDERS: usize = 5;
const LINES: usize = 2_000;
const RATE: f64 = 1_000.0;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut plain = None;
    let mut tls = None;
    let (mut plain_pid, mut tls_pid) = (0, 0);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        match arg.as_str() {
            "--plain" => plain = value.parse::<SocketAddr>().ok(),
            "--tls" => tls = value.parse::<SocketAddr>().ok(),
            "--plain-pid" => plain_pid = value.parse().unwrap_or(0),
            "--tls-pid" => tls_pid = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    let (Some(plain), Some(tls)) = (plain, tls) else {
        eprintln!("usage: tls-cost --plain ADDR --plain-pid PID --tls ADDR --tls-pid PID");
        std::process::exit(2);
    };
    let plain_ns = run(plain, plain_pid, None);
    let tls_ns = run(tls, tls_pid, Some(client_config()));
    if plain_ns <= 0.0 || tls_ns <= 0.0 {
        // /proc gave no CPU time (it happens now and then): no figure rather than a wrong one.
        eprintln!("tls-cost: no CPU time measured for a server");
        std::process::exit(1);
    }
    println!(
        "{{\"plain_ns_per_delivery\": {plain_ns:.1}, \"tls_ns_per_delivery\": {tls_ns:.1}, \"tls_extra_ns_per_delivery\": {:.1}, \"tls_over_plain\": {:.3}}}",
        tls_ns - plain_ns,
        tls_ns / plain_ns
    );
}

/// A stream to the server, plain or TLS.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn connect(address: SocketAddr, tls: &Option<Arc<ClientConfig>>) -> Box<dyn Stream> {
    let tcp = TcpStream::connect(address).expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    match tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = ServerName::try_from(trust::SERVER_NAME).expect("name");
            let connection = ClientConnection::new(Arc::clone(config), name).expect("client");
            Box::new(StreamOwned::new(connection, tcp))
        }
    }
}

/// Runs the load; returns the server's CPU nanoseconds per delivery.
fn run(address: SocketAddr, pid: u32, tls: Option<Arc<ClientConfig>>) -> f64 {
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for index in 0..CLIENTS {
        let mut reader = BufReader::new(connect(address, &tls));
        let mut welcome = String::new();
        reader.read_line(&mut welcome).expect("welcome");
        if index < SENDERS {
            senders.push(reader);
        } else {
            readers.push(reader);
        }
    }
    let expected = SENDERS * LINES;
    let cpu_before = cpu_seconds(pid);
    let mut reading = Vec::new();
    for mut reader in readers {
        reading.push(thread::spawn(move || {
            let (mut got, mut line) = (0, String::new());
            while got < expected {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line.contains("] line ") => got += 1,
                    Ok(_) => {}
                }
            }
            got
        }));
    }
    let started = Instant::now();
    let sending: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            thread::spawn(move || {
                for n in 0..LINES {
                    let due = started + Duration::from_secs_f64(n as f64 / RATE);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                    let stream = sender.get_mut();
                    stream
                        .write_all(format!("line {n}\n").as_bytes())
                        .expect("send");
                    stream.flush().expect("flush");
                }
                sender
            })
        })
        .collect();
    let senders: Vec<_> = sending
        .into_iter()
        .map(|t| t.join().expect("sender"))
        .collect();
    let delivered: usize = reading.into_iter().map(|t| t.join().expect("reader")).sum();
    let cpu = cpu_seconds(pid) - cpu_before;
    eprintln!(
        "{} (pid {pid}): {delivered} lines read in {:.2} s, server CPU {cpu:.3} s",
        if tls.is_some() { "tls" } else { "plain" },
        started.elapsed().as_secs_f64()
    );
    drop(senders);
    // Senders' lines reach the other senders too: count those the readers saw, and as many
    // for the senders (each sees the other 4 senders' lines).
    let deliveries = delivered + SENDERS * (SENDERS - 1) * LINES;
    cpu * 1e9 / deliveries.max(1) as f64
}

/// The CPU time of every thread of `pid` so far, in seconds (the first field of each
/// thread's schedstat, in nanoseconds: finer than /proc/PID/stat's clock ticks). Threads
/// that already ended are not counted: the servers here keep theirs during a run.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let nanos: u64 = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    nanos as f64 / 1e9
}

fn client_config() -> Arc<ClientConfig> {
    trust::client_config().expect("rustls's default protocol versions")
}
