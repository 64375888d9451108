//! Bytes to and from a node: connecting over TCP or TLS (accepting the soak's self-signed
//! certificate), reading with a deadline, closing politely (or with a reset), and keeping
//! the last bytes received to show with a failure.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// How long a connection, a TLS or WebSocket handshake, or a page load may take.
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(10);
/// How long a closing client waits for the server to close its side.
pub const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// A byte stream to a node: plain TCP or TLS over it.
pub trait Wire: Read + Write + Send {
    fn tcp(&self) -> &TcpStream;
    /// Ends the stream politely: TLS says close_notify first.
    fn finish(&mut self) -> io::Result<()> {
        self.flush()?;
        self.tcp().shutdown(Shutdown::Write)
    }
}

impl Wire for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

impl Wire for TlsStream {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }

    fn finish(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush()?;
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.sock)?;
        }
        self.sock.shutdown(Shutdown::Write)
    }
}

pub fn connect_tcp(address: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&address, CONNECT_PATIENCE)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A TLS connection with its handshake done.
pub fn connect_tls(address: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<TlsStream> {
    let tcp = connect_tcp(address)?;
    tcp.set_read_timeout(Some(CONNECT_PATIENCE))?;
    let name = ServerName::IpAddress(address.ip().into());
    let connection = ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// Reads at most until `deadline`: `Ok(None)` when nothing came, `UnexpectedEof` at the end.
pub fn read_until(
    wire: &mut dyn Wire,
    buffer: &mut [u8],
    deadline: Instant,
) -> io::Result<Option<usize>> {
    let Some(left) = deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
    else {
        return Ok(None);
    };
    wire.tcp()
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
    match wire.read(buffer) {
        Ok(0) => Err(io::Error::new(
            ErrorKind::UnexpectedEof,
            "closed by the server",
        )),
        Ok(n) => Ok(Some(n)),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Closes with a reset: SO_LINGER 0 makes close() send RST.
pub fn reset_tcp(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized linger value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// How a TLS connection ended, for counting the ends without close_notify.
#[derive(Debug, Clone, Copy)]
pub enum TlsEnd {
    /// The server closed after `/quit`.
    Quit,
    /// The server closed after the client's close_notify.
    ClientClose,
    /// The server closed after the WebSocket close frames.
    WebSocketClose,
}

/// TLS connections the server ended without close_notify, by [`TlsEnd`] (reported, not a
/// failure: every client here had its last line by then, and browsers do not mind).
pub static ENDED_WITHOUT_CLOSE_NOTIFY: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Counts an end of stream that is rustls's report of a session ended without close_notify.
pub fn count_missing_close_notify(error: &io::Error, end: TlsEnd) {
    if error.kind() == ErrorKind::UnexpectedEof && error.to_string().contains("close_notify") {
        ENDED_WITHOUT_CLOSE_NOTIFY[end as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// After our side is closed: reads what the server still sends until it closes too, so
/// that our close never resets a connection with data unread.
pub fn drain_until_closed(wire: &mut dyn Wire, end: TlsEnd) -> io::Result<()> {
    let deadline = Instant::now() + CLOSE_PATIENCE;
    let mut buffer = [0; 4096];
    loop {
        match read_until(wire, &mut buffer, deadline) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "the server did not close",
                ));
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                count_missing_close_notify(&e, end);
                return Ok(());
            }
            // A reset after our close_notify or FIN is the server closing too.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// How many of the last bytes received a link keeps to show with a failure.
const KEPT_BYTES: usize = 400;

/// The last bytes received, kept in `tail`.
pub fn keep_tail(tail: &mut VecDeque<u8>, received: &[u8]) {
    tail.extend(received);
    let excess = tail.len().saturating_sub(KEPT_BYTES);
    tail.drain(..excess);
}

/// Bytes as text a log can hold: printable ASCII as is, the rest escaped.
pub fn show_bytes(bytes: &VecDeque<u8>) -> String {
    let bytes: Vec<u8> = bytes.iter().copied().collect();
    format!("last bytes received: \"{}\"", bytes.escape_ascii())
}

/// A wire that keeps the last bytes read from it (the frames a WebSocket received).
pub struct Recorded<W> {
    inner: W,
    tail: VecDeque<u8>,
}

impl<W> Recorded<W> {
    pub fn new(inner: W) -> Recorded<W> {
        Recorded {
            inner,
            tail: VecDeque::new(),
        }
    }

    /// The last bytes read, as [`show_bytes`] writes them.
    pub fn shown(&self) -> String {
        show_bytes(&self.tail)
    }
}

impl<W: Read> Read for Recorded<W> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buffer)?;
        keep_tail(&mut self.tail, &buffer[..n]);
        Ok(n)
    }
}

impl<W: Write> Write for Recorded<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Wire> Wire for Recorded<W> {
    fn tcp(&self) -> &TcpStream {
        self.inner.tcp()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.inner.finish()
    }
}

/// A TLS client that accepts the server's certificate whatever it is: the soak's
/// certificate is self-signed, and this measures the server, not trust.
pub fn tls_config() -> Arc<ClientConfig> {
    crate::trust::client_config().expect("rustls's default protocol versions")
}
