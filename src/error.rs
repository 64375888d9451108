//! The errors the library reports to its caller, each a sentence a user can act on.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why tcpchat could not start or could not finish cleanly.
#[derive(Debug)]
pub enum Error {
    /// Binding the listening socket failed (`cannot listen on ADDR: REASON`).
    Listen { address: String, source: io::Error },
    /// A file named on the command line cannot be opened (`cannot open FILE: REASON`).
    OpenFile { path: PathBuf, source: io::Error },
    /// The dump file stopped accepting writes (`cannot store data in FILE: REASON`).
    Store { path: PathBuf, source: io::Error },
    /// Options that do not go together (`--web` with a subcommand other than chat).
    Usage(String),
    /// The `--history-db` file cannot be used: not ours, from a newer tcpchat, in use by
    /// another tcpchat, or SQLite failed (the whole sentence).
    History(String),
    /// A thread the server needs could not be started.
    Thread {
        name: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Listen { address, source } => {
                write!(f, "cannot listen on {address}: {}", describe(source))
            }
            Error::OpenFile { path, source } => {
                write!(f, "cannot open {}: {}", path.display(), describe(source))
            }
            Error::Store { path, source } => {
                write!(
                    f,
                    "cannot store data in {}: {}",
                    path.display(),
                    describe(source)
                )
            }
            Error::Usage(why) | Error::History(why) => f.write_str(why),
            Error::Thread { name, source } => {
                write!(f, "cannot start the {name} thread: {}", describe(source))
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Listen { source, .. }
            | Error::OpenFile { source, .. }
            | Error::Store { source, .. }
            | Error::Thread { source, .. } => Some(source),
            Error::Usage(_) | Error::History(_) => None,
        }
    }
}

/// An I/O error as a short lower-case phrase: "address already in use", not
/// "Address already in use (os error 98)". Used in log lines and in `! ` lines to clients.
pub fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.find(" (os error") {
        Some(cut) => &text[..cut],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::from("unknown error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_drops_the_os_error_number_and_capital() {
        let error = io::Error::from_raw_os_error(libc::EADDRINUSE);
        assert_eq!(describe(&error), "address already in use");
    }
}
