//! Reading a data directory: every stream, merged by timestamp, with blocks skipped by
//! time range and kind using block metadata alone; and statistics.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::{Path, PathBuf};

use crate::block::DecodedBlock;
use crate::error::StorageError;
use crate::format::{BlockMeta, kind_bit};
use crate::record::{KIND_LOSS, Loss, RecordRef};
use crate::segment::Segment;
use crate::writer::list_segments;

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Records with `from_ns <= ts_ns < to_ns` (monotonic ns, as stored).
    pub from_ns: u64,
    pub to_ns: u64,
    /// Only these kinds (loss records have kind [`KIND_LOSS`]); `None`: all.
    pub kinds: Option<Vec<u16>>,
    /// Only these stream ids; `None`: all.
    pub streams: Option<Vec<u32>>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            from_ns: 0,
            to_ns: u64::MAX,
            kinds: None,
            streams: None,
        }
    }
}

impl ReadOptions {
    fn kind_mask(&self) -> u64 {
        self.kinds
            .as_ref()
            .map_or(u64::MAX, |ks| ks.iter().fold(0, |m, &k| m | kind_bit(k)))
    }

    fn wants(&self, ts: u64, kind: u16) -> bool {
        ts >= self.from_ns
            && ts < self.to_ns
            && self.kinds.as_ref().is_none_or(|ks| ks.contains(&kind))
    }
}

struct StreamCursor {
    id: u32,
    segments: Vec<Segment>,
    seg: usize,
    block: usize,
    decoded: DecodedBlock,
    /// Record order within the current block: indices sorted by timestamp.
    order: Vec<u32>,
    pos: usize,
    buf: Vec<u8>,
}

impl StreamCursor {
    /// Moves to the next wanted record; false at the end of the stream.
    fn advance(
        &mut self,
        opts: &ReadOptions,
        mask: u64,
        counts: &mut BlockCounts,
    ) -> Result<bool, StorageError> {
        loop {
            while self.pos < self.order.len() {
                let e = &self.decoded.entries()[self.order[self.pos] as usize];
                if opts.wants(e.ts_ns, e.kind) {
                    return Ok(true);
                }
                self.pos += 1;
            }
            // Next block that may hold something wanted.
            let Some(seg) = self.segments.get(self.seg) else {
                return Ok(false);
            };
            let Some(meta) = seg.blocks().get(self.block).copied() else {
                self.seg += 1;
                self.block = 0;
                continue;
            };
            self.block += 1;
            if !meta.overlaps(opts.from_ns, opts.to_ns, mask) {
                counts.skipped += 1;
                continue;
            }
            counts.read += 1;
            seg.read_block(&meta, &mut self.buf, &mut self.decoded)?;
            let entries = self.decoded.entries();
            self.order.clear();
            self.order.extend(0..entries.len() as u32);
            self.order.sort_by_key(|&i| entries[i as usize].ts_ns);
            self.pos = 0;
        }
    }

    fn current_ts(&self) -> u64 {
        self.decoded.entries()[self.order[self.pos] as usize].ts_ns
    }
}

/// Blocks decoded and blocks skipped by metadata, so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCounts {
    pub read: u64,
    pub skipped: u64,
}

/// Reads a data directory (`DIR/stream-NNN/*.seg|open`) in timestamp order.
pub struct Reader {
    streams: Vec<StreamCursor>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    opts: ReadOptions,
    mask: u64,
    /// Stream whose current record was last handed out and must advance first.
    pending: Option<usize>,
    counts: BlockCounts,
    started: bool,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("streams", &self.streams.len())
            .field("counts", &self.counts)
            .finish()
    }
}

/// The stream directories under `dir`, by id.
pub(crate) fn stream_dirs(dir: &Path) -> Result<Vec<(u32, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, "readdir", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(dir, "readdir", e))?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix("stream-"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if entry.path().is_dir() {
            out.push((id, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Opens every segment of a stream directory, in sequence order. An unsealed segment
/// too short to hold its header (the writer died, or the disk filled, while creating it)
/// never held a record and is passed over.
pub(crate) fn open_stream(dir: &Path) -> Result<Vec<Segment>, StorageError> {
    let mut out = Vec::new();
    for (name, path) in list_segments(dir)? {
        if !name.sealed {
            let len = std::fs::metadata(&path)
                .map_err(|e| StorageError::io(&path, "stat", e))?
                .len();
            if len < crate::format::FILE_HEADER_LEN as u64 {
                continue;
            }
        }
        out.push(Segment::open(&path)?);
    }
    Ok(out)
}

impl Reader {
    /// Opens every stream under `dir`. Fails on any unreadable or corrupt sealed segment,
    /// naming the file and offset; unsealed segments are read up to their torn tail.
    pub fn open(dir: impl AsRef<Path>, opts: &ReadOptions) -> Result<Reader, StorageError> {
        let dir = dir.as_ref();
        let mut streams = Vec::new();
        for (id, path) in stream_dirs(dir)? {
            if opts.streams.as_ref().is_some_and(|s| !s.contains(&id)) {
                continue;
            }
            streams.push(StreamCursor {
                id,
                segments: open_stream(&path)?,
                seg: 0,
                block: 0,
                decoded: DecodedBlock::new(),
                order: Vec::new(),
                pos: 0,
                buf: Vec::new(),
            });
        }
        Ok(Reader {
            streams,
            heap: BinaryHeap::new(),
            mask: opts.kind_mask(),
            opts: opts.clone(),
            pending: None,
            counts: BlockCounts::default(),
            started: false,
        })
    }

    /// Segment headers of every stream (for wall-clock offsets, hosts, ABI versions).
    pub fn headers(&self) -> impl Iterator<Item = (u32, &crate::format::FileHeader)> {
        self.streams
            .iter()
            .flat_map(|s| s.segments.iter().map(move |seg| (s.id, seg.header())))
    }

    /// Blocks decoded and skipped so far.
    pub fn block_counts(&self) -> BlockCounts {
        self.counts
    }

    /// The next record in timestamp order (ties: lower stream id first), or `None`.
    pub fn next_record(&mut self) -> Result<Option<RecordRef<'_>>, StorageError> {
        Ok(self.next_with_stream()?.map(|(_, r)| r))
    }

    /// [`Reader::next_record`] with the id of the stream the record came from.
    pub fn next_with_stream(&mut self) -> Result<Option<(u32, RecordRef<'_>)>, StorageError> {
        if !self.started {
            self.started = true;
            for i in 0..self.streams.len() {
                if self.streams[i].advance(&self.opts, self.mask, &mut self.counts)? {
                    self.heap.push(Reverse((self.streams[i].current_ts(), i)));
                }
            }
        }
        if let Some(i) = self.pending.take() {
            let s = &mut self.streams[i];
            s.pos += 1;
            if s.advance(&self.opts, self.mask, &mut self.counts)? {
                self.heap.push(Reverse((s.current_ts(), i)));
            }
        }
        let Some(Reverse((_, i))) = self.heap.pop() else {
            return Ok(None);
        };
        self.pending = Some(i);
        let s = &self.streams[i];
        Ok(Some((s.id, s.decoded.record(s.order[s.pos] as usize))))
    }
}

/// Statistics of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub id: u32,
    pub segments: u64,
    pub unsealed_segments: u64,
    /// Bytes cut off as torn tails of unsealed segments.
    pub torn_bytes: u64,
    pub blocks: u64,
    /// Event records (loss records excluded).
    pub events: u64,
    /// Sum of the weights of event records: the estimated number of events.
    pub weighted_events: u64,
    /// Event records kept with a weight above 1 (sampled).
    pub sampled_records: u64,
    pub loss_records: u64,
    /// Events lost, by reason id, summed over loss records.
    pub lost: BTreeMap<u16, u64>,
    /// Bytes of records as given to the writer.
    pub record_bytes: u64,
    /// Bytes of segment files on disk.
    pub file_bytes: u64,
    /// Smallest and largest timestamp (monotonic ns); 0 when empty.
    pub min_ts: u64,
    pub max_ts: u64,
    /// Events per kind id.
    pub per_kind: BTreeMap<u16, u64>,
    /// `wall_ns = monotonic_ns + mono_to_wall_ns` (from the newest segment header).
    pub mono_to_wall_ns: i64,
}

/// Statistics of a data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub streams: Vec<StreamStats>,
}

impl Stats {
    /// Reads every block of every stream under `dir` and counts.
    pub fn collect(dir: impl AsRef<Path>) -> Result<Stats, StorageError> {
        let mut out = Stats::default();
        let mut decoded = DecodedBlock::new();
        let mut buf = Vec::new();
        for (id, path) in stream_dirs(dir.as_ref())? {
            let mut s = StreamStats {
                id,
                min_ts: u64::MAX,
                ..StreamStats::default()
            };
            for seg in open_stream(&path)? {
                s.segments += 1;
                s.file_bytes += seg.file_len();
                s.mono_to_wall_ns = seg.header().mono_to_wall_ns;
                if !seg.sealed() {
                    s.unsealed_segments += 1;
                    s.torn_bytes += seg.torn().map_or(0, |t| t.bytes);
                }
                for meta in seg.blocks() {
                    s.blocks += 1;
                    s.min_ts = s.min_ts.min(meta.min_ts);
                    s.max_ts = s.max_ts.max(meta.max_ts);
                    seg.read_block(meta, &mut buf, &mut decoded)?;
                    for i in 0..decoded.len() {
                        let r = decoded.record(i);
                        s.record_bytes += r.bytes.len() as u64;
                        if r.kind == KIND_LOSS {
                            s.loss_records += 1;
                            if let Some(l) = Loss::decode(r.bytes) {
                                *s.lost.entry(l.reason).or_default() += l.count;
                            }
                        } else {
                            s.events += 1;
                            s.weighted_events += r.weight as u64;
                            s.sampled_records += (r.weight > 1) as u64;
                            *s.per_kind.entry(r.kind).or_default() += 1;
                        }
                    }
                }
            }
            if s.min_ts == u64::MAX {
                s.min_ts = 0;
            }
            out.streams.push(s);
        }
        Ok(out)
    }

    /// Totals over all streams (id is meaningless there).
    pub fn total(&self) -> StreamStats {
        let mut t = StreamStats {
            min_ts: u64::MAX,
            ..StreamStats::default()
        };
        for s in &self.streams {
            t.segments += s.segments;
            t.unsealed_segments += s.unsealed_segments;
            t.torn_bytes += s.torn_bytes;
            t.blocks += s.blocks;
            t.events += s.events;
            t.weighted_events += s.weighted_events;
            t.sampled_records += s.sampled_records;
            t.loss_records += s.loss_records;
            for (k, v) in &s.lost {
                *t.lost.entry(*k).or_default() += v;
            }
            for (k, v) in &s.per_kind {
                *t.per_kind.entry(*k).or_default() += v;
            }
            t.record_bytes += s.record_bytes;
            t.file_bytes += s.file_bytes;
            if s.blocks > 0 {
                t.min_ts = t.min_ts.min(s.min_ts);
                t.max_ts = t.max_ts.max(s.max_ts);
            }
            t.mono_to_wall_ns = s.mono_to_wall_ns;
        }
        if t.min_ts == u64::MAX {
            t.min_ts = 0;
        }
        t
    }
}

impl StreamStats {
    /// Record bytes per file byte (how much zstd and the encoding saved).
    pub fn compression_ratio(&self) -> f64 {
        if self.file_bytes == 0 {
            return 0.0;
        }
        self.record_bytes as f64 / self.file_bytes as f64
    }
}

/// Block metadata of every segment of every stream (for seek planning and tests).
pub fn block_index(dir: impl AsRef<Path>) -> Result<Vec<(u32, Vec<BlockMeta>)>, StorageError> {
    let mut out = Vec::new();
    for (id, path) in stream_dirs(dir.as_ref())? {
        let mut blocks = Vec::new();
        for seg in open_stream(&path)? {
            blocks.extend_from_slice(seg.blocks());
        }
        out.push((id, blocks));
    }
    Ok(out)
}
