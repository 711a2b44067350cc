//! The hook chosen for each kind, and a capture that degrades instead of dying: a kind
//! whose every hook is unavailable (here: denied with capture.deny_hooks, the same path
//! as a kernel without them) costs that kind only; it is named on stderr, in /metrics,
//! in-band in the segments and by `engine doctor`; `capture.require = "all"` refuses it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{ENGINE, data_dir_and_config, free_port, get, poll_until, privileged, replay_json};

/// Every candidate of security.capability.
const DENY_CAPABILITY: &str =
    r#"capture.deny_hooks=["tp_btf/cap_capable","fexit/cap_capable","fexit/security_capable"]"#;

fn doctor(args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(ENGINE)
        .arg("doctor")
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("engine doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "doctor JSON: {e}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), v)
}

fn hook_of<'a>(doctor: &'a serde_json::Value, kind: &str) -> Option<&'a str> {
    doctor["kinds"]
        .as_array()?
        .iter()
        .find(|k| k["kind"] == kind)
        .and_then(|k| k["hook"].as_str())
}

#[test]
fn doctor_names_the_hook_of_every_configured_kind() {
    if !privileged("doctor_names_the_hook_of_every_configured_kind") {
        return;
    }
    for preset in ["default", "high-perf", "security"] {
        let cfg = format!("{}/../configs/{preset}.toml", env!("CARGO_MANIFEST_DIR"));
        let (code, d) = doctor(&["--config", &cfg]);
        let kinds = d["kinds"].as_array().expect("kinds");
        assert!(
            d["verdict"] == "full" || d["verdict"] == "degraded",
            "{preset}: {d}"
        );
        assert_eq!(
            code,
            if d["verdict"] == "full" { 0 } else { 1 },
            "{preset}: {d}"
        );
        // Each category's kinds are there, with a hook or a reason.
        for k in [
            "process.exec",
            "process.exit",
            "file.open",
            "net.tcp_connect",
        ] {
            let listed = hook_of(&d, k).is_some()
                || d["unavailable"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|u| u["kind"] == k);
            assert!(
                listed,
                "{preset}: {k} neither captured nor unavailable: {d}"
            );
        }
        assert_eq!(
            hook_of(&d, "process.exec"),
            Some("tp_btf/sched_process_exec"),
            "{preset}"
        );
        assert!(kinds.len() >= 20, "{preset}: {} kinds", kinds.len());
        assert!(
            d["kernel"]["release"]
                .as_str()
                .is_some_and(|r| !r.is_empty())
        );
        assert_eq!(d["btf"]["available"], true);
        if preset == "high-perf" {
            assert!(hook_of(&d, "perf.runq_latency").is_some(), "{d}");
        }
    }
    // Nothing the embedded default asks for is left out on this host.
    let (code, d) = doctor(&[]);
    assert_eq!(code, 0, "{d}");
    assert_eq!(d["verdict"], "full");
}

#[test]
fn a_kind_without_a_hook_costs_that_kind_only_and_is_reported() {
    if !privileged("a_kind_without_a_hook_costs_that_kind_only_and_is_reported") {
        return;
    }
    // doctor: degraded, exit 1, the kind named with each candidate tried.
    let (code, d) = doctor(&["-o", DENY_CAPABILITY]);
    assert_eq!(code, 1, "{d}");
    assert_eq!(d["verdict"], "degraded");
    let u = d["unavailable"].as_array().expect("unavailable");
    assert_eq!(u.len(), 1, "{d}");
    assert_eq!(u[0]["kind"], "security.capability");
    assert_eq!(u[0]["reason"], "no_hook");
    assert!(
        u[0]["detail"]
            .as_str()
            .unwrap()
            .contains("fexit/security_capable: denied"),
        "{d}"
    );
    assert!(hook_of(&d, "security.signal").is_some());

    // capture.require = "all": no start, and the kind is named.
    let (dir, cfg) = data_dir_and_config("hooks-require", "");
    let out = Command::new(ENGINE)
        .args(["--config", cfg.to_str().unwrap(), "--data-dir"])
        .arg(&dir)
        .args(["-o", DENY_CAPABILITY, "-o", "capture.require=all"])
        .args(["--duration", "5"])
        .output()
        .expect("engine");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {err}");
    assert!(
        err.contains("capture.require = \"all\"") && err.contains("security.capability"),
        "{err}"
    );

    // "any" (the default): it runs, says so, and writes it in-band.
    let port = free_port();
    let live = std::env::temp_dir().join(format!("hooks-any-live-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&live);
    let (dir, cfg) = data_dir_and_config(
        "hooks-any",
        &format!(
            "[export.metrics]\nlisten = \"127.0.0.1:{port}\"\n[storage]\nflush_interval_ms = 100\n\
             [semantic]\nwindow_ms = 1000\nlateness_ms = 200\njsonl_path = \"{}\"\n",
            live.display()
        ),
    );
    let (mut engine, lines) = common::spawn_attached_lines(
        Command::new(ENGINE)
            .args(["--config", cfg.to_str().unwrap(), "--data-dir"])
            .arg(&dir)
            .args(["-o", DENY_CAPABILITY]),
    );
    let mut body = String::new();
    let scraped = poll_until(Duration::from_secs(20), || {
        body = get(port, "/metrics").map(|(_, b)| b).unwrap_or_default();
        body.contains("kevent_capture_unavailable")
    });
    assert!(
        scraped,
        "no kevent_capture_unavailable in /metrics:\n{body}"
    );
    assert!(
        body.contains(
            r#"kevent_capture_unavailable{kind="security.capability",reason="no_hook"} 1"#
        ),
        "{body}"
    );
    assert!(
        body.contains(
            r#"kevent_capture_hook_info{kind="process.exec",hook="tp_btf/sched_process_exec"} 1"#
        ),
        "{body}"
    );
    // A capability-checking workload: nothing of the kind may appear.
    let _ = Command::new("sh")
        .args(["-c", "true; ls / >/dev/null"])
        .status();
    let status = common::signal(&mut engine, libc::SIGINT);
    let report = common::rest(&lines);
    assert!(status.success(), "{report}");
    let json = replay_json(&dir, &[]);
    let marker: Vec<&str> = json
        .lines()
        .filter(|l| l.contains(r#""kind":"capture.unavailable""#))
        .collect();
    assert_eq!(marker.len(), 1, "{json}");
    assert!(
        marker[0].contains(r#""kind":"security.capability","reason":"no_hook""#),
        "{}",
        marker[0]
    );
    assert!(
        !json.contains(r#""kind":"security.capability","cpu""#),
        "capability events were captured"
    );
    // Other kinds still flowed.
    assert!(
        json.contains(r#""kind":"process.exec""#),
        "no exec captured"
    );
}
