//! The core thread's side of the semantic path: fold every record it writes into its
//! windows, and when the clock passes a window's end (plus the lateness allowed), close
//! it: hand the partial to the semantic thread (a bounded SPSC queue that never
//! blocks) and write a marker into the stream saying so, so that `engine summarize`
//! closes it at the same place.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bpf::Event;
use storage::{Loss, LossReason};

use super::correlate::Thresholds;
use super::marker::{Marker, MarkerOp, window_of};
use super::partial::Partial;
use super::windows::Windows;

/// Lost-window notices kept per core (beyond, they are merged into the last).
const LOST_NOTICES_MAX: usize = 1024;

/// What the semantic thread reads of a core.
#[derive(Debug, Default)]
pub(crate) struct CoreWindowsShared {
    /// The core's first open window: every window before it is closed (its partial
    /// handed over, or noted in `lost`).
    pub next_open: AtomicU64,
    /// The core's first window (it has nothing before).
    pub start: AtomicU64,
    /// Windows whose partial could not be handed over: (window, records).
    pub lost: Mutex<Vec<(u64, u64)>>,
}

/// What a core's windows are made of (config `[semantic]`; recorded in the markers).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowSettings {
    pub window_ns: u64,
    pub top_n: u32,
    pub lateness_ns: u64,
    pub min_importance: f64,
    pub notable_bytes: usize,
    pub thresholds: Thresholds,
}

/// See the module docs.
pub(crate) struct SemanticCore {
    windows: Windows,
    settings: WindowSettings,
    mono_to_wall_ns: i64,
    queue: rtrb::Producer<Box<Partial>>,
    shared: Arc<CoreWindowsShared>,
    stream_id: u32,
}

impl std::fmt::Debug for SemanticCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemanticCore")
            .field("windows", &self.windows)
            .finish()
    }
}

/// A marker to write (at the core's current time), and the loss to write with it when
/// a partial could not be handed over.
pub(crate) type Closed = (Marker, Option<Loss>);

impl SemanticCore {
    /// The core side; `mono_to_wall_ns` must be the offset its writer records, so that
    /// offline windows are the same.
    pub(crate) fn new(
        settings: WindowSettings,
        mono_to_wall_ns: i64,
        queue: rtrb::Producer<Box<Partial>>,
        shared: Arc<CoreWindowsShared>,
        stream_id: u32,
    ) -> SemanticCore {
        SemanticCore {
            windows: Windows::new(
                settings.window_ns,
                settings.top_n as usize,
                settings.notable_bytes,
            ),
            settings,
            mono_to_wall_ns,
            queue,
            shared,
            stream_id,
        }
    }

    fn wall(&self, mono_ns: u64) -> i128 {
        i128::from(mono_ns) + i128::from(self.mono_to_wall_ns)
    }

    fn marker(&self, op: MarkerOp, window: u64) -> Marker {
        let t = &self.settings;
        Marker {
            op,
            delivered: false,
            top_n: t.top_n,
            window,
            window_ns: self.windows.window_ns(),
            records: 0,
            late: 0,
            min_importance: t.min_importance,
            notable_bytes: t.notable_bytes as u64,
            thresholds: t.thresholds,
        }
    }

    /// Opens the windows from the one holding `now_ns`: the start marker to write first.
    pub(crate) fn start(&mut self, now_ns: u64) -> Marker {
        let w = window_of(self.wall(now_ns), self.windows.window_ns());
        self.windows.start(w);
        self.shared.start.store(w, Ordering::Release);
        self.shared.next_open.store(w, Ordering::Release);
        self.marker(MarkerOp::Start, w)
    }

    /// Folds an event the writer accepted; `notable`: its bytes, when it is notable.
    pub(crate) fn event(&mut self, ev: &Event<'_>, weight: u32, notable: Option<&[u8]>) {
        let wall = self.wall(ev.header.ts_ns);
        self.windows.event(ev, weight, wall, notable);
    }

    /// Folds a loss record the writer accepted (stamped with its end).
    pub(crate) fn loss(&mut self, l: &Loss) {
        let wall = self.wall(l.end_ns);
        self.windows.loss(l, wall);
    }

    /// Closes the windows that are due at `now_ns` (all open ones up to the one holding
    /// `now_ns` with `stop`), handing each partial over; what to write for each.
    pub(crate) fn close(&mut self, now_ns: u64, stop: bool, out: &mut Vec<Closed>) {
        let wall = self.wall(now_ns);
        let window_ns = self.windows.window_ns();
        let last = if stop {
            self.windows
                .last_open()
                .map(|l| l.max(window_of(wall, window_ns)))
        } else {
            None
        };
        loop {
            let Some(first) = self.windows.first() else {
                return;
            };
            let due = match last {
                Some(l) => first <= l,
                None => self.windows.due(wall, self.settings.lateness_ns),
            };
            if !due {
                break;
            }
            let Some(p) = self.windows.close_first() else {
                return;
            };
            let mut m = self.marker(MarkerOp::Close, first);
            m.records = p.records;
            m.late = p.late;
            let records = p.records;
            let loss = match self.queue.push(Box::new(p)) {
                Ok(()) => {
                    m.delivered = true;
                    None
                }
                Err(_) => {
                    if let Ok(mut lost) = self.shared.lost.lock() {
                        if lost.len() < LOST_NOTICES_MAX {
                            lost.push((first, records));
                        } else if let Some(l) = lost.last_mut() {
                            l.1 += records;
                        }
                    }
                    Some(Loss {
                        stream: self.stream_id,
                        cpu: u32::MAX,
                        kind: 0,
                        reason: LossReason::SemanticQueueFull as u16,
                        count: records,
                        start_ns: now_ns,
                        end_ns: now_ns,
                    })
                }
            };
            self.shared.next_open.store(first + 1, Ordering::Release);
            out.push((m, loss));
        }
        self.windows.refill();
    }
}
