//! The capabilities the engine needs, checked at the start so that a missing one is
//! named (with what it is for and how to do without it) rather than found later as an
//! `EPERM` deep in a load, or as silently poorer events. The set, measured on kernel
//! 6.18 as an unprivileged user with only these (docs/operations.md, "Least privilege"):
//!
//! - `CAP_BPF`: create maps, load programs, read the rings.
//! - `CAP_PERFMON`: attach tracing programs (BTF tracepoints), open the per-syscall
//!   tracepoint perf events, and read kernel memory from the programs.
//! - `CAP_DAC_READ_SEARCH`: read tracefs (`/sys/kernel/tracing` is root's, mode 0700) for
//!   the per-syscall tracepoints' ids (`capture.syscall_events`, with the `file` or
//!   `security` category); without it the raw `sys_enter`/`sys_exit` programs would run
//!   on every syscall instead.
//! - `CAP_SYS_PTRACE`: read `/proc/PID/exe` of other users' processes for the enrichment
//!   start scan and lookups (`enrich.enabled`); without it those processes have no `exe`.
//!
//! Not needed: `CAP_SYS_ADMIN` (only to mount tracefs where nothing is mounted: mount it
//! beforehand), `CAP_SYS_RESOURCE` (BPF memory is charged to the cgroup since 5.11, not
//! to `RLIMIT_MEMLOCK`; older kernels need `LimitMEMLOCK=infinity`), `CAP_NET_ADMIN`.
//! On kernels before 5.8 (no `CAP_BPF`/`CAP_PERFMON`), `CAP_SYS_ADMIN` stands for both;
//! it is accepted for them on later kernels too (as the kernel does), and
//! `CAP_DAC_OVERRIDE` for `CAP_DAC_READ_SEARCH` (a privileged container's set).

use crate::config::Config;

/// A capability the engine may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub bit: u32,
    pub name: &'static str,
}

pub const CAP_DAC_OVERRIDE: Cap = Cap {
    bit: 1,
    name: "CAP_DAC_OVERRIDE",
};
pub const CAP_DAC_READ_SEARCH: Cap = Cap {
    bit: 2,
    name: "CAP_DAC_READ_SEARCH",
};
pub const CAP_SYS_PTRACE: Cap = Cap {
    bit: 19,
    name: "CAP_SYS_PTRACE",
};
pub const CAP_SYS_ADMIN: Cap = Cap {
    bit: 21,
    name: "CAP_SYS_ADMIN",
};
pub const CAP_PERFMON: Cap = Cap {
    bit: 38,
    name: "CAP_PERFMON",
};
pub const CAP_BPF: Cap = Cap {
    bit: 39,
    name: "CAP_BPF",
};

/// The capabilities `config` needs, each with what for and how to do without it.
pub fn required(config: &Config, last_cap: u32) -> Vec<(Cap, &'static str)> {
    let c = &config.capture;
    let files = c.categories.iter().any(|k| k == "file" || k == "security");
    needs(
        c.syscall_events && files,
        config.enrich.enabled,
        last_cap,
        true,
    )
}

/// What a capture needs: with per-syscall tracepoints (`syscall_events`), with the
/// enrichment's /proc reads (`enrich`); `config`: the main job's (whose keys can do
/// without them), not `engine tail`'s.
fn needs(
    syscall_events: bool,
    enrich: bool,
    last_cap: u32,
    config: bool,
) -> Vec<(Cap, &'static str)> {
    let mut need = Vec::new();
    if last_cap >= CAP_BPF.bit {
        need.push((CAP_BPF, "loading the BPF programs and maps"));
        need.push((
            CAP_PERFMON,
            "attaching the programs to tracepoints and reading kernel memory",
        ));
    } else {
        need.push((
            CAP_SYS_ADMIN,
            "loading and attaching BPF programs (this kernel predates CAP_BPF and CAP_PERFMON)",
        ));
    }
    if syscall_events {
        need.push((
            CAP_DAC_READ_SEARCH,
            if config {
                "reading tracefs for the per-syscall tracepoints (or set \
                 capture.syscall_events = false: every syscall then runs the raw programs)"
            } else {
                "reading tracefs for the per-syscall tracepoints of the file and security \
                 categories"
            },
        ));
    }
    if enrich {
        need.push((
            CAP_SYS_PTRACE,
            if config {
                "reading /proc/PID/exe of other users' processes for enrichment (or set \
                 enrich.enabled = false)"
            } else {
                "reading /proc/PID/exe of other users' processes for enrichment"
            },
        ));
    }
    need
}

/// The effective capability set of this process (`CapEff` of /proc/self/status).
pub fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The highest capability this kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(CAP_BPF.bit)
}

/// An error naming every capability `config` needs that `effective` lacks; `None` when
/// none is missing.
pub fn missing(config: &Config, effective: u64, last_cap: u32) -> Option<String> {
    lacking(required(config, last_cap), effective)
}

/// Whether `effective` grants `cap`, itself or through the broader capability the kernel
/// also accepts for it (CAP_SYS_ADMIN for CAP_BPF and CAP_PERFMON, CAP_DAC_OVERRIDE for
/// CAP_DAC_READ_SEARCH's reads).
fn grants(effective: u64, cap: Cap) -> bool {
    let has = |c: Cap| effective & (1u64 << c.bit) != 0;
    has(cap)
        || ((cap == CAP_BPF || cap == CAP_PERFMON) && has(CAP_SYS_ADMIN))
        || (cap == CAP_DAC_READ_SEARCH && has(CAP_DAC_OVERRIDE))
}

fn lacking(need: Vec<(Cap, &'static str)>, effective: u64) -> Option<String> {
    let lacking: Vec<String> = need
        .into_iter()
        .filter(|(cap, _)| !grants(effective, *cap))
        .map(|(cap, why)| format!("{} ({why})", cap.name))
        .collect();
    (!lacking.is_empty()).then(|| {
        format!(
            "missing capabilities: {}; effective set 0x{effective:016x} (run as root, or grant \
             them: docs/operations.md, \"Least privilege\")",
            lacking.join(", ")
        )
    })
}

/// Checks this process's capabilities against what `config` needs.
pub fn check(config: &Config) -> crate::error::Result<()> {
    enforce(required(config, last_cap()))
}

/// [`check`] for `engine tail` (its capture config, and its enrichment from /proc).
pub(crate) fn check_capture(c: &bpf::CaptureConfig) -> crate::error::Result<()> {
    let files = c.categories.contains(&bpf::Category::File)
        || c.categories.contains(&bpf::Category::Security);
    enforce(needs(c.syscall_events && files, true, last_cap(), false))
}

/// An error naming what of `need` this process lacks.
fn enforce(need: Vec<(Cap, &'static str)>) -> crate::error::Result<()> {
    // Without /proc/self/status the loads themselves will say what they lack.
    match effective().and_then(|eff| lacking(need, eff)) {
        Some(m) => Err(crate::error::Error::Invalid(m)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Cap]) -> u64 {
        caps.iter().fold(0, |s, c| s | 1 << c.bit)
    }

    #[test]
    fn what_is_missing_is_named_with_what_it_is_for() {
        let mut c = Config::default();
        c.capture.categories = vec!["process".into(), "file".into()];
        c.capture.syscall_events = true;
        c.enrich.enabled = true;
        let all = set(&[CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE]);
        assert_eq!(missing(&c, all, 40), None);
        assert_eq!(missing(&c, u64::MAX, 40), None);
        let m = missing(&c, all & !set(&[CAP_SYS_PTRACE]), 40).unwrap();
        assert!(
            m.starts_with("missing capabilities: CAP_SYS_PTRACE (reading /proc"),
            "{m}"
        );
        let m = missing(&c, set(&[CAP_BPF]), 40).unwrap();
        assert!(
            m.contains("CAP_PERFMON")
                && m.contains("CAP_DAC_READ_SEARCH")
                && !m.contains("CAP_BPF "),
            "{m}"
        );
        // What the config does not use is not asked for.
        c.enrich.enabled = false;
        c.capture.categories = vec!["process".into()];
        assert_eq!(missing(&c, set(&[CAP_BPF, CAP_PERFMON]), 40), None);
        // The broader capabilities the kernel also accepts.
        c.capture.categories = vec!["file".into()];
        c.capture.syscall_events = true;
        assert_eq!(
            missing(&c, set(&[CAP_SYS_ADMIN, CAP_DAC_OVERRIDE]), 40),
            None
        );
        c.capture.categories = vec!["process".into()];
        // Before CAP_BPF existed: CAP_SYS_ADMIN.
        assert!(missing(&c, set(&[CAP_SYS_ADMIN]), 37).is_none());
        assert!(
            missing(&c, set(&[CAP_BPF, CAP_PERFMON]), 37)
                .unwrap()
                .contains("CAP_SYS_ADMIN")
        );
    }
}
