//! The chapter's echo server: greets, sends every line back, and ends on "quit".

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use crate::error::describe;
use crate::protocol::{IDLE_FAREWELL, LineSplitter};
use crate::service::{Connection, Received, Service};

/// The chapter's greeting.
pub const GREETING: &[u8] = b"Hello! You can start typing. Type \"quit\" to exit!\n";
/// The answer to "quit".
pub const FAREWELL: &[u8] = b"Bye Bye!\n";
/// After "Bye Bye!", how long the client has to close (see `Connection::wait_for_close`).
const LINGER: Duration = Duration::from_secs(2);

/// Sends every line back unchanged, bytes that are not UTF-8 included.
pub struct Echo {
    max_line: usize,
}

impl Echo {
    /// An echo server; lines longer than `max_line` are echoed in pieces as they arrive.
    pub fn new(max_line: usize) -> Echo {
        Echo { max_line }
    }
}

/// "quit", ignoring case and surrounding blanks, with any line ending (CR NUL included).
fn is_quit(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\0").unwrap_or(line);
    line.trim_ascii().eq_ignore_ascii_case(b"quit")
}

impl Service for Echo {
    fn serve(&self, connection: Connection) {
        connection.log_opened();
        let how = echo_until_done(&connection, self.max_line);
        connection.log_closed(how);
    }
}

/// Echoes until the client quits or goes; returns how it ended, for the log.
fn echo_until_done(connection: &Connection, max_line: usize) -> String {
    // Writes block this connection's thread only: a client that does not read its echo
    // slows down itself and nobody else.
    let mut writer = &*connection.stream;
    if let Err(error) = writer.write_all(GREETING) {
        return describe(&error);
    }
    // A character-mode telnet ends `quit` with CR NUL, a raw terminal with a bare CR.
    let mut splitter = LineSplitter::new(max_line).ending_at_cr();
    let mut chunk = [0u8; 4096];
    loop {
        let mut reply = Vec::new();
        let mut quit = false;
        let how = match connection.receive(&mut chunk) {
            Received::Data(bytes) => {
                splitter.feed(bytes, |piece| {
                    if quit {
                        return; // the client asked to leave: the rest is not echoed
                    }
                    if piece.is_whole_line() && is_quit(piece.bytes) {
                        quit = true;
                    } else {
                        reply.extend_from_slice(piece.bytes);
                    }
                });
                None
            }
            Received::Closed => Some("client closed"),
            Received::IdleTimeout => Some("idle timeout"),
            Received::Failed(error) => return describe(&error),
        };
        if how.is_some() {
            // The end of the stream: send back what is left of an unfinished line.
            splitter.finish(|piece| reply.extend_from_slice(piece.bytes));
        }
        if matches!(how, Some("idle timeout")) {
            reply.extend_from_slice(IDLE_FAREWELL);
        }
        if quit {
            reply.extend_from_slice(FAREWELL);
        }
        if let Err(error) = writer.write_all(&reply) {
            return describe(&error);
        }
        if quit {
            let _ = connection.stream.shutdown(Shutdown::Write);
            connection.wait_for_close(LINGER);
            return String::from("quit");
        }
        if let Some(how) = how {
            return how.to_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quit_ignores_case_and_blanks() {
        assert!(is_quit(b"quit\n"));
        assert!(is_quit(b"  QuIt \r\n"));
        assert!(is_quit(b"quit\r"));
        assert!(is_quit(b"quit\r\0"));
        assert!(!is_quit(b"quit now\n"));
        assert!(!is_quit(b"qu it\n"));
    }
}
