//! Sampling in the kernel: a getppid storm far over the bulk budget is sampled by the BPF
//! program before it reserves ring space; what it leaves out is counted (the identity
//! holds), the kept records carry the kernel's N, and their weights estimate the known
//! number of calls without bias. With `sampling.in_kernel = false`, or a user-space filter
//! the kernel cannot apply, the same storm is sampled by the engine instead.

mod common;

use std::process::{Command, Stdio};

use common::{
    KillOnDrop, accounting_line, data_dir_and_config, number_after, privileged, replay_json,
    start_engine, stop_engine,
};

const CONFIG: &str = r#"
[capture]
categories = ["syscall"]
syscalls = [110]
ring_bytes = 16777216
wakeup_bytes = 262144
[sampling]
interval_ms = 200
bulk_per_sec = 4000
SAMPLING_EXTRA
[engine]
status_interval_ms = 0
[storage]
durability = "none"
"#;

/// Runs a getppid storm of about `secs` seconds in a child; its pid and the calls made.
fn storm(secs: f64) -> (u32, u64) {
    let code = format!(
        "import os, time\nend = time.time() + {secs}\nn = 0\nwhile time.time() < end:\n    for _ in range(10000): os.getppid()\n    n += 10000\nprint(n)"
    );
    let child = Command::new("python3")
        .args(["-c", &code])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let pid = child.id();
    let out = child.wait_with_output().expect("storm");
    let calls = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .parse()
        .expect("the storm prints its calls");
    (pid, calls)
}

/// `(records, weight sum, largest weight)` of the storm's getppid records on disk.
fn replayed(dir: &std::path::Path, pid: u32) -> (u64, u64, u64) {
    let pid = pid.to_string();
    let json = replay_json(dir, &["--kind", "syscall.call", "--pid", &pid]);
    let mut out = (0, 0, 0);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let w = v["weight"].as_u64().expect("a weight");
        out.0 += 1;
        out.1 += w;
        out.2 = out.2.max(w);
    }
    out
}

/// Runs the storm under the engine with `sampling` added to `[sampling]` and `extra`
/// sections; returns the accounting line, the calls made and the replayed
/// `(records, weight sum, largest weight)`.
fn run(tag: &str, sampling: &str, extra: &str) -> (String, u64, (u64, u64, u64)) {
    let toml = format!("{}{extra}", CONFIG.replace("SAMPLING_EXTRA", sampling));
    let (dir, cfg) = data_dir_and_config(tag, &toml);
    let (engine, lines) = start_engine(&cfg, &dir);
    let _guard = KillOnDrop(engine.id());
    let (pid, calls) = storm(3.0);
    let report = stop_engine(engine, lines);
    let line = accounting_line(&report).to_string();
    assert!(line.contains("[holds]"), "{report}");
    let got = replayed(&dir, pid);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
    (line, calls, got)
}

#[test]
fn the_kernel_samples_before_the_ring_and_the_weights_stay_unbiased() {
    if !privileged("the_kernel_samples_before_the_ring_and_the_weights_stay_unbiased") {
        return;
    }
    let (line, calls, (records, estimate, max_w)) = run("engine-ksample", "", "");
    eprintln!("{line}\ncalls {calls}, records {records}, estimate {estimate}, max weight {max_w}");
    let kernel = number_after(&line, "(kernel");
    let engine = number_after(&line, "engine");
    assert!(
        kernel > calls / 2,
        "most of the storm left out in the kernel: {line}"
    );
    assert_eq!(engine, 0, "nothing left to the engine to sample: {line}");
    assert!(max_w > 10, "kept records carry the kernel's N ({max_w})");
    assert!(
        records * 10 < calls,
        "{records} of {calls} calls crossed the ring"
    );
    // Each kept call stands for its weight: the sum estimates the calls made (the
    // standard error is about 1/sqrt(records), near 1% here).
    let err = (estimate as f64 - calls as f64).abs() / calls as f64;
    assert!(
        err < 0.05,
        "weighted estimate {estimate} vs {calls} calls made: {:.1}% off",
        err * 100.0
    );
}

#[test]
fn without_the_kernel_the_engine_samples_the_same_storm() {
    if !privileged("without_the_kernel_the_engine_samples_the_same_storm") {
        return;
    }
    // Off by config, and off because a comm rule (which the kernel cannot apply) must
    // not spend the budget on events it would reject.
    for (tag, sampling, extra) in [
        ("engine-ksample-off", "in_kernel = false", ""),
        (
            "engine-ksample-comm",
            "",
            "[filter]\ncomms = [\"python*\"]\n",
        ),
    ] {
        let (line, calls, (records, estimate, _)) = run(tag, sampling, extra);
        eprintln!("{tag}: {line}\ncalls {calls}, records {records}, estimate {estimate}");
        assert_eq!(number_after(&line, "(kernel"), 0, "{tag}: {line}");
        assert!(
            number_after(&line, "engine") > calls / 2,
            "{tag}: sampled in the engine: {line}"
        );
        let err = (estimate as f64 - calls as f64).abs() / calls as f64;
        assert!(err < 0.05, "{tag}: estimate {estimate} vs {calls} calls");
    }
}
