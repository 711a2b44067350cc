//! Kernel capture costs on this machine, measured as ratios in one run:
//!
//! - `untraced`: a `getppid` storm with nothing attached;
//! - `attached`: the default categories attached (sys_enter/sys_exit run on every
//!   syscall but `getppid` is not kept): the tax on syscalls nobody asked for;
//! - `traced`: the `syscall` category keeping `getppid`, one reader draining the rings
//!   on the other core while the storm runs;
//! - `enter-only`: the same with `syscall_enter_only` (no result pairing, no sys_exit);
//! - `drain`: the rings filled by a storm with no reader, then drained and decoded by
//!   one core: how fast one core empties the rings.
//!
//! `--open` measures file events instead: the storm is `openat(AT_FDCWD, "f")` + `close`
//! from a cwd seven components deep, untraced vs the `file` category kept with a live
//! reader: the cost of a `file.open` record, its path resolution in the kernel included.
//!
//! The storm runs in a child process pinned to CPU 0 (the collector never sees its own
//! process), gated on stdin so its pid is in the filter before it starts.
//!
//! Run as root: `cargo run --release -p bench --bin capture_cost -- [--calls N] [--rounds R] [--tax-only | --open]`

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bpf::{CaptureConfig, Category, Collector, IdFilter, Kind, Poller, SyscallSet};

const GETPPID: u32 = 110;

fn pin(cpu: usize) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        eprintln!("warning: could not pin to CPU {cpu}");
    }
}

/// Child mode: wait for a line, then `calls` getppid syscalls (or, with `open_dir`,
/// `calls` relative opens of `f` from that directory, each closed); print ns per call.
fn storm(calls: u64, cpu: usize, open_dir: Option<&str>) -> anyhow::Result<()> {
    pin(cpu);
    if let Some(dir) = open_dir {
        std::env::set_current_dir(dir).context("--open-dir")?;
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let start = Instant::now();
    if open_dir.is_some() {
        for _ in 0..calls {
            // SAFETY: a NUL-terminated relative name; the fd is closed right away.
            let fd = unsafe { libc::openat(libc::AT_FDCWD, c"f".as_ptr(), libc::O_RDONLY) };
            if fd < 0 {
                bail!("open f: {}", std::io::Error::last_os_error());
            }
            // SAFETY: fd was just opened by this loop and is not used again.
            unsafe { libc::close(fd) };
        }
    } else {
        for _ in 0..calls {
            // SAFETY: getppid takes no arguments and cannot fail.
            unsafe { libc::syscall(libc::SYS_getppid) };
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / calls as f64;
    println!("{ns:.2}");
    Ok(())
}

struct Storm {
    child: Child,
}

impl Storm {
    fn spawn(calls: u64, open_dir: Option<&Path>) -> anyhow::Result<Storm> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        if let Some(dir) = open_dir {
            cmd.arg("--open-dir").arg(dir);
        }
        let child = cmd
            .args(["--storm", &calls.to_string(), "--cpu", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("spawning the storm")?;
        Ok(Storm { child })
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn go(&mut self) -> anyhow::Result<()> {
        let mut stdin = self.child.stdin.take().context("storm stdin")?;
        stdin.write_all(b"go\n")?;
        Ok(())
    }
    fn finished(&mut self) -> anyhow::Result<Option<f64>> {
        if self.child.try_wait()?.is_none() {
            return Ok(None);
        }
        let mut out = String::new();
        BufReader::new(self.child.stdout.take().context("storm stdout")?).read_line(&mut out)?;
        Ok(Some(out.trim().parse().context("storm output")?))
    }
}

fn load(categories: &[Category], ring_bytes: u32) -> anyhow::Result<Collector> {
    load_with(categories, ring_bytes, false)
}

fn load_with(
    categories: &[Category],
    ring_bytes: u32,
    enter_only: bool,
) -> anyhow::Result<Collector> {
    let config = CaptureConfig {
        categories: categories.iter().copied().collect::<BTreeSet<_>>(),
        syscalls: SyscallSet::Ids(vec![GETPPID]),
        syscall_enter_only: enter_only,
        tgid_filter: IdFilter::Include(Vec::new()),
        ring_bytes,
        ..CaptureConfig::default()
    };
    Ok(Collector::load(&config)?)
}

struct Outcome {
    ns_per_call: f64,
    delivered: u64,
    ring_full: u64,
    drain_events_per_sec: Option<f64>,
}

/// Runs one storm; `read_live` drains on CPU 1 while it runs, else after it ends.
fn run(collector: Option<&mut Collector>, calls: u64, read_live: bool) -> anyhow::Result<Outcome> {
    run_in(collector, calls, read_live, None)
}

/// [`run`], with an open storm in `open_dir` when given (counting `file.open` records).
fn run_in(
    collector: Option<&mut Collector>,
    calls: u64,
    read_live: bool,
    open_dir: Option<&Path>,
) -> anyhow::Result<Outcome> {
    pin(1);
    let kind = if open_dir.is_some() {
        Kind::FileOpen
    } else {
        Kind::Syscall
    };
    let mut storm = Storm::spawn(calls, open_dir)?;
    let Some(collector) = collector else {
        storm.go()?;
        loop {
            if let Some(ns) = storm.finished()? {
                return Ok(Outcome {
                    ns_per_call: ns,
                    delivered: 0,
                    ring_full: 0,
                    drain_events_per_sec: None,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    collector.filter_tgid(storm.pid())?;
    let mut rings = collector.take_rings();
    let mut poller = Poller::new(&rings)?;
    let mut delivered = 0u64;
    let mut count = |bytes: &[u8]| {
        // The open storm's own opens only (not the child runtime's): `f` (relative, as
        // objects before path resolution recorded it) or an absolute path ending in `/f`.
        let storms = |ev: &bpf::Event<'_>| match ev.payload {
            bpf::Payload::FileOp(p) => {
                let path = &p.path[..(p.path_len as usize).min(p.path.len())];
                path == b"f" || path.ends_with(b"/f")
            }
            _ => true,
        };
        if bpf::decode(bytes).is_ok_and(|ev| ev.kind == kind && storms(&ev)) {
            delivered += 1;
        }
    };
    storm.go()?;
    let ns = loop {
        if read_live {
            let mut drained = 0;
            for r in &mut rings {
                drained += r.drain(usize::MAX, &mut count);
            }
            if drained == 0 {
                poller.wait(Duration::from_millis(10))?.for_each(drop);
            }
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(ns) = storm.finished()? {
            break ns;
        }
    };
    let start = Instant::now();
    for r in &mut rings {
        r.drain(usize::MAX, &mut count);
    }
    let drain_secs = start.elapsed().as_secs_f64();
    let c = collector.counters()?[kind as usize];
    Ok(Outcome {
        ns_per_call: ns,
        delivered,
        ring_full: c.ring_full,
        drain_events_per_sec: (!read_live).then(|| delivered as f64 / drain_secs),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    if let Some(n) = arg("--storm") {
        let cpu = arg("--cpu").map_or(Ok(0), |c| c.parse()).context("--cpu")?;
        let open_dir = arg("--open-dir").map(String::as_str);
        return storm(n.parse().context("--storm")?, cpu, open_dir);
    }
    let calls: u64 = arg("--calls")
        .map_or(Ok(1_000_000), |c| c.parse())
        .context("--calls")?;
    let rounds: usize = arg("--rounds")
        .map_or(Ok(3), |c| c.parse())
        .context("--rounds")?;
    // `--tax-only`: only untraced vs attached (e.g. to compare BPF object variants).
    let tax_only = args.iter().any(|a| a == "--tax-only");
    if !bpf::privileged() {
        bail!("needs root (or CAP_BPF + CAP_PERFMON)");
    }
    if args.iter().any(|a| a == "--open") {
        return open_cost(calls, rounds);
    }
    let defaults: Vec<Category> = Category::ALL
        .into_iter()
        .filter(|c| *c != Category::Syscall)
        .collect();
    let (mut untraced, mut attached, mut traced, mut drain) = (vec![], vec![], vec![], vec![]);
    let mut enter_only = vec![];
    let mut drain_rate = vec![];
    let mut lost = 0;
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        untraced.push(run(None, calls, true)?.ns_per_call);
        let mut c = load(&defaults, 4 << 20)?;
        attached.push(run(Some(&mut c), calls, true)?.ns_per_call);
        drop(c);
        if tax_only {
            continue;
        }
        for (name, enter, out) in [
            ("traced", false, &mut traced),
            ("enter-only", true, &mut enter_only),
        ] {
            let mut c = load_with(&[Category::Syscall], 64 << 20, enter)?;
            let o = run(Some(&mut c), calls, true)?;
            if o.delivered + o.ring_full != calls {
                bail!(
                    "{name}: delivered {} + ring_full {} != {calls} calls",
                    o.delivered,
                    o.ring_full
                );
            }
            lost += o.ring_full;
            out.push(o.ns_per_call);
        }
        // 1M records of 136 bytes (+8 ring header) fit in 256 MiB: nothing is lost.
        let mut c = load(&[Category::Syscall], 256 << 20)?;
        let o = run(Some(&mut c), calls.min(1_000_000), false)?;
        if o.ring_full != 0 || o.delivered != calls.min(1_000_000) {
            bail!("drain: {} delivered, {} lost", o.delivered, o.ring_full);
        }
        drain.push(o.ns_per_call);
        drain_rate.push(o.drain_events_per_sec.unwrap_or(0.0));
    }
    let base = median(untraced.clone());
    println!("calls per storm: {calls}, rounds: {rounds} (medians)");
    println!("| scenario | ns per getppid | vs untraced |");
    println!("| --- | ---: | ---: |");
    for (name, v) in [
        ("untraced", &untraced),
        ("attached (default categories, getppid not kept)", &attached),
        ("traced (getppid kept, live reader on CPU 1)", &traced),
        (
            "traced at sys_enter only (syscall_results = false)",
            &enter_only,
        ),
        ("traced (no reader, 256 MiB ring)", &drain),
    ] {
        if v.is_empty() {
            continue;
        }
        let m = median(v.clone());
        println!("| {name} | {m:.1} | {:.2}x |", m / base);
    }
    if tax_only {
        return Ok(());
    }
    println!();
    println!("records lost to a full ring with the live reader: {lost}");
    println!(
        "one core drains and decodes: {:.2} M events/s (136-byte syscall records)",
        median(drain_rate) / 1e6
    );
    Ok(())
}

/// `--open`: ns per relative open+close, untraced vs kept as `file.open` records.
fn open_cost(calls: u64, rounds: usize) -> anyhow::Result<()> {
    // Seven components below the root: /tmp/capture-cost-open-PID/usr/share/doc/pkg/x/f.
    let top = std::env::temp_dir().join(format!("capture-cost-open-{}", std::process::id()));
    let dir: PathBuf = top.join("usr/share/doc/pkg/x");
    std::fs::create_dir_all(&dir).context("creating the open storm's directory")?;
    std::fs::write(dir.join("f"), b"").context("creating the opened file")?;
    let result = open_rounds(calls, rounds, &dir);
    let _ = std::fs::remove_dir_all(&top);
    let (untraced, traced) = result?;
    let base = median(untraced.clone());
    println!("calls per storm: {calls}, rounds: {rounds} (medians)");
    println!("| scenario | ns per open+close | vs untraced |");
    println!("| --- | ---: | ---: |");
    for (name, v) in [
        ("untraced", untraced),
        ("traced (file.open kept, live reader on CPU 1)", traced),
    ] {
        let m = median(v);
        println!("| {name} | {m:.1} | {:.2}x |", m / base);
    }
    Ok(())
}

fn open_rounds(calls: u64, rounds: usize, dir: &Path) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (mut untraced, mut traced) = (vec![], vec![]);
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        untraced.push(run_in(None, calls, true, Some(dir))?.ns_per_call);
        let mut c = load(&[Category::File], 64 << 20)?;
        let o = run_in(Some(&mut c), calls, true, Some(dir))?;
        if o.delivered + o.ring_full != calls {
            bail!(
                "open: delivered {} + ring_full {} != {calls} calls",
                o.delivered,
                o.ring_full
            );
        }
        traced.push(o.ns_per_call);
    }
    Ok((untraced, traced))
}
