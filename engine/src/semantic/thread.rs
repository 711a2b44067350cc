//! The semantic thread: takes the cores' closed partials, and once every core has
//! closed a window, merges them and sends the window's line to the sinks, windows in
//! order. An ordinary thread, off the data plane; a slow sink slows only it (the cores'
//! queues then fill, and what does not fit is counted by the cores, in-band).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::core::CoreWindowsShared;
use super::correlate::{Correlator, Thresholds};
use super::partial::Partial;
use super::summary::Window;
use super::tables::{LiveTables, TablesAt};
use crate::export::Sink;
use crate::output::json::JsonWriter;
use crate::perf::window::PerfWindows;

/// How long the stop waits for the enrichment thread's last records.
const FINAL_WAIT: Duration = Duration::from_secs(30);
/// Idle wait between passes.
const IDLE: Duration = Duration::from_millis(20);

/// Where window `w` ends, in the records' monotonic clock (through `mono_to_wall_ns`):
/// after a window, the enrichment records before its end are applied (live and
/// offline alike), so the tables never hold more than a window's worth unapplied.
pub(crate) fn window_end_mono(w: u64, window_ns: u64, mono_to_wall_ns: i64) -> u64 {
    let end = (i128::from(w) + 1) * i128::from(window_ns) - i128::from(mono_to_wall_ns);
    end.clamp(0, i128::from(u64::MAX)) as u64
}

/// One core as the semantic thread sees it.
pub(crate) struct CoreInput {
    pub queue: rtrb::Consumer<Box<Partial>>,
    pub shared: Arc<CoreWindowsShared>,
    /// Partials received, by window, not yet emitted.
    pending: BTreeMap<u64, Box<Partial>>,
}

impl CoreInput {
    pub(crate) fn new(
        queue: rtrb::Consumer<Box<Partial>>,
        shared: Arc<CoreWindowsShared>,
    ) -> CoreInput {
        CoreInput {
            queue,
            shared,
            pending: BTreeMap::new(),
        }
    }

    fn drain(&mut self) -> usize {
        let mut n = 0;
        while let Ok(p) = self.queue.pop() {
            self.pending.insert(p.window, p);
            n += 1;
        }
        n
    }
}

/// What the semantic thread did.
#[derive(Debug, Clone, Default)]
pub(crate) struct SemanticReport {
    pub windows: u64,
    pub lines: u64,
    /// The first sink error, if any (the sink is then dropped; the rest is counted).
    pub sink_error: Option<String>,
    pub lines_dropped: u64,
}

/// See the module docs.
pub(crate) struct SemanticThread {
    inputs: Vec<CoreInput>,
    window_ns: u64,
    top_n: usize,
    host: String,
    sinks: Vec<Box<dyn Sink>>,
    next: Option<u64>,
    json: JsonWriter,
    report: SemanticReport,
    /// The enrichment tables notable events are looked up in (when enrichment is on).
    tables: Option<Box<dyn LiveTables>>,
    /// The enrichment thread did not finish in time at the stop: emit regardless.
    waited_out: bool,
    mono_to_wall_ns: i64,
    correlator: Correlator,
    /// Counts the windows emitted (for the metrics), when set.
    windows: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// The perf category's aggregates per window (when it is on).
    perf: Option<Arc<PerfWindows>>,
    /// The kinds this run does not capture, in every window's line.
    unavailable: Arc<[String]>,
}

impl std::fmt::Debug for SemanticThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemanticThread")
            .field("report", &self.report)
            .finish()
    }
}

impl SemanticThread {
    pub(crate) fn new(
        inputs: Vec<CoreInput>,
        window_ns: u64,
        top_n: usize,
        host: String,
        sinks: Vec<Box<dyn Sink>>,
        thresholds: Thresholds,
    ) -> SemanticThread {
        SemanticThread {
            inputs,
            window_ns,
            top_n,
            host,
            sinks,
            next: None,
            json: JsonWriter::default(),
            report: SemanticReport::default(),
            tables: None,
            waited_out: false,
            mono_to_wall_ns: 0,
            correlator: Correlator::new(thresholds),
            windows: None,
            perf: None,
            unavailable: Arc::from([]),
        }
    }

    /// The kinds this run does not capture (what its `capture.unavailable` record says).
    pub(crate) fn set_unavailable(&mut self, kinds: Vec<String>) {
        self.unavailable = kinds.into();
    }

    /// Adds the perf category's aggregates to each window's line (a window is emitted
    /// once no later interval record can fall in it).
    pub(crate) fn set_perf(&mut self, perf: Arc<PerfWindows>) {
        self.perf = Some(perf);
    }

    /// Whether every interval record of window `w` has been folded.
    fn perf_ready(&self, w: u64) -> bool {
        self.perf.as_ref().is_none_or(|p| p.ready(w))
    }

    /// Counts every window emitted into `windows`.
    pub(crate) fn count_windows(&mut self, windows: Arc<std::sync::atomic::AtomicU64>) {
        self.windows = Some(windows);
    }

    /// Enriches notable events from the records the enrichment thread feeds;
    /// `mono_to_wall_ns` is core 0's offset (its segments record it), by which a
    /// window's end is a time of the records'.
    pub(crate) fn set_tables(&mut self, tables: Box<dyn LiveTables>, mono_to_wall_ns: i64) {
        self.tables = Some(tables);
        self.mono_to_wall_ns = mono_to_wall_ns;
    }

    /// Whether window `w` can be enriched now: every enrichment record stamped before
    /// its end (and before its latest notable event, a late one) has been fed (the
    /// window's line names its top processes and cgroups from the tables at its end).
    fn enrichment_ready(&self, w: u64) -> bool {
        let Some(t) = &self.tables else {
            return true;
        };
        let end = window_end_mono(w, self.window_ns, self.mono_to_wall_ns);
        let latest = self
            .inputs
            .iter()
            .filter_map(|c| c.pending.get(&w))
            .flat_map(|p| p.notables.iter().map(|n| n.ts_ns))
            .max()
            .unwrap_or(0);
        t.fed_through() >= end && t.fed_through() > latest
    }

    /// The first window every core has closed up to (exclusive).
    fn ready(&self) -> u64 {
        self.inputs
            .iter()
            .map(|c| c.shared.next_open.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    fn emit(&mut self, w: u64) {
        let mut win = Window::new(w, self.window_ns, self.top_n);
        win.perf = self.perf.as_ref().and_then(|p| p.take(w)).map(Box::new);
        win.unavailable = self.unavailable.clone();
        for (i, c) in self.inputs.iter_mut().enumerate() {
            if w < c.shared.start.load(Ordering::Acquire) {
                continue; // the core had not started
            }
            match c.pending.remove(&w) {
                Some(p) => win.add(i as u32, &p),
                None => {
                    let lost = c
                        .shared
                        .lost
                        .lock()
                        .ok()
                        .and_then(|l| l.iter().find(|(lw, _)| *lw == w).map(|(_, r)| *r));
                    win.lost(lost.unwrap_or(0));
                }
            }
        }
        self.report.windows += 1;
        if let Some(c) = &self.windows {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let mut lines = Vec::new();
        win.write_lines(
            &self.host,
            &mut self.json,
            self.tables.as_mut().map(|t| &mut **t as &mut dyn TablesAt),
            &mut self.correlator,
            window_end_mono(w, self.window_ns, self.mono_to_wall_ns),
            |l| lines.push(l.to_vec()),
        );
        let mut failed = Vec::new();
        for (i, s) in self.sinks.iter_mut().enumerate() {
            for line in &lines {
                if let Err(e) = s.line(line) {
                    failed.push((i, e));
                    break;
                }
            }
        }
        self.report.lines += lines.len() as u64;
        for (i, e) in failed.into_iter().rev() {
            eprintln!(
                "engine: summary sink failed: {e}; it is closed, the next lines are counted as dropped"
            );
            if self.report.sink_error.is_none() {
                self.report.sink_error = Some(e.to_string());
            }
            self.sinks.remove(i);
        }
        if self.sinks.is_empty() && self.report.sink_error.is_some() {
            self.report.lines_dropped += 1;
        }
    }

    /// Emits every window all cores have closed; true when it emitted any.
    fn pass(&mut self) -> bool {
        let ready = self.ready();
        // Partials are pushed before `next_open` moves: drain after reading it.
        for c in &mut self.inputs {
            c.drain();
        }
        let first = *self.next.get_or_insert_with(|| {
            self.inputs
                .iter()
                .map(|c| c.shared.start.load(Ordering::Acquire))
                .min()
                .unwrap_or(ready)
        });
        let mut w = first;
        while w < ready && ((self.enrichment_ready(w) && self.perf_ready(w)) || self.waited_out) {
            self.emit(w);
            w += 1;
        }
        self.next = Some(w);
        if w > first {
            for s in &mut self.sinks {
                let _ = s.flush();
            }
        }
        w > first
    }

    /// Runs until `cores_done` is set (every core has closed all its windows), then
    /// emits what is left (once the enrichment thread has fed its last records).
    pub(crate) fn run(mut self, cores_done: &AtomicBool) -> SemanticReport {
        loop {
            let done = cores_done.load(Ordering::Acquire);
            let emitted = self.pass();
            if done {
                let deadline = std::time::Instant::now() + FINAL_WAIT;
                let tables_done = |t: &Self| {
                    t.tables
                        .as_ref()
                        .is_none_or(|t| t.fed_through() == u64::MAX)
                };
                while !(tables_done(&self) && self.perf_ready(u64::MAX - 1))
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(IDLE);
                }
                if !tables_done(&self) {
                    eprintln!(
                        "engine: semantic: the enrichment thread did not finish within {} s; the last notable events are written without waiting for it",
                        FINAL_WAIT.as_secs()
                    );
                    self.waited_out = true;
                }
                if !self.perf_ready(u64::MAX - 1) {
                    eprintln!(
                        "engine: semantic: the perf aggregator did not finish within {} s; the last windows are written without its aggregates",
                        FINAL_WAIT.as_secs()
                    );
                    self.waited_out = true;
                }
                self.pass();
                break;
            }
            if !emitted {
                std::thread::sleep(IDLE);
            }
        }
        for s in &mut self.sinks {
            let _ = s.flush();
        }
        self.report
    }
}
