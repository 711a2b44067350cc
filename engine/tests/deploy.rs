//! What `deploy/` ships, checked against the engine it deploys:
//! - the systemd unit passes `systemd-analyze verify`, grants exactly the capabilities
//!   the engine asks for with the config it names, and its exposure score stays low; its
//!   system call filter allows every call the engine makes (traced with strace under a
//!   workload);
//! - the container image (deploy/build-image.sh, FROM scratch) runs the way
//!   deploy/daemonset.yaml says (user, capabilities, host PID namespace, host paths,
//!   read-only root, limits: turned into podman arguments by a reader of the manifest
//!   that also checks what a node agent's manifest must have), and captures the host.
//!
//! systemd is not PID 1 here and there is no Kubernetes: the unit is verified, not
//! started; the manifest is run by podman, not a kubelet.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ENGINE, accounting_line, privileged, replay_json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn unit() -> String {
    std::fs::read_to_string(root().join("deploy/kevent.service")).expect("deploy/kevent.service")
}

/// The values of `key=` lines of the unit, split on spaces.
fn values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .flat_map(|v| v.split_whitespace().map(str::to_string))
        .collect()
}

/// `tool` installed, or a skip (a failure under REQUIRE_BPF=1, where .ci/run installs it).
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("REQUIRE_BPF").map_or(true, |v| v != "1"),
            "{tool} is not installed (REQUIRE_BPF=1)"
        );
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

#[test]
fn the_systemd_unit_verifies_and_grants_exactly_what_the_engine_asks_for() {
    if !have("systemd-analyze") {
        return;
    }
    let unit = unit();
    // Its ExecStart names /usr/local/bin/engine: verified against the binary built here.
    let dir = std::env::temp_dir().join(format!("kevent-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("kevent.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/engine", ENGINE)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze verify");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The capabilities: exactly those the engine checks for with the config it runs.
    let exec = values(&unit, "ExecStart");
    let at = exec.iter().position(|a| a == "--config").expect("--config");
    assert_eq!(exec[at + 1], "/etc/kevent/high-perf.toml");
    let config =
        engine::config::Config::load(&root().join("configs/high-perf.toml")).expect("high-perf");
    let wanted: BTreeSet<String> = engine::caps::required(&config, engine::caps::last_cap())
        .into_iter()
        .map(|(c, _)| c.name.to_string())
        .collect();
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        let given: BTreeSet<String> = values(&unit, key).into_iter().collect();
        assert_eq!(given, wanted, "{key}");
    }
    for (key, want) in [
        ("User", "kevent"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/kevent"),
        ("StateDirectory", "kevent"),
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(values(&unit, key), [want], "{key}");
    }
    let data = exec
        .iter()
        .position(|a| a == "--data-dir")
        .expect("--data-dir");
    assert_eq!(exec[data + 1], "/var/lib/kevent");

    // The exposure score (0 safest, 10 unsafe): 2.3 when written.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for kevent.service: ")
                .nth(1)
        })
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no score: {text}"));
    assert!(score <= 3.0, "exposure {score}: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every system call of the unit's filter (its groups expanded by systemd-analyze).
fn allowed_calls(filter: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = filter.to_vec();
    while let Some(item) = todo.pop() {
        if !item.starts_with('@') {
            out.insert(item);
            continue;
        }
        if !seen.insert(item.clone()) {
            continue;
        }
        let listing = Command::new("systemd-analyze")
            .args(["syscall-filter", &item])
            .output()
            .expect("systemd-analyze syscall-filter");
        for l in String::from_utf8_lossy(&listing.stdout).lines() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') || l == item {
                continue;
            }
            todo.push(l.to_string());
        }
    }
    out
}

#[test]
fn the_units_system_call_filter_allows_every_call_the_engine_makes() {
    if !privileged("the_units_system_call_filter_allows_every_call_the_engine_makes")
        || !have("systemd-analyze")
        || !have("strace")
    {
        return;
    }
    let allowed = allowed_calls(&values(&unit(), "SystemCallFilter"));
    assert!(
        allowed.contains("read") && allowed.contains("bpf"),
        "{allowed:?}"
    );
    let dir = std::env::temp_dir().join(format!("kevent-strace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let trace = dir.with_extension("strace");
    // The high-perf preset with its exporters on, under a workload of file, process and
    // network calls.
    let port = common::free_port();
    let mport = common::free_port();
    let mut engine = Command::new("strace")
        .args(["-f", "-qq", "-c", "-o"])
        .arg(&trace)
        .arg(ENGINE)
        .args(["--config"])
        .arg(root().join("configs/high-perf.toml"))
        .args(["--duration", "4", "--data-dir"])
        .arg(&dir)
        .args([
            "-o",
            &format!("export.grpc.listen=\"127.0.0.1:{port}\""),
            "-o",
            &format!("export.metrics.listen=\"127.0.0.1:{mport}\""),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("strace");
    let _ = common::poll_until(std::time::Duration::from_secs(10), || {
        common::get(mport, "/metrics").is_some()
    });
    for _ in 0..5 {
        let _ = Command::new("sh")
            .args(["-c", "ls /etc >/dev/null; cat /etc/hostname >/dev/null"])
            .status();
    }
    assert!(engine.wait().expect("strace ends").success());
    let summary = std::fs::read_to_string(&trace).expect("strace's summary");
    let used: BTreeSet<String> = summary
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().last())
        .filter(|c| *c != "total" && !c.starts_with('-'))
        .map(str::to_string)
        .collect();
    assert!(used.contains("bpf") && used.len() > 20, "{summary}");
    let refused: Vec<&String> = used.iter().filter(|c| !allowed.contains(*c)).collect();
    assert!(
        refused.is_empty(),
        "calls the unit's SystemCallFilter would refuse: {refused:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&trace);
}

#[test]
fn the_image_runs_as_the_daemonset_says_and_captures_the_host() {
    if !privileged("the_image_runs_as_the_daemonset_says_and_captures_the_host") || !have("podman")
    {
        return;
    }
    let tag = format!("localhost/kevent:test-{}", std::process::id());
    let build = Command::new("sh")
        .arg(root().join("deploy/build-image.sh"))
        .args([&tag, ENGINE])
        .output()
        .expect("deploy/build-image.sh");
    assert!(
        build.status.success(),
        "build-image.sh: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    // The node's data directory, handed to the engine's user as the init container does.
    let data = std::env::temp_dir().join(format!("kevent-node-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65532), Some(65532)).unwrap();
    let out = Command::new("python3")
        .arg(root().join("engine/tests/py/daemonset_podman.py"))
        .arg(root().join("deploy/daemonset.yaml"))
        .arg(&tag)
        .arg(&data)
        .output()
        .expect("daemonset_podman.py");
    assert!(
        out.status.success(),
        "the manifest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut args: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    // This machine's hard limits are below podman's defaults; the metrics port is a free
    // one (the host's network is shared); a run of a few seconds.
    let mport = common::free_port();
    for a in &mut args {
        if a.starts_with("export.metrics.listen=") {
            *a = format!("export.metrics.listen=\"127.0.0.1:{mport}\"");
        }
    }
    let marker = format!("kev-ds-{}", std::process::id());
    let run = Command::new("podman")
        .args([
            "run",
            "--rm",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ])
        .args(&args)
        .args(["--duration", "6"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("podman run");
    let _guard = common::KillOnDrop(run.id());
    // Up once /metrics answers; then the host does something.
    assert!(
        common::poll_until(std::time::Duration::from_secs(20), || {
            common::get(mport, "/metrics").is_some_and(|r| r.1.contains("kevent_uptime_seconds"))
        }),
        "the container's /metrics"
    );
    for _ in 0..3 {
        let _ = Command::new("sh")
            .args(["-c", &format!("cat /etc/hostname >/dev/null # {marker}")])
            .status();
    }
    let out = run.wait_with_output().expect("podman run ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "podman run: {stderr}");
    assert!(accounting_line(&stderr).contains("[holds]"), "{stderr}");
    // The host's processes, with their executables, written by uid 65532.
    let execs = replay_json(&data, &["--kind", "process.exec"]);
    let hit = execs
        .lines()
        .find(|l| l.contains(&marker))
        .unwrap_or_else(|| panic!("the host's exec: {execs}"));
    let v: serde_json::Value = serde_json::from_str(hit).unwrap();
    assert!(
        v["exe"].as_str().is_some_and(|e| e.starts_with('/')),
        "{hit}"
    );
    assert_eq!(v["container"]["id"], "host", "{hit}");
    let owner = walk_owners(&data);
    assert!(
        !owner.is_empty() && owner.iter().all(|&u| u == 65532),
        "{owner:?}"
    );
    let _ = Command::new("podman").args(["rmi", "-f", &tag]).output();
    let _ = std::fs::remove_dir_all(&data);
}

/// The owners of every file under `dir`.
fn walk_owners(dir: &Path) -> BTreeSet<u32> {
    use std::os::unix::fs::MetadataExt;
    let mut owners = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            } else {
                owners.insert(m.uid());
            }
        }
    }
    owners
}
