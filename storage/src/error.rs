//! The crate's error type: every variant names the file and, for bad content, the offset.

use std::path::PathBuf;

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed.
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The device is full: nothing more can be written; sealed segments are intact.
    #[error("{path}: disk full writing at offset {offset}")]
    DiskFull { path: PathBuf, offset: u64 },
    /// A file's content is not what the format says it must be.
    #[error("{path}: at offset {offset}: {what}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// The writer configuration is unusable.
    #[error("invalid writer config: {0}")]
    Config(String),
    /// A record larger than a block can hold.
    #[error("record of {len} bytes is larger than the {max}-byte block bound")]
    RecordTooLarge { len: usize, max: usize },
    /// The writer failed earlier and was stopped; nothing more is accepted.
    #[error("writer stopped after an earlier error: {0}")]
    Stopped(String),
}

impl StorageError {
    /// An I/O error of `op` on `path`. Writes that run out of space are reported as
    /// [`StorageError::DiskFull`] with their offset by the file writer itself.
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            op,
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.into(),
            offset,
            what: what.into(),
        }
    }
}
