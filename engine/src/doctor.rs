//! `engine doctor`: what this host offers the capture, without starting it.
//!
//! The kernel, BTF, lockdown, capabilities, tracefs, the cgroup2 mount, io_uring and
//! memory for the rings; and for every kind the config asks for, the hook that will
//! supply it or why none can. It learns the hooks by loading and attaching each program
//! for real (with small rings), then unloading it: the verifier is the only judge of
//! what a kernel takes.
//!
//! Exit codes: 0 when the config runs fully, 1 when it would run degraded, 2 when it
//! cannot run.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use crate::config::{Config, Override};
use crate::error::{Error, Result};

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DoctorFormat {
    /// For people.
    Text,
    /// One JSON object, for scripts.
    Json,
}

#[derive(Debug, Serialize)]
struct Kernel {
    release: String,
    build: String,
    machine: String,
}

#[derive(Debug, Serialize)]
struct Btf {
    available: bool,
    path: &'static str,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct Capabilities {
    /// The effective set, hex.
    effective: String,
    /// What the config needs and this process lacks (empty: nothing).
    missing: Option<String>,
}

#[derive(Debug, Serialize)]
struct Tracefs {
    /// Where the syscall events are (tracefs mounted if it was not).
    syscall_events: Option<String>,
}

#[derive(Debug, Serialize)]
struct IoUring {
    available: bool,
    detail: String,
}

#[derive(Debug, Serialize)]
struct Memory {
    /// All the rings together, as the config sizes them on this host's CPUs.
    rings_bytes: u64,
    /// MemAvailable.
    available_bytes: u64,
    /// RLIMIT_MEMLOCK (soft), bytes; null when unlimited. Kernels since 5.11 charge BPF
    /// memory to the cgroup instead.
    memlock_bytes: Option<u64>,
    enough: bool,
}

#[derive(Debug, Serialize)]
struct KindHook {
    kind: &'static str,
    hook: String,
}

#[derive(Debug, Serialize)]
struct Unavailable {
    kind: &'static str,
    reason: &'static str,
    detail: String,
}

/// The whole report (`--format json`).
#[derive(Debug, Serialize)]
struct Report {
    kernel: Kernel,
    btf: Btf,
    lockdown: String,
    capabilities: Capabilities,
    tracefs: Tracefs,
    cgroup2: Option<String>,
    io_uring: IoUring,
    memory: Memory,
    categories: Vec<String>,
    kinds: Vec<KindHook>,
    unavailable: Vec<Unavailable>,
    /// Why the capture cannot start at all (empty when it can).
    problems: Vec<String>,
    /// "full", "degraded" or "cannot_run".
    verdict: &'static str,
}

fn uname() -> Kernel {
    // SAFETY: utsname is plain bytes; uname fills it or fails.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    let ok = unsafe { libc::uname(&mut u) } == 0;
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    if !ok {
        return Kernel {
            release: "unknown".into(),
            build: "unknown".into(),
            machine: "unknown".into(),
        };
    }
    Kernel {
        release: field(&u.release),
        build: field(&u.version),
        machine: field(&u.machine),
    }
}

fn lockdown() -> String {
    // "none [integrity] confidentiality": the bracketed one is in force.
    match std::fs::read_to_string("/sys/kernel/security/lockdown") {
        Ok(s) => s
            .split_whitespace()
            .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
            .unwrap_or("unknown")
            .to_string(),
        Err(_) => "unknown (no /sys/kernel/security/lockdown)".into(),
    }
}

fn cgroup2() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| dir.to_string())
    })
}

fn io_uring() -> IoUring {
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        && s.trim() == "2"
    {
        return IoUring {
            available: false,
            detail: "kernel.io_uring_disabled = 2: storage.io = \"portable\" is used".into(),
        };
    }
    // struct io_uring_params is 120 bytes; zeroed asks for defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(2) with a writable params block of its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            2u32,
            params.as_mut_ptr() as *mut libc::c_void,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return IoUring {
            available: false,
            detail: format!("io_uring_setup: {e} (storage.io = \"portable\" is used)"),
        };
    }
    // SAFETY: `fd` was just returned to us and is closed once.
    unsafe { libc::close(fd as i32) };
    IoUring {
        available: true,
        detail: "io_uring_setup works".into(),
    }
}

fn meminfo_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn memlock() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills `r`.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0
        || r.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(r.rlim_cur)
}

/// Runs `engine doctor` for the config at `path` (or the embedded default) with
/// `overrides`, printing to stdout.
pub fn doctor(
    path: Option<&Path>,
    overrides: &[Override],
    format: DoctorFormat,
) -> Result<ExitCode> {
    let config = Config::load_with(path, overrides)?;
    let report = examine(&config);
    let code = match report.verdict {
        "full" => 0,
        "degraded" => 1,
        _ => 2,
    };
    let mut out = std::io::stdout().lock();
    let written = match format {
        DoctorFormat::Json => serde_json::to_writer(&mut out, &report)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out)),
        DoctorFormat::Text => write_text(&mut out, &report),
    };
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(Error::io("writing the doctor's report")(e)),
    }
    Ok(ExitCode::from(code))
}

fn examine(config: &Config) -> Report {
    let mut problems = Vec::new();
    let btf_path = "/sys/kernel/btf/vmlinux";
    let btf_bytes = std::fs::metadata(btf_path).map_or(0, |m| m.len());
    if btf_bytes == 0 {
        problems.push(format!(
            "no kernel BTF at {btf_path} (the kernel needs CONFIG_DEBUG_INFO_BTF)"
        ));
    }
    let effective = crate::caps::effective();
    let missing = effective.and_then(|e| crate::caps::missing(config, e, crate::caps::last_cap()));
    if let Some(m) = &missing {
        problems.push(m.clone());
    }
    let mut capture = crate::run::capture_config(config);
    let cpus = bpf::online_cpus().map_or(1, |c| c.len().max(1)) as u64;
    let rings_bytes = u64::from(capture.ring_bytes) * cpus;
    let available_bytes = meminfo_available();
    // The programs are judged with small rings: their memory is the config's, below.
    capture.ring_bytes = 1 << 16;
    capture.wakeup_bytes = 0;
    let (kinds, unavailable) = if problems.is_empty() {
        match bpf::Collector::load(&capture) {
            Ok(mut c) => {
                let r = c.report().clone();
                // Unloaded at once: nothing reads its rings.
                let _ = c.stop();
                drop(c);
                (r.hooks, r.unavailable)
            }
            Err(e) => {
                problems.push(format!("starting kernel capture: {e}"));
                (Vec::new(), Vec::new())
            }
        }
    } else {
        (Vec::new(), Vec::new())
    };
    // After the load, which mounts tracefs when nothing is mounted yet.
    let tracefs = Tracefs {
        syscall_events: ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .map(|d| Path::new(d).join("events/syscalls"))
            .find(|p| p.is_dir())
            .map(|p| p.display().to_string()),
    };
    let verdict = if !problems.is_empty() {
        "cannot_run"
    } else if unavailable.is_empty() {
        "full"
    } else {
        "degraded"
    };
    Report {
        kernel: uname(),
        btf: Btf {
            available: btf_bytes > 0,
            path: btf_path,
            bytes: btf_bytes,
        },
        lockdown: lockdown(),
        capabilities: Capabilities {
            effective: effective.map_or("unknown".into(), |e| format!("0x{e:016x}")),
            missing,
        },
        tracefs,
        cgroup2: cgroup2(),
        io_uring: io_uring(),
        memory: Memory {
            rings_bytes,
            available_bytes,
            memlock_bytes: memlock(),
            enough: available_bytes == 0 || rings_bytes < available_bytes,
        },
        categories: config.capture.categories.clone(),
        kinds: kinds
            .into_iter()
            .map(|h| KindHook {
                kind: h.kind,
                hook: h.hook,
            })
            .collect(),
        unavailable: unavailable
            .into_iter()
            .map(|u| Unavailable {
                kind: u.kind,
                reason: u.reason.name(),
                detail: u.detail,
            })
            .collect(),
        problems,
        verdict,
    }
}

fn write_text(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "kernel      {} ({}) {}",
        r.kernel.release, r.kernel.machine, r.kernel.build
    )?;
    writeln!(
        out,
        "btf         {}",
        if r.btf.available {
            format!("{} ({} bytes)", r.btf.path, r.btf.bytes)
        } else {
            format!("missing ({})", r.btf.path)
        }
    )?;
    writeln!(out, "lockdown    {}", r.lockdown)?;
    writeln!(
        out,
        "caps        effective {}{}",
        r.capabilities.effective,
        r.capabilities
            .missing
            .as_ref()
            .map_or(String::new(), |m| format!("; {m}"))
    )?;
    writeln!(
        out,
        "tracefs     {}",
        r.tracefs.syscall_events.as_deref().unwrap_or(
            "no syscall events (file and security calls go through raw sys_enter/sys_exit)"
        )
    )?;
    writeln!(
        out,
        "cgroup2     {}",
        r.cgroup2
            .as_deref()
            .unwrap_or("not mounted (no container ids)")
    )?;
    writeln!(
        out,
        "io_uring    {}",
        if r.io_uring.available {
            "available".to_string()
        } else {
            format!("unavailable: {}", r.io_uring.detail)
        }
    )?;
    writeln!(
        out,
        "memory      rings {} MiB of {} MiB available{}{}",
        r.memory.rings_bytes >> 20,
        r.memory.available_bytes >> 20,
        r.memory.memlock_bytes.map_or(String::new(), |b| format!(
            ", RLIMIT_MEMLOCK {} KiB",
            b >> 10
        )),
        if r.memory.enough { "" } else { " (NOT ENOUGH)" }
    )?;
    writeln!(out, "categories  {}", r.categories.join(", "))?;
    writeln!(out)?;
    let width = r
        .kinds
        .iter()
        .map(|k| k.kind.len())
        .chain(r.unavailable.iter().map(|u| u.kind.len()))
        .max()
        .unwrap_or(4);
    for k in &r.kinds {
        writeln!(out, "  ok    {:width$}  {}", k.kind, k.hook)?;
    }
    for u in &r.unavailable {
        writeln!(out, "  MISS  {:width$}  {}", u.kind, u.reason)?;
        for line in u.detail.lines() {
            writeln!(out, "        {:width$}    {line}", "")?;
        }
    }
    for p in &r.problems {
        writeln!(out, "cannot run: {p}")?;
    }
    writeln!(
        out,
        "\nverdict: {}",
        match r.verdict {
            "full" => "runs fully (exit 0)",
            "degraded" => "runs degraded: the kinds marked MISS are not captured (exit 1)",
            _ => "cannot run (exit 2)",
        }
    )
}
