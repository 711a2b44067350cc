//! End to end as root: the engine on a temporary directory, a workload that execs a
//! uniquely named script with arguments and a known exit code, creates, renames and
//! unlinks unique files, connects over TCP to a loopback listener, makes a refused
//! connect and signals a child; the engine stopped with SIGINT; `engine replay --format
//! json` holds every one of those with the right fields.

use std::process::{Command, Stdio};

use serde_json::Value;

mod common;

use common::{ENGINE, privileged, signal, spawn_attached};

fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

const SCRIPT: &str = r#"
import os, signal, socket, sys, time
a, b = sys.argv[1], sys.argv[2]
with open(a, "w") as f:
    f.write("x")
os.rename(a, b)
os.unlink(b)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
port = srv.getsockname()[1]
c = socket.create_connection(("127.0.0.1", port)); conn, _ = srv.accept()
c.close(); conn.close(); srv.close()
s = socket.socket(); s.bind(("127.0.0.1", 0)); closed = s.getsockname()[1]; s.close()
try:
    socket.create_connection(("127.0.0.1", closed))
except ConnectionRefusedError:
    pass
pid = os.fork()
if pid == 0:
    time.sleep(30)
    os._exit(0)
time.sleep(0.05)
os.kill(pid, signal.SIGUSR1)
os.waitpid(pid, 0)
print(port, closed, pid)
sys.exit(42)
"#;

fn replay_json(dir: &std::path::Path) -> Vec<Value> {
    let out = Command::new(ENGINE)
        .args(["replay", dir.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

#[test]
fn workload_round_trips_through_segments_and_replay() {
    if !privileged("workload_round_trips_through_segments_and_replay") {
        return;
    }
    let tag = format!("e2e-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("{tag}-data"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let script = std::env::temp_dir().join(format!("{tag}-script.py"));
    std::fs::write(&script, SCRIPT).unwrap();
    let a = std::env::temp_dir().join(format!("{tag}-a"));
    let b = std::env::temp_dir().join(format!("{tag}-b"));

    let (mut engine, stderr) = spawn_attached(
        Command::new(ENGINE)
            .args(["--data-dir", dir.to_str().unwrap(), "--quiet"])
            .stdout(Stdio::null()),
    );
    let out = Command::new(python())
        .arg(&script)
        .arg(&a)
        .arg(&b)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let workload_pid = out.id() as u64;
    let out = out.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(42));
    let printed = String::from_utf8(out.stdout).unwrap();
    let nums: Vec<u64> = printed
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let (port, closed, child) = (nums[0], nums[1], nums[2]);
    // No wait needed: the workload's events are in the rings before it exits, and a
    // graceful stop drains every ring to the end.
    let status = signal(&mut engine, libc::SIGINT);
    let err = stderr.join().unwrap();
    assert!(status.success(), "engine failed: {err}");
    assert!(
        err.contains("[holds]"),
        "accounting identity printed and holding: {err}"
    );

    let events = replay_json(&dir);
    let find = |kind: &str, pred: &dyn Fn(&Value) -> bool| -> Value {
        events
            .iter()
            .find(|e| e["kind"] == kind && pred(e))
            .unwrap_or_else(|| panic!("no {kind} event matching in {} events", events.len()))
            .clone()
    };
    let s = script.to_str().unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    for e in &events {
        assert!(e["ts"].as_str().unwrap().ends_with('Z'), "RFC 3339 ts: {e}");
        assert!(e["weight"].as_u64().is_some() || e["kind"] == "loss");
    }

    let exec = find("process.exec", &|e| {
        e["pid"] == workload_pid && e["argv"][1] == s
    });
    assert_eq!(exec["argv"][2], a);
    assert_eq!(exec["argv"][3], b);
    assert_eq!(exec["uid"], 0);
    assert!(exec["ts"].as_str().unwrap().starts_with("20"));
    let exit = find("process.exit", &|e| e["pid"] == workload_pid);
    assert_eq!(
        (exit["exit_code"].as_i64(), exit["signal"].as_u64()),
        (Some(42), Some(0))
    );

    let open = find("file.open", &|e| e["path"] == a);
    assert!(open["ret"].as_i64().unwrap() >= 0);
    assert_eq!(open["flags"].as_u64().unwrap() & 0o100, 0o100, "O_CREAT");
    let rename = find("file.rename", &|e| e["path"] == a);
    assert_eq!(
        (rename["new_path"].as_str(), rename["ret"].as_i64()),
        (Some(b), Some(0))
    );
    let unlink = find("file.unlink", &|e| e["path"] == b);
    assert_eq!(unlink["ret"], 0);

    let connect = find("net.tcp_connect", &|e| e["dport"] == port);
    assert_eq!(
        (connect["daddr"].as_str(), connect["pid"].as_u64()),
        (Some("127.0.0.1"), Some(workload_pid))
    );
    find("net.tcp_accept", &|e| e["sport"] == port);
    let refused = find("net.tcp_close", &|e| e["dport"] == closed);
    assert_eq!(refused["old_state"], 2, "closed from SYN_SENT: refused");

    let sig = find("security.signal", &|e| {
        e["target_pid"] == child && e["signal"] == 10
    });
    assert_eq!(sig["pid"].as_u64(), Some(workload_pid));

    // The offline tools agree.
    let v = Command::new(ENGINE)
        .args(["verify", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let text = Command::new(ENGINE)
        .args([
            "replay",
            dir.to_str().unwrap(),
            "--pid",
            &workload_pid.to_string(),
            "--kind",
            "process.exit",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("exit_code=42"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&script);
}
