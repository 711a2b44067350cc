//! Helpers shared by the engine's integration tests.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

pub const ENGINE: &str = env!("CARGO_BIN_EXE_engine");

/// True when BPF can be loaded; otherwise fails under `REQUIRE_BPF=1`, else says why it
/// skips.
pub fn privileged(test: &str) -> bool {
    if bpf::privileged() {
        return true;
    }
    assert!(
        std::env::var("REQUIRE_BPF").map_or(true, |v| v != "1"),
        "{test}: REQUIRE_BPF=1 but not privileged"
    );
    eprintln!("SKIPPED {test}: needs root (set REQUIRE_BPF=1 to make this a failure)");
    false
}

/// Spawns `cmd` (an engine run) with stderr piped, waits until its programs are
/// attached, and keeps collecting the rest of stderr (returned by the handle).
pub fn spawn_attached(cmd: &mut Command) -> (Child, JoinHandle<String>) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("starting engine");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line).expect("engine stderr") == 0 {
            panic!("engine exited before attaching: {:?}", child.wait());
        }
        if line.contains("attached") {
            break;
        }
    }
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut rest);
        rest
    });
    (child, rest)
}

/// Sends `sig` to `child` and waits for it.
pub fn signal(child: &mut Child, sig: i32) -> std::process::ExitStatus {
    // SAFETY: kill with the pid of a child we own and a valid signal.
    unsafe { libc::kill(child.id() as i32, sig) };
    child.wait().expect("waiting for engine")
}

/// A fresh data directory `<tmp>/<tag>-<pid>-data` and the config `toml` written to
/// `<tmp>/<tag>-<pid>.toml`; runs pass the directory with `--data-dir`.
pub fn data_dir_and_config(tag: &str, toml: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let tag = format!("{tag}-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("{tag}-data"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("data dir");
    let cfg = std::env::temp_dir().join(format!("{tag}.toml"));
    std::fs::write(&cfg, toml).expect("config");
    (dir, cfg)
}
