//! The chapter's `socket.pipe(fileStream)`: everything clients send is appended to a file.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::append::AppendFile;
use crate::error::{Error, describe};
use crate::protocol::{self, LineSplitter};
use crate::service::{Connection, Received, Service};

/// Options of `tcpchat dump`.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// The file to append to; created if missing, never truncated.
    pub path: PathBuf,
    /// Prefix each line with a timestamp and the client's address.
    pub tag: bool,
    /// Make each write durable (fdatasync) before reading more.
    pub fsync: bool,
}

/// Appends what every client sends to one file. Each read's complete lines go to the file
/// in one write while holding the file's lock, so lines from different clients never
/// interleave; a client waiting for the lock (or a slow disk) stops reading, and TCP
/// backpressure slows the sender instead of memory growing.
pub struct Dump {
    options: DumpOptions,
    max_line: usize,
    file: AppendFile,
}

impl Dump {
    /// Opens (or creates) the file for appending.
    pub fn open(options: DumpOptions, max_line: usize) -> Result<Dump, Error> {
        let file = AppendFile::open(&options.path, options.fsync)?;
        Ok(Dump {
            options,
            max_line,
            file,
        })
    }

    /// Adds one piece to the batch for the file, with its tag if asked for.
    fn append_piece(
        &self,
        batch: &mut Vec<u8>,
        connection: &Connection,
        bytes: &[u8],
        starts_line: bool,
    ) {
        if self.options.tag && starts_line {
            let now = humantime::format_rfc3339_millis(SystemTime::now());
            let _ = write!(batch, "{now} {} ", connection.peer);
        }
        batch.extend_from_slice(bytes);
    }
}

impl Service for Dump {
    fn serve(&self, connection: Connection) {
        connection.log_opened();
        let how = self.take_data(&connection);
        connection.log_closed(how);
    }

    fn goodbye(&self) -> Option<Vec<u8>> {
        self.file
            .failure_reason()
            .map(|reason| format!("! cannot store data: {reason}\n").into_bytes())
    }

    fn finish(&self) -> Result<(), Error> {
        self.file.finish()
    }
}

impl Dump {
    /// Stores what the client sends until it goes; returns how it ended, for the log.
    fn take_data(&self, connection: &Connection) -> String {
        let mut splitter = LineSplitter::new(self.max_line);
        let mut chunk = [0u8; 4096];
        let mut stored: u64 = 0;
        loop {
            let mut batch = Vec::new();
            let how = match connection.receive(&mut chunk) {
                Received::Data(bytes) => {
                    splitter.feed(bytes, |piece| {
                        self.append_piece(&mut batch, connection, piece.bytes, piece.starts_line)
                    });
                    None
                }
                Received::Closed => Some(String::from("client closed")),
                Received::IdleTimeout => {
                    let _ = (&*connection.stream).write_all(protocol::IDLE_FAREWELL);
                    Some(String::from("idle timeout"))
                }
                Received::Failed(error) => Some(describe(&error)),
            };
            if how.is_some() {
                // A last line without a newline gets one, so that the next client's line
                // does not run on from it.
                splitter.finish(|piece| {
                    self.append_piece(&mut batch, connection, piece.bytes, piece.starts_line);
                    batch.push(b'\n');
                });
            }
            if let Err(reason) = self.file.store(&batch) {
                // The server closes every connection, this one included, with the reason
                // (see `goodbye`).
                connection.shutdown.abort();
                return format!("cannot store data: {reason}");
            }
            stored += batch.len() as u64;
            if let Some(how) = how {
                return format!("{how}, {stored} bytes stored");
            }
        }
    }
}
