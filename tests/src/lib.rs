//! Harness for tests against the real kernel.
//!
//! Each test loads its own collector with an include tgid filter that follows
//! children, starts its workload stopped before exec (a shell waiting for a line on
//! stdin), adds the workload's pid to the filter, lets it run, and collects every
//! record it caused. Tests run in parallel; each sees only its own workload.
//!
//! Without privileges the tests skip and say why; with `REQUIRE_BPF=1` they fail.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use bpf::abi::{cstr_bytes, str_bytes};
use bpf::{CaptureConfig, Category, Collector, CpuRing, Event, IdFilter, Kind, KindCounters};

/// True when BPF can be loaded here. Otherwise: under `REQUIRE_BPF=1` panics (the test
/// fails), else prints why the test is skipped and returns false.
pub fn bpf_available(test: &str) -> bool {
    let required = std::env::var("REQUIRE_BPF").is_ok_and(|v| v == "1");
    let why = if !bpf::privileged() {
        Some("not privileged (need root, or CAP_BPF + CAP_PERFMON)")
    } else if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        Some("no kernel BTF at /sys/kernel/btf/vmlinux")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) if required => panic!("{test}: REQUIRE_BPF=1 but BPF cannot be loaded: {why}"),
        Some(why) => {
            eprintln!("SKIPPED {test}: {why} (set REQUIRE_BPF=1 to make this a failure)");
            false
        }
    }
}

/// A marker unique to this process and call, for file names, args and cgroup names.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The real python interpreter (not a pyenv shim), resolved once.
pub fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 must be installed for the kernel tests");
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_string()
    })
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_root() -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| std::path::PathBuf::from(f[1]))
}

/// One record copied out of a ring, 8-byte aligned so it decodes in place.
#[derive(Debug, Clone)]
pub struct Record {
    words: Vec<u64>,
    len: usize,
}

impl Record {
    fn copy(bytes: &[u8]) -> Record {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Record {
            words,
            len: bytes.len(),
        }
    }

    /// The decoded view. Panics on a record the kernel should never write.
    pub fn event(&self) -> Event<'_> {
        let bytes = &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len];
        bpf::decode(bytes).expect("kernel wrote an undecodable record")
    }
}

#[expect(missing_debug_implementations, reason = "test harness")]
/// A loaded collector restricted to the tgids given to [`Capture::follow`].
pub struct Capture {
    pub collector: Collector,
    rings: Vec<CpuRing>,
    pub records: Vec<Record>,
}

impl Capture {
    /// Loads the collector with `categories`, an (initially empty) include tgid filter
    /// that follows children, and the given tweaks.
    pub fn start(categories: &[Category], tweak: impl FnOnce(&mut CaptureConfig)) -> Capture {
        let mut config = CaptureConfig {
            categories: categories.iter().copied().collect::<BTreeSet<_>>(),
            tgid_filter: IdFilter::Include(Vec::new()),
            follow_children: true,
            wakeup_bytes: 0,
            ..CaptureConfig::default()
        };
        tweak(&mut config);
        let mut collector = Collector::load(&config).unwrap_or_else(|e| {
            let mut msg = format!("loading the collector: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            panic!("{msg}")
        });
        let rings = collector.take_rings();
        Capture {
            collector,
            rings,
            records: Vec::new(),
        }
    }

    /// Includes `pid` (and, with follow_children, its future children).
    pub fn follow(&mut self, pid: u32) {
        self.collector
            .filter_tgid(pid)
            .expect("adding a tgid to the filter");
    }

    /// Takes the rings out (to poll them directly); give them back with `give_rings`.
    pub fn take_rings(&mut self) -> Vec<CpuRing> {
        std::mem::take(&mut self.rings)
    }

    /// Returns rings taken with `take_rings`.
    pub fn give_rings(&mut self, rings: Vec<CpuRing>) {
        self.rings = rings;
    }

    /// Follows `workload` and runs it to completion without reading the rings.
    pub fn run_followed_without_draining(&mut self, workload: Workload) -> Finished {
        self.follow(workload.pid);
        let records = self.records.len();
        let done = self.run_unfollowed(workload, false);
        assert_eq!(self.records.len(), records);
        done
    }

    /// Copies out every record waiting in the rings; returns how many.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        for ring in &mut self.rings {
            n += ring.drain(usize::MAX, |b| self.records.push(Record::copy(b)));
        }
        n
    }

    /// Counters summed over CPUs, indexed by kind id.
    pub fn counters(&self) -> Vec<KindCounters> {
        self.collector.counters().expect("reading counters")
    }

    /// Every event of `kind`.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = Event<'_>> {
        self.records
            .iter()
            .map(Record::event)
            .filter(move |e| e.kind == kind)
    }

    /// Every event of `kind` from thread group `pid`.
    pub fn of_pid(&self, kind: Kind, pid: u32) -> impl Iterator<Item = Event<'_>> {
        self.of(kind).filter(move |e| e.header.pid == pid)
    }

    /// Follows `workload` (see [`Workload`]) and runs it to completion, draining as it
    /// goes; asserts that no ring overflowed.
    pub fn run(&mut self, workload: Workload) -> Finished {
        self.follow(workload.pid);
        let done = self.run_unfollowed(workload, true);
        for c in self.counters() {
            assert_eq!(c.ring_full, 0, "a test ring overflowed: raise ring_bytes");
        }
        done
    }

    /// Runs `workload` to completion without adding it to the filter; drains while it
    /// runs and once at the end only when `drain_while_running`.
    pub fn run_unfollowed(
        &mut self,
        mut workload: Workload,
        drain_while_running: bool,
    ) -> Finished {
        workload.release();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if drain_while_running {
                self.drain();
            }
            if let Some(status) = workload.child.try_wait().expect("waiting for the workload") {
                break status;
            }
            assert!(Instant::now() < deadline, "workload ran for over 60 s");
            std::thread::sleep(Duration::from_millis(5));
        };
        if drain_while_running {
            self.drain();
        }
        let mut stdout = String::new();
        if let Some(mut out) = workload.child.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut stdout).expect("workload stdout");
        }
        let mut stderr = String::new();
        if let Some(mut err) = workload.child.stderr.take() {
            std::io::Read::read_to_string(&mut err, &mut stderr).expect("workload stderr");
        }
        Finished {
            pid: workload.pid,
            status,
            stdout,
            stderr,
        }
    }
}

#[expect(missing_debug_implementations, reason = "test harness")]
/// A process started stopped before its exec: a shell that waits for a line on stdin
/// and then execs the real program, so the pid can be put in the filter first.
pub struct Workload {
    child: Child,
    pub pid: u32,
}

impl Workload {
    /// `program args...`, gated.
    pub fn command(program: &str, args: &[&str]) -> Workload {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg("read _ && exec \"$0\" \"$@\"")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning /bin/sh");
        let pid = child.id();
        Workload { child, pid }
    }

    /// `python3 -c script args...`, gated.
    pub fn python(script: &str, args: &[&str]) -> Workload {
        let mut all = vec!["-c", script];
        all.extend_from_slice(args);
        Workload::command(python(), &all)
    }

    fn release(&mut self) {
        let mut stdin = self.child.stdin.take().expect("workload stdin");
        stdin.write_all(b"go\n").expect("releasing the workload");
    }
}

/// How a workload ended and what it printed.
#[derive(Debug)]
pub struct Finished {
    pub pid: u32,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The value printed by the workload as a `key value` line.
    pub fn value(&self, key: &str) -> &str {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| {
                panic!(
                    "workload did not print {key:?}; stdout:\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                )
            })
    }

    /// [`Finished::value`] parsed.
    pub fn num<T: std::str::FromStr>(&self, key: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        self.value(key).parse().expect("numeric value")
    }

    /// Asserts the workload succeeded, showing its output when it did not.
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "workload failed: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// The payload of `ev` as variant `$v`, or a panic naming what came instead.
#[macro_export]
macro_rules! payload {
    ($ev:expr, $v:ident) => {
        match $ev.payload {
            bpf::Payload::$v(p) => p,
            other => panic!("expected {} payload, got {:?}", stringify!($v), other),
        }
    };
}

/// Bytes of a fixed string buffer as text.
pub fn text(buf: &[u8], len: u32) -> String {
    String::from_utf8_lossy(str_bytes(buf, len)).into_owned()
}
