//! The perf category's run-queue latency against libbpf-tools' `runqlat` (the oracle),
//! on a real CPU-contention workload (stress-ng with three runnable threads per CPU):
//! over the same stretch of the same workload, the two histograms agree (the same log2
//! bucket holds the median, the 99th percentile within one bucket); slow waits are
//! records of their own, at or above the threshold; the accounting identity holds.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    KillOnDrop, accounting_line, data_dir_and_config, privileged, replay_json, start_engine,
    stop_engine,
};

const CONFIG: &str = r#"
[capture]
categories = ["perf"]
[perf]
interval_ms = 500
runq_slow_us = 2000
[engine]
status_interval_ms = 0
[storage]
durability = "none"
"#;

/// The path of `tool` when installed; `None` (a skip) without it unless REQUIRE_BPF=1,
/// where .ci/run installs it and its absence is a failure.
fn tool(name: &str, candidates: &[&str]) -> Option<String> {
    if let Some(p) = candidates.iter().find(|p| Path::new(p).exists()) {
        return Some(p.to_string());
    }
    assert!(
        std::env::var("REQUIRE_BPF").map_or(true, |v| v != "1"),
        "REQUIRE_BPF=1 but {name} is not installed (.ci/run installs it)"
    );
    eprintln!("SKIPPED: {name} is not installed");
    None
}

/// The wall clock as the engine writes it (RFC 3339, nine digits, Z): such strings sort
/// as the times they name.
fn now_rfc3339() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"])
        .output()
        .expect("date");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// runqlat's histogram: count per log2 bucket of microseconds (`lo -> hi : count`).
fn parse_runqlat(text: &str) -> Vec<u64> {
    let mut slots = vec![0u64; 27];
    for line in text.lines() {
        let Some((range, rest)) = line.split_once(':') else {
            continue;
        };
        let Some((lo, _)) = range.split_once("->") else {
            continue;
        };
        let (Ok(lo), Some(Ok(n))) = (
            lo.trim().parse::<u64>(),
            rest.split_whitespace().next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        let slot = if lo == 0 { 0 } else { lo.ilog2() as usize };
        slots[slot.min(26)] += n;
    }
    slots
}

/// The bucket holding quantile `q`.
fn quantile_slot(slots: &[u64], q: f64) -> usize {
    let total: u64 = slots.iter().sum();
    let want = (total as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (i, &n) in slots.iter().enumerate() {
        seen += n;
        if seen >= want.max(1) {
            return i;
        }
    }
    slots.len() - 1
}

#[test]
fn runq_latency_agrees_with_runqlat_and_slow_waits_are_records() {
    if !privileged("runq_latency_agrees_with_runqlat_and_slow_waits_are_records") {
        return;
    }
    let Some(runqlat) = tool("runqlat (libbpf-tools)", &["/usr/sbin/runqlat"]) else {
        return;
    };
    let Some(stress) = tool("stress-ng", &["/usr/bin/stress-ng"]) else {
        return;
    };
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (dir, cfg) = data_dir_and_config("engine-runq", CONFIG);
    let (engine, lines) = start_engine(&cfg, &dir);
    let _guard = KillOnDrop(engine.id());

    let mut load = Command::new(&stress)
        .args(["--cpu", &(3 * cpus).to_string(), "--timeout", "8", "-q"])
        .stdout(Stdio::null())
        .spawn()
        .expect("stress-ng");
    let _load_guard = KillOnDrop(load.id());
    // The contention settles before either side starts its window.
    std::thread::sleep(Duration::from_secs(1));
    let from = now_rfc3339();
    let oracle = Command::new(&runqlat)
        .args(["4", "1"])
        .output()
        .expect("runqlat");
    let to = now_rfc3339();
    assert!(oracle.status.success(), "runqlat: {oracle:?}");
    let theirs = parse_runqlat(&String::from_utf8_lossy(&oracle.stdout));
    load.wait().expect("stress-ng ends");
    let report = stop_engine(engine, lines);
    let line = accounting_line(&report).to_string();
    assert!(line.contains("[holds]"), "{report}");
    assert!(report.contains("perf: "), "the perf report line: {report}");

    // The engine's per-CPU records of the intervals inside runqlat's window.
    let mut ours = vec![0u64; 27];
    let mut intervals = 0;
    for l in replay_json(&dir, &["--kind", "perf.runq_latency"]).lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
        let (start, end) = (v["from"].as_str().unwrap(), v["ts"].as_str().unwrap());
        if v["scope"] != "cpu" || start < from.as_str() || end > to.as_str() {
            continue;
        }
        intervals += 1;
        let mut count = 0;
        for b in v["buckets"].as_array().expect("buckets") {
            let low = b["low_us"].as_u64().unwrap();
            let n = b["count"].as_u64().unwrap();
            ours[if low == 0 { 0 } else { low.ilog2() as usize }] += n;
            count += n;
        }
        assert_eq!(Some(count), v["count"].as_u64(), "buckets add up: {l}");
    }
    let (n_ours, n_theirs): (u64, u64) = (ours.iter().sum(), theirs.iter().sum());
    eprintln!("engine ({intervals} intervals, {n_ours} waits): {ours:?}");
    eprintln!("runqlat ({n_theirs} waits): {theirs:?}");
    assert!(
        intervals >= 4,
        "at least two seconds of intervals in the window"
    );
    assert!(n_ours > 100 && n_theirs > 100, "both saw the contention");
    let (m_ours, m_theirs) = (quantile_slot(&ours, 0.5), quantile_slot(&theirs, 0.5));
    assert_eq!(
        m_ours, m_theirs,
        "the median's bucket: engine {m_ours}, runqlat {m_theirs}"
    );
    let (p_ours, p_theirs) = (quantile_slot(&ours, 0.99), quantile_slot(&theirs, 0.99));
    assert!(
        p_ours.abs_diff(p_theirs) <= 1,
        "the 99th percentile's bucket: engine {p_ours}, runqlat {p_theirs}"
    );

    // Waits of 2 ms or more are records of their own, with the waiting task.
    let waits = replay_json(&dir, &["--kind", "perf.runq_wait"]);
    let mut slow = 0;
    for l in waits.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
        assert!(v["wait_ns"].as_u64().unwrap() >= 2_000_000, "{l}");
        assert!(v["pid"].as_u64().is_some() && v["comm"].is_string(), "{l}");
        slow += u64::from(v["comm"] == "stress-ng-cpu");
    }
    assert!(slow > 0, "stress-ng's slow waits are recorded: {waits}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
}
