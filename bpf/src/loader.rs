//! Loading the collector: config, privilege and BTF checks, per-CPU rings, filters,
//! and attaching exactly the programs the enabled categories need.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd as _};

use aya::maps::{ArrayOfMaps, HashMap as BpfHashMap, MapData, MapError, PerCpuArray};
use aya::programs::{ProgramError, TracePoint};
use aya::{Btf, BtfError, Ebpf, EbpfError, EbpfLoader};

use crate::abi::*;
use crate::hooks::{Attach, CaptureReport, Prog, Reason, SOURCES, last_lines};
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
/// Default `perf.runq_wait` threshold: 10 ms.
pub const DEFAULT_RUNQ_SLOW_NS: u64 = 10_000_000;
/// Default `perf.io_slow` threshold: 100 ms.
pub const DEFAULT_IO_SLOW_NS: u64 = 100_000_000;
/// Default capacity of the per-flow traffic table.
pub const DEFAULT_FLOWS_MAX: u32 = 8192;
/// Default capacity of the per-process scheduling table.
pub const DEFAULT_TASKS_MAX: u32 = 4096;
/// Default capacity of the per-cgroup run-queue histogram table.
pub const DEFAULT_RUNQ_CGROUPS_MAX: u32 = 1024;

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
    /// Take the file and security calls from the per-syscall tracepoints
    /// (`syscalls:sys_enter_openat`, ...) when tracefs has them (it is mounted if it is
    /// not), so that every other syscall runs no program at all. `false`, or no tracefs:
    /// the raw sys_enter/sys_exit programs, which run on every syscall.
    pub syscall_events: bool,
    /// Per-CPU token-bucket rate (events/s) per rate slot: the category ids, and
    /// [`RATE_SLOT_PAGE_FAULT`] for page faults. 0 = unlimited.
    pub rate_per_sec: [u64; RATE_SLOTS],
    /// Bucket depth per slot (events); at least 1 where a rate is set.
    pub burst: [u64; RATE_SLOTS],
    /// Capacity of the tgid filter table (followed children count against it).
    pub tgid_filter_max: u32,
    /// Capacity of the cgroup filter table.
    pub cgroup_filter_max: u32,
    /// `perf.runq_wait` records for run-queue waits at least this long (ns); 0: none.
    pub runq_slow_ns: u64,
    /// `perf.io_slow` records for block requests at least this long (ns); 0: none.
    pub io_slow_ns: u64,
    /// Capacity of the per-cgroup run-queue histogram table.
    pub runq_cgroups_max: u32,
    /// Capacity of the per-flow traffic table.
    pub flows_max: u32,
    /// Capacity of the per-process scheduling table.
    pub tasks_max: u32,
    /// Which signals of the `perf` category to attach: scheduler, block I/O, network.
    pub perf_signals: PerfSignals,
    /// Hooks never to use (`tp_btf/cap_capable`, `fexit/sock_sendmsg`, as
    /// [`known_hooks`] names them): a candidate with one is passed over as if this
    /// kernel lacked it, so the next one supplies its kinds.
    pub deny_hooks: Vec<String>,
}

/// The signals of the `perf` category (each a set of programs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerfSignals {
    /// Run-queue latency, context switches and off-CPU time (sched_wakeup*, sched_switch).
    pub sched: bool,
    /// Block I/O latency (block_rq_insert/issue/complete).
    pub block: bool,
    /// Traffic per flow (sock_send_length/sock_recv_length) and TCP lifetimes.
    pub net: bool,
}

impl Default for PerfSignals {
    fn default() -> Self {
        PerfSignals {
            sched: true,
            block: true,
            net: true,
        }
    }
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
                .filter(|c| !matches!(c, Category::Syscall | Category::Perf))
                .collect(),
            ring_bytes: DEFAULT_RING_BYTES,
            wakeup_bytes: DEFAULT_WAKEUP_BYTES,
            tgid_filter: IdFilter::Off,
            cgroup_filter: IdFilter::Off,
            follow_children: false,
            syscalls: SyscallSet::Ids(Vec::new()),
            syscall_enter_only: false,
            syscall_events: true,
            rate_per_sec,
            burst,
            tgid_filter_max: DEFAULT_TGID_FILTER_MAX,
            cgroup_filter_max: DEFAULT_CGROUP_FILTER_MAX,
            runq_slow_ns: DEFAULT_RUNQ_SLOW_NS,
            io_slow_ns: DEFAULT_IO_SLOW_NS,
            runq_cgroups_max: DEFAULT_RUNQ_CGROUPS_MAX,
            flows_max: DEFAULT_FLOWS_MAX,
            tasks_max: DEFAULT_TASKS_MAX,
            perf_signals: PerfSignals::default(),
            deny_hooks: Vec::new(),
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
        let known = known_hooks();
        for h in &self.deny_hooks {
            if !known.contains(h) {
                p.push(format!(
                    "deny_hooks: {h:?} is no hook of the collector (known: {})",
                    known.join(", ")
                ));
            }
        }
        if self.runq_cgroups_max == 0 || self.flows_max == 0 || self.tasks_max == 0 {
            p.push("runq_cgroups_max, flows_max, tasks_max: must be above 0".into());
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
            syscall_events: self.syscall_events as u32,
            _pad0: 0,
            rate_per_sec: self.rate_per_sec,
            burst: self.burst,
            runq_slow_ns: self.runq_slow_ns,
            io_slow_ns: self.io_slow_ns,
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
    #[error("nothing could be captured on this kernel: {0}")]
    Nothing(String),
    #[error("loading the BPF object: {0}")]
    Object(#[source] EbpfError),
    // The source says why (for a program the kernel refused: the verifier's log).
    #[error("program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("listing CPUs ({path}): {source}")]
    Cpus {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> LoadError {
    move |source| LoadError::Map { map, source }
}

/// One row of [`SYSCALL_EVENTS`] from a call's number, name, argument count and kind.
macro_rules! call {
    ($nr:expr, $name:literal, $args:expr, $kind:ident) => {
        (
            $nr,
            concat!("sys_enter_", $name),
            concat!("sys_exit_", $name),
            $args,
            Kind::$kind,
        )
    };
}

/// The calls behind the file and security kinds, by x86_64 number, with the name of their
/// tracepoints (`syscalls:sys_enter_<name>`, `sys_exit_<name>`), their argument count (the
/// enter program that reads that many) and the kind they make.
const SYSCALL_EVENTS: &[(u32, &str, &str, usize, Kind)] = &[
    call!(2, "open", 3, FileOpen),
    call!(85, "creat", 2, FileOpen),
    call!(257, "openat", 4, FileOpen),
    call!(437, "openat2", 4, FileOpen),
    call!(84, "rmdir", 1, FileUnlink),
    call!(87, "unlink", 1, FileUnlink),
    call!(263, "unlinkat", 3, FileUnlink),
    call!(82, "rename", 2, FileRename),
    call!(264, "renameat", 4, FileRename),
    call!(316, "renameat2", 5, FileRename),
    call!(90, "chmod", 2, FileChmod),
    call!(91, "fchmod", 2, FileChmod),
    call!(268, "fchmodat", 3, FileChmod),
    call!(452, "fchmodat2", 4, FileChmod),
    call!(105, "setuid", 1, SecuritySetuid),
    call!(113, "setreuid", 2, SecuritySetuid),
    call!(117, "setresuid", 3, SecuritySetuid),
    call!(122, "setfsuid", 1, SecuritySetuid),
    call!(106, "setgid", 1, SecuritySetgid),
    call!(114, "setregid", 2, SecuritySetgid),
    call!(119, "setresgid", 3, SecuritySetgid),
    call!(123, "setfsgid", 1, SecuritySetgid),
    call!(101, "ptrace", 4, SecurityPtrace),
    call!(175, "init_module", 3, SecurityModuleLoad),
    call!(313, "finit_module", 3, SecurityModuleLoad),
    call!(176, "delete_module", 2, SecurityModuleUnload),
    call!(321, "bpf", 3, SecurityBpf),
    call!(165, "mount", 5, SecurityMount),
    call!(166, "umount", 2, SecurityUmount),
];

/// The tracefs mount with the syscall events, mounting tracefs at /sys/kernel/tracing when
/// nothing is mounted there yet. `None` when there is none to be had.
fn syscall_events_dir() -> Option<std::path::PathBuf> {
    let dirs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    let found = || {
        dirs.iter()
            .map(|d| std::path::Path::new(d).join("events/syscalls"))
            .find(|p| p.is_dir())
    };
    if let Some(p) = found() {
        return Some(p);
    }
    // SAFETY: mount(2) with NUL-terminated constant strings and no data.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return None;
    }
    found()
}

/// The per-syscall events to attach for `c`: `(enter, exit)` of each file/security call
/// whose category is on and whose events this kernel has (a call built out of the kernel,
/// such as the module calls without module support, has none: it only fails with ENOSYS).
/// Empty when the events cannot be used: then the raw programs carry those calls.
/// The enter programs for calls of 1 to 5 arguments.
const SC_ENTER_PROGRAMS: [&str; 5] = [
    "handle_sc_enter1",
    "handle_sc_enter2",
    "handle_sc_enter3",
    "handle_sc_enter4",
    "handle_sc_enter5",
];

/// The per-syscall events of one call: enter, exit, argument count, kind.
type CallEvents = (&'static str, &'static str, usize, Kind);

fn syscall_events(c: &CaptureConfig) -> Option<(std::path::PathBuf, Vec<CallEvents>)> {
    if !c.syscall_events || !(c.has(Category::File) || c.has(Category::Security)) {
        return None;
    }
    let dir = syscall_events_dir()?;
    let calls: Vec<_> = SYSCALL_EVENTS
        .iter()
        .filter(|(_, enter, exit, _, kind)| {
            c.has(kind.category())
                && dir.join(enter).join("id").exists()
                && dir.join(exit).join("id").exists()
        })
        .map(|&(_, enter, exit, args, kind)| (enter, exit, args, kind))
        .collect();
    (!calls.is_empty()).then_some((dir, calls))
}

/// `struct perf_event_attr` as of its first version (64 bytes; the kernel takes any
/// known size).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `_IOW('$', 8, __u32)` and `_IO('$', 0)`.
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;

/// Attaches program `prog` to the tracefs event at `event` (its folder, with an `id`)
/// through a perf event and the SET_BPF ioctl, as bpftrace does: the program runs on
/// every CPU until the returned descriptor is closed. (aya's bpf_link route for perf
/// events is refused with EPERM on the kernels this runs on.)
fn attach_event(
    prog: std::os::fd::BorrowedFd<'_>,
    event: &std::path::Path,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let id: u64 = std::fs::read_to_string(event.join("id"))?
        .trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("{}/id is not a number", event.display())))?;
    let attr = PerfEventAttr {
        kind: PERF_TYPE_TRACEPOINT,
        size: size_of::<PerfEventAttr>() as u32,
        config: id,
        sample_period: 1,
        wakeup_events: 1,
        ..PerfEventAttr::default()
    };
    // SAFETY: perf_event_open(2) reads `attr` (valid, its size given) and returns a new
    // descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            -1i32,
            0i32,
            -1i32,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    for (req, arg) in [
        (PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd() as libc::c_ulong),
        (PERF_EVENT_IOC_ENABLE, 0),
    ] {
        // SAFETY: ioctls on the perf event descriptor we own, with a program fd (or
        // nothing) as argument.
        if unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(fd)
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
    /// The tracepoints and functions with a program attached (each once).
    attached: Vec<&'static str>,
    /// The hooks attached, each once, in attach order (per-syscall events apart).
    hooks: Vec<Attach>,
    /// The programs loaded and attached (two may share a tracepoint).
    programs: Vec<&'static str>,
    /// The perf events the per-syscall programs are attached through (closing one
    /// detaches it).
    event_fds: Vec<std::os::fd::OwnedFd>,
    /// Which hook supplies each kind, and what is not captured.
    report: CaptureReport,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("rings", &self.rings.len())
            .field("attached", &self.attached)
            .finish()
    }
}

/// Every hook a source can be supplied by, as `capture.deny_hooks` names them.
pub fn known_hooks() -> Vec<String> {
    let mut v: Vec<String> = SOURCES
        .iter()
        .flat_map(|s| s.candidates.iter())
        .flat_map(|c| c.iter())
        .map(|p| p.attach.to_string())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Why one candidate failed: the class and a line for the report.
fn candidate_failure(p: &Prog, e: &ProgramError) -> (Reason, String) {
    match e {
        ProgramError::LoadError { verifier_log, .. }
            if verifier_log.to_string().trim().is_empty() =>
        {
            (Reason::Refused, format!("{} {}: {e}", p.attach, p.program))
        }
        ProgramError::LoadError { verifier_log, .. } => {
            let log = last_lines(&verifier_log.to_string(), 4);
            (
                Reason::Verifier,
                format!("{} {}: {e}: {log}", p.attach, p.program),
            )
        }
        // The tracepoint or function is not in this kernel's BTF.
        ProgramError::Btf(_) => (Reason::NoHook, format!("{}: not in this kernel", p.attach)),
        _ => (Reason::Attach, format!("{} {}: {e}", p.attach, p.program)),
    }
}

/// Unloads program `name` whatever its type (detaching its links).
fn unload(ebpf: &mut Ebpf, name: &str) -> Result<(), ProgramError> {
    match ebpf.program_mut(name) {
        Some(aya::programs::Program::BtfTracePoint(p)) => p.unload(),
        Some(aya::programs::Program::FExit(p)) => p.unload(),
        Some(aya::programs::Program::FEntry(p)) => p.unload(),
        Some(aya::programs::Program::TracePoint(p)) => p.unload(),
        _ => Ok(()),
    }
}

/// Loads tracefs program `program`, returning its descriptor.
fn load_tracefs_program<'a>(
    ebpf: &'a mut Ebpf,
    program: &str,
) -> Result<std::os::fd::BorrowedFd<'a>, ProgramError> {
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or(ProgramError::UnexpectedProgramType)?
        .try_into()?;
    prog.load()?;
    Ok(prog.fd()?.as_fd())
}

/// Loads and attaches one program.
fn load_one(ebpf: &mut Ebpf, btf: &Btf, p: &Prog) -> Result<(), ProgramError> {
    let Some(prog) = ebpf.program_mut(p.program) else {
        return Err(ProgramError::UnexpectedProgramType);
    };
    match (p.attach, prog) {
        (Attach::TpBtf(t), aya::programs::Program::BtfTracePoint(prog)) => {
            prog.load(t, btf)?;
            prog.attach().map(drop)
        }
        (Attach::FExit(f), aya::programs::Program::FExit(prog)) => {
            prog.load(f, btf)?;
            prog.attach().map(drop)
        }
        (Attach::FEntry(f), aya::programs::Program::FEntry(prog)) => {
            prog.load(f, btf)?;
            prog.attach().map(drop)
        }
        _ => Err(ProgramError::UnexpectedProgramType),
    }
}

impl Collector {
    /// Loads the object, creates one ring per online CPU, fills the filter tables and
    /// attaches, for every source the enabled categories need, the first of its
    /// candidate hooks that loads and attaches. A source with none costs its kinds
    /// (see [`Collector::report`]), not the capture; the load fails only when nothing
    /// at all could be attached, or on what no program can do without (privileges,
    /// BTF, maps, rings).
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
        // Each tracepoint's argument count on this kernel (empty if unreadable: then
        // every program is tried, and the verifier judges alone).
        let prototypes = std::fs::read("/sys/kernel/btf/vmlinux")
            .ok()
            .and_then(|b| crate::prototypes::tracepoint_args(&b))
            .unwrap_or_default();
        let events = syscall_events(config);
        let calls: &[CallEvents] = events.as_ref().map_or(&[], |(_, c)| c);
        let mut resolved = config.clone();
        resolved.syscall_events = events.is_some();
        let config = &resolved;

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
            .map_max_entries("runq_cgroup", config.runq_cgroups_max)
            .map_max_entries("net_flows", config.flows_max)
            .map_max_entries("task_sched", config.tasks_max)
            .map_max_entries("task_comm", config.tasks_max)
            .load(OBJECT)
            .map_err(LoadError::Object)?;

        let rings = create_rings(&mut ebpf, &online, config.ring_bytes)?;
        fill_filters(&mut ebpf, config)?;

        let mut report = CaptureReport::default();
        let mut attached: Vec<&'static str> = Vec::new();
        let mut hooks: Vec<Attach> = Vec::new();
        let mut programs: Vec<&'static str> = Vec::new();
        for source in SOURCES.iter().filter(|s| (s.needed)(config)) {
            // Only kinds of a configured category are reported (fork and exit also
            // run for the tgid filter; sys_enter/sys_exit also carry file and security
            // calls, reported below).
            let kinds: Vec<&'static str> = source
                .kinds
                .iter()
                .copied()
                .filter(|_| config.has(source.category))
                .collect();
            let mut tried: Vec<String> = Vec::new();
            let mut reason = Reason::NoHook;
            let mut chosen = None;
            for candidate in source.candidates {
                let mut done: Vec<&'static str> = Vec::new();
                let mut failed = None;
                if let Some(p) = candidate
                    .iter()
                    .find(|p| config.deny_hooks.iter().any(|d| *d == p.attach.to_string()))
                {
                    tried.push(format!("{}: denied by capture.deny_hooks", p.attach));
                    continue;
                }
                for p in candidate.iter() {
                    if let Attach::TpBtf(t) = p.attach
                        && !prototypes.is_empty()
                    {
                        let line = match prototypes.get(t) {
                            None => Some(format!("{}: not in this kernel", p.attach)),
                            Some(&n) if n < p.args => Some(format!(
                                "{}: this kernel's prototype has {n} argument(s), {} reads {}",
                                p.attach, p.program, p.args
                            )),
                            Some(_) => None,
                        };
                        if let Some(line) = line {
                            failed = Some((Reason::NoHook, line));
                            break;
                        }
                    }
                    match load_one(&mut ebpf, &btf, p) {
                        Ok(()) => done.push(p.program),
                        Err(e) => {
                            failed = Some(candidate_failure(p, &e));
                            break;
                        }
                    }
                }
                match failed {
                    None => {
                        chosen = Some(*candidate);
                        programs.extend(done);
                        break;
                    }
                    Some((r, line)) => {
                        // A candidate is all or nothing.
                        for name in done {
                            let _ = unload(&mut ebpf, name);
                        }
                        if r != Reason::NoHook || reason == Reason::NoHook {
                            reason = r;
                        }
                        tried.push(line);
                    }
                }
            }
            match chosen {
                Some(candidate) => {
                    // A program per prototype on one hook: named, so that the report
                    // tells which prototype this kernel has.
                    let first = source.candidates[0];
                    let variant = !std::ptr::eq(candidate, first)
                        && candidate
                            .iter()
                            .map(|p| p.attach)
                            .eq(first.iter().map(|p| p.attach));
                    let hook = candidate
                        .iter()
                        .map(|p| {
                            if variant {
                                format!("{}({})", p.attach, p.program)
                            } else {
                                p.attach.to_string()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("+");
                    for p in candidate.iter() {
                        if !attached.contains(&p.attach.target()) {
                            attached.push(p.attach.target());
                        }
                        if !hooks.contains(&p.attach) {
                            hooks.push(p.attach);
                        }
                    }
                    for kind in kinds {
                        report.hooked(kind, hook.clone());
                    }
                }
                None => {
                    for kind in kinds {
                        report.missing(kind, reason, tried.join("\n"));
                    }
                }
            }
        }
        let raw_enter = programs.contains(&"handle_sys_enter");
        let raw_exit = programs.contains(&"handle_sys_exit");
        // The per-syscall programs, each attached to the events of every call it serves;
        // enter before exit, as above.
        let mut event_fds = Vec::new();
        let mut event_failures: Vec<String> = Vec::new();
        let mut events_attached: Vec<&'static str> = Vec::new();
        if let Some((dir, _)) = &events {
            // Enter programs by argument count, then the exit program.
            let sides = SC_ENTER_PROGRAMS
                .iter()
                .enumerate()
                .map(|(i, p)| (*p, Some(i + 1)))
                .chain([("handle_sc_exit", None)]);
            for (program, args) in sides {
                let mine: Vec<&'static str> = calls
                    .iter()
                    .filter(|c| args.is_none_or(|n| c.2 == n))
                    .map(|c| if args.is_some() { c.0 } else { c.1 })
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let fd = match load_tracefs_program(&mut ebpf, program) {
                    Ok(fd) => fd,
                    Err(e) => {
                        let p = Prog {
                            program,
                            attach: Attach::TpBtf("syscalls"),
                            args: 0,
                        };
                        event_failures.push(candidate_failure(&p, &e).1);
                        continue;
                    }
                };
                for tracepoint in mine {
                    match attach_event(fd, &dir.join(tracepoint)) {
                        Ok(event) => {
                            event_fds.push(event);
                            attached.push(tracepoint);
                            events_attached.push(tracepoint);
                        }
                        Err(e) => event_failures
                            .push(format!("tracefs syscalls:{tracepoint} {program}: {e}")),
                    }
                }
                programs.push(program);
            }
        }
        // The file and security calls: per-syscall events (a call counts when both its
        // events are attached), else the raw programs.
        let mut syscall_kinds: Vec<Kind> = SYSCALL_EVENTS.iter().map(|e| e.4).collect();
        syscall_kinds.dedup();
        for kind in syscall_kinds {
            if !config.has(kind.category()) {
                continue;
            }
            if events.is_some() {
                let mine = calls.iter().filter(|c| c.3 == kind);
                let ok: Vec<&str> = mine
                    .clone()
                    .filter(|c| events_attached.contains(&c.0) && events_attached.contains(&c.1))
                    .map(|c| c.0.trim_start_matches("sys_enter_"))
                    .collect();
                if mine.clone().next().is_none() {
                    // Built out of this kernel (module calls without module support):
                    // they only fail with ENOSYS, so nothing of the kind can happen.
                    let names: Vec<&str> = SYSCALL_EVENTS
                        .iter()
                        .filter(|e| e.4 == kind)
                        .map(|e| e.1.trim_start_matches("sys_enter_"))
                        .collect();
                    report.hooked(
                        kind.name(),
                        format!("none needed: this kernel has no {} call", names.join("/")),
                    );
                } else if ok.is_empty() {
                    report.missing(
                        kind.name(),
                        Reason::Attach,
                        if event_failures.is_empty() {
                            "no syscalls:sys_enter_/sys_exit_ event of its calls in tracefs".into()
                        } else {
                            event_failures.join("\n")
                        },
                    );
                } else {
                    report.hooked(
                        kind.name(),
                        format!("tracefs/syscalls:sys_{{enter,exit}}_{{{}}}", ok.join(",")),
                    );
                }
            } else if raw_enter && raw_exit {
                report.hooked(kind.name(), "tp_btf/sys_enter+tp_btf/sys_exit".into());
            } else {
                report.missing(
                    kind.name(),
                    Reason::Attach,
                    "the raw sys_enter/sys_exit programs did not load".into(),
                );
            }
        }
        if programs.is_empty() {
            return Err(LoadError::Nothing(
                report
                    .unavailable
                    .iter()
                    .map(|u| format!("{}: {}", u.kind, u.detail.replace('\n', "; ")))
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        Ok(Collector {
            ebpf,
            rings,
            attached,
            hooks,
            programs,
            event_fds,
            report,
        })
    }

    /// Which hook supplies each kind on this kernel, and the kinds configured that are
    /// not captured, with why.
    pub fn report(&self) -> &CaptureReport {
        &self.report
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
        for program in std::mem::take(&mut self.programs) {
            unload(&mut self.ebpf, program)
                .map_err(|source| LoadError::Program { program, source })?;
        }
        self.event_fds.clear();
        self.attached.clear();
        self.hooks.clear();
        Ok(())
    }

    /// What is attached, for a log line: the tracepoints, with the per-syscall ones
    /// folded into one entry naming their calls.
    pub fn attached_summary(&self) -> String {
        let calls: Vec<&str> = self
            .attached
            .iter()
            .filter_map(|t| t.strip_prefix("sys_enter_"))
            .collect();
        // Tracepoints by name (as before), functions with their attach type.
        let mut parts: Vec<String> = self
            .hooks
            .iter()
            .map(|h| match h {
                Attach::TpBtf(t) => t.to_string(),
                other => other.to_string(),
            })
            .collect();
        parts.dedup();
        if !calls.is_empty() {
            parts.push(format!(
                "syscalls:sys_{{enter,exit}}_{{{}}}",
                calls.join(",")
            ));
        }
        parts.join(", ")
    }

    /// Tracepoints and functions attached (by name), in attach order.
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

/// The perf category's cumulative histograms as the kernel holds them (maps `runq_cpu`,
/// `runq_cgroup`, `io_hist`, `perf_counters`); a reader takes differences.
#[derive(Debug, Clone, Default)]
pub struct PerfSnapshot {
    /// One per possible CPU (the CPU the task ran on after its wait).
    pub per_cpu: Vec<RunqHist>,
    /// Per cgroup id of the waiting task, in the table's order.
    pub per_cgroup: Vec<(u64, RunqHist)>,
    /// Block I/O latency per device and operation, in the table's order.
    pub io: Vec<(IoKey, IoHist)>,
    /// Traffic per flow and process, in the table's order.
    pub flows: Vec<(FlowKey, FlowValue)>,
    /// Scheduling per process (tgid), summed over CPUs, in the table's order.
    pub tasks: Vec<(u32, TaskSched)>,
    /// Summed over CPUs.
    pub counters: PerfCounters,
    /// Buffers of the batch reads, kept between reads.
    scratch: BatchScratch,
}

/// Key and value buffers of `BPF_MAP_LOOKUP_BATCH`, grown to a table's size once.
#[derive(Debug, Clone, Default)]
struct BatchScratch {
    keys: Vec<u64>,
    values: Vec<u64>,
    /// False once the kernel has refused batch reads (before 5.6): entry by entry.
    unsupported: bool,
}

impl Collector {
    /// Reads the perf category's histograms into `out` (its vectors reused).
    pub fn perf_snapshot(&self, out: &mut PerfSnapshot) -> Result<(), LoadError> {
        fn map<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a aya::maps::Map, LoadError> {
            ebpf.map(name).ok_or(LoadError::Map {
                map: name,
                source: MapError::InvalidName { name: name.into() },
            })
        }
        let cpus: PerCpuArray<&MapData, RunqHist> =
            PerCpuArray::try_from(map(&self.ebpf, "runq_cpu")?).map_err(map_err("runq_cpu"))?;
        out.per_cpu.clear();
        out.per_cpu.extend(
            cpus.get(&0, 0)
                .map_err(map_err("runq_cpu"))?
                .iter()
                .copied(),
        );
        let counters: PerCpuArray<&MapData, PerfCounters> =
            PerCpuArray::try_from(map(&self.ebpf, "perf_counters")?)
                .map_err(map_err("perf_counters"))?;
        out.counters = PerfCounters::default();
        for c in counters
            .get(&0, 0)
            .map_err(map_err("perf_counters"))?
            .iter()
        {
            out.counters.add(c);
        }
        out.per_cgroup.clear();
        out.io.clear();
        out.flows.clear();
        out.tasks.clear();
        // Whole tables a few syscalls at a time into kept buffers (BPF_MAP_LOOKUP_BATCH);
        // entry by entry where the kernel has no batch reads.
        if !out.scratch.unsupported {
            let s = &mut out.scratch;
            let read = aya::util::nr_cpus()
                .map_err(|(path, source)| LoadError::Cpus { path, source })
                .and_then(|cpus| {
                    self.batch::<u64, RunqHist>("runq_cgroup", cpus, s, |k, v| {
                        out.per_cgroup.push((*k, sum_runq(v.iter())))
                    })
                })
                .and_then(|()| {
                    self.batch::<IoKey, IoHist>("io_hist", 1, s, |k, v| out.io.push((*k, v[0])))
                })
                .and_then(|()| {
                    self.batch::<FlowKey, FlowValue>("net_flows", 1, s, |k, v| {
                        out.flows.push((*k, v[0]))
                    })
                })
                .and_then(|()| {
                    let cpus = aya::util::nr_cpus()
                        .map_err(|(path, source)| LoadError::Cpus { path, source })?;
                    self.batch::<u32, TaskSched>("task_sched", cpus, s, |k, v| {
                        out.tasks.push((*k, sum_tasks(v.iter())))
                    })
                });
            match read {
                Ok(()) => return Ok(()),
                Err(LoadError::Map {
                    source: MapError::IoError(e),
                    ..
                }) if e.raw_os_error() == Some(libc::EINVAL) => {
                    s.unsupported = true;
                    out.per_cgroup.clear();
                    out.io.clear();
                    out.flows.clear();
                    out.tasks.clear();
                }
                Err(e) => return Err(e),
            }
        }
        let groups: aya::maps::PerCpuHashMap<&MapData, u64, RunqHist> =
            aya::maps::PerCpuHashMap::try_from(map(&self.ebpf, "runq_cgroup")?)
                .map_err(map_err("runq_cgroup"))?;
        // An entry deleted while iterating is skipped, not an error.
        out.per_cgroup.extend(
            groups
                .iter()
                .flatten()
                .map(|(id, per_cpu)| (id, sum_runq(per_cpu.iter()))),
        );
        let io: BpfHashMap<&MapData, IoKey, IoHist> =
            BpfHashMap::try_from(map(&self.ebpf, "io_hist")?).map_err(map_err("io_hist"))?;
        out.io.extend(io.iter().flatten());
        let flows: BpfHashMap<&MapData, FlowKey, FlowValue> =
            BpfHashMap::try_from(map(&self.ebpf, "net_flows")?).map_err(map_err("net_flows"))?;
        out.flows.extend(flows.iter().flatten());
        let tasks: aya::maps::PerCpuHashMap<&MapData, u32, TaskSched> =
            aya::maps::PerCpuHashMap::try_from(map(&self.ebpf, "task_sched")?)
                .map_err(map_err("task_sched"))?;
        out.tasks.extend(
            tasks
                .iter()
                .flatten()
                .map(|(tgid, per_cpu)| (tgid, sum_tasks(per_cpu.iter()))),
        );
        Ok(())
    }

    /// Every entry of hash map `name` (keys `K`, `cpus` values `V` each: 1, or the possible
    /// CPUs for a per-CPU map) through `BPF_MAP_LOOKUP_BATCH`, into `s`'s buffers (grown to
    /// the table's size the first time), each passed to `each`.
    fn batch<K: bytemuck::Pod, V: bytemuck::Pod>(
        &self,
        name: &'static str,
        cpus: usize,
        s: &mut BatchScratch,
        mut each: impl FnMut(&K, &[V]),
    ) -> Result<(), LoadError> {
        let data = match self.ebpf.map(name) {
            Some(aya::maps::Map::HashMap(d) | aya::maps::Map::PerCpuHashMap(d)) => d,
            _ => return Err(map_err(name)(MapError::InvalidName { name: name.into() })),
        };
        let info = data.info().map_err(map_err(name))?;
        // The types must be the map's (a mismatch would read garbage, not fail).
        if info.key_size() as usize != size_of::<K>()
            || info.value_size() as usize != size_of::<V>()
        {
            return Err(map_err(name)(MapError::InvalidValueSize {
                size: size_of::<V>(),
                expected: info.value_size() as usize,
            }));
        }
        let max = info.max_entries() as usize;
        // Keys are packed at their size; values at theirs rounded up to 8 bytes, times the
        // CPUs for a per-CPU map (the types here are all multiples of 8).
        const { assert!(size_of::<V>().is_multiple_of(8)) };
        let (kb, vw) = (size_of::<K>(), size_of::<V>() / 8 * cpus);
        // Grown to the largest table once, never shrunk (no refill every interval).
        let (kn, vn) = ((kb * max).div_ceil(8), vw * max);
        if s.keys.len() < kn {
            s.keys.resize(kn, 0);
        }
        if s.values.len() < vn {
            s.values.resize(vn, 0);
        }
        #[repr(C)]
        struct BatchAttr {
            in_batch: u64,
            out_batch: u64,
            keys: u64,
            values: u64,
            count: u32,
            map_fd: u32,
            elem_flags: u64,
            flags: u64,
        }
        const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
        let fd = data.fd().as_fd().as_raw_fd();
        // A hash map's batch token is its bucket index.
        let (mut token_in, mut token_out) = (0u64, 0u64);
        let mut first = true;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first {
                    0
                } else {
                    &token_in as *const u64 as u64
                },
                out_batch: &mut token_out as *mut u64 as u64,
                keys: s.keys.as_mut_ptr() as u64,
                values: s.values.as_mut_ptr() as u64,
                count: max as u32,
                map_fd: fd as u32,
                elem_flags: 0,
                flags: 0,
            };
            // SAFETY: `attr` is the bpf_attr of the batch commands; its buffers hold `count`
            // keys and values of this map's sizes (`max` entries of each), and the tokens
            // are 8 bytes (the kernel writes 4 for a hash map).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut BatchAttr,
                    size_of::<BatchAttr>() as u32,
                )
            };
            let err = (r != 0).then(std::io::Error::last_os_error);
            let done = match &err {
                None => false,
                Some(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
                Some(e) => {
                    return Err(map_err(name)(MapError::IoError(
                        std::io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)),
                    )));
                }
            };
            for i in 0..attr.count as usize {
                let keys: &[u8] = bytemuck::cast_slice(&s.keys);
                let k: K = bytemuck::pod_read_unaligned(&keys[i * kb..(i + 1) * kb]);
                let v: &[V] = bytemuck::cast_slice(&s.values[i * vw..(i + 1) * vw]);
                each(&k, v);
            }
            if done || attr.count == 0 {
                return Ok(());
            }
            token_in = token_out;
            first = false;
        }
    }

    /// Removes process `tgid` from the scheduling table, returning its totals (summed over
    /// CPUs) at the moment of removal, like [`Collector::flow_take`].
    pub fn task_take(&self, tgid: u32) -> Result<Option<TaskSched>, LoadError> {
        let cpus =
            aya::util::nr_cpus().map_err(|(path, source)| LoadError::Cpus { path, source })?;
        let mut values = vec![TaskSched::default(); cpus];
        let found = self.take(
            "task_sched",
            bytemuck::bytes_of(&tgid),
            bytemuck::cast_slice_mut(&mut values),
        )?;
        let mut comm = [0u8; COMM_LEN];
        // Its name goes with it (none is fine: it was never made, or an exec raced).
        self.take("task_comm", bytemuck::bytes_of(&tgid), &mut comm)?;
        Ok(found.then(|| sum_tasks(values.iter())))
    }

    /// Process `tgid`'s current command name as the scheduling table knows it (renewed
    /// at exec), NUL-padded.
    pub fn task_comm(&self, tgid: u32) -> Option<[u8; COMM_LEN]> {
        let map: BpfHashMap<&MapData, u32, [u8; COMM_LEN]> =
            BpfHashMap::try_from(self.ebpf.map("task_comm")?).ok()?;
        map.get(&tgid, 0).ok()
    }

    /// Removes flow `key` from the traffic table, returning its totals at the moment of
    /// removal (one `BPF_MAP_LOOKUP_AND_DELETE_ELEM`: a send racing with the removal is
    /// in the totals returned, or counted afresh in a new entry, never lost). `None` when
    /// it is not there.
    pub fn flow_take(&self, key: &FlowKey) -> Result<Option<FlowValue>, LoadError> {
        let mut value = FlowValue::default();
        let found = self.take(
            "net_flows",
            bytemuck::bytes_of(key),
            bytemuck::bytes_of_mut(&mut value),
        )?;
        Ok(found.then_some(value))
    }

    /// Removes cgroup `id`'s run-queue histogram from its table, returning it as it was at
    /// the moment of removal, like [`Collector::flow_take`].
    pub fn runq_cgroup_take(&self, id: u64) -> Result<Option<RunqHist>, LoadError> {
        let cpus =
            aya::util::nr_cpus().map_err(|(path, source)| LoadError::Cpus { path, source })?;
        let mut values = vec![RunqHist::default(); cpus];
        let found = self.take(
            "runq_cgroup",
            bytemuck::bytes_of(&id),
            bytemuck::cast_slice_mut(&mut values),
        )?;
        Ok(found.then(|| sum_runq(values.iter())))
    }

    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` on hash map `name`: false when `key` is not there.
    /// `value` must be the map's value size (times the possible CPUs for a per-CPU map).
    fn take(&self, name: &'static str, key: &[u8], value: &mut [u8]) -> Result<bool, LoadError> {
        let fd = match self.ebpf.map(name) {
            Some(aya::maps::Map::HashMap(d) | aya::maps::Map::PerCpuHashMap(d)) => {
                d.fd().as_fd().as_raw_fd()
            }
            _ => {
                return Err(map_err(name)(MapError::InvalidName { name: name.into() }));
            }
        };
        // struct bpf_attr for the BPF_MAP_*_ELEM commands.
        #[repr(C)]
        struct ElemAttr {
            map_fd: u32,
            _pad: u32,
            key: u64,
            value: u64,
            flags: u64,
        }
        let attr = ElemAttr {
            map_fd: fd as u32,
            _pad: 0,
            key: key.as_ptr() as u64,
            value: value.as_mut_ptr() as u64,
            flags: 0,
        };
        const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
        // SAFETY: `attr` is a valid bpf_attr prefix for this command; its key and value
        // point to live buffers of the sizes the callers pass for this map; the size
        // passed is the struct's.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_AND_DELETE_ELEM,
                &attr as *const ElemAttr,
                size_of::<ElemAttr>() as u32,
            )
        };
        if r == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            Ok(false)
        } else {
            Err(map_err(name)(MapError::IoError(e)))
        }
    }
}

/// A cgroup's run-queue histogram summed over the CPUs' values.
fn sum_runq<'a>(values: impl Iterator<Item = &'a RunqHist>) -> RunqHist {
    let mut sum = RunqHist::default();
    for v in values {
        for (a, b) in sum.slots.iter_mut().zip(&v.slots) {
            *a += b;
        }
        sum.count += v.count;
        sum.sum_ns += v.sum_ns;
    }
    sum
}

/// A process's scheduling summed over the CPUs' values (the comm of the first that has one).
fn sum_tasks<'a>(values: impl Iterator<Item = &'a TaskSched>) -> TaskSched {
    let mut sum = TaskSched::default();
    for v in values {
        sum.switches += v.switches;
        sum.involuntary += v.involuntary;
        sum.offcpu_ns += v.offcpu_ns;
        sum.runq_ns += v.runq_ns;
        if sum.comm[0] == 0 {
            sum.comm = v.comm;
        }
    }
    sum
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
