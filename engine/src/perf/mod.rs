//! The `perf` category's interval aggregates: the kernel keeps cumulative histograms
//! (run-queue latency per CPU and per cgroup, block I/O latency per device and operation;
//! bpf/c/perf.bpf.c); every `perf.interval_ms` the control thread reads them, takes the
//! differences with the previous read and writes each non-empty one as a record
//! (`perf.runq_latency`, `perf.io_latency`, `perf.net_traffic`) into its own stream
//! (`stream-1000001`), so that replay shows exactly what was measured, and into the
//! metrics. Flows idle for two intervals are taken out of the kernel's table (with what
//! they counted up to that moment), so that it holds the live ones.

use std::collections::HashMap;
use std::sync::Arc;

use bpf::abi::{COMM_LEN, FlowKey, FlowValue, IoHist, IoKey, RUNQ_SLOTS, RunqHist, TaskSched};
use bpf::{Collector, PerfSnapshot};
use bytemuck::{Pod, Zeroable};
use storage::{RecordRef, StreamWriter};

use crate::telemetry::Telemetry;

pub(crate) mod window;

/// The id of the perf aggregate stream (`stream-1000001`), next to the enrichment stream.
pub(crate) const PERF_STREAM_ID: u32 = 1_000_001;

/// Record kind of a run-queue latency histogram over one interval (`perf.runq_latency`).
/// In the perf decade (70-79), above the kernel's own perf kinds.
pub(crate) const KIND_PERF_RUNQ: u16 = 75;

/// Record kind of a block I/O latency histogram over one interval (`perf.io_latency`).
pub(crate) const KIND_PERF_IO: u16 = 76;

/// Record kind of a flow's traffic over one interval (`perf.net_traffic`).
pub(crate) const KIND_PERF_NET: u16 = 77;

/// Record kind of a process's scheduling over one interval (`perf.task_sched`).
pub(crate) const KIND_PERF_TASK: u16 = 78;

/// A flow (or a process) is taken out of the kernel's table after this many intervals
/// without traffic (or context switches).
const FLOW_IDLE_INTERVALS: u32 = 2;

/// `scope` of a [`RunqRecord`]: one CPU (the one the tasks ran on after waiting).
pub(crate) const SCOPE_CPU: u32 = 0;
/// `scope` of a [`RunqRecord`]: one cgroup (of the waiting tasks).
pub(crate) const SCOPE_CGROUP: u32 = 1;

/// A `perf.runq_latency` record: the waits that ended in `[start_ns, end_ns)` (monotonic),
/// in log2 buckets of microseconds (bucket 0: 0 and 1 us; bucket k: `[2^k, 2^(k+1))` us;
/// the last bucket everything above).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub(crate) struct RunqRecord {
    pub scope: u32,
    pub _pad0: u32,
    /// The CPU number or the cgroup id.
    pub id: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub count: u64,
    pub sum_ns: u64,
    pub slots: [u64; RUNQ_SLOTS],
}

const _: () = assert!(size_of::<RunqRecord>() == 264);

impl RunqRecord {
    /// The record in `bytes`, if it is one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<RunqRecord> {
        let r: RunqRecord = bytemuck::try_pod_read_unaligned(bytes).ok()?;
        (r.scope <= SCOPE_CGROUP && r._pad0 == 0 && r.start_ns <= r.end_ns).then_some(r)
    }

    /// The scope's name as replay shows it.
    pub(crate) fn scope_name(&self) -> &'static str {
        if self.scope == SCOPE_CPU {
            "cpu"
        } else {
            "cgroup"
        }
    }

    /// Lower bound (us) of bucket `i`: 0 for the first, `2^i` for the others.
    pub(crate) fn bucket_low_us(i: usize) -> u64 {
        if i == 0 { 0 } else { 1u64 << i }
    }
}

/// A `perf.io_latency` record: the block requests of one device and operation that
/// completed in `[start_ns, end_ns)` (monotonic), timed from issue to completion, in the
/// same log2 buckets of microseconds as [`RunqRecord`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub(crate) struct IoRecord {
    /// The kernel's dev_t of the disk (`major << 20 | first_minor`).
    pub dev: u32,
    /// `REQ_OP_*` ([`io_op_name`]).
    pub op: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub count: u64,
    pub sum_ns: u64,
    pub bytes: u64,
    pub slots: [u64; RUNQ_SLOTS],
    /// The disk's name, NUL-padded.
    pub disk: [u8; 32],
}

const _: () = assert!(size_of::<IoRecord>() == 296);

impl IoRecord {
    /// The record in `bytes`, if it is one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<IoRecord> {
        let r: IoRecord = bytemuck::try_pod_read_unaligned(bytes).ok()?;
        (r.start_ns <= r.end_ns).then_some(r)
    }

    /// `major:minor`.
    pub(crate) fn device(&self) -> String {
        device_name(self.dev)
    }
}

/// A `perf.net_traffic` record: what one process sent and received on one flow (its
/// socket's protocol, addresses and ports) in `[start_ns, end_ns)` (monotonic), counted
/// from each send's and receive's return value (payload bytes, no headers).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub(crate) struct NetRecord {
    pub flow: FlowKey,
    pub start_ns: u64,
    pub end_ns: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub sends: u64,
    pub receives: u64,
    /// The process's command name when the flow was first seen, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

const _: () = assert!(size_of::<NetRecord>() == 112);

impl NetRecord {
    /// The record in `bytes`, if it is one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<NetRecord> {
        let r: NetRecord = bytemuck::try_pod_read_unaligned(bytes).ok()?;
        (r.start_ns <= r.end_ns && r.flow._pad0 == 0).then_some(r)
    }

    /// `tcp`, `udp`, or the protocol number.
    pub(crate) fn protocol(&self) -> std::borrow::Cow<'static, str> {
        protocol_name(self.flow.protocol)
    }
}

/// A flow's protocol as replay and the summaries name it: `tcp`, `udp`, or `ip<N>`.
pub(crate) fn protocol_name(protocol: u16) -> std::borrow::Cow<'static, str> {
    match protocol {
        6 => "tcp".into(),
        17 => "udp".into(),
        n => format!("ip{n}").into(),
    }
}

/// A disk's `major:minor` from the kernel's dev_t (`major << 20 | minor`).
pub(crate) fn device_name(dev: u32) -> String {
    format!("{}:{}", dev >> 20, dev & 0xfffff)
}

/// A `perf.task_sched` record: a process's context switches and time off a CPU in
/// `[start_ns, end_ns)` (monotonic), one of the interval's top N by off-CPU time or by
/// switches (`perf.top_n`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub(crate) struct TaskRecord {
    pub tgid: u32,
    pub _pad0: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub switches: u64,
    pub involuntary: u64,
    pub offcpu_ns: u64,
    pub runq_ns: u64,
    pub comm: [u8; COMM_LEN],
}

const _: () = assert!(size_of::<TaskRecord>() == 72);

impl TaskRecord {
    /// The record in `bytes`, if it is one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<TaskRecord> {
        let r: TaskRecord = bytemuck::try_pod_read_unaligned(bytes).ok()?;
        (r.start_ns <= r.end_ns && r._pad0 == 0).then_some(r)
    }
}

fn flow_id(k: &FlowKey) -> [u8; 48] {
    let mut id = [0u8; 48];
    id.copy_from_slice(bytemuck::bytes_of(k));
    id
}

/// The name of a block operation (`REQ_OP_*`), `op<N>` for the rarer ones.
pub(crate) fn io_op_name(op: u32) -> std::borrow::Cow<'static, str> {
    match op {
        0 => "read".into(),
        1 => "write".into(),
        2 => "flush".into(),
        3 => "discard".into(),
        5 => "secure_erase".into(),
        9 => "write_zeroes".into(),
        n => format!("op{n}").into(),
    }
}

/// Any of the perf stream's interval records.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Aggregate {
    Runq(RunqRecord),
    Io(IoRecord),
    Net(NetRecord),
    Task(TaskRecord),
}

impl Aggregate {
    /// The kinds and their names.
    pub(crate) const KINDS: [(u16, &'static str); 4] = [
        (KIND_PERF_RUNQ, "perf.runq_latency"),
        (KIND_PERF_IO, "perf.io_latency"),
        (KIND_PERF_NET, "perf.net_traffic"),
        (KIND_PERF_TASK, "perf.task_sched"),
    ];

    /// The kind id of an interval record's name.
    pub(crate) fn kind_of(name: &str) -> Option<u16> {
        Self::KINDS.iter().find(|k| k.1 == name).map(|k| k.0)
    }

    /// The name of an interval record's kind id.
    pub(crate) fn name_of(kind: u16) -> Option<&'static str> {
        Self::KINDS.iter().find(|k| k.0 == kind).map(|k| k.1)
    }

    /// `None` when `kind` is not an interval record's; else the record, or what is wrong
    /// with its bytes.
    pub(crate) fn decode(kind: u16, bytes: &[u8]) -> Option<Result<Aggregate, String>> {
        let name = Self::name_of(kind)?;
        let r = match kind {
            KIND_PERF_RUNQ => RunqRecord::decode(bytes).map(Aggregate::Runq),
            KIND_PERF_IO => IoRecord::decode(bytes).map(Aggregate::Io),
            KIND_PERF_NET => NetRecord::decode(bytes).map(Aggregate::Net),
            _ => TaskRecord::decode(bytes).map(Aggregate::Task),
        };
        Some(r.ok_or_else(|| format!("not a {name} record ({} bytes)", bytes.len())))
    }

    /// The process a record is of (its pid and comm), `None` for the machine's
    /// (histograms): what `--pid`/`--comm` select by.
    pub(crate) fn process(&self) -> Option<(u32, &[u8; COMM_LEN])> {
        match self {
            Aggregate::Net(r) => Some((r.flow.tgid, &r.comm)),
            Aggregate::Task(r) => Some((r.tgid, &r.comm)),
            Aggregate::Runq(_) | Aggregate::Io(_) => None,
        }
    }
}

/// A cumulative kernel value whose first [`Counters::WORDS`] u64 words are counters
/// (the rest, names, are carried along): histograms, flows, processes.
trait Counters: Pod {
    const WORDS: usize;
}

impl Counters for RunqHist {
    const WORDS: usize = RUNQ_SLOTS + 2; // slots, count, sum_ns
}
impl Counters for IoHist {
    const WORDS: usize = RUNQ_SLOTS + 3; // slots, count, sum_ns, bytes
}
impl Counters for FlowValue {
    const WORDS: usize = 4;
}
impl Counters for TaskSched {
    const WORDS: usize = 4;
}

/// The counter words of `v`.
fn words<T: Counters>(v: &T) -> &[u64] {
    &bytemuck::cast_slice::<u8, u64>(bytemuck::bytes_of(v))[..T::WORDS]
}

fn words_mut<T: Counters>(v: &mut T) -> &mut [u64] {
    &mut bytemuck::cast_slice_mut::<u8, u64>(bytemuck::bytes_of_mut(v))[..T::WORDS]
}

/// `now - before`, counter by counter (the rest of `now` kept); all of `now` when any
/// counter went down or there is no `before` (a table entry made anew counts from zero).
fn delta<T: Counters>(now: &T, before: Option<&T>) -> T {
    let mut d = *now;
    if let Some(b) = before
        && words(b).iter().zip(words(now)).all(|(b, n)| b <= n)
    {
        for (x, y) in words_mut(&mut d).iter_mut().zip(words(b)) {
            *x -= y;
        }
    }
    d
}

/// `a + b`, counter by counter (the rest of `a` kept).
fn sum<T: Counters>(a: &T, b: &T) -> T {
    let mut s = *a;
    for (x, y) in words_mut(&mut s).iter_mut().zip(words(b)) {
        *x += y;
    }
    s
}

/// The last read of a table entry the aggregator retires when idle.
#[derive(Clone, Copy)]
struct Last<V> {
    value: V,
    /// Intervals in a row without activity.
    idle: u32,
    /// The read that last saw it (entries gone from the kernel's table are dropped).
    epoch: u64,
}

impl<V> Last<V> {
    fn new(value: V) -> Last<V> {
        Last {
            value,
            idle: 0,
            epoch: 0,
        }
    }
}

/// One entry's interval: what it counted since its last read. After
/// [`FLOW_IDLE_INTERVALS`] without activity (`busy` false) `take` removes it from the
/// kernel's table (`Some(None)`: it was gone already; `None`: the removal failed, and it is
/// kept and tried again), and what it counted between the read and the removal is added;
/// it is then forgotten here too.
fn step<K: std::hash::Hash + Eq, V: Counters>(
    last: &mut HashMap<K, Last<V>>,
    key: K,
    now: V,
    epoch: u64,
    busy: impl Fn(&V) -> bool,
    take: impl FnOnce() -> Option<Option<V>>,
) -> V {
    let prev = last.get(&key).copied();
    let mut d = delta(&now, prev.as_ref().map(|p| &p.value));
    let idle = if busy(&d) {
        0
    } else {
        prev.map_or(0, |p| p.idle) + 1
    };
    if idle >= FLOW_IDLE_INTERVALS
        && let Some(taken) = take()
    {
        if let Some(taken) = taken {
            d = sum(&d, &delta(&taken, Some(&now)));
        }
        last.remove(&key);
    } else {
        last.insert(
            key,
            Last {
                value: now,
                idle,
                epoch,
            },
        );
    }
    d
}

/// The container of a cgroup id as a metric label (its id, or `host`), from a walk of the
/// cgroup2 hierarchy (ids are the directories' inode numbers): a walk when an id is not
/// known, at most once per interval, replacing what was known (so only live cgroups are
/// kept).
struct ContainerLabels {
    root: Option<std::path::PathBuf>,
    labels: HashMap<u64, Arc<str>>,
    /// The interval of the last walk.
    walked: Option<u64>,
    /// Walks so far (the metric's labels are pruned after each).
    walks: u64,
}

/// Cgroups a walk visits at most.
const CGROUP_WALK_MAX: usize = 65_536;

impl ContainerLabels {
    fn new() -> ContainerLabels {
        ContainerLabels {
            root: crate::enrich::scan::cgroup2_mount(),
            labels: HashMap::new(),
            walked: None,
            walks: 0,
        }
    }

    /// `cgroup`'s label in interval `epoch`; `unknown` when a walk did not find it.
    fn label(&mut self, cgroup: u64, epoch: u64) -> Arc<str> {
        if let Some(l) = self.labels.get(&cgroup) {
            return l.clone();
        }
        if self.walked != Some(epoch)
            && let Some(root) = &self.root
        {
            self.walked = Some(epoch);
            self.labels.clear();
            self.walks += 1;
            let (host, labels) = (Arc::<str>::from("host"), &mut self.labels);
            crate::enrich::scan::scan_cgroups(root, CGROUP_WALK_MAX, |c| {
                let label = match crate::enrich::container::classify(&c.path) {
                    crate::enrich::container::Placement::Host => host.clone(),
                    crate::enrich::container::Placement::Container(c) => Arc::from(c.id),
                };
                labels.insert(c.id, label);
            });
        }
        // Gone before the walk (or no cgroup2 mount): remembered as unknown, so that a
        // retiring cgroup does not walk the hierarchy every interval.
        self.labels
            .entry(cgroup)
            .or_insert_with(|| Arc::from("unknown"))
            .clone()
    }

    /// Whether `label` is a container that exists now (as of the last walk).
    fn live(&self, label: &str) -> bool {
        self.labels.values().any(|l| &**l == label)
    }
}

/// What the aggregator did, for the engine's report.
#[derive(Debug, Clone, Default)]
pub(crate) struct PerfReport {
    pub records: u64,
    pub records_lost: u64,
    pub waits: u64,
    pub cgroup_full: u64,
    pub no_storage: u64,
    pub ios: u64,
    pub io_untracked: u64,
    pub io_hist_full: u64,
    pub flow_records: u64,
    pub flows_full: u64,
    pub tcp_untracked: u64,
    pub switches: u64,
    pub task_records: u64,
    pub tasks_full: u64,
    /// Summary windows whose aggregates the semantic thread did not take in time.
    pub windows_dropped: u64,
    pub error: Option<String>,
}

impl std::fmt::Display for PerfReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "perf: {} run-queue waits and {} block requests measured; {} interval records on \
             disk, {} lost; {} waits not counted per cgroup (perf.cgroups_max full), {} not \
             measured (no task storage); {} requests not timed (in-flight table full), {} not \
             counted per device (device table full); {} flow records, {} sends/receives not \
             counted per flow (perf.flows_max full), {} TCP connections not timed; {} context \
             switches, {} process records, {} switches not counted per process \
             (perf.tasks_max full)",
            self.waits,
            self.ios,
            self.records,
            self.records_lost,
            self.cgroup_full,
            self.no_storage,
            self.io_untracked,
            self.io_hist_full,
            self.flow_records,
            self.flows_full,
            self.tcp_untracked,
            self.switches,
            self.task_records,
            self.tasks_full
        )?;
        if self.windows_dropped > 0 {
            write!(
                f,
                "; {} summary windows' aggregates dropped (the semantic thread fell behind)",
                self.windows_dropped
            )?;
        }
        if let Some(e) = &self.error {
            write!(f, "; stopped writing: {e}")?;
        }
        Ok(())
    }
}

/// See the module docs. Driven by the control thread.
pub(crate) struct PerfAggregator {
    writer: StreamWriter,
    snapshot: PerfSnapshot,
    prev_cpu: Vec<RunqHist>,
    /// The last read of each cgroup's histogram, flow and process (retired when idle).
    prev_cgroup: HashMap<u64, Last<RunqHist>>,
    prev_io: HashMap<(u32, u32), IoHist>,
    prev_flows: HashMap<[u8; 48], Last<FlowValue>>,
    prev_tasks: HashMap<u32, Last<TaskSched>>,
    /// Reads so far: what a `Last` not read this time is told apart by.
    epoch: u64,
    /// The container of each cgroup, for the per-container metric.
    containers: ContainerLabels,
    /// The interval's processes and their deltas, reused (top N taken from it).
    task_deltas: Vec<(u32, TaskSched)>,
    top_n: usize,
    last_ns: u64,
    interval_ns: u64,
    telemetry: Arc<Telemetry>,
    report: PerfReport,
    /// With the semantic path: each written record folded into its summary window, and
    /// the windows handed over once complete.
    windows: Option<WindowFold>,
}

impl PerfAggregator {
    /// Starts from the kernel's current totals (waits before `start` are not reported).
    pub(crate) fn start(
        writer: StreamWriter,
        collector: &Collector,
        interval_ms: u64,
        top_n: u32,
        now_ns: u64,
        telemetry: Arc<Telemetry>,
    ) -> PerfAggregator {
        let mut a = PerfAggregator {
            writer,
            snapshot: PerfSnapshot::default(),
            prev_cpu: Vec::new(),
            prev_cgroup: HashMap::new(),
            prev_io: HashMap::new(),
            prev_flows: HashMap::new(),
            prev_tasks: HashMap::new(),
            epoch: 0,
            containers: ContainerLabels::new(),
            task_deltas: Vec::new(),
            top_n: top_n as usize,
            last_ns: now_ns,
            interval_ns: interval_ms.saturating_mul(1_000_000),
            telemetry,
            report: PerfReport::default(),
            windows: None,
        };
        if collector.perf_snapshot(&mut a.snapshot).is_ok() {
            a.prev_cpu.clone_from(&a.snapshot.per_cpu);
            a.prev_cgroup.extend(
                a.snapshot
                    .per_cgroup
                    .iter()
                    .map(|(id, h)| (*id, Last::new(*h))),
            );
            a.prev_io
                .extend(a.snapshot.io.iter().map(|(k, h)| ((k.dev, k.op), *h)));
            a.prev_flows.extend(
                a.snapshot
                    .flows
                    .iter()
                    .map(|(k, v)| (flow_id(k), Last::new(*v))),
            );
            a.prev_tasks
                .extend(a.snapshot.tasks.iter().map(|(t, v)| (*t, Last::new(*v))));
        }
        a
    }

    /// Folds every record written from now on into summary windows of `window_ns`
    /// (keys per window bounded by `cap`), handed over through `shared`.
    pub(crate) fn summarize(
        &mut self,
        window_ns: u64,
        cap: usize,
        shared: Arc<window::PerfWindows>,
    ) {
        self.windows = Some(WindowFold(window::PerfFold::new(window_ns, cap), shared));
    }

    /// Writes the interval's records once `perf.interval_ms` has passed since the last.
    pub(crate) fn tick(&mut self, collector: &Collector, now_ns: u64) {
        if now_ns.saturating_sub(self.last_ns) >= self.interval_ns {
            self.drain(collector, now_ns);
        }
        // Records written from now on end at `now_ns` or later: the windows before its
        // window are complete.
        let offset = self.writer.mono_to_wall_ns();
        if let Some(WindowFold(fold, shared)) = &mut self.windows {
            let w = fold.window(now_ns, offset);
            shared.complete(fold, w);
        }
        if self.report.error.is_none()
            && let Err(e) = self.writer.tick()
        {
            self.report.error = Some(e.to_string());
        }
    }

    /// Reads the kernel's totals and writes what changed since the last read.
    fn drain(&mut self, collector: &Collector, now_ns: u64) {
        if let Err(e) = collector.perf_snapshot(&mut self.snapshot) {
            eprintln!("engine: perf: reading the kernel's histograms: {e}; retrying");
            return;
        }
        let (start, end) = (self.last_ns, now_ns);
        self.last_ns = now_ns;
        self.report.cgroup_full = self.snapshot.counters.cgroup_full;
        self.report.no_storage = self.snapshot.counters.no_storage;
        self.report.io_untracked = self.snapshot.counters.io_untracked;
        self.report.io_hist_full = self.snapshot.counters.io_hist_full;
        self.report.flows_full = self.snapshot.counters.flows_full;
        self.report.tcp_untracked = self.snapshot.counters.tcp_untracked;
        self.report.tasks_full = self.snapshot.counters.tasks_full;
        for cpu in 0..self.snapshot.per_cpu.len() {
            let now = self.snapshot.per_cpu[cpu];
            let d = delta(&now, self.prev_cpu.get(cpu));
            if d.count > 0 {
                self.telemetry.runq_cpu(cpu, &d);
                self.report.waits += d.count;
                self.write(SCOPE_CPU, cpu as u64, start, end, &d);
            }
        }
        self.prev_cpu.clone_from(&self.snapshot.per_cpu);
        self.epoch += 1;
        let epoch = self.epoch;
        for i in 0..self.snapshot.per_cgroup.len() {
            let (id, now) = self.snapshot.per_cgroup[i];
            // A cgroup without waits for two intervals (removed, or idle) leaves the
            // kernel's bounded table with what it counted until then: room for new ones.
            let d = step(
                &mut self.prev_cgroup,
                id,
                now,
                epoch,
                |d| d.count > 0,
                || collector.runq_cgroup_take(id).ok(),
            );
            if d.count > 0 {
                let walks = self.containers.walks;
                let container = self.containers.label(id, epoch);
                if self.containers.walks != walks {
                    // Containers gone since the last walk leave the metric (bounded labels).
                    let c = &self.containers;
                    self.telemetry.runq_container_retain(|l| c.live(l));
                }
                self.telemetry.runq_container(&container, &d);
                self.write(SCOPE_CGROUP, id, start, end, &d);
            }
        }
        self.prev_cgroup.retain(|_, l| l.epoch == epoch);
        for i in 0..self.snapshot.io.len() {
            let (k, now) = self.snapshot.io[i];
            let d = delta(&now, self.prev_io.get(&(k.dev, k.op)));
            if d.count > 0 {
                self.telemetry.block_io(k, &d);
                self.report.ios += d.count;
                self.write_io(k, start, end, &d);
            }
            self.prev_io.insert((k.dev, k.op), now);
        }
        self.drain_flows(collector, start, end);
        self.drain_tasks(collector, start, end);
        if self.report.error.is_none()
            && let Err(e) = self.writer.flush()
        {
            self.report.error = Some(e.to_string());
        }
    }

    /// Each flow's traffic since the last read; flows idle for [`FLOW_IDLE_INTERVALS`]
    /// are taken out of the kernel's table, with what they counted until then.
    fn drain_flows(&mut self, collector: &Collector, start: u64, end: u64) {
        let epoch = self.epoch;
        for i in 0..self.snapshot.flows.len() {
            let (k, now) = self.snapshot.flows[i];
            let d = step(
                &mut self.prev_flows,
                flow_id(&k),
                now,
                epoch,
                |d| d.sends + d.receives > 0,
                || collector.flow_take(&k).ok(),
            );
            if d.sends + d.receives > 0 {
                self.telemetry.net(&k, &d);
                self.report.flow_records += 1;
                let rec = NetRecord {
                    flow: k,
                    start_ns: start,
                    end_ns: end,
                    bytes_sent: d.bytes_sent,
                    bytes_received: d.bytes_received,
                    sends: d.sends,
                    receives: d.receives,
                    comm: d.comm,
                };
                self.append(KIND_PERF_NET, end, bytemuck::bytes_of(&rec));
            }
        }
        self.prev_flows.retain(|_, l| l.epoch == epoch);
    }

    /// Each process's scheduling since the last read; the top N by off-CPU time and by
    /// switches are written. Processes idle for [`FLOW_IDLE_INTERVALS`] (exited, or asleep
    /// throughout) are taken out of the kernel's table with what they counted until then.
    fn drain_tasks(&mut self, collector: &Collector, start: u64, end: u64) {
        self.task_deltas.clear();
        let epoch = self.epoch;
        let busy = |d: &TaskSched| d.switches + d.involuntary > 0 || d.offcpu_ns > 0;
        for i in 0..self.snapshot.tasks.len() {
            let (tgid, now) = self.snapshot.tasks[i];
            let d = step(&mut self.prev_tasks, tgid, now, epoch, busy, || {
                collector.task_take(tgid).ok()
            });
            if busy(&d) {
                self.report.switches += d.switches + d.involuntary;
                self.task_deltas.push((tgid, d));
            }
        }
        self.prev_tasks.retain(|_, l| l.epoch == epoch);
        // The top N by off-CPU time, then by switches (ties by pid): the union, written in
        // that order.
        let n = self.top_n;
        let mut deltas = std::mem::take(&mut self.task_deltas);
        deltas.sort_unstable_by(|a, b| b.1.offcpu_ns.cmp(&a.1.offcpu_ns).then(a.0.cmp(&b.0)));
        let mut chosen: Vec<usize> = (0..deltas.len().min(n)).collect();
        let mut by_switches: Vec<usize> = (0..deltas.len()).collect();
        by_switches.sort_unstable_by(|&a, &b| {
            let (x, y) = (&deltas[a], &deltas[b]);
            (y.1.switches + y.1.involuntary)
                .cmp(&(x.1.switches + x.1.involuntary))
                .then(x.0.cmp(&y.0))
        });
        for i in by_switches.into_iter().take(n) {
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        for i in chosen {
            let (tgid, mut d) = deltas[i];
            // The per-CPU entry keeps the name of the process's first switch (before an
            // exec, its parent's); the kernel's name table follows execs.
            if let Some(comm) = collector.task_comm(tgid) {
                d.comm = comm;
            }
            let rec = TaskRecord {
                tgid,
                _pad0: 0,
                start_ns: start,
                end_ns: end,
                switches: d.switches,
                involuntary: d.involuntary,
                offcpu_ns: d.offcpu_ns,
                runq_ns: d.runq_ns,
                comm: d.comm,
            };
            self.report.task_records += 1;
            self.append(KIND_PERF_TASK, end, bytemuck::bytes_of(&rec));
        }
        deltas.clear();
        self.task_deltas = deltas;
    }

    fn write_io(&mut self, k: IoKey, start_ns: u64, end_ns: u64, h: &IoHist) {
        let rec = IoRecord {
            dev: k.dev,
            op: k.op,
            start_ns,
            end_ns,
            count: h.count,
            sum_ns: h.sum_ns,
            bytes: h.bytes,
            slots: h.slots,
            disk: h.disk,
        };
        self.append(KIND_PERF_IO, end_ns, bytemuck::bytes_of(&rec));
    }

    fn write(&mut self, scope: u32, id: u64, start_ns: u64, end_ns: u64, h: &RunqHist) {
        let rec = RunqRecord {
            scope,
            _pad0: 0,
            id,
            start_ns,
            end_ns,
            count: h.count,
            sum_ns: h.sum_ns,
            slots: h.slots,
        };
        self.append(KIND_PERF_RUNQ, end_ns, bytemuck::bytes_of(&rec));
    }

    fn append(&mut self, kind: u16, ts_ns: u64, bytes: &[u8]) {
        if self.report.error.is_some() {
            self.report.records_lost += 1;
            return;
        }
        let r = RecordRef {
            ts_ns,
            kind,
            weight: 1,
            bytes,
        };
        match self.writer.append(&r) {
            Ok(()) => {
                self.report.records += 1;
                let offset = self.writer.mono_to_wall_ns();
                if let Some(WindowFold(fold, _)) = &mut self.windows {
                    fold.record(ts_ns, offset, kind, bytes);
                }
            }
            Err(e) => {
                self.report.records_lost += 1;
                self.report.error = Some(e.to_string());
            }
        }
    }

    /// The last interval (the programs are detached: the totals are final) and the seal.
    pub(crate) fn finish(mut self, collector: &Collector, now_ns: u64) -> PerfReport {
        self.drain(collector, now_ns);
        if self.report.error.is_none()
            && let Err(e) = self.writer.close()
        {
            self.report.error = Some(e.to_string());
        }
        if let Some(w) = self.windows.take() {
            let shared = w.1.clone();
            // The last windows handed over first: what that drops is counted too.
            drop(w);
            self.report.windows_dropped = shared.dropped.load(std::sync::atomic::Ordering::Relaxed);
        }
        self.report
    }
}

/// The summary windows being folded and where they go. Dropped (by
/// [`PerfAggregator::finish`], or with the aggregator when the control loop ends on an
/// error) it hands over what it holds as complete, so the semantic thread waits for no
/// more.
struct WindowFold(window::PerfFold, Arc<window::PerfWindows>);

impl Drop for WindowFold {
    fn drop(&mut self) {
        self.1.complete(&mut self.0, u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(slots: &[(usize, u64)]) -> RunqHist {
        let mut h = RunqHist::default();
        for &(i, n) in slots {
            h.slots[i] = n;
            h.count += n;
            h.sum_ns += n * 1000 * (1 << i);
        }
        h
    }

    #[test]
    fn deltas_are_per_bucket_and_restart_after_a_reset() {
        let a = hist(&[(0, 2), (3, 1)]);
        let b = hist(&[(0, 5), (3, 1), (10, 4)]);
        let d = delta(&b, Some(&a));
        assert_eq!(d.count, 7);
        assert_eq!((d.slots[0], d.slots[3], d.slots[10]), (3, 0, 4));
        assert_eq!(delta(&b, None), b);
        // A table entry deleted and recreated counts from zero again.
        assert_eq!(delta(&a, Some(&b)), a);
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let r = RunqRecord {
            scope: SCOPE_CGROUP,
            _pad0: 0,
            id: 42,
            start_ns: 1,
            end_ns: 2,
            count: 3,
            sum_ns: 4,
            slots: [1; RUNQ_SLOTS],
        };
        let bytes = bytemuck::bytes_of(&r).to_vec();
        assert_eq!(RunqRecord::decode(&bytes), Some(r));
        assert_eq!(RunqRecord::decode(&bytes[..100]), None);
        let mut bad = r;
        bad.scope = 7;
        assert_eq!(RunqRecord::decode(bytemuck::bytes_of(&bad)), None);
        assert_eq!(RunqRecord::bucket_low_us(0), 0);
        assert_eq!(RunqRecord::bucket_low_us(1), 2);
        assert_eq!(RunqRecord::bucket_low_us(10), 1024);
    }

    #[test]
    fn flow_deltas_restart_when_an_entry_is_new() {
        let a = FlowValue {
            bytes_sent: 100,
            sends: 2,
            ..Default::default()
        };
        let b = FlowValue {
            bytes_sent: 250,
            bytes_received: 10,
            sends: 3,
            receives: 1,
            ..a
        };
        let d = delta(&b, Some(&a));
        assert_eq!(
            (d.bytes_sent, d.bytes_received, d.sends, d.receives),
            (150, 10, 1, 1)
        );
        assert_eq!(delta(&a, Some(&b)), a);
        let rec = NetRecord {
            flow: FlowKey {
                tgid: 7,
                family: 2,
                protocol: 6,
                sport: 1,
                dport: 2,
                _pad0: 0,
                saddr: [0; 16],
                daddr: [0; 16],
            },
            start_ns: 1,
            end_ns: 2,
            bytes_sent: 3,
            bytes_received: 4,
            sends: 5,
            receives: 6,
            comm: [0; COMM_LEN],
        };
        assert_eq!(NetRecord::decode(bytemuck::bytes_of(&rec)), Some(rec));
        assert_eq!(rec.protocol(), "tcp");
    }

    #[test]
    fn idle_entries_are_retired_with_what_they_counted_and_kept_when_removal_fails() {
        let mut last: HashMap<u32, Last<FlowValue>> = HashMap::new();
        let busy = |d: &FlowValue| d.sends > 0;
        let v = |sends| FlowValue {
            sends,
            ..Default::default()
        };
        let never = || -> Option<Option<FlowValue>> { panic!("not idle long enough") };
        assert_eq!(step(&mut last, 1, v(5), 1, busy, never).sends, 5);
        assert_eq!(step(&mut last, 1, v(5), 2, busy, never).sends, 0);
        // Idle twice: a failed removal keeps it (no recount from zero next time)...
        assert_eq!(step(&mut last, 1, v(5), 3, busy, || None).sends, 0);
        assert_eq!(last[&1].epoch, 3);
        // ...a removal returns the sends made since the read, and it is forgotten.
        assert_eq!(
            step(&mut last, 1, v(5), 4, busy, || Some(Some(v(7)))).sends,
            2
        );
        assert!(last.is_empty());
    }

    #[test]
    fn task_deltas_and_records() {
        let a = TaskSched {
            switches: 5,
            offcpu_ns: 1000,
            ..Default::default()
        };
        let b = TaskSched {
            switches: 9,
            involuntary: 2,
            offcpu_ns: 4000,
            runq_ns: 300,
            ..a
        };
        let d = delta(&b, Some(&a));
        assert_eq!(
            (d.switches, d.involuntary, d.offcpu_ns, d.runq_ns),
            (4, 2, 3000, 300)
        );
        assert_eq!(delta(&a, Some(&b)), a);
        assert_eq!(sum(&d, &a).switches, 9);
        let rec = TaskRecord {
            tgid: 1,
            _pad0: 0,
            start_ns: 1,
            end_ns: 2,
            switches: 3,
            involuntary: 4,
            offcpu_ns: 5,
            runq_ns: 6,
            comm: [0; COMM_LEN],
        };
        assert_eq!(TaskRecord::decode(bytemuck::bytes_of(&rec)), Some(rec));
    }

    #[test]
    fn io_records_round_trip_and_name_their_device_and_operation() {
        let mut disk = [0u8; 32];
        disk[..3].copy_from_slice(b"vda");
        let r = IoRecord {
            dev: 254 << 20,
            op: 1,
            start_ns: 5,
            end_ns: 9,
            count: 2,
            sum_ns: 3000,
            bytes: 8192,
            slots: [0; RUNQ_SLOTS],
            disk,
        };
        assert_eq!(IoRecord::decode(bytemuck::bytes_of(&r)), Some(r));
        assert_eq!(r.device(), "254:0");
        assert_eq!(io_op_name(r.op), "write");
        assert_eq!(io_op_name(42), "op42");
        let a = IoHist {
            count: 1,
            bytes: 4096,
            ..Default::default()
        };
        let b = IoHist {
            count: 3,
            bytes: 12288,
            ..a
        };
        assert_eq!(
            (delta(&b, Some(&a)).count, delta(&b, Some(&a)).bytes),
            (2, 8192)
        );
    }
}
