//! The library API as a program embedding the engine uses it: start a collector from a
//! preset, subscribe, take enriched events and summaries, stop (segments sealed).

mod common;

use std::time::{Duration, Instant};

use engine::api::Subscription;
use engine::{Collector, Config, Message};

use common::{privileged, segment_files};

#[test]
fn a_program_starts_a_collector_takes_its_events_and_stops_it() {
    if !privileged("a_program_starts_a_collector_takes_its_events_and_stops_it") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("library-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::default();
    config.storage.data_dir = dir.clone();
    config.storage.durability = engine::config::DurabilityMode::None;
    config.semantic.window_ms = 1000;
    config.semantic.lateness_ms = 200;
    config.engine.status_interval_ms = 0;
    let collector = Collector::start(config.clone()).expect("collector starts");

    // A second collector on the same directory is refused, naming the lock.
    let second = Collector::start(config).expect_err("the data directory is taken");
    assert!(second.to_string().contains("lock"), "{second}");

    // A bad subscription names its field.
    let bad = collector
        .subscribe(Subscription {
            kinds: vec!["nope".into()],
            ..Default::default()
        })
        .expect_err("unknown kind");
    assert!(bad.to_string().contains("subscription.kinds"), "{bad}");

    let truebin = std::fs::canonicalize("/bin/true").unwrap();
    let truebin = truebin.to_str().unwrap();
    let execs = collector
        .subscribe(Subscription {
            raw_events: true,
            kinds: vec!["process.exec".into()],
            exes: vec![truebin.into()],
            ..Default::default()
        })
        .unwrap();
    let summaries = collector
        .subscribe(Subscription {
            summaries: true,
            ..Default::default()
        })
        .unwrap();
    let pids: Vec<u32> = (0..5)
        .map(|_| {
            let mut c = std::process::Command::new(truebin).spawn().unwrap();
            let pid = c.id();
            c.wait().unwrap();
            pid
        })
        .collect();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < pids.len() && Instant::now() < deadline {
        match execs.recv_timeout(Duration::from_millis(500)) {
            Some(Message::Events(batch)) => got.extend(batch),
            Some(Message::Dropped(d)) => panic!("dropped: {d:?}"),
            _ => {}
        }
    }
    let mut got_pids: Vec<u32> = got.iter().map(|e| e.pid).collect();
    got_pids.sort_unstable();
    let mut want = pids.clone();
    want.sort_unstable();
    assert_eq!(got_pids, want, "{got:?}");
    assert!(
        got.iter()
            .all(|e| e.kind == "process.exec" && e.exe == truebin)
    );
    // Enriched: the user name is in the event's JSON.
    assert!(
        got.iter().all(|e| e.json.contains("\"user\":\"root\"")),
        "{got:?}"
    );

    let mut window = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while window.is_none() && Instant::now() < deadline {
        if let Some(Message::Summary(s)) = summaries.recv_timeout(Duration::from_millis(500)) {
            window = Some(s);
        }
    }
    let window = window.expect("a window summary");
    let v: serde_json::Value = serde_json::from_str(&window.json).unwrap();
    assert_eq!(v["type"], "window");

    let report = collector.stop().expect("stops");
    assert!(report.accounted(), "{report}");
    assert!(report.written() > 0, "{report}");
    // Sealed: no segment is left open.
    let files = segment_files(&dir);
    assert!(!files.is_empty());
    assert!(
        files
            .iter()
            .all(|f| f.extension().is_some_and(|e| e == "seg")),
        "{files:?}"
    );
    // The subscriber still reads what was queued, then the stream ends.
    while summaries.recv_timeout(Duration::from_millis(100)).is_some() {}
    let _ = std::fs::remove_dir_all(&dir);
}
