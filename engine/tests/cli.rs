//! The `engine` binary from the outside: bad input gets one clear message and a
//! non-zero exit, never a panic; as root it tails real events.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");

fn fails_with(args: &[&str], message: &str) {
    let out = Command::new(ENGINE)
        .args(args)
        .output()
        .expect("running engine");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "engine {args:?} succeeded");
    assert!(
        err.contains(message),
        "engine {args:?}: expected {message:?} in:\n{err}"
    );
    assert!(
        !err.contains("panicked"),
        "engine {args:?} panicked:\n{err}"
    );
}

#[test]
fn bad_arguments_are_named() {
    fails_with(
        &["--categories", "process,bogus"],
        "unknown category \"bogus\"",
    );
    fails_with(
        &["--ring-bytes", "1000"],
        "ring_bytes: 1000 is not a power of two",
    );
    fails_with(
        &["--duration=-1"],
        "--duration: -1 is not a positive number",
    );
    fails_with(
        &["--syscalls", "1,x"],
        "--syscalls: \"x\" is not a syscall number",
    );
    fails_with(
        &["--syscalls", "9999"],
        "syscalls: id 9999 is not below 512",
    );
    fails_with(&["--no-such-flag"], "unexpected argument '--no-such-flag'");
}

fn privileged() -> bool {
    if bpf::privileged() {
        return true;
    }
    assert!(
        std::env::var("REQUIRE_BPF").map_or(true, |v| v != "1"),
        "REQUIRE_BPF=1 but not privileged"
    );
    eprintln!("SKIPPED: needs root (set REQUIRE_BPF=1 to make this a failure)");
    false
}

#[test]
fn unprivileged_run_says_what_is_missing() {
    if !privileged() {
        return;
    }
    // A copy nobody can run wherever the checkout lives (CI may clone under a directory
    // only root can enter).
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("engine-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.join("engine");
    std::fs::copy(ENGINE, &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&exe)
        .args(["--duration", "1"])
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("running engine as nobody");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("not privileged to load BPF programs: need root, or CAP_BPF + CAP_PERFMON"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn tails_a_real_exec_and_exit() {
    if !privileged() {
        return;
    }
    let marker = format!("tailmarker-{}", std::process::id());
    let mut engine = Command::new(ENGINE)
        .args(["--duration", "3", "--categories", "process"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting engine");
    let mut stderr = BufReader::new(engine.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).expect("engine stderr");
    assert!(
        line.starts_with("engine: attached sched_process_exec"),
        "{line}"
    );

    let status = Command::new("/bin/sh")
        .args(["-c", "exit 3", &marker])
        .status()
        .expect("running the workload");
    assert_eq!(status.code(), Some(3));

    let out = engine.wait_with_output().expect("engine output");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(out.status.success(), "engine failed: {rest}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let exec = stdout
        .lines()
        .find(|l| l.contains("process.exec") && l.contains(&marker))
        .unwrap_or_else(|| panic!("no exec line for {marker} in:\n{stdout}"));
    assert!(
        exec.contains(&format!("argv=\"/bin/sh -c exit 3 {marker}\"")),
        "{exec}"
    );
    let pid = exec
        .split_whitespace()
        .nth(2)
        .and_then(|c| c.split('[').nth(1))
        .and_then(|p| p.split('/').next())
        .expect("comm[pid/tid]");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(&format!("[{pid}/")) && l.contains("process.exit exit_code=3")),
        "no exit line for pid {pid}"
    );
    assert!(rest.contains("process.exec"), "accounting printed: {rest}");
}
