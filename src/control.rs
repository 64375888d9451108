//! What the threads of a server tell each other, shared by the acceptor (server.rs), the
//! connection places (places.rs) and the supervisor (shutdown.rs): connection numbers, the
//! supervisor's messages, and the handle that asks for a shutdown.

use std::net::TcpStream;
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::os_thread::OsThread;

/// Number of a connection, unique for the life of the server, counting from 1.
pub type ConnectionId = u64;

/// What the supervisor hears about.
pub(crate) enum Control {
    /// Ctrl-C or a caller: stop accepting, let connections drain, then close them.
    Shutdown,
    /// A service cannot go on (the dump file failed): stop accepting and close at once.
    Abort,
    /// The acceptor handed a connection to a thread (or failed to, and closed it).
    Spawned {
        id: ConnectionId,
        stream: Arc<TcpStream>,
    },
    /// The acceptor started connection thread number `worker`.
    WorkerStarted { worker: u64, thread: OsThread },
    /// Connection thread `worker` has ended (its guard sends this however it ends).
    WorkerEnded(u64),
    /// A connection has ended; sent by its slot guard however its service returns.
    Finished(ConnectionId),
    /// The acceptor has closed the listener and ended.
    AcceptStopped,
    /// `--once`: the one client has come; stop accepting (pages and scrapes did not count).
    OneClientCame,
}

/// Asks a running server to shut down. Cheap to clone; every copy reaches the same server.
#[derive(Clone)]
pub struct ShutdownHandle {
    control: Sender<Control>,
}

impl ShutdownHandle {
    pub(crate) fn new(control: Sender<Control>) -> Self {
        ShutdownHandle { control }
    }

    /// Stops accepting at once; open connections go on until they end or the drain timeout
    /// passes. Asking again, or after the server ended, does nothing.
    pub fn request(&self) {
        // An error means the server has already ended: nothing left to stop.
        let _ = self.control.send(Control::Shutdown);
    }

    /// Stops accepting and closes every connection now, without a drain period.
    pub fn abort(&self) {
        let _ = self.control.send(Control::Abort);
    }
}
