//! Adaptive, accounted sampling.
//!
//! Every kind has an importance class. `critical` is never sampled. The other classes
//! have a budget in events/s per core thread; over budget, 1-in-N sampling whose N is
//! recomputed every interval from the rate observed in the last one. The decision is a
//! hash of the record's identity (timestamp, tid, kind, cpu), so the same record gets the
//! same decision on every run with the same N; the weight N is stored with the record.
//!
//! Where the kernel can decide alone (a kind whose class does not depend on its payload,
//! and no user-space filter that could reject it), the N is pushed into the kernel's
//! table instead ([`bpf::KernelSampling`]): the BPF programs leave the event out before it
//! costs ring space, count it (`KindCounters::sampled`) and stamp N in the record header.
//! Such records pass here unsampled, with the kernel's weight.

use bpf::{Event, KernelSampling, Kind, Payload};

/// Importance classes, most important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Never sampled.
    Critical = 0,
    High = 1,
    Normal = 2,
    Bulk = 3,
}

impl Class {
    /// The class name used in output.
    pub fn name(self) -> &'static str {
        match self {
            Class::Critical => "critical",
            Class::High => "high",
            Class::Normal => "normal",
            Class::Bulk => "bulk",
        }
    }

    fn base_importance(self) -> f64 {
        match self {
            Class::Critical => 0.9,
            Class::High => 0.6,
            Class::Normal => 0.3,
            Class::Bulk => 0.1,
        }
    }
}

/// The class of an event: security kinds, exec, exit by signal and OOM kills are
/// critical; lifecycle and connection kinds high; opens and packet-level kinds normal;
/// syscalls and page faults bulk.
pub fn class_of(ev: &Event<'_>) -> Class {
    match ev.kind {
        Kind::ProcessExit => match ev.payload {
            Payload::ProcessExit(p) if p.signal != 0 => Class::Critical,
            _ => Class::High,
        },
        k => fixed_class(k).unwrap_or(Class::Normal),
    }
}

/// The class of a kind when the kind alone decides it (`None` for process.exit, which is
/// critical only when by a signal).
pub fn fixed_class(kind: Kind) -> Option<Class> {
    use Kind::*;
    Some(match kind {
        k if k.category() == bpf::Category::Security => Class::Critical,
        ProcessExec | MemoryOomKill => Class::Critical,
        ProcessExit => return None,
        ProcessFork
        | FileRename
        | FileUnlink
        | FileChmod
        | NetTcpConnect
        | NetTcpAccept
        | NetTcpClose
        | NetTcpResetSent
        | NetTcpResetReceived
        | ContainerCgroupMkdir
        | ContainerCgroupRmdir
        | ContainerCgroupAttach
        | MemoryDirectReclaim
        | PerfRunqWait
        | PerfIoSlow
        | PerfTcpLife => Class::High,
        FileOpen | NetTcpEstablished | NetTcpRetransmit | NetPacketDrop => Class::Normal,
        Syscall | MemoryPageFault => Class::Bulk,
        _ => Class::Normal,
    })
}

/// The result of a call, for kinds that carry one.
fn failed(ev: &Event<'_>) -> bool {
    match ev.payload {
        Payload::FileOp(p) => p.ret < 0,
        Payload::FileRename(p) => p.ret < 0,
        Payload::CredChange(p) => p.ret < 0,
        Payload::Ptrace(p) => p.ret < 0,
        Payload::Capability(p) => p.ret != 0,
        Payload::Module(p) => p.ret < 0,
        Payload::Bpf(p) => p.ret < 0,
        Payload::Mount(p) => p.ret < 0,
        Payload::Syscall(p) => p.ret < 0,
        Payload::Tcp(t) => t.old_state == 2 && t.new_state == 7, // connect failed
        Payload::IoSlow(r) => r.error != 0,
        _ => false,
    }
}

/// The cgroup v2 root's id: events from it are not inside a container.
const ROOT_CGROUP_ID: u64 = 1;

/// Importance in [0, 1]: the class, plus 0.1 when done by uid 0, 0.2 when it failed,
/// 0.2 for a performance threshold crossed (a slow wait for a CPU, a slow block request),
/// 0.05 when inside a (non-root) cgroup.
pub fn importance(ev: &Event<'_>, class: Class) -> f64 {
    let mut score = class.base_importance();
    if matches!(ev.kind, Kind::PerfRunqWait | Kind::PerfIoSlow) {
        score += 0.2;
    }
    if ev.header.uid == 0 {
        score += 0.1;
    }
    if failed(ev) {
        score += 0.2;
    }
    if ev.header.cgroup_id != ROOT_CGROUP_ID && ev.header.cgroup_id != 0 {
        score += 0.05;
    }
    score.min(1.0)
}

/// splitmix64: a fast, well-mixed hash of the record's identity.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The deterministic keep decision for 1-in-`n`.
pub fn keep_one_in(ev: &Event<'_>, n: u32) -> bool {
    if n <= 1 {
        return true;
    }
    let h = ev.header;
    let id = h.ts_ns ^ ((h.tid as u64) << 32) ^ ((ev.kind as u64) << 16) ^ h.cpu as u64;
    mix(id).is_multiple_of(n as u64)
}

/// The kernel's side of one core thread's sampler: the kinds it samples and the CPUs
/// whose table entries this thread owns.
#[derive(Debug)]
struct InKernel {
    table: KernelSampling,
    cpus: Vec<u32>,
    /// Bit per kind id sampled in the kernel.
    kinds: u128,
    /// N last written, per class.
    written: [u32; 4],
    /// A write to the table failed (reported once; the kernel keeps its last N, and the
    /// weights it stamps stay true).
    failed: bool,
}

/// One core thread's sampler.
#[derive(Debug)]
pub struct Sampler {
    /// Budget per class (events/s); 0 = never sampled.
    budget: [u64; 4],
    /// Current 1-in-N per class.
    n: [u32; 4],
    /// Events of each class seen in the current interval.
    seen: [u64; 4],
    interval_ns: u64,
    interval_start: u64,
    kernel: Option<InKernel>,
}

impl Sampler {
    /// A sampler with per-class budgets `[critical(ignored), high, normal, bulk]`.
    pub fn new(high: u64, normal: u64, bulk: u64, interval_ms: u64) -> Sampler {
        Sampler {
            budget: [0, high, normal, bulk],
            n: [1; 4],
            seen: [0; 4],
            interval_ns: interval_ms.max(1) * 1_000_000,
            interval_start: 0,
            kernel: None,
        }
    }

    /// The kinds of `kinds` (bit per kind id) whose class is sampled at all and that the
    /// kernel can decide alone: a fixed class other than critical.
    pub fn kernel_kinds(&self, kinds: u128) -> u128 {
        Kind::ALL
            .iter()
            .filter(|&&k| {
                kinds & (1u128 << k as u16) != 0
                    && fixed_class(k)
                        .is_some_and(|c| c != Class::Critical && self.budget[c as usize] > 0)
            })
            .fold(0, |m, &k| m | 1u128 << k as u16)
    }

    /// Hands the sampling of `kinds` (bit per kind id, from [`Sampler::kernel_kinds`]) on
    /// `cpus` to the kernel. Their N starts at 1 (everything kept) and follows this
    /// sampler's N from the next interval.
    pub fn sample_in_kernel(&mut self, table: KernelSampling, cpus: Vec<u32>, kinds: u128) {
        let mut k = InKernel {
            table,
            cpus,
            kinds,
            written: [0; 4],
            failed: false,
        };
        k.push(self.n);
        self.kernel = Some(k);
    }

    /// Counts `ev` and decides: `Some(weight)` to keep it, `None` when sampled out. A
    /// record the kernel sampled counts for as many as its weight and is kept with it.
    pub fn decide(&mut self, ev: &Event<'_>, class: Class) -> Option<u32> {
        let c = class as usize;
        let kw = ev.header.kernel_weight();
        self.seen[c] += u64::from(kw);
        if kw > 1
            || self
                .kernel
                .as_ref()
                .is_some_and(|k| k.kinds & (1u128 << ev.kind as u16) != 0)
        {
            return Some(kw);
        }
        let n = self.n[c];
        keep_one_in(ev, n).then_some(n)
    }

    /// Recomputes N from the last interval's rates once `now_ns` (monotonic) is past it.
    pub fn tick(&mut self, now_ns: u64) {
        if self.interval_start == 0 {
            self.interval_start = now_ns;
            return;
        }
        let elapsed = now_ns.saturating_sub(self.interval_start);
        if elapsed < self.interval_ns {
            return;
        }
        for c in 1..4 {
            let budget = self.budget[c];
            self.n[c] = if budget == 0 {
                1
            } else {
                let rate = self.seen[c] as u128 * 1_000_000_000 / elapsed as u128;
                rate.div_ceil(budget as u128).clamp(1, u32::MAX as u128) as u32
            };
            self.seen[c] = 0;
        }
        self.interval_start = now_ns;
        if let Some(k) = &mut self.kernel {
            k.push(self.n);
        }
    }

    /// Current N per class `[critical, high, normal, bulk]`.
    pub fn rates(&self) -> [u32; 4] {
        self.n
    }
}

impl InKernel {
    /// Writes the N of every class that changed, for each kernel-sampled kind on each CPU.
    fn push(&mut self, n: [u32; 4]) {
        if self.failed {
            return;
        }
        for &kind in Kind::ALL {
            let Some(class) = fixed_class(kind) else {
                continue;
            };
            let c = class as usize;
            if self.kinds & (1u128 << kind as u16) == 0 || self.written[c] == n[c] {
                continue;
            }
            for &cpu in &self.cpus {
                if let Err(e) = self.table.set(cpu, kind as usize, n[c]) {
                    eprintln!(
                        "engine: setting the kernel's sampling for CPU {cpu}: {e}; it keeps its last 1-in-N (the weights it stamps stay true)"
                    );
                    self.failed = true;
                    return;
                }
            }
        }
        self.written = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpf::abi::{EventHeader, SyscallEvent};

    fn syscall_record(ts: u64, tid: u32) -> Vec<u64> {
        let len = Kind::Syscall.record_len();
        let mut words = vec![0u64; len / 8];
        let b: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        let h: &mut EventHeader = bytemuck::from_bytes_mut(&mut b[..64]);
        h.ts_ns = ts;
        h.tid = tid;
        h.kind = Kind::Syscall as u16;
        h.len = len as u32;
        let _ = size_of::<SyscallEvent>();
        words
    }

    #[test]
    fn slow_waits_and_slow_requests_are_notable_at_the_default_threshold() {
        for kind in [Kind::PerfRunqWait, Kind::PerfIoSlow] {
            let len = kind.record_len();
            let mut words = vec![0u64; len / 8];
            let b: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
            let h: &mut EventHeader = bytemuck::from_bytes_mut(&mut b[..64]);
            h.kind = kind as u16;
            h.len = len as u32;
            h.uid = 1000;
            h.cgroup_id = 1;
            let ev = bpf::decode(bytemuck::cast_slice(&words)).expect("a record");
            let class = class_of(&ev);
            assert_eq!(class, Class::High, "{kind:?}");
            // 0.8 is the default semantic.min_importance.
            assert!(importance(&ev, class) >= 0.8, "{kind:?}");
        }
    }

    #[test]
    fn adapts_to_the_budget_and_weights_stay_unbiased() {
        let mut s = Sampler::new(0, 0, 1000, 100);
        s.tick(1);
        // 100 ms at 100k/s of bulk: 10x the budget.
        let mut kept = 0u64;
        let mut weight_sum = 0u64;
        for i in 0..10_000u64 {
            let w = syscall_record(1 + i * 10_000, 7);
            let ev = bpf::decode(bytemuck::cast_slice(&w)).unwrap();
            if let Some(n) = s.decide(&ev, Class::Bulk) {
                kept += 1;
                weight_sum += n as u64;
            }
        }
        assert_eq!(kept, 10_000, "first interval: N = 1");
        s.tick(100_000_001);
        assert_eq!(s.rates()[Class::Bulk as usize], 100);
        let (mut kept, mut weight_sum2) = (0u64, 0u64);
        for i in 0..100_000u64 {
            let w = syscall_record(200_000_000 + i * 1000 + i % 7, (i % 13) as u32);
            let ev = bpf::decode(bytemuck::cast_slice(&w)).unwrap();
            if let Some(n) = s.decide(&ev, Class::Bulk) {
                kept += 1;
                weight_sum2 += n as u64;
            }
        }
        assert!(
            (700..=1300).contains(&kept),
            "kept {kept} of 100000 at 1 in 100"
        );
        // Unbiased estimate within 30% for this sample size.
        assert!(
            (70_000..=130_000).contains(&weight_sum2),
            "estimate {weight_sum2}"
        );
        assert_eq!(weight_sum, 10_000);
    }

    #[test]
    fn decisions_depend_only_on_the_record() {
        // Two samplers that saw different records before, fed the same records at the
        // same N, decide identically record by record (a replay of the same stream
        // reproduces the selection)...
        let mut a = Sampler::new(0, 0, 1000, 100);
        let mut b = Sampler::new(0, 0, 1000, 100);
        for (s, offset) in [(&mut a, 0u64), (&mut b, 7_777_777)] {
            s.tick(1);
            for i in 0..100_000u64 {
                let w = syscall_record(1 + offset + i, 1);
                let ev = bpf::decode(bytemuck::cast_slice(&w)).unwrap();
                let _ = s.decide(&ev, Class::Bulk);
            }
            s.tick(100_000_002);
        }
        assert_eq!(a.rates(), b.rates());
        assert!(a.rates()[Class::Bulk as usize] > 1, "sampling is in force");
        let (mut same, mut kept) = (0, 0);
        for i in 0..20_000u64 {
            let w = syscall_record(300_000_000 + i * 997, (i % 11) as u32);
            let ev = bpf::decode(bytemuck::cast_slice(&w)).unwrap();
            let (da, db) = (a.decide(&ev, Class::Bulk), b.decide(&ev, Class::Bulk));
            same += usize::from(da == db);
            kept += usize::from(da.is_some());
        }
        assert_eq!(same, 20_000);
        // ...and the decision is not constant: it follows the record's identity.
        assert!(kept > 0 && kept < 20_000, "kept {kept}");
        let n = a.rates()[Class::Bulk as usize];
        let flips = (0..1000u64)
            .filter(|&i| {
                let x = syscall_record(5_000_000 + i, 2);
                let y = syscall_record(5_000_000 + i, 3);
                let ex = bpf::decode(bytemuck::cast_slice(&x)).unwrap();
                let ey = bpf::decode(bytemuck::cast_slice(&y)).unwrap();
                keep_one_in(&ex, n) != keep_one_in(&ey, n)
            })
            .count();
        assert!(flips > 0, "the tid takes part in the decision");
    }

    #[test]
    fn the_kernel_samples_only_kinds_of_a_fixed_sampled_class() {
        let s = Sampler::new(0, 1000, 1000, 100);
        let bit = |k: Kind| 1u128 << k as u16;
        let mask = s.kernel_kinds(u128::MAX);
        for k in [
            Kind::Syscall,
            Kind::MemoryPageFault,
            Kind::FileOpen,
            Kind::NetPacketDrop,
        ] {
            assert_ne!(mask & bit(k), 0, "{k:?} is sampled in the kernel");
        }
        for k in [
            Kind::ProcessExec,
            Kind::ProcessExit, // critical when by a signal: only the engine can tell
            Kind::MemoryOomKill,
            Kind::SecuritySetuid,
            Kind::SecurityCapability,
            Kind::ProcessFork, // high class, budget 0: never sampled
        ] {
            assert_eq!(mask & bit(k), 0, "{k:?} is not sampled in the kernel");
        }
        // Kinds a user-space filter could reject stay with the engine.
        assert_eq!(
            s.kernel_kinds(!bit(Kind::FileOpen)) & bit(Kind::FileOpen),
            0
        );
    }

    #[test]
    fn critical_is_never_sampled_and_zero_budget_means_no_sampling() {
        let mut s = Sampler::new(0, 0, 1, 1);
        s.tick(1);
        for _ in 0..1000 {
            s.seen[Class::Critical as usize] += 1;
            s.seen[Class::Normal as usize] += 1;
        }
        s.tick(10_000_000);
        assert_eq!(s.rates()[Class::Critical as usize], 1);
        assert_eq!(
            s.rates()[Class::Normal as usize],
            1,
            "budget 0: never sampled"
        );
    }
}
