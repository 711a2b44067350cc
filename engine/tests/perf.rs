//! The perf category against libbpf-tools (the oracles), on real workloads:
//! - run-queue latency beside `runqlat` under CPU contention (stress-ng with three runnable
//!   threads per CPU);
//! - block I/O latency beside `biolatency` under fio doing direct random reads and writes
//!   on a file of the real disk, with request counts checked against fio's own.
//!
//! Over the same stretch of the same workload the histograms agree (the same log2 bucket
//! holds the median, the 99th percentile within one bucket); slow waits and slow requests
//! are records of their own, at or above their thresholds; the identity holds.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    KillOnDrop, accounting_line, data_dir_and_config, privileged, replay_json, start_engine,
    stop_engine,
};

/// The two tests load the machine in ways that would disturb each other's oracle: one at
/// a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const CONFIG: &str = r#"
[capture]
categories = ["perf"]
[perf]
interval_ms = 500
runq_slow_us = 2000
io_slow_us = 1000
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

/// The engine's `kind` records whose interval lies in `[from, to]` and that `keep`
/// selects, summed into one histogram of log2 buckets; and how many records.
fn engine_histogram(
    dir: &Path,
    kind: &str,
    from: &str,
    to: &str,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> (Vec<u64>, usize) {
    let mut slots = vec![0u64; 27];
    let mut records = 0;
    for l in replay_json(dir, &["--kind", kind]).lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
        let (start, end) = (v["from"].as_str().unwrap(), v["ts"].as_str().unwrap());
        if start < from || end > to || !keep(&v) {
            continue;
        }
        records += 1;
        let mut count = 0;
        for b in v["buckets"].as_array().expect("buckets") {
            let low = b["low_us"].as_u64().unwrap();
            let n = b["count"].as_u64().unwrap();
            slots[if low == 0 { 0 } else { low.ilog2() as usize }] += n;
            count += n;
        }
        assert_eq!(Some(count), v["count"].as_u64(), "buckets add up: {l}");
    }
    (slots, records)
}

/// The same log2 bucket holds both medians; the 99th percentiles are within one bucket.
fn assert_agree(what: &str, ours: &[u64], theirs: &[u64]) {
    let (n_ours, n_theirs): (u64, u64) = (ours.iter().sum(), theirs.iter().sum());
    eprintln!("{what}: engine ({n_ours}): {ours:?}");
    eprintln!("{what}: oracle ({n_theirs}): {theirs:?}");
    assert!(
        n_ours > 100 && n_theirs > 100,
        "{what}: both saw the workload"
    );
    let (m_ours, m_theirs) = (quantile_slot(ours, 0.5), quantile_slot(theirs, 0.5));
    assert_eq!(
        m_ours, m_theirs,
        "{what}: the median's bucket: engine {m_ours}, oracle {m_theirs}"
    );
    let (p_ours, p_theirs) = (quantile_slot(ours, 0.99), quantile_slot(theirs, 0.99));
    assert!(
        p_ours.abs_diff(p_theirs) <= 1,
        "{what}: the 99th percentile's bucket: engine {p_ours}, oracle {p_theirs}"
    );
}

#[test]
fn runq_latency_agrees_with_runqlat_and_slow_waits_are_records() {
    if !privileged("runq_latency_agrees_with_runqlat_and_slow_waits_are_records") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
    let (ours, intervals) = engine_histogram(&dir, "perf.runq_latency", &from, &to, |v| {
        v["scope"] == "cpu"
    });
    assert!(
        intervals >= 4,
        "at least two seconds of intervals in the window"
    );
    assert_agree("run-queue latency", &ours, &theirs);

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

#[test]
fn block_io_latency_agrees_with_biolatency_and_counts_match_fio() {
    if !privileged("block_io_latency_agrees_with_biolatency_and_counts_match_fio") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(biolatency) = tool("biolatency (libbpf-tools)", &["/usr/sbin/biolatency"]) else {
        return;
    };
    let Some(fio) = tool("fio", &["/usr/bin/fio"]) else {
        return;
    };
    let (dir, cfg) = data_dir_and_config("engine-bio", CONFIG);
    // The file on the real disk (not a tmpfs), next to the data directory.
    let work = dir.with_extension("fio");
    std::fs::create_dir_all(&work).expect("fio dir");
    let file = work.join("data");
    // Laid out before the engine starts: fio's run is then only its own direct I/O.
    let layout = Command::new(&fio)
        .args([
            "--name=layout",
            "--rw=write",
            "--bs=1M",
            "--size=64M",
            "--direct=1",
        ])
        .arg(format!("--filename={}", file.display()))
        .output()
        .expect("fio layout");
    assert!(layout.status.success(), "fio layout: {layout:?}");
    let (engine, lines) = start_engine(&cfg, &dir);
    let _guard = KillOnDrop(engine.id());

    let from = now_rfc3339();
    let oracle = Command::new(&biolatency)
        .args(["5", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("biolatency");
    let _oracle_guard = KillOnDrop(oracle.id());
    let run = Command::new(&fio)
        .args([
            "--name=t",
            "--rw=randrw",
            "--bs=4k",
            "--size=64M",
            "--direct=1",
            "--ioengine=psync",
            "--runtime=3",
            "--time_based",
            "--output-format=json",
        ])
        .arg(format!("--filename={}", file.display()))
        .output()
        .expect("fio");
    assert!(run.status.success(), "fio: {run:?}");
    let oracle = oracle.wait_with_output().expect("biolatency");
    let to = now_rfc3339();
    let theirs = parse_runqlat(&String::from_utf8_lossy(&oracle.stdout));
    let report = stop_engine(engine, lines);
    assert!(accounting_line(&report).contains("[holds]"), "{report}");

    let fio_json: serde_json::Value = serde_json::from_slice(&run.stdout).expect("fio's JSON");
    let job = &fio_json["jobs"][0];
    let fio_reads = job["read"]["total_ios"].as_u64().expect("fio read ios");
    let fio_writes = job["write"]["total_ios"].as_u64().expect("fio write ios");

    // The engine's records inside biolatency's window: every device, like biolatency.
    let (ours, _) = engine_histogram(&dir, "perf.io_latency", &from, &to, |_| true);
    assert_agree("block I/O latency", &ours, &theirs);

    // Every record of the run (its interval may start before the window): reads and
    // writes of the busiest disk against fio's counts. Anything else on the machine adds
    // a little; nothing of fio's is missing.
    let mut per_disk: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for l in replay_json(&dir, &["--kind", "perf.io_latency"]).lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
        *per_disk
            .entry((
                v["disk"].as_str().unwrap().to_string(),
                v["op"].as_str().unwrap().to_string(),
            ))
            .or_default() += v["count"].as_u64().unwrap();
    }
    eprintln!("engine requests: {per_disk:?}; fio: {fio_reads} reads, {fio_writes} writes");
    let disk = per_disk
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|((d, _), _)| d.clone())
        .expect("some block I/O");
    for (op, want) in [("read", fio_reads), ("write", fio_writes)] {
        let got = per_disk
            .get(&(disk.clone(), op.to_string()))
            .copied()
            .unwrap_or(0);
        // The block layer may merge adjacent requests (biolatency, on the same tracepoints,
        // counts what the engine counts: the histograms above are of the same requests).
        assert!(
            got + want / 100 + 10 >= want && got <= want + want / 20 + 200,
            "{op}s of {disk}: engine {got}, fio {want}"
        );
    }
    // Requests of a millisecond or more are records of their own, attributed.
    for l in replay_json(&dir, &["--kind", "perf.io_slow"]).lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
        assert!(v["latency_ns"].as_u64().unwrap() >= 1_000_000, "{l}");
        assert!(
            v["disk"].is_string() && v["op"].is_string() && v["pid"].is_u64(),
            "{l}"
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
}

/// A loop of `n` short TCP connections on 127.0.0.1:`port` in a python child: each
/// sends 100,000 bytes, receives 50,000, and closes.
fn short_connections(port: u16, n: usize) {
    let code = format!(
        r#"
import socket, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", {port})); srv.listen(16)
def serve():
    for _ in range({n}):
        c, _ = srv.accept()
        got = 0
        while got < 100000:
            got += len(c.recv(65536))
        c.sendall(b"y" * 50000); c.close()
t = threading.Thread(target=serve); t.start()
for _ in range({n}):
    s = socket.create_connection(("127.0.0.1", {port})); s.sendall(b"x" * 100000)
    got = 0
    while got < 50000:
        d = s.recv(65536)
        if not d: break
        got += len(d)
    s.close()
t.join()
"#
    );
    let st = Command::new("python3")
        .args(["-c", &code])
        .status()
        .expect("python3");
    assert!(st.success(), "the connection loop");
}

#[test]
fn traffic_matches_iperf3_and_connection_lives_match_tcplife() {
    if !privileged("traffic_matches_iperf3_and_connection_lives_match_tcplife") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(iperf3) = tool("iperf3", &["/usr/bin/iperf3"]) else {
        return;
    };
    let Some(tcplife) = tool("tcplife (libbpf-tools)", &["/usr/sbin/tcplife"]) else {
        return;
    };
    let (dir, cfg) = data_dir_and_config("engine-net", CONFIG);
    let (engine, lines) = start_engine(&cfg, &dir);
    let _guard = KillOnDrop(engine.id());

    // iperf3 over loopback for a fixed number of bytes.
    let port = common::free_port();
    let mut server = Command::new(&iperf3)
        .args(["-s", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 -s");
    let _server_guard = KillOnDrop(server.id());
    // The client's report: retried until the server listens. iperf3 -J can exit 0 with an
    // error in its JSON (a refused or cut-off first try), so a report counts only with its
    // totals.
    let mut report = serde_json::Value::Null;
    assert!(
        common::poll_until(Duration::from_secs(20), || {
            let out = Command::new(&iperf3)
                .args([
                    "-c",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-n",
                    "20M",
                    "-J",
                ])
                .output()
                .expect("iperf3 -c");
            report = serde_json::from_slice(&out.stdout).unwrap_or_default();
            out.status.success() && report["end"]["sum_received"]["bytes"].is_u64()
        }),
        "iperf3 ran: {report}"
    );
    // SAFETY: kill with the pid of a child we own.
    unsafe { libc::kill(server.id() as i32, libc::SIGKILL) };
    let _ = server.wait();
    let sent = report["end"]["sum_sent"]["bytes"]
        .as_u64()
        .expect("bytes sent");
    let received = report["end"]["sum_received"]["bytes"]
        .as_u64()
        .expect("bytes received");

    // tcplife beside a loop of short connections.
    let life_port = common::free_port();
    let mut oracle = Command::new("stdbuf")
        .args(["-oL", &tcplife, "-w"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tcplife");
    let _oracle_guard = KillOnDrop(oracle.id());
    std::thread::sleep(Duration::from_millis(1500)); // its programs attach
    let n = 10;
    short_connections(life_port, n);
    // It flushes its lines as they come (stdbuf): stop it once they are all out.
    std::thread::sleep(Duration::from_millis(500));
    common::signal(&mut oracle, libc::SIGINT);
    let mut text = String::new();
    std::io::Read::read_to_string(oracle.stdout.as_mut().expect("stdout"), &mut text)
        .expect("tcplife's output");
    let stopped = stop_engine(engine, lines);
    assert!(accounting_line(&stopped).contains("[holds]"), "{stopped}");

    // Per flow of the two iperf3 processes: the data connection carries the bytes
    // iperf3 counted, plus its 37-byte cookie.
    let mut flows: std::collections::BTreeMap<(u64, u64, u64), (u64, u64)> = Default::default();
    for l in replay_json(&dir, &["--kind", "perf.net_traffic", "--comm", "iperf3"]).lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
        assert_eq!(v["protocol"], "tcp", "{l}");
        let k = (
            v["pid"].as_u64().unwrap(),
            v["sport"].as_u64().unwrap(),
            v["dport"].as_u64().unwrap(),
        );
        let e = flows.entry(k).or_default();
        e.0 += v["bytes_sent"].as_u64().unwrap();
        e.1 += v["bytes_received"].as_u64().unwrap();
    }
    eprintln!("iperf3 flows: {flows:?}; iperf3: sent {sent}, received {received}");
    let most_sent = flows.values().map(|f| f.0).max().unwrap_or(0);
    let most_received = flows.values().map(|f| f.1).max().unwrap_or(0);
    assert!(
        most_sent >= sent && most_sent - sent <= 1024,
        "the client's data flow sent {most_sent}, iperf3 says {sent}"
    );
    assert!(
        most_received >= received && most_received - received <= 1024,
        "the server's data flow received {most_received}, iperf3 says {received}"
    );

    // Every short connection, both ends, as tcplife saw them.
    let mut theirs: std::collections::BTreeMap<(u64, u64), (f64, f64, f64)> = Default::default();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 {
            continue;
        }
        let (lport, rport) = (f[3].parse().unwrap_or(0), f[5].parse().unwrap_or(0));
        if lport != u64::from(life_port) && rport != u64::from(life_port) {
            continue;
        }
        let num = |s: &str| s.parse::<f64>().unwrap_or(-1.0);
        theirs.insert((lport, rport), (num(f[6]), num(f[7]), num(f[8])));
    }
    let mut ours: std::collections::BTreeMap<(u64, u64), (f64, f64, f64)> = Default::default();
    for l in replay_json(&dir, &["--kind", "perf.tcp_life"]).lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
        let (sport, dport) = (v["sport"].as_u64().unwrap(), v["dport"].as_u64().unwrap());
        if sport != u64::from(life_port) && dport != u64::from(life_port) {
            continue;
        }
        assert_eq!(v["comm"], "python3", "attributed to the process: {l}");
        let kb = |k: &str| v[k].as_u64().unwrap() as f64 / 1024.0;
        ours.insert(
            (sport, dport),
            (
                kb("bytes_sent"),
                kb("bytes_received"),
                v["duration_ns"].as_u64().unwrap() as f64 / 1e6,
            ),
        );
    }
    eprintln!("tcp lives: engine {ours:?}\ntcplife {theirs:?}");
    assert_eq!(ours.len(), 2 * n, "both ends of every connection");
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "the same connections as tcplife"
    );
    for (k, (tx, rx, ms)) in &ours {
        let (ttx, trx, tms) = theirs[k];
        assert!(
            (tx - ttx).abs() < 0.01 && (rx - trx).abs() < 0.01,
            "{k:?}: bytes"
        );
        assert!(
            (ms - tms).abs() <= (tms * 0.5).max(1.0),
            "{k:?}: lived {ms} ms, tcplife says {tms}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
}

#[test]
fn context_switches_match_the_kernels_own_counts() {
    if !privileged("context_switches_match_the_kernels_own_counts") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = CONFIG.replace("[perf]\n", "[perf]\ntop_n = 50\n");
    let (dir, cfg) = data_dir_and_config("engine-sched", &config);
    let (engine, lines) = start_engine(&cfg, &dir);
    let _guard = KillOnDrop(engine.id());
    // 400 sleeps of a millisecond: a voluntary switch each; the process then reads its own
    // counts from the kernel (/proc/self/status; one thread).
    let code = r#"
import os, time
for _ in range(400):
    time.sleep(0.001)
st = dict(l.split(":\t") for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
print(os.getpid(), int(st["voluntary_ctxt_switches"]), int(st["nonvoluntary_ctxt_switches"]))
"#;
    let out = Command::new("python3")
        .args(["-c", code])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let f: Vec<u64> = text
        .split_whitespace()
        .map(|x| x.parse().expect("a number"))
        .collect();
    let (pid, voluntary, involuntary) = (f[0], f[1], f[2]);
    // Its entry is retired two idle intervals after it exits: the records are all out
    // by the stop either way.
    let report = stop_engine(engine, lines);
    assert!(accounting_line(&report).contains("[holds]"), "{report}");
    let (mut sw, mut inv, mut off) = (0, 0, 0);
    for l in replay_json(
        &dir,
        &["--kind", "perf.task_sched", "--pid", &pid.to_string()],
    )
    .lines()
    {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
        assert_eq!(v["comm"], "python3", "{l}");
        sw += v["switches"].as_u64().unwrap();
        inv += v["involuntary"].as_u64().unwrap();
        off += v["offcpu_ns"].as_u64().unwrap();
    }
    eprintln!(
        "engine: {sw} voluntary, {inv} involuntary, off-CPU {off} ns; kernel: {voluntary} voluntary, {involuntary} involuntary"
    );
    // The engine also sees the switches after the process read its counts (its exit).
    assert!(
        sw >= voluntary && sw <= voluntary + voluntary / 10 + 10,
        "voluntary switches: engine {sw}, kernel {voluntary}"
    );
    assert!(
        inv + 5 >= involuntary && inv <= involuntary + involuntary / 2 + 20,
        "involuntary switches: engine {inv}, kernel {involuntary}"
    );
    assert!(
        off >= 400_000_000,
        "400 sleeps of at least 1 ms off the CPU: {off} ns"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
}

/// The number just before `key` in `line` (0 when absent).
fn number_before(line: &str, key: &str) -> u64 {
    let Some(i) = line.find(key) else {
        return 0;
    };
    line[..i]
        .split_whitespace()
        .last()
        .and_then(|w| w.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_context_switch_storm_overflows_the_tables_counted_and_memory_stays_flat() {
    if !privileged("a_context_switch_storm_overflows_the_tables_counted_and_memory_stays_flat") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(stress) = tool("stress-ng", &["/usr/bin/stress-ng"]) else {
        return;
    };
    // Tables far too small for the storm: what does not fit is counted, not lost silently.
    let config = CONFIG.replace(
        "[perf]\n",
        "[perf]\ntasks_max = 4\ncgroups_max = 1\nflows_max = 2\n",
    );
    let (dir, cfg) = data_dir_and_config("engine-switch-storm", &config);
    let (engine, lines) = start_engine(&cfg, &dir);
    let _guard = KillOnDrop(engine.id());
    let pid = engine.id();
    let before = common::rss_anon_kib(pid);
    let storm = Command::new(&stress)
        .args(["--switch", "4", "--cpu", "4", "--timeout", "4", "-q"])
        .stdout(Stdio::null())
        .status()
        .expect("stress-ng");
    assert!(storm.success(), "stress-ng: {storm:?}");
    let after = common::rss_anon_kib(pid);
    let report = stop_engine(engine, lines);
    assert!(accounting_line(&report).contains("[holds]"), "{report}");
    let perf = report
        .lines()
        .find(|l| l.starts_with("perf:"))
        .unwrap_or_else(|| panic!("no perf line: {report}"));
    eprintln!("{perf}\nanonymous RSS {before} -> {after} KiB");
    let full = number_before(perf, "switches not counted per process");
    assert!(full > 0, "the process table overflowed, counted: {perf}");
    let waits = number_before(perf, "run-queue waits");
    assert!(waits > 10_000, "the storm's waits were measured: {perf}");
    assert!(
        after < before + 32 * 1024,
        "anonymous RSS grew from {before} KiB to {after} KiB"
    );
    // What fit is still written: per-CPU histograms and the processes of the table.
    assert!(!replay_json(&dir, &["--kind", "perf.runq_latency"]).is_empty());
    assert!(!replay_json(&dir, &["--kind", "perf.task_sched"]).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
}

/// The window a record's RFC 3339 time falls in, for windows of one second: its second.
fn second_of(ts: &str) -> &str {
    ts.split('.').next().expect("a time")
}

#[test]
fn window_summaries_carry_the_perf_aggregates_and_summarize_reproduces_them() {
    if !privileged("window_summaries_carry_the_perf_aggregates_and_summarize_reproduces_them") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(stress) = tool("stress-ng", &["/usr/bin/stress-ng"]) else {
        return;
    };
    let Some(iperf3) = tool("iperf3", &["/usr/bin/iperf3"]) else {
        return;
    };
    let jsonl = std::env::temp_dir().join(format!("perf-summary-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&jsonl);
    let config = format!(
        "{CONFIG}[semantic]\nwindow_ms = 1000\nlateness_ms = 200\njsonl_path = \"{}\"\n",
        jsonl.display()
    );
    let (dir, cfg) = data_dir_and_config("engine-perf-summary", &config);
    let (engine, lines) = start_engine(&cfg, &dir);
    let _guard = KillOnDrop(engine.id());

    // Contention, traffic and direct writes to the real disk, for a few windows.
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut load = Command::new(&stress)
        .args(["--cpu", &(2 * cpus).to_string(), "--timeout", "3", "-q"])
        .stdout(Stdio::null())
        .spawn()
        .expect("stress-ng");
    let _load_guard = KillOnDrop(load.id());
    let port = common::free_port();
    let mut server = Command::new(&iperf3)
        .args(["-s", "-1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 -s");
    let _server_guard = KillOnDrop(server.id());
    assert!(
        common::poll_until(Duration::from_secs(20), || {
            let out = Command::new(&iperf3)
                .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-n", "8M", "-J"])
                .output()
                .expect("iperf3 -c");
            let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            out.status.success() && r["end"]["sum_received"]["bytes"].is_u64()
        }),
        "iperf3 ran"
    );
    // `-1`: the server ends after its one test.
    let _ = server.wait();
    let file = dir.with_extension("dd");
    let dd = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k", "count=64", "oflag=direct"])
        .arg(format!("of={}", file.display()))
        .stderr(Stdio::null())
        .status()
        .expect("dd");
    assert!(dd.success());
    load.wait().expect("stress-ng ends");
    let report = stop_engine(engine, lines);
    assert!(report.contains("semantic: "), "{report}");
    let _ = std::fs::remove_file(&file);

    // Live and offline: the same bytes, perf aggregates included.
    let live = std::fs::read_to_string(&jsonl).expect("the live summary stream");
    let out = Command::new(common::ENGINE)
        .args(["summarize", dir.to_str().unwrap()])
        .output()
        .expect("engine summarize");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        live,
        String::from_utf8_lossy(&out.stdout),
        "live and offline summaries differ"
    );

    // Each window's aggregates are the sums of the interval records that ended in it.
    let windows: Vec<serde_json::Value> = live
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "window")
        .collect();
    let emitted: std::collections::HashSet<String> = windows
        .iter()
        .map(|w| second_of(w["start"].as_str().unwrap()).to_string())
        .collect();
    let in_windows = |kind: &str, field: &str, keep: &dyn Fn(&serde_json::Value) -> bool| {
        replay_json(&dir, &["--kind", kind])
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| emitted.contains(second_of(v["ts"].as_str().unwrap())) && keep(v))
            .map(|v| v[field].as_u64().unwrap())
            .sum::<u64>()
    };
    let sum = |f: &dyn Fn(&serde_json::Value) -> u64| windows.iter().map(f).sum::<u64>();
    let waits = sum(&|w| w["perf"]["runq"]["count"].as_u64().unwrap_or(0));
    assert!(waits > 100, "the contention's waits: {waits}");
    assert_eq!(
        waits,
        in_windows("perf.runq_latency", "count", &|v| v["scope"] == "cpu")
    );
    let cgroup_waits = sum(&|w| {
        let r = &w["perf"]["runq"];
        r["cgroups"].as_array().map_or(0, |c| {
            c.iter().map(|c| c["count"].as_u64().unwrap()).sum::<u64>()
        }) + r["cgroups_other"].as_u64().unwrap_or(0)
            + r["cgroups_overflow"].as_u64().unwrap_or(0)
    });
    assert_eq!(
        cgroup_waits,
        in_windows("perf.runq_latency", "count", &|v| v["scope"] == "cgroup")
    );
    let sent = sum(&|w| w["perf"]["net"]["bytes_sent"].as_u64().unwrap_or(0));
    assert!(sent >= 8 << 20, "iperf3's 8 MiB: {sent}");
    assert_eq!(
        sent,
        in_windows("perf.net_traffic", "bytes_sent", &|_| true)
    );
    let io = sum(&|w| {
        w["perf"]["io"]
            .as_array()
            .map_or(0, |a| a.iter().map(|d| d["count"].as_u64().unwrap()).sum())
    });
    assert!(io >= 64, "dd's 64 direct writes: {io}");
    assert_eq!(io, in_windows("perf.io_latency", "count", &|_| true));
    // stress-ng's workers are among the processes that waited longest for a CPU (named
    // as at their exec: their renames to stress-ng-cpu are not followed).
    assert!(
        windows.iter().any(|w| w["perf"]["sched"]["top_runq"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["comm"] == "stress-ng"))),
        "{live}"
    );
    let _ = std::fs::remove_file(&jsonl);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
}

#[test]
fn run_queue_latency_of_a_container_is_a_metric_labelled_with_its_id() {
    if !privileged("run_queue_latency_of_a_container_is_a_metric_labelled_with_its_id") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(stress) = tool("stress-ng", &["/usr/bin/stress-ng"]) else {
        return;
    };
    let port = common::free_port();
    let config = format!(
        "{CONFIG}[export.metrics]\nlisten = \"127.0.0.1:{port}\"\n[semantic]\nenabled = false\n"
    );
    let (dir, cfg) = data_dir_and_config("engine-runq-container", &config);
    let (engine, lines) = start_engine(&cfg, &dir);
    let _guard = KillOnDrop(engine.id());

    // A shell spinning in a cgroup of docker's shape, against stress-ng on the host.
    let id = common::runtimes::container_id("runq");
    let cgroup = common::runtimes::CgroupPath::make(&format!("/system.slice/docker-{id}.scope"));
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut load = Command::new(&stress)
        .args(["--cpu", &(2 * cpus).to_string(), "--timeout", "4", "-q"])
        .stdout(Stdio::null())
        .spawn()
        .expect("stress-ng");
    let _load_guard = KillOnDrop(load.id());
    let spin = cgroup.run("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done", &[]);
    assert!(spin.status.success(), "{spin:?}");

    // The container's own series, with waits counted, next to the host's.
    let series = |body: &str, label: &str| -> u64 {
        body.lines()
            .find(|l| {
                l.starts_with("kevent_container_runq_latency_seconds_count{")
                    && l.contains(&format!("container=\"{label}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let mut body = String::new();
    assert!(
        common::poll_until(Duration::from_secs(10), || {
            body = common::get(port, "/metrics")
                .map(|r| r.1)
                .unwrap_or_default();
            series(&body, &id) > 0 && series(&body, "host") > 0
        }),
        "the container's and the host's waits: {body}"
    );
    let report = stop_engine(engine, lines);
    assert!(accounting_line(&report).contains("[holds]"), "{report}");
    let _ = load.wait();
    drop(cgroup);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
}
