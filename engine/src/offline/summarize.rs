//! `engine summarize`: the summary stream recomputed from the segments, the same JSON
//! lines the live engine wrote for those records (docs/semantic.md).
//!
//! Each core stream is read on its own, in write order, through the same window state
//! machine the core thread ran: its markers say where each window closed, whether the
//! partial reached the semantic thread, and with which window length and top-N. The
//! windows are then merged and written exactly as the semantic thread does. With a
//! `--window-ms` other than the recorded one, records are regrouped by their time
//! alone (no lateness: the live engine never made those windows).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use storage::{KIND_LOSS, Loss, ReadOptions, Reader, SkipList};

use super::ensure_dir;
use super::time::TimeRange;
use crate::config::{DEFAULT_TOP_N, DEFAULT_WINDOW_MS};
use crate::enrich::enricher::ENRICH_STREAM_ID;
use crate::error::{Error, Result};
use crate::output::json::JsonWriter;
use crate::perf::PERF_STREAM_ID;
use crate::perf::window::PerfFold;
use crate::sampler::{class_of, importance};
use crate::semantic::correlate::{Correlator, Thresholds};
use crate::semantic::marker::{KIND_WINDOW, Marker, MarkerOp, window_of};
use crate::semantic::partial::Partial;
use crate::semantic::summary::Window;
use crate::semantic::tables::{StoredTables, TablesAt};
use crate::semantic::thread::window_end_mono;
use crate::semantic::windows::{Windows, keys_per_partial};

/// What `engine summarize` recomputes.
#[derive(Debug, Clone, Default)]
pub struct SummarizeArgs {
    /// Window length to regroup by; `None`: the recorded windows.
    pub window_ms: Option<u64>,
    /// Windows whose start is in this range.
    pub range: TimeRange,
}

/// Thresholds when no marker says (regrouping a recording made without the semantic
/// path): the config defaults.
const DEFAULT_THRESHOLDS: Thresholds = crate::config::DEFAULT_THRESHOLDS;

/// Keys per top map of a regrouped window (all cores together).
const REGROUP_KEYS_MAX: usize = 1 << 16;

/// Per window: the merged summary being built.
type Merged = BTreeMap<u64, Window>;

/// One stream, read in write order through its markers.
struct StreamFold {
    id: u32,
    windows: Option<Windows>,
    /// Events at or above this are notable (from the start marker).
    min_importance: f64,
    /// The first window not closed yet (None before a start marker).
    next_open: Option<u64>,
    start: Option<u64>,
}

/// `engine summarize DIR --publish URL`: the same lines, published to NATS JetStream
/// with the live engine's subjects and message ids (a line the stream has already is
/// dropped by its duplicate window). Waits for every ack; an error when some line
/// could not be published.
pub fn publish(dir: &Path, args: &SummarizeArgs, config: &crate::Config) -> Result<ExitCode> {
    use crate::export::nats::{NatsPublisher, NatsSettings};
    let mut lines = Vec::new();
    summarize(dir, args, &mut lines, &super::progress::Bar::default())?;
    let settings = NatsSettings::load(&config.export.nats)?
        .ok_or_else(|| Error::Invalid("summarize --publish: an empty URL".into()))?;
    let url = settings.url.clone();
    let mut publisher = NatsPublisher::start(settings, PUBLISH_DRAIN)?;
    let total = lines.split_inclusive(|&b| b == b'\n').count() as u64;
    let mut n = 0u64;
    for line in lines.split_inclusive(|&b| b == b'\n') {
        if !publisher.send(line) {
            break;
        }
        n += 1;
    }
    publisher.finish();
    let s = &publisher.stats;
    // Lines the publisher never took (it stopped: refused credentials) count too.
    s.dropped
        .fetch_add(total - n, std::sync::atomic::Ordering::Relaxed);
    let dropped = s.dropped.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "engine: summarize: {total} lines to {url}; {}",
        s.describe()
    );
    if dropped > 0 {
        return Err(Error::Invalid(format!(
            "summarize --publish: {dropped} lines were not acknowledged by {url}"
        )));
    }
    Ok(ExitCode::SUCCESS)
}

/// How long `summarize --publish` waits for the server's acks once every line is sent.
const PUBLISH_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// `engine summarize DIR`: the summary lines to `out`, moving `bar` (blocks read).
pub(crate) fn summarize<W: Write>(
    dir: &Path,
    args: &SummarizeArgs,
    out: &mut W,
    bar: &super::progress::Bar,
) -> Result<()> {
    ensure_dir(dir)?;
    let mut skipped = SkipList::default();
    let streams: Vec<u32> = storage::list_streams(dir, &mut skipped)?
        .into_iter()
        .map(|(id, _)| id)
        .filter(|&id| id != ENRICH_STREAM_ID && id != PERF_STREAM_ID)
        .collect();
    let mut merged: Merged = BTreeMap::new();
    let mut host = String::new();
    // Core 0's monotonic-to-wall offset (the first stream's), as the live thread uses.
    let mut core0_offset: Option<i64> = None;
    let mut recorded: Option<(u64, u32)> = None;
    let mut thresholds: Option<Thresholds> = None;
    let mut ready: Option<u64> = None;
    let mut first: Option<u64> = None;
    let regroup_ns = args.window_ms.map(|ms| ms.saturating_mul(1_000_000));
    let mut regrouped: BTreeMap<u64, (Partial, u32)> = BTreeMap::new();
    // Blocks of the streams already read (the bar's position).
    let mut blocks_done = 0u64;
    // The kinds each run did not capture, by the wall start of its first window: a run's
    // `capture.unavailable` record comes before its start marker in stream 0.
    let mut runs: BTreeMap<i128, std::sync::Arc<[String]>> = BTreeMap::new();
    let mut pending_unavailable: Option<Vec<String>> = None;
    for id in streams {
        let opts = ReadOptions {
            streams: Some(vec![id]),
            file_order: true,
            ..ReadOptions::default()
        };
        let mut reader = Reader::open_expecting_abi(dir, &opts, Some(bpf::abi::ABI_VERSION))?;
        let mut s = StreamFold {
            id,
            windows: None,
            min_importance: f64::INFINITY,
            next_open: None,
            start: None,
        };
        let mut seen_in: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
        let progress = reader.progress();
        let mut n = 0u64;
        while let Some(loc) = reader.next_located()? {
            n += 1;
            if n.is_multiple_of(1024) {
                let c = progress.counts();
                bar.set(blocks_done + c.read + c.skipped);
            }
            if host.is_empty()
                && let Ok(seg) = storage::Segment::open(loc.path)
            {
                host = seg.header().host.clone();
            }
            let rec = loc.record;
            core0_offset.get_or_insert(loc.mono_to_wall_ns);
            let wall = i128::from(rec.ts_ns) + i128::from(loc.mono_to_wall_ns);
            if rec.kind == crate::unavailable::KIND_UNAVAILABLE {
                if let Ok(entries) = crate::unavailable::decode(rec.bytes) {
                    pending_unavailable = Some(entries.into_iter().map(|e| e.kind).collect());
                }
                continue;
            }
            if rec.kind == KIND_WINDOW {
                let Some(m) = Marker::decode(rec.bytes) else {
                    continue;
                };
                if id == 0 && m.op == MarkerOp::Start {
                    let start = i128::from(m.window) * i128::from(m.window_ns);
                    runs.insert(start, pending_unavailable.take().unwrap_or_default().into());
                }
                recorded.get_or_insert((m.window_ns, m.top_n));
                thresholds.get_or_insert(m.thresholds);
                if regroup_ns.is_some() {
                    continue;
                }
                marker(&mut s, &m, &mut merged);
                continue;
            }
            if let Some(ns) = regroup_ns {
                let w = window_of(wall, ns);
                let entry = regrouped
                    .entry(w)
                    .or_insert_with(|| (Partial::growing(w, REGROUP_KEYS_MAX), 0));
                if seen_in.insert(w) {
                    entry.1 += 1;
                }
                fold(&mut entry.0, rec.kind, rec.bytes, rec.weight, false);
                continue;
            }
            if let Some(ws) = &mut s.windows {
                if rec.kind == KIND_LOSS {
                    if let Some(l) = Loss::decode(rec.bytes) {
                        ws.loss(&l, wall);
                    }
                } else if let Ok(ev) = bpf::decode(rec.bytes) {
                    let notable = importance(&ev, class_of(&ev)) >= s.min_importance;
                    ws.event(&ev, rec.weight, wall, notable.then_some(rec.bytes));
                }
            }
        }
        let c = progress.counts();
        blocks_done += c.read + c.skipped;
        bar.set(blocks_done);
        if let (Some(st), Some(next)) = (s.start, s.next_open) {
            first = Some(first.map_or(st, |f| f.min(st)));
            ready = Some(ready.map_or(next, |r| r.min(next)));
        }
    }
    let mut json = JsonWriter::default();
    let mut tables = StoredTables::open(dir)?;
    let mut correlator = Correlator::new(thresholds.unwrap_or(DEFAULT_THRESHOLDS));
    let in_range = |w: u64, ns: u64| {
        let start = i128::from(w) * i128::from(ns);
        args.range.from_unix_ns.is_none_or(|f| start >= f)
            && args.range.to_unix_ns.is_none_or(|t| start < t)
    };
    // The perf category's interval records, folded into the windows their ends fall in,
    // as the live aggregator did.
    let window_ns = regroup_ns.or(recorded.map(|r| r.0)).unwrap_or(1);
    let top_n = recorded.map_or(DEFAULT_TOP_N, |(_, t)| t as usize);
    let mut perf = PerfFold::new(window_ns, keys_per_partial(top_n));
    if storage::stream_dir(dir, PERF_STREAM_ID).is_dir() {
        let opts = ReadOptions {
            streams: Some(vec![PERF_STREAM_ID]),
            file_order: true,
            ..ReadOptions::default()
        };
        let mut reader = Reader::open_expecting_abi(dir, &opts, Some(bpf::abi::ABI_VERSION))?;
        while let Some(loc) = reader.next_located()? {
            let r = loc.record;
            perf.record(r.ts_ns, loc.mono_to_wall_ns, r.kind, r.bytes);
        }
    }
    if let Some(ns) = regroup_ns {
        for (w, (p, cores)) in regrouped {
            if !in_range(w, ns) {
                continue;
            }
            let mut win = Window::new(w, ns, top_n);
            win.unavailable = unavailable_at(&runs, w, ns);
            win.merged = p;
            win.cores = cores;
            win.perf = perf.open.remove(&w).map(Box::new);
            let end = window_end_mono(w, ns, core0_offset.unwrap_or(0));
            win.write_json(&host, &mut json, tables.as_mut().map(|t| t.at(end)));
            out.write_all(json.bytes())?;
        }
    } else {
        let Some((window_ns, _)) = recorded else {
            return Err(Error::Invalid(format!(
                "{}: no window markers (the semantic path was off when it was recorded); \
                 `engine summarize --window-ms {DEFAULT_WINDOW_MS} {}` regroups the events by time",
                dir.display(),
                dir.display()
            )));
        };
        // As live: the windows every core had closed, from the first core's start.
        if let (Some(first), Some(ready)) = (first, ready) {
            for w in first..ready {
                let mut win = merged
                    .remove(&w)
                    .unwrap_or_else(|| Window::new(w, window_ns, top_n));
                win.perf = perf.open.remove(&w).map(Box::new);
                win.unavailable = unavailable_at(&runs, w, window_ns);
                let end = window_end_mono(w, window_ns, core0_offset.unwrap_or(0));
                if in_range(w, window_ns) {
                    let mut lines = Vec::new();
                    win.write_lines(
                        &host,
                        &mut json,
                        tables.as_mut().map(|t| t as &mut dyn TablesAt),
                        &mut correlator,
                        end,
                        |l| lines.push(l.to_vec()),
                    );
                    for l in lines {
                        out.write_all(&l)?;
                    }
                } else if let Some(t) = &mut tables {
                    t.at(end);
                }
            }
        }
    }
    out.flush()?;
    bar.finish();
    Ok(())
}

/// The kinds not captured in window `w` (of `ns`): those of the run in force at its start.
fn unavailable_at(
    runs: &BTreeMap<i128, std::sync::Arc<[String]>>,
    w: u64,
    ns: u64,
) -> std::sync::Arc<[String]> {
    let start = i128::from(w) * i128::from(ns);
    runs.range(..=start)
        .next_back()
        .map_or_else(|| std::sync::Arc::from([]), |(_, k)| k.clone())
}

/// Applies a marker to a stream's fold.
fn marker(s: &mut StreamFold, m: &Marker, merged: &mut Merged) {
    match m.op {
        MarkerOp::Start => {
            // A new run: what an earlier one left open was never handed over.
            let mut ws = Windows::new(m.window_ns, m.top_n as usize, m.notable_bytes as usize);
            ws.start(m.window);
            s.windows = Some(ws);
            s.min_importance = m.min_importance;
            s.start = Some(s.start.map_or(m.window, |st| st.min(m.window)));
            s.next_open = Some(m.window);
        }
        MarkerOp::Close => {
            let Some(ws) = &mut s.windows else {
                return;
            };
            // Windows before the marked one closed without a marker (cannot happen
            // from one engine; a torn stream): not handed over.
            while ws.first().is_some_and(|f| f < m.window) {
                ws.close_first();
            }
            if ws.first() != Some(m.window) {
                return;
            }
            let Some(p) = ws.close_first() else {
                return;
            };
            s.next_open = Some(m.window + 1);
            let win = merged
                .entry(m.window)
                .or_insert_with(|| Window::new(m.window, m.window_ns, m.top_n as usize));
            if m.delivered {
                win.add(s.id, &p);
            } else {
                win.lost(m.records);
            }
        }
    }
}

/// Folds a record into a regrouped window.
fn fold(p: &mut Partial, kind: u16, bytes: &[u8], weight: u32, late: bool) {
    if kind == KIND_LOSS {
        if let Some(l) = Loss::decode(bytes) {
            p.loss(&l, late);
        }
    } else if let Ok(ev) = bpf::decode(bytes) {
        p.event(&ev, weight, late);
    }
}
