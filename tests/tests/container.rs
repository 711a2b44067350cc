//! container.cgroup_mkdir, container.cgroup_attach, container.cgroup_rmdir on the real
//! kernel (cgroup v2), and the cgroup id every event header carries.

use bpf::{Category, Kind};
use tests::{Capture, Workload, bpf_available, cgroup2_root, payload, text, unique};

const SCRIPT: &str = r#"
import os, sys
root, name, probe = sys.argv[1:4]
own = [l for l in open("/proc/self/cgroup").read().splitlines() if l.startswith("0::")][0][3:]
home = os.path.join(root, own.lstrip("/"))
cg = os.path.join(home, name)
os.mkdir(cg)
print("cgroup_ino", os.stat(cg).st_ino)
print("cgroup_path", "/" + os.path.relpath(cg, root))
with open(os.path.join(cg, "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
open(probe, "w").close()          # an event from inside the new cgroup
with open(os.path.join(home, "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
os.unlink(probe)
os.rmdir(cg)
"#;

#[test]
fn cgroup_mkdir_attach_rmdir_and_header_cgroup_id() {
    if !bpf_available("cgroup_mkdir_attach_rmdir_and_header_cgroup_id") {
        return;
    }
    let root = cgroup2_root().expect("cgroup v2 must be mounted for this test");
    let name = unique("cgtest");
    let probe = std::env::temp_dir().join(unique("cgprobe"));
    let probe = probe.to_str().unwrap();
    let mut cap = Capture::start(&[Category::Container, Category::File], |_| {});
    let done = cap.run(Workload::python(
        SCRIPT,
        &[root.to_str().unwrap(), &name, probe],
    ));
    done.assert_success();
    let ino: u64 = done.num("cgroup_ino");
    let path = done.value("cgroup_path");

    let mkdir = cap
        .of_pid(Kind::ContainerCgroupMkdir, done.pid)
        .map(|e| payload!(e, Cgroup))
        .find(|c| text(&c.path, c.path_len) == path)
        .unwrap_or_else(|| panic!("container.cgroup_mkdir of {path}"));
    assert_eq!(
        mkdir.cgroup_id, ino,
        "cgroup v2 id is the directory's inode"
    );
    assert_eq!(mkdir.hierarchy_id, 0, "the v2 (default) hierarchy");
    assert_eq!(mkdir.level as usize, path.matches('/').count());

    let attach = cap
        .of_pid(Kind::ContainerCgroupAttach, done.pid)
        .map(|e| payload!(e, Cgroup))
        .find(|c| c.cgroup_id == ino)
        .expect("container.cgroup_attach into the new cgroup");
    assert_eq!(attach.target_pid, done.pid);
    assert_eq!(text(&attach.path, attach.path_len), path);

    let inside = cap
        .of_pid(Kind::FileOpen, done.pid)
        .find(|e| text(&payload!(e, FileOp).path, payload!(e, FileOp).path_len) == probe)
        .expect("file.open of the probe file");
    assert_eq!(
        inside.header.cgroup_id, ino,
        "header carries the task's cgroup id"
    );
    let outside = cap
        .of_pid(Kind::FileUnlink, done.pid)
        .find(|e| text(&payload!(e, FileOp).path, payload!(e, FileOp).path_len) == probe)
        .expect("file.unlink of the probe file");
    assert_ne!(
        outside.header.cgroup_id, ino,
        "moved back out before the unlink"
    );

    let rmdir = cap
        .of_pid(Kind::ContainerCgroupRmdir, done.pid)
        .map(|e| payload!(e, Cgroup))
        .find(|c| c.cgroup_id == ino)
        .expect("container.cgroup_rmdir");
    assert_eq!(text(&rmdir.path, rmdir.path_len), path);
    assert!(std::fs::metadata(root.join(path.trim_start_matches('/'))).is_err());
}
