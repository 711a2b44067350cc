//! The `engine` binary from the outside: bad input gets one clear message and a
//! non-zero exit, never a panic.

use std::os::unix::process::CommandExt;
use std::process::Command;

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");

fn fails_with(args: &[&str], message: &str) -> String {
    let out = Command::new(ENGINE)
        .args(args)
        .output()
        .expect("running engine");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "engine {args:?} succeeded");
    assert!(
        err.contains(message),
        "engine {args:?}: expected {message:?} in:\n{err}"
    );
    assert!(
        !err.contains("panicked"),
        "engine {args:?} panicked:\n{err}"
    );
    err
}

fn temp(name: &str, content: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("engine-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn bad_arguments_are_named() {
    fails_with(
        &["--duration=-1"],
        "--duration: -1 is not a positive number",
    );
    fails_with(&["--no-such-flag"], "unexpected argument '--no-such-flag'");
    fails_with(
        &["replay", "/nonexistent/dir"],
        "/nonexistent/dir: no such directory",
    );
    fails_with(&["inspect", "/nonexistent/dir"], "no such directory");
    let dir = std::env::temp_dir();
    fails_with(
        &["replay", dir.to_str().unwrap(), "--from", "yesterday"],
        "--from: \"yesterday\" is not RFC 3339",
    );
    fails_with(
        &["replay", dir.to_str().unwrap(), "--kind", "process.exce"],
        "unknown kind",
    );
    fails_with(
        &["tail", "--categories", "process,bogus"],
        "unknown category \"bogus\"",
    );
}

#[test]
fn bad_configs_are_named_with_every_problem() {
    let missing = "/nonexistent/engine.toml";
    fails_with(&["--config", missing], missing);
    fails_with(&["validate", missing], "No such file");

    let unknown = temp("unknown.toml", "[capture]\nring_byts = 4096\n");
    let err = fails_with(&["--config", unknown.to_str().unwrap()], "ring_byts");
    assert!(err.contains("unknown.toml"), "{err}");

    let invalid = temp(
        "invalid.toml",
        "[capture]\nring_bytes = 1000\ncategories = [\"bogus\"]\n[storage]\ndurability = \"sometimes\"\n",
    );
    for cmd in [vec!["--config"], vec!["validate"]] {
        let mut args = cmd.clone();
        args.push(invalid.to_str().unwrap());
        let err = fails_with(&args, "4 problem(s)");
        for key in [
            "capture.ring_bytes",
            "capture.wakeup_bytes",
            "capture.categories",
            "storage.durability",
        ] {
            assert!(err.contains(key), "{err}");
        }
    }

    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/security.toml");
    let out = Command::new(ENGINE)
        .args(["validate", good])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn a_missing_data_directory_is_named() {
    let cfg = temp(
        "nodir.toml",
        "[storage]\ndata_dir = \"/nonexistent/kevent-data\"\ncreate_data_dir = false\n",
    );
    fails_with(
        &["--config", cfg.to_str().unwrap(), "--duration", "1"],
        "storage.data_dir /nonexistent/kevent-data: no such directory",
    );
    let file = temp("plainfile", "x");
    fails_with(
        &["--data-dir", file.to_str().unwrap(), "--duration", "1"],
        "exists but is not a directory",
    );
}

fn privileged() -> bool {
    if bpf::privileged() {
        return true;
    }
    assert!(
        std::env::var("REQUIRE_BPF").map_or(true, |v| v != "1"),
        "REQUIRE_BPF=1 but not privileged"
    );
    eprintln!("SKIPPED: needs root (set REQUIRE_BPF=1 to make this a failure)");
    false
}

#[test]
fn unprivileged_run_says_what_is_missing() {
    if !privileged() {
        return;
    }
    // A copy nobody can run wherever the checkout lives (CI may clone under a directory
    // only root can enter), and a data directory nobody may use.
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("engine-cli-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let exe = dir.join("engine");
    std::fs::copy(ENGINE, &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&exe)
        .args(["--duration", "1", "--data-dir"])
        .arg(&dir)
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("running engine as nobody");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("not privileged to load BPF programs: need root, or CAP_BPF + CAP_PERFMON"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
