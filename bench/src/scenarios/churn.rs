//! churn: short connections one after another from 8 loops, against an empty server, and
//! whether the server gives back every descriptor, thread and byte they took.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::fleet::Target;
use crate::json::Json;
use crate::procfs::proc_sample;

/// 8 loops of [`churn_once`] for `seconds`.
pub fn churn(target: &Target, seconds: f64) -> io::Result<Json> {
    let before = proc_sample(target.pid());
    let scheduling_before = target.scheduling();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let addr = target.addr();
    let loops: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let (mut done, mut errors) = (0u64, 0u64);
                while Instant::now() < deadline {
                    match churn_once(addr) {
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
    let connections = done.max(1) as f64;
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
        .num("fds_before", before.fds as f64)
        .num("fds_after", after.fds as f64)
        .num("threads_before", before.threads as f64)
        .num("threads_after", after.threads as f64)
        .num("rss_before_kib", before.rss_kib as f64)
        .num("rss_after_kib", after.rss_kib as f64))
}

/// Connect, send a line, close our side, read until the server closes, close.
fn churn_once(addr: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"churn\n")?;
    stream.shutdown(Shutdown::Write)?;
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink)? > 0 {}
    Ok(())
}
