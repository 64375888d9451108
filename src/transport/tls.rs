//! TLS (`--tls-cert`/`--tls-key` or `--tls-self-signed`), with rustls, under any port:
//! nc-style clients (`openssl s_client`, `ncat --ssl`, `socat OPENSSL:`) and browsers (https
//! and wss on the `--web` port).
//!
//! A client's TLS session is shared by two threads and owned by neither: its connection
//! thread decrypts what it reads, the hub encrypts what it writes. A parking_lot mutex
//! guards the session and is held only to move bytes in and out of it, never during a
//! blocking read or a write that could wait: the connection thread reads ciphertext from
//! the socket with the lock released and takes it only to hand the bytes over; the hub
//! takes it to encrypt and to give the kernel what it takes without blocking. So neither
//! waits for the other longer than a copy.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection};
use socket2::SockRef;

use crate::error::Error;
use crate::sys::SEND_NOW;

/// How long a client has to complete the TLS handshake. A client that stalls or trickles is
/// cut off after this, whatever its pace; it never holds anyone else up.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Ciphertext read per system call.
const READ_CHUNK: usize = 4096;
/// Encrypted output rustls may hold for a client the kernel is not taking; beyond it the
/// hub keeps the rest as plain text in the outbox, where `--max-pending` counts it.
const SEND_BUFFER: usize = 64 * 1024;

/// Where the server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Certificate {
    /// PEM files: the certificate chain and its private key.
    Files { cert: PathBuf, key: PathBuf },
    /// Made at start-up for this run; its fingerprint is logged for students to compare.
    SelfSigned,
}

/// The server side of TLS: one config for every client.
pub(crate) struct Tls {
    config: Arc<ServerConfig>,
    /// SHA-256 of the certificate, as `AB:CD:...`.
    pub fingerprint: String,
}

impl Tls {
    /// Loads or makes the certificate. `names` go into a self-signed one (host names and
    /// addresses clients may use).
    pub(crate) fn new(certificate: &Certificate, names: Vec<String>) -> Result<Tls, Error> {
        let (chain, key) = match certificate {
            Certificate::Files { cert, key } => (read_chain(cert)?, read_key(key)?),
            Certificate::SelfSigned => {
                let made = rcgen::generate_simple_self_signed(names).map_err(|error| {
                    Error::Usage(format!("cannot make a self-signed certificate: {error}"))
                })?;
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                    made.signing_key.serialize_der(),
                ));
                (vec![made.cert.der().clone()], key)
            }
        };
        let fingerprint = chain.first().map(fingerprint).unwrap_or_default();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|error| Error::Usage(format!("cannot use the TLS certificate: {error}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // A client that comes back (a browser reconnecting, a phone waking, a script's next
        // nc) resumes its session from a ticket it keeps, instead of a full handshake: the
        // server keeps nothing per session (rustls' default is a cache of 256 sessions in
        // the server's memory, about 2 KiB each, which a classroom outgrows). The ticket
        // keys are made at start-up and rotated every 6 hours.
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|error| Error::Usage(format!("cannot make TLS session tickets: {error}")))?;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Tls {
            config: Arc::new(config),
            fingerprint,
        })
    }

    /// Runs the handshake on the connection's own thread, within [`HANDSHAKE_DEADLINE`].
    /// Before it is done the client is nobody's but this thread's, so it writes itself.
    #[inline(never)] // its frame only during the handshake: ARCHITECTURE.md, "Stack sizes"
    pub(crate) fn accept(&self, stream: &TcpStream) -> io::Result<Arc<TlsSession>> {
        let mut connection = ServerConnection::new(Arc::clone(&self.config))
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        connection.set_buffer_limit(Some(SEND_BUFFER));
        let deadline = Instant::now() + HANDSHAKE_DEADLINE;
        let restore = stream.read_timeout()?;
        let mut socket = stream;
        while connection.is_handshaking() {
            while connection.wants_write() {
                connection.write_tls(&mut socket)?;
            }
            if !connection.is_handshaking() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "handshake too slow",
                ));
            }
            stream.set_read_timeout(Some(left))?;
            if connection.read_tls(&mut socket)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in the handshake",
                ));
            }
            if let Err(error) = connection.process_new_packets() {
                // Tell the client why (an alert), then give up.
                let _ = connection.write_tls(&mut socket);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
        // TLS 1.3 sends its session tickets right after the handshake.
        while connection.wants_write() {
            connection.write_tls(&mut socket)?;
        }
        stream.set_read_timeout(restore)?;
        Ok(Arc::new(TlsSession {
            connection: Mutex::new(connection),
        }))
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let open_error = |source| Error::OpenFile {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(open_error)?;
    let chain: Result<Vec<_>, _> = CertificateDer::pem_reader_iter(BufReader::new(file)).collect();
    match chain {
        Ok(chain) if !chain.is_empty() => Ok(chain),
        Ok(_) => Err(Error::Usage(format!(
            "no certificate in {}",
            path.display()
        ))),
        Err(error) => Err(Error::Usage(format!(
            "cannot read {}: {error}",
            path.display()
        ))),
    }
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|error| Error::Usage(format!("no private key in {}: {error}", path.display())))
}

/// `AB:CD:...`: SHA-256 of the certificate, as browsers and `openssl x509 -fingerprint
/// -sha256` show it.
fn fingerprint(certificate: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, certificate.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One client's TLS session, shared by its connection thread and the hub.
pub(crate) struct TlsSession {
    connection: Mutex<ServerConnection>,
}

impl TlsSession {
    /// Reads decrypted bytes, blocking (within the socket's read timeout) for ciphertext
    /// with the lock released. 0 means the client closed (or sent close_notify).
    pub(crate) fn read(&self, stream: &TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.wait_for_plaintext(stream)? == 0 {
                return Ok(0);
            }
            match self.connection.lock().reader().read(buffer) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                read => return read,
            }
        }
    }

    /// Blocks (within the socket's read timeout) until decrypted bytes are there to read,
    /// leaving them unread; returns how many (0: the client closed).
    pub(crate) fn wait_for_plaintext(&self, stream: &TcpStream) -> io::Result<usize> {
        loop {
            {
                let mut connection = self.connection.lock();
                let state = connection
                    .process_new_packets()
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
                if state.plaintext_bytes_to_read() > 0 {
                    return Ok(state.plaintext_bytes_to_read());
                }
                if state.peer_has_closed() {
                    return Ok(0);
                }
            }
            // Wait for the ciphertext before the buffer it is read into is on the stack: an
            // idle client's thread then waits without that page (a system call more per
            // read, which is per batch of records, not per line sent to anyone).
            if stream.peek(&mut [0u8; 1])? == 0 || self.decrypt_available(stream)? == 0 {
                return Ok(0);
            }
        }
    }

    /// Reads the ciphertext that has arrived (at most [`READ_CHUNK`] bytes) into the
    /// session; returns how many bytes (0 at the end of the stream). A frame of its own, so
    /// that its buffer is on the stack only while there is something to read.
    #[inline(never)]
    fn decrypt_available(&self, stream: &TcpStream) -> io::Result<usize> {
        let mut ciphertext = [0u8; READ_CHUNK];
        let count = (&*stream).read(&mut ciphertext)?;
        let mut connection = self.connection.lock();
        let mut received = &ciphertext[..count];
        while !received.is_empty() {
            connection.read_tls(&mut received)?;
            connection
                .process_new_packets()
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        }
        Ok(count)
    }

    /// Encrypts `plaintext` as far as the session's buffer allows; returns how much it took.
    pub(crate) fn encrypt(&self, plaintext: &[u8]) -> usize {
        self.connection
            .lock()
            .writer()
            .write(plaintext)
            .unwrap_or(0)
    }

    /// Gives the kernel the encrypted bytes it takes now, without blocking. Returns whether
    /// everything went out, and how many bytes did.
    pub(crate) fn send_available(&self, stream: &TcpStream) -> io::Result<(bool, usize)> {
        let mut connection = self.connection.lock();
        let mut socket = NonBlocking(stream);
        let mut sent = 0;
        while connection.wants_write() {
            match connection.write_tls(&mut socket) {
                Ok(count) => sent += count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((false, sent));
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok((true, sent))
    }

    /// Queues a close_notify: the last record the client gets.
    pub(crate) fn close(&self) {
        self.connection.lock().send_close_notify();
    }

    /// Writes `plaintext` in full, blocking: for the connection thread before the client is
    /// the hub's (HTTP responses, the WebSocket handshake).
    pub(crate) fn write_all_blocking(
        &self,
        stream: &TcpStream,
        plaintext: &[u8],
    ) -> io::Result<()> {
        let mut connection = self.connection.lock();
        connection.writer().write_all(plaintext)?;
        let mut socket = stream;
        while connection.wants_write() {
            connection.write_tls(&mut socket)?;
        }
        Ok(())
    }
}

/// The socket, written without blocking and without SIGPIPE.
struct NonBlocking<'a>(&'a TcpStream);

impl Write for NonBlocking<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        SockRef::from(self.0).send_with_flags(bytes, SEND_NOW)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
