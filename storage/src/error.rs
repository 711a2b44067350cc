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
    /// The device is full (ENOSPC, or a short write): nothing more can be written;
    /// sealed segments are intact.
    #[error("{path}: disk full writing at offset {offset}")]
    DiskFull { path: PathBuf, offset: u64 },
    /// The file system is read-only (EROFS, e.g. remounted read-only after an error).
    #[error("{path}: read-only file system writing at offset {offset}")]
    ReadOnly { path: PathBuf, offset: u64 },
    /// A file's content is not what the format says it must be.
    #[error("{path}: at offset {offset}: {what}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// A length or offset read from a file points outside the file (or a named bound):
    /// refused before anything is allocated or read for it.
    #[error(
        "{path}: at offset {offset}: {what} claims {len} bytes at {at}, but must end by byte {limit}"
    )]
    OutOfBounds {
        path: PathBuf,
        /// Where the lying field is.
        offset: u64,
        /// What the field describes (`"index"`, `"block"`).
        what: &'static str,
        /// Where the thing it describes would start.
        at: u64,
        /// How many bytes it claims.
        len: u64,
        /// Where it must end at the latest (the file length, or the start of what follows).
        limit: u64,
    },
    /// A path named like a segment is not a regular file (a FIFO, a device, a
    /// directory): it is never opened, since opening a FIFO would block.
    #[error("{path}: a {found}, not a regular file; only regular files are read as segments")]
    NotRegularFile { path: PathBuf, found: &'static str },
    /// The segment's records are of another event ABI than the reader expects.
    #[error(
        "{path}: records are event ABI version {found}, this reader expects {expected}: replay it with an engine built for ABI {found}"
    )]
    AbiMismatch {
        path: PathBuf,
        found: u32,
        expected: u32,
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
    /// The file the error is about, if it is about one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            StorageError::Io { path, .. }
            | StorageError::DiskFull { path, .. }
            | StorageError::ReadOnly { path, .. }
            | StorageError::Corrupt { path, .. }
            | StorageError::OutOfBounds { path, .. }
            | StorageError::NotRegularFile { path, .. }
            | StorageError::AbiMismatch { path, .. } => Some(path),
            StorageError::Config(_)
            | StorageError::RecordTooLarge { .. }
            | StorageError::Stopped(_) => None,
        }
    }

    /// The file offset the error is about, if it is about one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            StorageError::DiskFull { offset, .. }
            | StorageError::ReadOnly { offset, .. }
            | StorageError::Corrupt { offset, .. }
            | StorageError::OutOfBounds { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// The error's message without the path and offset (which [`StorageError::path`]
    /// and [`StorageError::offset`] give): what was found and what was expected.
    pub fn detail(&self) -> String {
        match self {
            StorageError::Io { op, source, .. } => format!("{op}: {source}"),
            StorageError::DiskFull { .. } => "disk full".into(),
            StorageError::ReadOnly { .. } => "read-only file system".into(),
            StorageError::Corrupt { what, .. } => what.clone(),
            StorageError::OutOfBounds {
                what,
                at,
                len,
                limit,
                ..
            } => format!("{what} claims {len} bytes at {at}, but must end by byte {limit}"),
            StorageError::NotRegularFile { found, .. } => {
                format!("a {found}, not a regular file; only regular files are read as segments")
            }
            StorageError::AbiMismatch {
                found, expected, ..
            } => format!(
                "records are event ABI version {found}, this reader expects {expected}: replay it with an engine built for ABI {found}"
            ),
            other => other.to_string(),
        }
    }

    /// True for the errors that mean the data directory cannot take more writes
    /// ([`StorageError::DiskFull`], [`StorageError::ReadOnly`]).
    pub fn is_out_of_space_or_read_only(&self) -> bool {
        matches!(
            self,
            StorageError::DiskFull { .. } | StorageError::ReadOnly { .. }
        )
    }

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
