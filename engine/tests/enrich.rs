//! Enrichment on the real kernel: processes that started before the engine keep their
//! ancestry, a reused pid is another process, a fork storm stays within the table
//! bound, and replay prints the same enrichment with the live system out of reach and
//! from the middle of a recording.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;

use common::{
    ENGINE, ENRICH_CONFIG, KillOnDrop, data_dir_and_config, privileged, replay_json, rest,
    rss_anon_kib, spawn_attached_lines, start_engine as start, stop_engine as stop,
};

const CONFIG: &str = ENRICH_CONFIG;

fn events(dir: &Path, extra: &[&str]) -> Vec<Value> {
    replay_json(dir, extra)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Runs a python script with `args`; its stdout (it must succeed).
fn python(script: &str, args: &[&std::path::Path]) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn exe_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .expect("exe link")
        .to_string_lossy()
        .into_owned()
}

fn unique(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ))
}

/// The file.open events of `path`.
fn opens_of<'a>(evs: &'a [Value], path: &str) -> Vec<&'a Value> {
    evs.iter()
        .filter(|e| e["kind"] == "file.open" && e["path"] == path)
        .collect()
}

#[test]
fn a_process_started_before_the_engine_keeps_its_ancestry() {
    if !privileged("a_process_started_before_the_engine_keeps_its_ancestry") {
        return;
    }
    let (dir, cfg) = data_dir_and_config("enrich-ancestry", CONFIG);
    let target = unique("ancestry-target");
    std::fs::write(&target, "x").unwrap();
    // A shell that waits for a line, then forks `cat TARGET`: it starts before the engine.
    let mut shell = Command::new("/bin/sh")
        .args(["-c", "read go; /bin/cat \"$1\" >/dev/null; read done", "sh"])
        .arg(&target)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sh");
    let shell_pid = shell.id();
    let shell_exe = exe_of(shell_pid);
    let (engine, lines) = start(&cfg, &dir);
    let _kill = KillOnDrop(engine.id());
    let mut stdin = shell.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    writeln!(stdin, "done").unwrap();
    drop(stdin);
    assert!(shell.wait().unwrap().success());
    let report = stop(engine, lines);
    assert!(report.contains("enrichment:"), "{report}");

    let evs = events(&dir, &[]);
    let opens = opens_of(&evs, target.to_str().unwrap());
    assert!(!opens.is_empty(), "no file.open of {target:?}");
    let e = opens[0];
    assert_eq!(e["exe"], "/usr/bin/cat", "{e}");
    let ancestors = e["ancestors"].as_array().expect("ancestors");
    assert_eq!(ancestors[0]["pid"], shell_pid, "{e}");
    assert_eq!(ancestors[0]["exe"], shell_exe.as_str(), "{e}");
    assert_eq!(ancestors[1]["pid"], std::process::id(), "{e}");
    assert_eq!(
        ancestors[1]["exe"],
        std::env::current_exe().unwrap().to_str().unwrap(),
        "{e}"
    );
    assert_eq!(e["user"], "root", "{e}");
    assert_eq!(e["group"], "root", "{e}");
    assert!(e["container"].is_object(), "{e}");
    // The exec of cat names the shell as its parent too.
    let exec = evs
        .iter()
        .find(|v| v["kind"] == "process.exec" && v["pid"] == e["pid"])
        .expect("the exec of cat");
    assert_eq!(exec["ancestors"][0]["exe"], shell_exe.as_str(), "{exec}");
    let _ = std::fs::remove_file(&target);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Forks a child running `cat A`, then makes the next child (`head B`) get the same pid
/// through `ns_last_pid`; prints both pids.
const PID_REUSE: &str = r#"
import os, sys
a, b = sys.argv[1], sys.argv[2]
def run(argv):
    pid = os.fork()
    if pid == 0:
        devnull = os.open("/dev/null", os.O_WRONLY)
        os.dup2(devnull, 1)
        os.execv(argv[0], argv)
    os.waitpid(pid, 0)
    return pid
for attempt in range(200):
    first = run(["/usr/bin/cat", a])
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(first - 1))
    second = run(["/usr/bin/head", "-c1", b])
    if second == first:
        print(first, second)
        sys.exit(0)
sys.exit("the pid was never reused")
"#;

#[test]
fn a_reused_pid_is_another_process() {
    if !privileged("a_reused_pid_is_another_process") {
        return;
    }
    let (dir, cfg) = data_dir_and_config("enrich-pid-reuse", CONFIG);
    let (a, b) = (unique("reuse-a"), unique("reuse-b"));
    std::fs::write(&a, "a").unwrap();
    std::fs::write(&b, "b").unwrap();
    let (engine, lines) = start(&cfg, &dir);
    let _kill = KillOnDrop(engine.id());
    let pids = python(PID_REUSE, &[&a, &b]);
    let pid: u64 = pids.split_whitespace().next().unwrap().parse().unwrap();
    stop(engine, lines);

    let evs = events(&dir, &[]);
    let open_a = opens_of(&evs, a.to_str().unwrap());
    let open_b = opens_of(&evs, b.to_str().unwrap());
    assert!(
        !open_a.is_empty() && !open_b.is_empty(),
        "both opens recorded"
    );
    // The last run of each (earlier attempts got other pids).
    let (ea, eb) = (open_a[open_a.len() - 1], open_b[open_b.len() - 1]);
    assert_eq!(ea["pid"], pid);
    assert_eq!(eb["pid"], pid);
    assert_eq!(ea["exe"], "/usr/bin/cat", "{ea}");
    assert_eq!(eb["exe"], "/usr/bin/head", "{eb}");
    // Both children of the same python process.
    assert_eq!(ea["ancestors"][0]["pid"], eb["ancestors"][0]["pid"]);
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Replays `dir` as JSON inside new mount and pid namespaces where /proc, /sys and
/// /etc/passwd and /etc/group are empty: nothing of the live system can be read.
fn replay_isolated(dir: &Path, extra: &[&str]) -> String {
    let script = r#"
set -e
mount -t tmpfs none /proc
mount -t tmpfs none /sys
mount --bind /dev/null /etc/passwd
mount --bind /dev/null /etc/group
test ! -e /proc/self
exec "$@"
"#;
    let out = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "--propagation", "private"])
        .args(["sh", "-c", script, "sh", ENGINE, "replay"])
        .arg(dir)
        .args(["--format", "json"])
        .args(extra)
        .output()
        .expect("unshare");
    assert!(
        out.status.success(),
        "isolated replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn replay_without_the_live_system_is_byte_identical_also_from_the_middle() {
    if !privileged("replay_without_the_live_system_is_byte_identical_also_from_the_middle") {
        return;
    }
    // Segments of the enrichment stream rotate every second: replay from the middle
    // starts at a snapshot.
    let config = format!("{CONFIG}segment_age_ms = 1000\n");
    let (dir, cfg) = data_dir_and_config("enrich-offline", &config);
    let (engine, lines) = start(&cfg, &dir);
    let _kill = KillOnDrop(engine.id());
    let marks: Vec<PathBuf> = (0..6).map(|i| unique(&format!("offline-{i}"))).collect();
    for m in &marks {
        std::fs::write(m, "x").unwrap();
        let ok = Command::new("/bin/sh")
            .args(["-c", "cd / && /usr/bin/cat \"$1\" >/dev/null", "sh"])
            .arg(m)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        std::thread::sleep(Duration::from_millis(600));
    }
    stop(engine, lines);
    let enrich_segments = std::fs::read_dir(dir.join("stream-1000000"))
        .expect("the enrichment stream")
        .count();
    assert!(
        enrich_segments >= 2,
        "{enrich_segments} enrichment segment(s)"
    );

    let live = replay_json(&dir, &[]);
    let isolated = replay_isolated(&dir, &[]);
    assert!(live.lines().any(|l| l.contains("\"ancestors\"")));
    assert_eq!(live, isolated, "replay differs without the live system");

    // From the middle: the events from the third mark on, with the same enrichment.
    let evs: Vec<Value> = live
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let third = opens_of(&evs, marks[3].to_str().unwrap())
        .into_iter()
        .find(|e| e["comm"] == "cat")
        .expect("cat's open of the third mark");
    let from = third["ts"].as_str().unwrap().to_string();
    let tail = replay_isolated(&dir, &["--from", &from]);
    let first_tail = tail.lines().next().expect("events from the middle");
    let at = live
        .lines()
        .position(|l| l == first_tail)
        .expect("the first line from the middle is a line of the full replay");
    let expected: Vec<&str> = live.lines().skip(at).collect();
    let got: Vec<&str> = tail.lines().collect();
    assert_eq!(got, expected, "replay from {from} differs");
    let later: Value = serde_json::from_str(
        got.iter()
            .find(|l| {
                l.contains(marks[4].to_str().unwrap())
                    && l.contains("\"file.open\"")
                    && l.contains("\"comm\":\"cat\"")
            })
            .unwrap(),
    )
    .unwrap();
    assert_eq!(later["exe"], "/usr/bin/cat", "{later}");
    assert!(
        later["ancestors"].as_array().is_some_and(|a| a.len() >= 2),
        "{later}"
    );
    let _ = marks.iter().map(std::fs::remove_file).count();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Keeps 600 children alive at once, then ends them.
const FORK_STORM: &str = r#"
import os, signal, sys, time
kids = []
for i in range(600):
    pid = os.fork()
    if pid == 0:
        signal.pause()
        os._exit(0)
    kids.append(pid)
time.sleep(0.5)
for pid in kids:
    os.kill(pid, signal.SIGKILL)
for pid in kids:
    os.waitpid(pid, 0)
print(len(kids))
"#;

#[test]
fn a_fork_storm_beyond_the_bound_is_evicted_and_reported() {
    if !privileged("a_fork_storm_beyond_the_bound_is_evicted_and_reported") {
        return;
    }
    let config = format!("{CONFIG}[enrich]\nprocesses_max = 64\nexit_grace_ms = 0\n");
    let (dir, cfg) = data_dir_and_config("enrich-storm", &config);
    let (engine, lines) = start(&cfg, &dir);
    let _kill = KillOnDrop(engine.id());
    let before = rss_anon_kib(engine.id());
    python(FORK_STORM, &[]);
    // Ask for the status line (SIGUSR1) until it shows the storm's evictions: the
    // enrichment thread has applied it, and the RSS sample below comes after.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        // SAFETY: kill with the pid of a child we own.
        unsafe { libc::kill(engine.id() as i32, libc::SIGUSR1) };
        let status = common::wait_line(&lines, Duration::from_secs(5), &mut seen, |l| {
            l.starts_with("engine: written/s")
        });
        if common::number_after(&status, "cgroups,") >= 500 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no evictions shown: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = rss_anon_kib(engine.id());
    let report = stop(engine, lines);
    let line = report
        .lines()
        .find(|l| l.starts_with("enrichment:"))
        .unwrap_or_else(|| panic!("no enrichment line: {report}"));
    let evicted = common::number_after(line, "evicted");
    assert!(evicted >= 500, "{line}");
    let held = common::number_after(line, "tables at the stop:");
    assert!(held <= 64, "{line}");
    assert!(line.contains("enrich.processes_max = 64"), "{line}");
    // Flat: 600 processes would not show in RSS anyway; a leak per fork of the
    // storm's size would be well under this, so this bounds gross growth only. Anonymous
    // memory: the rings are shared mappings whose pages turn resident as the storm first
    // goes round them (bounded by config, up to twice the ring bytes), not growth.
    assert!(
        before > 0 && after > 0 && after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tail_shows_the_exe_live() {
    if !privileged("tail_shows_the_exe_live") {
        return;
    }
    let target = unique("tail-target");
    std::fs::write(&target, "x").unwrap();
    let (mut tail, lines) = spawn_attached_lines(
        Command::new(ENGINE)
            .args(["tail", "--categories", "process,file", "--duration", "3"])
            .stdout(Stdio::piped()),
    );
    let _kill = KillOnDrop(tail.id());
    let ok = Command::new("/bin/sh")
        .args(["-c", "/usr/bin/cat \"$1\" >/dev/null", "sh"])
        .arg(&target)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut tail.stdout.take().unwrap(), &mut out).unwrap();
    assert!(tail.wait().unwrap().success(), "{}", rest(&lines));
    let line = out
        .lines()
        .find(|l| l.contains("file.open") && l.contains(target.to_str().unwrap()))
        .unwrap_or_else(|| panic!("no open of {target:?} in:\n{out}"));
    assert!(line.contains(" exe=/usr/bin/cat"), "{line}");
    let _ = std::fs::remove_file(&target);
}

/// In a temporary cwd: a relative open, unlink and rename through AT_FDCWD, and the same
/// through a dirfd of another directory.
const RELATIVE: &str = r#"
import os, sys
home, other = sys.argv[1], sys.argv[2]
os.chdir(home)
open("a", "w").close()
os.rename("a", "b")
os.unlink("b")
d = os.open(other, os.O_RDONLY | os.O_DIRECTORY)
os.close(os.open("c", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=d))
os.rename("c", "e", src_dir_fd=d, dst_dir_fd=d)
os.unlink("e", dir_fd=d)
"#;

#[test]
fn replay_shows_relative_names_as_absolute_paths() {
    if !privileged("replay_shows_relative_names_as_absolute_paths") {
        return;
    }
    let (dir, cfg) = data_dir_and_config("enrich-paths", CONFIG);
    let (home, other) = (unique("paths-home"), unique("paths-other"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    let (engine, lines) = start(&cfg, &dir);
    let _kill = KillOnDrop(engine.id());
    python(RELATIVE, &[&home, &other]);
    stop(engine, lines);
    let evs = events(&dir, &["--comm", "python3"]);
    let (h, o) = (home.to_str().unwrap(), other.to_str().unwrap());
    let has = |kind: &str, path: String, new_path: Option<String>| {
        assert!(
            evs.iter().any(|e| e["kind"] == kind
                && e["path"] == path.as_str()
                && new_path
                    .as_ref()
                    .is_none_or(|n| e["new_path"] == n.as_str())),
            "no {kind} of {path} -> {new_path:?}"
        );
    };
    has("file.open", format!("{h}/a"), None);
    has("file.rename", format!("{h}/a"), Some(format!("{h}/b")));
    has("file.unlink", format!("{h}/b"), None);
    has("file.open", format!("{o}/c"), None);
    has("file.rename", format!("{o}/c"), Some(format!("{o}/e")));
    has("file.unlink", format!("{o}/e"), None);
    let _ = std::fs::remove_dir_all(&home);
    let _ = std::fs::remove_dir_all(&other);
    let _ = std::fs::remove_dir_all(&dir);
}
