//! One engine per data directory: a second engine on a directory in use is refused
//! with a message naming the first one, and touches nothing (the first one's `.open`
//! segments stay as they are, and everything it captured replays once).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn a_second_engine_on_the_same_dir_is_refused_and_changes_nothing() {
    if !privileged("a_second_engine_on_the_same_dir_is_refused_and_changes_nothing") {
        return;
    }
    let (dir, cfg) = data_dir_and_config("engine-lock", PROCESS_CONFIG);
    let args = [
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        dir.to_str().unwrap(),
    ];
    let (mut first, lines) = spawn_attached_lines(Command::new(ENGINE).args(args));
    process_workload();
    // Every stream of the first engine has opened its segment (each core writes its
    // window start marker at once, the enrichment stream its scan): from here on the
    // first engine only appends, so the file list is the first engine's for good.
    assert!(
        poll_until(Duration::from_secs(10), || {
            let streams: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("stream-"))
                .collect();
            !streams.is_empty()
                && streams.iter().all(|s| {
                    std::fs::read_dir(s.path())
                        .unwrap()
                        .flatten()
                        .any(|f| f.path().extension().is_some_and(|e| e == "open"))
                })
        }),
        "the first engine writes an .open segment in every stream"
    );
    let before = segment_files(&dir);

    let second = Command::new(ENGINE)
        .args(args)
        .args(["--duration", "5"])
        .output()
        .expect("second engine");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "the second engine must fail: {err}"
    );
    assert!(
        err.contains("another engine") && err.contains(&format!("pid {}", first.id())),
        "the message names the first engine: {err}"
    );
    assert!(err.contains("engine.lock"), "and the lock file: {err}");
    assert_eq!(
        segment_files(&dir),
        before,
        "the second engine touched no segment"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first engine is still up"
    );

    process_workload();
    let status = signal(&mut first, libc::SIGTERM);
    let report = rest(&lines);
    assert!(status.success(), "first engine: {report}");
    let accounting = accounting_line(&report);
    assert!(accounting.contains("[holds]"), "{accounting}");
    assert_eq!(
        replayed_events(&dir),
        number_after(accounting, "written"),
        "each event captured once: {accounting}"
    );
    assert!(
        segment_files(&dir)
            .iter()
            .all(|p| p.extension().is_some_and(|e| e == "seg")),
        "every segment sealed"
    );
    // Offline tools take no lock and work on a directory an engine holds... and on
    // one nobody holds (the lock file stays, unlocked).
    assert!(dir.join("engine.lock").exists());
    let out = Command::new(ENGINE)
        .args(["inspect", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
}
