//! Absolute paths resolved in the kernel (bpf/c/path.bpf.h) on the real kernel: relative
//! names joined to the cwd or to a dirfd, walks across mount points (tmpfs, bind
//! mounts), cut paths flagged as truncated, and the absolute executable of an exec.

use std::path::{Path, PathBuf};
use std::process::Command;

use bpf::abi::{FLAG_TRUNCATED, PATH_MAX_LEN};
use bpf::{Category, Event, Kind};
use tests::{Capture, Workload, bpf_available, payload, text, unique};

/// A fresh directory under the temp dir, canonical (no symlinks), removed on drop after
/// unmounting whatever the test mounted inside it.
struct TempDir {
    path: PathBuf,
    mounts: Vec<PathBuf>,
}

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir(&path).expect("creating the temp dir");
        let path = path.canonicalize().expect("canonical temp dir");
        TempDir {
            path,
            mounts: Vec::new(),
        }
    }

    fn sub(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).expect("creating a directory");
        p
    }

    /// `mount args... target`, undone on drop (innermost first).
    fn mount(&mut self, args: &[&str], target: &Path) {
        let status = Command::new("mount")
            .args(args)
            .arg(target)
            .status()
            .expect("running mount");
        assert!(status.success(), "mount {args:?} {}", target.display());
        self.mounts.push(target.to_path_buf());
    }

    fn s(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg(m).status();
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn op_path(e: &Event<'_>) -> String {
    let p = payload!(e, FileOp);
    text(&p.path, p.path_len)
}

/// The file.* event of `kind` from `pid` whose path is `path`, or a panic listing what
/// was seen instead.
fn find_op<'a>(cap: &'a Capture, kind: Kind, pid: u32, path: &str) -> Event<'a> {
    cap.of_pid(kind, pid)
        .find(|e| op_path(e) == path)
        .unwrap_or_else(|| {
            let seen: Vec<String> = cap.of_pid(kind, pid).map(|e| op_path(&e)).collect();
            panic!("{kind:?} of {path}; seen: {seen:#?}")
        })
}

fn renames(cap: &Capture, pid: u32) -> Vec<(String, String)> {
    cap.of_pid(Kind::FileRename, pid)
        .map(|e| {
            let r = payload!(e, FileRename);
            (
                text(&r.old_path, r.old_path_len),
                text(&r.new_path, r.new_path_len),
            )
        })
        .collect()
}

#[test]
fn relative_names_resolve_against_cwd_and_dirfd() {
    if !bpf_available("relative_names_resolve_against_cwd_and_dirfd") {
        return;
    }
    let tmp = TempDir::new("paths-rel");
    let cwd = tmp.sub("cwd");
    let other = tmp.sub("other");
    let script = r#"
import os, sys
cwd, other = sys.argv[1:3]
os.chdir(cwd)
# AT_FDCWD: open (created), failed open, rename, chmod, unlink, all relative.
fd = os.open("rel-a", os.O_CREAT | os.O_WRONLY, 0o600)
os.close(fd)
try:
    os.open("rel-missing", os.O_RDONLY)
except FileNotFoundError:
    pass
os.rename("rel-a", "rel-b")
os.chmod("rel-b", 0o640)
os.unlink("rel-b")
# A dirfd of another directory.
d = os.open(other, os.O_RDONLY | os.O_DIRECTORY)
fd = os.open("in-other", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=d)
os.close(fd)
try:
    os.open("other-missing", os.O_RDONLY, dir_fd=d)
except FileNotFoundError:
    pass
os.rename("in-other", "renamed", src_dir_fd=d, dst_dir_fd=d)
os.chmod("renamed", 0o600, dir_fd=d)
os.unlink("renamed", dir_fd=d)
# Mixed: from the cwd into the dirfd's directory.
fd = os.open("mixed", os.O_CREAT | os.O_WRONLY, 0o600)
os.close(fd)
os.rename("mixed", "mixed-moved", dst_dir_fd=d)
os.unlink("mixed-moved", dir_fd=d)
print("dirfd", d)
"#;
    let (c, o) = (cwd.to_str().unwrap(), other.to_str().unwrap());
    let mut cap = Capture::start(&[Category::File], |_| {});
    let done = cap.run(Workload::python(script, &[c, o]));
    done.assert_success();
    let dirfd: i32 = done.num("dirfd");
    let pid = done.pid;

    let open = find_op(&cap, Kind::FileOpen, pid, &format!("{c}/rel-a"));
    assert!(payload!(open, FileOp).ret >= 0);
    assert_eq!(payload!(open, FileOp).dirfd, -100, "AT_FDCWD");
    let missing = find_op(&cap, Kind::FileOpen, pid, &format!("{c}/rel-missing"));
    assert_eq!(
        payload!(missing, FileOp).ret,
        -2,
        "a failed open is joined to the cwd"
    );
    find_op(&cap, Kind::FileChmod, pid, &format!("{c}/rel-b"));
    find_op(&cap, Kind::FileUnlink, pid, &format!("{c}/rel-b"));

    let open = find_op(&cap, Kind::FileOpen, pid, &format!("{o}/in-other"));
    assert_eq!(payload!(open, FileOp).dirfd, dirfd);
    let missing = find_op(&cap, Kind::FileOpen, pid, &format!("{o}/other-missing"));
    assert_eq!(payload!(missing, FileOp).ret, -2);
    find_op(&cap, Kind::FileChmod, pid, &format!("{o}/renamed"));
    find_op(&cap, Kind::FileUnlink, pid, &format!("{o}/renamed"));
    find_op(&cap, Kind::FileUnlink, pid, &format!("{o}/mixed-moved"));

    assert_eq!(
        renames(&cap, pid),
        [
            (format!("{c}/rel-a"), format!("{c}/rel-b")),
            (format!("{o}/in-other"), format!("{o}/renamed")),
            (format!("{c}/mixed"), format!("{o}/mixed-moved")),
        ]
    );
    for e in cap.of_pid(Kind::FileOpen, pid) {
        assert_eq!(e.header.flags & FLAG_TRUNCATED, 0, "{}", op_path(&e));
    }
}

#[test]
fn paths_cross_tmpfs_and_bind_mounts() {
    if !bpf_available("paths_cross_tmpfs_and_bind_mounts") {
        return;
    }
    let mut tmp = TempDir::new("paths-mnt");
    let tmpfs = tmp.sub("tmpfs");
    tmp.mount(&["-t", "tmpfs", "-o", "size=1m", "pathtest"], &tmpfs);
    let inner = tmp.sub("tmpfs/inner");
    let source = tmp.sub("source");
    let bind = tmp.sub("bind");
    tmp.mount(&["--bind", source.to_str().unwrap()], &bind);

    let script = r#"
import os, sys
inner, bind = sys.argv[1:3]
os.chdir(inner)
fd = os.open("f", os.O_CREAT | os.O_WRONLY, 0o600)
os.close(fd)
os.rename("f", "g")
os.unlink("g")
os.chdir(bind)
fd = os.open("b", os.O_CREAT | os.O_WRONLY, 0o600)
os.close(fd)
os.unlink("b")
os.chdir("/")
fd = os.open(os.path.join(inner, ".."), os.O_RDONLY | os.O_DIRECTORY)
os.close(fd)
"#;
    let (i, b) = (inner.to_str().unwrap(), bind.to_str().unwrap());
    let mut cap = Capture::start(&[Category::File], |_| {});
    let done = cap.run(Workload::python(script, &[i, b]));
    done.assert_success();
    let pid = done.pid;

    // From a file in the tmpfs up through its root, over to the mount point in the parent.
    find_op(&cap, Kind::FileOpen, pid, &format!("{i}/f"));
    find_op(&cap, Kind::FileUnlink, pid, &format!("{i}/g"));
    assert!(renames(&cap, pid).contains(&(format!("{i}/f"), format!("{i}/g"))));
    // Through the bind mount: the path it was reached by, not the source's.
    find_op(&cap, Kind::FileOpen, pid, &format!("{b}/b"));
    find_op(&cap, Kind::FileUnlink, pid, &format!("{b}/b"));
    // The root of a mount itself: an opened directory reports its own, normalized path.
    find_op(&cap, Kind::FileOpen, pid, tmpfs.to_str().unwrap());
}

#[test]
fn over_long_and_over_deep_paths_are_cut_and_flagged() {
    if !bpf_available("over_long_and_over_deep_paths_are_cut_and_flagged") {
        return;
    }
    let tmp = TempDir::new("paths-long");
    // Longer than the record's path buffer (PATH_MAX_LEN - 1 bytes) in a few components.
    let long = tmp.sub(&["L".repeat(100), "M".repeat(100), "N".repeat(100)].join("/"));
    // Deeper than the walk's step bound (32), short in bytes.
    let deep = tmp.sub(&vec!["d"; 40].join("/"));
    let script = r#"
import os, sys
for d in sys.argv[1:3]:
    os.chdir(d)
    fd = os.open("file", os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    os.unlink("file")
"#;
    let (l, d) = (long.to_str().unwrap(), deep.to_str().unwrap());
    let mut cap = Capture::start(&[Category::File], |_| {});
    let done = cap.run(Workload::python(script, &[l, d]));
    done.assert_success();
    let pid = done.pid;

    let full_long = format!("{l}/file");
    assert!(full_long.len() >= PATH_MAX_LEN);
    let cut: Vec<Event<'_>> = cap
        .of_pid(Kind::FileOpen, pid)
        .chain(cap.of_pid(Kind::FileUnlink, pid))
        .filter(|e| op_path(e).starts_with(tmp.s()) && op_path(e).contains("LLLL"))
        .collect();
    assert_eq!(
        cut.len(),
        2,
        "the open and the unlink in the long directory"
    );
    for e in cut {
        let p = op_path(&e);
        assert_eq!(p.len(), PATH_MAX_LEN - 1, "cut at the buffer bound");
        assert_eq!(p, full_long[..PATH_MAX_LEN - 1], "the first bytes are kept");
        assert_ne!(e.header.flags & FLAG_TRUNCATED, 0, "flagged truncated");
    }

    // The deep one: the walk stops at its bound, keeps the deepest components, flags it.
    let deep_events: Vec<Event<'_>> = cap
        .of_pid(Kind::FileOpen, pid)
        .chain(cap.of_pid(Kind::FileUnlink, pid))
        .filter(|e| op_path(e).ends_with("/d/d/d/file"))
        .collect();
    assert_eq!(
        deep_events.len(),
        2,
        "the open and the unlink in the deep directory"
    );
    for e in deep_events {
        let p = op_path(&e);
        assert!(
            !p.starts_with(tmp.s()),
            "the walk cannot reach the root: {p}"
        );
        assert_ne!(e.header.flags & FLAG_TRUNCATED, 0, "flagged truncated: {p}");
    }
}

#[test]
fn exec_of_a_relative_path_reports_the_absolute_exe() {
    if !bpf_available("exec_of_a_relative_path_reports_the_absolute_exe") {
        return;
    }
    let tmp = TempDir::new("paths-exec");
    let prog = tmp.path.join("my-true");
    std::fs::copy("/bin/true", &prog).expect("copying /bin/true");
    let mut cap = Capture::start(&[Category::Process], |_| {});
    let done = cap.run(Workload::command(
        "/bin/sh",
        &["-c", "cd \"$0\" && exec ./my-true", tmp.s()],
    ));
    done.assert_success();

    let exec = cap
        .of_pid(Kind::ProcessExec, done.pid)
        .find(|e| {
            let p = payload!(e, ProcessExec);
            text(&p.filename, p.filename_len) == "./my-true"
        })
        .expect("process.exec of ./my-true");
    let p = payload!(exec, ProcessExec);
    assert_eq!(text(&p.exe, p.exe_len), prog.to_str().unwrap());
    // The working directory at exec, walked in the kernel.
    assert_eq!(text(&p.cwd, p.cwd_len), tmp.s());
    assert_eq!(exec.header.flags & FLAG_TRUNCATED, 0);
}
