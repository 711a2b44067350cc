//! Storage failing under load: a full disk (a small tmpfs) and a data directory that
//! turns read-only (a read-only bind mount) while the engine runs. The engine stays up
//! and says so on its status line, counts as written only what is on disk (replay
//! reads back exactly that many), counts the rest as storage drops (the identity holds),
//! resumes by itself when space (or write access) comes back, and writes the outage
//! in-band as loss records.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;

fn mount(source: &Path, target: &Path, fstype: Option<&str>, flags: u64, data: &str) -> bool {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
    let (src, dst) = (c(source), c(target));
    let fstype = fstype.map(|f| CString::new(f).unwrap());
    let data = CString::new(data).unwrap();
    // SAFETY: valid NUL-terminated strings (or null for the type) for the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            data.as_ptr().cast(),
        )
    };
    rc == 0
}

/// A mount point that is detached when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let target = CString::new(self.0.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

fn tmpfs(at: &Path, size: &str) -> Mounted {
    std::fs::create_dir_all(at).unwrap();
    assert!(
        mount(
            Path::new("tmpfs"),
            at,
            Some("tmpfs"),
            0,
            &format!("size={size}")
        ),
        "mounting a tmpfs at {}: {}",
        at.display(),
        std::io::Error::last_os_error()
    );
    Mounted(at.to_path_buf())
}

/// Only this test's storm is kept (tests run in parallel and getppid is system-wide).
fn config(storm_comm: &str) -> String {
    format!("[filter]\ncomms = [\"{storm_comm}*\"]\n{CONFIG}")
}

const CONFIG: &str = r#"
[capture]
categories = ["syscall"]
syscalls = [110]
syscall_results = false
[sampling]
bulk_per_sec = 0
[engine]
status_interval_ms = 200
[storage]
durability = "none"
flush_interval_ms = 100
block_bytes = 65536
segment_bytes_max = 262144
zstd_level = 1
"#;

/// getppid() in a loop for `secs` seconds, in the background, as command `comm` (python3
/// through a symlink of that name).
fn storm(comm: &str, secs: f64) -> Child {
    let code = format!(
        "import os, time\nend = time.time() + {secs}\nwhile time.time() < end:\n    for _ in range(5000): os.getppid()\n"
    );
    let exe = std::env::temp_dir().join(format!("{comm}-{}", std::process::id()));
    if !exe.exists() {
        let python = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3");
        let python = String::from_utf8(python.stdout).unwrap();
        std::os::unix::fs::symlink(python.trim(), &exe).expect("symlink");
    }
    Command::new(&exe)
        .args(["-c", &code])
        .stdout(Stdio::null())
        .spawn()
        .expect("python3")
}

/// Storms until a status line says storage stopped (within `timeout`); returns it.
fn storm_until_stopped(comm: &str, lines: &Receiver<String>, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "storage never stopped: {:?}",
            &seen[seen.len().saturating_sub(10)..]
        );
        let mut s = storm(comm, 0.5);
        s.wait().unwrap();
        while let Ok(l) = lines.try_recv() {
            if l.contains("STORAGE STOPPED") {
                return l;
            }
            seen.push(l);
        }
    }
}

/// Starts the engine on `dir` with config file `cfg`; it is killed if the test fails.
fn start(cfg: &Path, dir: &Path) -> (Child, Receiver<String>, KillOnDrop) {
    let (engine, lines) = spawn_attached_lines(Command::new(ENGINE).args([
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        dir.to_str().unwrap(),
    ]));
    let guard = KillOnDrop(engine.id());
    (engine, lines, guard)
}

/// After storage came back: waits for the resume, runs a last storm, stops the engine,
/// and checks that every storage drop is in-band.
fn resume_and_stop(
    comm: &str,
    engine: &mut Child,
    lines: &Receiver<String>,
    seen: &mut Vec<String>,
    dir: &Path,
) {
    wait_line(lines, Duration::from_secs(20), seen, |l| {
        l.contains("storage resumed")
    });
    // Every stream retries on its own clock: wait for a status line with none stopped.
    wait_line(lines, Duration::from_secs(20), seen, |l| {
        l.starts_with("engine: written/s") && !l.contains("STORAGE STOPPED")
    });
    storm(comm, 0.3).wait().unwrap();
    let out = stop(engine, lines, dir);
    assert!(out.written > 0);
    assert_eq!(
        in_band_losses(dir, "storage_error"),
        out.storage,
        "every storage drop is in-band after the resume: {}",
        out.report
    );
}

struct Outcome {
    report: String,
    written: u64,
    storage: u64,
}

fn stop(engine: &mut Child, lines: &Receiver<String>, dir: &Path) -> Outcome {
    let status = signal(engine, libc::SIGINT);
    let report = rest(lines);
    assert_eq!(
        status.code(),
        Some(1),
        "storage dropped events: exit 1: {report}"
    );
    assert!(report.contains("storage failed"), "{report}");
    let accounting = accounting_line(&report);
    assert!(accounting.contains("[holds]"), "{accounting}");
    let written = number_after(accounting, "written");
    let storage = number_after(accounting, "storage");
    assert!(storage > 0, "{accounting}");
    assert_eq!(
        replayed_events(dir),
        written,
        "written means on disk: {accounting}"
    );
    Outcome {
        report,
        written,
        storage,
    }
}

#[test]
fn a_full_disk_is_shown_counted_exactly_and_survived() {
    if !privileged("a_full_disk_is_shown_counted_exactly_and_survived") {
        return;
    }
    let comm = "kev-full-storm";
    let (base, cfg) = data_dir_and_config("engine-diskfull", &config(comm));
    let _mount = tmpfs(&base, "4m");
    // Most of the space taken by a filler the test frees later.
    let filler = base.join("filler");
    std::fs::write(&filler, vec![1u8; (4 << 20) - (160 << 10)]).unwrap();
    let dir = base.join("data");
    let (mut engine, lines, _guard) = start(&cfg, &dir);
    let mut seen = Vec::new();
    let stopped = storm_until_stopped(comm, &lines, &mut seen);
    assert!(
        stopped.to_lowercase().contains("full"),
        "names the cause: {stopped}"
    );
    assert!(engine.try_wait().unwrap().is_none(), "the engine stays up");

    // Space comes back: the stream resumes by itself.
    std::fs::remove_file(&filler).unwrap();
    resume_and_stop(comm, &mut engine, &lines, &mut seen, &dir);
    drop(_mount);
    let _ = std::fs::remove_dir_all(&base);
    let _ = std::fs::remove_file(&cfg);
}

#[test]
fn a_data_dir_turning_read_only_is_shown_counted_exactly_and_survived() {
    if !privileged("a_data_dir_turning_read_only_is_shown_counted_exactly_and_survived") {
        return;
    }
    let comm = "kev-ro-storm";
    let (base, cfg) = data_dir_and_config("engine-readonly", &config(comm));
    let _tmp = tmpfs(&base, "64m");
    let dir = base.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    // A bind mount of the data dir onto itself, so it can be remounted read-only alone.
    assert!(mount(&dir, &dir, None, libc::MS_BIND, ""), "bind mount");
    let bind = Mounted(dir.clone());
    let (mut engine, lines, _guard) = start(&cfg, &dir);
    let mut seen = Vec::new();
    storm(comm, 0.3).wait().unwrap();
    // Seal every open segment (SIGHUP; no file is then open for writing), then make the
    // directory read-only: the next segment cannot be created. The cores may still be
    // draining the storm's backlog into a new segment after a SIGHUP, so repeat until the
    // remount takes.
    let pid = engine.id() as i32;
    let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
    assert!(
        poll_until(Duration::from_secs(20), || {
            // SAFETY: kill with the pid of a child we own.
            unsafe { libc::kill(pid, libc::SIGHUP) };
            std::thread::sleep(Duration::from_millis(100));
            mount(&dir, &dir, None, ro, "")
        }),
        "remount read-only: {}",
        std::io::Error::last_os_error()
    );
    let stopped = storm_until_stopped(comm, &lines, &mut seen);
    assert!(
        stopped.to_lowercase().contains("read-only"),
        "names the cause: {stopped}"
    );
    assert!(engine.try_wait().unwrap().is_none(), "the engine stays up");
    // While it stays read-only, retries (every 5 s) must not claim a resume: opening
    // storage again is not enough, the outage's loss records must reach the disk.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        storm(comm, 0.5).wait().unwrap();
        while let Ok(l) = lines.try_recv() {
            assert!(
                !l.contains("storage resumed"),
                "resumed while read-only: {l}"
            );
            seen.push(l);
        }
    }
    assert!(
        mount(&dir, &dir, None, libc::MS_BIND | libc::MS_REMOUNT, ""),
        "remount read-write"
    );
    resume_and_stop(comm, &mut engine, &lines, &mut seen, &dir);
    drop(bind);
    drop(_tmp);
    let _ = std::fs::remove_dir_all(&base);
    let _ = std::fs::remove_file(&cfg);
}
