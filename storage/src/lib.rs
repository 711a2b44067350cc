//! Segment storage: the raw path's memory.
//!
//! Records (opaque bytes with a timestamp, a kind and a sampling weight) and loss
//! records go into per-stream segment files: a header, self-contained zstd blocks each
//! with its own CRC32C, time range and kind bitmap, and on sealing an index. Replay
//! skips blocks by time and kind without decompressing them, merges streams by time,
//! and survives crashes (a torn tail is cut at the last sound block) and bad files (an
//! error naming the file and offset, never a panic).
//!
//! This crate knows nothing of aya or BPF: replay builds anywhere. Writes go through
//! io_uring on Linux, or plain positioned writes (selectable, and the only choice
//! elsewhere). See `docs/segment-format.md` for the byte-level format.
//!
//! The data directory's layout (names, the lock file, walks that report what they skip)
//! is [`layout`]; [`verify_dir`] checks a whole directory with a bounded report, taking
//! the event decoder as a callback. Limits: a block is at most [`format::BLOCK_BYTES_MAX`]
//! bytes; lengths and offsets read from files are bounded by the file before use, and
//! no file content can make a reader panic or allocate past those bounds.
//!
//! ```no_run
//! use storage::{RecordRef, Reader, ReadOptions, StreamWriter, WriterConfig};
//!
//! let mut w = StreamWriter::create(WriterConfig::new("/var/lib/collector", 0))?;
//! w.append(&RecordRef { ts_ns: 1, kind: 10, weight: 1, bytes: b"hello" })?;
//! w.close()?;
//! let mut reader = Reader::open("/var/lib/collector", &ReadOptions::default())?;
//! while let Some(r) = reader.next_record()? {
//!     println!("{} {} {:?}", r.ts_ns, r.kind, r.bytes);
//! }
//! # Ok::<(), storage::StorageError>(())
//! ```

pub mod block;
mod error;
pub mod format;
mod io;
pub mod layout;
mod reader;
mod record;
pub mod recovery;
mod segment;
mod verify;
mod writer;

pub use block::{BlockBuilder, Compressor, DecodedBlock, KINDS_TALLIED, KindTally};
pub use error::StorageError;
pub use format::{BlockMeta, FileHeader};
pub use io::{INFLIGHT_MAX, IoBackend};
pub use layout::{
    LOCK_FILE_NAME, SegmentName, SkipList, SkipReason, Skipped, list_segments, list_streams,
    stream_dir,
};
pub use reader::{
    BlockCounts, Located, Progress, ReadOptions, Reader, Stats, StreamStats, wall_ns,
};
pub use record::{KIND_LOSS, LOSS_LEN, Loss, LossReason, RecordRef};
pub use segment::Segment;
pub use verify::{
    FILES_LISTED_MAX, Omitted, PROBLEMS_PER_FILE_MAX, Problem, VerifyOptions, VerifyReport,
    verify_dir,
};
pub use writer::{
    DEFAULT_BLOCK_BYTES, DEFAULT_SEGMENT_AGE_MAX, DEFAULT_SEGMENT_BYTES_MAX, DEFAULT_ZSTD_LEVEL,
    Durability, StreamWriter, WriterConfig, WriterStats, mono_to_wall_ns,
};
