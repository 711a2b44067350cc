//! Signals of the main job: SIGHUP seals every stream's segment and carries on,
//! SIGUSR1/SIGUSR2 print the status line, SIGQUIT (like SIGINT and SIGTERM) stops
//! gracefully. None of them loses the tail: every event written replays.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn sealed(dir: &std::path::Path) -> usize {
    segment_files(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .count()
}

#[test]
fn hup_reopens_usr1_reports_quit_stops_and_nothing_is_lost() {
    if !privileged("hup_reopens_usr1_reports_quit_stops_and_nothing_is_lost") {
        return;
    }
    let (dir, cfg) = data_dir_and_config("engine-signals", PROCESS_CONFIG);
    let (mut engine, lines) = spawn_attached_lines(Command::new(ENGINE).args([
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        dir.to_str().unwrap(),
    ]));
    let pid = engine.id() as i32;
    let kill = |sig| {
        // SAFETY: kill with the pid of a child we own and a valid signal.
        unsafe { libc::kill(pid, sig) };
    };
    let mut seen = Vec::new();

    process_workload();
    assert!(
        poll_until(Duration::from_secs(10), || !segment_files(&dir).is_empty()),
        "a segment is being written"
    );
    assert_eq!(sealed(&dir), 0, "nothing sealed before SIGHUP");
    kill(libc::SIGHUP);
    wait_line(&lines, Duration::from_secs(10), &mut seen, |l| {
        l.contains("SIGHUP")
    });
    assert!(
        poll_until(Duration::from_secs(10), || sealed(&dir) >= 1),
        "SIGHUP sealed the current segment: {:?}",
        segment_files(&dir)
    );
    assert!(
        engine.try_wait().unwrap().is_none(),
        "still running after SIGHUP"
    );

    process_workload();
    for sig in [libc::SIGUSR1, libc::SIGUSR2] {
        kill(sig);
        let status = wait_line(&lines, Duration::from_secs(10), &mut seen, |l| {
            l.starts_with("engine: written/s")
        });
        assert!(status.contains("written"), "{status}");
    }
    assert!(
        engine.try_wait().unwrap().is_none(),
        "still running after SIGUSR1/2"
    );
    let sealed_before_stop = sealed(&dir);

    let status = signal(&mut engine, libc::SIGQUIT);
    let report = rest(&lines);
    assert!(
        status.success(),
        "SIGQUIT is a graceful stop: {status:?} {report}"
    );
    let accounting = accounting_line(&report);
    assert!(accounting.contains("[holds]"), "{accounting}");
    let files = segment_files(&dir);
    assert!(
        files
            .iter()
            .all(|p| p.extension().is_some_and(|e| e == "seg")),
        "no segment left unsealed: {files:?}"
    );
    assert!(
        sealed(&dir) > sealed_before_stop,
        "events after SIGHUP went to a new segment: {files:?}"
    );
    let written = number_after(accounting, "written");
    assert!(written >= 40, "both workloads were captured: {accounting}");
    assert_eq!(replayed_events(&dir), written, "the tail was kept");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
}
