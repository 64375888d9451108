//! A TCP proxy of the test's own on 127.0.0.1, in front of one upstream address, that can
//! be blackholed as a cut cable would: for the cluster's tests, a node cut from Redis while
//! the others still reach it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};

use parking_lot::{Condvar, Mutex};

use crate::support::PATIENCE;

/// A TCP proxy on 127.0.0.1 to one upstream address, a thread per direction per
/// connection, that can be blackholed: it then forwards nothing either way (not even the
/// end of a stream) and closes nothing, and connections it accepts meanwhile wait.
pub struct Proxy {
    address: SocketAddr,
    state: Arc<ProxyState>,
    acceptor: Option<JoinHandle<()>>,
}

struct ProxyState {
    upstream: SocketAddr,
    blackholed: Mutex<bool>,
    healed: Condvar,
    stopping: AtomicBool,
    /// Every open connection's two sockets, to shut them when the proxy stops.
    open: Mutex<HashMap<u64, Vec<TcpStream>>>,
    next_connection: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Proxy {
    /// Starts one on a free port, forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let address = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(ProxyState {
            upstream,
            blackholed: Mutex::new(false),
            healed: Condvar::new(),
            stopping: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&state);
        let acceptor = thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let connection = Arc::clone(&accepting);
                let thread = thread::spawn(move || connection.forward(client));
                let mut threads = accepting.threads.lock();
                threads.retain(|thread| !thread.is_finished());
                threads.push(thread);
            }
        });
        Proxy {
            address,
            state,
            acceptor: Some(acceptor),
        }
    }

    /// Where to connect to reach the upstream through it.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// From now on nothing goes through, either way, until [`Proxy::heal`].
    pub fn blackhole(&self) {
        *self.state.blackholed.lock() = true;
    }

    /// Lets everything through again, what was held first.
    pub fn heal(&self) {
        *self.state.blackholed.lock() = false;
        self.state.healed.notify_all();
    }
}

impl ProxyState {
    /// Waits while blackholed; false if the proxy is stopping.
    fn wait_while_blackholed(&self) -> bool {
        let mut blackholed = self.blackholed.lock();
        while *blackholed && !self.stopping.load(Ordering::SeqCst) {
            self.healed.wait(&mut blackholed);
        }
        !self.stopping.load(Ordering::SeqCst)
    }

    fn keep_open(&self, id: u64, stream: &TcpStream) {
        if let Ok(clone) = stream.try_clone() {
            self.open.lock().entry(id).or_default().push(clone);
        }
        // Stopped after the sweep of open sockets: nobody else will shut this one.
        if self.stopping.load(Ordering::SeqCst) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// One connection: reaches the upstream once not blackholed, then a thread per
    /// direction.
    fn forward(self: Arc<Self>, client: TcpStream) {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        self.keep_open(id, &client);
        let upstream = if self.wait_while_blackholed() {
            TcpStream::connect_timeout(&self.upstream, PATIENCE).ok()
        } else {
            None
        };
        let Some(upstream) = upstream else {
            let _ = client.shutdown(Shutdown::Both);
            self.open.lock().remove(&id);
            return;
        };
        self.keep_open(id, &upstream);
        let (Ok(client_copy), Ok(upstream_copy)) = (client.try_clone(), upstream.try_clone())
        else {
            self.open.lock().remove(&id);
            return;
        };
        let state = Arc::clone(&self);
        let down = thread::spawn(move || state.pump(&upstream_copy, &client_copy));
        self.pump(&client, &upstream);
        let _ = down.join();
        self.open.lock().remove(&id);
    }

    /// Copies `from` to `to` until either ends, holding everything while blackholed.
    fn pump(&self, mut from: &TcpStream, mut to: &TcpStream) {
        let mut buffer = [0; 16 * 1024];
        loop {
            let read = from.read(&mut buffer);
            if !self.wait_while_blackholed() {
                break;
            }
            match read {
                Ok(0) => {
                    // The end of the stream goes on too; the other direction may go on.
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                }
                Ok(count) => {
                    if to.write_all(&buffer[..count]).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        {
            let _blackholed = self.state.blackholed.lock();
            self.state.stopping.store(true, Ordering::SeqCst);
        }
        self.state.healed.notify_all();
        // A connection to itself wakes the acceptor blocked in accept.
        let _ = TcpStream::connect(self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in self.state.open.lock().values().flatten() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let threads = std::mem::take(&mut *self.state.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
    }
}
