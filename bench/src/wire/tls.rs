//! TLS over the load generator's sockets, with rustls: the handshake (blocking, as a
//! client connects), then bytes in and out of a session that a client's reader thread and
//! its sender share.
//!
//! The session sits behind a mutex held only to move bytes in and out of it, never during
//! a system call: a sender encrypts under the lock and writes the ciphertext after
//! releasing it; a reader reads ciphertext from its non-blocking socket first and takes
//! the lock to decrypt it (`read_tls`, `process_new_packets`, the plaintext out). Each
//! connection has one sender at most, so records reach the socket in the order they were
//! sealed.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind};

use super::trust::SERVER_NAME;

/// One connection's TLS session, shared by its reader and its sender.
pub type Session = Arc<Mutex<ClientConnection>>;

/// Runs the handshake on a blocking `stream` (within its timeouts); returns the session and
/// whether it resumed an earlier one (a ticket from `config`'s session store).
pub fn handshake(
    config: &Arc<ClientConfig>,
    stream: &mut TcpStream,
) -> io::Result<(Session, bool)> {
    let name = ServerName::try_from(SERVER_NAME).map_err(io::Error::other)?;
    let mut connection =
        ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
    while connection.is_handshaking() {
        connection.complete_io(stream)?;
    }
    let resumed = connection.handshake_kind() == Some(HandshakeKind::Resumed);
    Ok((Arc::new(Mutex::new(connection)), resumed))
}

/// Locks a session; a thread that panicked holding it left it as usable as any.
fn lock(session: &Session) -> MutexGuard<'_, ClientConnection> {
    session.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Encrypts `plain`; returns the records to write.
pub fn encrypt(session: &Session, plain: &[u8]) -> io::Result<Vec<u8>> {
    let mut connection = lock(session);
    let mut records = Vec::with_capacity(plain.len() + 64);
    let mut rest = plain;
    while !rest.is_empty() {
        let taken = connection.writer().write(rest)?;
        let mut sealed = 0;
        while connection.wants_write() {
            sealed += connection.write_tls(&mut records)?;
        }
        if taken == 0 && sealed == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        rest = &rest[taken..];
    }
    Ok(records)
}

/// A close_notify alert, the records to write: the end of what this client says.
pub fn close_notify(session: &Session) -> io::Result<Vec<u8>> {
    let mut connection = lock(session);
    connection.send_close_notify();
    let mut records = Vec::new();
    while connection.wants_write() {
        connection.write_tls(&mut records)?;
    }
    Ok(records)
}

/// Decrypts `records` (as read from the socket, cut anywhere) and appends the plaintext
/// to `plain`; returns whether the server has closed the session (close_notify).
pub fn decrypt(session: &Session, records: &[u8], plain: &mut Vec<u8>) -> io::Result<bool> {
    let mut connection = lock(session);
    let mut rest = records;
    let mut closed = false;
    while !rest.is_empty() {
        // Takes what its buffer holds; the loop hands it the rest after processing.
        connection.read_tls(&mut rest)?;
        let state = connection
            .process_new_packets()
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        let available = state.plaintext_bytes_to_read();
        if available > 0 {
            let start = plain.len();
            plain.resize(start + available, 0);
            connection.reader().read_exact(&mut plain[start..])?;
        }
        closed |= state.peer_has_closed();
    }
    Ok(closed)
}

/// Plaintext already decrypted but not yet read (it arrived with the handshake's last
/// records), appended to `plain`.
pub fn take_buffered(session: &Session, plain: &mut Vec<u8>) -> io::Result<()> {
    let mut connection = lock(session);
    let available = connection
        .process_new_packets()
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?
        .plaintext_bytes_to_read();
    let start = plain.len();
    plain.resize(start + available, 0);
    connection.reader().read_exact(&mut plain[start..])
}
