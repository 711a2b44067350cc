//! The engine killed with SIGKILL mid-run, started again on the same directory: the
//! segments it left unsealed are recovered, and replay returns every complete block.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{ENGINE, data_dir_and_config, privileged, signal, spawn_attached};

/// Records in the complete blocks of every segment file, by file name.
fn complete_records(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for s in std::fs::read_dir(dir).unwrap() {
        let s = s.unwrap().path();
        if !s.is_dir() {
            continue; // engine.lock
        }
        for f in std::fs::read_dir(&s).unwrap() {
            let f = f.unwrap().path();
            let Ok(seg) = storage::Segment::open_scan(&f) else {
                continue;
            };
            let n: u64 = seg.blocks().iter().map(|b| b.count as u64).sum();
            let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
            out.insert(
                format!("{}/{stem}", s.file_name().unwrap().to_string_lossy()),
                n,
            );
        }
    }
    out
}

#[test]
fn sigkill_then_restart_recovers_every_complete_block() {
    if !privileged("sigkill_then_restart_recovers_every_complete_block") {
        return;
    }
    let (dir, cfg) = data_dir_and_config(
        "engine-crash",
        "[storage]\nflush_interval_ms = 100\nblock_bytes = 65536\n[engine]\nstatus_interval_ms = 0\n",
    );
    let tag = format!("engine-crash-{}", std::process::id());
    let run_args = [
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        dir.to_str().unwrap(),
    ];
    let (mut engine, stderr) = spawn_attached(Command::new(ENGINE).args(run_args));
    // A steady trickle of events for a while, with a marker early on.
    let marker = std::env::temp_dir().join(format!("{tag}-marker"));
    std::fs::write(&marker, b"x").ok();
    let status = Command::new("/bin/sh")
        .args([
            "-c",
            &format!(
                "touch {0}; for i in $(seq 200); do cat /etc/hostname > /dev/null; done",
                marker.display()
            ),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    // Wait (with a deadline) until the trickle's blocks reached the files.
    common::poll_until(Duration::from_secs(10), || {
        complete_records(&dir).values().sum::<u64>() > 0
    });
    signal(&mut engine, libc::SIGKILL);
    drop(stderr);

    let before = complete_records(&dir);
    let kept: u64 = before.values().sum();
    assert!(kept > 0, "blocks were flushed before the kill: {before:?}");
    let unsealed = common::segment_files(&dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "open"))
        .count();
    assert!(unsealed > 0, "the kill left unsealed segments");

    // Restart: recovery runs and is reported; the second run stops cleanly.
    let out = Command::new(ENGINE)
        .args(run_args)
        .args(["--duration", "1", "--quiet"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("recovered"), "recovery reported: {err}");
    let after = complete_records(&dir);
    for (name, n) in &before {
        assert_eq!(
            after.get(name),
            Some(n),
            "{name}: every complete block kept by recovery"
        );
    }
    let v = Command::new(ENGINE)
        .args(["verify", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "all sound after recovery: {}",
        String::from_utf8_lossy(&v.stdout)
    );

    // Replay returns every record of the complete blocks, the marker among them.
    let out = Command::new(ENGINE)
        .args(["replay", dir.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    // Every stored event and loss record; the enrichment stream's table records are
    // applied, not printed.
    let total: u64 = after
        .iter()
        .filter(|(name, _)| !name.starts_with("stream-1000000/"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        after.keys().any(|name| name.starts_with("stream-1000000/")),
        "the enrichment stream was recovered too: {after:?}"
    );
    // Window markers (the semantic path's, kind 61) are not printed either.
    let mut markers = 0u64;
    let mut r = storage::Reader::open(
        &dir,
        &storage::ReadOptions {
            kinds: Some(vec![61]),
            ..storage::ReadOptions::default()
        },
    )
    .unwrap();
    while r.next_record().unwrap().is_some() {
        markers += 1;
    }
    assert!(markers > 0, "each core marks its windows");
    assert_eq!(
        text.lines().count() as u64,
        total - markers,
        "replay returns every stored record"
    );
    assert!(
        text.contains(&marker.display().to_string()),
        "the marker's open survived"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
    let _ = std::fs::remove_file(&marker);
}
