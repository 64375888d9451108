//! A client's writing side: its lines framed (WebSocket), encrypted (TLS) and written to
//! its socket, waiting in poll while the kernel's buffer is full.

use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use super::tls::{self, Session};
use super::websocket;

pub struct Writer {
    stream: TcpStream,
    session: Option<Session>,
    websocket: bool,
    /// The state of the masks' generator (xorshift): a client's frames must be masked, and
    /// the mask should not be one a page could predict; nothing here needs more than that.
    mask_state: u32,
}

impl Writer {
    pub(super) fn new(
        stream: TcpStream,
        session: Option<Session>,
        websocket: bool,
    ) -> io::Result<Writer> {
        // Any non-zero start will do; the descriptor makes each writer's differ.
        let mask_state = 0x9E37_79B9 ^ stream.as_raw_fd() as u32;
        Ok(Writer {
            stream,
            session,
            websocket,
            mask_state: mask_state.max(1),
        })
    }

    /// Another writer on the same connection (the socket and session are shared).
    pub fn try_clone(&self) -> io::Result<Writer> {
        Writer::new(
            self.stream.try_clone()?,
            self.session.clone(),
            self.websocket,
        )
    }

    /// Sends `text` (whole lines), one WebSocket message over WebSocket. Waits as long as
    /// the kernel's buffer is full, or with `give_up`, until then (`TimedOut`): a scenario
    /// that must end by itself cannot wait on a frozen server forever.
    pub fn send(&mut self, text: &[u8], give_up: Option<Instant>) -> io::Result<()> {
        if self.websocket {
            let frame = websocket::text_frame(text, self.next_mask());
            self.send_bytes(&frame, give_up)
        } else {
            self.send_bytes(text, give_up)
        }
    }

    /// Ends what this client says, as its transport does. Over WebSocket, a close frame,
    /// and nothing more: as a browser does, the client then waits for the server to answer
    /// and close the connection (RFC 6455, 7.1.1). Otherwise a TLS close_notify, then the
    /// end of the TCP stream.
    pub fn close(&mut self) -> io::Result<()> {
        if self.websocket {
            let frame = websocket::close_frame(self.next_mask());
            return self.send_bytes(&frame, None);
        }
        if let Some(session) = &self.session {
            let records = tls::close_notify(session)?;
            write_all_waiting(&self.stream, &records, None)?;
        }
        self.stream.shutdown(Shutdown::Write)
    }

    fn send_bytes(&mut self, bytes: &[u8], give_up: Option<Instant>) -> io::Result<()> {
        match &self.session {
            Some(session) => {
                let records = tls::encrypt(session, bytes)?;
                write_all_waiting(&self.stream, &records, give_up)
            }
            None => write_all_waiting(&self.stream, bytes, give_up),
        }
    }

    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        x.to_ne_bytes()
    }
}

/// write_all on a socket that may be non-blocking: waits in poll when the kernel buffer
/// is full, until `give_up` if given.
fn write_all_waiting(
    mut writer: &TcpStream,
    mut bytes: &[u8],
    give_up: Option<Instant>,
) -> io::Result<()> {
    while !bytes.is_empty() {
        match writer.write(bytes) {
            Ok(0) => return Err(io::Error::from(ErrorKind::WriteZero)),
            Ok(count) => bytes = &bytes[count..],
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                if give_up.is_some_and(|moment| Instant::now() >= moment) {
                    return Err(io::Error::from(ErrorKind::TimedOut));
                }
                let mut fd = libc::pollfd {
                    fd: writer.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                unsafe { libc::poll(&mut fd, 1, 100) };
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
