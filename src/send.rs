//! The chapter's `fs.createReadStream(file).pipe(socket)`: each client receives a file.

use std::fs::File;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use log::warn;

use crate::error::{Error, describe};
use crate::protocol;
use crate::service::{Connection, Received, Service};

/// After sending the file and closing its side, how long the server waits for the client
/// to close before closing regardless. Closing while the client's bytes are still unread
/// would make the kernel answer with a reset, which can destroy the end of the file on its
/// way to the client; the wait lets a client that typed something read it all first.
const LINGER: Duration = Duration::from_secs(5);

/// Options of `tcpchat send`.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// The file every client receives.
    pub path: PathBuf,
    /// Leave the connection open after the file (the chapter's `{end: false}`).
    pub keep_open: bool,
}

/// Streams a file to every client. The file is opened anew for each client and copied by
/// the kernel (sendfile), so memory stays the same whatever its size. A client that reads
/// slowly only holds up its own thread.
pub struct SendFile {
    options: SendOptions,
}

impl SendFile {
    /// Checks that the file can be read now, so a typo fails at start-up.
    pub fn open(options: SendOptions) -> Result<SendFile, Error> {
        let open_error = |source| Error::OpenFile {
            path: options.path.clone(),
            source,
        };
        let file = File::open(&options.path).map_err(open_error)?;
        let metadata = file.metadata().map_err(open_error)?;
        if metadata.is_dir() {
            return Err(open_error(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            )));
        }
        Ok(SendFile { options })
    }

    /// Sends the file, then ends or keeps the connection; returns how it went, for the log.
    fn send_file(&self, connection: &Connection) -> String {
        let mut file = match File::open(&self.options.path) {
            Ok(file) => file,
            Err(error) => {
                let reason = describe(&error);
                warn!("cannot open {}: {reason}", self.options.path.display());
                let line = format!("! cannot read the file: {reason}\n");
                let _ = (&*connection.stream).write_all(line.as_bytes());
                return format!("cannot open the file: {reason}");
            }
        };
        let sent = match send_whole_file(&mut file, &connection.stream) {
            Ok(sent) => sent,
            Err(error) => return format!("sending failed: {}", describe(&error)),
        };
        if self.options.keep_open {
            let how = discard_until_closed(connection);
            return format!("{sent} bytes sent, then {how}");
        }
        let _ = connection.stream.shutdown(Shutdown::Write);
        connection.wait_for_close(LINGER);
        format!("{sent} bytes sent")
    }
}

/// Bytes per sendfile call: large enough to keep the socket busy, small enough that a
/// shutdown is noticed between calls.
const SENDFILE_CHUNK: usize = 1 << 20;

/// Copies the file to the socket inside the kernel with sendfile(2): no buffer in user
/// space, so memory stays flat whatever the file's size. (std's `io::copy` falls back to
/// an 8 KiB read/write loop for a `&TcpStream`, as strace shows.) Files sendfile cannot
/// read, such as pipes, go through `io::copy`.
fn send_whole_file(file: &mut File, stream: &TcpStream) -> io::Result<u64> {
    let mut sent: u64 = 0;
    loop {
        // SAFETY: both descriptors are open for the whole call; a null offset makes
        // sendfile read from, and advance, the file's own position. Unlike send, it cannot
        // be told not to raise SIGPIPE when the client is gone: Rust programs ignore
        // SIGPIPE (std sets that up before main), so it fails with EPIPE instead; a program
        // in another language that embeds the library must ignore SIGPIPE too (docs/operations.md, "Embedding the library").
        let result = unsafe {
            libc::sendfile(
                stream.as_raw_fd(),
                file.as_raw_fd(),
                std::ptr::null_mut(),
                SENDFILE_CHUNK,
            )
        };
        match result {
            0 => return Ok(sent),
            count if count > 0 => sent += count as u64,
            _ => {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EINVAL | libc::ENOSYS) if sent == 0 => {
                        return io::copy(file, &mut &*stream);
                    }
                    _ => return Err(error),
                }
            }
        }
    }
}

/// Reads and drops whatever the client sends until it closes or idles out.
fn discard_until_closed(connection: &Connection) -> String {
    let mut chunk = [0u8; 4096];
    loop {
        match connection.receive(&mut chunk) {
            Received::Data(_) => {}
            Received::Closed => return String::from("client closed"),
            Received::IdleTimeout => {
                let _ = (&*connection.stream).write_all(protocol::IDLE_FAREWELL);
                return String::from("idle timeout");
            }
            Received::Failed(error) => return describe(&error),
        }
    }
}

impl Service for SendFile {
    fn serve(&self, connection: Connection) {
        connection.log_opened();
        let how = self.send_file(&connection);
        connection.log_closed(how);
    }
}
