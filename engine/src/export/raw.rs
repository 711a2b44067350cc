//! The export thread: takes the events the core threads wrote (copied to it only
//! while a client wants raw events), enriches them from its own copy of the
//! enrichment tables, and offers them to the subscribers. The cores never wait for it:
//! what does not fit a core's queue is counted there and told to the clients.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bpf::abi::{KIND_MAX, str_bytes};
use bpf::{Event, Payload};

use super::hub::{EXPORT_QUEUE_FULL, EventView, Hub};
use super::proto as pb;
use crate::enrich::container::Placement;
use crate::enrich::tables::{Enrichment, Tables};
use crate::enrich::tap::TapConsumer;
use crate::output::json::JsonWriter;
use crate::pipeline::{ExportDrops, monotonic_ns};
use crate::sampler::{class_of, importance};
use crate::semantic::tables::LiveTables;

/// How long an event waits for the enrichment records stamped before it (the
/// enrichment thread holds events 100 ms to order them).
const HOLD: Duration = Duration::from_millis(300);
/// Events held at most (beyond, the oldest go out without waiting).
const HELD_MAX: usize = 65_536;
/// Idle wait between passes.
const IDLE: Duration = Duration::from_millis(5);

/// One core as the export thread sees it.
#[derive(Debug)]
pub(crate) struct CoreExport {
    pub queue: TapConsumer,
    pub dropped: Arc<ExportDrops>,
    /// The core's offset from the monotonic clock to the wall clock.
    pub mono_to_wall_ns: i64,
    reported: [u64; KIND_MAX],
}

impl CoreExport {
    pub(crate) fn new(queue: TapConsumer, dropped: Arc<ExportDrops>, mono_to_wall_ns: i64) -> Self {
        CoreExport {
            queue,
            dropped,
            mono_to_wall_ns,
            reported: [0; KIND_MAX],
        }
    }
}

/// See the module docs.
pub(crate) struct RawExport {
    cores: Vec<CoreExport>,
    hub: Arc<Hub>,
    tables: Option<Box<dyn LiveTables>>,
    /// (kernel ts, core, arrival, weight and record).
    held: VecDeque<(u64, usize, Instant, Vec<u8>)>,
    json: JsonWriter,
    buf: Vec<u8>,
}

impl std::fmt::Debug for RawExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawExport")
            .field("held", &self.held.len())
            .finish()
    }
}

impl RawExport {
    pub(crate) fn new(
        cores: Vec<CoreExport>,
        hub: Arc<Hub>,
        tables: Option<Box<dyn LiveTables>>,
    ) -> RawExport {
        RawExport {
            cores,
            hub,
            tables,
            held: VecDeque::new(),
            json: JsonWriter::default(),
            buf: Vec::new(),
        }
    }

    /// Runs until `done` (the cores have stopped), then sends what is left.
    pub(crate) fn run(mut self, done: &AtomicBool) {
        loop {
            let finished = done.load(Ordering::Acquire);
            let took = self.take();
            self.report_drops();
            self.release(finished);
            if finished {
                break;
            }
            if took == 0 {
                std::thread::sleep(IDLE);
            }
        }
    }

    /// Moves what the cores queued into `held`; how many.
    fn take(&mut self) -> usize {
        let mut n = 0;
        for (i, c) in self.cores.iter_mut().enumerate() {
            while c.queue.pop_into(&mut self.buf) {
                n += 1;
                let ts = self
                    .buf
                    .get(8..16)
                    .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
                self.held
                    .push_back((ts, i, Instant::now(), std::mem::take(&mut self.buf)));
            }
        }
        n
    }

    /// Tells the clients what the cores' queues dropped since the last pass.
    fn report_drops(&mut self) {
        for c in &mut self.cores {
            for (k, reported) in c.reported.iter_mut().enumerate() {
                let now = c.dropped.0[k].load(Ordering::Relaxed);
                if now > *reported {
                    self.hub
                        .dropped(k as u16, EXPORT_QUEUE_FULL, now - *reported, true);
                    *reported = now;
                }
            }
        }
    }

    /// Sends the held events whose enrichment records are in (or that waited long
    /// enough; everything with `all`), in arrival order.
    fn release(&mut self, all: bool) {
        let fed = self.tables.as_ref().map_or(u64::MAX, |t| t.fed_through());
        while let Some((ts, _, at, _)) = self.held.front() {
            let ready = all || fed > *ts || at.elapsed() >= HOLD || self.held.len() > HELD_MAX;
            if !ready {
                break;
            }
            let Some((ts, core, _, bytes)) = self.held.pop_front() else {
                break;
            };
            self.send(ts, core, &bytes);
        }
        // The feed is drained even while nothing is exported.
        if let Some(t) = &mut self.tables
            && self.held.is_empty()
        {
            t.at(fed.min(monotonic_ns()));
        }
    }

    fn send(&mut self, ts: u64, core: usize, bytes: &[u8]) {
        // The weight (8 bytes, so that the record after it stays 8-byte aligned).
        let Some((w, rec)) = bytes.split_at_checked(8) else {
            return;
        };
        let weight = u64::from_le_bytes(w.try_into().expect("8 bytes")) as u32;
        let Ok(ev) = bpf::decode(rec) else {
            return;
        };
        let wall = i128::from(ts) + i128::from(self.cores[core].mono_to_wall_ns);
        let tables: Option<&Tables> = match &mut self.tables {
            Some(t) => Some(t.at(ts)),
            None => None,
        };
        let e = tables.map(|t| t.lookup(ev.header)).unwrap_or_default();
        let (view, event) = event_message(&mut self.json, &ev, weight, wall, &e);
        self.hub.event(&view, &Arc::new(event));
    }
}

/// The export message of an event and what filters look at.
pub(crate) fn event_message<'a>(
    json: &mut JsonWriter,
    ev: &'a Event<'a>,
    weight: u32,
    wall_ns: i128,
    e: &'a Enrichment<'a>,
) -> (EventView<'a>, pb::Event) {
    json.event(ev, weight, wall_ns);
    json.enrichment(ev, e);
    let h = ev.header;
    let exe = match ev.payload {
        Payload::ProcessExec(x) => std::str::from_utf8(str_bytes(&x.exe, x.exe_len)).ok(),
        _ => e.exe,
    };
    let container = e.container.map(|p| match p {
        Placement::Host => "host",
        Placement::Container(c) => c.id.as_ref(),
    });
    let paths = match ev.payload {
        Payload::FileOp(p) => [Some(str_bytes(&p.path, p.path_len)), None],
        Payload::FileRename(p) => [
            Some(str_bytes(&p.old_path, p.old_path_len)),
            Some(str_bytes(&p.new_path, p.new_path_len)),
        ],
        _ => [None, None],
    };
    let imp = importance(ev, class_of(ev));
    let line = json.bytes();
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let msg = pb::Event {
        unix_ns: wall_ns.clamp(0, i128::from(u64::MAX)) as u64,
        kind: ev.kind.name().to_string(),
        cpu: h.cpu,
        pid: h.pid,
        tid: h.tid,
        uid: h.uid,
        gid: h.gid,
        comm: String::from_utf8_lossy(bpf::abi::cstr_bytes(&h.comm)).into_owned(),
        cgroup_id: h.cgroup_id,
        weight,
        exe: exe.unwrap_or_default().to_string(),
        container: container.unwrap_or_default().to_string(),
        importance: imp,
        json: String::from_utf8_lossy(line).into_owned(),
    };
    let view = EventView {
        kind: ev.kind as u16,
        pid: h.pid,
        importance: imp,
        exe,
        container,
        paths,
    };
    (view, msg)
}
