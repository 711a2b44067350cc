//! The enrichment thread: takes the lifecycle events the core threads copy to it,
//! applies them in time order to the process and cgroup tables, and writes every table
//! update into its own stream (`stream-1000000`): a full snapshot at the head of each
//! segment, then the updates. An ordinary thread (not pinned), off the per-event path.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use storage::{RecordRef, StorageError, StreamWriter};

use super::record::{KIND_CGROUP, KIND_PROCESS};
use super::tap::{TapConsumer, TapProducer};
use super::tracker::{Tracker, TrackerStats, Update};
use crate::outage::STORAGE_RETRY_INTERVAL;
use crate::pipeline::monotonic_ns;

/// The id of the enrichment stream (`stream-1000000`), far above any core's.
pub(crate) const ENRICH_STREAM_ID: u32 = 1_000_000;
/// Lifecycle events wait this long before they are applied, so that those of every
/// core thread are applied in time order (core threads hand over within their poll
/// timeout, normally milliseconds).
const REORDER_NS: u64 = 100_000_000;
/// The watermark waits for a lagging core at most this long.
const LAG_MAX_NS: u64 = 2_000_000_000;
/// Bytes of events held for reordering at most; beyond, the oldest are applied at once
/// (so a burst costs ordering precision, never unbounded memory).
const PENDING_BYTES_MAX: usize = 16 << 20;
/// How often exited processes and removed cgroups past their grace period are dropped.
const EXPIRE_EVERY_NS: u64 = 1_000_000_000;
/// How often the cgroup2 mount and `/proc` are walked for cgroups and processes whose
/// creation was not seen.
const RESCAN_EVERY_NS: u64 = 5_000_000_000;
/// Spare event buffers kept for reuse.
const FREE_BUFFERS_MAX: usize = 1024;
/// Idle wait between passes over the queues.
const IDLE: Duration = Duration::from_millis(10);

/// What the control thread reads while the enrichment thread runs.
#[derive(Debug, Default)]
pub(crate) struct EnrichShared {
    pub processes: AtomicU64,
    pub cgroups: AtomicU64,
    pub evicted: AtomicU64,
    pub error: Mutex<Option<String>>,
    /// Set by the control thread on SIGHUP: seal the current segment.
    pub reopen: AtomicBool,
    /// Every record with a timestamp below this has been written and fed to the
    /// semantic thread (`u64::MAX` once the thread has finished).
    pub written_through: AtomicU64,
}

/// The enrichment thread's final report.
#[derive(Debug, Clone)]
pub(crate) struct EnrichReport {
    pub tracker: TrackerStats,
    pub processes: usize,
    pub processes_max: usize,
    pub cgroups: usize,
    pub cgroups_max: usize,
    /// Lifecycle events applied.
    pub applied: u64,
    /// Records written (accepted by the writer) and lost with failed writes.
    pub records: u64,
    pub records_lost: u64,
    pub snapshots: u64,
    /// The first storage error of the enrichment stream, if any.
    pub storage_error: Option<String>,
}

struct Pending {
    ts: u64,
    seq: u64,
    bytes: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.ts, self.seq) == (o.ts, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.ts, self.seq).cmp(&(o.ts, o.seq))
    }
}

/// See the module docs.
pub(crate) struct Enricher {
    /// The core threads' delivery marks: events are applied no later than the least.
    cores: Vec<Arc<crate::core::CoreShared>>,
    tracker: Tracker,
    writer: StreamWriter,
    taps: Vec<TapConsumer>,
    pending: BinaryHeap<Reverse<Pending>>,
    pending_bytes: usize,
    free: Vec<Vec<u8>>,
    seq: u64,
    /// Records are written with non-decreasing timestamps, so the stream reads back in
    /// the order the tables changed.
    last_ts: u64,
    /// The segment whose head holds the last snapshot.
    snapshot_segment: u64,
    buf: Vec<u8>,
    flush_interval_ns: u64,
    next_retry_ns: u64,
    report: EnrichReport,
    /// Every record written, also to the semantic thread (which keeps the same tables
    /// to enrich notable events), in the same order.
    feeds: Vec<TapProducer>,
    feed_buf: Vec<u8>,
    /// The records written before a feed was set (the start scan), to feed it then.
    start_log: Option<Vec<(u64, u16, Vec<u8>)>>,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("report", &self.report)
            .finish()
    }
}

impl Enricher {
    /// Writes `tracker`'s start scan (made before the capture attached, stamped
    /// `start_ns`, a time before the capture started, so every captured event sorts after
    /// it) as the first snapshot, with what `/proc` and the cgroup2 mount hold now that
    /// the scan did not (born while the programs loaded), stamped the same.
    pub(crate) fn start(
        mut tracker: Tracker,
        writer: StreamWriter,
        taps: Vec<TapConsumer>,
        start_ns: u64,
        flush_interval_ms: u64,
    ) -> Enricher {
        tracker.rescan_cgroups(start_ns);
        tracker.rescan_processes(start_ns);
        let (processes_max, cgroups_max) = (
            tracker.tables.processes().limit(),
            tracker.tables.cgroups().limit(),
        );
        let mut e = Enricher {
            cores: Vec::new(),
            tracker,
            writer,
            taps,
            pending: BinaryHeap::new(),
            pending_bytes: 0,
            free: Vec::new(),
            seq: 0,
            last_ts: start_ns,
            snapshot_segment: 0,
            buf: Vec::with_capacity(1024),
            flush_interval_ns: flush_interval_ms.saturating_mul(1_000_000),
            next_retry_ns: 0,
            feeds: Vec::new(),
            feed_buf: Vec::with_capacity(1024),
            start_log: Some(Vec::new()),
            report: EnrichReport {
                tracker: TrackerStats::default(),
                processes: 0,
                processes_max,
                cgroups: 0,
                cgroups_max,
                applied: 0,
                records: 0,
                records_lost: 0,
                snapshots: 1,
                storage_error: None,
            },
        };
        // The scan is the first segment's snapshot.
        e.snapshot_segment = e.writer.head_segment();
        e.write_updates();
        e
    }

    /// The records written so far (the start scan), for [`Enricher::add_feed`]; from
    /// now on nothing more is kept.
    pub(crate) fn take_start_log(&mut self) -> Vec<(u64, u16, Vec<u8>)> {
        self.start_log.take().unwrap_or_default()
    }

    /// Applies events only as far as every core has delivered them
    /// ([`crate::core::CoreShared::delivered_through`]), and at least up to
    /// [`LAG_MAX_NS`] ago: a core that lags (a burst, a slow start) no longer makes its
    /// lifecycle events stragglers stamped late.
    pub(crate) fn watch_cores(&mut self, cores: Vec<Arc<crate::core::CoreShared>>) {
        self.cores = cores;
    }

    /// The least delivery mark of the cores (`u64::MAX` without any).
    fn delivered_through(&self) -> u64 {
        self.cores
            .iter()
            .map(|c| c.delivered_through.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Also hands every record written to `feed`, in order. Set
    /// before [`Enricher::start`]'s records are fed: call right after it, before `run`.
    /// (A feed per reader: the semantic thread, the export thread.)
    pub(crate) fn add_feed(
        &mut self,
        mut feed: TapProducer,
        written_so_far: &[(u64, u16, Vec<u8>)],
    ) {
        for (ts, kind, bytes) in written_so_far {
            Self::feed_one(&mut feed, &mut self.feed_buf, *ts, *kind, bytes);
        }
        self.feeds.push(feed);
    }

    /// Hands a written record to every feed; waits while a queue is full (each reader
    /// must see every record, in order, to hold the same tables as a reader of the
    /// segments).
    fn feed_record(&mut self, ts: u64, kind: u16, bytes: &[u8]) {
        for feed in &mut self.feeds {
            Self::feed_one(feed, &mut self.feed_buf, ts, kind, bytes);
        }
    }

    fn feed_one(feed: &mut TapProducer, buf: &mut Vec<u8>, ts: u64, kind: u16, bytes: &[u8]) {
        buf.clear();
        buf.extend_from_slice(&ts.to_le_bytes());
        buf.extend_from_slice(&kind.to_le_bytes());
        buf.extend_from_slice(bytes);
        while !feed.push(0, buf) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// What the start scan found, for the start-up line.
    pub(crate) fn describe(&self) -> String {
        let t = &self.tracker.tables;
        format!(
            "{} processes and {} cgroups from the start scan (bounds {} and {}), stream {}",
            t.processes().len(),
            t.cgroups().len(),
            t.processes().limit(),
            t.cgroups().limit(),
            ENRICH_STREAM_ID
        )
    }

    fn fail(&mut self, e: StorageError) {
        let why = e.to_string();
        eprintln!(
            "engine: enrichment stream: storage failed: {why}; retrying every {} s",
            STORAGE_RETRY_INTERVAL.as_secs()
        );
        if self.report.storage_error.is_none() {
            self.report.storage_error = Some(why);
        }
        self.next_retry_ns = monotonic_ns() + STORAGE_RETRY_INTERVAL.as_nanos() as u64;
    }

    fn append(&mut self, ts: u64, u: &Update) {
        let kind = match u {
            Update::Process(op, p) => {
                p.encode(*op, &mut self.buf);
                KIND_PROCESS
            }
            Update::Cgroup(op, c) => {
                c.encode(*op, &mut self.buf);
                KIND_CGROUP
            }
        };
        if self.writer.failure().is_some() {
            self.report.records_lost += 1;
            return;
        }
        let rec = RecordRef {
            ts_ns: ts,
            kind,
            weight: 1,
            bytes: &self.buf,
        };
        match self.writer.append(&rec) {
            Ok(()) => {
                self.report.records += 1;
                if !self.feeds.is_empty() {
                    let bytes = std::mem::take(&mut self.buf);
                    self.feed_record(ts, kind, &bytes);
                    self.buf = bytes;
                }
                if let Some(log) = &mut self.start_log {
                    log.push((ts, kind, self.buf.clone()));
                }
            }
            Err(e) => {
                self.report.records_lost += 1;
                if self.writer.failure().is_some() {
                    self.fail(e);
                }
            }
        }
    }

    /// Writes the tracker's queued updates; when a segment was started meanwhile, a
    /// snapshot follows (so a reader starting at that segment has the whole state).
    fn write_updates(&mut self) {
        let updates: Vec<(u64, Update)> = self.tracker.take_updates().collect();
        for (ts, u) in &updates {
            self.last_ts = self.last_ts.max(*ts);
            self.append(self.last_ts, u);
            if self.writer.failure().is_none()
                && self.writer.head_segment() != self.snapshot_segment
            {
                self.write_snapshot();
            }
        }
    }

    fn write_snapshot(&mut self) {
        self.snapshot_segment = self.writer.head_segment();
        self.report.snapshots += 1;
        for u in self.tracker.snapshot() {
            self.append(self.last_ts, &u);
        }
    }

    /// Moves everything queued by the core threads into the reorder heap.
    fn collect(&mut self) -> usize {
        let mut n = 0;
        for i in 0..self.taps.len() {
            loop {
                let mut buf = self.free.pop().unwrap_or_default();
                if !self.taps[i].pop_into(&mut buf) {
                    self.free.push(buf);
                    break;
                }
                n += 1;
                let ts = bpf::decode(&buf).map_or(0, |ev| ev.header.ts_ns);
                self.seq += 1;
                self.pending_bytes += buf.capacity();
                self.pending.push(Reverse(Pending {
                    ts,
                    seq: self.seq,
                    bytes: buf,
                }));
                if self.pending_bytes > PENDING_BYTES_MAX {
                    self.apply_until(u64::MAX, PENDING_BYTES_MAX / 2);
                }
            }
        }
        n
    }

    /// Applies held events with a timestamp at or before `until`, and the oldest beyond
    /// that while more than `keep_bytes` are held.
    fn apply_until(&mut self, until: u64, keep_bytes: usize) {
        while let Some(Reverse(top)) = self.pending.peek() {
            if top.ts > until && self.pending_bytes <= keep_bytes {
                break;
            }
            let Some(Reverse(p)) = self.pending.pop() else {
                break;
            };
            self.pending_bytes -= p.bytes.capacity();
            if let Ok(ev) = bpf::decode(&p.bytes) {
                self.tracker.event(&ev);
                self.report.applied += 1;
            }
            if self.free.len() < FREE_BUFFERS_MAX {
                self.free.push(p.bytes);
            }
            if self.tracker.pending_updates() >= 1024 {
                self.write_updates();
            }
        }
        self.write_updates();
    }

    fn publish(&self, shared: &EnrichShared) {
        let t = &self.tracker;
        shared
            .processes
            .store(t.tables.processes().len() as u64, Ordering::Relaxed);
        shared
            .cgroups
            .store(t.tables.cgroups().len() as u64, Ordering::Relaxed);
        shared.evicted.store(
            t.stats.processes_evicted + t.stats.cgroups_evicted,
            Ordering::Relaxed,
        );
        if let Ok(mut e) = shared.error.lock() {
            *e = self.writer.failure().map(str::to_string);
        }
    }

    /// Runs until `cores_done` is set (every core thread has finished, so nothing more
    /// arrives), then applies what is left, writes it and seals the stream.
    pub(crate) fn run(
        mut self,
        cores_done: &AtomicBool,
        shared: Arc<EnrichShared>,
    ) -> EnrichReport {
        let mut next_expire = monotonic_ns() + EXPIRE_EVERY_NS;
        let mut next_rescan = monotonic_ns() + RESCAN_EVERY_NS;
        let mut last_flush = monotonic_ns();
        loop {
            let done = cores_done.load(Ordering::Acquire);
            // Read before the taps are: every copy up to it is queued by then.
            let delivered = self.delivered_through();
            let got = self.collect();
            let now = monotonic_ns();
            // The reorder watermark: the reorder window behind now, no later than what
            // every core has delivered, no further behind than LAG_MAX_NS.
            let wm = now
                .saturating_sub(REORDER_NS)
                .min(delivered)
                .max(now.saturating_sub(LAG_MAX_NS));
            self.apply_until(if done { u64::MAX } else { wm }, PENDING_BYTES_MAX);
            // Everything before the reorder watermark is applied and written; what comes
            // later is stamped at or after it (a straggler, later than LAG_MAX_NS or past a
            // full heap, is stamped when applied).
            if !done {
                self.last_ts = self.last_ts.max(wm);
                shared
                    .written_through
                    .store(self.last_ts, Ordering::Release);
            }
            if now >= next_expire {
                next_expire = now + EXPIRE_EVERY_NS;
                // Stamped with the reorder watermark: every event before it is applied,
                // and those still held come after it, so none of them is stamped later
                // than it happened.
                self.tracker.expire(wm);
                if now >= next_rescan {
                    next_rescan = now + RESCAN_EVERY_NS;
                    self.tracker.rescan_cgroups(wm);
                    self.tracker.rescan_processes(wm);
                }
                self.write_updates();
                self.publish(&shared);
            }
            if shared.reopen.swap(false, Ordering::AcqRel)
                && self.writer.failure().is_none()
                && let Err(e) = self.writer.seal()
            {
                self.fail(e);
            }
            if self.writer.failure().is_some() {
                if now >= self.next_retry_ns {
                    self.retry(now);
                }
            } else {
                if self.flush_interval_ns > 0
                    && now.saturating_sub(last_flush) >= self.flush_interval_ns
                {
                    last_flush = now;
                    if let Err(e) = self.writer.flush() {
                        self.fail(e);
                    }
                }
                if let Err(e) = self.writer.tick() {
                    self.fail(e);
                }
            }
            if done && got == 0 && self.pending.is_empty() {
                break;
            }
            if got == 0 {
                std::thread::sleep(IDLE);
            }
        }
        self.publish(&shared);
        let report = self.finish();
        shared.written_through.store(u64::MAX, Ordering::Release);
        report
    }

    /// After a storage failure: reopen the stream and write a full snapshot first.
    fn retry(&mut self, now: u64) {
        self.next_retry_ns = now + STORAGE_RETRY_INTERVAL.as_nanos() as u64;
        // When it still fails (the disk is still full, say), it is tried again later.
        if self.writer.reopen().is_ok() {
            eprintln!("engine: enrichment stream: storage resumed; writing a full snapshot");
            self.write_snapshot();
        }
    }

    fn finish(mut self) -> EnrichReport {
        if self.writer.failure().is_none()
            && let Err(e) = self.writer.flush().and_then(|()| self.writer.seal())
        {
            self.fail(e);
        }
        let w = self.writer.stats();
        let r = &mut self.report;
        // "Written" means on disk: what the writer accepted but lost is moved over.
        r.records = r.records.saturating_sub(w.records_lost);
        r.records_lost += w.records_lost;
        r.tracker = self.tracker.stats;
        r.processes = self.tracker.tables.processes().len();
        r.cgroups = self.tracker.tables.cgroups().len();
        self.report
    }
}
