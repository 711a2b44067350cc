//! The summary stream to NATS JetStream: a real nats-server (-js, loopback) started by
//! each test; three hosts simulated by three engines in UTS namespaces of their own.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    ENGINE, KillOnDrop, data_dir_and_config, free_port, poll_until, privileged,
    spawn_attached_lines, stop_engine,
};

/// A JetStream server on `port`, its store under `store`.
fn nats_server(port: u16, store: &Path) -> Child {
    nats_server_with(port, store, &[])
}

/// [`nats_server`] with more arguments (`--auth TOKEN`).
fn nats_server_with(port: u16, store: &Path, extra: &[&str]) -> Child {
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server (Debian package nats-server)");
    assert!(
        poll_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "nats-server did not listen"
    );
    child
}

/// An engine whose host name is `host` (a UTS namespace of its own), publishing to
/// NATS on `port`.
fn engine_as(
    host: &str,
    port: u16,
    tag: &str,
) -> (PathBuf, Child, std::sync::mpsc::Receiver<String>) {
    engine_as_with(host, port, tag, "")
}

/// [`engine_as`] with more `[export.nats]` keys.
fn engine_as_with(
    host: &str,
    port: u16,
    tag: &str,
    nats_extra: &str,
) -> (PathBuf, Child, std::sync::mpsc::Receiver<String>) {
    let (dir, cfg) = data_dir_and_config(
        &format!("{tag}-{host}"),
        &format!(
            "[engine]\nstatus_interval_ms = 0\n[storage]\ndurability = \"none\"\nflush_interval_ms = 100\n\
             [semantic]\nwindow_ms = 1000\nlateness_ms = 200\n\
             [export.nats]\nurl = \"nats://127.0.0.1:{port}\"\n{nats_extra}"
        ),
    );
    let script = format!(
        "hostname {host} && exec {ENGINE} --config {} --data-dir {}",
        cfg.display(),
        dir.display()
    );
    let (child, lines) =
        spawn_attached_lines(Command::new("unshare").args(["-u", "sh", "-c", &script]));
    (dir, child, lines)
}

/// Every message of stream KEVENT: (subject, payload).
fn stream(port: u16) -> Vec<(String, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream("KEVENT").await.unwrap();
        let state = s.info().await.unwrap().state.clone();
        let mut out = Vec::new();
        for seq in state.first_sequence..=state.last_sequence {
            if let Ok(m) = s.get_raw_message(seq).await {
                out.push((
                    m.subject.to_string(),
                    String::from_utf8_lossy(&m.payload).into_owned(),
                ));
            }
        }
        out
    })
}

/// Runs the engine with `args`; its stdout lines (it must succeed).
fn engine_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new(ENGINE).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn summarize(dir: &Path) -> Vec<String> {
    engine_lines(&["summarize", dir.to_str().unwrap()])
}

/// Lines per host in the stream, and checks that each host's lines are exactly its
/// recording's summary (every line once).
fn check_exactly_once(port: u16, hosts: &[(&str, PathBuf)]) {
    let msgs = stream(port);
    let mut by_host: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (subject, payload) in &msgs {
        let host = subject.split('.').nth(1).unwrap().to_string();
        by_host.entry(host).or_default().push(payload.clone());
    }
    for (host, dir) in hosts {
        let mut want = summarize(dir);
        let mut got = by_host.remove(*host).unwrap_or_default();
        assert!(!want.is_empty(), "{host}: an empty summary");
        want.sort();
        got.sort();
        assert_eq!(
            got, want,
            "{host}: the stream holds its summary lines exactly once"
        );
    }
    assert!(
        by_host.is_empty(),
        "lines of unknown hosts: {:?}",
        by_host.keys()
    );
    for (subject, _) in &msgs {
        let kind = subject.split('.').nth(2).unwrap();
        assert!(
            ["summary", "notable", "correlation"].contains(&kind),
            "{subject}"
        );
    }
}

/// `engine fleet --nats (port) --once ARGS`: its JSON lines.
fn fleet_once(port: u16, args: &[&str]) -> Vec<serde_json::Value> {
    let url = format!("nats://127.0.0.1:{port}");
    // The config's [export.nats] applies (here, its default stream named again).
    let mut all = vec![
        "-o",
        "export.nats.stream=KEVENT",
        "fleet",
        "--nats",
        &url,
        "--once",
    ];
    all.extend_from_slice(args);
    engine_lines(&all)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `engine fleet --once` against the hosts' own summaries: every window of every host
/// is in its fleet window with the same events, and the hosts that had no such window
/// are the missing ones.
fn check_fleet(port: u16, hosts: &[(&str, PathBuf)]) {
    let fleet = fleet_once(port, &[]);
    // start -> host -> events, from the hosts' own summaries.
    let mut want: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (host, dir) in hosts {
        for l in summarize(dir) {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            if v["type"] == "window" {
                let events: u64 = v["kinds"]
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|k| k["events"].as_u64().unwrap())
                    .sum();
                want.entry(v["start"].as_str().unwrap().to_string())
                    .or_default()
                    .insert(host.to_string(), events);
            }
        }
    }
    assert_eq!(fleet.len(), want.len(), "one fleet window per window start");
    for w in &fleet {
        let per_host = &want[w["start"].as_str().unwrap()];
        let got: BTreeMap<String, u64> = w["top_hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["host"].as_str().unwrap().to_string(),
                    h["events"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(&got, per_host, "{w}");
        let missing: Vec<&str> = w["missing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        let expected: Vec<&str> = hosts
            .iter()
            .map(|(h, _)| *h)
            .filter(|h| !per_host.contains_key(*h))
            .collect();
        assert_eq!(missing, expected, "{w}");
    }
    // Regrouped into 5 s fleet windows: aligned starts, and every event still counted.
    let w5 = fleet_once(port, &["--durable", "w5", "--window", "5"]);
    let total: u64 = want.values().flat_map(|h| h.values()).sum();
    assert_eq!(
        w5.iter()
            .map(|w| w["events"].as_u64().unwrap())
            .sum::<u64>(),
        total
    );
    assert!(w5.len() <= fleet.len());
    for w in &w5 {
        let start: jiff::Timestamp = w["start"].as_str().unwrap().parse().unwrap();
        assert_eq!(start.as_nanosecond() % 5_000_000_000, 0, "{w}");
        assert_eq!(w["window_ms"], 5000);
    }
    // The table for people has a row per window.
    let text = Command::new(ENGINE)
        .args([
            "fleet",
            "--nats",
            &format!("nats://127.0.0.1:{port}"),
            "--once",
            "--durable",
            "table",
            "--text",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&text.stdout).lines().count(),
        fleet.len() + 1
    );
}

#[test]
fn three_hosts_publish_every_line_exactly_once_and_backfill_adds_nothing() {
    if !privileged("three_hosts_publish_every_line_exactly_once_and_backfill_adds_nothing") {
        return;
    }
    let port = free_port();
    let store = std::env::temp_dir().join(format!("fleet-js-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&store);
    let mut server = nats_server(port, &store);
    let _kill_server = KillOnDrop(server.id());
    let engines: Vec<_> = ["host-a", "host-b", "host-c"]
        .iter()
        .map(|h| (*h, engine_as(h, port, "fleet")))
        .collect();
    common::process_workload();
    std::thread::sleep(Duration::from_millis(2500));
    let mut hosts = Vec::new();
    for (h, (dir, child, lines)) in engines {
        let report = stop_engine(child, lines);
        assert!(
            report.contains("0 dropped") && !report.contains(" 0 lines acknowledged"),
            "{h}:\n{report}"
        );
        hosts.push((h, dir));
    }
    check_exactly_once(port, &hosts);
    // Backfill of the same recordings: every line is already there (dedup ids).
    for (h, dir) in &hosts {
        let out = Command::new(ENGINE)
            .arg("summarize")
            .arg(dir)
            .arg("--publish")
            .arg(format!("nats://127.0.0.1:{port}"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{h}: {err}");
        let n = summarize(dir).len();
        assert!(
            err.contains(&format!(
                "{n} lines acknowledged ({n} already in the stream), 0 dropped"
            )),
            "{h}: {err}"
        );
    }
    check_exactly_once(port, &hosts);
    check_fleet(port, &hosts);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&store);
    for (_, d) in hosts {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_server_restart_mid_stream_loses_and_duplicates_nothing() {
    if !privileged("a_server_restart_mid_stream_loses_and_duplicates_nothing") {
        return;
    }
    let port = free_port();
    let store = std::env::temp_dir().join(format!("fleet-restart-js-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&store);
    let mut server = nats_server(port, &store);
    let (dir, child, lines) = engine_as("host-r", port, "fleet-restart");
    let _kill = KillOnDrop(child.id());
    std::thread::sleep(Duration::from_millis(2500));
    // Down for a few windows, then back with its store.
    let _ = server.kill();
    let _ = server.wait();
    common::process_workload();
    std::thread::sleep(Duration::from_millis(3000));
    let mut server = nats_server(port, &store);
    let _kill_server = KillOnDrop(server.id());
    std::thread::sleep(Duration::from_millis(3000));
    let report = stop_engine(child, lines);
    assert!(report.contains(", 0 dropped"), "{report}");
    check_exactly_once(port, &[("host-r", dir.clone())]);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreachable_server_costs_the_raw_path_nothing_and_the_drops_are_counted() {
    if !privileged("an_unreachable_server_costs_the_raw_path_nothing_and_the_drops_are_counted") {
        return;
    }
    let port = free_port(); // nothing listens there
    // A small backlog: it fills while the engine runs, and the drops go in-band.
    let (dir, child, lines) = engine_as_with("host-u", port, "fleet-down", "backlog = 16\n");
    let _kill = KillOnDrop(child.id());
    common::process_workload();
    // Long enough for more than 16 lines (windows of 1 s and their notable events).
    std::thread::sleep(Duration::from_millis(4000));
    let started = std::time::Instant::now();
    let report = stop_engine(child, lines);
    // The stop waits for the server at most the drain time.
    assert!(started.elapsed() < Duration::from_secs(30), "{report}");
    assert!(report.contains("[holds]"), "{report}");
    assert!(report.contains("nats: 0 lines acknowledged"), "{report}");
    let lines = summarize(&dir).len();
    assert!(
        report.contains(&format!("{lines} dropped")),
        "every line counted as dropped ({lines}):\n{report}"
    );
    let in_band = common::in_band_losses(&dir, "export_dropped");
    assert!(
        in_band > 0 && in_band <= lines as u64,
        "export_dropped loss records in-band: {in_band} of {lines}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_token_protected_server_takes_the_token_and_the_secret_stays_out_of_the_logs() {
    if !privileged("a_token_protected_server_takes_the_token_and_the_secret_stays_out_of_the_logs")
    {
        return;
    }
    let port = free_port();
    let store = std::env::temp_dir().join(format!("fleet-auth-js-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&store);
    let secret = "t0ken-that-must-not-leak";
    let mut server = nats_server_with(port, &store, &["--auth", secret]);
    let _kill_server = KillOnDrop(server.id());
    let token = std::env::temp_dir().join(format!("fleet-auth-token-{}", std::process::id()));
    std::fs::write(&token, format!("{secret}\n")).unwrap();
    let (dir, child, lines) = engine_as_with(
        "host-t",
        port,
        "fleet-auth",
        &format!("token_file = \"{}\"\n", token.display()),
    );
    let _kill = KillOnDrop(child.id());
    std::thread::sleep(Duration::from_millis(2500));
    let report = stop_engine(child, lines);
    assert!(
        report.contains(", 0 dropped") && !report.contains(" 0 lines acknowledged"),
        "{report}"
    );
    assert!(
        !report.contains(secret),
        "the token is in the engine's output"
    );
    // Without the token the server refuses, and the error says so without a secret.
    let out = Command::new(ENGINE)
        .arg("summarize")
        .arg(&dir)
        .arg("--publish")
        .arg(format!("nats://127.0.0.1:{port}"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "published without the token: {err}");
    assert!(err.to_lowercase().contains("auth"), "{err}");
    assert!(!err.contains(secret));
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&store);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&token);
}
