//! Helpers shared by the engine's integration tests.
#![allow(dead_code, reason = "each test file uses a different subset")]

pub mod runtimes;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

pub const ENGINE: &str = env!("CARGO_BIN_EXE_engine");

/// True when BPF can be loaded; otherwise fails under `REQUIRE_BPF=1`, else says why it
/// skips.
pub fn privileged(test: &str) -> bool {
    if bpf::privileged() {
        return true;
    }
    assert!(
        std::env::var("REQUIRE_BPF").map_or(true, |v| v != "1"),
        "{test}: REQUIRE_BPF=1 but not privileged"
    );
    eprintln!("SKIPPED {test}: needs root (set REQUIRE_BPF=1 to make this a failure)");
    false
}

/// Spawns `cmd` (an engine run) with stderr piped and reads stderr until its programs
/// are attached; the rest of stderr is left to read.
#[expect(
    clippy::zombie_processes,
    reason = "the child is returned to the caller, who waits for it"
)]
fn spawn_until_attached(cmd: &mut Command) -> (Child, BufReader<std::process::ChildStderr>) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("starting engine");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line).expect("engine stderr") == 0 {
            panic!("engine exited before attaching: {:?}", child.wait());
        }
        if line.contains("attached") {
            return (child, err);
        }
    }
}

/// Spawns `cmd` (an engine run), waits until its programs are attached, and keeps
/// collecting the rest of stderr (returned by the handle).
pub fn spawn_attached(cmd: &mut Command) -> (Child, JoinHandle<String>) {
    let (child, mut err) = spawn_until_attached(cmd);
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut rest);
        rest
    });
    (child, rest)
}

/// Sends `sig` to `child` and waits for it.
pub fn signal(child: &mut Child, sig: i32) -> std::process::ExitStatus {
    // SAFETY: kill with the pid of a child we own and a valid signal.
    unsafe { libc::kill(child.id() as i32, sig) };
    child.wait().expect("waiting for engine")
}

/// A fresh data directory `<tmp>/<tag>-<pid>-data` and the config `toml` written to
/// `<tmp>/<tag>-<pid>.toml`; runs pass the directory with `--data-dir`.
pub fn data_dir_and_config(tag: &str, toml: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let tag = format!("{tag}-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("{tag}-data"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("data dir");
    let cfg = std::env::temp_dir().join(format!("{tag}.toml"));
    std::fs::write(&cfg, toml).expect("config");
    (dir, cfg)
}

/// Spawns `cmd` (an engine run) with stderr piped and waits until its programs are
/// attached; every later stderr line arrives on the returned channel, so a test can
/// wait for a line with a deadline ([`wait_line`]).
pub fn spawn_attached_lines(cmd: &mut Command) -> (Child, std::sync::mpsc::Receiver<String>) {
    let (child, err) = spawn_until_attached(cmd);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in err.lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The first line from `rx` satisfying `pred` within `timeout`; lines before it are
/// appended to `seen`. Panics with what was seen when the deadline passes.
pub fn wait_line(
    rx: &std::sync::mpsc::Receiver<String>,
    timeout: std::time::Duration,
    seen: &mut Vec<String>,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if pred(&l) => return l,
            Ok(l) => seen.push(l),
            Err(_) => panic!(
                "no such line within {timeout:?}; the last lines seen:\n{}",
                seen[seen.len().saturating_sub(20)..].join("\n")
            ),
        }
    }
}

/// Every remaining line of `rx` (until the engine closes stderr).
pub fn rest(rx: &std::sync::mpsc::Receiver<String>) -> String {
    rx.iter().collect::<Vec<_>>().join("\n")
}

/// A process's resident memory (KiB); 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The anonymous part of the resident memory of `pid` (heap and stacks: what a leak
/// grows), KiB. The rings are shared mappings of the kernel's and are not in it: their
/// pages turn resident as the producer first goes round each ring, whatever the load.
pub fn rss_anon_kib(pid: u32) -> u64 {
    status_kib(pid, "RssAnon:")
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A loopback port free now (for a server the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a loopback port")
        .local_addr()
        .expect("its address")
        .port()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; true if it held.
pub fn poll_until(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cond()
}

/// Segment files (`.seg` and `.open`) under every stream directory of `dir`.
pub fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for s in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if s.file_name().to_string_lossy().starts_with("stream-") {
            for f in std::fs::read_dir(s.path()).into_iter().flatten().flatten() {
                let p = f.path();
                if p.extension().is_some_and(|e| e == "seg" || e == "open") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

/// A number following `key` in `line` (`written 123` -> 123).
pub fn number_after(line: &str, key: &str) -> u64 {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("{key:?} in {line:?}"));
    line[at + key.len()..]
        .split_whitespace()
        .next()
        .and_then(|w| w.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .unwrap_or_else(|| panic!("a number after {key:?} in {line:?}"))
}

/// `engine replay DIR --format json` with `extra` arguments: its stdout (it must succeed).
pub fn replay_json(dir: &std::path::Path, extra: &[&str]) -> String {
    let out = Command::new(ENGINE)
        .args([
            "replay",
            dir.to_str().expect("utf-8 path"),
            "--format",
            "json",
        ])
        .args(extra)
        .output()
        .expect("replay");
    assert!(
        out.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("JSON lines are UTF-8")
}

/// Events in `dir` as `engine replay --format json` counts them (loss records apart).
pub fn replayed_events(dir: &std::path::Path) -> u64 {
    replay_json(dir, &[])
        .lines()
        .filter(|l| !l.contains("\"kind\":\"loss\""))
        .count() as u64
}

/// Kills process `pid` when dropped, so a failing test leaves no engine behind.
#[derive(Debug)]
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // SAFETY: kill with a pid this test started; a no-op if it is gone.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
}

/// The `accounting:` line of an engine's final report (panics naming the report).
pub fn accounting_line(report: &str) -> &str {
    report
        .lines()
        .find(|l| l.starts_with("accounting:"))
        .unwrap_or_else(|| panic!("no accounting line in: {report}"))
}

/// The sum of the counts of `engine replay DIR --kind loss` records with `reason`.
pub fn in_band_losses(dir: &std::path::Path, reason: &str) -> u64 {
    replay_json(dir, &["--kind", "loss"])
        .lines()
        .filter(|l| l.contains(&format!("\"reason\":\"{reason}\"")))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            v["count"].as_u64().expect("a count")
        })
        .sum()
}

/// A small config capturing only process events, with fast flushes and no status
/// lines, and a workload making some: for tests of the engine's life cycle.
pub const PROCESS_CONFIG: &str = r#"
[capture]
categories = ["process"]
[engine]
status_interval_ms = 0
[storage]
durability = "none"
flush_interval_ms = 100
"#;

/// Runs /bin/true 20 times (process exec, fork and exit events).
pub fn process_workload() {
    for _ in 0..20 {
        Command::new("/bin/true").status().expect("/bin/true");
    }
}

/// Process, file and container events (what enrichment follows), fast flushes, no
/// status lines: the config of the enrichment and container tests.
pub const ENRICH_CONFIG: &str = r#"
[capture]
categories = ["process", "file", "container"]
[engine]
status_interval_ms = 0
[storage]
durability = "none"
flush_interval_ms = 100
"#;

/// Starts the engine on config `cfg` and data directory `dir`; returns it once
/// attached, with its stderr lines.
pub fn start_engine(
    cfg: &std::path::Path,
    dir: &std::path::Path,
) -> (Child, std::sync::mpsc::Receiver<String>) {
    spawn_attached_lines(Command::new(ENGINE).args([
        "--config",
        cfg.to_str().expect("utf-8 path"),
        "--data-dir",
        dir.to_str().expect("utf-8 path"),
    ]))
}

/// Stops an engine with SIGINT; its final report (it must exit 0).
pub fn stop_engine(mut engine: Child, lines: std::sync::mpsc::Receiver<String>) -> String {
    let status = signal(&mut engine, libc::SIGINT);
    let report = rest(&lines);
    assert!(status.success(), "engine failed: {status:?}\n{report}");
    report
}

/// `GET path` over HTTP/1.0 from 127.0.0.1:`port`: (status line, body); `None` when it
/// could not be had.
pub fn get(port: u16, path: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(c, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut all = Vec::new();
    c.read_to_end(&mut all).ok()?;
    let text = String::from_utf8_lossy(&all).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}
