//! The per-event path of a core thread: decode in place, filter, sample, write. Nothing
//! here allocates per event (tested with a counting allocator in `tests/no_alloc.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bpf::abi::KIND_MAX;
use hdrhistogram::Histogram;
use storage::block::KINDS_TALLIED;
use storage::{KIND_LOSS, Loss, LossReason, RecordRef, StorageError, StreamWriter, WriterStats};

use crate::enrich::tap::TapProducer;
use crate::filter::Filter;
use crate::outage::{Outage, STORAGE_RETRY_INTERVAL};
use crate::sampler::{Sampler, class_of, importance};
use crate::semantic::core::{Closed, SemanticCore};
use crate::semantic::marker::{KIND_WINDOW, Marker};

/// Per-kind and per-reason counts of one core thread. Every record the thread read is
/// counted in exactly one of `written`, `filtered`, `sampled_out`, `undecodable` or
/// `storage_dropped`.
#[derive(Debug, Clone)]
pub struct PipelineStats {
    /// Records read from the rings, per kind.
    pub delivered: [u64; KIND_MAX],
    /// Kept and handed to the writer, per kind.
    pub written: [u64; KIND_MAX],
    /// Rejected by the user-space filter, per kind.
    pub filtered: [u64; KIND_MAX],
    /// Left out by sampling, per kind (their weight is carried by the kept ones).
    pub sampled_out: [u64; KIND_MAX],
    /// Records that did not decode.
    pub undecodable: u64,
    /// Kept but lost because storage failed, per kind.
    pub storage_dropped: [u64; KIND_MAX],
    /// Events at or above `semantic.min_importance`.
    pub notable: u64,
    /// Loss records written in-band (on disk).
    pub loss_records: u64,
    /// Loss records lost with a block that storage failed to write.
    pub loss_records_lost: u64,
    /// Lifecycle events whose copy for the enrichment tables found its queue full (the
    /// events themselves went on as usual).
    pub enrich_dropped: u64,
    /// Window markers written (semantic path), and lost with failed blocks.
    pub window_markers: u64,
    pub window_markers_lost: u64,
}

impl Default for PipelineStats {
    fn default() -> Self {
        PipelineStats {
            delivered: [0; KIND_MAX],
            written: [0; KIND_MAX],
            filtered: [0; KIND_MAX],
            sampled_out: [0; KIND_MAX],
            undecodable: 0,
            storage_dropped: [0; KIND_MAX],
            notable: 0,
            loss_records: 0,
            loss_records_lost: 0,
            enrich_dropped: 0,
            window_markers: 0,
            window_markers_lost: 0,
        }
    }
}

impl PipelineStats {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &PipelineStats) {
        for k in 0..KIND_MAX {
            self.delivered[k] += o.delivered[k];
            self.written[k] += o.written[k];
            self.filtered[k] += o.filtered[k];
            self.sampled_out[k] += o.sampled_out[k];
            self.storage_dropped[k] += o.storage_dropped[k];
        }
        self.undecodable += o.undecodable;
        self.notable += o.notable;
        self.loss_records += o.loss_records;
        self.loss_records_lost += o.loss_records_lost;
        self.enrich_dropped += o.enrich_dropped;
        self.window_markers += o.window_markers;
        self.window_markers_lost += o.window_markers_lost;
    }
}

/// Latency histograms of one core thread (ns).
#[derive(Debug, Clone)]
pub struct Latencies {
    /// Time to compress and submit a block.
    pub block_write: Histogram<u64>,
    /// Kernel timestamp to the moment the event was handed to the writer.
    pub event_age: Histogram<u64>,
}

impl Latencies {
    fn new() -> Latencies {
        Latencies {
            block_write: Histogram::new_with_bounds(1_000, 60_000_000_000, 2)
                .expect("valid bounds"),
            event_age: Histogram::new_with_bounds(1_000, 600_000_000_000, 2).expect("valid bounds"),
        }
    }
}

/// Take an event-age sample every this many written events (a clock read each).
const AGE_SAMPLE_EVERY: u64 = 64;

/// What a pipeline counted, once it has finished.
#[derive(Debug)]
pub struct Finished {
    pub stats: PipelineStats,
    /// Final: `records == records_on_disk + records_lost`.
    pub writer: WriterStats,
    /// The first storage error, if storage failed at any time.
    pub storage_error: Option<String>,
}

/// Decode, filter, sample, write.
pub struct Pipeline {
    pub writer: StreamWriter,
    filter: Filter,
    sampler: Sampler,
    min_importance: f64,
    pub stats: PipelineStats,
    pub latencies: Latencies,
    blocks_seen: u64,
    age_tick: u64,
    flush_interval_ns: u64,
    last_flush_ns: u64,
    /// The first storage error, kept for the final report (even after a resume).
    pub storage_error: Option<String>,
    /// Set while storage is stopped: what is dropped meanwhile, and when to retry.
    outage: Option<Outage>,
    /// Lost records per kind (as the writer counts them) already moved from `written`
    /// to `storage_dropped`.
    lost_accounted: [u64; KINDS_TALLIED],
    /// Undecodable records not yet reported in-band, and since when (monotonic ns).
    undecodable_pending: u64,
    undecodable_since_ns: u64,
    /// The stream this pipeline writes (named in its own loss records).
    stream_id: u32,
    /// Where lifecycle events are copied for the enrichment tables, if enrichment is on.
    tap: Option<TapProducer>,
    /// Tap drops per kind already reported in-band, and since when.
    tap_reported: [u64; KIND_MAX],
    tap_since_ns: u64,
    /// The semantic path's side on this core, if it is on.
    semantic: Option<SemanticCore>,
    /// Windows closed by the last tick, to mark (reused).
    closed: Vec<Closed>,
    /// Copies of the events it writes for the export API, while a client wants them.
    export: Option<ExportTap>,
}

/// A core's queue of written events to the export thread.
#[derive(Debug)]
pub(crate) struct ExportTap {
    pub queue: TapProducer,
    /// Whether any client wants raw events (set by the export hub).
    pub wanted: Arc<AtomicBool>,
    /// Events that did not fit the queue, per kind (read by the export thread).
    pub dropped: Arc<ExportDrops>,
}

/// Events a core could not hand to the export thread, per kind.
#[derive(Debug)]
pub(crate) struct ExportDrops(pub Vec<AtomicU64>);

impl Default for ExportDrops {
    fn default() -> Self {
        ExportDrops((0..KIND_MAX).map(|_| AtomicU64::new(0)).collect())
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("writer", &self.writer)
            .finish()
    }
}

/// CLOCK_MONOTONIC now, in ns (the clock of `bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Pipeline {
    /// A pipeline writing through `writer`.
    pub fn new(
        writer: StreamWriter,
        filter: Filter,
        sampler: Sampler,
        min_importance: f64,
    ) -> Pipeline {
        Pipeline {
            writer,
            filter,
            sampler,
            min_importance,
            stats: PipelineStats::default(),
            latencies: Latencies::new(),
            blocks_seen: 0,
            age_tick: 0,
            flush_interval_ns: 0,
            last_flush_ns: 0,
            storage_error: None,
            outage: None,
            lost_accounted: [0; KINDS_TALLIED],
            undecodable_pending: 0,
            undecodable_since_ns: 0,
            stream_id: 0,
            tap: None,
            tap_reported: [0; KIND_MAX],
            tap_since_ns: 0,
            semantic: None,
            export: None,
            closed: Vec::with_capacity(8),
        }
    }

    /// Folds what this pipeline writes into windows for the semantic thread, from the
    /// window holding `now_ns` (the start marker is written now).
    pub(crate) fn set_semantic(&mut self, mut core: SemanticCore, now_ns: u64) {
        let start = core.start(now_ns);
        self.semantic = Some(core);
        self.write_marker(&start, now_ns);
    }

    /// Writes a window marker in-band (not while storage is stopped: then it is lost
    /// with the rest).
    fn write_marker(&mut self, m: &Marker, now_ns: u64) {
        if self.outage.is_some() {
            self.stats.window_markers_lost += 1;
            return;
        }
        let bytes = m.encode();
        let rec = RecordRef {
            ts_ns: now_ns,
            kind: KIND_WINDOW,
            weight: 1,
            bytes: &bytes,
        };
        match self.writer.append(&rec) {
            Ok(()) => self.stats.window_markers += 1,
            Err(e) => {
                self.stats.window_markers_lost += 1;
                if self.writer.failure().is_some() {
                    self.fail(e, now_ns);
                }
            }
        }
    }

    /// Closes the windows due at `now_ns` (every open one with `stop`): each handed to
    /// the semantic thread and marked in-band.
    fn close_windows(&mut self, now_ns: u64, stop: bool) {
        let Some(s) = &mut self.semantic else {
            return;
        };
        let mut closed = std::mem::take(&mut self.closed);
        s.close(now_ns, stop, &mut closed);
        for (m, loss) in closed.drain(..) {
            self.write_marker(&m, now_ns);
            if let Some(l) = loss {
                self.loss(&l);
            }
        }
        self.closed = closed;
    }

    /// Copies lifecycle events into `tap` for the enrichment thread.
    pub fn set_tap(&mut self, tap: TapProducer) {
        self.tap = Some(tap);
    }

    /// Copies the events it writes (weight first, as 8 bytes: the record stays aligned)
    /// to the export thread while a client
    /// wants them.
    pub(crate) fn set_export(&mut self, export: ExportTap) {
        self.export = Some(export);
    }

    /// Handles one record read from a ring.
    pub fn process(&mut self, bytes: &[u8]) {
        let ev = match bpf::decode(bytes) {
            Ok(ev) => ev,
            Err(_) => {
                // Reported in-band at the next tick (no clock read per bad record).
                self.stats.undecodable += 1;
                self.undecodable_pending += 1;
                return;
            }
        };
        let k = ev.kind as usize;
        self.stats.delivered[k] += 1;
        if let Some(tap) = &mut self.tap
            && crate::enrich::is_lifecycle(&ev)
            && !tap.push(k, &bytes[..ev.header.len as usize])
        {
            self.stats.enrich_dropped += 1;
        }
        if !self.filter.keep(&ev) {
            self.stats.filtered[k] += 1;
            return;
        }
        let class = class_of(&ev);
        let Some(weight) = self.sampler.decide(&ev, class) else {
            self.stats.sampled_out[k] += 1;
            return;
        };
        let notable = importance(&ev, class) >= self.min_importance;
        if notable {
            self.stats.notable += 1;
        }
        if let Some(o) = &mut self.outage {
            self.stats.storage_dropped[k] += 1;
            o.dropped[k] += 1;
            return;
        }
        let rec = RecordRef {
            ts_ns: ev.header.ts_ns,
            kind: ev.kind as u16,
            weight,
            bytes: &bytes[..ev.header.len as usize],
        };
        match self.writer.append(&rec) {
            Ok(()) => {
                self.stats.written[k] += 1;
                if let Some(s) = &mut self.semantic {
                    s.event(&ev, weight, notable.then_some(rec.bytes));
                }
                if let Some(x) = &mut self.export
                    && x.wanted.load(Ordering::Relaxed)
                    && !x
                        .queue
                        .push_parts(k, &u64::from(weight).to_le_bytes(), rec.bytes)
                {
                    x.dropped.0[k].fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                // Not accepted: this one is dropped too.
                self.stats.storage_dropped[k] += 1;
                if self.writer.failure().is_some() {
                    self.fail(e, ev.header.ts_ns);
                    if let Some(o) = &mut self.outage {
                        o.dropped[k] += 1;
                    }
                } else if self.storage_error.is_none() {
                    // Refused alone (the writer goes on): reported, not an outage.
                    self.storage_error = Some(e.to_string());
                }
                return;
            }
        }
        let (blocks, last_ns) = self.writer.last_block();
        if blocks != self.blocks_seen {
            self.blocks_seen = blocks;
            let _ = self.latencies.block_write.record(last_ns.max(1));
        }
        self.age_tick += 1;
        if self.age_tick.is_multiple_of(AGE_SAMPLE_EVERY) {
            let age = monotonic_ns().saturating_sub(ev.header.ts_ns);
            let _ = self.latencies.event_age.record(age.max(1));
        }
    }

    /// Storage stopped: from now on kept events are counted as dropped until a retry
    /// reopens the stream.
    fn fail(&mut self, e: StorageError, at_ns: u64) {
        let why = e.to_string();
        if self.storage_error.is_none() {
            self.storage_error = Some(why.clone());
        }
        match &mut self.outage {
            // "Stopped after an earlier error" says nothing new: keep the cause.
            Some(_) if matches!(e, StorageError::Stopped(_)) => {}
            Some(o) => o.why = why,
            None => self.outage = Some(Outage::new(why, at_ns)),
        }
        self.reconcile();
    }

    /// Moves records the writer reports lost (their blocks never reached the file) from
    /// `written` to `storage_dropped`: "written" means on disk.
    fn reconcile(&mut self) {
        let lost = self.writer.stats().lost_per_kind;
        for (k, &now) in lost.iter().enumerate() {
            let d = now.saturating_sub(self.lost_accounted[k]);
            if d == 0 {
                continue;
            }
            self.lost_accounted[k] = now;
            // The writer loses only what it accepted, which was counted written first.
            debug_assert!(k != KIND_LOSS as usize || d <= self.stats.loss_records);
            if k == KIND_LOSS as usize {
                self.stats.loss_records = self.stats.loss_records.saturating_sub(d);
                self.stats.loss_records_lost += d;
                continue;
            }
            if k == KIND_WINDOW as usize {
                self.stats.window_markers = self.stats.window_markers.saturating_sub(d);
                self.stats.window_markers_lost += d;
                continue;
            }
            if k < KIND_MAX {
                debug_assert!(d <= self.stats.written[k], "kind {k}: lost {d}");
                self.stats.written[k] = self.stats.written[k].saturating_sub(d);
                self.stats.storage_dropped[k] += d;
                if let Some(o) = &mut self.outage {
                    o.dropped[k] += d;
                }
            }
        }
    }

    /// Why storage is stopped and how many kept events were dropped since, if it is.
    pub fn storage_down(&self) -> Option<(&str, u64)> {
        self.outage
            .as_ref()
            .map(|o| (o.why.as_str(), o.total_dropped()))
    }

    /// Writes a loss record in-band (parked while storage is stopped).
    pub fn loss(&mut self, loss: &Loss) {
        if let Some(o) = &mut self.outage {
            o.park(loss);
            return;
        }
        match self.writer.append_loss(loss) {
            Ok(()) => {
                self.stats.loss_records += 1;
                if let Some(s) = &mut self.semantic {
                    s.loss(loss);
                }
            }
            Err(e) => {
                self.fail(e, loss.end_ns);
                if let Some(o) = &mut self.outage {
                    o.park(loss);
                }
            }
        }
    }

    /// Seals the current segment; the next record opens a new one (SIGHUP).
    pub fn reopen(&mut self) {
        if self.outage.is_none()
            && let Err(e) = self.writer.seal()
        {
            self.fail(e, monotonic_ns());
        }
    }

    /// A stopped stream tries to reopen its storage (every [`STORAGE_RETRY_INTERVAL`],
    /// or now with `force`). Storage has resumed only once the outage's own loss records
    /// are on disk; if they are not, the outage goes on with everything it had.
    fn retry_storage(&mut self, now_ns: u64, force: bool) {
        let Some(o) = &mut self.outage else {
            return;
        };
        if !force && now_ns < o.next_retry_ns {
            return;
        }
        o.next_retry_ns = now_ns.saturating_add(STORAGE_RETRY_INTERVAL.as_nanos() as u64);
        let recovered = match self.writer.reopen() {
            Ok(r) => r,
            Err(e) => {
                o.why = e.to_string();
                return;
            }
        };
        for r in recovered {
            eprintln!("engine: stream {}: {r}", self.stream_id);
        }
        // Blocks still in flight at the failure are settled by now.
        self.reconcile();
        let Some(old) = self.outage.take() else {
            return;
        };
        let mut written = Ok(());
        for l in old.losses(self.stream_id, now_ns) {
            written = self.writer.append_loss(&l);
            if written.is_err() {
                break;
            }
            self.stats.loss_records += 1;
            if let Some(s) = &mut self.semantic {
                s.loss(&l);
            }
        }
        match written.and_then(|()| self.writer.settle()) {
            Ok(()) => {
                eprintln!(
                    "engine: stream {}: storage resumed after {:.1} s; {} kept events were dropped meanwhile ({}), written in-band as loss records",
                    self.stream_id,
                    now_ns.saturating_sub(old.since_ns) as f64 / 1e9,
                    old.total_dropped(),
                    old.why
                );
                if old.parked_overflow > 0 {
                    eprintln!(
                        "engine: stream {}: {} loss reports of the outage could not be kept (counted in the accounting)",
                        self.stream_id, old.parked_overflow
                    );
                }
            }
            Err(e) => {
                // Not resumed after all (e.g. the disk is still full): the records just
                // written are counted lost by `fail`, and the outage keeps its history.
                self.fail(e, now_ns);
                if let Some(o) = &mut self.outage {
                    o.absorb(old);
                }
            }
        }
    }

    /// At the stop: writes what is buffered, seals, and settles the counts (every
    /// record accepted by the writer is then on disk or counted lost).
    pub fn finish(mut self) -> Finished {
        let now = monotonic_ns();
        // A last try, whatever the retry interval: space may have come back just now.
        self.retry_storage(now, true);
        // Every window closes (and is handed over) even if storage failed: the markers
        // are then lost with the rest, and counted.
        self.close_windows(now, true);
        if self.writer.failure().is_none() {
            self.tick_undecodable(now);
            self.tick_tap(now);
            if let Err(e) = self.writer.flush().and_then(|()| self.writer.seal()) {
                self.fail(e, now);
            }
        }
        self.reconcile();
        if let Some(o) = &self.outage {
            eprintln!(
                "engine: stream {}: storage still stopped at the stop ({}): {} kept events dropped, {} loss reports not written in-band",
                self.stream_id,
                o.why,
                o.total_dropped(),
                o.parked.len() as u64 + o.parked_overflow
            );
        }
        Finished {
            writer: self.writer.stats(),
            stats: self.stats,
            storage_error: self.storage_error,
        }
    }

    /// The stream id named in the loss records this pipeline writes itself.
    pub fn set_stream_id(&mut self, id: u32) {
        self.stream_id = id;
    }

    /// Writes partial blocks every `interval_ms` (0: only full blocks).
    pub fn set_flush_interval(&mut self, interval_ms: u64) {
        self.flush_interval_ns = interval_ms.saturating_mul(1_000_000);
    }

    /// Periodic work: sampling intervals, partial-block flushes, segment age, syncs.
    pub fn tick(&mut self, now_ns: u64) {
        self.sampler.tick(now_ns);
        if self.outage.is_some() {
            self.reconcile();
            self.retry_storage(now_ns, false);
            if self.outage.is_some() {
                return;
            }
        }
        self.tick_undecodable(now_ns);
        self.tick_tap(now_ns);
        self.close_windows(now_ns, false);
        if self.flush_interval_ns > 0
            && now_ns.saturating_sub(self.last_flush_ns) >= self.flush_interval_ns
        {
            self.last_flush_ns = now_ns;
            if let Err(e) = self.writer.flush() {
                self.fail(e, now_ns);
                return;
            }
        }
        if let Err(e) = self.writer.tick() {
            self.fail(e, now_ns);
        }
    }

    /// Lifecycle events whose copy for the enrichment tables was dropped since the last
    /// tick, in-band per kind.
    fn tick_tap(&mut self, now_ns: u64) {
        let Some(tap) = &self.tap else {
            return;
        };
        let dropped = tap.dropped;
        for (k, &d) in dropped.iter().enumerate() {
            let new = d - self.tap_reported[k];
            if new == 0 {
                continue;
            }
            self.tap_reported[k] = d;
            self.loss(&Loss {
                stream: self.stream_id,
                cpu: u32::MAX,
                kind: k as u16,
                reason: LossReason::EnrichQueueFull as u16,
                count: new,
                start_ns: self.tap_since_ns,
                end_ns: now_ns,
            });
        }
        self.tap_since_ns = now_ns;
    }

    /// Undecodable records since the last tick, in-band.
    fn tick_undecodable(&mut self, now_ns: u64) {
        if self.undecodable_pending > 0 {
            self.loss(&Loss {
                stream: self.stream_id,
                cpu: u32::MAX,
                kind: 0,
                reason: LossReason::Undecodable as u16,
                count: self.undecodable_pending,
                start_ns: self.undecodable_since_ns,
                end_ns: now_ns,
            });
            self.undecodable_pending = 0;
        }
        self.undecodable_since_ns = now_ns;
    }

    /// Events written and on disk, at least (records still buffered or in flight are
    /// not counted): what the status line reports as written.
    pub fn written_on_disk(&self) -> u64 {
        let appended: u64 = self.stats.written.iter().sum();
        appended.saturating_sub(self.writer.stats().records_pending())
    }

    /// Current 1-in-N per class.
    pub fn sampling_rates(&self) -> [u32; 4] {
        self.sampler.rates()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn undecodable_records_are_reported_in_band() {
        let dir = std::env::temp_dir().join(format!("pipeline-undecodable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = Config::default();
        config.storage.data_dir = dir.clone();
        let writer =
            StreamWriter::create(crate::run::writer_config(&config, 3, 4)).expect("writer");
        let mut p = Pipeline::new(
            writer,
            Filter::new(&config.filter),
            Sampler::new(0, 0, 0, 1000),
            0.8,
        );
        p.set_stream_id(3);
        p.tick(1_000);
        for _ in 0..5 {
            p.process(&[0xff; 24]);
        }
        p.tick(2_000);
        p.tick(3_000);
        assert_eq!(p.stats.undecodable, 5);
        let done = p.finish();
        assert_eq!(done.storage_error, None);
        assert_eq!(done.writer.records, done.writer.records_on_disk);
        let mut r = storage::Reader::open(&dir, &storage::ReadOptions::default()).unwrap();
        let mut losses = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            assert_eq!(
                rec.kind,
                storage::KIND_LOSS,
                "only the loss record was written"
            );
            losses.push(Loss::decode(rec.bytes).expect("a loss record"));
        }
        assert_eq!(losses.len(), 1, "{losses:?}");
        let l = losses[0];
        assert_eq!(
            (l.stream, l.reason, l.count, l.start_ns, l.end_ns),
            (3, LossReason::Undecodable as u16, 5, 1_000, 2_000)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
