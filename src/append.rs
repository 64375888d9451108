//! A file that is only ever appended to, shared by threads: `dump` writes what clients
//! send into one, the chat's `--transcript` what is said. Each `store` is one write under
//! a lock, so units from different writers never interleave; the first failure is kept,
//! logged once, and returned to every later writer, so that nothing is dropped silently.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use log::error;
use parking_lot::Mutex;

use crate::error::{Error, describe};

pub struct AppendFile {
    path: PathBuf,
    fsync: bool,
    state: Mutex<FileState>,
}

struct FileState {
    file: File,
    /// Set by the first failed write; from then on nothing more is taken.
    failure: Option<(io::ErrorKind, String)>,
}

impl AppendFile {
    /// Opens (or creates) `path` for appending: what it holds is never truncated. With
    /// `fsync`, every store is made durable (fdatasync) before it returns.
    pub fn open(path: &Path, fsync: bool) -> Result<AppendFile, Error> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|source| Error::OpenFile {
                path: path.to_owned(),
                source,
            })?;
        Ok(AppendFile {
            path: path.to_owned(),
            fsync,
            state: Mutex::new(FileState {
                file,
                failure: None,
            }),
        })
    }

    /// Appends `bytes` as one write; on failure returns the reason, the same for everyone.
    pub fn store(&self, bytes: &[u8]) -> Result<(), String> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock();
        if let Some((_, reason)) = &state.failure {
            return Err(reason.clone());
        }
        let mut written = state.file.write_all(bytes);
        if written.is_ok() && self.fsync {
            written = state.file.sync_data();
        }
        written.map_err(|failure| {
            let reason = describe(&failure);
            error!("cannot store data in {}: {reason}", self.path.display());
            state.failure = Some((failure.kind(), reason.clone()));
            reason
        })
    }

    /// Why writing failed, if it did.
    pub fn failure_reason(&self) -> Option<String> {
        self.state
            .lock()
            .failure
            .as_ref()
            .map(|(_, reason)| reason.clone())
    }

    /// Makes everything durable; reports a failure met at any point.
    pub fn finish(&self) -> Result<(), Error> {
        let state = self.state.lock();
        let store_error = |source| Error::Store {
            path: self.path.clone(),
            source,
        };
        match &state.failure {
            Some((kind, reason)) => Err(store_error(io::Error::new(*kind, reason.clone()))),
            None => state.file.sync_data().map_err(store_error),
        }
    }
}
