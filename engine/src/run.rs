//! The main job: kernel capture -> core threads -> segments, with the control thread
//! reading kernel drop counters into in-band loss records, printing status, and at the
//! stop proving the accounting identity.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bpf::abi::{KIND_MAX, KindCounters, RATE_SLOT_PAGE_FAULT, RATE_SLOTS};
use bpf::{CaptureConfig, Category, Collector, IdFilter, Kind, SyscallSet};
use storage::{Durability, Loss, LossReason, StreamWriter, WriterConfig};

use crate::config::{Config, DurabilityMode, Override};
use crate::core::{CONTROL_QUEUE_CAPACITY, Core, CoreMsg, CoreReport, CoreShared};
use crate::enrich::enricher::{ENRICH_STREAM_ID, EnrichReport, EnrichShared, Enricher};
use crate::enrich::tap::tap;
use crate::enrich::tracker::{Sources, Tracker};
use crate::error::{Error, Result};
use crate::export::Sink;
use crate::export::grpc::{GrpcServer, GrpcSettings};
use crate::export::hub::Hub;
use crate::export::jsonl::JsonlSink;
use crate::export::lines::HubSink;
use crate::export::metrics::MetricsServer;
use crate::export::nats::{NatsPublisher, NatsSettings, NatsSink};
use crate::export::raw::{CoreExport, RawExport};
use crate::filter::{Filter, kind_mask};
use crate::lock::DataDirLock;
use crate::perf::{PERF_STREAM_ID, PerfAggregator};
use crate::pipeline::{ExportDrops, ExportTap, Pipeline, PipelineStats, monotonic_ns};
use crate::sampler::{Class, Sampler};
use crate::semantic::core::{CoreWindowsShared, SemanticCore};
use crate::semantic::tables::FedTables;
use crate::semantic::thread::{CoreInput, SemanticReport, SemanticThread};
use crate::signals;
use crate::telemetry::Telemetry;

/// Bytes of the queue of enrichment records to the semantic thread (the enrichment
/// thread waits when it is full: the semantic thread must see every one).
const ENRICH_FEED_BYTES: usize = 16 << 20;
/// Bytes a fed record takes besides its own: the queue's length, its time and kind.
const FEED_RECORD_HEAD: usize = 4 + 8 + 2;

/// How often the control thread reads the kernel's counters into loss records.
const LOSS_INTERVAL: Duration = Duration::from_secs(1);

/// The kernel capture settings a config asks for; kinds, pids and cgroups that the
/// kernel can filter are pushed into it.
/// Names on stderr each configured kind this kernel does not give, and why; with
/// `capture.require = "all"`, refuses to start when there is one.
pub(crate) fn check_required(
    report: &bpf::CaptureReport,
    require: crate::config::Require,
) -> Result<()> {
    for u in &report.unavailable {
        eprintln!(
            "engine: not capturing {} ({}): {}",
            u.kind,
            u.reason.name(),
            u.detail.replace('\n', "; ")
        );
    }
    if require == crate::config::Require::All && !report.unavailable.is_empty() {
        return Err(Error::Invalid(format!(
            "capture.require = \"all\": this kernel does not give {} (see above; \
             `engine doctor` tells what it offers, capture.require = \"any\" starts without them)",
            report
                .unavailable
                .iter()
                .map(|u| u.kind)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}

/// `; not captured: kind (reason), ...` for the start line; empty when all is captured.
fn not_captured_line(report: &bpf::CaptureReport) -> String {
    if report.unavailable.is_empty() {
        return String::new();
    }
    let kinds: Vec<String> = report
        .unavailable
        .iter()
        .map(|u| format!("{} ({})", u.kind, u.reason.name()))
        .collect();
    format!("; not captured: {}", kinds.join(", "))
}

pub fn capture_config(c: &Config) -> CaptureConfig {
    let mask = kind_mask(&c.filter);
    let categories: BTreeSet<Category> = c
        .capture
        .categories
        .iter()
        .filter_map(|n| Category::from_name(n))
        // A category none of whose kinds is kept is not attached at all, except the
        // lifecycle categories enrichment feeds on (their events are then filtered out
        // of the raw path in user space, after the enrichment thread has its copy).
        .filter(|cat| {
            (c.enrich.enabled && matches!(cat, Category::Process | Category::Container))
                || Kind::ALL
                    .iter()
                    .any(|k| k.category() == *cat && mask & (1u128 << (*k as u16)) != 0)
        })
        .collect();
    let mut rate = [0u64; RATE_SLOTS];
    let mut burst = [0u64; RATE_SLOTS];
    let ring_bytes = c
        .capture
        .ring_bytes_per_cpu(crate::config::online_cpus().len());
    let r = &c.capture.rate_limit;
    for (cat, v) in [
        (Category::Process, r.process),
        (Category::File, r.file),
        (Category::Net, r.net),
        (Category::Security, r.security),
        (Category::Container, r.container),
        (Category::Memory, r.memory),
        (Category::Syscall, r.syscall),
        (Category::Perf, r.perf),
    ] {
        rate[cat as usize] = v;
    }
    rate[RATE_SLOT_PAGE_FAULT] = r.page_fault.unwrap_or(bpf::DEFAULT_PAGE_FAULT_RATE);
    for i in 0..RATE_SLOTS {
        burst[i] = rate[i].max(1);
    }
    CaptureConfig {
        categories,
        ring_bytes,
        wakeup_bytes: c.capture.wakeup_bytes_for(ring_bytes),
        syscall_events: c.capture.syscall_events,
        tgid_filter: if !c.filter.pids.is_empty() {
            IdFilter::Include(c.filter.pids.clone())
        } else if !c.filter.exclude_pids.is_empty() {
            IdFilter::Exclude(c.filter.exclude_pids.clone())
        } else {
            IdFilter::Off
        },
        cgroup_filter: if c.filter.cgroups.is_empty() {
            IdFilter::Off
        } else {
            IdFilter::Include(c.filter.cgroups.clone())
        },
        follow_children: c.capture.follow_children,
        syscall_enter_only: !c.capture.syscall_results,
        syscalls: if c.capture.syscalls_all {
            SyscallSet::All
        } else {
            SyscallSet::Ids(c.capture.syscalls.clone())
        },
        rate_per_sec: rate,
        burst,
        tgid_filter_max: bpf::DEFAULT_TGID_FILTER_MAX.max(c.filter.pids.len() as u32 * 2),
        cgroup_filter_max: bpf::DEFAULT_CGROUP_FILTER_MAX.max(c.filter.cgroups.len() as u32),
        runq_slow_ns: c.perf.runq_slow_us.saturating_mul(1000),
        io_slow_ns: c.perf.io_slow_us.saturating_mul(1000),
        runq_cgroups_max: c.perf.cgroups_max,
        flows_max: c.perf.flows_max,
        tasks_max: c.perf.tasks_max,
        perf_signals: bpf::PerfSignals {
            sched: c.perf.signals.iter().any(|s| s == "sched"),
            block: c.perf.signals.iter().any(|s| s == "block"),
            net: c.perf.signals.iter().any(|s| s == "net"),
        },
        deny_hooks: c.capture.deny_hooks.clone(),
    }
}

/// The writer settings of stream `id`.
pub fn writer_config(c: &Config, id: u32, streams: u32) -> WriterConfig {
    let s = &c.storage;
    let mut w = WriterConfig::new(&s.data_dir, id);
    w.abi_version = bpf::abi::ABI_VERSION;
    w.block_bytes = s.block_bytes;
    w.zstd_level = s.zstd_level;
    w.segment_bytes_max = s.segment_bytes_max;
    w.segment_age_max = Duration::from_millis(s.segment_age_ms);
    w.durability = match s.durability {
        DurabilityMode::None => Durability::None,
        DurabilityMode::OnSeal => Durability::OnSeal,
        DurabilityMode::Interval => Durability::IntervalMs(s.durability_interval_ms),
    };
    w.retention_bytes_max = s.retention_bytes_max / streams.max(1) as u64;
    w.retention_age_max = (s.retention_age_s > 0).then(|| Duration::from_secs(s.retention_age_s));
    w.io = s.io.backend();
    w
}

/// Makes sure the data directory exists, as configured.
pub fn prepare_data_dir(c: &Config) -> Result<()> {
    let dir = &c.storage.data_dir;
    let err = |why: &str, source| Error::DataDir {
        dir: dir.clone(),
        why: why.to_string(),
        source,
    };
    if dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        return Err(err("exists but is not a directory", None));
    }
    if !c.storage.create_data_dir {
        return Err(err(
            "no such directory (create it, or set storage.create_data_dir = true)",
            None,
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| err("cannot create it", Some(e)))
}

/// Everything the run counted, for the final report and for tests.
#[derive(Debug)]
pub struct Summary {
    pub kernel: Vec<KindCounters>,
    pub user: PipelineStats,
    pub cores: Vec<CoreReport>,
    /// The enrichment thread's report, when enrichment is on.
    pub enrich: Option<EnrichReport>,
    /// The semantic thread's report, when the semantic path is on.
    pub semantic: Option<SemanticReport>,
    /// The perf aggregator's report, when the perf category is on.
    pub perf: Option<crate::perf::PerfReport>,
    pub elapsed: Duration,
}

impl Summary {
    /// `(hooks, accounted)`: what the kernel hooks saw, and written + filtered + sampled
    /// out (by the kernel or the engine) + dropped by every reason. Equal when nothing went unaccounted.
    pub fn identity(&self) -> (u64, u64) {
        let (mut hooks, mut accounted) = (0u64, 0u64);
        for k in 0..KIND_MAX {
            let kc = &self.kernel[k];
            let u = &self.user;
            hooks += kc.produced + kc.filtered + kc.rate_limited + kc.sampled;
            accounted += u.written[k]
                + kc.filtered
                + u.filtered[k]
                + kc.sampled
                + u.sampled_out[k]
                + kc.ring_full
                + kc.rate_limited
                + u.storage_dropped[k];
        }
        // Undecodable records are counted by no kind.
        accounted += self.user.undecodable;
        (hooks, accounted)
    }

    /// Writes the per-kind table and the identity.
    pub fn write_report(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{:<24} {:>11} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "kind",
            "produced",
            "written",
            "filtered",
            "sampled",
            "ring_full",
            "rate_lim",
            "storage"
        )?;
        let sum = |f: &dyn Fn(usize) -> u64| (0..KIND_MAX).map(f).sum::<u64>();
        for &kind in Kind::ALL {
            let k = kind as usize;
            let kc = &self.kernel[k];
            let u = &self.user;
            let produced = kc.produced + kc.filtered + kc.rate_limited + kc.sampled;
            if produced == 0 {
                continue;
            }
            writeln!(
                out,
                "{:<24} {:>11} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10}",
                kind.name(),
                produced,
                u.written[k],
                kc.filtered + u.filtered[k],
                kc.sampled + u.sampled_out[k],
                kc.ring_full,
                kc.rate_limited,
                u.storage_dropped[k]
            )?;
        }
        let (hooks, accounted) = self.identity();
        let written = sum(&|k| self.user.written[k]);
        let filtered = sum(&|k| self.kernel[k].filtered + self.user.filtered[k]);
        let sampled_kernel = sum(&|k| self.kernel[k].sampled);
        let sampled_engine = sum(&|k| self.user.sampled_out[k]);
        let sampled = sampled_kernel + sampled_engine;
        let ring_full = sum(&|k| self.kernel[k].ring_full);
        let rate_limited = sum(&|k| self.kernel[k].rate_limited);
        let storage = sum(&|k| self.user.storage_dropped[k]);
        writeln!(
            out,
            "accounting: produced {hooks} = written {written} + filtered {filtered} + sampled out {sampled} (kernel {sampled_kernel}, engine {sampled_engine}) + dropped {} (ring_full {ring_full}, rate_limited {rate_limited}, undecodable {}, storage {storage}) {}",
            ring_full + rate_limited + self.user.undecodable + storage,
            self.user.undecodable,
            if hooks == accounted {
                "[holds]".to_string()
            } else {
                format!(
                    "[MISMATCH: {} unaccounted]",
                    hooks as i128 - accounted as i128
                )
            }
        )?;
        if self.user.loss_records_lost > 0 {
            writeln!(
                out,
                "loss records lost with blocks storage failed to write: {} (their counts are in the table)",
                self.user.loss_records_lost
            )?;
        }
        writeln!(
            out,
            "loss records written: {}, notable events: {}, elapsed {:.1}s",
            self.user.loss_records,
            self.user.notable,
            self.elapsed.as_secs_f64()
        )?;
        let w = self
            .cores
            .iter()
            .fold(storage::WriterStats::default(), |mut a, c| {
                a.records += c.writer.records;
                a.records_on_disk += c.writer.records_on_disk;
                a.records_lost += c.writer.records_lost;
                a.segments_sealed += c.writer.segments_sealed;
                a.segments_deleted += c.writer.segments_deleted;
                a.bytes_written += c.writer.bytes_written;
                a
            });
        writeln!(
            out,
            "storage: {} records on disk (events and loss records), {} lost with failed writes; {} bytes in {} segments sealed, {} deleted by retention",
            w.records_on_disk,
            w.records_lost,
            w.bytes_written,
            w.segments_sealed,
            w.segments_deleted
        )?;
        for c in &self.cores {
            if let Some(e) = &c.storage_error {
                writeln!(out, "core {}: storage failed: {e}", c.id)?;
            }
        }
        if let Some(p) = &self.perf {
            writeln!(out, "{p}")?;
        }
        if let Some(e) = &self.enrich {
            let dropped = self.user.enrich_dropped;
            writeln!(
                out,
                "enrichment: {} lifecycle events applied; tables at the stop: {} processes (bound enrich.processes_max = {}), {} cgroups (bound enrich.cgroups_max = {}); evicted {} processes, {} cgroups; {} looked up in /proc; {} records on disk ({} snapshots), {} lost; {} copies dropped (enrich_queue_full)",
                e.applied,
                e.processes,
                e.processes_max,
                e.cgroups,
                e.cgroups_max,
                e.tracker.processes_evicted,
                e.tracker.cgroups_evicted,
                e.tracker.proc_lookups,
                e.records,
                e.snapshots,
                e.records_lost,
                dropped
            )?;
            if let Some(err) = &e.storage_error {
                writeln!(out, "enrichment stream: storage failed: {err}")?;
            }
        }
        if let Some(s) = &self.semantic {
            writeln!(
                out,
                "semantic: {} windows summarized, {} lines to sinks{}; {} window markers written, {} lost",
                s.windows,
                s.lines,
                match &s.sink_error {
                    Some(e) => format!(" (a sink failed: {e}; {} lines dropped)", s.lines_dropped),
                    None => String::new(),
                },
                self.user.window_markers,
                self.user.window_markers_lost
            )?;
        }
        Ok(())
    }
}

/// Per-CPU kernel counters, `[cpu][kind]`.
type PerCpu = Vec<Vec<KindCounters>>;

fn loss_deltas(
    prev: &PerCpu,
    now: &PerCpu,
    from_ns: u64,
    to_ns: u64,
    mut emit: impl FnMut(usize, Loss),
) {
    for (cpu, kinds) in now.iter().enumerate() {
        for (kind, c) in kinds.iter().enumerate() {
            let p = prev
                .get(cpu)
                .and_then(|v| v.get(kind))
                .copied()
                .unwrap_or_default();
            for (reason, d) in [
                (
                    LossReason::KernelRingFull,
                    c.ring_full.saturating_sub(p.ring_full),
                ),
                (
                    LossReason::KernelRateLimited,
                    c.rate_limited.saturating_sub(p.rate_limited),
                ),
            ] {
                if d > 0 {
                    emit(
                        cpu,
                        Loss {
                            stream: 0,
                            cpu: cpu as u32,
                            kind: kind as u16,
                            reason: reason as u16,
                            count: d,
                            start_ns: from_ns,
                            end_ns: to_ns,
                        },
                    );
                }
            }
        }
    }
}

/// Sets the core threads' stop flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Loss reports on their way from the control thread to the core threads. A full core
/// queue never loses one: it waits here, merged with others of the same CPU, kind and
/// reason (so this holds at most CPUs x kinds x reasons entries), and is retried.
struct LossOutbox {
    controls: Vec<rtrb::Producer<CoreMsg>>,
    /// Which core thread owns each CPU's ring.
    ring_owner: Vec<usize>,
    /// Per core: reports that found its queue full.
    pending: Vec<Vec<Loss>>,
}

impl LossOutbox {
    fn new(controls: Vec<rtrb::Producer<CoreMsg>>, ring_owner: Vec<usize>) -> LossOutbox {
        let pending = controls.iter().map(|_| Vec::new()).collect();
        LossOutbox {
            controls,
            ring_owner,
            pending,
        }
    }

    /// Queues `loss` (of `cpu`'s ring) to the core thread owning that ring.
    fn send(&mut self, cpu: usize, loss: Loss) {
        let core = self.ring_owner.get(cpu).copied().unwrap_or(0);
        let loss = Loss {
            stream: core as u32,
            ..loss
        };
        // Older reports first, so a stream's loss records stay in time order.
        if !self.pending[core].is_empty() || self.controls[core].push(CoreMsg::Loss(loss)).is_err()
        {
            Self::park(&mut self.pending[core], loss);
        }
    }

    fn park(pending: &mut Vec<Loss>, loss: Loss) {
        match pending
            .iter_mut()
            .find(|p| p.cpu == loss.cpu && p.kind == loss.kind && p.reason == loss.reason)
        {
            Some(p) => {
                p.count = p.count.saturating_add(loss.count);
                p.start_ns = p.start_ns.min(loss.start_ns);
                p.end_ns = p.end_ns.max(loss.end_ns);
            }
            None => pending.push(loss),
        }
    }

    /// Tries to queue every parked report; true when none is left.
    fn retry(&mut self) -> bool {
        for (core, pending) in self.pending.iter_mut().enumerate() {
            while let Some(&loss) = pending.first() {
                if self.controls[core].push(CoreMsg::Loss(loss)).is_err() {
                    break;
                }
                pending.remove(0);
            }
        }
        self.pending() == 0
    }

    /// Reports still parked.
    fn pending(&self) -> usize {
        self.pending.iter().map(Vec::len).sum()
    }

    /// Sends `msg` to every core thread (a full queue is retried until it takes it:
    /// these are rare operator requests).
    fn broadcast(&mut self, msg: CoreMsg) {
        for (core, c) in self.controls.iter_mut().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(1);
            let mut sent = c.push(msg).is_ok();
            while !sent && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
                sent = c.push(msg).is_ok();
            }
            if !sent {
                eprintln!(
                    "engine: core {core} did not take {msg:?} within 1 s (its queue stayed full); send it again"
                );
            }
        }
    }
}

/// Runs the engine until `duration` passes or SIGINT/SIGTERM/SIGQUIT; returns what it
/// counted. Takes the data directory's lock for its whole life: a second engine on the
/// same directory is refused.
pub fn run(config: &Config, duration: Option<Duration>, status: bool) -> Result<Summary> {
    signals::install_main_job();
    run_with(config, duration, status, None)
}

/// How long the stop waits for the NATS server to acknowledge what is queued.
const NATS_DRAIN: Duration = Duration::from_secs(10);

/// What a program embedding the engine ([`crate::Collector`]) shares with its main job:
/// the subscribers, and the flags to stop it and to say it has started.
#[derive(Debug, Default)]
pub(crate) struct Embed {
    pub hub: Arc<Hub>,
    pub stop: AtomicBool,
    pub started: AtomicBool,
}

/// [`run`] without installing signal handlers, stopped by `embed.stop` as well.
pub(crate) fn run_with(
    config: &Config,
    duration: Option<Duration>,
    status: bool,
    embed: Option<&Embed>,
) -> Result<Summary> {
    // Before anything is touched: a missing capability is named, not met as an EPERM.
    crate::caps::check(config)?;
    prepare_data_dir(config)?;
    let _lock = DataDirLock::acquire(&config.storage.data_dir)?;
    let capture = capture_config(config);
    if capture.categories.is_empty() {
        return Err(Error::Invalid(
            "filter.kinds keeps no kind of the enabled capture.categories: nothing to capture"
                .into(),
        ));
    }
    let cpus = config.core_cpus();
    let n = cpus.len();
    let enrich = config.enrich.enabled;
    // The export API: its settings are read (token, TLS files) before anything starts.
    let grpc = GrpcSettings::load(&config.export.grpc)?;
    let hub = embed.map_or_else(|| Arc::new(Hub::default()), |e| e.hub.clone());
    // Raw events, notable events and summaries go to the hub for gRPC clients and for
    // an embedding program's subscribers.
    let exporting = grpc.is_some() || embed.is_some();
    let mut core_exports = Vec::new();
    // Streams sharing the retention budget: one per core, the enrichment stream and the
    // perf aggregates.
    let perf_on = capture.categories.contains(&Category::Perf);
    let streams = n as u32 + u32::from(enrich) + u32::from(perf_on);
    for cat in [Category::Process, Category::Container] {
        if enrich && !capture.categories.contains(&cat) {
            eprintln!(
                "engine: enrichment: capture.categories has no {:?}: the {} table is kept from the start scan only",
                cat.name(),
                if cat == Category::Process {
                    "process"
                } else {
                    "cgroup"
                }
            );
        }
    }
    // Before the capture starts: the start scan is stamped with it, so every captured
    // event sorts after it in replay.
    let start_ns = monotonic_ns();
    // The enrichment's start scan comes before the attach: a process that started before
    // the capture is in the tables even when it exits before the enrichment thread
    // starts (loading the programs can take seconds); those born during the load are
    // looked for again right after it (`Enricher::start`).
    let mut tracker = enrich.then(|| {
        let e = &config.enrich;
        let mut t = Tracker::new(
            e.processes_max,
            e.cgroups_max,
            e.exit_grace_ms.saturating_mul(1_000_000),
            Sources::host(),
        );
        t.scan(start_ns);
        t
    });
    let mut collector =
        Collector::load(&capture).map_err(Error::capture("starting kernel capture"))?;
    let report = collector.report().clone();
    check_required(&report, config.capture.require)?;
    let rings = collector.take_rings();
    // Each CPU's ring goes to the core thread pinned to that CPU, else round robin.
    let mut per_core: Vec<Vec<bpf::CpuRing>> = (0..n).map(|_| Vec::new()).collect();
    let mut ring_owner = vec![
        0usize;
        rings
            .iter()
            .map(|r| r.cpu() as usize + 1)
            .max()
            .unwrap_or(1)
    ];
    for (i, ring) in rings.into_iter().enumerate() {
        let core = cpus
            .iter()
            .position(|&c| c == ring.cpu() as usize)
            .unwrap_or(i % n);
        ring_owner[ring.cpu() as usize] = core;
        per_core[core].push(ring);
    }
    let filter_cfg = &config.filter;
    let mut cores = Vec::with_capacity(n);
    let mut controls = Vec::with_capacity(n);
    let mut shared = Vec::with_capacity(n);
    let mut taps = Vec::with_capacity(n);
    let sem = &config.semantic;
    let mut semantic_inputs = Vec::with_capacity(n);
    let mut host = String::new();
    let mut core0_offset = 0i64;
    for (id, rings) in per_core.into_iter().enumerate() {
        let mut writer =
            StreamWriter::create(writer_config(config, id as u32, streams)).map_err(|source| {
                Error::Storage {
                    what: format!("opening stream {id}"),
                    source: Box::new(source),
                }
            })?;
        for r in writer.recovered() {
            eprintln!("engine: {r}");
        }
        // What this kernel does not give, in-band, before any event: replay and
        // summarize then know "not captured" from "nothing happened".
        if id == 0
            && let Some(bytes) = crate::unavailable::encode(&report)
        {
            writer
                .append(&storage::RecordRef {
                    ts_ns: start_ns,
                    kind: crate::unavailable::KIND_UNAVAILABLE,
                    weight: 1,
                    bytes: &bytes,
                })
                .map_err(|source| Error::Storage {
                    what: "writing the capture.unavailable record".into(),
                    source: Box::new(source),
                })?;
        }
        let s = &config.sampling;
        let filter = Filter::new(filter_cfg);
        let mut sampler = Sampler::new(
            s.high_per_sec,
            s.normal_per_sec,
            s.bulk_per_sec,
            s.interval_ms,
        );
        let in_kernel = sampler.kernel_kinds(filter.passes_all());
        if s.in_kernel && in_kernel != 0 {
            let table = collector
                .kernel_sampling()
                .map_err(Error::capture("opening the kernel's sampling table"))?;
            sampler.sample_in_kernel(table, rings.iter().map(|r| r.cpu()).collect(), in_kernel);
        }
        let pipeline = Pipeline::new(writer, filter, sampler, config.semantic.min_importance);
        let mut pipeline = pipeline;
        pipeline.set_flush_interval(config.storage.flush_interval_ms);
        pipeline.set_stream_id(id as u32);
        if enrich {
            let (p, c) = tap(config.enrich.queue_bytes);
            pipeline.set_tap(p);
            taps.push(c);
        }
        if host.is_empty() {
            host = pipeline.writer.host().to_string();
            core0_offset = pipeline.writer.mono_to_wall_ns();
        }
        if exporting {
            let (p, c) = tap(config.export.grpc.queue_bytes);
            let dropped = Arc::new(ExportDrops::default());
            pipeline.set_export(ExportTap {
                queue: p,
                wanted: hub.raw_wanted.clone(),
                dropped: dropped.clone(),
            });
            core_exports.push(CoreExport::new(
                c,
                dropped,
                pipeline.writer.mono_to_wall_ns(),
            ));
        }
        if sem.enabled {
            let (p, c) = rtrb::RingBuffer::new(sem.queue_windows);
            let shared = Arc::new(CoreWindowsShared::default());
            let core = SemanticCore::new(
                sem.window_settings(),
                pipeline.writer.mono_to_wall_ns(),
                p,
                shared.clone(),
                id as u32,
            );
            pipeline.set_semantic(core, monotonic_ns());
            semantic_inputs.push(CoreInput::new(c, shared));
        }
        let (producer, consumer) = rtrb::RingBuffer::new(CONTROL_QUEUE_CAPACITY);
        let sh = Arc::new(CoreShared::default());
        controls.push(producer);
        shared.push(sh.clone());
        cores.push(Core {
            id: id as u32,
            cpu: cpus[id],
            rings,
            pipeline,
            control: consumer,
            shared: sh,
            poll_budget_events: config.engine.poll_budget_events,
            poll_timeout: Duration::from_millis(config.engine.poll_timeout_ms),
            publish_every: Duration::from_millis(config.engine.status_interval_ms.clamp(100, 1000)),
        });
    }
    let mut enrich_feed = None;
    let mut export_feed = None;
    let enricher = if enrich {
        let writer = StreamWriter::create(writer_config(config, ENRICH_STREAM_ID, streams))
            .map_err(|source| Error::Storage {
                what: "opening the enrichment stream".into(),
                source: Box::new(source),
            })?;
        for r in writer.recovered() {
            eprintln!("engine: {r}");
        }
        let Some(tracker) = tracker.take() else {
            return Err(Error::Invalid("enrichment: no start scan".into()));
        };
        let mut enricher = Enricher::start(
            tracker,
            writer,
            taps,
            start_ns,
            config.storage.flush_interval_ms,
        );
        enricher.watch_cores(shared.clone());
        let start_log = enricher.take_start_log();
        if sem.enabled {
            // The semantic thread keeps the same tables, from the same records, to
            // enrich notable events as replay would.
            // Room for the whole start scan on top (it is fed before the semantic
            // thread runs, and the enrichment thread would wait on a full queue).
            let scan_bytes: usize = start_log.iter().map(|r| r.2.len() + FEED_RECORD_HEAD).sum();
            let (p, c) = tap(ENRICH_FEED_BYTES + scan_bytes);
            enricher.add_feed(p, &start_log);
            enrich_feed = Some(c);
        }
        if exporting {
            // The export thread keeps its own copy, to enrich raw events.
            let scan_bytes: usize = start_log.iter().map(|r| r.2.len() + FEED_RECORD_HEAD).sum();
            let (p, c) = tap(ENRICH_FEED_BYTES + scan_bytes);
            enricher.add_feed(p, &start_log);
            export_feed = Some(c);
        }
        eprintln!("engine: enrichment: {}", enricher.describe());
        Some(enricher)
    } else {
        None
    };
    let enrich_shared = Arc::new(EnrichShared::default());
    let windows = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut nats_stats = None;
    let mut semantic = if sem.enabled {
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if !sem.jsonl_path.is_empty() {
            let sink = JsonlSink::open(&sem.jsonl_path, sem.jsonl_bytes_max)
                .map_err(Error::io("opening semantic.jsonl_path"))?;
            sinks.push(Box::new(sink));
        }
        if exporting {
            sinks.push(Box::new(HubSink::new(hub.clone())));
        }
        if let Some(n) = NatsSettings::load(&config.export.nats)? {
            eprintln!(
                "engine: nats: publishing the summary stream to {} (stream {}, subjects {}.{}.*)",
                n.url, n.stream, n.subject_prefix, host
            );
            let publisher = NatsPublisher::start(n, NATS_DRAIN)?;
            nats_stats = Some(publisher.stats.clone());
            sinks.push(Box::new(NatsSink::new(publisher)));
        }
        let mut t = SemanticThread::new(
            semantic_inputs,
            sem.window_ms.saturating_mul(1_000_000),
            sem.top_n,
            host.clone(),
            sinks,
            sem.thresholds(),
        );
        t.count_windows(windows.clone());
        t.set_unavailable(
            report
                .unavailable
                .iter()
                .map(|u| u.kind.to_string())
                .collect(),
        );
        if let Some(feed) = enrich_feed.take() {
            t.set_tables(
                Box::new(FedTables::new(feed, enrich_shared.clone())),
                core0_offset,
            );
        }
        Some(t)
    } else {
        None
    };
    let raw_export = exporting.then(|| {
        let tables = export_feed.take().map(|feed| {
            Box::new(FedTables::new(feed, enrich_shared.clone()))
                as Box<dyn crate::semantic::tables::LiveTables>
        });
        RawExport::new(std::mem::take(&mut core_exports), hub.clone(), tables)
    });
    let mut telemetry = Telemetry::new(
        config,
        host.clone(),
        shared.clone(),
        enrich.then(|| enrich_shared.clone()),
        hub.clone(),
        windows.clone(),
    );
    telemetry.nats = nats_stats.clone();
    telemetry.capture = report.clone();
    let telemetry = Arc::new(telemetry);
    let mut perf = if perf_on {
        let writer = StreamWriter::create(writer_config(config, PERF_STREAM_ID, streams)).map_err(
            |source| Error::Storage {
                what: "opening the perf stream".into(),
                source: Box::new(source),
            },
        )?;
        Some(PerfAggregator::start(
            writer,
            &collector,
            config.perf.interval_ms,
            config.perf.top_n,
            monotonic_ns(),
            telemetry.clone(),
        ))
    } else {
        None
    };
    // The perf aggregates of each summary window, folded as they are written.
    if let (Some(p), Some(t)) = (&mut perf, &mut semantic) {
        let shared = Arc::new(crate::perf::window::PerfWindows::default());
        p.summarize(
            sem.window_ms.saturating_mul(1_000_000),
            crate::semantic::windows::keys_per_partial(sem.top_n),
            shared.clone(),
        );
        t.set_perf(shared);
    }
    let metrics_server = if config.export.metrics.listen.is_empty() {
        None
    } else {
        let server = MetricsServer::start(&config.export.metrics.listen, telemetry.clone())?;
        eprintln!("engine: metrics on http://{}/metrics", server.local_addr);
        Some(server)
    };
    let grpc_server = match grpc {
        Some(g) => {
            let server = GrpcServer::start(g, telemetry.clone())?;
            eprintln!("engine: gRPC API on {}", server.local_addr);
            Some(server)
        }
        None => None,
    };
    eprintln!(
        "engine: {} core thread(s) on CPUs {:?}, writing to {}; rings of {} KiB per CPU; attached {}; hooks {}{}",
        n,
        cpus,
        config.storage.data_dir.display(),
        capture.ring_bytes >> 10,
        collector.attached_summary(),
        report.hooks_line(),
        not_captured_line(&report)
    );

    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let status_every = Duration::from_millis(config.engine.status_interval_ms);
    let cores_done = AtomicBool::new(false);
    type Reports = (
        Vec<CoreReport>,
        Option<EnrichReport>,
        Option<SemanticReport>,
        Option<crate::perf::PerfReport>,
    );
    let (reports, enrich_report, semantic_report, perf_report) = std::thread::scope(
        |scope| -> Result<Reports> {
            let enrich_handle = match enricher {
                Some(e) => {
                    let (done, sh) = (&cores_done, enrich_shared.clone());
                    Some(
                        std::thread::Builder::new()
                            .name("enrich".into())
                            .spawn_scoped(scope, move || e.run(done, sh))
                            .map_err(Error::io("spawning the enrichment thread"))?,
                    )
                }
                None => None,
            };
            let export_handle = match raw_export {
                Some(x) => {
                    let done = &cores_done;
                    Some(
                        std::thread::Builder::new()
                            .name("export".into())
                            .spawn_scoped(scope, move || x.run(done))
                            .map_err(Error::io("spawning the export thread"))?,
                    )
                }
                None => None,
            };
            let semantic_handle = match semantic {
                Some(t) => {
                    let done = &cores_done;
                    Some(
                        std::thread::Builder::new()
                            .name("semantic".into())
                            .spawn_scoped(scope, move || t.run(done))
                            .map_err(Error::io("spawning the semantic thread"))?,
                    )
                }
                None => None,
            };
            // However this closure ends, the enrichment and semantic threads are told the
            // cores are done.
            let _enrich_done = StopOnDrop(&cores_done);
            let handles: Vec<_> = cores
                .into_iter()
                .map(|core| {
                    let stop = &stop;
                    std::thread::Builder::new()
                        .name(format!("core-{}", core.id))
                        .spawn_scoped(scope, move || core.run(stop))
                })
                .collect::<Result<_, _>>()
                .map_err(Error::io("spawning core threads"))?;
            // Whatever ends this closure (an error, a panic), the core threads are told to
            // stop, so the scope can join them.
            let _stop_cores = StopOnDrop(&stop);

            if let Some(e) = embed {
                e.started.store(true, Ordering::Release);
            }
            let mut outbox = LossOutbox::new(controls, ring_owner);
            let mut nats_reported = 0u64;
            let mut prev: PerCpu = Vec::new();
            let mut prev_ns = monotonic_ns();
            let mut last_loss = Instant::now();
            let mut last_status = Instant::now();
            let mut last_written = vec![0u64; n];
            loop {
                let done = signals::stop_requested()
                    || duration.is_some_and(|d| started.elapsed() >= d)
                    || embed.is_some_and(|e| e.stop.load(Ordering::Acquire));
                if done {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
                if signals::take_reopen() {
                    eprintln!("engine: SIGHUP: sealing the current segment of every stream");
                    outbox.broadcast(CoreMsg::Reopen);
                    enrich_shared.reopen.store(true, Ordering::Release);
                }
                if last_loss.elapsed() >= LOSS_INTERVAL {
                    last_loss = Instant::now();
                    // A failed read is retried next interval (the deltas then cover both);
                    // the final read at the stop must succeed.
                    match collector.counters_per_cpu() {
                        Ok(now) => {
                            telemetry.update(&now);
                            // Summary lines the NATS exporter dropped: in-band too.
                            if let Some(n) = &nats_stats {
                                let d = n.dropped.load(Ordering::Relaxed);
                                if d > nats_reported {
                                    let t = monotonic_ns();
                                    outbox.send(
                                        0,
                                        Loss {
                                            stream: 0,
                                            cpu: u32::MAX,
                                            kind: 0,
                                            reason: LossReason::ExportDropped as u16,
                                            count: d - nats_reported,
                                            start_ns: prev_ns,
                                            end_ns: t,
                                        },
                                    );
                                    nats_reported = d;
                                }
                            }
                            let now_ns = monotonic_ns();
                            loss_deltas(&prev, &now, prev_ns, now_ns, |cpu, l| outbox.send(cpu, l));
                            outbox.retry();
                            prev = now;
                            prev_ns = now_ns;
                        }
                        Err(e) => eprintln!("engine: reading kernel counters: {e}; retrying"),
                    }
                }
                if let Some(p) = &mut perf {
                    p.tick(&collector, monotonic_ns());
                }
                let asked = signals::take_status();
                if asked
                    || (status && !status_every.is_zero() && last_status.elapsed() >= status_every)
                {
                    let secs = last_status.elapsed().as_secs_f64();
                    print_status(
                        &shared,
                        enrich.then_some(&*enrich_shared),
                        &prev,
                        &mut last_written,
                        secs,
                    );
                    last_status = Instant::now();
                }
            }
            // Stop producing, let in-flight programs finish, take the final counters, queue
            // the last losses, then let the cores drain their rings to the end and close.
            collector
                .stop()
                .map_err(Error::capture("detaching programs"))?;
            std::thread::sleep(Duration::from_millis(20));
            let now = collector
                .counters_per_cpu()
                .map_err(Error::capture("reading kernel counters"))?;
            loss_deltas(&prev, &now, prev_ns, monotonic_ns(), |cpu, l| {
                outbox.send(cpu, l)
            });
            let perf_report = perf.take().map(|p| p.finish(&collector, monotonic_ns()));
            // The cores are still running and popping: every pending loss gets its place
            // before they are told to stop (nothing is left unwritten for want of room).
            let deadline = Instant::now() + Duration::from_secs(5);
            while !outbox.retry() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if outbox.pending() > 0 {
                eprintln!(
                    "engine: {} loss report(s) could not be written in-band (a core thread stopped taking them); their counts are in the accounting below",
                    outbox.pending()
                );
            }
            stop.store(true, Ordering::Release);
            let mut reports = Vec::with_capacity(n);
            for h in handles {
                reports.push(h.join().map_err(|_| Error::CorePanicked)?);
            }
            // Every lifecycle copy is queued now: the enrichment thread applies the rest,
            // writes it and seals its stream.
            cores_done.store(true, Ordering::Release);
            let enrich_report = match enrich_handle {
                Some(h) => Some(h.join().map_err(|_| Error::CorePanicked)?),
                None => None,
            };
            let semantic_report = match semantic_handle {
                Some(h) => Some(h.join().map_err(|_| Error::CorePanicked)?),
                None => None,
            };
            if let Some(h) = export_handle {
                h.join().map_err(|_| Error::CorePanicked)?;
            }
            Ok((reports, enrich_report, semantic_report, perf_report))
        },
    )?;
    if let Some(m) = metrics_server {
        m.stop();
    }
    if let Some(server) = grpc_server {
        // The clients get what was queued for them (the last windows) before it stops.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline
            && hub.clients().iter().any(|c| {
                c.queue
                    .lock()
                    .is_ok_and(|q| !q.items.is_empty() && q.credits > 0 && !q.paused)
            })
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        server.stop();
    }
    if let Some(n) = &nats_stats {
        eprintln!("engine: {}", n.describe());
    }
    let kernel = collector
        .counters()
        .map_err(Error::capture("reading kernel counters"))?;
    let mut user = PipelineStats::default();
    for r in &reports {
        user.add(&r.stats);
    }
    Ok(Summary {
        kernel,
        user,
        cores: reports,
        enrich: enrich_report,
        semantic: semantic_report,
        perf: perf_report,
        elapsed: started.elapsed(),
    })
}

fn print_status(
    shared: &[Arc<CoreShared>],
    enrich: Option<&EnrichShared>,
    kernel: &PerCpu,
    last_written: &mut [u64],
    secs: f64,
) {
    let per_core: Vec<u64> = shared
        .iter()
        .map(|s| s.written.load(Ordering::Relaxed))
        .collect();
    let written: u64 = per_core.iter().sum();
    let rates: Vec<String> = per_core
        .iter()
        .zip(last_written.iter())
        .enumerate()
        .map(|(i, (now, before))| {
            // On disk only grows, but records lost to a storage failure are taken back.
            format!(
                "core{i} {:.0}",
                now.saturating_sub(*before) as f64 / secs.max(0.001)
            )
        })
        .collect();
    last_written.copy_from_slice(&per_core);
    let delivered: u64 = shared
        .iter()
        .map(|s| s.delivered.load(Ordering::Relaxed))
        .sum();
    let rec: u64 = shared
        .iter()
        .map(|s| s.record_bytes.load(Ordering::Relaxed))
        .sum();
    let file: u64 = shared
        .iter()
        .map(|s| s.file_bytes.load(Ordering::Relaxed))
        .sum();
    let fill = shared
        .iter()
        .map(|s| s.ring_fill_permille.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let ring_full: u64 = kernel.iter().flatten().map(|c| c.ring_full).sum();
    let rate_limited: u64 = kernel.iter().flatten().map(|c| c.rate_limited).sum();
    let mut line = format!(
        "engine: written/s {}; total read {delivered}, written {written}; ring fill max {:.1}%, ratio {:.1}x; dropped ring_full {ring_full}, rate_limited {rate_limited}",
        rates.join(", "),
        fill as f64 / 10.0,
        if file > 0 {
            rec as f64 / file as f64
        } else {
            0.0
        },
    );
    let sampling: Vec<String> = shared
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let r = *s.sampling.lock().ok()?;
            r.iter().any(|&n| n > 1).then(|| {
                format!(
                    "core{i} high 1/{} normal 1/{} bulk 1/{}",
                    r[Class::High as usize],
                    r[Class::Normal as usize],
                    r[Class::Bulk as usize]
                )
            })
        })
        .collect();
    if !sampling.is_empty() {
        line.push_str(&format!("; sampling {}", sampling.join(", ")));
    }
    // Latencies merged over every core thread.
    let mut merged: Option<crate::pipeline::Latencies> = None;
    for s in shared {
        if let Ok(l) = s.latencies.lock()
            && let Some(l) = l.as_ref()
        {
            match &mut merged {
                None => merged = Some(l.clone()),
                Some(m) => {
                    let _ = m.block_write.add(&l.block_write);
                    let _ = m.event_age.add(&l.event_age);
                }
            }
        }
    }
    if let Some(l) = merged {
        let q = |h: &hdrhistogram::Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1e6;
        line.push_str(&format!(
            "; block write p50/p99/p999 {:.2}/{:.2}/{:.2} ms, event age p50/p99/p999 {:.2}/{:.2}/{:.2} ms",
            q(&l.block_write, 0.5),
            q(&l.block_write, 0.99),
            q(&l.block_write, 0.999),
            q(&l.event_age, 0.5),
            q(&l.event_age, 0.99),
            q(&l.event_age, 0.999),
        ));
    }
    if let Some(e) = enrich {
        line.push_str(&format!(
            "; enrich {} processes, {} cgroups, {} evicted",
            e.processes.load(Ordering::Relaxed),
            e.cgroups.load(Ordering::Relaxed),
            e.evicted.load(Ordering::Relaxed)
        ));
        if let Ok(err) = e.error.lock()
            && let Some(err) = err.as_ref()
        {
            line.push_str(&format!("; ENRICHMENT STREAM STOPPED ({err})"));
        }
    }
    for (i, s) in shared.iter().enumerate() {
        if let Ok(e) = s.storage_error.lock()
            && let Some(e) = e.as_ref()
        {
            line.push_str(&format!(
                "; STORAGE STOPPED on core{i} ({e}): its raw path is down, {} kept events dropped so far",
                s.storage_dropped.load(Ordering::Relaxed)
            ));
        }
    }
    eprintln!("{line}");
}

/// The main job as `engine` runs it: the config (a file, or the embedded default), the
/// data directory override, until `duration` or a stop signal; prints the status lines
/// (unless `quiet`) and the final report on stderr. An error when the accounting
/// identity does not hold or storage dropped anything.
pub fn main_job(
    config: Option<&Path>,
    overrides: &[Override],
    data_dir: Option<std::path::PathBuf>,
    duration: Option<Duration>,
    quiet: bool,
) -> Result<()> {
    let mut config = Config::load_with(config, overrides)?;
    if let Some(dir) = data_dir {
        config.storage.data_dir = dir;
        // Again after --data-dir (checked against this machine).
        config.check(Path::new("--data-dir"))?;
    }
    let summary = run(&config, duration, !quiet)?;
    summary.write_report(&mut std::io::stderr())?;
    let (hooks, accounted) = summary.identity();
    if hooks != accounted {
        return Err(Error::Accounting { hooks, accounted });
    }
    if summary.cores.iter().any(|c| c.storage_error.is_some())
        || summary
            .enrich
            .as_ref()
            .is_some_and(|e| e.storage_error.is_some())
    {
        return Err(Error::StorageFailed);
    }
    Ok(())
}

/// `engine validate FILE`: parses and validates, printing every problem.
pub fn validate(path: &Path, overrides: &[Override]) -> Result<()> {
    Config::load_with(Some(path), overrides)?;
    if overrides.is_empty() {
        println!("{}: valid", path.display());
    } else {
        println!(
            "{} with {} override(s): valid",
            path.display(),
            overrides.len()
        );
    }
    Ok(())
}
