//! The collector's kernel side.
//!
//! This crate embeds the compiled BPF object (`collector.bpf.o`, built from `bpf/c/` by
//! `bpf/build.sh`), loads it with aya, attaches the tracepoint programs of the enabled
//! event categories, creates one ring buffer per CPU, and hands out one owned
//! [`CpuRing`] per CPU that a core thread can poll (an fd for epoll) and read in place.
//! [`decode`] turns a record into a typed view without copying or allocating.
//!
//! Limits: x86_64 syscall numbers; tracepoints only (`tp_btf`), so it needs kernel BTF
//! and root (or CAP_BPF + CAP_PERFMON). See `docs/events.md` for every kind.
//!
//! ```no_run
//! use bpf::{CaptureConfig, Collector, Poller, decode};
//! use std::time::Duration;
//!
//! let mut collector = Collector::load(&CaptureConfig::default())?;
//! let mut rings = collector.take_rings();
//! let mut poller = Poller::new(&rings)?;
//! poller.wait(Duration::from_millis(100))?.for_each(drop);
//! for ring in &mut rings {
//!     ring.drain(1024, |bytes| {
//!         if let Ok(ev) = decode(bytes) {
//!             println!("{} pid {}", ev.kind.name(), ev.header.pid);
//!         }
//!     });
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod abi;
mod decode;
mod hooks;
mod loader;
mod prototypes;
mod ring;

pub use abi::{Category, Kind, KindCounters};
pub use decode::{DecodeError, Event, Payload, decode};
pub use hooks::{Attach, CaptureReport, KindHook, Reason, Unavailable};
pub use loader::{
    CaptureConfig, Collector, DEFAULT_CGROUP_FILTER_MAX, DEFAULT_FLOWS_MAX, DEFAULT_IO_SLOW_NS,
    DEFAULT_PAGE_FAULT_RATE, DEFAULT_RING_BYTES, DEFAULT_RUNQ_CGROUPS_MAX, DEFAULT_RUNQ_SLOW_NS,
    DEFAULT_TASKS_MAX, DEFAULT_TGID_FILTER_MAX, DEFAULT_WAKEUP_BYTES, IdFilter, KernelSampling,
    LoadError, OBJECT, PerfSignals, PerfSnapshot, RATE_PER_SEC_MAX, SYSCALL_ID_MAX, SyscallSet,
    known_hooks, online_cpus, privileged,
};
pub use ring::{CpuRing, Poller};
