//! churn: short connections one after another from 8 loops, against an empty server, and
//! whether the server gives back every descriptor, thread and byte they took. Over TLS the
//! loops share one session store, as a browser's tabs do: a connection resumes the
//! session of an earlier one when the server gave it a ticket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::fleet::Target;
use crate::json::Json;
use crate::procfs::proc_sample;
use crate::wire::{Dialer, Transport};

/// How long a churn connection may wait for any one step before it counts as an error.
const PATIENCE: Duration = Duration::from_secs(5);

/// 8 loops of [`churn_once`] for `seconds`.
pub fn churn(target: &Target, seconds: f64) -> io::Result<Json> {
    let dialer = Arc::new(Dialer::new(target.transport())?);
    let before = proc_sample(target.pid());
    let cpu_before = target.cpu_s_each();
    let scheduling_before = target.scheduling();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let addr = target.addr();
    let loops: Vec<_> = (0..8)
        .map(|_| {
            let dialer = Arc::clone(&dialer);
            thread::spawn(move || {
                let (mut done, mut errors) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let once = match dialer.transport() {
                        Transport::Tcp => churn_once_tcp(addr),
                        _ => churn_once(&dialer, addr),
                    };
                    match once {
                        Ok(()) => done += 1,
                        Err(_) => errors += 1,
                    }
                }
                (done, errors)
            })
        })
        .collect();
    let started = Instant::now();
    let (mut done, mut errors) = (0, 0);
    for handle in loops {
        let (d, e) = handle.join().unwrap_or((0, 1));
        done += d;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Read at once: a thread's counts go with it, and a server's idle connection threads
    // may end soon (tcpchat's wait 2 s for the next client; during the run they are reused).
    let scheduling = target.scheduling().since(&scheduling_before);
    let cpu_s: f64 = target.cpu_s_since(&cpu_before).iter().sum();
    let connections = done.max(1) as f64;
    let handshakes = dialer.handshakes();
    // Give the server a moment to close and join what it still holds.
    let settle = Instant::now() + Duration::from_secs(3);
    let mut after = proc_sample(target.pid());
    while (after.fds != before.fds || after.threads != before.threads) && Instant::now() < settle {
        thread::sleep(Duration::from_millis(20));
        after = proc_sample(target.pid());
    }
    Ok(Json::new()
        .num("connections_per_s", done as f64 / elapsed)
        .num("errors", errors as f64)
        // What a connection costs the server in scheduling, all its threads together.
        .num(
            "server_switches_per_connection",
            scheduling.switches as f64 / connections,
        )
        .num(
            "server_wait_us_per_connection",
            scheduling.waiting_ns as f64 / 1e3 / connections,
        )
        // Handshakes included: what TLS adds to a connection shows here.
        .num("server_cpu_us_per_connection", cpu_s * 1e6 / connections)
        .num("full_handshakes", handshakes.full as f64)
        .num("resumed_handshakes", handshakes.resumed as f64)
        .num("fds_before", before.fds as f64)
        .num("fds_after", after.fds as f64)
        .num("threads_before", before.threads as f64)
        .num("threads_after", after.threads as f64)
        .num("rss_before_kib", before.rss_kib as f64)
        .num("rss_after_kib", after.rss_kib as f64))
}

/// Connect, send a line, close our side, read until the server closes, close. Plain TCP
/// keeps the steps (and system calls) it had before the other transports, so that its
/// figures compare with earlier runs.
fn churn_once_tcp(addr: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.write_all(b"churn\n")?;
    stream.shutdown(Shutdown::Write)?;
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink)? > 0 {}
    Ok(())
}

/// Connect (with the transport's handshakes), send a line, close our side (a close frame
/// over WebSocket; close_notify, then TCP, over TLS), read until the server closes, close.
fn churn_once(dialer: &Dialer, addr: SocketAddr) -> io::Result<()> {
    let mut connection = dialer.connect(addr, PATIENCE)?;
    let mut writer = connection.writer()?;
    writer.send(b"churn\n", None)?;
    writer.close()?;
    connection.read_until_closed()
}
