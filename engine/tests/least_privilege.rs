//! The engine as an unprivileged user (`nobody`) with exactly the capabilities of
//! docs/operations.md ("Least privilege"), granted by `setpriv` as ambient capabilities
//! with the bounding set cut to them: it captures, with the per-syscall tracepoints
//! (tracefs read through CAP_DAC_READ_SEARCH) and with the executables of root's
//! processes (CAP_SYS_PTRACE); with any one of them removed it refuses to start and names
//! the one missing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{ENGINE, accounting_line, privileged, replay_json};

const CAPS: [&str; 4] = ["bpf", "perfmon", "dac_read_search", "sys_ptrace"];
const NOBODY: u32 = 65534;

/// The engine under `setpriv` as `nobody` with `caps` only, for `secs` seconds; `started`
/// runs once it is capturing (its start line is out).
fn run_as_nobody(
    engine: &std::path::Path,
    dir: &std::path::Path,
    caps: &[&str],
    secs: u32,
    started: impl FnOnce(),
) -> std::process::Output {
    use std::io::{BufRead, BufReader};
    let set: String = caps.iter().map(|c| format!(",+{c}")).collect();
    let mut child = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            &format!("--inh-caps=-all{set}"),
            &format!("--ambient-caps=-all{set}"),
            &format!("--bounding-set=-all{set}"),
            "--",
        ])
        .arg(engine)
        .args(["--duration", &secs.to_string(), "--data-dir"])
        .arg(dir)
        .current_dir("/")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut text = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
        text.push_str(&line);
        let up = line.contains("core thread(s)");
        line.clear();
        if up {
            started();
            break;
        }
    }
    let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
    let status = child.wait().expect("the engine ends");
    std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: text.into_bytes(),
    }
}

#[test]
fn as_nobody_with_the_documented_capabilities_it_captures_and_without_one_it_names_it() {
    if !privileged(
        "as_nobody_with_the_documented_capabilities_it_captures_and_without_one_it_names_it",
    ) {
        return;
    }
    // A copy of the engine nobody can run (the checkout may be under a directory only
    // root can enter), and a data directory nobody owns.
    let work = std::env::temp_dir().join(format!("least-privilege-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755)).unwrap();
    let engine = work.join("engine");
    std::fs::copy(ENGINE, &engine).unwrap();
    std::fs::set_permissions(&engine, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = work.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();

    // Root runs a program while nobody's engine captures (from the test process, which
    // the engine's start scan finds).
    let marker = format!("kev-lp-{}", std::process::id());
    let out = run_as_nobody(&engine, &dir, &CAPS, 3, || {
        for _ in 0..3 {
            let _ = Command::new("sh")
                .args(["-c", &format!("cat /etc/hostname >/dev/null # {marker}")])
                .status();
        }
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "as nobody with {CAPS:?}: {stderr}");
    assert!(accounting_line(&stderr).contains("[holds]"), "{stderr}");
    // tracefs was readable: the file and security calls have tracepoints of their own.
    assert!(stderr.contains("syscalls:sys_{enter,exit}_{"), "{stderr}");
    // Root's shells and cats, with their executables, and this test process (started
    // before the engine: from its start scan of /proc, read as nobody) among their
    // ancestors with its executable. (One line suffices: an exec whose fork reached the
    // enrichment thread late is enriched without its process entry.)
    let execs = replay_json(&dir, &["--kind", "process.exec"]);
    let ours: Vec<serde_json::Value> = execs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["uid"] == 0 && (v["comm"] == "sh" || v["comm"] == "cat"))
        .filter(|v| v.to_string().contains(&marker) || v["argv"][1] == "/etc/hostname")
        .collect();
    assert!(ours.len() >= 2, "the workload's execs: {execs}");
    assert!(
        ours.iter()
            .all(|v| v["exe"].as_str().is_some_and(|e| e.starts_with('/'))),
        "{ours:?}"
    );
    let me = std::process::id();
    let test_exe = std::env::current_exe().unwrap();
    assert!(
        ours.iter().any(
            |v| v["ancestors"].as_array().is_some_and(|a| a.iter().any(|p| {
                p["pid"] == me
                    && p["exe"].as_str().map(std::path::Path::new) == Some(test_exe.as_path())
            }))
        ),
        "this process's executable among the ancestors, read as nobody: {ours:?}"
    );

    // Each one removed: the engine does not start, and says which.
    for cap in CAPS {
        let fewer: Vec<&str> = CAPS.iter().copied().filter(|c| *c != cap).collect();
        let out = run_as_nobody(&engine, &dir, &fewer, 1, || {});
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "without {cap}: {stderr}");
        let name = format!("CAP_{}", cap.to_uppercase());
        assert!(
            stderr.contains("missing capabilities: ") && stderr.contains(&format!("{name} (")),
            "without {cap}: {stderr}"
        );
        // Only the one removed.
        for other in &fewer {
            assert!(
                !stderr.contains(&format!("CAP_{} (", other.to_uppercase())),
                "{stderr}"
            );
        }
    }
    // `engine tail` checks the same way (its default categories include file and
    // security; it enriches from /proc).
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--inh-caps=-all,+bpf,+perfmon",
            "--ambient-caps=-all,+bpf,+perfmon",
            "--bounding-set=-all,+bpf,+perfmon",
            "--",
        ])
        .arg(&engine)
        .args(["tail", "--duration", "1"])
        .current_dir("/")
        .output()
        .expect("setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("missing capabilities: CAP_DAC_READ_SEARCH (")
            && stderr.contains("CAP_SYS_PTRACE ("),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&work);
}
