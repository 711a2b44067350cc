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
mod reader;
mod record;
pub mod recovery;
mod segment;
mod writer;

pub use block::{BlockBuilder, Compressor, DecodedBlock};
pub use error::StorageError;
pub use format::{BlockMeta, FileHeader};
pub use io::IoBackend;
pub use reader::{BlockCounts, Located, Progress, ReadOptions, Reader, Stats, StreamStats};
pub use record::{KIND_LOSS, LOSS_LEN, Loss, LossReason, RecordRef};
pub use segment::{Segment, SegmentName};
pub use writer::{
    DEFAULT_BLOCK_BYTES, DEFAULT_SEGMENT_AGE_MAX, DEFAULT_SEGMENT_BYTES_MAX, DEFAULT_ZSTD_LEVEL,
    Durability, StreamWriter, WriterConfig, WriterStats, mono_to_wall_ns, stream_dir,
};
