//! A client's reading side, for a reader thread's poll: what its non-blocking socket has,
//! decrypted (TLS) and taken out of its frames (WebSocket), as the lines the server sent.

use std::io::{self, ErrorKind, Read};
use std::net::TcpStream;

use mio::net::TcpStream as MioStream;

use super::tls::{self, Session};
use super::websocket::{Decoded, FrameDecoder};

pub struct Incoming {
    stream: MioStream,
    session: Option<Session>,
    /// WebSocket only.
    frames: Option<FrameDecoder>,
    /// Text that came with the handshakes, handed over by the first [`Incoming::receive`].
    early_text: Vec<u8>,
    /// The server's frames ended before any read: handed over after the early text.
    closed_early: bool,
    /// Decrypted bytes of the last read, kept to reuse its allocation.
    plain: Vec<u8>,
}

/// What one read gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Text (possibly none: a partial frame or record, a ping).
    Text,
    /// Nothing to read now.
    Nothing,
    /// The server closed the connection (TCP, TLS close_notify, or a close frame); any
    /// text before the end was given too.
    Closed,
}

impl Incoming {
    pub(super) fn new(
        stream: TcpStream,
        session: Option<Session>,
        mut frames: Option<FrameDecoder>,
        early: Vec<u8>,
    ) -> Incoming {
        let (early_text, closed_early) = match &mut frames {
            Some(decoder) => {
                let mut text = Vec::new();
                let decoded = decoder.feed(&early, &mut text);
                (text, decoded == Decoded::Closed)
            }
            None => (early, false),
        };
        Incoming {
            stream: MioStream::from_std(stream),
            session,
            frames,
            early_text,
            closed_early,
            plain: Vec::new(),
        }
    }

    /// The socket, to register with a poll.
    pub fn source(&mut self) -> &mut MioStream {
        &mut self.stream
    }

    /// Reads once into `buffer` and appends the text it carried to `text`.
    pub fn receive(&mut self, buffer: &mut [u8], text: &mut Vec<u8>) -> io::Result<Received> {
        if !self.early_text.is_empty() {
            text.append(&mut self.early_text);
            return Ok(Received::Text);
        }
        if self.closed_early {
            return Ok(Received::Closed);
        }
        let count = loop {
            match self.stream.read(buffer) {
                Ok(0) => return Ok(Received::Closed),
                Ok(count) => break count,
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    return Ok(Received::Nothing);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        };
        let mut closed = false;
        let plain = match &self.session {
            Some(session) => {
                self.plain.clear();
                closed = tls::decrypt(session, &buffer[..count], &mut self.plain)?;
                &self.plain[..]
            }
            None => &buffer[..count],
        };
        match &mut self.frames {
            Some(decoder) => closed |= decoder.feed(plain, text) == Decoded::Closed,
            None => text.extend_from_slice(plain),
        }
        Ok(if closed {
            Received::Closed
        } else {
            Received::Text
        })
    }
}
