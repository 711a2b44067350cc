//! `engine top` in a real terminal (tmux), against a running engine and a workload: the
//! view fills in (events/s by kind, the cores with their ring fill and sampling, the
//! workload among the top processes, the host among the containers, its notable events,
//! the drops), and `q` quits it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    ENGINE, KillOnDrop, data_dir_and_config, free_port, poll_until, privileged, start_engine,
    stop_engine,
};

/// Opens a file in a loop for a few seconds under the name `kevtopwork`, and makes a
/// privileged call (a notable capability check) each round.
const WORKLOAD: &str = r#"
import ctypes, os, time
ctypes.CDLL(None).prctl(15, b"kevtopwork", 0, 0, 0)
end = time.time() + 6
while time.time() < end:
    for _ in range(200):
        open("/etc/hostname").close()
    os.setuid(0)
    time.sleep(0.05)
"#;

fn tmux(args: &[&str]) -> std::process::Output {
    Command::new("tmux").args(args).output().expect("tmux")
}

#[test]
fn top_shows_the_machine_live_in_a_terminal_and_q_quits() {
    if !privileged("top_shows_the_machine_live_in_a_terminal_and_q_quits") {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var("REQUIRE_BPF").map_or(true, |v| v != "1"),
            "tmux is not installed (REQUIRE_BPF=1)"
        );
        eprintln!("skipping: no tmux");
        return;
    }
    let port = free_port();
    let (dir, cfg) = data_dir_and_config(
        "top",
        &format!(
            "[semantic]\nwindow_ms = 1000\nlateness_ms = 200\n[export.grpc]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    let (engine, lines) = start_engine(&cfg, &dir);
    let _kill = KillOnDrop(engine.id());

    // The view in a terminal of 200 x 50; --config names the endpoint.
    let session = format!("kevtop-{}", std::process::id());
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "200",
        "-y",
        "50",
        &format!("{ENGINE} --config {} top", cfg.display()),
    ]);
    assert!(out.status.success(), "{out:?}");
    let mut work = Command::new("python3")
        .args(["-c", WORKLOAD])
        .spawn()
        .expect("python3");
    let _work_guard = KillOnDrop(work.id());
    let pid = work.id().to_string();

    let mut screen = String::new();
    let shown = poll_until(Duration::from_secs(30), || {
        screen = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout)
            .into_owned();
        let procs = screen
            .lines()
            .any(|l| l.contains(&format!("{pid} kevtopwork")));
        let notable = screen
            .lines()
            .any(|l| l.contains("security.") && l.contains(&format!("{pid} kevtopwork")));
        screen.contains("engine top: ")
            && screen.contains("file.open")
            && procs
            && notable
            && screen.contains("host")
    });
    assert!(shown, "the view:\n{screen}");
    for panel in [
        "Events by kind",
        "Cores (sampling in force)",
        "ring fill",
        "Top processes",
        "Top containers",
        "Drops by reason",
        "Notable events",
    ] {
        assert!(screen.contains(panel), "{panel}:\n{screen}");
    }
    // The cores' rows: core 0 on its CPU, a fill percentage, the sampling in force.
    assert!(
        screen
            .lines()
            .any(|l| l.contains("│0 ") && l.contains('%') && l.contains("1/1/1")),
        "{screen}"
    );
    // The workload's file.open rate is a number.
    let rate = screen
        .lines()
        .find(|l| l.contains("│file.open"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .and_then(|r| r.parse::<f64>().ok());
    assert!(rate.is_some_and(|r| r > 0.0), "{screen}");

    // q quits: the session (whose only program is top) ends.
    assert!(tmux(&["send-keys", "-t", &session, "q"]).status.success());
    assert!(
        poll_until(Duration::from_secs(10), || {
            !tmux(&["has-session", "-t", &session]).status.success()
        }),
        "top still running after q"
    );
    let _ = work.wait();
    let report = stop_engine(engine, lines);
    assert!(report.contains("accounting:"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
}

#[test]
fn top_without_an_endpoint_says_how_to_give_one() {
    let out = Command::new(ENGINE)
        .arg("top")
        .output()
        .expect("engine top");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--endpoint") && err.contains("export.grpc.listen"),
        "{err}"
    );
}
