//! The semantic thread: takes the cores' closed partials, and once every core has
//! closed a window, merges them and sends the window's line to the sinks, windows in
//! order. An ordinary thread, off the data plane; a slow sink slows only it (the cores'
//! queues then fill, and what does not fit is counted by the cores, in-band).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::core::CoreWindowsShared;
use super::partial::Partial;
use super::summary::Window;
use crate::export::Sink;
use crate::output::json::JsonWriter;

/// Idle wait between passes.
const IDLE: Duration = Duration::from_millis(20);

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
        }
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
        win.write_json(&self.host, &mut self.json);
        self.report.windows += 1;
        let mut lines = vec![self.json.bytes().to_vec()];
        win.write_notables(&self.host, &mut self.json, |l| lines.push(l.to_vec()));
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
        while w < ready {
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
    /// emits what is left.
    pub(crate) fn run(mut self, cores_done: &AtomicBool) -> SemanticReport {
        loop {
            let done = cores_done.load(Ordering::Acquire);
            let emitted = self.pass();
            if done {
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
