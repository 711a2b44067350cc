//! The perf aggregates of one summary window: the interval records (`perf.runq_latency`,
//! `perf.io_latency`, `perf.net_traffic`, `perf.task_sched`) whose end falls in the
//! window, folded in the order they were written. Live, the control thread folds each
//! record as it writes it and hands the window over once no later record can fall in it
//! ([`PerfWindows`]); `engine summarize` folds the same records read back from
//! `stream-1000001`: the same records in the same order give the same `"perf"` object of
//! the window's line (docs/semantic.md).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bpf::abi::{COMM_LEN, FlowKey, RUNQ_SLOTS};

use super::{Aggregate, IoRecord, NetRecord, RunqRecord, SCOPE_CPU, TaskRecord};
use crate::enrich::tables::Tables;
use crate::output::json::{AddrValue, JsonWriter, Str};
use crate::semantic::marker::window_of;

/// Windows folded and not yet taken by the semantic thread, at most: past this the oldest
/// is dropped (counted in [`PerfWindows::dropped`]; the semantic thread has then been
/// stalled for this many windows, and its cores' partials are being lost too).
const PENDING_MAX: usize = 256;

/// A log2 histogram of microseconds, as the kernel's (count, sum, buckets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hist {
    pub count: u64,
    pub sum_ns: u64,
    pub slots: [u64; RUNQ_SLOTS],
}

impl Hist {
    fn add(&mut self, count: u64, sum_ns: u64, slots: &[u64; RUNQ_SLOTS]) {
        self.count += count;
        self.sum_ns += sum_ns;
        for (a, b) in self.slots.iter_mut().zip(slots) {
            *a += b;
        }
    }

    /// The upper bound (us) of the bucket holding the `p`-th percentile (the last
    /// bucket's lower bound for the last, which has no upper bound); 0 when empty.
    pub(crate) fn percentile_le_us(&self, p: u64) -> u64 {
        let total: u64 = self.slots.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = (total * p).div_ceil(100).max(1);
        let mut seen = 0;
        for (k, n) in self.slots.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return if k + 1 < RUNQ_SLOTS {
                    1u64 << (k + 1)
                } else {
                    RunqRecord::bucket_low_us(k)
                };
            }
        }
        RunqRecord::bucket_low_us(RUNQ_SLOTS - 1)
    }

    fn write(&self, json: &mut JsonWriter, buckets: bool) {
        json.field("count", self.count);
        json.field("sum_ns", self.sum_ns);
        json.field("p50_le_us", self.percentile_le_us(50));
        json.field("p99_le_us", self.percentile_le_us(99));
        json.field("max_le_us", self.percentile_le_us(100));
        if buckets {
            // As the interval records' (`perf.runq_latency`, `perf.io_latency`) in replay.
            json.log2_buckets(&self.slots);
        }
    }
}

/// A block device and operation's requests over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Io {
    hist: Hist,
    bytes: u64,
    disk: [u8; 32],
}

/// A flow's (or a process's) sums over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Traffic {
    bytes_sent: u64,
    bytes_received: u64,
    sends: u64,
    receives: u64,
}

impl Traffic {
    fn add(&mut self, r: &NetRecord) {
        self.bytes_sent += r.bytes_sent;
        self.bytes_received += r.bytes_received;
        self.sends += r.sends;
        self.receives += r.receives;
    }

    fn bytes(&self) -> u64 {
        self.bytes_sent + self.bytes_received
    }
}

/// A flow's key bytes and its process's name.
type FlowName = ([u8; 48], [u8; COMM_LEN]);

/// A process's scheduling over the window (from the intervals it was in the top of).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sched {
    switches: u64,
    involuntary: u64,
    offcpu_ns: u64,
    runq_ns: u64,
    comm: [u8; COMM_LEN],
}

/// See the module docs. Keys per map (cgroups, flows, processes) are bounded by `cap`:
/// a key that finds its map full is counted in the totals and in `*_overflow`, not on
/// its own (deterministically: the records come in the same order live and offline).
#[derive(Debug, Clone)]
pub(crate) struct PerfWindow {
    cap: usize,
    /// Interval records folded.
    pub records: u64,
    runq: Hist,
    cpus: BTreeMap<u64, Hist>,
    cgroups: HashMap<u64, Hist>,
    cgroups_overflow: u64,
    io: BTreeMap<(u32, u32), Io>,
    net: Traffic,
    /// By the flow's bytes and the process's name: the flow and its sums.
    flows: HashMap<FlowName, (FlowKey, Traffic)>,
    flows_overflow: u64,
    processes: HashMap<u32, Sched>,
    processes_overflow: u64,
}

impl PerfWindow {
    /// An empty window holding at most `cap` cgroups, flows and processes.
    pub(crate) fn new(cap: usize) -> PerfWindow {
        PerfWindow {
            cap,
            records: 0,
            runq: Hist::default(),
            cpus: BTreeMap::new(),
            cgroups: HashMap::new(),
            cgroups_overflow: 0,
            io: BTreeMap::new(),
            net: Traffic::default(),
            flows: HashMap::new(),
            flows_overflow: 0,
            processes: HashMap::new(),
            processes_overflow: 0,
        }
    }

    /// Folds one interval record.
    pub(crate) fn add(&mut self, a: &Aggregate) {
        self.records += 1;
        match a {
            Aggregate::Runq(r) => self.runq(r),
            Aggregate::Io(r) => self.io(r),
            Aggregate::Net(r) => self.net(r),
            Aggregate::Task(r) => self.task(r),
        }
    }

    fn runq(&mut self, r: &RunqRecord) {
        if r.scope == SCOPE_CPU {
            // Every wait is counted once per CPU (and once more per cgroup).
            self.runq.add(r.count, r.sum_ns, &r.slots);
            self.cpus
                .entry(r.id)
                .or_default()
                .add(r.count, r.sum_ns, &r.slots);
            return;
        }
        let full = self.cgroups.len() >= self.cap;
        match self.cgroups.get_mut(&r.id) {
            Some(h) => h.add(r.count, r.sum_ns, &r.slots),
            None if full => self.cgroups_overflow += r.count,
            None => {
                let mut h = Hist::default();
                h.add(r.count, r.sum_ns, &r.slots);
                self.cgroups.insert(r.id, h);
            }
        }
    }

    fn io(&mut self, r: &IoRecord) {
        let e = self.io.entry((r.dev, r.op)).or_insert(Io {
            hist: Hist::default(),
            bytes: 0,
            disk: r.disk,
        });
        e.hist.add(r.count, r.sum_ns, &r.slots);
        e.bytes += r.bytes;
    }

    fn net(&mut self, r: &NetRecord) {
        self.net.add(r);
        let key = (super::flow_id(&r.flow), r.comm);
        let full = self.flows.len() >= self.cap;
        match self.flows.get_mut(&key) {
            Some((_, t)) => t.add(r),
            None if full => self.flows_overflow += 1,
            None => {
                let mut t = Traffic::default();
                t.add(r);
                self.flows.insert(key, (r.flow, t));
            }
        }
    }

    fn task(&mut self, r: &TaskRecord) {
        let full = self.processes.len() >= self.cap;
        let s = match self.processes.get_mut(&r.tgid) {
            Some(s) => s,
            None if full => {
                self.processes_overflow += 1;
                return;
            }
            None => self.processes.entry(r.tgid).or_default(),
        };
        s.switches += r.switches;
        s.involuntary += r.involuntary;
        s.offcpu_ns += r.offcpu_ns;
        s.runq_ns += r.runq_ns;
        // The latest name (the kernel's name table follows execs).
        s.comm = r.comm;
    }

    /// `,"perf":{...}`: the window's perf aggregates, top lists of `n`; cgroups are named
    /// from `tables` when given.
    pub(crate) fn write_json(&self, json: &mut JsonWriter, n: usize, tables: Option<&Tables>) {
        json.open(Some("perf"), b'{');
        json.field("records", self.records);

        json.open(Some("runq"), b'{');
        self.runq.write(json, true);
        json.open(Some("cpus"), b'[');
        for (cpu, h) in &self.cpus {
            json.open(None, b'{');
            json.field("cpu", *cpu);
            h.write(json, false);
            json.close(b'}');
        }
        json.close(b']');
        let mut cgroups: Vec<(&u64, &Hist)> = self.cgroups.iter().collect();
        cgroups.sort_unstable_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        json.open(Some("cgroups"), b'[');
        for (id, h) in cgroups.iter().take(n) {
            json.open(None, b'{');
            json.field("cgroup_id", **id);
            if let Some(c) = tables.and_then(|t| t.cgroup(**id)) {
                json.field("path", Str(c.cgroup.path.as_bytes()));
                json.container(&c.placement);
            }
            h.write(json, false);
            json.close(b'}');
        }
        json.close(b']');
        let rest: u64 = cgroups.iter().skip(n).map(|c| c.1.count).sum();
        json.field("cgroups_other", rest);
        json.field("cgroups_overflow", self.cgroups_overflow);
        json.close(b'}');

        json.open(Some("io"), b'[');
        for ((dev, op), io) in &self.io {
            json.open(None, b'{');
            json.field("disk", Str(bpf::abi::cstr_bytes(&io.disk)));
            json.field("dev", Str(super::device_name(*dev).as_bytes()));
            json.field("op", Str(super::io_op_name(*op).as_bytes()));
            json.field("bytes", io.bytes);
            io.hist.write(json, true);
            json.close(b'}');
        }
        json.close(b']');

        json.open(Some("net"), b'{');
        json.field("bytes_sent", self.net.bytes_sent);
        json.field("bytes_received", self.net.bytes_received);
        json.field("sends", self.net.sends);
        json.field("receives", self.net.receives);
        let mut flows: Vec<(&FlowName, &(FlowKey, Traffic))> = self.flows.iter().collect();
        flows.sort_unstable_by(|a, b| b.1.1.bytes().cmp(&a.1.1.bytes()).then(a.0.cmp(b.0)));
        json.open(Some("flows"), b'[');
        for ((_, comm), (f, t)) in flows.iter().take(n) {
            json.open(None, b'{');
            json.field("pid", f.tgid);
            json.field("comm", Str(bpf::abi::cstr_bytes(comm)));
            json.field("protocol", Str(super::protocol_name(f.protocol).as_bytes()));
            json.field("saddr", AddrValue(f.family, &f.saddr));
            json.field("sport", f.sport);
            json.field("daddr", AddrValue(f.family, &f.daddr));
            json.field("dport", f.dport);
            json.field("bytes_sent", t.bytes_sent);
            json.field("bytes_received", t.bytes_received);
            json.field("sends", t.sends);
            json.field("receives", t.receives);
            json.close(b'}');
        }
        json.close(b']');
        let rest: u64 = flows.iter().skip(n).map(|f| f.1.1.bytes()).sum();
        json.field("flows_other_bytes", rest);
        json.field("flows_overflow", self.flows_overflow);
        json.close(b'}');

        let mut procs: Vec<(&u32, &Sched)> = self.processes.iter().collect();
        json.open(Some("sched"), b'{');
        // Who was blocked or asleep longest, and who waited longest for a CPU.
        procs.sort_unstable_by(|a, b| b.1.offcpu_ns.cmp(&a.1.offcpu_ns).then(a.0.cmp(b.0)));
        sched_list(json, "top_offcpu", &procs, n);
        procs.sort_unstable_by(|a, b| b.1.runq_ns.cmp(&a.1.runq_ns).then(a.0.cmp(b.0)));
        sched_list(json, "top_runq", &procs, n);
        json.field("processes_overflow", self.processes_overflow);
        json.close(b'}');
        json.close(b'}');
    }
}

/// `"name":[{"pid":..,"comm":..,"switches":..,...}]`: the first `n` of `procs`.
fn sched_list(json: &mut JsonWriter, name: &str, procs: &[(&u32, &Sched)], n: usize) {
    json.open(Some(name), b'[');
    for (pid, s) in procs.iter().take(n) {
        json.open(None, b'{');
        json.field("pid", **pid);
        json.field("comm", Str(bpf::abi::cstr_bytes(&s.comm)));
        json.field("switches", s.switches);
        json.field("involuntary", s.involuntary);
        json.field("offcpu_ns", s.offcpu_ns);
        json.field("runq_ns", s.runq_ns);
        json.close(b'}');
    }
    json.close(b']');
}

/// Folds records into the windows their ends fall in (`ts_ns + mono_to_wall_ns`, the
/// record's segment's offset).
#[derive(Debug)]
pub(crate) struct PerfFold {
    window_ns: u64,
    cap: usize,
    pub open: BTreeMap<u64, PerfWindow>,
}

impl PerfFold {
    pub(crate) fn new(window_ns: u64, cap: usize) -> PerfFold {
        PerfFold {
            window_ns,
            cap,
            open: BTreeMap::new(),
        }
    }

    /// The window a record stamped `ts_ns` falls in.
    pub(crate) fn window(&self, ts_ns: u64, mono_to_wall_ns: i64) -> u64 {
        window_of(
            i128::from(ts_ns) + i128::from(mono_to_wall_ns),
            self.window_ns,
        )
    }

    /// Folds a record of `kind` (nothing when it is not an interval record).
    pub(crate) fn record(&mut self, ts_ns: u64, mono_to_wall_ns: i64, kind: u16, bytes: &[u8]) {
        let Some(Ok(a)) = Aggregate::decode(kind, bytes) else {
            return;
        };
        let w = self.window(ts_ns, mono_to_wall_ns);
        let cap = self.cap;
        self.open
            .entry(w)
            .or_insert_with(|| PerfWindow::new(cap))
            .add(&a);
    }
}

/// Live: the windows the control thread has folded, for the semantic thread.
#[derive(Debug, Default)]
pub(crate) struct PerfWindows {
    done: Mutex<BTreeMap<u64, PerfWindow>>,
    /// Every window before this one is complete (`u64::MAX`: all, the aggregator ended).
    through: AtomicU64,
    /// Windows dropped before the semantic thread took them ([`PENDING_MAX`]).
    pub dropped: AtomicU64,
}

impl PerfWindows {
    /// Hands over every window before `through` (complete: no later record falls in them).
    pub(crate) fn complete(&self, fold: &mut PerfFold, through: u64) {
        let later = match through {
            u64::MAX => BTreeMap::new(),
            t => fold.open.split_off(&t),
        };
        let ready = std::mem::replace(&mut fold.open, later);
        if let Ok(mut done) = self.done.lock() {
            done.extend(ready);
            while done.len() > PENDING_MAX {
                done.pop_first();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.through.fetch_max(through, Ordering::AcqRel);
    }

    /// Whether window `w` is complete.
    pub(crate) fn ready(&self, w: u64) -> bool {
        self.through.load(Ordering::Acquire) > w
    }

    /// Window `w`'s aggregates (`None`: no record fell in it); earlier ones are dropped
    /// (windows the semantic thread does not emit).
    pub(crate) fn take(&self, w: u64) -> Option<PerfWindow> {
        let mut done = self.done.lock().ok()?;
        while done.first_key_value().is_some_and(|(k, _)| *k < w) {
            done.pop_first();
        }
        done.remove(&w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runq(scope: u32, id: u64, end: u64, slot: usize, n: u64) -> RunqRecord {
        let mut slots = [0; RUNQ_SLOTS];
        slots[slot] = n;
        RunqRecord {
            scope,
            _pad0: 0,
            id,
            start_ns: end - 10,
            end_ns: end,
            count: n,
            sum_ns: n * 1000,
            slots,
        }
    }

    #[test]
    fn percentiles_are_the_upper_bounds_of_their_buckets() {
        let mut h = Hist::default();
        let mut slots = [0; RUNQ_SLOTS];
        slots[2] = 98; // [4, 8) us
        slots[5] = 1; // [32, 64)
        slots[RUNQ_SLOTS - 1] = 1; // the open last bucket
        h.add(100, 0, &slots);
        assert_eq!(h.percentile_le_us(50), 8);
        assert_eq!(h.percentile_le_us(99), 64);
        assert_eq!(h.percentile_le_us(100), 1 << (RUNQ_SLOTS - 1));
        assert_eq!(Hist::default().percentile_le_us(50), 0);
    }

    #[test]
    fn records_fold_into_the_window_their_end_falls_in_and_cgroups_are_bounded() {
        let mut f = PerfFold::new(1_000, 2);
        for (scope, id, end) in [
            (SCOPE_CPU, 0, 500),
            (SCOPE_CPU, 1, 999),
            (SCOPE_CPU, 0, 1_000),
            (1, 7, 600),
            (1, 8, 700),
            (1, 9, 800),
        ] {
            let r = runq(scope, id, end, 3, 2);
            f.record(end, 0, super::super::KIND_PERF_RUNQ, bytemuck::bytes_of(&r));
        }
        // Not an interval record: ignored.
        f.record(10, 0, 3, &[0; 8]);
        assert_eq!(f.open.len(), 2);
        let w0 = &f.open[&0];
        assert_eq!((w0.records, w0.runq.count, w0.cpus.len()), (5, 4, 2));
        assert_eq!((w0.cgroups.len(), w0.cgroups_overflow), (2, 2));
        let shared = PerfWindows::default();
        assert!(!shared.ready(0));
        shared.complete(&mut f, 1);
        assert!(shared.ready(0) && !shared.ready(1));
        assert_eq!(f.open.len(), 1);
        let mut j = JsonWriter::default();
        j.open(None, b'{');
        shared.take(0).unwrap().write_json(&mut j, 1, None);
        j.close(b'}');
        let v: serde_json::Value = serde_json::from_slice(j.bytes()).unwrap();
        assert_eq!(v["perf"]["runq"]["count"], 4);
        assert_eq!(v["perf"]["runq"]["p50_le_us"], 16);
        assert_eq!(v["perf"]["runq"]["cgroups"][0]["cgroup_id"], 7);
        assert_eq!(v["perf"]["runq"]["cgroups_other"], 2);
        assert_eq!(v["perf"]["runq"]["cgroups_overflow"], 2);
        shared.complete(&mut f, u64::MAX);
        assert!(shared.ready(u64::MAX - 1));
        assert_eq!(shared.take(1).unwrap().records, 1);
    }
}
