//! The Rust mirror of `bpf/c/events.h`, the one definition of every kernel record.
//!
//! Every type here is `#[repr(C)]`, has explicit `_pad` fields, no `bool`, and a
//! compile-time size assertion. `bpf/tests/abi_btf.rs` reads the BTF of the compiled
//! object and checks every struct's size and every field's offset against these types,
//! so the two cannot drift apart silently.

use bytemuck::{Pod, Zeroable};

/// Bumped whenever any record layout changes (`ABI_VERSION` in `events.h`).
pub const ABI_VERSION: u32 = 3;

/// `COMM_LEN`: task command name buffer, NUL-padded.
pub const COMM_LEN: usize = 16;
/// `PATH_MAX_LEN`: path buffers.
pub const PATH_MAX_LEN: usize = 256;
/// `ARGV_MAX_LEN`: bytes of the exec argument block kept.
pub const ARGV_MAX_LEN: usize = 512;
/// `MODULE_TEXT_LEN`: module name or parameters.
pub const MODULE_TEXT_LEN: usize = 64;
/// `MOUNT_SOURCE_LEN`
pub const MOUNT_SOURCE_LEN: usize = 128;
/// `MOUNT_FSTYPE_LEN`
pub const MOUNT_FSTYPE_LEN: usize = 32;
/// `EK_MAX`: every kind id is below it; size of the counter array.
pub const KIND_MAX: usize = 80;
/// `CAT_MAX`: slots of the rate-limit arrays.
pub const RATE_SLOTS: usize = 9;
/// Rate-limit slot of `memory.page_fault` (`RL_PAGE_FAULT`); slots 0..8 are categories.
pub const RATE_SLOT_PAGE_FAULT: usize = 8;
/// `RUNQ_SLOTS`: log2 buckets of microseconds in the perf category's histograms (slot 0:
/// 0 and 1 us; slot k: `[2^k, 2^(k+1))` us; the last slot everything above).
pub const RUNQ_SLOTS: usize = 27;

/// `EVF_TRUNCATED`: a string, path or argv was cut at its buffer bound.
pub const FLAG_TRUNCATED: u16 = 0x1;
/// `EVF_NO_RESULT`: recorded at sys_enter only; `ret` and `latency_ns` are not known.
pub const FLAG_NO_RESULT: u16 = 0x2;

/// The common record header (`struct event_header`), 64 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct EventHeader {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// cgroup v2 id of the current task.
    pub cgroup_id: u64,
    /// Kind id, see [`Kind`].
    pub kind: u16,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// Total record length, header included.
    pub len: u32,
    pub cpu: u32,
    /// Thread group id (the user-space "pid").
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// The kernel's 1-in-N for this record when it was sampled in the kernel; 0 (records
    /// written before kernel sampling existed) or 1 when it was not. See [`EventHeader::kernel_weight`].
    pub weight: u32,
    pub comm: [u8; COMM_LEN],
}

macro_rules! payload {
    ($(#[$m:meta])* $name:ident, $size:expr, { $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }
        const _: () = assert!(size_of::<$name>() == $size);
        const _: () = assert!(size_of::<$name>() % 8 == 0);
    };
}

const _: () = assert!(size_of::<EventHeader>() == 64);

impl EventHeader {
    /// The kernel's 1-in-N for this record: 1 when the kernel did not sample it.
    pub fn kernel_weight(&self) -> u32 {
        self.weight.max(1)
    }
}

payload!(
    /// `process.exec`
    ProcessExec, 1328, {
    ppid: u32, euid: u32, egid: u32,
    /// Tid before exec (differs when a non-leader thread execs).
    old_tid: u32,
    filename_len: u32,
    /// Bytes in `argv`; arguments are separated by NUL.
    argv_len: u32,
    argc: u32,
    /// 1 when the kernel marked the exec as gaining privilege (`AT_SECURE`: a set-uid or
    /// set-gid image, or file capabilities raising the permitted set); 0 otherwise, and
    /// in records written before this field was filled (it was padding).
    secure: u32,
    /// The path as passed to exec (may be relative).
    filename: [u8; PATH_MAX_LEN],
    argv: [u8; ARGV_MAX_LEN],
    exe_len: u32, _pad1: u32,
    /// Absolute path of the executable, resolved in the kernel (`FLAG_TRUNCATED` when cut).
    exe: [u8; PATH_MAX_LEN],
    cwd_len: u32, _pad2: u32,
    /// Absolute working directory at exec, resolved in the kernel; empty when unknown.
    cwd: [u8; PATH_MAX_LEN],
});

payload!(
    /// `process.fork`
    ProcessFork, 24, {
    parent_pid: u32, parent_tid: u32, child_pid: u32, child_tid: u32,
    /// 1 when the child is a thread of the parent's process.
    is_thread: u32, _pad0: u32,
});

payload!(
    /// `process.exit`, once per process (its last thread).
    ProcessExit, 24, {
    exit_code: i32,
    /// Killing signal; 0 when the process exited normally.
    signal: u32,
    core_dumped: u32, _pad0: u32,
    lifetime_ns: u64,
});

payload!(
    /// `file.open`, `file.unlink`, `file.chmod`
    FileOp, 296, {
    /// New fd for opens; 0 or -errno otherwise.
    ret: i64,
    latency_ns: u64,
    /// `AT_FDCWD` (-100) when relative to the cwd; the fd itself for `fchmod`.
    dirfd: i32,
    flags: u32, mode: u32, syscall_nr: u32, path_len: u32, _pad0: u32,
    path: [u8; PATH_MAX_LEN],
});

payload!(
    /// `file.rename`
    FileRename, 552, {
    ret: i64, latency_ns: u64,
    old_dirfd: i32, new_dirfd: i32,
    flags: u32, syscall_nr: u32,
    old_path_len: u32, new_path_len: u32,
    old_path: [u8; PATH_MAX_LEN],
    new_path: [u8; PATH_MAX_LEN],
});

payload!(
    /// `net.tcp_*`
    TcpSockEvent, 64, {
    /// Kernel socket cookie; 0 if none was ever assigned.
    sock_cookie: u64,
    /// `AF_INET` (2) or `AF_INET6` (10).
    family: u16,
    sport: u16, dport: u16, _pad0: u16,
    /// IPv4 in the first 4 bytes, network order.
    saddr: [u8; 16],
    daddr: [u8; 16],
    old_state: u32, new_state: u32,
    /// `tcp_send_reset`: `enum sk_rst_reason`.
    reason: u32, _pad1: u32,
});

payload!(
    /// `net.packet_drop`
    PacketDrop, 64, {
    location: u64,
    /// `enum skb_drop_reason`.
    reason: u32,
    ifindex: u32,
    /// Ethertype, host order.
    protocol: u16,
    family: u16,
    l4_protocol: u8, _pad0: [u8; 3],
    sport: u16, dport: u16, _pad1: u32,
    saddr: [u8; 16], daddr: [u8; 16],
});

payload!(
    /// `security.setuid`, `security.setgid`
    CredChange, 40, {
    ret: i64, syscall_nr: u32,
    /// As passed; `u32::MAX` means "unchanged" or "not an argument of this call".
    args: [u32; 3],
    new_uid: u32, new_euid: u32, new_gid: u32, new_egid: u32,
});

payload!(
    /// `security.ptrace`
    PtraceEvent, 40, {
    ret: i64, request: i64, target_pid: u32, _pad0: u32, addr: u64, data: u64,
});

payload!(
    /// `security.capability`
    CapabilityEvent, 16, {
    cap: u32,
    /// 0 allowed, -EPERM (-1) denied.
    ret: i32,
    euid: u32, _pad0: u32,
});

payload!(
    /// `security.module_load`, `security.module_unload`
    ModuleEvent, 88, {
    ret: i64, syscall_nr: u32, fd: i32, flags: u32, text_len: u32,
    /// Module parameters (load) or module name (unload).
    text: [u8; MODULE_TEXT_LEN],
});

payload!(
    /// `security.bpf`
    BpfCall, 24, {
    ret: i64, cmd: u32,
    /// `prog_type` for `BPF_PROG_LOAD`, `map_type` for `BPF_MAP_CREATE`, else 0.
    attr_type: u32,
    attr_size: u32, _pad0: u32,
});

payload!(
    /// `security.mount`, `security.umount`
    MountEvent, 448, {
    ret: i64, flags: u64, syscall_nr: u32,
    source_len: u32, target_len: u32, fstype_len: u32,
    source: [u8; MOUNT_SOURCE_LEN],
    target: [u8; PATH_MAX_LEN],
    fstype: [u8; MOUNT_FSTYPE_LEN],
});

payload!(
    /// `security.signal`
    SignalEvent, 40, {
    sig: u32,
    /// `TRACE_SIGNAL_*`: 0 delivered, 1 ignored, 2 already pending, 3 overflow, 4 lose info.
    result: i32,
    /// `si_code`.
    code: i32,
    target_pid: u32, target_tid: u32,
    /// 1 when sent to the whole thread group.
    group: u32,
    target_comm: [u8; COMM_LEN],
});

payload!(
    /// `container.cgroup_mkdir`, `container.cgroup_rmdir`, `container.cgroup_attach`
    CgroupEvent, 288, {
    cgroup_id: u64, level: u32, hierarchy_id: u32,
    target_pid: u32, target_tid: u32, threadgroup: u32, path_len: u32,
    path: [u8; PATH_MAX_LEN],
});

payload!(
    /// `memory.oom_kill`
    OomKill, 40, {
    victim_pid: u32, victim_uid: u32, oom_score_adj: i32, _pad0: u32,
    total_vm_pages: u64,
    victim_comm: [u8; COMM_LEN],
});

payload!(
    /// `memory.direct_reclaim`
    DirectReclaim, 24, {
    duration_ns: u64, nr_reclaimed: u64, order: u32, gfp_flags: u32,
});

payload!(
    /// `memory.page_fault`
    PageFault, 24, {
    address: u64, ip: u64, error_code: u64,
});

payload!(
    /// `syscall`
    SyscallEvent, 72, {
    latency_ns: u64, ret: i64, args: [u64; 6], id: u32, _pad0: u32,
});

payload!(
    /// `perf.runq_wait`: a wait for a CPU of at least `perf.runq_slow_us`. The header is the
    /// waiting task's, on the CPU it then ran on.
    RunqWait, 32, {
    wait_ns: u64,
    /// The thread it took the CPU from (0: the idle task), and its thread group.
    prev_pid: u32, prev_tgid: u32,
    prev_comm: [u8; COMM_LEN],
});

payload!(
    /// A cumulative run-queue latency histogram (`struct runq_hist`, maps `runq_cpu` and
    /// `runq_cgroup`), in [`RUNQ_SLOTS`] log2 buckets of microseconds.
    RunqHist, 240, {
    slots: [u64; RUNQ_SLOTS],
    count: u64,
    sum_ns: u64,
    _pad0: u64,
});

payload!(
    /// The perf category's own counters (`struct perf_counters`, per CPU).
    PerfCounters, 64, {
    /// Waits not counted per cgroup: `runq_cgroup` had no room.
    cgroup_full: u64,
    /// Waits not measured: no task storage could be had for the task.
    no_storage: u64,
    /// Block requests not timed: the in-flight table had no room.
    io_untracked: u64,
    /// Completions not counted per device: `io_hist` had no room.
    io_hist_full: u64,
    /// Sends/receives not counted per flow: `net_flows` had no room.
    flows_full: u64,
    /// TCP connections not timed: `tcp_birth` had no room.
    tcp_untracked: u64,
    /// Context switches not counted per process: `task_sched` had no room.
    tasks_full: u64,
    _pad0: u64,
});

payload!(
    /// A process's scheduling, cumulative (`struct task_sched`, per CPU in the kernel,
    /// summed here).
    TaskSched, 48, {
    /// Voluntary switches: it left the CPU blocked (sleep, I/O, a lock).
    switches: u64,
    /// Preempted while still runnable.
    involuntary: u64,
    /// Its threads' time off a CPU, summed: blocked and waiting.
    offcpu_ns: u64,
    /// Of which runnable, waiting for a CPU.
    runq_ns: u64,
    comm: [u8; COMM_LEN],
});

payload!(
    /// A flow of one process (`struct flow_key`, the key of map `net_flows`).
    FlowKey, 48, {
    tgid: u32,
    family: u16,
    /// `IPPROTO_TCP` (6) or `IPPROTO_UDP` (17).
    protocol: u16,
    sport: u16,
    /// 0 for an unconnected UDP socket.
    dport: u16,
    _pad0: u32,
    saddr: [u8; 16],
    daddr: [u8; 16],
});

payload!(
    /// Cumulative traffic of a flow (`struct flow_value`).
    FlowValue, 48, {
    bytes_sent: u64,
    bytes_received: u64,
    sends: u64,
    receives: u64,
    comm: [u8; COMM_LEN],
});

payload!(
    /// `perf.tcp_life`: a TCP connection closed. The header's identity is the process
    /// that opened it or first moved bytes on it.
    TcpLife, 80, {
    /// First state change seen (SYN_SENT, SYN_RECV, ESTABLISHED) to CLOSE.
    duration_ns: u64,
    /// `tcp_sock.bytes_acked`.
    bytes_sent: u64,
    /// `tcp_sock.bytes_received`.
    bytes_received: u64,
    sock_cookie: u64,
    /// Smoothed round-trip time at close.
    srtt_us: u32,
    family: u16,
    sport: u16,
    dport: u16,
    _pad0: u16,
    _pad1: u32,
    saddr: [u8; 16],
    daddr: [u8; 16],
});

payload!(
    /// A block device and operation (`struct io_key`, the key of map `io_hist`).
    IoKey, 8, {
    /// The kernel's dev_t of the disk: `major << 20 | first_minor`.
    dev: u32,
    /// `REQ_OP_*`: 0 read, 1 write, 2 flush, 3 discard, ...
    op: u32,
});

payload!(
    /// Cumulative block I/O latency, issue to completion, of one device and operation
    /// (`struct io_hist`), in [`RUNQ_SLOTS`] log2 buckets of microseconds.
    IoHist, 272, {
    slots: [u64; RUNQ_SLOTS],
    count: u64,
    sum_ns: u64,
    bytes: u64,
    disk: [u8; 32],
});

payload!(
    /// `perf.io_slow`: a block request of at least `perf.io_slow_us` from issue to
    /// completion. The header's identity is the task that queued or issued it.
    IoSlow, 72, {
    latency_ns: u64,
    /// Insert to issue; 0 when it was issued without being queued.
    queued_ns: u64,
    sector: u64,
    bytes: u32,
    dev: u32,
    op: u32,
    /// `blk_status_t`: 0 for success.
    error: i32,
    disk: [u8; 32],
});

payload!(
    /// Per-CPU, per-kind counters kept by the kernel side (`struct kind_counters`).
    KindCounters, 64, {
    /// Records offered to the ring (passed the filters and the rate limit).
    produced: u64,
    /// Of those, dropped because the ring had no room.
    ring_full: u64,
    /// Rejected by the self/tgid/cgroup filter.
    filtered: u64,
    /// Rejected by the per-CPU token bucket.
    rate_limited: u64,
    /// `sys_exit` (or reclaim end) seen without its start: the call was in flight
    /// when the programs were attached, or per-task storage could not be had.
    unpaired: u64,
    /// Left out by the kernel's 1-in-N sampling (their weight is carried by the kept ones).
    sampled: u64,
    /// Candidates the kernel's sampler decided on (the input of its hash, not a count to
    /// add up: it is not advanced while nothing is sampled).
    sample_seq: u64,
    _pad0: u64,
});

payload!(
    /// Load-time configuration (`struct collector_config`, the `.rodata` global `CONFIG`).
    CollectorConfigRaw, 200, {
    self_tgid: u32, categories: u32, tgid_filter: u32, cgroup_filter: u32,
    follow_children: u32, syscall_all: u32, wakeup_bytes: u32,
    /// Generic syscalls recorded at sys_enter, without result or latency.
    syscall_enter_only: u32,
    /// 1: the file and security calls come from the per-syscall tracepoints
    /// (`syscalls:sys_enter_<name>`), not from the raw sys_enter/sys_exit programs.
    syscall_events: u32, _pad0: u32,
    rate_per_sec: [u64; RATE_SLOTS],
    burst: [u64; RATE_SLOTS],
    /// `perf.runq_wait` for run-queue waits at least this long; 0: none.
    runq_slow_ns: u64,
    /// `perf.io_slow` for block requests at least this long; 0: none.
    io_slow_ns: u64,
});

// SAFETY: CollectorConfigRaw is repr(C), has no padding (explicit `_pad0`, size asserted)
// and every bit pattern is valid, which is what aya's Pod requires.
unsafe impl aya::Pod for CollectorConfigRaw {}

// SAFETY: RunqHist and PerfCounters are repr(C), padding-free (sizes asserted, explicit
// `_pad0`) and valid for every bit pattern.
unsafe impl aya::Pod for RunqHist {}
// SAFETY: as above.
unsafe impl aya::Pod for PerfCounters {}
// SAFETY: as above (IoKey: two u32; IoHist: u64s and a byte array, no padding).
unsafe impl aya::Pod for IoKey {}
// SAFETY: as above.
unsafe impl aya::Pod for IoHist {}
// SAFETY: as above (explicit `_pad0`, sizes asserted).
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowValue {}
// SAFETY: as above.
unsafe impl aya::Pod for TaskSched {}

impl Default for TaskSched {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

impl Default for IoHist {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

impl PerfCounters {
    /// Sums `other` into `self`.
    pub fn add(&mut self, other: &PerfCounters) {
        self.cgroup_full += other.cgroup_full;
        self.no_storage += other.no_storage;
        self.io_untracked += other.io_untracked;
        self.io_hist_full += other.io_hist_full;
        self.flows_full += other.flows_full;
        self.tcp_untracked += other.tcp_untracked;
        self.tasks_full += other.tasks_full;
    }
}

impl Default for FlowValue {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

impl Default for RunqHist {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

impl Default for PerfCounters {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

// SAFETY: KindCounters is repr(C), padding-free (size asserted, explicit `_pad0`) and
// valid for every bit pattern.
unsafe impl aya::Pod for KindCounters {}

impl Default for KindCounters {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

impl KindCounters {
    /// Sums `other` into `self`.
    pub fn add(&mut self, other: &KindCounters) {
        self.produced += other.produced;
        self.ring_full += other.ring_full;
        self.filtered += other.filtered;
        self.rate_limited += other.rate_limited;
        self.unpaired += other.unpaired;
        self.sampled += other.sampled;
        self.sample_seq += other.sample_seq;
    }
}

/// An event category: the unit of attach/detach and of the in-kernel rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Category {
    Process = 0,
    File = 1,
    Net = 2,
    Security = 3,
    Container = 4,
    Memory = 5,
    Syscall = 6,
    Perf = 7,
}

impl Category {
    /// Every category, in id order.
    pub const ALL: [Category; 8] = [
        Category::Process,
        Category::File,
        Category::Net,
        Category::Security,
        Category::Container,
        Category::Memory,
        Category::Syscall,
        Category::Perf,
    ];

    /// The name used in configs and kind names.
    pub const fn name(self) -> &'static str {
        match self {
            Category::Process => "process",
            Category::File => "file",
            Category::Net => "net",
            Category::Security => "security",
            Category::Container => "container",
            Category::Memory => "memory",
            Category::Syscall => "syscall",
            Category::Perf => "perf",
        }
    }

    /// Parses a category name.
    pub fn from_name(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The category's bit in `CollectorConfigRaw::categories`.
    pub const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

macro_rules! kinds {
    ($($variant:ident = $id:expr, $name:expr, $cat:ident, $payload:ident;)*) => {
        /// Every event kind, with its stable id (`enum event_kind` in `events.h`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum Kind { $($variant = $id),* }

        impl Kind {
            /// Every kind, in id order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// The kind for a wire id, if it is one.
            pub const fn from_id(id: u16) -> Option<Kind> {
                match id { $($id => Some(Kind::$variant),)* _ => None }
            }

            /// The stable dotted name (`process.exec`, ...).
            pub const fn name(self) -> &'static str {
                match self { $(Kind::$variant => $name),* }
            }

            /// The kind's category.
            pub const fn category(self) -> Category {
                match self { $(Kind::$variant => Category::$cat),* }
            }

            /// Full record size (header + payload) in bytes.
            pub const fn record_len(self) -> usize {
                match self { $(Kind::$variant => size_of::<EventHeader>() + size_of::<$payload>()),* }
            }

            /// Parses a dotted kind name.
            pub fn from_name(name: &str) -> Option<Kind> {
                Kind::ALL.iter().copied().find(|k| k.name() == name)
            }
        }
    };
}

kinds! {
    ProcessExec = 1, "process.exec", Process, ProcessExec;
    ProcessFork = 2, "process.fork", Process, ProcessFork;
    ProcessExit = 3, "process.exit", Process, ProcessExit;
    FileOpen = 10, "file.open", File, FileOp;
    FileUnlink = 11, "file.unlink", File, FileOp;
    FileRename = 12, "file.rename", File, FileRename;
    FileChmod = 13, "file.chmod", File, FileOp;
    NetTcpConnect = 20, "net.tcp_connect", Net, TcpSockEvent;
    NetTcpAccept = 21, "net.tcp_accept", Net, TcpSockEvent;
    NetTcpEstablished = 22, "net.tcp_established", Net, TcpSockEvent;
    NetTcpClose = 23, "net.tcp_close", Net, TcpSockEvent;
    NetTcpRetransmit = 24, "net.tcp_retransmit", Net, TcpSockEvent;
    NetTcpResetSent = 25, "net.tcp_reset_sent", Net, TcpSockEvent;
    NetTcpResetReceived = 26, "net.tcp_reset_received", Net, TcpSockEvent;
    NetPacketDrop = 27, "net.packet_drop", Net, PacketDrop;
    SecuritySetuid = 30, "security.setuid", Security, CredChange;
    SecuritySetgid = 31, "security.setgid", Security, CredChange;
    SecurityPtrace = 32, "security.ptrace", Security, PtraceEvent;
    SecurityCapability = 33, "security.capability", Security, CapabilityEvent;
    SecurityModuleLoad = 34, "security.module_load", Security, ModuleEvent;
    SecurityModuleUnload = 35, "security.module_unload", Security, ModuleEvent;
    SecurityBpf = 36, "security.bpf", Security, BpfCall;
    SecurityMount = 37, "security.mount", Security, MountEvent;
    SecurityUmount = 38, "security.umount", Security, MountEvent;
    SecuritySignal = 39, "security.signal", Security, SignalEvent;
    ContainerCgroupMkdir = 40, "container.cgroup_mkdir", Container, CgroupEvent;
    ContainerCgroupRmdir = 41, "container.cgroup_rmdir", Container, CgroupEvent;
    ContainerCgroupAttach = 42, "container.cgroup_attach", Container, CgroupEvent;
    MemoryOomKill = 50, "memory.oom_kill", Memory, OomKill;
    MemoryDirectReclaim = 51, "memory.direct_reclaim", Memory, DirectReclaim;
    MemoryPageFault = 52, "memory.page_fault", Memory, PageFault;
    Syscall = 60, "syscall.call", Syscall, SyscallEvent;
    PerfRunqWait = 70, "perf.runq_wait", Perf, RunqWait;
    PerfIoSlow = 71, "perf.io_slow", Perf, IoSlow;
    PerfTcpLife = 72, "perf.tcp_life", Perf, TcpLife;
}

/// The bytes of a NUL-padded buffer up to `len` (clamped to the buffer).
pub fn str_bytes(buf: &[u8], len: u32) -> &[u8] {
    let len = (len as usize).min(buf.len());
    &buf[..len]
}

/// The bytes of a NUL-terminated fixed buffer (`comm`) up to its first NUL.
pub fn cstr_bytes(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    &buf[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_ids_names_and_categories_are_consistent() {
        for &k in Kind::ALL {
            assert!((k as usize) < KIND_MAX, "{k:?} id out of counter range");
            assert_eq!(Kind::from_id(k as u16), Some(k));
            assert_eq!(Kind::from_name(k.name()), Some(k));
            // Kind ids are laid out in decades, one per category (KIND_CATEGORY in common.h).
            assert_eq!((k as u16 / 10) as u32, k.category() as u32, "{k:?}");
            let (cat, _) = k.name().split_once('.').expect("dotted name");
            assert_eq!(cat, k.category().name(), "{k:?}");
            assert_eq!(k.record_len() % 8, 0);
        }
        assert_eq!(Kind::from_id(0), None);
        assert_eq!(Kind::from_id(4), None);
    }

    #[test]
    fn string_helpers_clamp() {
        assert_eq!(str_bytes(b"abc\0\0", 3), b"abc");
        assert_eq!(str_bytes(b"abc", 99), b"abc");
        assert_eq!(cstr_bytes(b"bash\0\0\0"), b"bash");
        assert_eq!(cstr_bytes(b"full"), b"full");
    }
}
