//! What the semantic thread costs, measured alone (bench/src/bin/semantic_rate.rs): the
//! cores' records are folded into closed windows first (not timed), then the semantic
//! thread merges them, enriches and correlates their notable events and writes the
//! lines (timed), against tables the enrichment tracker built from the same records.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::core::{CoreWindowsShared, SemanticCore};
use super::tables::{LiveTables, TablesAt};
use super::thread::{CoreInput, SemanticThread};
use crate::enrich::tables::Tables;
use crate::enrich::tracker::{Sources, Tracker};
use crate::export::Sink;
use crate::sampler::{class_of, importance};

/// Tables complete from the start (every record fed).
struct Complete(Tables);

impl TablesAt for Complete {
    fn at(&mut self, _ts: u64) -> &Tables {
        &self.0
    }
}

impl LiveTables for Complete {
    fn fed_through(&self) -> u64 {
        u64::MAX
    }
}

/// A sink that counts what it is given.
struct Counting(Arc<std::sync::Mutex<(u64, u64)>>);

impl Sink for Counting {
    fn line(&mut self, line: &[u8]) -> std::io::Result<()> {
        if let Ok(mut c) = self.0.lock() {
            c.0 += 1;
            c.1 += line.len() as u64;
        }
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What one measurement saw.
#[derive(Debug, Clone, Copy)]
pub struct SemanticRate {
    /// Records folded on the cores (every one stored, weight 1).
    pub events: u64,
    /// Of them notable (at or above `semantic.min_importance`).
    pub notable: u64,
    /// Windows merged and lines written (windows, notable events kept by the arenas,
    /// correlations), and their bytes.
    pub windows: u64,
    pub lines: u64,
    pub bytes: u64,
    /// Processes in the tables notable events were looked up in.
    pub processes: usize,
    /// The semantic thread's time, from the first window to the last line.
    pub elapsed: Duration,
}

/// Folds `cores` (each core's records in write order, kernel time on the wall clock)
/// into `config`'s windows, then times the semantic thread over them.
pub fn measure(config: &crate::Config, cores: &[Vec<&[u8]>]) -> SemanticRate {
    let s = &config.semantic;
    let settings = s.window_settings();
    let mut tracker = Tracker::new(
        config.enrich.processes_max,
        config.enrich.cgroups_max,
        config.enrich.exit_grace_ms.saturating_mul(1_000_000),
        Sources {
            proc: None,
            cgroup2: None,
            etc_root: "/".into(),
        },
    );
    let (mut events, mut notable) = (0u64, 0u64);
    let mut inputs = Vec::new();
    for (i, records) in cores.iter().enumerate() {
        let windows = records.len() / 1000 + 64;
        let (tx, rx) = rtrb::RingBuffer::new(windows);
        let shared = Arc::new(CoreWindowsShared::default());
        let mut core = SemanticCore::new(settings, 0, tx, shared.clone(), i as u32);
        let mut closed = Vec::new();
        let mut last = 0;
        for (n, rec) in records.iter().enumerate() {
            let Ok(ev) = bpf::decode(rec) else { continue };
            if n == 0 {
                core.start(ev.header.ts_ns);
            }
            tracker.event(&ev);
            let keep = importance(&ev, class_of(&ev)) >= settings.min_importance;
            notable += u64::from(keep);
            events += 1;
            core.event(&ev, 1, keep.then_some(*rec));
            last = ev.header.ts_ns;
            if n % 1024 == 0 {
                core.close(last, false, &mut closed);
            }
        }
        core.close(last, true, &mut closed);
        inputs.push(CoreInput::new(rx, shared));
    }
    tracker.take_updates().for_each(drop);
    let tables = Complete(std::mem::replace(&mut tracker.tables, Tables::for_reader()));
    let processes = tables.0.processes().len();
    let counts = Arc::new(std::sync::Mutex::new((0, 0)));
    let mut thread = SemanticThread::new(
        inputs,
        settings.window_ns,
        settings.top_n as usize,
        "bench".into(),
        vec![Box::new(Counting(counts.clone()))],
        settings.thresholds,
    );
    thread.set_tables(Box::new(tables), 0);
    let t0 = Instant::now();
    let report = thread.run(&AtomicBool::new(true));
    let elapsed = t0.elapsed();
    let (lines, bytes) = counts.lock().map(|c| *c).unwrap_or_default();
    SemanticRate {
        events,
        notable,
        windows: report.windows,
        lines,
        bytes,
        processes,
        elapsed,
    }
}
