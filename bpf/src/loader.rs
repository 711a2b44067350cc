//! Loading the collector: config, privilege and BTF checks, per-CPU rings, filters,
//! and attaching exactly the programs the enabled categories need.

use std::collections::BTreeSet;
use std::os::fd::AsFd;

use aya::maps::{ArrayOfMaps, HashMap as BpfHashMap, MapData, MapError, PerCpuArray};
use aya::programs::{BtfTracePoint, ProgramError};
use aya::{Btf, BtfError, Ebpf, EbpfError, EbpfLoader};

use crate::abi::*;
use crate::ring::CpuRing;

/// The compiled BPF object, built by `bpf/build.sh` from `bpf/c/` and committed.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!("../collector.bpf.o");

const BPF_MAP_TYPE_RINGBUF: u32 = 27;
const FILTER_OFF: u32 = 0;
const FILTER_INCLUDE: u32 = 1;
const FILTER_EXCLUDE: u32 = 2;
/// Syscall ids the generic category can keep (`SYSCALL_ID_MAX`).
pub const SYSCALL_ID_MAX: u32 = 512;

/// Default bytes per CPU ring.
pub const DEFAULT_RING_BYTES: u32 = 8 << 20;
/// Default pending bytes that wake the reader.
pub const DEFAULT_WAKEUP_BYTES: u32 = 256 << 10;
/// Largest in-kernel rate limit (and bucket depth) accepted, events/s per CPU.
pub const RATE_PER_SEC_MAX: u64 = 1_000_000_000;
/// Default in-kernel page-fault rate per CPU (events/s).
pub const DEFAULT_PAGE_FAULT_RATE: u64 = 1000;
/// Default capacity of the tgid filter table (entries).
pub const DEFAULT_TGID_FILTER_MAX: u32 = 4096;
/// Default capacity of the cgroup filter table (entries).
pub const DEFAULT_CGROUP_FILTER_MAX: u32 = 1024;

/// Include or exclude a set of ids in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IdFilter<T> {
    /// No filtering.
    #[default]
    Off,
    /// Keep only these.
    Include(Vec<T>),
    /// Drop these.
    Exclude(Vec<T>),
}

impl<T> IdFilter<T> {
    fn mode(&self) -> u32 {
        match self {
            IdFilter::Off => FILTER_OFF,
            IdFilter::Include(_) => FILTER_INCLUDE,
            IdFilter::Exclude(_) => FILTER_EXCLUDE,
        }
    }
    fn ids(&self) -> &[T] {
        match self {
            IdFilter::Off => &[],
            IdFilter::Include(v) | IdFilter::Exclude(v) => v,
        }
    }
}

/// Which syscalls the generic `syscall` category keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyscallSet {
    /// Every syscall (except exit/exit_group, which never return).
    All,
    /// Only these ids (x86_64 numbers, below [`SYSCALL_ID_MAX`]).
    Ids(Vec<u32>),
}

/// Everything the kernel side is told at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Categories to attach. A category that is off has no program attached for it.
    pub categories: BTreeSet<Category>,
    /// Bytes per CPU ring: a power of two, at least one page.
    pub ring_bytes: u32,
    /// Pending bytes at which the reader is woken; 0 wakes it on every record.
    pub wakeup_bytes: u32,
    /// Thread-group filter.
    pub tgid_filter: IdFilter<u32>,
    /// cgroup v2 id filter.
    pub cgroup_filter: IdFilter<u64>,
    /// With an include tgid filter: children forked by an included process are included.
    pub follow_children: bool,
    /// Syscalls kept by the `syscall` category.
    pub syscalls: SyscallSet,
    /// Record generic syscalls at sys_enter only (no result, no latency): about half the
    /// cost per syscall, and no sys_exit program unless file/security need it.
    pub syscall_enter_only: bool,
    /// Per-CPU token-bucket rate (events/s) per rate slot: the category ids, and
    /// [`RATE_SLOT_PAGE_FAULT`] for page faults. 0 = unlimited.
    pub rate_per_sec: [u64; RATE_SLOTS],
    /// Bucket depth per slot (events); at least 1 where a rate is set.
    pub burst: [u64; RATE_SLOTS],
    /// Capacity of the tgid filter table (followed children count against it).
    pub tgid_filter_max: u32,
    /// Capacity of the cgroup filter table.
    pub cgroup_filter_max: u32,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        let mut rate_per_sec = [0; RATE_SLOTS];
        let mut burst = [0; RATE_SLOTS];
        rate_per_sec[RATE_SLOT_PAGE_FAULT] = DEFAULT_PAGE_FAULT_RATE;
        burst[RATE_SLOT_PAGE_FAULT] = DEFAULT_PAGE_FAULT_RATE;
        Self {
            categories: Category::ALL
                .into_iter()
                .filter(|c| *c != Category::Syscall)
                .collect(),
            ring_bytes: DEFAULT_RING_BYTES,
            wakeup_bytes: DEFAULT_WAKEUP_BYTES,
            tgid_filter: IdFilter::Off,
            cgroup_filter: IdFilter::Off,
            follow_children: false,
            syscalls: SyscallSet::Ids(Vec::new()),
            syscall_enter_only: false,
            rate_per_sec,
            burst,
            tgid_filter_max: DEFAULT_TGID_FILTER_MAX,
            cgroup_filter_max: DEFAULT_CGROUP_FILTER_MAX,
        }
    }
}

impl CaptureConfig {
    /// Every problem with this config, each naming the field; empty when it is sound.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let page = page_size();
        if !self.ring_bytes.is_power_of_two() || (self.ring_bytes as usize) < page {
            p.push(format!(
                "ring_bytes: {} is not a power of two of at least one page ({page} bytes)",
                self.ring_bytes
            ));
        }
        if self.wakeup_bytes >= self.ring_bytes {
            p.push(format!(
                "wakeup_bytes: {} must be below ring_bytes ({})",
                self.wakeup_bytes, self.ring_bytes
            ));
        }
        for (slot, (&rate, &burst)) in self.rate_per_sec.iter().zip(&self.burst).enumerate() {
            if rate > RATE_PER_SEC_MAX {
                p.push(format!(
                    "rate_per_sec[{slot}]: {rate} is above 1e9 events/s"
                ));
            }
            if rate > 0 && !(1..=RATE_PER_SEC_MAX).contains(&burst) {
                p.push(format!(
                    "burst[{slot}]: {burst} must be between 1 and 1e9 when a rate is set"
                ));
            }
        }
        if let SyscallSet::Ids(ids) = &self.syscalls {
            for id in ids.iter().filter(|&&id| id >= SYSCALL_ID_MAX) {
                p.push(format!("syscalls: id {id} is not below {SYSCALL_ID_MAX}"));
            }
        }
        if self.tgid_filter.ids().len() > self.tgid_filter_max as usize {
            p.push(format!(
                "tgid_filter: {} ids exceed tgid_filter_max ({})",
                self.tgid_filter.ids().len(),
                self.tgid_filter_max
            ));
        }
        if self.cgroup_filter.ids().len() > self.cgroup_filter_max as usize {
            p.push(format!(
                "cgroup_filter: {} ids exceed cgroup_filter_max ({})",
                self.cgroup_filter.ids().len(),
                self.cgroup_filter_max
            ));
        }
        if self.tgid_filter_max == 0 || self.cgroup_filter_max == 0 {
            p.push("tgid_filter_max, cgroup_filter_max: must be above 0".into());
        }
        p
    }

    fn raw(&self) -> CollectorConfigRaw {
        CollectorConfigRaw {
            self_tgid: std::process::id(),
            categories: self.categories.iter().fold(0, |acc, c| acc | c.bit()),
            tgid_filter: self.tgid_filter.mode(),
            cgroup_filter: self.cgroup_filter.mode(),
            follow_children: self.follow_children as u32,
            syscall_all: matches!(self.syscalls, SyscallSet::All) as u32,
            wakeup_bytes: self.wakeup_bytes,
            syscall_enter_only: self.syscall_enter_only as u32,
            rate_per_sec: self.rate_per_sec,
            burst: self.burst,
        }
    }

    fn has(&self, c: Category) -> bool {
        self.categories.contains(&c)
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}

/// Why the collector could not start. Each variant says what is missing.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid capture config: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error(
        "not privileged to load BPF programs: need root, or CAP_BPF + CAP_PERFMON (effective capabilities: {cap_eff})"
    )]
    Permission { cap_eff: String },
    #[error(
        "kernel BTF is not available (is /sys/kernel/btf/vmlinux present? needs CONFIG_DEBUG_INFO_BTF)"
    )]
    NoBtf(#[source] BtfError),
    #[error("tracepoint {tracepoint} (for category {category}) does not exist in this kernel")]
    MissingTracepoint {
        tracepoint: &'static str,
        category: &'static str,
    },
    #[error("loading the BPF object")]
    Object(#[source] EbpfError),
    #[error("BPF object has no program {0}")]
    NoProgram(&'static str),
    #[error("program {program} on tracepoint {tracepoint}")]
    Program {
        program: &'static str,
        tracepoint: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("map {map}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("listing CPUs ({path})")]
    Cpus {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> LoadError {
    move |source| LoadError::Map { map, source }
}

/// A program of the object and when it is needed.
struct ProgramSpec {
    program: &'static str,
    tracepoint: &'static str,
    category: Category,
    /// Also needed outside its category (fork/exit keep the tgid filter current).
    needed: fn(&CaptureConfig) -> bool,
}

fn by_category(c: &CaptureConfig, cat: Category) -> bool {
    c.has(cat)
}

macro_rules! spec {
    ($prog:expr, $tp:expr, $cat:ident) => {
        ProgramSpec {
            program: $prog,
            tracepoint: $tp,
            category: Category::$cat,
            needed: |c| by_category(c, Category::$cat),
        }
    };
    ($prog:expr, $tp:expr, $cat:ident, $needed:expr) => {
        ProgramSpec {
            program: $prog,
            tracepoint: $tp,
            category: Category::$cat,
            needed: $needed,
        }
    };
}

/// Every program, in attach order (sys_enter before sys_exit so that pairs are not
/// reported unpaired at start-up).
const PROGRAMS: &[ProgramSpec] = &[
    spec!("handle_exec", "sched_process_exec", Process),
    spec!("handle_fork", "sched_process_fork", Process, |c| c
        .has(Category::Process)
        || (c.follow_children
            && matches!(c.tgid_filter, IdFilter::Include(_)))),
    spec!("handle_exit", "sched_process_exit", Process, |c| c
        .has(Category::Process)
        || c.tgid_filter != IdFilter::Off),
    spec!("handle_sys_enter", "sys_enter", File, syscalls_needed),
    spec!("handle_sys_exit", "sys_exit", File, sys_exit_needed),
    spec!("handle_cap_capable", "cap_capable", Security),
    spec!("handle_signal_generate", "signal_generate", Security),
    spec!("handle_inet_sock_set_state", "inet_sock_set_state", Net),
    spec!("handle_tcp_retransmit_skb", "tcp_retransmit_skb", Net),
    spec!("handle_tcp_send_reset", "tcp_send_reset", Net),
    spec!("handle_tcp_receive_reset", "tcp_receive_reset", Net),
    spec!("handle_kfree_skb", "kfree_skb", Net),
    spec!("handle_cgroup_mkdir", "cgroup_mkdir", Container),
    spec!("handle_cgroup_rmdir", "cgroup_rmdir", Container),
    spec!("handle_cgroup_attach_task", "cgroup_attach_task", Container),
    spec!("handle_mark_victim", "mark_victim", Memory),
    spec!(
        "handle_reclaim_begin",
        "mm_vmscan_direct_reclaim_begin",
        Memory
    ),
    spec!("handle_reclaim_end", "mm_vmscan_direct_reclaim_end", Memory),
    spec!("handle_page_fault_user", "page_fault_user", Memory),
];

fn syscalls_needed(c: &CaptureConfig) -> bool {
    c.has(Category::File) || c.has(Category::Security) || c.has(Category::Syscall)
}

fn sys_exit_needed(c: &CaptureConfig) -> bool {
    c.has(Category::File)
        || c.has(Category::Security)
        || (c.has(Category::Syscall) && !c.syscall_enter_only)
}

/// The online CPUs (the ones that get a ring), as the loader sees them.
pub fn online_cpus() -> std::io::Result<Vec<u32>> {
    aya::util::online_cpus().map_err(|(_, e)| e)
}

/// Effective capability mask of this process, as /proc/self/status prints it.
fn cap_eff() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

/// True when this process may load and attach tracing BPF programs.
pub fn privileged() -> bool {
    const CAP_SYS_ADMIN: u64 = 21;
    const CAP_PERFMON: u64 = 38;
    const CAP_BPF: u64 = 39;
    match cap_eff() {
        Some(c) => {
            c & (1 << CAP_SYS_ADMIN) != 0
                || (c & (1 << CAP_BPF) != 0 && c & (1 << CAP_PERFMON) != 0)
        }
        None => {
            // SAFETY: geteuid has no preconditions.
            let euid = unsafe { libc::geteuid() };
            euid == 0
        }
    }
}

/// The loaded, attached collector. Dropping it detaches every program; rings taken
/// with [`Collector::take_rings`] stay readable until they are dropped.
pub struct Collector {
    ebpf: Ebpf,
    rings: Vec<CpuRing>,
    attached: Vec<&'static str>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("rings", &self.rings.len())
            .field("attached", &self.attached)
            .finish()
    }
}

impl Collector {
    /// Loads the object, creates one ring per online CPU, fills the filter tables and
    /// attaches the programs that the enabled categories need.
    pub fn load(config: &CaptureConfig) -> Result<Collector, LoadError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(LoadError::Config(problems));
        }
        if !privileged() {
            return Err(LoadError::Permission {
                cap_eff: cap_eff().map_or("unknown".into(), |c| format!("{c:#x}")),
            });
        }
        let btf = Btf::from_sys_fs().map_err(LoadError::NoBtf)?;
        let wanted: Vec<&ProgramSpec> = PROGRAMS.iter().filter(|p| (p.needed)(config)).collect();
        for p in &wanted {
            let name = format!("btf_trace_{}", p.tracepoint);
            if btf
                .id_by_type_name_kind(&name, aya_obj::btf::BtfKind::Typedef)
                .is_err()
            {
                return Err(LoadError::MissingTracepoint {
                    tracepoint: p.tracepoint,
                    category: p.category.name(),
                });
            }
        }

        let possible =
            aya::util::nr_cpus().map_err(|(path, source)| LoadError::Cpus { path, source })?;
        let online =
            aya::util::online_cpus().map_err(|(path, source)| LoadError::Cpus { path, source })?;
        let raw = config.raw();
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            // The syscall pairing table is task storage, which aya creates but has no
            // typed wrapper for; only the BPF side touches it.
            .allow_unsupported_maps()
            .override_global("CONFIG", &raw, true)
            .map_max_entries("rings", possible as u32)
            .map_max_entries("sample_n", possible as u32 * KIND_MAX as u32)
            .map_max_entries("tgid_filter", config.tgid_filter_max)
            .map_max_entries("cgroup_filter", config.cgroup_filter_max)
            .load(OBJECT)
            .map_err(LoadError::Object)?;

        let rings = create_rings(&mut ebpf, &online, config.ring_bytes)?;
        fill_filters(&mut ebpf, config)?;

        let mut attached = Vec::new();
        for p in wanted {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(p.program)
                .ok_or(LoadError::NoProgram(p.program))?
                .try_into()
                .map_err(|source| LoadError::Program {
                    program: p.program,
                    tracepoint: p.tracepoint,
                    source,
                })?;
            let err = |source| LoadError::Program {
                program: p.program,
                tracepoint: p.tracepoint,
                source,
            };
            prog.load(p.tracepoint, &btf).map_err(err)?;
            prog.attach().map_err(|source| LoadError::Program {
                program: p.program,
                tracepoint: p.tracepoint,
                source,
            })?;
            attached.push(p.tracepoint);
        }
        Ok(Collector {
            ebpf,
            rings,
            attached,
        })
    }

    /// The per-CPU rings, one per online CPU, to hand to the threads that drain them.
    /// Empty after the first call.
    pub fn take_rings(&mut self) -> Vec<CpuRing> {
        std::mem::take(&mut self.rings)
    }

    /// Detaches and unloads every program: no new record is produced after this returns
    /// (one already being written may still be committed). Maps, rings and counters stay
    /// readable, so a reader can drain the rings and read final counters.
    pub fn stop(&mut self) -> Result<(), LoadError> {
        for p in PROGRAMS {
            if !self.attached.contains(&p.tracepoint) {
                continue;
            }
            let err = |source| LoadError::Program {
                program: p.program,
                tracepoint: p.tracepoint,
                source,
            };
            if let Some(prog) = self.ebpf.program_mut(p.program) {
                let prog: &mut BtfTracePoint = prog.try_into().map_err(err)?;
                prog.unload().map_err(err)?;
            }
        }
        self.attached.clear();
        Ok(())
    }

    /// Tracepoints attached, in attach order.
    pub fn attached(&self) -> &[&'static str] {
        &self.attached
    }

    /// Adds a tgid to the tgid filter table while running (include or exclude, as
    /// configured). With `follow_children`, its future children follow.
    pub fn filter_tgid(&mut self, tgid: u32) -> Result<(), LoadError> {
        let map = self.ebpf.map_mut("tgid_filter").ok_or(LoadError::Map {
            map: "tgid_filter",
            source: MapError::InvalidName {
                name: "tgid_filter".into(),
            },
        })?;
        let mut m: BpfHashMap<&mut MapData, u32, u8> =
            BpfHashMap::try_from(map).map_err(map_err("tgid_filter"))?;
        m.insert(tgid, 1, 0).map_err(map_err("tgid_filter"))
    }

    /// A handle on the kernel's sampling table, for one core thread to set the 1-in-N of
    /// the CPUs it drains (each call opens its own handle: no lock between threads).
    pub fn kernel_sampling(&self) -> Result<KernelSampling, LoadError> {
        let map = self.ebpf.map("sample_n").ok_or(LoadError::Map {
            map: "sample_n",
            source: MapError::InvalidName {
                name: "sample_n".into(),
            },
        })?;
        let fd = match map {
            aya::maps::Map::Array(data) => data
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| map_err("sample_n")(MapError::IoError(e)))?,
            _ => {
                return Err(map_err("sample_n")(MapError::InvalidMapType {
                    map_type: 0,
                }));
            }
        };
        let data = MapData::from_fd(fd).map_err(map_err("sample_n"))?;
        let array =
            aya::maps::Array::try_from(aya::maps::Map::Array(data)).map_err(map_err("sample_n"))?;
        Ok(KernelSampling { array })
    }

    /// Counters per possible CPU, indexed `[cpu][kind id]`.
    pub fn counters_per_cpu(&self) -> Result<Vec<Vec<KindCounters>>, LoadError> {
        let map = self.ebpf.map("counters").ok_or(LoadError::Map {
            map: "counters",
            source: MapError::InvalidName {
                name: "counters".into(),
            },
        })?;
        let arr: PerCpuArray<&MapData, KindCounters> =
            PerCpuArray::try_from(map).map_err(map_err("counters"))?;
        let mut out: Vec<Vec<KindCounters>> = Vec::new();
        for kind in 0..KIND_MAX as u32 {
            let values = arr.get(&kind, 0).map_err(map_err("counters"))?;
            for (cpu, v) in values.iter().enumerate() {
                if out.len() <= cpu {
                    out.push(vec![KindCounters::default(); KIND_MAX]);
                }
                out[cpu][kind as usize] = *v;
            }
        }
        Ok(out)
    }

    /// Counters summed over CPUs, indexed by kind id.
    pub fn counters(&self) -> Result<Vec<KindCounters>, LoadError> {
        let mut total = vec![KindCounters::default(); KIND_MAX];
        for cpu in self.counters_per_cpu()? {
            for (t, c) in total.iter_mut().zip(&cpu) {
                t.add(c);
            }
        }
        Ok(total)
    }
}

/// The kernel's 1-in-N per CPU and kind (map `sample_n`): the BPF programs decide before
/// reserving ring space, count what they leave out (`KindCounters::sampled`) and stamp N
/// in the kept record's header (`EventHeader::weight`).
pub struct KernelSampling {
    array: aya::maps::Array<MapData, u32>,
}

impl std::fmt::Debug for KernelSampling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelSampling").finish()
    }
}

impl KernelSampling {
    /// Sets the 1-in-N of `kind` on `cpu` (1: keep everything). The kernel never samples
    /// critical kinds, whatever is set here.
    pub fn set(&mut self, cpu: u32, kind: usize, n: u32) -> Result<(), LoadError> {
        let index = cpu * KIND_MAX as u32 + kind as u32;
        self.array
            .set(index, n.max(1), 0)
            .map_err(map_err("sample_n"))
    }
}

fn create_rings(
    ebpf: &mut Ebpf,
    online: &[u32],
    ring_bytes: u32,
) -> Result<Vec<CpuRing>, LoadError> {
    let outer = ebpf.map_mut("rings").ok_or(LoadError::Map {
        map: "rings",
        source: MapError::InvalidName {
            name: "rings".into(),
        },
    })?;
    let mut outer: ArrayOfMaps<&mut MapData> =
        ArrayOfMaps::try_from(outer).map_err(map_err("rings"))?;
    let mut rings = Vec::with_capacity(online.len());
    for &cpu in online {
        let obj = aya_obj::Map::new_from_params(BPF_MAP_TYPE_RINGBUF, 0, 0, ring_bytes, 0);
        let data =
            MapData::create(obj, &format!("ring_cpu{cpu}"), None).map_err(map_err("rings"))?;
        outer.set(cpu, &data, 0).map_err(map_err("rings"))?;
        let ring = CpuRing::new(cpu, data, ring_bytes)
            .map_err(|e| map_err("rings")(MapError::IoError(e)))?;
        rings.push(ring);
    }
    Ok(rings)
}

fn fill_filters(ebpf: &mut Ebpf, config: &CaptureConfig) -> Result<(), LoadError> {
    fn table<'a>(
        ebpf: &'a mut Ebpf,
        name: &'static str,
    ) -> Result<&'a mut aya::maps::Map, LoadError> {
        ebpf.map_mut(name).ok_or(LoadError::Map {
            map: name,
            source: MapError::InvalidName { name: name.into() },
        })
    }
    {
        let mut m: BpfHashMap<&mut MapData, u32, u8> =
            BpfHashMap::try_from(table(ebpf, "tgid_filter")?).map_err(map_err("tgid_filter"))?;
        for &tgid in config.tgid_filter.ids() {
            m.insert(tgid, 1, 0).map_err(map_err("tgid_filter"))?;
        }
    }
    {
        let mut m: BpfHashMap<&mut MapData, u64, u8> =
            BpfHashMap::try_from(table(ebpf, "cgroup_filter")?)
                .map_err(map_err("cgroup_filter"))?;
        for &id in config.cgroup_filter.ids() {
            m.insert(id, 1, 0).map_err(map_err("cgroup_filter"))?;
        }
    }
    if let SyscallSet::Ids(ids) = &config.syscalls {
        let mut m: aya::maps::Array<&mut MapData, u8> =
            aya::maps::Array::try_from(table(ebpf, "syscall_ids")?)
                .map_err(map_err("syscall_ids"))?;
        for &id in ids {
            m.set(id, 1, 0).map_err(map_err("syscall_ids"))?;
        }
    }
    Ok(())
}
