//! Core threads: one per configured CPU, pinned, each owning the rings of the CPUs
//! assigned to it, its pipeline (filter, sampler, block buffers, zstd context, io_uring,
//! segment stream) and its counters. The control thread talks to it through one SPSC
//! queue (`rtrb`) and shared atomics; nothing on the per-event path locks.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bpf::{CpuRing, Poller};
use storage::Loss;

use crate::pipeline::{Latencies, Pipeline, PipelineStats, monotonic_ns};

/// Messages from the control thread.
#[derive(Debug, Clone, Copy)]
pub enum CoreMsg {
    /// Write this loss record in-band.
    Loss(Loss),
    /// Seal the current segment and continue in a new one (SIGHUP).
    Reopen,
}

/// Passes over the rings after the stop at most (each drains everything pending).
const FINAL_DRAIN_PASSES_MAX: usize = 64;

/// How far before the last record processed of a ring that still holds records its
/// delivery is reported (records of one CPU come in about their time order).
const DELIVERY_MARGIN_NS: u64 = 1_000_000;

/// Capacity of the control -> core queue.
pub const CONTROL_QUEUE_CAPACITY: usize = 4096;

/// What the control thread can read of a core thread while it runs.
#[derive(Debug)]
pub struct CoreShared {
    /// Records read from the rings.
    pub delivered: AtomicU64,
    /// Events written and on disk (a lower bound while blocks are buffered or in flight).
    pub written: AtomicU64,
    /// Bytes appended and bytes written to disk (compression ratio).
    pub record_bytes: AtomicU64,
    pub file_bytes: AtomicU64,
    /// Largest ring fill seen in the last status interval, in per mille.
    pub ring_fill_permille: AtomicU64,
    /// Kept records lost because storage failed.
    pub storage_dropped: AtomicU64,
    /// Why storage is stopped, while it is (for the status line).
    pub storage_error: Mutex<Option<String>>,
    /// Latest latency histograms, published every status interval (not per event).
    pub latencies: Mutex<Option<Latencies>>,
    /// The pipeline's counters as of the last status interval (for the metrics).
    pub stats: Mutex<Option<crate::pipeline::PipelineStats>>,
    /// Current 1-in-N per sampling class (critical, high, normal, bulk).
    pub sampling: Mutex<[u32; 4]>,
    /// Every event of this core's rings stamped before this (monotonic ns) has been
    /// processed, and its lifecycle copy queued for the enrichment thread (stored after
    /// the copies: Release). The enrichment thread applies events no later than this.
    pub delivered_through: AtomicU64,
}

impl Default for CoreShared {
    fn default() -> CoreShared {
        CoreShared {
            delivered: AtomicU64::new(0),
            written: AtomicU64::new(0),
            record_bytes: AtomicU64::new(0),
            file_bytes: AtomicU64::new(0),
            ring_fill_permille: AtomicU64::new(0),
            storage_dropped: AtomicU64::new(0),
            storage_error: Mutex::new(None),
            latencies: Mutex::new(None),
            stats: Mutex::new(None),
            // No sampling until the core says otherwise (Status and /metrics read this
            // before its first publish: 1 in 0 would be a false number).
            sampling: Mutex::new([1; 4]),
            delivered_through: AtomicU64::new(0),
        }
    }
}

/// The final report of a core thread.
#[derive(Debug)]
pub struct CoreReport {
    pub id: u32,
    pub stats: PipelineStats,
    pub writer: storage::WriterStats,
    /// The first storage error, if storage failed at any time (even if it resumed).
    pub storage_error: Option<String>,
}

/// A core thread's state before it starts.
pub struct Core {
    pub id: u32,
    pub cpu: usize,
    pub rings: Vec<CpuRing>,
    pub pipeline: Pipeline,
    pub control: rtrb::Consumer<CoreMsg>,
    pub shared: Arc<CoreShared>,
    pub poll_budget_events: usize,
    pub poll_timeout: Duration,
    pub publish_every: Duration,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("id", &self.id)
            .field("cpu", &self.cpu)
            .finish()
    }
}

impl Core {
    /// Runs until `stop` is set, then drains every ring to the end, applies every queued
    /// control message, and closes its stream (sealing the segment).
    pub fn run(mut self, stop: &AtomicBool) -> CoreReport {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: self.cpu }) {
            eprintln!(
                "engine: core {}: could not pin to CPU {}",
                self.id, self.cpu
            );
        }
        let mut poller = match Poller::new(&self.rings) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("engine: core {}: epoll: {e}; polling on a timer", self.id);
                None
            }
        };
        let mut last_publish = monotonic_ns();
        let publish_ns = self.publish_every.as_nanos() as u64;
        let mut max_fill = 0u64;
        let mut final_passes = 0;
        loop {
            let stopping = stop.load(Ordering::Acquire);
            final_passes += usize::from(stopping);
            let mut drained = 0;
            // How far every ring has been delivered: a ring found empty, up to the start
            // of the pass; one with records left, up to the last record processed (a
            // CPU's ring holds its records in about their time order; the margin covers
            // nesting).
            let pass_start = monotonic_ns();
            let mut through = pass_start;
            for ring in &mut self.rings {
                let fill = ring.pending_bytes();
                max_fill = max_fill.max(fill);
                let budget = if stopping {
                    usize::MAX
                } else {
                    self.poll_budget_events
                };
                let mut last = 0u64;
                drained += ring.drain(budget, |b| {
                    if let Some(ts) = b.get(..8) {
                        last = u64::from_le_bytes(ts.try_into().unwrap_or([0; 8]));
                    }
                    self.pipeline.process(b)
                });
                if ring.pending_bytes() > 0 {
                    through = through.min(last.saturating_sub(DELIVERY_MARGIN_NS));
                }
            }
            self.shared
                .delivered_through
                .store(through, Ordering::Release);
            while let Ok(msg) = self.control.pop() {
                match msg {
                    CoreMsg::Loss(l) => self.pipeline.loss(&l),
                    CoreMsg::Reopen => self.pipeline.reopen(),
                }
            }
            let now = monotonic_ns();
            self.pipeline.tick(now);
            if now.saturating_sub(last_publish) >= publish_ns {
                self.publish(max_fill);
                max_fill = 0;
                last_publish = now;
            }
            // Normally the programs are detached before the stop, so the second pass
            // finds the rings empty. On an error path they may still be producing: the
            // drain is bounded then, and what is left is in the kernel's counters.
            if stopping && (drained == 0 || final_passes >= FINAL_DRAIN_PASSES_MAX) {
                break;
            }
            if drained == 0 {
                match &mut poller {
                    Some(p) => {
                        let _ = p.wait(self.poll_timeout).map(|it| it.for_each(drop));
                    }
                    None => std::thread::sleep(self.poll_timeout),
                }
            }
        }
        self.publish(max_fill);
        let Core { id, pipeline, .. } = self;
        let finished = pipeline.finish();
        CoreReport {
            id,
            stats: finished.stats,
            writer: finished.writer,
            storage_error: finished.storage_error,
        }
    }

    fn publish(&self, max_fill: u64) {
        let s = &self.pipeline.stats;
        let sum = |a: &[u64]| a.iter().sum::<u64>();
        self.shared
            .delivered
            .store(sum(&s.delivered), Ordering::Relaxed);
        self.shared
            .written
            .store(self.pipeline.written_on_disk(), Ordering::Relaxed);
        self.shared
            .storage_dropped
            .store(sum(&s.storage_dropped), Ordering::Relaxed);
        if let Ok(mut slot) = self.shared.storage_error.lock() {
            *slot = self.pipeline.storage_down().map(|(why, _)| why.to_string());
        }
        let w = self.pipeline.writer.stats();
        self.shared
            .record_bytes
            .store(w.record_bytes, Ordering::Relaxed);
        self.shared
            .file_bytes
            .store(w.bytes_written, Ordering::Relaxed);
        let ring_bytes = self.rings.first().map_or(1, |r| r.capacity().max(1));
        self.shared
            .ring_fill_permille
            .store(max_fill * 1000 / ring_bytes, Ordering::Relaxed);
        if let Ok(mut l) = self.shared.latencies.lock() {
            *l = Some(self.pipeline.latencies.clone());
        }
        if let Ok(mut st) = self.shared.stats.lock() {
            *st = Some(self.pipeline.stats.clone());
        }
        if let Ok(mut r) = self.shared.sampling.lock() {
            *r = self.pipeline.sampling_rates();
        }
    }
}
