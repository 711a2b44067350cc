//! The writer of one stream: records into blocks, blocks into segments, rotation,
//! sealing, durability and retention.
//!
//! Directory layout (owned by [`crate::layout`]):
//! `DIR/stream-NNN/{created_unix_ns:020}-{seq:010}.{open|seg}`.
//! A segment is `.open` while written; sealing appends the index and trailer, makes
//! them durable (per policy) and renames it to `.seg` in one step.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::block::{BlockBuilder, Compressor, KINDS_TALLIED};
use crate::error::StorageError;
use crate::format::{
    BLOCK_BYTES_MAX, BLOCK_HEADER_LEN, BlockMeta, FILE_HEADER_LEN, FileHeader, INDEX_ENTRY_LEN,
    encode_index,
};
use crate::io::{INFLIGHT_MAX, IoBackend, IoPool, write_error};
use crate::layout::{SegmentName, stream_dir};
use crate::record::{KIND_LOSS, Loss, RecordRef};
use crate::recovery::{Recovered, recover_stream_dir, sync_dir};

/// When written data is made durable (fdatasync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Never explicitly: the kernel writes back when it likes. A crash of the machine
    /// (not of the process) may lose recent blocks; recovery still yields a sound prefix.
    None,
    /// When a segment is sealed (and its directory entry).
    OnSeal,
    /// At most this many milliseconds after a block is written, and on seal.
    IntervalMs(u64),
}

/// Default encoded bytes per block.
pub const DEFAULT_BLOCK_BYTES: usize = 1 << 20;
/// Default zstd level: fast.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;
/// Default segment size before rotation.
pub const DEFAULT_SEGMENT_BYTES_MAX: u64 = 256 << 20;
/// Default segment age before rotation.
pub const DEFAULT_SEGMENT_AGE_MAX: Duration = Duration::from_secs(600);
/// Default block writes in flight.
pub const DEFAULT_INFLIGHT_MAX: usize = 4;

/// Everything a stream writer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    /// Data directory; the stream writes into `dir/stream-NNN/`.
    pub dir: PathBuf,
    /// Stream id (one per core thread).
    pub stream_id: u32,
    /// Host name recorded in each segment header.
    pub host: String,
    /// Event ABI version recorded in each segment header.
    pub abi_version: u32,
    /// `wall_ns = monotonic_ns + mono_to_wall_ns` for this machine's boot.
    pub mono_to_wall_ns: i64,
    /// Encoded bytes per block before compression (at most 64 MiB).
    pub block_bytes: usize,
    /// zstd level (negative: faster, 1..=19: smaller).
    pub zstd_level: i32,
    /// Rotate when a segment reaches this size.
    pub segment_bytes_max: u64,
    /// Rotate when a segment is this old.
    pub segment_age_max: Duration,
    /// When data is made durable.
    pub durability: Durability,
    /// Delete the oldest sealed segments of this stream beyond this many bytes; 0: keep all.
    pub retention_bytes_max: u64,
    /// Delete sealed segments of this stream last written longer ago than this.
    pub retention_age_max: Option<Duration>,
    /// io_uring or portable writes.
    pub io: IoBackend,
    /// Block writes in flight at most (io_uring), 1..=[`INFLIGHT_MAX`]; also the number
    /// of block buffers.
    pub inflight_max: usize,
}

impl WriterConfig {
    /// Defaults for stream `stream_id` under `dir`.
    pub fn new(dir: impl Into<PathBuf>, stream_id: u32) -> WriterConfig {
        WriterConfig {
            dir: dir.into(),
            stream_id,
            host: host_name(),
            abi_version: 0,
            mono_to_wall_ns: mono_to_wall_ns(),
            block_bytes: DEFAULT_BLOCK_BYTES,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            segment_bytes_max: DEFAULT_SEGMENT_BYTES_MAX,
            segment_age_max: DEFAULT_SEGMENT_AGE_MAX,
            durability: Durability::OnSeal,
            retention_bytes_max: 0,
            retention_age_max: None,
            io: IoBackend::default(),
            inflight_max: DEFAULT_INFLIGHT_MAX,
        }
    }

    /// Every problem with the config, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.block_bytes < 4096 || self.block_bytes > BLOCK_BYTES_MAX as usize / 2 {
            p.push(format!(
                "block_bytes: {} is not between 4096 and {}",
                self.block_bytes,
                BLOCK_BYTES_MAX / 2
            ));
        }
        if !(-7..=19).contains(&self.zstd_level) {
            p.push(format!(
                "zstd_level: {} is not between -7 and 19",
                self.zstd_level
            ));
        }
        if self.segment_bytes_max < (self.block_bytes as u64) * 2 {
            p.push(format!(
                "segment_bytes_max: {} must be at least two blocks ({})",
                self.segment_bytes_max,
                self.block_bytes * 2
            ));
        }
        if self.segment_age_max.is_zero() {
            p.push("segment_age_max: must be above 0".into());
        }
        if self.inflight_max == 0 || self.inflight_max > INFLIGHT_MAX {
            p.push(format!(
                "inflight_max: {} is not between 1 and {INFLIGHT_MAX}",
                self.inflight_max
            ));
        }
        if let Durability::IntervalMs(0) = self.durability {
            p.push("durability: interval_ms must be above 0".into());
        }
        if self.host.len() > crate::format::HOST_MAX_LEN {
            p.push(format!(
                "host: longer than {} bytes",
                crate::format::HOST_MAX_LEN
            ));
        }
        p
    }

    /// The stream's directory.
    pub fn stream_dir(&self) -> PathBuf {
        stream_dir(&self.dir, self.stream_id)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `CLOCK_REALTIME - CLOCK_MONOTONIC`, now.
pub fn mono_to_wall_ns() -> i64 {
    fn clock(id: libc::clockid_t) -> i128 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid out-pointer for the call.
        unsafe { libc::clock_gettime(id, &mut ts) };
        ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
    }
    (clock(libc::CLOCK_REALTIME) - clock(libc::CLOCK_MONOTONIC)) as i64
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Counters of one writer.
///
/// # What "on disk" means
/// A record is *on disk* once the write of its block completed in full and so did the
/// write of every block before it in the same file: from then on any reader of the data
/// directory gets it back (a sealed segment through its index, an unsealed one by
/// scanning up to its first torn block). It is durable across a machine crash only after
/// the next sync the [`Durability`] policy makes. Retention deleting a segment later does
/// not take records back off this count.
///
/// A record is *lost* when it was accepted by [`StreamWriter::append`] but a write
/// failed before it was on disk: its block's write failed, or a block before it in the
/// file failed, or the writer stopped with it still buffered. Once the writer has
/// stopped, or after [`StreamWriter::close`], `records == records_on_disk +
/// records_lost` exactly; while it runs the difference is what is buffered or in flight
/// ([`WriterStats::records_pending`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Records accepted by `append` (events and losses).
    pub records: u64,
    /// Bytes of records accepted.
    pub record_bytes: u64,
    /// Records on disk (see above).
    pub records_on_disk: u64,
    /// Records accepted and lost (see above): the sum of `lost_per_kind` and
    /// `lost_other_kinds`.
    pub records_lost: u64,
    /// Lost records of kind `k`, for `k < KINDS_TALLIED` (64).
    pub lost_per_kind: [u64; KINDS_TALLIED],
    /// Lost records of kinds `>= KINDS_TALLIED`.
    pub lost_other_kinds: u64,
    /// Blocks submitted for writing (not necessarily complete: see `blocks_on_disk`).
    pub blocks: u64,
    /// Blocks on disk.
    pub blocks_on_disk: u64,
    /// Bytes submitted to segment files (headers, blocks, indexes).
    pub bytes_written: u64,
    /// Segments sealed.
    pub segments_sealed: u64,
    /// Segments deleted by retention.
    pub segments_deleted: u64,
    /// Durable syncs done.
    pub syncs: u64,
    /// Time spent compressing and submitting the most recent block (ns).
    pub last_block_ns: u64,
    /// Times block buffers were allocated: 1 for the writer's life (they are made once
    /// per stream and reused by every segment).
    pub io_buffer_allocations: u64,
}

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            records: 0,
            record_bytes: 0,
            records_on_disk: 0,
            records_lost: 0,
            lost_per_kind: [0; KINDS_TALLIED],
            lost_other_kinds: 0,
            blocks: 0,
            blocks_on_disk: 0,
            bytes_written: 0,
            segments_sealed: 0,
            segments_deleted: 0,
            syncs: 0,
            last_block_ns: 0,
            io_buffer_allocations: 0,
        }
    }
}

impl WriterStats {
    /// Records accepted but neither on disk nor lost yet (buffered or in flight).
    pub fn records_pending(&self) -> u64 {
        self.records
            .saturating_sub(self.records_on_disk)
            .saturating_sub(self.records_lost)
    }
}

/// The segment being written (its file is the pool's current target).
struct OpenSegment {
    name: SegmentName,
    opened: Instant,
}

/// Writes one stream of segments.
pub struct StreamWriter {
    cfg: WriterConfig,
    dir: PathBuf,
    builder: BlockBuilder,
    zstd: Compressor,
    /// The ring and block buffers, made once and reused by every segment.
    pool: IoPool,
    seg: Option<OpenSegment>,
    /// Metadata of the current segment's blocks (reused across segments).
    blocks: Vec<BlockMeta>,
    /// The index being written at sealing (reused across segments).
    index: Vec<u8>,
    next_seq: u64,
    last_sync: Instant,
    unsynced: bool,
    stats: WriterStats,
    failed: Option<String>,
    recovered: Vec<Recovered>,
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("dir", &self.dir)
            .field("next_seq", &self.next_seq)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Block metadata kept per segment without growing: enough for a typical segment.
const BLOCKS_PER_SEGMENT_TYPICAL: usize = 1024;

impl StreamWriter {
    /// Opens stream `cfg.stream_id` under `cfg.dir` (which must exist): recovers any
    /// segment a crash left unsealed, then continues the sequence after the last one.
    /// The ring and block buffers are made here, once.
    pub fn create(cfg: WriterConfig) -> Result<StreamWriter, StorageError> {
        let problems = cfg.problems();
        if !problems.is_empty() {
            return Err(StorageError::Config(problems.join("; ")));
        }
        if !cfg.dir.is_dir() {
            return Err(StorageError::io(
                &cfg.dir,
                "open data directory",
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            ));
        }
        let dir = cfg.stream_dir();
        std::fs::create_dir_all(&dir).map_err(|e| write_error(&dir, "mkdir", 0, e))?;
        let recovered = recover_stream_dir(&dir)?;
        let next_seq = list_segments(&dir)?.last().map_or(0, |(n, _)| n.seq + 1);
        let buffer_bytes = BLOCK_HEADER_LEN + zstd::zstd_safe::compress_bound(cfg.block_bytes) + 64;
        let pool = IoPool::new(&dir, cfg.io, cfg.inflight_max, buffer_bytes)?;
        Ok(StreamWriter {
            builder: BlockBuilder::new(cfg.block_bytes),
            zstd: {
                let mut z = Compressor::new(cfg.zstd_level)
                    .map_err(|e| StorageError::Config(format!("zstd_level: {e}")))?;
                // Staging room for the largest block, made now, not when one first comes.
                z.reserve(cfg.block_bytes);
                z
            },
            pool,
            seg: None,
            blocks: Vec::with_capacity(BLOCKS_PER_SEGMENT_TYPICAL),
            index: Vec::with_capacity(64 + BLOCKS_PER_SEGMENT_TYPICAL * INDEX_ENTRY_LEN),
            next_seq,
            last_sync: Instant::now(),
            unsynced: false,
            stats: WriterStats::default(),
            failed: None,
            recovered,
            dir,
            cfg,
        })
    }

    /// After a failure (disk full, read-only directory, I/O error): settles the writes
    /// still in flight, recovers the failed segment as a crash would be (cut at its last
    /// sound block, sealed), and accepts records again in a new segment. What was lost
    /// stays counted in [`WriterStats`]. Returns the segments recovered; an error (the
    /// disk is still full, say) leaves the writer stopped, and it can be tried again.
    /// Without an earlier failure it does nothing.
    pub fn reopen(&mut self) -> Result<Vec<Recovered>, StorageError> {
        if self.failed.is_none() {
            return Ok(Vec::new());
        }
        self.pool.reset()?;
        self.seg = None;
        self.blocks.clear();
        self.builder.clear();
        let recovered = recover_stream_dir(&self.dir)?;
        // Recovery may leave a failed .open file in place only by failing itself.
        self.next_seq = list_segments(&self.dir)?
            .last()
            .map_or(self.next_seq, |(n, _)| n.seq + 1)
            .max(self.next_seq);
        self.failed = None;
        Ok(recovered)
    }

    /// Writes the partial block and waits until every block written so far has settled:
    /// afterwards each record accepted is on disk or counted lost. An error means a
    /// write failed (the writer stops).
    pub fn settle(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        self.pool.flush().map_err(|e| self.stop(e))
    }

    /// Segments recovered when the writer started.
    pub fn recovered(&self) -> &[Recovered] {
        &self.recovered
    }

    /// Counters so far (see [`WriterStats`] for what "on disk" and "lost" mean).
    pub fn stats(&self) -> WriterStats {
        let mut s = self.stats;
        let c = self.pool.counts();
        s.records_on_disk = c.records_on_disk;
        s.blocks_on_disk = c.blocks_on_disk;
        s.lost_per_kind = c.lost.per_kind;
        s.lost_other_kinds = c.lost.other;
        s.records_lost = c.lost.total();
        s.io_buffer_allocations = self.pool.allocations();
        s
    }

    /// Blocks submitted so far, and how long the last one took (ns): cheap enough to
    /// ask after every append.
    pub fn last_block(&self) -> (u64, u64) {
        (self.stats.blocks, self.stats.last_block_ns)
    }

    /// The sequence number of the segment that the records buffered now, and the next
    /// one appended, will be written to. A writer that puts state at the head of every
    /// segment (a snapshot) watches this change.
    pub fn head_segment(&self) -> u64 {
        self.seg.as_ref().map_or(self.next_seq, |s| s.name.seq)
    }

    /// The monotonic-to-wall-clock offset this writer records in its segments.
    pub fn mono_to_wall_ns(&self) -> i64 {
        self.cfg.mono_to_wall_ns
    }

    /// The host name this writer records in its segments.
    pub fn host(&self) -> &str {
        &self.cfg.host
    }

    /// The stream directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The error that stopped the writer, if one did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn check(&self) -> Result<(), StorageError> {
        match &self.failed {
            Some(why) => Err(StorageError::Stopped(why.clone())),
            None => Ok(()),
        }
    }

    /// Stops the writer after `e`: the records still buffered count as lost.
    fn stop(&mut self, e: StorageError) -> StorageError {
        if self.failed.is_none() {
            self.failed = Some(e.to_string());
        }
        self.pool.lose(self.builder.tally());
        self.builder.clear();
        e
    }

    /// Appends a record. It is on disk once its block is written (see [`WriterStats`]),
    /// durable once synced per policy; call [`StreamWriter::flush`] or
    /// [`StreamWriter::close`] to push out a partial block. On `Err` the record was not
    /// accepted (and is not counted).
    pub fn append(&mut self, r: &RecordRef<'_>) -> Result<(), StorageError> {
        self.check()?;
        let max = self.cfg.block_bytes;
        if r.bytes.len() + 64 > max {
            return Err(StorageError::RecordTooLarge {
                len: r.bytes.len(),
                max,
            });
        }
        if self.builder.raw_len() + r.bytes.len() + 32 > max {
            self.flush()?;
        }
        self.builder.push(r);
        self.stats.records += 1;
        self.stats.record_bytes += r.bytes.len() as u64;
        Ok(())
    }

    /// Appends a loss record (kind [`KIND_LOSS`], timestamp = the end of the interval).
    pub fn append_loss(&mut self, loss: &Loss) -> Result<(), StorageError> {
        let bytes = loss.encode();
        self.append(&RecordRef {
            ts_ns: loss.end_ns,
            kind: KIND_LOSS,
            weight: 1,
            bytes: &bytes,
        })
    }

    /// Writes the partial block, if any (records appended so far reach the file).
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.check()?;
        if self.builder.count() == 0 {
            return Ok(());
        }
        self.write_block(true).map_err(|e| self.stop(e))
    }

    /// Writes the builder's block; with `rotate`, seals the segment when it is full or
    /// old enough (the seal itself writes a partial block without rotating).
    fn write_block(&mut self, rotate: bool) -> Result<(), StorageError> {
        let started = Instant::now();
        if self.seg.is_none() {
            self.open_segment()?;
        }
        let offset = self.pool.offset();
        let tally = *self.builder.tally();
        let (idx, buf) = self.pool.buffer()?;
        let finished = self.builder.finish(&mut self.zstd, buf);
        let len = buf.len();
        let mut meta = match finished {
            Ok(meta) => meta,
            Err(e) => {
                // The records are still in the builder: `stop` counts them lost.
                self.pool.release(idx);
                return Err(StorageError::io(self.pool.path(), "zstd compress", e));
            }
        };
        // The header was written with offset 0; offsets are not in the header, only in
        // the index, so the bytes stand.
        meta.offset = offset;
        debug_assert_eq!(len as u64, meta.total_len());
        debug_assert!(len > BLOCK_HEADER_LEN);
        debug_assert_eq!(tally.total(), meta.count as u64);
        self.stats.blocks += 1;
        self.stats.bytes_written += len as u64;
        self.pool.submit(idx, &tally)?;
        self.blocks.push(meta);
        self.stats.last_block_ns = started.elapsed().as_nanos() as u64;
        self.unsynced = true;
        if let Durability::IntervalMs(ms) = self.cfg.durability
            && self.last_sync.elapsed() >= Duration::from_millis(ms)
        {
            self.pool.sync()?;
            self.stats.syncs += 1;
            self.last_sync = Instant::now();
            self.unsynced = false;
        }
        if rotate
            && let Some(seg) = &self.seg
            && (self.pool.offset() >= self.cfg.segment_bytes_max
                || seg.opened.elapsed() >= self.cfg.segment_age_max)
        {
            self.seal_current()?;
        }
        Ok(())
    }

    fn open_segment(&mut self) -> Result<(), StorageError> {
        let name = SegmentName {
            created_unix_ns: unix_ns(),
            seq: self.next_seq,
            sealed: false,
        };
        let path = self.dir.join(name.file_name());
        self.pool.open_file(&path)?;
        let header = FileHeader {
            stream_id: self.cfg.stream_id,
            abi_version: self.cfg.abi_version,
            seq: name.seq,
            created_unix_ns: name.created_unix_ns,
            mono_to_wall_ns: self.cfg.mono_to_wall_ns,
            host: self.cfg.host.clone(),
        };
        self.next_seq += 1;
        self.blocks.clear();
        self.seg = Some(OpenSegment {
            name,
            opened: Instant::now(),
        });
        self.pool.write_tail(&header.encode())?;
        self.stats.bytes_written += FILE_HEADER_LEN as u64;
        Ok(())
    }

    /// Seals the current segment (if any): writes the partial block, the index and the
    /// trailer, syncs per policy, renames to `.seg`, then applies retention.
    pub fn seal(&mut self) -> Result<(), StorageError> {
        self.check()?;
        if self.builder.count() > 0 {
            // From write_block's rotation the builder is empty; from outside, the
            // partial block goes into this segment.
            self.write_block(false).map_err(|e| self.stop(e))?;
        }
        self.seal_current().map_err(|e| self.stop(e))
    }

    /// Seals the current segment as it is (the builder's records stay buffered).
    fn seal_current(&mut self) -> Result<(), StorageError> {
        let Some(seg) = self.seg.take() else {
            return Ok(());
        };
        let index_offset = self.pool.offset();
        self.index.clear();
        encode_index(&self.blocks, index_offset, &mut self.index);
        self.pool.write_tail(&self.index)?;
        self.stats.bytes_written += self.index.len() as u64;
        if self.cfg.durability != Durability::None {
            self.pool.sync()?;
            self.stats.syncs += 1;
        }
        let from = self.pool.path().to_path_buf();
        self.pool.close_file()?;
        let to = self.dir.join(
            SegmentName {
                sealed: true,
                ..seg.name
            }
            .file_name(),
        );
        std::fs::rename(&from, &to).map_err(|e| write_error(&from, "rename", 0, e))?;
        if self.cfg.durability != Durability::None {
            sync_dir(&self.dir)?;
        }
        self.stats.segments_sealed += 1;
        self.last_sync = Instant::now();
        self.unsynced = false;
        self.apply_retention()
    }

    /// Periodic work without new records: rotation by age and interval syncs.
    pub fn tick(&mut self) -> Result<(), StorageError> {
        self.check()?;
        if let Some(seg) = &self.seg {
            if seg.opened.elapsed() >= self.cfg.segment_age_max {
                return self.seal();
            }
            if let Durability::IntervalMs(ms) = self.cfg.durability
                && self.unsynced
                && self.last_sync.elapsed() >= Duration::from_millis(ms)
            {
                self.pool.sync().map_err(|e| self.stop(e))?;
                self.stats.syncs += 1;
                self.last_sync = Instant::now();
                self.unsynced = false;
            }
        }
        Ok(())
    }

    /// Writes what is buffered and seals the current segment. The stats returned are
    /// final: `records == records_on_disk + records_lost`. (On `Err`, [`StreamWriter`]
    /// is consumed; call [`StreamWriter::flush`] and [`StreamWriter::seal`] first to
    /// read the stats of a failed close.)
    pub fn close(mut self) -> Result<WriterStats, StorageError> {
        self.flush()?;
        self.seal()?;
        Ok(self.stats())
    }

    /// Deletes the oldest sealed segments beyond the byte budget or age.
    fn apply_retention(&mut self) -> Result<(), StorageError> {
        if self.cfg.retention_bytes_max == 0 && self.cfg.retention_age_max.is_none() {
            return Ok(());
        }
        let sealed: Vec<(SegmentName, u64, SystemTime)> = list_segments(&self.dir)?
            .into_iter()
            .filter(|(n, _)| n.sealed)
            .filter_map(|(n, p)| {
                let m = std::fs::metadata(&p).ok()?;
                Some((n, m.len(), m.modified().ok()?))
            })
            .collect();
        let mut total: u64 = sealed.iter().map(|s| s.1).sum();
        let now = SystemTime::now();
        for (name, len, modified) in sealed {
            let too_big = self.cfg.retention_bytes_max > 0 && total > self.cfg.retention_bytes_max;
            let too_old = self
                .cfg
                .retention_age_max
                .is_some_and(|age| now.duration_since(modified).unwrap_or_default() > age);
            if !too_big && !too_old {
                break;
            }
            let path = self.dir.join(name.file_name());
            std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, "unlink", e))?;
            total -= len;
            self.stats.segments_deleted += 1;
        }
        Ok(())
    }
}

/// The segments of stream directory `dir` by sequence number (see [`crate::layout`]).
fn list_segments(dir: &Path) -> Result<Vec<(SegmentName, PathBuf)>, StorageError> {
    crate::layout::list_segments(dir, &mut crate::layout::SkipList::default())
}
