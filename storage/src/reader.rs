//! Reading a data directory: every stream, merged by timestamp, with blocks skipped by
//! time range and kind using block metadata alone; and statistics.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use crate::block::DecodedBlock;
use crate::error::StorageError;
use crate::format::{FILE_HEADER_LEN, kind_bit};
use crate::layout::{SkipList, SkipReason, Skipped, list_segments, list_streams};
use crate::record::{KIND_LOSS, Loss, RecordRef};
use crate::segment::Segment;

/// The wall-clock time (ns since the Unix epoch) of monotonic time `ts_ns` in a segment
/// whose header says `mono_to_wall_ns`, saturated to `0..=u64::MAX`: a lying or extreme
/// offset gives the nearest representable time, never a wrapped one.
pub fn wall_ns(ts_ns: u64, mono_to_wall_ns: i64) -> u64 {
    (ts_ns as i128 + mono_to_wall_ns as i128).clamp(0, u64::MAX as i128) as u64
}

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Records with `from_ns <= time < to_ns`, where time is the stored monotonic
    /// timestamp, or with `wall_clock` its wall-clock time (ns since the Unix epoch)
    /// through each record's own segment offset, saturated ([`wall_ns`]).
    /// `to_ns == u64::MAX` means no upper bound: a record at `u64::MAX` is read too.
    pub from_ns: u64,
    pub to_ns: u64,
    /// Whether `from_ns`/`to_ns` are wall-clock times (segments of other boots map
    /// differently, so the conversion is done per segment).
    pub wall_clock: bool,
    /// Only these kinds (loss records have kind [`KIND_LOSS`]); `None`: all.
    pub kinds: Option<Vec<u16>>,
    /// Only these stream ids; `None`: all.
    pub streams: Option<Vec<u32>>,
    /// Records of these kinds are also handed out as *context* ([`Located::context`])
    /// when the time range or `kinds` would leave them out: in each stream, from the
    /// head of its *context segment* (the last segment whose first record is at or
    /// before the range's start; the first segment when none is) up to the range's end.
    /// For state that a writer puts at the head of every segment (a snapshot) and then
    /// updates: reading from `from_ns` still rebuilds the state at `from_ns`, with work
    /// bounded by one segment. `None`: no context (exactly the records wanted).
    pub context_kinds: Option<Vec<u16>>,
    /// Hand out each block's records in file (write) order rather than by timestamp:
    /// with one stream (`streams`), the order its writer appended them. For readers
    /// whose result depends on where a record was written relative to another (the
    /// semantic path's window markers).
    pub file_order: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            from_ns: 0,
            to_ns: u64::MAX,
            wall_clock: false,
            kinds: None,
            streams: None,
            context_kinds: None,
            file_order: false,
        }
    }
}

impl ReadOptions {
    fn kind_mask(&self) -> u64 {
        self.kinds
            .as_ref()
            .map_or(u64::MAX, |ks| ks.iter().fold(0, |m, &k| m | kind_bit(k)))
    }

    fn context_mask(&self) -> u64 {
        self.context_kinds
            .as_ref()
            .map_or(0, |ks| ks.iter().fold(0, |m, &k| m | kind_bit(k)))
    }

    fn is_context_kind(&self, kind: u16) -> bool {
        self.context_kinds
            .as_ref()
            .is_some_and(|ks| ks.contains(&kind))
    }

    /// The wanted times as an inclusive range of monotonic ns for a segment with offset
    /// `mono_to_wall_ns`; `None` when no time of that segment is wanted. Exact for the
    /// saturated mapping: `wall_ns(ts) in [from, to)` iff `ts` is in the range.
    fn mono_range(&self, mono_to_wall_ns: i64) -> Option<(u64, u64)> {
        // Inclusive wall (or monotonic) bounds first.
        let first = self.from_ns;
        let last = match self.to_ns {
            0 => return None,
            u64::MAX => u64::MAX,
            to => to - 1,
        };
        if first > last {
            return None;
        }
        if !self.wall_clock {
            return Some((first, last));
        }
        let off = mono_to_wall_ns as i128;
        let max = u64::MAX as i128;
        // wall_ns(ts) is non-decreasing in ts, so each bound maps to one cut.
        let lo = if first == 0 {
            0 // every ts saturates to at least 0
        } else {
            let x = first as i128 - off;
            if x > max {
                return None; // no ts reaches `first`
            }
            x.max(0) as u64
        };
        let hi = if last == u64::MAX {
            u64::MAX // every ts saturates to at most u64::MAX
        } else {
            let x = last as i128 - off;
            if x < 0 {
                return None; // even ts = 0 is past `last`
            }
            x.min(max) as u64
        };
        (lo <= hi).then_some((lo, hi))
    }

    fn wants(&self, ts: u64, kind: u16, range: Option<(u64, u64)>) -> bool {
        range.is_some_and(|(lo, hi)| ts >= lo && ts <= hi)
            && self.kinds.as_ref().is_none_or(|ks| ks.contains(&kind))
    }
}

/// A decoded block ready to be read, with its records' order by timestamp and where it
/// came from (set per block, so that records carry their place at no cost of their own).
struct Ready {
    block: DecodedBlock,
    order: Vec<u32>,
    /// The block's segment file (shared by its blocks: one count per block, no copy).
    path: Arc<Path>,
    /// The block's offset in that file (where its header starts).
    offset: u64,
    /// The block's segment's `mono_to_wall_ns` (segments of one stream may span boots).
    mono_to_wall_ns: i64,
    /// The wanted times (inclusive) in this block's monotonic clock.
    bounds: Option<(u64, u64)>,
    /// In a segment at or after the stream's context segment: context-kind records at
    /// or before this time are handed out as context.
    context_hi: Option<u64>,
}

impl Default for Ready {
    /// An empty block of no file: a cursor's state before its first block, never handed out.
    fn default() -> Self {
        Ready {
            block: DecodedBlock::default(),
            order: Vec::new(),
            path: Arc::from(Path::new("")),
            offset: 0,
            mono_to_wall_ns: 0,
            bounds: None,
            context_hi: None,
        }
    }
}

/// Shared counters of the decode workers.
#[derive(Default)]
struct Counters {
    read: AtomicU64,
    skipped: AtomicU64,
}

/// Blocks decoded ahead per stream: enough to overlap decoding with the consumer.
const READ_AHEAD_BLOCKS: usize = 2;

/// Reads and decodes the wanted blocks of one stream, in order, on its own thread, so
/// that streams decode in parallel and each overlaps with the consumer.
fn decode_worker(
    segments: Vec<Segment>,
    opts: ReadOptions,
    mask: u64,
    tx: SyncSender<Result<Ready, StorageError>>,
    recycled: Receiver<Ready>,
    counters: Arc<Counters>,
) {
    let mut buf = Vec::new();
    let context_mask = opts.context_mask();
    let context_from = if context_mask == 0 {
        usize::MAX
    } else {
        context_segment(&segments, &opts)
    };
    for (i, seg) in segments.iter().enumerate() {
        let path: Arc<Path> = Arc::from(seg.path());
        let range = opts.mono_range(seg.header().mono_to_wall_ns);
        let context_hi = if i >= context_from {
            range.map(|(_, hi)| hi)
        } else {
            None
        };
        for meta in seg.blocks() {
            let wanted = range.is_some_and(|(lo, hi)| meta.overlaps_inclusive(lo, hi, mask));
            let context = context_hi.is_some_and(|hi| meta.overlaps_inclusive(0, hi, context_mask));
            if !wanted && !context {
                counters.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut ready = recycled.try_recv().unwrap_or_default();
            if let Err(e) = seg.read_block(meta, &mut buf, &mut ready.block) {
                let _ = tx.send(Err(e));
                return;
            }
            counters.read.fetch_add(1, Ordering::Relaxed);
            ready.path = path.clone();
            ready.offset = meta.offset;
            ready.mono_to_wall_ns = seg.header().mono_to_wall_ns;
            ready.bounds = range;
            ready.context_hi = context_hi;
            let entries = ready.block.entries();
            ready.order.clear();
            ready.order.extend(0..entries.len() as u32);
            if !opts.file_order {
                ready.order.sort_by_key(|&i| entries[i as usize].ts_ns);
            }
            if tx.send(Ok(ready)).is_err() {
                return; // the reader is gone
            }
        }
    }
}

/// The index of a stream's context segment (see [`ReadOptions::context_kinds`]): the
/// last segment whose first record is at or before the range's start, else the first.
fn context_segment(segments: &[Segment], opts: &ReadOptions) -> usize {
    let mut found = 0;
    for (i, seg) in segments.iter().enumerate() {
        let Some((lo, _)) = opts.mono_range(seg.header().mono_to_wall_ns) else {
            continue;
        };
        let first = seg
            .blocks()
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| b.min_ts)
            .min();
        if first.is_some_and(|t| t <= lo) {
            found = i;
        }
    }
    found
}

struct StreamCursor {
    id: u32,
    blocks: Receiver<Result<Ready, StorageError>>,
    recycle: Sender<Ready>,
    current: Ready,
    pos: usize,
    /// Whether the current record is handed out as context only.
    context: bool,
}

impl StreamCursor {
    /// Moves to the next wanted record; false at the end of the stream.
    fn advance(&mut self, opts: &ReadOptions) -> Result<bool, StorageError> {
        loop {
            while self.pos < self.current.order.len() {
                let e = &self.current.block.entries()[self.current.order[self.pos] as usize];
                if opts.wants(e.ts_ns, e.kind, self.current.bounds) {
                    self.context = false;
                    return Ok(true);
                }
                if self.current.context_hi.is_some_and(|hi| e.ts_ns <= hi)
                    && opts.is_context_kind(e.kind)
                {
                    self.context = true;
                    return Ok(true);
                }
                self.pos += 1;
            }
            let Ok(next) = self.blocks.recv() else {
                return Ok(false); // the worker finished
            };
            let done = std::mem::replace(&mut self.current, next?);
            let _ = self.recycle.send(done);
            self.pos = 0;
        }
    }

    fn current_ts(&self) -> u64 {
        self.current.block.entries()[self.current.order[self.pos] as usize].ts_ns
    }

    fn located(&self) -> Located<'_> {
        let index = self.current.order[self.pos];
        Located {
            stream: self.id,
            path: &self.current.path,
            block_offset: self.current.offset,
            index,
            mono_to_wall_ns: self.current.mono_to_wall_ns,
            record: self.current.block.record(index as usize),
            context: self.context,
        }
    }
}

/// Reads a [`Reader`]'s block counters.
#[derive(Clone)]
pub struct Progress(Arc<Counters>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.counts().fmt(f)
    }
}

impl Progress {
    /// Blocks decoded and skipped so far.
    pub fn counts(&self) -> BlockCounts {
        BlockCounts {
            read: self.0.read.load(Ordering::Relaxed),
            skipped: self.0.skipped.load(Ordering::Relaxed),
        }
    }
}

/// A record and where it came from: enough to name it in a message (`path`, the block
/// at `block_offset`, record `index`) the way `engine verify` names a bad block.
#[derive(Debug, Clone, Copy)]
pub struct Located<'a> {
    pub stream: u32,
    /// The segment file holding the record, as found under the reader's directory.
    pub path: &'a Path,
    /// Offset in that file of the record's block (its header), as in
    /// [`Segment::blocks`]'s [`BlockMeta::offset`](crate::format::BlockMeta::offset).
    pub block_offset: u64,
    /// The record's position in its block, in file order from 0 (records are handed out
    /// in timestamp order, so this is not a count of records returned).
    pub index: u32,
    /// `wall_ns = record.ts_ns + mono_to_wall_ns`, from the record's own segment.
    pub mono_to_wall_ns: i64,
    pub record: RecordRef<'a>,
    /// Handed out only as context ([`ReadOptions::context_kinds`]): outside the time
    /// range or the kinds asked for.
    pub context: bool,
}

impl Located<'_> {
    /// The record's wall-clock time, saturated ([`wall_ns`]).
    pub fn wall_ns(&self) -> u64 {
        wall_ns(self.record.ts_ns, self.mono_to_wall_ns)
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
    /// Stream whose current record was last handed out and must advance first.
    pending: Option<usize>,
    counters: Arc<Counters>,
    started: bool,
    skipped: SkipList,
    /// One decode thread per stream, joined on drop.
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Closing the channels makes each worker's next send fail, so it returns after
        // at most the block it is decoding; then nothing reads the files any more.
        self.streams.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("streams", &self.streams.len())
            .field("counts", &self.block_counts())
            .finish()
    }
}

/// Opens every segment of a stream directory, in sequence order, checking each header's
/// ABI version against `abi_version` (if given). An unsealed segment too short to hold
/// its header (the writer died, or the disk filled, while creating it) never held a
/// record: it is passed over and reported in `skipped`, with every entry that is not a
/// segment.
pub(crate) fn open_stream(
    dir: &Path,
    abi_version: Option<u32>,
    skipped: &mut SkipList,
) -> Result<Vec<Segment>, StorageError> {
    let mut out = Vec::new();
    for (name, path) in list_segments(dir, skipped)? {
        if !name.sealed {
            let len = std::fs::metadata(&path)
                .map_err(|e| StorageError::io(&path, "stat", e))?
                .len();
            if len < FILE_HEADER_LEN as u64 {
                skipped.push(Skipped {
                    path,
                    reason: SkipReason::EmptyUnsealed { len },
                });
                continue;
            }
        }
        let seg = Segment::open(&path)?;
        seg.check_abi(abi_version)?;
        out.push(seg);
    }
    Ok(out)
}

impl Reader {
    /// Opens every stream under `dir`. Fails on any unreadable or corrupt sealed segment,
    /// naming the file and offset; unsealed segments are read up to their torn tail.
    pub fn open(dir: impl AsRef<Path>, opts: &ReadOptions) -> Result<Reader, StorageError> {
        Reader::open_expecting_abi(dir, opts, None)
    }

    /// [`Reader::open`], failing with [`StorageError::AbiMismatch`] (which says what to
    /// do) on a segment whose header's event ABI version is not `abi_version`; `None`
    /// checks nothing. (A separate constructor rather than a `ReadOptions` field, so
    /// that callers building `ReadOptions` with a struct literal keep compiling.)
    pub fn open_expecting_abi(
        dir: impl AsRef<Path>,
        opts: &ReadOptions,
        abi_version: Option<u32>,
    ) -> Result<Reader, StorageError> {
        let dir = dir.as_ref();
        let counters = Arc::new(Counters::default());
        let mask = opts.kind_mask();
        let mut skipped = SkipList::default();
        // Every segment is opened (and checked) before any thread starts: a bad file
        // fails the open without leaving workers behind.
        let mut opened = Vec::new();
        for (id, path) in list_streams(dir, &mut skipped)? {
            if opts.streams.as_ref().is_some_and(|s| !s.contains(&id)) {
                continue;
            }
            let segments = open_stream(&path, abi_version, &mut skipped)?;
            opened.push((id, path, segments));
        }
        let mut reader = Reader {
            streams: Vec::with_capacity(opened.len()),
            heap: BinaryHeap::new(),
            opts: opts.clone(),
            pending: None,
            counters,
            started: false,
            skipped,
            workers: Vec::with_capacity(opened.len()),
        };
        for (id, path, segments) in opened {
            let (tx, rx) = sync_channel(READ_AHEAD_BLOCKS);
            let (recycle, recycled) = channel();
            let (o, c) = (opts.clone(), reader.counters.clone());
            // On error, dropping `reader` stops and joins the workers started so far.
            let worker = std::thread::Builder::new()
                .name(format!("decode-{id}"))
                .spawn(move || decode_worker(segments, o, mask, tx, recycled, c))
                .map_err(|e| StorageError::io(&path, "spawn decode thread", e))?;
            reader.workers.push(worker);
            reader.streams.push(StreamCursor {
                id,
                blocks: rx,
                recycle,
                current: Ready::default(),
                pos: 0,
                context: false,
            });
        }
        Ok(reader)
    }

    /// Entries of the data directory passed over (not regular files, unknown names,
    /// empty unsealed segments), each with its reason.
    pub fn skipped(&self) -> &SkipList {
        &self.skipped
    }

    /// Blocks decoded and skipped so far (decoding runs ahead of the records returned).
    pub fn block_counts(&self) -> BlockCounts {
        self.progress().counts()
    }

    /// A handle on the block counters that can be read while a record is borrowed.
    pub fn progress(&self) -> Progress {
        Progress(self.counters.clone())
    }

    /// The next record in timestamp order (ties: lower stream id first), or `None`.
    pub fn next_record(&mut self) -> Result<Option<RecordRef<'_>>, StorageError> {
        Ok(self.next_with_stream()?.map(|(_, r)| r))
    }

    /// [`Reader::next_record`] with the id of the stream the record came from.
    pub fn next_with_stream(&mut self) -> Result<Option<(u32, RecordRef<'_>)>, StorageError> {
        Ok(self.next_located()?.map(|r| (r.stream, r.record)))
    }

    /// The next record with where it came from: its stream, its segment file, its block's
    /// offset and its index in the block, and its segment's monotonic-to-wall-clock
    /// offset (`wall_ns = ts_ns + mono_to_wall_ns`).
    pub fn next_located(&mut self) -> Result<Option<Located<'_>>, StorageError> {
        if !self.started {
            self.started = true;
            for i in 0..self.streams.len() {
                if self.streams[i].advance(&self.opts)? {
                    self.heap.push(Reverse((self.streams[i].current_ts(), i)));
                }
            }
        }
        if let Some(i) = self.pending.take() {
            let s = &mut self.streams[i];
            s.pos += 1;
            if s.advance(&self.opts)? {
                let ts = s.current_ts();
                // Still the earliest: hand it out without touching the heap.
                if self.heap.peek().is_none_or(|Reverse(top)| (ts, i) <= *top) {
                    self.pending = Some(i);
                    return Ok(Some(self.streams[i].located()));
                }
                self.heap.push(Reverse((ts, i)));
            }
        }
        let Some(Reverse((_, i))) = self.heap.pop() else {
            return Ok(None);
        };
        self.pending = Some(i);
        Ok(Some(self.streams[i].located()))
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
    /// Some count above reached `u64::MAX` and stopped there (sums are saturating, never
    /// wrapping): the true value is at least what is shown. Loss counts come from the
    /// files, so a lying or corrupt loss record can cause this.
    pub saturated: bool,
}

/// Statistics of a data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub streams: Vec<StreamStats>,
    /// Entries passed over (not regular files, unknown names, empty unsealed segments).
    pub skipped: SkipList,
}

/// `*acc += v`, saturating; sets `*saturated` when it stops at `u64::MAX`.
fn add_sat(acc: &mut u64, v: u64, saturated: &mut bool) {
    match acc.checked_add(v) {
        Some(x) => *acc = x,
        None => {
            *acc = u64::MAX;
            *saturated = true;
        }
    }
}

impl Stats {
    /// Reads every block of every stream under `dir` and counts.
    pub fn collect(dir: impl AsRef<Path>) -> Result<Stats, StorageError> {
        Stats::collect_expecting_abi(dir, None)
    }

    /// [`Stats::collect`], failing with [`StorageError::AbiMismatch`] on a segment whose
    /// header's ABI version is not `abi_version` (no check for `None`).
    pub fn collect_expecting_abi(
        dir: impl AsRef<Path>,
        abi_version: Option<u32>,
    ) -> Result<Stats, StorageError> {
        let mut out = Stats::default();
        let mut decoded = DecodedBlock::new();
        let mut buf = Vec::new();
        for (id, path) in list_streams(dir.as_ref(), &mut out.skipped)? {
            let mut s = StreamStats {
                id,
                min_ts: u64::MAX,
                ..StreamStats::default()
            };
            let mut sat = false;
            for seg in open_stream(&path, abi_version, &mut out.skipped)? {
                s.segments += 1;
                add_sat(&mut s.file_bytes, seg.file_len(), &mut sat);
                s.mono_to_wall_ns = seg.header().mono_to_wall_ns;
                if !seg.sealed() {
                    s.unsealed_segments += 1;
                    add_sat(
                        &mut s.torn_bytes,
                        seg.torn().map_or(0, |t| t.bytes),
                        &mut sat,
                    );
                }
                for meta in seg.blocks() {
                    s.blocks += 1;
                    s.min_ts = s.min_ts.min(meta.min_ts);
                    s.max_ts = s.max_ts.max(meta.max_ts);
                    seg.read_block(meta, &mut buf, &mut decoded)?;
                    for i in 0..decoded.len() {
                        let r = decoded.record(i);
                        add_sat(&mut s.record_bytes, r.bytes.len() as u64, &mut sat);
                        if r.kind == KIND_LOSS {
                            s.loss_records += 1;
                            if let Some(l) = Loss::decode(r.bytes) {
                                add_sat(s.lost.entry(l.reason).or_default(), l.count, &mut sat);
                            }
                        } else {
                            s.events += 1;
                            add_sat(&mut s.weighted_events, r.weight as u64, &mut sat);
                            s.sampled_records += (r.weight > 1) as u64;
                            *s.per_kind.entry(r.kind).or_default() += 1;
                        }
                    }
                }
            }
            if s.min_ts == u64::MAX && s.blocks == 0 {
                s.min_ts = 0;
            }
            s.saturated = sat;
            out.streams.push(s);
        }
        Ok(out)
    }

    /// Totals over all streams (id is meaningless there). Sums saturate and set
    /// `saturated`, like the per-stream counts.
    pub fn total(&self) -> StreamStats {
        let mut t = StreamStats {
            min_ts: u64::MAX,
            ..StreamStats::default()
        };
        let mut sat = false;
        for s in &self.streams {
            sat |= s.saturated;
            add_sat(&mut t.segments, s.segments, &mut sat);
            add_sat(&mut t.unsealed_segments, s.unsealed_segments, &mut sat);
            add_sat(&mut t.torn_bytes, s.torn_bytes, &mut sat);
            add_sat(&mut t.blocks, s.blocks, &mut sat);
            add_sat(&mut t.events, s.events, &mut sat);
            add_sat(&mut t.weighted_events, s.weighted_events, &mut sat);
            add_sat(&mut t.sampled_records, s.sampled_records, &mut sat);
            add_sat(&mut t.loss_records, s.loss_records, &mut sat);
            for (k, v) in &s.lost {
                add_sat(t.lost.entry(*k).or_default(), *v, &mut sat);
            }
            for (k, v) in &s.per_kind {
                add_sat(t.per_kind.entry(*k).or_default(), *v, &mut sat);
            }
            add_sat(&mut t.record_bytes, s.record_bytes, &mut sat);
            add_sat(&mut t.file_bytes, s.file_bytes, &mut sat);
            if s.blocks > 0 {
                t.min_ts = t.min_ts.min(s.min_ts);
                t.max_ts = t.max_ts.max(s.max_ts);
            }
            t.mono_to_wall_ns = s.mono_to_wall_ns;
        }
        if t.min_ts == u64::MAX && t.blocks == 0 {
            t.min_ts = 0;
        }
        t.saturated = sat;
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
