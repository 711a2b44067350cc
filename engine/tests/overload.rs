//! Overload: a syscall storm far beyond the configured budgets and a small ring. The
//! engine stays up, its memory stays flat, what it could not keep is in-band as loss
//! records, and the accounting identity holds exactly.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    ENGINE, data_dir_and_config, in_band_losses, privileged, rss_kib, signal, spawn_attached,
};

#[test]
fn storm_beyond_budgets_stays_accounted_and_flat() {
    if !privileged("storm_beyond_budgets_stays_accounted_and_flat") {
        return;
    }
    let (dir, cfg) = data_dir_and_config(
        "engine-overload",
        r#"
[capture]
categories = ["syscall", "process"]
syscalls = [110]
ring_bytes = 65536
wakeup_bytes = 16384
[sampling]
interval_ms = 200
bulk_per_sec = 2000
[engine]
status_interval_ms = 0
[storage]
durability = "none"
"#,
    );
    let (mut engine, collected) = spawn_attached(Command::new(ENGINE).args([
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        dir.to_str().unwrap(),
    ]));
    let pid = engine.id();

    // Two storms (one per CPU) for about 4 seconds.
    let storm = "import os, time\nend = time.time() + 4\nn = 0\nwhile time.time() < end:\n    for _ in range(10000): os.getppid()\n    n += 10000\nprint(n)";
    let storms: Vec<_> = (0..2)
        .map(|_| {
            Command::new("python3")
                .args(["-c", storm])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_millis(4200) {
        std::thread::sleep(Duration::from_millis(200));
        samples.push(rss_kib(pid));
    }
    let calls: u64 = storms
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert!(engine.try_wait().unwrap().is_none(), "the engine stayed up");
    let status = signal(&mut engine, libc::SIGINT);
    let err = collected.join().unwrap();
    assert!(status.success(), "engine failed: {err}");
    assert!(err.contains("[holds]"), "accounting identity holds: {err}");

    // Memory flat after warm-up: the hot path allocates nothing per event.
    let warm = &samples[samples.len() / 4..];
    let (lo, hi) = (*warm.iter().min().unwrap(), *warm.iter().max().unwrap());
    assert!(
        hi - lo < 16 * 1024,
        "RSS grew from {lo} to {hi} KiB under load: {samples:?}"
    );

    // The storm was far beyond the budget: most was sampled out or lost, and accounted.
    let line = err.lines().find(|l| l.starts_with("accounting:")).unwrap();
    let num = |key: &str| -> u64 {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.split_whitespace()
            .next()
            .unwrap()
            .trim_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap()
    };
    eprintln!("{line}");
    let (produced, written, sampled) = (num("produced"), num("written"), num("sampled out"));
    assert!(
        produced >= calls,
        "produced {produced} >= {calls} calls made"
    );
    assert!(
        written * 5 < produced,
        "written {written} of {produced}: the budget held"
    );
    assert!(sampled > 0, "{line}");
    if num("ring_full") > 0 {
        let lost = in_band_losses(&dir, "kernel_ring_full");
        assert_eq!(lost, num("ring_full"), "every ring_full drop is in-band");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
}
