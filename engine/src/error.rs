//! The engine's error type: what the binary (and, later, library users) get back from
//! the main job, `validate`, `tail` and the offline commands. Each variant names what
//! was being done and keeps its cause as `source`.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::lock::LockError;

/// Everything that can stop an engine command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config could not be read, parsed or validated.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another engine holds the data directory, or its lock file is unusable.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The data directory is missing, not a directory, or cannot be created.
    #[error("storage.data_dir {dir}: {why}")]
    DataDir {
        dir: PathBuf,
        why: String,
        #[source]
        source: Option<std::io::Error>,
    },
    /// Kernel capture failed (`what` says at which step).
    #[error("{what}: {source}")]
    Capture {
        what: &'static str,
        #[source]
        source: Box<bpf::LoadError>,
    },
    /// Segment storage failed (`what` says for what).
    #[error("{what}: {source}")]
    Storage {
        what: String,
        #[source]
        source: Box<storage::StorageError>,
    },
    /// Reading recorded segments failed (the message names the file and offset).
    #[error(transparent)]
    Segments(Box<storage::StorageError>),
    /// `--from`/`--to` could not be parsed, or make an empty range.
    #[error(transparent)]
    Time(#[from] crate::offline::time::TimeError),
    /// Reading or writing a stream of ours (stdout, epoll...) failed.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// An argument or setting that cannot work (named in the message).
    #[error("{0}")]
    Invalid(String),
    /// The accounting identity did not hold at the stop (a bug: the report says where).
    #[error("accounting identity does not hold: {hooks} produced, {accounted} accounted")]
    Accounting { hooks: u64, accounted: u64 },
    /// Storage failed during the run (the report above says how and what was dropped).
    #[error("storage failed; see above")]
    StorageFailed,
    /// A core thread panicked (a bug; its stream is recovered at the next start).
    #[error("a core thread panicked")]
    CorePanicked,
}

impl Error {
    pub(crate) fn capture(what: &'static str) -> impl FnOnce(bpf::LoadError) -> Error {
        move |source| Error::Capture {
            what,
            source: Box::new(source),
        }
    }

    pub(crate) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { what, source }
    }

    /// Whether this is a write to a closed pipe (`engine replay | head`): not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Writing a report or events (to stdout/stderr, or a caller's writer) failed.
impl From<std::io::Error> for Error {
    fn from(source: std::io::Error) -> Error {
        Error::Io {
            what: "writing output",
            source,
        }
    }
}

/// Reading segments (offline commands) failed.
impl From<storage::StorageError> for Error {
    fn from(e: storage::StorageError) -> Error {
        Error::Segments(Box::new(e))
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
