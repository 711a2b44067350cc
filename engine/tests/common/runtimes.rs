//! Real containers without a registry: a busybox rootfs (from `busybox-static`), run by
//! `runc` (a bundle made with `runc spec`) and by `podman` (the rootfs imported as an
//! image), and plain cgroup directories with the exact path shapes runtimes make.
//! Every helper panics naming the command and its stderr when a runtime is missing or
//! fails: the enrichment tests need them (`.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Mount points of the file systems of types `fstypes`, from `/proc/self/mountinfo`.
fn mounts_of(fstypes: &[&str]) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            fstypes
                .contains(&fstype)
                .then(|| left.split(' ').nth(4).map(PathBuf::from))?
        })
        .collect()
}

/// The cgroup2 mount on this machine (hybrid hosts: `/sys/fs/cgroup/unified`).
pub fn cgroup2_root() -> PathBuf {
    mounts_of(&["cgroup2"])
        .into_iter()
        .next()
        .expect("cgroup v2 is mounted")
}

/// Every cgroup hierarchy's mount point (v2 and v1).
fn cgroup_roots() -> Vec<PathBuf> {
    mounts_of(&["cgroup", "cgroup2"])
}

/// A fresh 64-hex container id.
pub fn container_id(tag: &str) -> String {
    let seed = format!(
        "{tag}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    );
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::new();
    for round in 0..4u64 {
        for b in seed.bytes().chain(round.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (is it installed? .ci/run installs runc, podman, busybox-static)")
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A busybox root filesystem under `dir/rootfs`.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    assert!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox is missing (apt-get install busybox-static)"
    );
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "cat", "touch", "sleep", "echo", "true"] {
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    rootfs
}

/// Runs `args` in a runc container with id `id` (64 hex: the cgroupfs driver then puts
/// it at `/<id>`), or at `cgroups_path` when given, to completion. `bundle` holds the
/// rootfs (see [`busybox_rootfs`]).
pub fn runc_run(bundle: &Path, id: &str, cgroups_path: Option<&str>, args: &[&str]) -> Output {
    let config = bundle.join("config.json");
    let _ = std::fs::remove_file(&config);
    run(Command::new("runc").arg("spec").current_dir(bundle));
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = args.into();
    spec["root"]["readonly"] = false.into();
    if let Some(p) = cgroups_path {
        spec["linux"]["cgroupsPath"] = p.into();
    }
    std::fs::write(&config, serde_json::to_vec(&spec).unwrap()).unwrap();
    run(Command::new("runc")
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id))
}

/// `podman import` of `rootfs` as `localhost/kev-busybox:test`.
pub fn podman_image(rootfs: &Path) -> &'static str {
    const IMAGE: &str = "localhost/kev-busybox:test";
    let tar = rootfs.with_extension("tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    run(Command::new("podman").arg("import").arg(&tar).arg(IMAGE));
    IMAGE
}

/// Runs `args` in a podman container of `image` to completion; its full id.
pub fn podman_run(image: &str, args: &[&str]) -> String {
    let cid = std::env::temp_dir().join(format!("kev-cid-{}", container_id("cid")));
    // The ulimits: podman's defaults are above what this kind of machine allows.
    run(Command::new("podman")
        .args(["run", "--rm", "--network", "none", "--cidfile"])
        .arg(&cid)
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            image,
        ])
        .args(args));
    let id = std::fs::read_to_string(&cid).expect("podman's cid file");
    let _ = std::fs::remove_file(&cid);
    id.trim().to_string()
}

/// Cgroup directories made for a test under the cgroup2 mount, removed (deepest first)
/// when dropped, also on panic.
#[derive(Debug)]
pub struct CgroupPath {
    made: Vec<PathBuf>,
    pub dir: PathBuf,
}

impl CgroupPath {
    /// Makes every directory of `path` (relative to the cgroup2 mount) that is missing.
    pub fn make(path: &str) -> CgroupPath {
        let root = cgroup2_root();
        let mut made = Vec::new();
        let mut dir = root.clone();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            dir.push(part);
            if !dir.exists() {
                std::fs::create_dir(&dir)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                made.push(dir.clone());
            }
        }
        CgroupPath { made, dir }
    }

    /// Removes, at drop, the directories of `path` that a runtime made, in the cgroup2
    /// hierarchy and in every v1 one (runc removes its leaf, not the slices above it,
    /// and makes them in every hierarchy); only those that do not exist now.
    pub fn adopt(path: &str) -> CgroupPath {
        let mut made = Vec::new();
        for root in cgroup_roots() {
            let mut dir = root;
            for part in path.split('/').filter(|p| !p.is_empty()) {
                dir.push(part);
                if !dir.exists() {
                    made.push(dir.clone());
                }
            }
        }
        CgroupPath {
            made,
            dir: PathBuf::new(),
        }
    }

    /// Runs `sh -c SCRIPT` with the shell first moved into this cgroup (it writes its
    /// own pid into `cgroup.procs`, then runs the script, which may `exec`).
    pub fn run(&self, script: &str, args: &[&str]) -> Output {
        let procs = self.dir.join("cgroup.procs");
        let wrapped = format!("echo $$ > '{}' && {script}", procs.display());
        run(Command::new("/bin/sh")
            .args(["-c", &wrapped, "sh"])
            .args(args))
    }
}

impl Drop for CgroupPath {
    fn drop(&mut self) {
        // Deepest first (the list holds each hierarchy's path top down).
        let mut dirs = self.made.clone();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}
