//! The engine's configuration: TOML, unknown keys rejected, every field documented in
//! `docs/config.md`, defaults as named constants, and a `validate()` that reports every
//! problem at once with its key path.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The config used when no `--config` is given (`configs/default.toml`, embedded).
pub const DEFAULT_TOML: &str = include_str!("../../configs/default.toml");
/// The presets for high event rates and for security monitoring (embedded).
pub const HIGH_PERF_TOML: &str = include_str!("../../configs/high-perf.toml");
pub const SECURITY_TOML: &str = include_str!("../../configs/security.toml");

/// Largest per-CPU ring accepted (each ring is locked memory, mapped twice).
pub const RING_BYTES_MAX: u32 = 1 << 30;
/// The rings of every CPU together may take at most this share of the machine's memory.
pub const RING_MEMORY_SHARE_MAX: f64 = 0.25;
/// Default sampling interval.
pub const DEFAULT_SAMPLING_INTERVAL_MS: u64 = 1000;
/// Default importance threshold for notable events.
pub const DEFAULT_MIN_IMPORTANCE: f64 = 0.8;
/// Default records a core thread takes from one ring before looking at the next.
pub const DEFAULT_POLL_BUDGET_EVENTS: usize = 4096;
/// Default sleep when all rings are empty.
pub const DEFAULT_POLL_TIMEOUT_MS: u64 = 10;
/// Default status line interval.
pub const DEFAULT_STATUS_INTERVAL_MS: u64 = 5000;
/// Default sync interval with `storage.durability = "interval"`.
pub const DEFAULT_DURABILITY_INTERVAL_MS: u64 = 1000;
/// Default age of a partial block before it is written.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1000;
/// Longest partial-block flush interval accepted (what a crash may take with it).
pub const FLUSH_INTERVAL_MS_MAX: u64 = 3_600_000;
/// How errors name the embedded default config.
const EMBEDDED_ORIGIN: &str = "<embedded default.toml>";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/kevent";

/// The whole config file. [`Config::default`], [`Config::high_performance`] and
/// [`Config::security`] are the presets of `configs/` (embedded).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default = "Config::base")]
pub struct Config {
    /// What the kernel side captures.
    pub capture: Capture,
    /// User-space and kernel filters.
    pub filter: Filter,
    /// Adaptive, accounted sampling.
    pub sampling: Sampling,
    /// Core threads.
    pub engine: Engine,
    /// Segment storage.
    pub storage: Storage,
    /// The semantic path.
    pub semantic: Semantic,
    /// Process and container enrichment.
    pub enrich: Enrich,
    /// The export API (gRPC) and the metrics endpoint.
    pub export: Export,
    /// The `perf` category's kernel aggregates.
    pub perf: Perf,
}

/// The names of `perf.signals`.
pub const PERF_SIGNALS: [&str; 3] = ["sched", "block", "net"];

/// `[perf]`: the `perf` category (scheduler run-queue latency and block I/O latency,
/// aggregated in the kernel).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Perf {
    /// How often the kernel's histograms are read and written out as interval records
    /// (`perf.runq_latency`) and metrics (ms).
    pub interval_ms: u64,
    /// A run-queue wait at least this long is also a record of its own (`perf.runq_wait`,
    /// µs); 0: none.
    pub runq_slow_us: u64,
    /// A block request at least this long from issue to completion is also a record of
    /// its own (`perf.io_slow`, µs); 0: none.
    pub io_slow_us: u64,
    /// Cgroups with a run-queue histogram of their own in the kernel (bounded table);
    /// waits of cgroups beyond it are counted in the per-CPU histograms and as
    /// `cgroup_full`.
    pub cgroups_max: u32,
    /// Flows (process, protocol, addresses, ports) with traffic counters of their own in
    /// the kernel (bounded table); sends and receives beyond it are counted as
    /// `flows_full`. Flows idle for two intervals are retired.
    pub flows_max: u32,
    /// Processes with scheduling counters (context switches, off-CPU time) of their own in
    /// the kernel (bounded table); switches beyond it are counted as `tasks_full`.
    /// Processes idle for two intervals are retired.
    pub tasks_max: u32,
    /// The processes written per interval as `perf.task_sched` records: the top N by
    /// off-CPU time and the top N by context switches (the union).
    pub top_n: u32,
    /// The signals to attach: `sched` (run-queue latency, context switches, off-CPU
    /// time), `block` (block I/O latency), `net` (traffic per flow, TCP lifetimes).
    pub signals: Vec<String>,
}

impl Default for Perf {
    fn default() -> Self {
        Perf {
            interval_ms: 1000,
            runq_slow_us: bpf::DEFAULT_RUNQ_SLOW_NS / 1000,
            io_slow_us: bpf::DEFAULT_IO_SLOW_NS / 1000,
            cgroups_max: bpf::DEFAULT_RUNQ_CGROUPS_MAX,
            flows_max: bpf::DEFAULT_FLOWS_MAX,
            tasks_max: bpf::DEFAULT_TASKS_MAX,
            top_n: 10,
            signals: PERF_SIGNALS.map(String::from).to_vec(),
        }
    }
}

/// `[export]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Export {
    pub grpc: Grpc,
    pub metrics: Metrics,
    pub nats: Nats,
}

/// `[export.nats]`: the summary stream to NATS JetStream (docs/fleet.md).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Nats {
    /// Server URL (empty: off), e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Subjects are `<prefix>.<host>.summary`, `.notable.<category>`, `.correlation`.
    pub subject_prefix: String,
    /// The JetStream stream that holds them.
    pub stream: String,
    /// Create the stream (subjects `<prefix>.>`) when it does not exist.
    pub create_stream: bool,
    /// Stream limits when the engine creates it.
    pub max_bytes: u64,
    pub max_age_s: u64,
    pub replicas: usize,
    /// Publishes waiting for their acks at most.
    pub in_flight: usize,
    /// Lines waiting to be published at most (beyond, dropped and counted).
    pub backlog: usize,
    /// Credentials: a user and a file holding the password, a file holding a token, a
    /// file holding an nkey seed, or a `.creds` file. Never logged.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub nkey_file: Option<PathBuf>,
    pub credentials_file: Option<PathBuf>,
    /// TLS: a CA to trust (requires TLS), and a client certificate and key.
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for Nats {
    fn default() -> Self {
        Nats {
            url: String::new(),
            subject_prefix: "kevent".into(),
            stream: "KEVENT".into(),
            create_stream: true,
            max_bytes: 1 << 30,
            max_age_s: 7 * 24 * 3600,
            replicas: 1,
            in_flight: 256,
            backlog: 65_536,
            user: None,
            password_file: None,
            token_file: None,
            nkey_file: None,
            credentials_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// Messages a gRPC client's queue holds by default (each raw event counts one).
pub const DEFAULT_CLIENT_QUEUE: usize = 16_384;
/// Bytes of each core thread's queue of written events to the export thread.
pub const DEFAULT_EXPORT_QUEUE_BYTES: usize = 4 << 20;

/// `[export.grpc]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Grpc {
    /// Address to serve the gRPC API on (empty: off), e.g. `127.0.0.1:50051`.
    pub listen: String,
    /// A file holding the bearer token clients must send (`authorization: Bearer
    /// TOKEN`); none: no token is asked.
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain and private key: serve TLS (both or neither).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Messages each client's queue holds; beyond, that client's messages are dropped
    /// (counted, and told to it).
    pub client_queue: usize,
    /// Bytes of each core thread's queue of written events to the export thread
    /// (used while a client wants raw events; a full queue drops the copy, counted).
    pub queue_bytes: usize,
}

impl Default for Grpc {
    fn default() -> Self {
        Grpc {
            listen: String::new(),
            token_file: None,
            tls_cert: None,
            tls_key: None,
            client_queue: DEFAULT_CLIENT_QUEUE,
            queue_bytes: DEFAULT_EXPORT_QUEUE_BYTES,
        }
    }
}

/// `[export.metrics]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Address to serve `/metrics` on (empty: off), e.g. `127.0.0.1:9464`.
    pub listen: String,
}

/// `[capture]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Capture {
    /// Categories to attach: process, file, net, security, container, memory, syscall.
    pub categories: Vec<String>,
    /// Bytes per CPU ring: a power of two, at least one page. With `ring_bytes_total`,
    /// the most a CPU's ring gets.
    pub ring_bytes: u32,
    /// A budget for all the rings together (0: none, every CPU gets `ring_bytes`): split
    /// over the online CPUs, rounded down to a power of two, at least `ring_bytes_min` and
    /// at most `ring_bytes` per CPU. Memory then follows the budget, not the CPU count.
    pub ring_bytes_total: u64,
    /// The floor per CPU under `ring_bytes_total`.
    pub ring_bytes_min: u32,
    /// Pending bytes at which a sleeping core thread is woken (0: every record).
    pub wakeup_bytes: u32,
    /// Syscall ids kept by the `syscall` category (x86_64 numbers); empty with
    /// `syscalls_all = false` keeps none.
    pub syscalls: Vec<u32>,
    /// Keep every syscall in the `syscall` category.
    pub syscalls_all: bool,
    /// Pair generic syscalls with their exit to record result and latency. `false`:
    /// record at sys_enter only (like `perf record -e raw_syscalls:sys_enter`), about half
    /// the cost per syscall.
    pub syscall_results: bool,
    /// Take the file and security calls from the per-syscall tracepoints
    /// (`syscalls:sys_enter_openat`, ...; tracefs is mounted when it is not), so that the
    /// application's other syscalls run no program. `false`: the raw sys_enter/sys_exit
    /// programs, on every syscall.
    pub syscall_events: bool,
    /// With an include `filter.pids`: children of those processes are included too.
    pub follow_children: bool,
    /// In-kernel per-CPU rate limits (events/s; 0 = unlimited).
    pub rate_limit: RateLimit,
    /// What a kernel that cannot supply every configured kind does to the start:
    /// `"any"` (default) starts with what it can and names each kind not captured, and
    /// why (stderr, Status, metrics, and in-band in the segments); `"all"` refuses to
    /// start unless every configured kind is captured.
    pub require: Require,
    /// Hooks never to use, as `engine doctor` names them (`tp_btf/cap_capable`,
    /// `fexit/sock_sendmsg`): each is passed over as if this kernel lacked it, so the
    /// next candidate supplies its kinds (for a hook that misbehaves on some kernel).
    pub deny_hooks: Vec<String>,
}

/// `capture.require`: how much of the configured capture must be had to start.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Require {
    /// Start with whatever can be captured (exit only when nothing can), loudly.
    #[default]
    Any,
    /// Every configured kind, or no start.
    All,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            categories: ["process", "file", "net", "security", "container", "memory"]
                .map(String::from)
                .to_vec(),
            ring_bytes: bpf::DEFAULT_RING_BYTES,
            ring_bytes_total: 64 << 20,
            ring_bytes_min: 1 << 20,
            wakeup_bytes: bpf::DEFAULT_WAKEUP_BYTES,
            syscalls: Vec::new(),
            syscalls_all: false,
            syscall_results: true,
            syscall_events: true,
            follow_children: false,
            rate_limit: RateLimit::default(),
            require: Require::Any,
            deny_hooks: Vec::new(),
        }
    }
}

/// `[capture.rate_limit]`: events/s per CPU, by category; 0 = unlimited.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    pub process: u64,
    pub file: u64,
    pub net: u64,
    pub security: u64,
    pub container: u64,
    pub memory: u64,
    pub syscall: u64,
    /// `perf.runq_wait` records.
    pub perf: u64,
    /// User page faults have their own bucket (default 1000/s per CPU).
    pub page_fault: Option<u64>,
}

/// `[filter]`: what to keep. Empty lists mean "no restriction". What the kernel can
/// filter (kinds via categories, pids, cgroups) is pushed into it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Filter {
    /// Keep only these kinds (`process.exec`, ...).
    pub kinds: Vec<String>,
    /// Drop these kinds.
    pub exclude_kinds: Vec<String>,
    /// Keep only these processes (tgids). Pushed into the kernel.
    pub pids: Vec<u32>,
    /// Drop these processes. Pushed into the kernel.
    pub exclude_pids: Vec<u32>,
    /// Keep only these command names; `name*` matches a prefix.
    pub comms: Vec<String>,
    /// Drop these command names; `name*` matches a prefix.
    pub exclude_comms: Vec<String>,
    /// Keep only these (real) uids.
    pub uids: Vec<u32>,
    /// Keep only these cgroup v2 ids. Pushed into the kernel.
    pub cgroups: Vec<u64>,
    /// File events: keep only paths starting with one of these.
    pub path_prefixes: Vec<String>,
    /// Net events: keep only these addresses (`10.0.0.0/8`, `::1`, `192.168.1.5`).
    pub addresses: Vec<String>,
    /// Net events: keep only these ports (local or remote).
    pub ports: Vec<u16>,
}

/// `[sampling]`: per-class budgets; over budget, 1-in-N with N adapted every interval.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sampling {
    /// How often N is recomputed from the observed rate.
    pub interval_ms: u64,
    /// Events/s per core thread for the `high` class; 0 = never sampled.
    pub high_per_sec: u64,
    /// Events/s per core thread for the `normal` class; 0 = never sampled.
    pub normal_per_sec: u64,
    /// Events/s per core thread for the `bulk` class; 0 = never sampled.
    pub bulk_per_sec: u64,
    /// Sample in the kernel where it can decide alone (before ring space is reserved),
    /// else in the engine.
    pub in_kernel: bool,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            interval_ms: DEFAULT_SAMPLING_INTERVAL_MS,
            high_per_sec: 0,
            normal_per_sec: 200_000,
            bulk_per_sec: 50_000,
            in_kernel: true,
        }
    }
}

/// `[engine]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Engine {
    /// CPUs to run core threads on (one thread each, pinned); empty: every online CPU.
    pub cpus: Vec<usize>,
    /// Records a core thread takes from one ring before moving to the next.
    pub poll_budget_events: usize,
    /// How long a core thread sleeps in epoll when every ring is empty.
    pub poll_timeout_ms: u64,
    /// Status line on stderr every this many ms; 0 = never.
    pub status_interval_ms: u64,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            cpus: Vec::new(),
            poll_budget_events: DEFAULT_POLL_BUDGET_EVENTS,
            poll_timeout_ms: DEFAULT_POLL_TIMEOUT_MS,
            status_interval_ms: DEFAULT_STATUS_INTERVAL_MS,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Where segments go (`stream-NNN/` per core thread).
    pub data_dir: PathBuf,
    /// Create `data_dir` (and parents) when missing; else a missing one is an error.
    pub create_data_dir: bool,
    /// Encoded bytes per block before compression.
    pub block_bytes: usize,
    /// zstd level (-7..=19; 1 is fast).
    pub zstd_level: i32,
    /// Rotate a segment at this size.
    pub segment_bytes_max: u64,
    /// Rotate a segment at this age.
    pub segment_age_ms: u64,
    /// When written data is made durable.
    pub durability: DurabilityMode,
    /// With `durability = "interval"`: sync at most this long after a block.
    pub durability_interval_ms: u64,
    /// Write the partial block (if any) every this many ms, counted from the previous
    /// such flush (not from the age of its oldest record): bounds what a crash can take
    /// with it when events are few to about this long. 0 = only full blocks.
    pub flush_interval_ms: u64,
    /// Keep at most this many bytes of sealed segments in all (split evenly over the
    /// streams); 0 = unlimited.
    pub retention_bytes_max: u64,
    /// Delete sealed segments older than this; 0 = keep.
    pub retention_age_s: u64,
    /// How segments are written.
    pub io: IoMode,
}

/// `storage.durability`: when written data is made durable (fdatasync).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityMode {
    /// Never explicitly: the kernel writes back when it likes.
    None,
    /// When a segment is sealed.
    OnSeal,
    /// At most `storage.durability_interval_ms` after a block is written, and on seal.
    Interval,
}

/// `storage.io`: how segments are written.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IoMode {
    /// io_uring (Linux).
    #[serde(alias = "io_uring")]
    Uring,
    /// Plain positioned writes.
    Portable,
}

impl IoMode {
    /// The storage backend.
    pub fn backend(self) -> storage::IoBackend {
        match self {
            IoMode::Uring => storage::IoBackend::Uring,
            IoMode::Portable => storage::IoBackend::Portable,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            create_data_dir: true,
            block_bytes: storage::DEFAULT_BLOCK_BYTES,
            zstd_level: storage::DEFAULT_ZSTD_LEVEL,
            segment_bytes_max: storage::DEFAULT_SEGMENT_BYTES_MAX,
            segment_age_ms: storage::DEFAULT_SEGMENT_AGE_MAX.as_millis() as u64,
            durability: DurabilityMode::OnSeal,
            durability_interval_ms: DEFAULT_DURABILITY_INTERVAL_MS,
            flush_interval_ms: DEFAULT_FLUSH_INTERVAL_MS,
            retention_bytes_max: 0,
            retention_age_s: 0,
            io: IoMode::Uring,
        }
    }
}

/// `[semantic]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Semantic {
    /// Events whose importance is at least this are notable.
    pub min_importance: f64,
    /// Fold what the cores write into windows, mark them in-band, and run the semantic
    /// thread (`engine summarize` recomputes the same from the segments).
    pub enabled: bool,
    /// Window length (ms); windows are aligned to wall-clock multiples of it.
    pub window_ms: u64,
    /// How long after its end a window stays open on a core for records still in
    /// flight (ms); what comes later goes to the next window, counted as late.
    pub lateness_ms: u64,
    /// Entries in each top list of a window summary.
    pub top_n: usize,
    /// The live summary stream as JSON lines: empty = off, `-` = stdout, else a file.
    pub jsonl_path: String,
    /// Size at which the JSON-lines file is rotated (to `PATH.1`).
    pub jsonl_bytes_max: u64,
    /// Bytes of notable events each core keeps per window (their records); beyond,
    /// they are counted as dropped in the window.
    pub notable_bytes_max: usize,
    /// Correlation `crash_loop`: this many crashes of one executable...
    pub crash_loop_count: u32,
    /// ...within this long (ms).
    pub crash_loop_ms: u32,
    /// Correlation `tcp_trouble`: failed connects + retransmits + resets to one peer in
    /// one window.
    pub tcp_trouble_count: u32,
    /// Correlation `priv_exec`: an exec at most this long (ms) after becoming uid/gid 0.
    pub priv_exec_ms: u32,
    /// Correlation `exec_connect_write`: exec, connect and write within this long (ms).
    pub chain_ms: u32,
    /// Closed windows in flight from each core to the semantic thread at most; a core
    /// whose queue is full drops the window's partial (counted, in-band as
    /// `semantic_queue_full`), it never waits.
    pub queue_windows: usize,
}

/// Default window length.
pub const DEFAULT_WINDOW_MS: u64 = 10_000;
/// Default lateness a window waits for.
pub const DEFAULT_LATENESS_MS: u64 = 2_000;
/// Default top-N.
pub const DEFAULT_TOP_N: usize = 10;
/// Default correlation thresholds.
pub(crate) const DEFAULT_THRESHOLDS: crate::semantic::correlate::Thresholds =
    crate::semantic::correlate::Thresholds {
        crash_loop_count: 3,
        crash_loop_ms: 60_000,
        tcp_trouble_count: 5,
        priv_exec_ms: 10_000,
        chain_ms: 60_000,
    };

impl Semantic {
    /// What a core's windows are made of.
    pub(crate) fn window_settings(&self) -> crate::semantic::core::WindowSettings {
        crate::semantic::core::WindowSettings {
            window_ns: self.window_ms.saturating_mul(1_000_000),
            top_n: self.top_n as u32,
            lateness_ns: self.lateness_ms.saturating_mul(1_000_000),
            min_importance: self.min_importance,
            notable_bytes: self.notable_bytes_max,
            thresholds: self.thresholds(),
        }
    }

    /// The correlation thresholds.
    pub(crate) fn thresholds(&self) -> crate::semantic::correlate::Thresholds {
        crate::semantic::correlate::Thresholds {
            crash_loop_count: self.crash_loop_count,
            crash_loop_ms: self.crash_loop_ms,
            tcp_trouble_count: self.tcp_trouble_count,
            priv_exec_ms: self.priv_exec_ms,
            chain_ms: self.chain_ms,
        }
    }
}

/// Default bytes of notable events per window and core.
pub const DEFAULT_NOTABLE_BYTES_MAX: usize = 65_536;
/// Default closed windows in flight per core.
pub const DEFAULT_QUEUE_WINDOWS: usize = 64;
/// Default rotation size of the JSON-lines file.
pub const DEFAULT_JSONL_BYTES_MAX: u64 = 64 << 20;

impl Default for Semantic {
    fn default() -> Self {
        Semantic {
            min_importance: DEFAULT_MIN_IMPORTANCE,
            enabled: true,
            window_ms: DEFAULT_WINDOW_MS,
            lateness_ms: DEFAULT_LATENESS_MS,
            top_n: DEFAULT_TOP_N,
            jsonl_path: String::new(),
            jsonl_bytes_max: DEFAULT_JSONL_BYTES_MAX,
            queue_windows: DEFAULT_QUEUE_WINDOWS,
            notable_bytes_max: DEFAULT_NOTABLE_BYTES_MAX,
            crash_loop_count: DEFAULT_THRESHOLDS.crash_loop_count,
            crash_loop_ms: DEFAULT_THRESHOLDS.crash_loop_ms,
            tcp_trouble_count: DEFAULT_THRESHOLDS.tcp_trouble_count,
            priv_exec_ms: DEFAULT_THRESHOLDS.priv_exec_ms,
            chain_ms: DEFAULT_THRESHOLDS.chain_ms,
        }
    }
}

/// Default bound of the process table (entries).
pub const DEFAULT_PROCESSES_MAX: usize = 32_768;
/// Default bound of the cgroup table (entries).
pub const DEFAULT_CGROUPS_MAX: usize = 8_192;
/// Default time exited processes and removed cgroups stay resolvable.
pub const DEFAULT_EXIT_GRACE_MS: u64 = 10_000;
/// Default bytes of each core's queue of lifecycle events to the enrichment thread.
pub const DEFAULT_ENRICH_QUEUE_BYTES: usize = 1 << 20;
/// Bounds of the table sizes accepted.
pub const ENRICH_ENTRIES_MIN: usize = 16;
pub const ENRICH_ENTRIES_MAX: usize = 1 << 22;

/// `[enrich]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Enrich {
    /// Keep a process and a container table and write them into the stream (replay
    /// then names each event's executable, ancestors, user, group and container).
    pub enabled: bool,
    /// Process table bound (entries, about 0.5 KiB each); when full, an exited process
    /// is evicted first, else the youngest live one. Evictions are counted and reported.
    pub processes_max: usize,
    /// Cgroup table bound (entries).
    pub cgroups_max: usize,
    /// How long an exited process or removed cgroup stays in the tables (ms), so that
    /// events still in flight resolve.
    pub exit_grace_ms: u64,
    /// Bytes of each core thread's queue of lifecycle events to the enrichment thread;
    /// a full queue drops the copy (counted, and in-band as `enrich_queue_full`), never
    /// the event.
    pub queue_bytes: usize,
}

impl Default for Enrich {
    fn default() -> Self {
        Enrich {
            enabled: true,
            processes_max: DEFAULT_PROCESSES_MAX,
            cgroups_max: DEFAULT_CGROUPS_MAX,
            exit_grace_ms: DEFAULT_EXIT_GRACE_MS,
            queue_bytes: DEFAULT_ENRICH_QUEUE_BYTES,
        }
    }
}

/// A config that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {} problem(s):\n  {}", problems.len(), problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("-o {key}={value}: {message}")]
    Override {
        key: String,
        value: String,
        message: String,
    },
}

impl Default for Config {
    /// `configs/default.toml` (the embedded default).
    fn default() -> Config {
        Config::preset(DEFAULT_TOML)
    }
}

/// One `-o KEY=VALUE` (`--set`): the config key by its dotted TOML path
/// (`semantic.min_importance`), and the value as TOML (`0.6`, `true`, `["process"]`,
/// `"text"`); a value that is not TOML is taken as a string (`/data/kev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(s: &str) -> Result<Override, String> {
        let Some((key, value)) = s.split_once('=') else {
            return Err(format!(
                "{s:?} is not KEY=VALUE (e.g. -o semantic.min_importance=0.6)"
            ));
        };
        let key = key.trim();
        let ok = !key.is_empty()
            && key.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if !ok {
            return Err(format!(
                "{key:?} is not a config key (dotted names such as storage.data_dir)"
            ));
        }
        Ok(Override {
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

impl Override {
    /// The value as TOML, or as a string when it is not TOML.
    fn toml_value(&self) -> toml::Value {
        match toml::from_str::<toml::Table>(&format!("v = {}", self.value)) {
            Ok(t) if t.len() == 1 => t.get("v").cloned().unwrap_or_else(|| self.string()),
            _ => self.string(),
        }
    }

    fn string(&self) -> toml::Value {
        toml::Value::String(self.value.clone())
    }

    /// Sets the value at the key's path in `doc`, making the tables on the way.
    fn apply(&self, doc: &mut toml::Table) -> Result<(), String> {
        let parts: Vec<&str> = self.key.split('.').collect();
        let (last, tables) = parts.split_last().expect("a key has a part");
        let mut at = doc;
        for (i, part) in tables.iter().enumerate() {
            let entry = at
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(format!("{} is a value, not a table", parts[..=i].join(".")));
                }
            };
        }
        at.insert(last.to_string(), self.toml_value());
        Ok(())
    }
}

impl Config {
    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        Config::parse_with(text, origin, &[])
    }

    /// Parses TOML text, then applies `overrides` in order; `origin` names the text in
    /// errors, and an override that does not fit (an unknown key, a value of the wrong
    /// type) is named with its key. Not validated (see [`Config::check`]).
    pub fn parse_with(
        text: &str,
        origin: &Path,
        overrides: &[Override],
    ) -> Result<Config, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: message.trim_end().replace('\n', "\n  "),
        };
        let config: Config = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        if overrides.is_empty() {
            return Ok(config);
        }
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        let mut config = config;
        // One at a time, so that the one that does not fit is the one named.
        for o in overrides {
            let err = |message: String| ConfigError::Override {
                key: o.key.clone(),
                value: o.value.clone(),
                message,
            };
            o.apply(&mut doc).map_err(err)?;
            config = Config::deserialize(toml::Value::Table(doc.clone()))
                .map_err(|e| err(e.to_string().trim_end().replace('\n', " ")))?;
        }
        Ok(config)
    }

    /// Reads a file (or, without one, the embedded default), applies `overrides`, and
    /// validates the result; errors name the file or the override.
    pub fn load_with(path: Option<&Path>, overrides: &[Override]) -> Result<Config, ConfigError> {
        let (text, origin) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?,
                p,
            ),
            None => (DEFAULT_TOML.to_string(), Path::new(EMBEDDED_ORIGIN)),
        };
        let config = Config::parse_with(&text, origin, overrides)?;
        if overrides.is_empty() {
            config.check(origin)?;
        } else {
            config.check(&PathBuf::from(format!(
                "{} with -o {}",
                origin.display(),
                overrides
                    .iter()
                    .map(|o| format!("{}={}", o.key, o.value))
                    .collect::<Vec<_>>()
                    .join(" -o ")
            )))?;
        }
        Ok(config)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Config::parse(&text, path)?;
        config.check(path)?;
        Ok(config)
    }

    /// What a key a file leaves out is: each section's own defaults.
    fn base() -> Config {
        Config {
            capture: Capture::default(),
            filter: Filter::default(),
            sampling: Sampling::default(),
            engine: Engine::default(),
            storage: Storage::default(),
            semantic: Semantic::default(),
            enrich: Enrich::default(),
            export: Export::default(),
            perf: Perf::default(),
        }
    }

    /// A preset's text as a config, not yet checked against this machine
    /// ([`Config::validate`]; [`crate::Collector::start`] checks it).
    fn preset(text: &str) -> Config {
        toml::from_str(text).expect("the presets in configs/ parse (tested)")
    }

    /// `configs/high-perf.toml`: capture more (generic syscalls), bigger rings and
    /// blocks, the fastest compression, bigger windows.
    pub fn high_performance() -> Config {
        Config::preset(HIGH_PERF_TOML)
    }

    /// `configs/security.toml`: a lower notable threshold and more correlations.
    pub fn security() -> Config {
        Config::preset(SECURITY_TOML)
    }

    /// The embedded default.
    pub fn embedded_default() -> Config {
        Config::parse(DEFAULT_TOML, Path::new(EMBEDDED_ORIGIN))
            .expect("configs/default.toml parses (tested)")
    }

    /// [`Config::validate`] as an error naming `origin`.
    pub fn check(&self, origin: &Path) -> Result<(), ConfigError> {
        let problems = self.validate();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                path: origin.to_path_buf(),
                problems,
            })
        }
    }

    /// Every problem, each with its key path; empty when the config is sound.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        let known = bpf::known_hooks();
        for h in &self.capture.deny_hooks {
            if !known.contains(h) {
                p.push(format!(
                    "capture.deny_hooks: {h:?} is no hook of the collector (known: {})",
                    known.join(", ")
                ));
            }
        }
        if !(10..=3_600_000).contains(&self.perf.interval_ms) {
            p.push(format!(
                "perf.interval_ms: {} is not between 10 and 3600000",
                self.perf.interval_ms
            ));
        }
        for s in &self.perf.signals {
            if !PERF_SIGNALS.contains(&s.as_str()) {
                p.push(format!(
                    "perf.signals: unknown signal {s:?} (sched, block, net)"
                ));
            }
        }
        for (key, v) in [
            ("perf.runq_slow_us", self.perf.runq_slow_us),
            ("perf.io_slow_us", self.perf.io_slow_us),
        ] {
            if v > 3_600_000_000 {
                p.push(format!("{key}: {v} is above an hour"));
            }
        }
        for (key, v) in [
            ("perf.cgroups_max", self.perf.cgroups_max),
            ("perf.flows_max", self.perf.flows_max),
            ("perf.tasks_max", self.perf.tasks_max),
            ("perf.top_n", self.perf.top_n),
        ] {
            if !(1..=1 << 20).contains(&v) {
                p.push(format!("{key}: {v} is not between 1 and 1048576"));
            }
        }
        let c = &self.capture;
        if c.categories.is_empty() {
            p.push("capture.categories: at least one category is needed".into());
        }
        for name in &c.categories {
            if bpf::Category::from_name(name).is_none() {
                p.push(format!(
                    "capture.categories: unknown category {name:?} (process, file, net, security, container, memory, syscall, perf)"
                ));
            }
        }
        let online = online_cpus();
        if !c.ring_bytes.is_power_of_two() || c.ring_bytes < 4096 || c.ring_bytes > RING_BYTES_MAX {
            p.push(format!(
                "capture.ring_bytes: {} is not a power of two between 4096 and {RING_BYTES_MAX}",
                c.ring_bytes
            ));
        } else if !c.ring_bytes_min.is_power_of_two()
            || c.ring_bytes_min < 4096
            || c.ring_bytes_min > RING_BYTES_MAX
        {
            p.push(format!(
                "capture.ring_bytes_min: {} is not a power of two between 4096 and {RING_BYTES_MAX}",
                c.ring_bytes_min
            ));
        } else if let Some(problem) = memory_total_bytes().and_then(|total| {
            ring_memory_problem(c.ring_bytes_per_cpu(online.len()), online.len(), total)
        }) {
            p.push(problem);
        }
        if c.wakeup_bytes >= c.ring_bytes {
            p.push(format!(
                "capture.wakeup_bytes: {} must be below capture.ring_bytes ({})",
                c.wakeup_bytes, c.ring_bytes
            ));
        }
        for id in c.syscalls.iter().filter(|&&id| id >= bpf::SYSCALL_ID_MAX) {
            p.push(format!(
                "capture.syscalls: {id} is not a syscall id below {}",
                bpf::SYSCALL_ID_MAX
            ));
        }
        let r = &c.rate_limit;
        for (key, rate) in [
            ("process", Some(r.process)),
            ("file", Some(r.file)),
            ("net", Some(r.net)),
            ("security", Some(r.security)),
            ("container", Some(r.container)),
            ("memory", Some(r.memory)),
            ("syscall", Some(r.syscall)),
            ("page_fault", r.page_fault),
        ] {
            if let Some(rate) = rate.filter(|&v| v > bpf::RATE_PER_SEC_MAX) {
                p.push(format!(
                    "capture.rate_limit.{key}: {rate} is above {} events/s",
                    bpf::RATE_PER_SEC_MAX
                ));
            }
        }
        if c.follow_children && self.filter.pids.is_empty() {
            p.push("capture.follow_children: needs filter.pids to follow".into());
        }
        let f = &self.filter;
        for (key, list) in [
            ("filter.kinds", &f.kinds),
            ("filter.exclude_kinds", &f.exclude_kinds),
        ] {
            for k in list {
                if bpf::Kind::from_name(k).is_none() && k != "loss" {
                    p.push(format!("{key}: unknown kind {k:?}"));
                }
            }
        }
        if !f.pids.is_empty() && !f.exclude_pids.is_empty() {
            p.push("filter.pids and filter.exclude_pids: give one or the other".into());
        }
        for (key, list) in [
            ("filter.comms", &f.comms),
            ("filter.exclude_comms", &f.exclude_comms),
        ] {
            for c in list {
                let base = c.strip_suffix('*').unwrap_or(c);
                if base.is_empty() || base.len() > 15 || base.contains('*') {
                    p.push(format!(
                        "{key}: {c:?} is not a command name (1-15 bytes, optional trailing *)"
                    ));
                }
            }
        }
        for a in &f.addresses {
            if crate::cidr::parse_cidr(a).is_none() {
                p.push(format!(
                    "filter.addresses: {a:?} is not an IP address or CIDR block"
                ));
            }
        }
        for pp in &f.path_prefixes {
            if pp.is_empty() {
                p.push("filter.path_prefixes: empty prefix".into());
            }
        }
        let s = &self.sampling;
        if s.interval_ms == 0 || s.interval_ms > 60_000 {
            p.push(format!(
                "sampling.interval_ms: {} is not between 1 and 60000",
                s.interval_ms
            ));
        }
        let e = &self.engine;
        if e.poll_budget_events == 0 {
            p.push("engine.poll_budget_events: must be above 0".into());
        }
        if e.poll_timeout_ms == 0 || e.poll_timeout_ms > 1000 {
            p.push(format!(
                "engine.poll_timeout_ms: {} is not between 1 and 1000",
                e.poll_timeout_ms
            ));
        }
        for (i, cpu) in e.cpus.iter().enumerate() {
            if !online.contains(cpu) {
                p.push(format!(
                    "engine.cpus: CPU {cpu} is not online (online: {online:?})"
                ));
            }
            if e.cpus[..i].contains(cpu) {
                p.push(format!(
                    "engine.cpus: CPU {cpu} is listed more than once (one core thread per CPU)"
                ));
            }
        }
        let st = &self.storage;
        if st.data_dir.as_os_str().is_empty() {
            p.push("storage.data_dir: empty path".into());
        }
        if st.durability == DurabilityMode::Interval && st.durability_interval_ms == 0 {
            p.push("storage.durability_interval_ms: must be above 0".into());
        }
        if st.flush_interval_ms > FLUSH_INTERVAL_MS_MAX {
            p.push(format!(
                "storage.flush_interval_ms: {} is above {FLUSH_INTERVAL_MS_MAX} (one hour)",
                st.flush_interval_ms
            ));
        }
        if st.segment_age_ms == 0 {
            p.push("storage.segment_age_ms: must be above 0".into());
        }
        let mut w = storage::WriterConfig::new(&st.data_dir, 0);
        w.block_bytes = st.block_bytes;
        w.zstd_level = st.zstd_level;
        w.segment_bytes_max = st.segment_bytes_max;
        for problem in w.problems() {
            p.push(format!("storage.{problem}"));
        }
        if !(0.0..=1.0).contains(&self.semantic.min_importance) {
            p.push(format!(
                "semantic.min_importance: {} is not between 0 and 1",
                self.semantic.min_importance
            ));
        }
        let sm = &self.semantic;
        if !(100..=3_600_000).contains(&sm.window_ms) {
            p.push(format!(
                "semantic.window_ms: {} is not between 100 and 3600000",
                sm.window_ms
            ));
        }
        if sm.lateness_ms > 600_000 {
            p.push(format!(
                "semantic.lateness_ms: {} is above 600000 (ten minutes)",
                sm.lateness_ms
            ));
        }
        if !(1..=1000).contains(&sm.top_n) {
            p.push(format!(
                "semantic.top_n: {} is not between 1 and 1000",
                sm.top_n
            ));
        }
        if sm.jsonl_bytes_max < 4096 {
            p.push(format!(
                "semantic.jsonl_bytes_max: {} is below 4096",
                sm.jsonl_bytes_max
            ));
        }
        for (key, v) in [
            ("crash_loop_count", sm.crash_loop_count),
            ("tcp_trouble_count", sm.tcp_trouble_count),
        ] {
            if v == 0 {
                p.push(format!("semantic.{key}: must be at least 1"));
            }
        }
        if sm.notable_bytes_max > 64 << 20 {
            p.push(format!(
                "semantic.notable_bytes_max: {} is above {} (64 MiB)",
                sm.notable_bytes_max,
                64 << 20
            ));
        }
        if !(1..=4096).contains(&sm.queue_windows) {
            p.push(format!(
                "semantic.queue_windows: {} is not between 1 and 4096",
                sm.queue_windows
            ));
        }
        if !sm.jsonl_path.is_empty() && !sm.enabled {
            p.push("semantic.jsonl_path: set, but semantic.enabled is false".into());
        }
        let e = &self.enrich;
        for (key, v) in [
            ("processes_max", e.processes_max),
            ("cgroups_max", e.cgroups_max),
        ] {
            if !(ENRICH_ENTRIES_MIN..=ENRICH_ENTRIES_MAX).contains(&v) {
                p.push(format!(
                    "enrich.{key}: {v} is not between {ENRICH_ENTRIES_MIN} and {ENRICH_ENTRIES_MAX}"
                ));
            }
        }
        if e.exit_grace_ms > FLUSH_INTERVAL_MS_MAX {
            p.push(format!(
                "enrich.exit_grace_ms: {} is above {FLUSH_INTERVAL_MS_MAX} (one hour)",
                e.exit_grace_ms
            ));
        }
        if !(65_536..=1 << 30).contains(&e.queue_bytes) {
            p.push(format!(
                "enrich.queue_bytes: {} is not between 65536 and {}",
                e.queue_bytes,
                1u64 << 30
            ));
        }
        let g = &self.export.grpc;
        for (key, addr) in [
            ("export.grpc.listen", &g.listen),
            ("export.metrics.listen", &self.export.metrics.listen),
        ] {
            if !addr.is_empty() && addr.parse::<std::net::SocketAddr>().is_err() {
                p.push(format!(
                    "{key}: {addr:?} is not an address and port (e.g. 127.0.0.1:50051)"
                ));
            }
        }
        let n = &self.export.nats;
        if !n.url.is_empty() && !n.url.starts_with("nats://") && !n.url.starts_with("tls://") {
            p.push(format!(
                "export.nats.url: {:?} is not a nats:// or tls:// URL",
                n.url
            ));
        }
        let token_ok = |t: &str| {
            !t.is_empty()
                && !t.contains(|c: char| c == '.' || c == '*' || c == '>' || c.is_whitespace())
        };
        if !n.subject_prefix.split('.').all(token_ok) {
            p.push(format!(
                "export.nats.subject_prefix: {:?} is not a subject (tokens without * > or spaces)",
                n.subject_prefix
            ));
        }
        if !token_ok(&n.stream) {
            p.push(format!(
                "export.nats.stream: {:?} is not a stream name (no . * > or spaces)",
                n.stream
            ));
        }
        if !(1..=65_536).contains(&n.in_flight) {
            p.push(format!(
                "export.nats.in_flight: {} is not between 1 and 65536",
                n.in_flight
            ));
        }
        if !(16..=1 << 24).contains(&n.backlog) {
            p.push(format!(
                "export.nats.backlog: {} is not between 16 and {}",
                n.backlog,
                1 << 24
            ));
        }
        if !(1..=5).contains(&n.replicas) {
            p.push(format!(
                "export.nats.replicas: {} is not between 1 and 5",
                n.replicas
            ));
        }
        if g.tls_cert.is_some() != g.tls_key.is_some() {
            p.push("export.grpc.tls_cert and export.grpc.tls_key: give both or neither".into());
        }
        if !(16..=1 << 24).contains(&g.client_queue) {
            p.push(format!(
                "export.grpc.client_queue: {} is not between 16 and {}",
                g.client_queue,
                1 << 24
            ));
        }
        if !(65_536..=1 << 30).contains(&g.queue_bytes) {
            p.push(format!(
                "export.grpc.queue_bytes: {} is not between 65536 and {}",
                g.queue_bytes,
                1u64 << 30
            ));
        }
        p
    }

    /// The CPUs to run core threads on.
    pub fn core_cpus(&self) -> Vec<usize> {
        if self.engine.cpus.is_empty() {
            online_cpus()
        } else {
            self.engine.cpus.clone()
        }
    }
}

impl Capture {
    /// The ring size of each CPU with `cpus` online: `ring_bytes`, or its share of
    /// `ring_bytes_total` (a power of two, between `ring_bytes_min` and `ring_bytes`;
    /// `ring_bytes` wins where the two disagree).
    pub fn ring_bytes_per_cpu(&self, cpus: usize) -> u32 {
        if self.ring_bytes_total == 0 {
            return self.ring_bytes;
        }
        let share = self.ring_bytes_total / cpus.max(1) as u64;
        let pow = if share == 0 {
            0
        } else {
            1u64 << (63 - share.leading_zeros())
        };
        // `ring_bytes` bounds everything, the floor included.
        let floor = self.ring_bytes_min.min(self.ring_bytes);
        pow.clamp(u64::from(floor), u64::from(self.ring_bytes)) as u32
    }

    /// The wake-up threshold for rings of `ring_bytes` (a budget can make the rings
    /// smaller than `wakeup_bytes` was set for: then a quarter of the ring).
    pub fn wakeup_bytes_for(&self, ring_bytes: u32) -> u32 {
        self.wakeup_bytes.min(ring_bytes / 4)
    }
}

/// The rings take `ring_bytes` on every online CPU (whatever `engine.cpus` says): a
/// problem when that is more than [`RING_MEMORY_SHARE_MAX`] of `memory_bytes`.
fn ring_memory_problem(ring_bytes: u32, cpus: usize, memory_bytes: u64) -> Option<String> {
    let rings = u64::from(ring_bytes).saturating_mul(cpus as u64);
    let limit = (memory_bytes as f64 * RING_MEMORY_SHARE_MAX) as u64;
    (rings > limit).then(|| {
        format!(
            "capture.ring_bytes: {ring_bytes} per CPU x {cpus} online CPUs = {} MiB of rings, more than {:.0}% of this machine's {} MiB of memory",
            rings >> 20,
            RING_MEMORY_SHARE_MAX * 100.0,
            memory_bytes >> 20
        )
    })
}

/// `MemTotal` of `/proc/meminfo`, in bytes (`None` where it cannot be read).
fn memory_total_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// Online CPUs, as the kernel side sees them (CPU 0 if they cannot be read).
pub fn online_cpus() -> Vec<usize> {
    match bpf::online_cpus() {
        Ok(cpus) if !cpus.is_empty() => cpus.into_iter().map(|c| c as usize).collect(),
        _ => vec![0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in configs/ (read from the directory, not from a list).
    fn presets() -> Vec<PathBuf> {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn a_ring_budget_is_split_over_the_cpus_within_its_bounds() {
        let mut c = Capture {
            ring_bytes: 64 << 20,
            ring_bytes_total: 64 << 20,
            ..Capture::default()
        };
        assert_eq!(c.ring_bytes_per_cpu(2), 32 << 20);
        assert_eq!(c.ring_bytes_per_cpu(64), 1 << 20);
        assert_eq!(c.ring_bytes_per_cpu(1000), 1 << 20, "the floor");
        assert_eq!(c.ring_bytes_per_cpu(1), 64 << 20, "the cap");
        assert_eq!(
            c.ring_bytes_per_cpu(3),
            16 << 20,
            "a power of two below the share"
        );
        c.ring_bytes_min = 256 << 10;
        assert_eq!(c.ring_bytes_per_cpu(256), 256 << 10);
        assert_eq!(c.wakeup_bytes_for(256 << 10), 64 << 10);
        c.ring_bytes_total = 0;
        assert_eq!(c.ring_bytes_per_cpu(256), 64 << 20, "no budget: ring_bytes");
        // A small ring_bytes (set before budgets existed) bounds the floor too.
        let small = Capture {
            ring_bytes: 64 << 10,
            wakeup_bytes: 16 << 10,
            ..Capture::default()
        };
        assert_eq!(small.ring_bytes_per_cpu(2), 64 << 10);
        let problems = Config {
            capture: small,
            ..Config::default()
        }
        .validate();
        assert!(problems.is_empty(), "{problems:?}");
        let mut bad = Config::default();
        bad.capture.ring_bytes_min = 3 << 10;
        assert!(
            bad.validate()
                .iter()
                .any(|p| p.starts_with("capture.ring_bytes_min")),
            "{:?}",
            bad.validate()
        );
    }

    #[test]
    fn every_preset_parses_and_validates() {
        let files = presets();
        let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap()).collect();
        for needed in ["default.toml", "high-perf.toml", "security.toml"] {
            assert!(
                names.iter().any(|n| *n == needed),
                "configs/{needed} exists"
            );
        }
        for path in &files {
            Config::load(path).unwrap_or_else(|e| panic!("{e}"));
        }
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs"));
        assert_eq!(
            Config::embedded_default(),
            Config::load(&dir.join("default.toml")).unwrap()
        );
        // The library's constructors are the presets.
        for (c, file) in [
            (Config::default(), "default.toml"),
            (Config::high_performance(), "high-perf.toml"),
            (Config::security(), "security.toml"),
        ] {
            assert_eq!(c, Config::load(&dir.join(file)).unwrap(), "{file}");
        }
        assert_ne!(Config::default(), Config::high_performance());
        assert_ne!(Config::default(), Config::security());
    }

    #[test]
    fn every_key_of_every_preset_is_documented() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/config.md"))
                .expect("docs/config.md");
        for path in presets() {
            let text = std::fs::read_to_string(path).unwrap();
            let value: toml::Table = toml::from_str(&text).unwrap();
            for (section, table) in &value {
                assert!(
                    doc.contains(&format!("[{section}]")),
                    "section [{section}] undocumented"
                );
                for (key, v) in table.as_table().expect("sections are tables") {
                    if let Some(sub) = v.as_table() {
                        let head = format!("[{section}.{key}]");
                        assert!(doc.contains(&head), "{head} undocumented");
                        for k in sub.keys() {
                            assert!(
                                doc.contains(&format!("`{k}`")),
                                "{section}.{key}.{k} undocumented"
                            );
                        }
                        continue;
                    }
                    assert!(
                        doc.contains(&format!("`{key}`")),
                        "{section}.{key} undocumented"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_place() {
        let e = Config::parse("[capture]\nring_byts = 4096\n", Path::new("x.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("x.toml") && msg.contains("ring_byts"), "{msg}");
        let e = Config::parse("[nope]\n", Path::new("y.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn overrides_set_keys_by_path_and_name_the_one_that_does_not_fit() {
        let o = |s: &str| s.parse::<Override>().unwrap();
        let c = Config::parse_with(
            "[storage]\nzstd_level = 3\n",
            Path::new("t.toml"),
            &[
                o("storage.zstd_level=5"),
                o("semantic.min_importance=0.6"),
                o("storage.data_dir=/data/kev"),
                o(r#"capture.categories=["process", "net"]"#),
                o("enrich.enabled=false"),
                o("filter.comms=[]"),
            ],
        )
        .unwrap();
        assert_eq!(c.storage.zstd_level, 5);
        assert_eq!(c.semantic.min_importance, 0.6);
        assert_eq!(c.storage.data_dir, PathBuf::from("/data/kev"));
        assert_eq!(c.capture.categories, ["process", "net"]);
        assert!(!c.enrich.enabled);
        // The last of two overrides of one key wins.
        let c = Config::parse_with(
            "",
            Path::new("t.toml"),
            &[o("storage.zstd_level=1"), o("storage.zstd_level=2")],
        )
        .unwrap();
        assert_eq!(c.storage.zstd_level, 2);
        for (bad, names) in [
            ("storage.bogus=1", "storage.bogus"),
            ("bogus=1", "bogus"),
            ("storage.zstd_level=fast", "storage.zstd_level"),
            ("storage=1", "storage"),
            ("storage.zstd_level.x=1", "storage.zstd_level.x"),
        ] {
            let e = Config::parse_with("", Path::new("t.toml"), &[o(bad)])
                .unwrap_err()
                .to_string();
            assert!(e.contains(names), "{bad}: {e}");
        }
        for bad in ["nokey", "=1", "a..b=1", "a b=1", ".a=1"] {
            assert!(bad.parse::<Override>().is_err(), "{bad}");
        }
        // A value is TOML or else a string, never more than one key.
        assert_eq!(
            o("a=1\nb = 2").toml_value(),
            toml::Value::String("1\nb = 2".into())
        );
    }

    #[test]
    fn validate_reports_every_problem_with_its_key() {
        let text = r#"
[capture]
categories = ["process", "bogus"]
ring_bytes = 1000
syscalls = [1, 100000]
[capture.rate_limit]
net = 5000000000
[filter]
kinds = ["process.exce"]
comms = ["waytoolongcommandname"]
addresses = ["10.0.0.0/33"]
[engine]
cpus = [0, 0]
[storage]
zstd_level = 42
[semantic]
min_importance = 2.0
[perf]
signals = ["sched", "disk"]
interval_ms = 5
tasks_max = 0
"#;
        let c = Config::parse(text, Path::new("bad.toml")).unwrap();
        let problems = c.validate();
        let expected = [
            "capture.categories",
            "capture.ring_bytes",
            "capture.wakeup_bytes",
            "capture.syscalls",
            "capture.rate_limit.net",
            "filter.kinds",
            "filter.comms",
            "filter.addresses",
            "engine.cpus",
            "storage.zstd_level",
            "semantic.min_importance",
            "perf.interval_ms",
            "perf.signals",
            "perf.tasks_max",
        ];
        for key in expected {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key} missing from {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        let e = c.check(Path::new("bad.toml")).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("bad.toml: {} problem(s)", expected.len())),
            "{e}"
        );
    }

    #[test]
    fn enums_are_checked_by_the_parser_with_their_key() {
        for (text, key, bad) in [
            (
                "[storage]\ndurability = \"sometimes\"\n",
                "durability",
                "sometimes",
            ),
            ("[storage]\nio = \"mmap\"\n", "io", "mmap"),
        ] {
            let e = Config::parse(text, Path::new("x.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key) && e.contains(bad), "{e}");
        }
        let c = Config::parse("[storage]\nio = \"io_uring\"\n", Path::new("x.toml")).unwrap();
        assert_eq!(c.storage.io, IoMode::Uring);
    }

    #[test]
    fn rings_beyond_the_machine_are_refused() {
        let mut c = Config::default();
        c.capture.ring_bytes = 1 << 31;
        let p = c.validate();
        assert!(
            p.iter().any(|p| p.starts_with("capture.ring_bytes")),
            "{p:?}"
        );
        // 8 CPUs x 1 GiB on a 16 GiB machine is half its memory.
        let p = ring_memory_problem(1 << 30, 8, 16 << 30).expect("refused");
        assert!(
            p.contains("8 online CPUs") && p.contains("16384 MiB"),
            "{p}"
        );
        assert_eq!(ring_memory_problem(1 << 30, 2, 16 << 30), None);
        assert!(memory_total_bytes().is_some_and(|m| m > 0), "/proc/meminfo");
        c.capture.ring_bytes = 1 << 20;
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }
}
