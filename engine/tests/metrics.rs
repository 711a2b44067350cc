//! The metrics endpoint scraped by a real Prometheus (the Debian package, started by
//! the test on loopback ports), and its text checked by `promtool check metrics`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    KillOnDrop, data_dir_and_config, free_port, get, poll_until, privileged, start_engine,
    stop_engine,
};
use serde_json::Value;

/// The result vector of a Prometheus instant query.
fn query(port: u16, q: &str) -> Vec<Value> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let Some((status, body)) = get(port, &format!("/api/v1/query?query={enc}")) else {
        return Vec::new();
    };
    if !status.contains("200") {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn prometheus_scrapes_the_engine_and_finds_its_series() {
    if !privileged("prometheus_scrapes_the_engine_and_finds_its_series") {
        return;
    }
    let (mport, pport) = (free_port(), free_port());
    let (dir, cfg) = data_dir_and_config(
        "metrics",
        &format!(
            "[engine]\nstatus_interval_ms = 200\n[storage]\ndurability = \"none\"\nflush_interval_ms = 100\n\
             [semantic]\nwindow_ms = 1000\nlateness_ms = 200\n[export.metrics]\nlisten = \"127.0.0.1:{mport}\"\n"
        ),
    );
    let (engine, lines) = start_engine(&cfg, &dir);
    let _kill = KillOnDrop(engine.id());

    // Our own scrape: the OpenMetrics text, which promtool accepts.
    assert!(poll_until(Duration::from_secs(10), || get(
        mport, "/metrics"
    )
    .is_some_and(|(_, b)| b.contains("kevent_events_written_total"))));
    let (status, body) = get(mport, "/metrics").unwrap();
    assert!(status.contains("200"), "{status}");
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    assert!(get(mport, "/other").unwrap().0.contains("404"));
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.replace("# EOF\n", "").as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    // It parses (exit 1 is a parse error), and the only lint it reports is OpenMetrics'
    // HELP of a counter given without `_total` (Prometheus's text format puts it on the
    // sample name).
    let lint =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(1)
            && lint
                .lines()
                .filter(|l| !l.trim().is_empty())
                .all(|l| l.ends_with("_total no help text")),
        "promtool check metrics:\n{lint}\n{body}"
    );
    // No pid or path labels: every label is one of a bounded few (`hook`: one per kind,
    // from the collector's fixed list of hooks).
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        if let Some((_, labels)) = line.split_once('{') {
            for kv in labels.split("\",") {
                let key = kv.split('=').next().unwrap().trim_start_matches(',');
                assert!(
                    [
                        "kind", "reason", "core", "class", "le", "version", "abi", "host", "hook"
                    ]
                    .contains(&key),
                    "unexpected label {key:?} in {line}"
                );
            }
        }
    }

    // A real Prometheus scraping us every second.
    let tsdb = std::env::temp_dir().join(format!("metrics-tsdb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tsdb);
    let pcfg = std::env::temp_dir().join(format!("metrics-prometheus-{}.yml", std::process::id()));
    std::fs::write(
        &pcfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: kevent\n    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n"
        ),
    )
    .unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", pcfg.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus)");
    let _kill_prom = KillOnDrop(prom.id());
    common::process_workload();
    assert!(
        poll_until(Duration::from_secs(60), || {
            query(pport, "up{job=\"kevent\"}")
                .first()
                .is_some_and(|s| value(s) == 1.0)
                && query(pport, "sum(kevent_events_written_total)")
                    .first()
                    .is_some_and(|s| value(s) > 0.0)
        }),
        "Prometheus did not scrape the engine's written events"
    );
    let fill = query(pport, "kevent_ring_fill_ratio");
    assert!(
        !fill.is_empty() && fill.iter().all(|s| (0.0..=1.0).contains(&value(s))),
        "{fill:?}"
    );
    let sampling = query(pport, "kevent_sampling_one_in");
    assert!(
        !sampling.is_empty() && sampling.iter().all(|s| value(s) >= 1.0),
        "{sampling:?}"
    );
    let execs = query(pport, "kevent_events_written_total{kind=\"process.exec\"}");
    assert!(execs.first().is_some_and(|s| value(s) >= 1.0), "{execs:?}");
    assert!(poll_until(Duration::from_secs(30), || {
        query(pport, "kevent_event_age_seconds_count")
            .first()
            .is_some_and(|s| value(s) > 0.0)
            && query(pport, "kevent_semantic_windows_total")
                .first()
                .is_some_and(|s| value(s) >= 1.0)
    }));
    let p99 = query(
        pport,
        "histogram_quantile(0.99, kevent_event_age_seconds_bucket)",
    );
    assert!(
        p99.first()
            .is_some_and(|s| value(s) > 0.0 && value(s) < 60.0),
        "{p99:?}"
    );
    let tables = query(pport, "kevent_process_table_entries");
    assert!(tables.first().is_some_and(|s| value(s) > 1.0), "{tables:?}");

    stop_engine(engine, lines);
    let _ = prom.kill();
    let _ = prom.wait();
    let _ = std::fs::remove_dir_all(&tsdb);
    let _ = std::fs::remove_file(&pcfg);
    let _ = std::fs::remove_dir_all(&dir);
}
