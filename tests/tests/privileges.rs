//! Without privileges a kernel test skips and says why; under `REQUIRE_BPF=1` it fails.
//! Checked by running this very test binary again as `nobody`.

use std::os::unix::process::CommandExt;
use std::process::Command;

use bpf::Category;
use tests::{Capture, bpf_available};

/// The inner test: does nothing unless started by `unprivileged_runs_skip_or_fail`.
#[test]
fn inner_load_as_unprivileged() {
    if std::env::var_os("PRIVILEGES_INNER").is_none() {
        return;
    }
    if !bpf_available("inner_load_as_unprivileged") {
        return;
    }
    let _ = Capture::start(&[Category::Process], |_| {});
}

/// A copy of this test binary that `nobody` can run wherever the checkout lives (CI may
/// clone under a directory only root can enter).
fn binary_for_nobody() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(tests::unique("privileges-bin"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.join("privileges-test");
    std::fs::copy(std::env::current_exe().expect("test binary path"), &exe).expect("copy");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

fn run_inner_as_nobody(require: bool) -> std::process::Output {
    let exe = binary_for_nobody();
    let mut cmd = Command::new(&exe);
    cmd.args([
        "--exact",
        "inner_load_as_unprivileged",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("PRIVILEGES_INNER", "1")
    .env_remove("REQUIRE_BPF")
    .uid(65534)
    .gid(65534);
    if require {
        cmd.env("REQUIRE_BPF", "1");
    }
    let out = cmd
        .current_dir("/")
        .output()
        .expect("running the test binary as nobody");
    let _ = std::fs::remove_dir_all(exe.parent().unwrap());
    out
}

#[test]
fn unprivileged_runs_skip_or_fail() {
    if !bpf::privileged() {
        eprintln!("SKIPPED unprivileged_runs_skip_or_fail: needs root to switch to nobody");
        assert!(
            std::env::var("REQUIRE_BPF").map_or(true, |v| v != "1"),
            "REQUIRE_BPF=1 but not privileged"
        );
        return;
    }
    let skipped = run_inner_as_nobody(false);
    let err = String::from_utf8_lossy(&skipped.stderr);
    assert!(
        skipped.status.success(),
        "without REQUIRE_BPF the test skips: {err}"
    );
    assert!(
        err.contains("SKIPPED inner_load_as_unprivileged: not privileged"),
        "the skip says why: {err}"
    );

    let failed = run_inner_as_nobody(true);
    let out = String::from_utf8_lossy(&failed.stdout).into_owned()
        + &String::from_utf8_lossy(&failed.stderr);
    assert!(
        !failed.status.success(),
        "under REQUIRE_BPF=1 the test fails: {out}"
    );
    assert!(
        out.contains("REQUIRE_BPF=1 but BPF cannot be loaded: not privileged"),
        "the failure says why: {out}"
    );
}
