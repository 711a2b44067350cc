//! file.open, file.rename, file.chmod, file.unlink on the real kernel: paths, flags,
//! modes and results paired from sys_enter/sys_exit.

use bpf::{Category, Kind};
use tests::{Capture, Workload, bpf_available, payload, text, unique};

#[test]
fn create_rename_chmod_unlink_a_unique_file() {
    if !bpf_available("create_rename_chmod_unlink_a_unique_file") {
        return;
    }
    let dir = std::env::temp_dir();
    let a = dir.join(unique("filetest-a"));
    let b = dir.join(unique("filetest-b"));
    let missing = dir.join(unique("filetest-missing"));
    let script = r#"
import os, sys
a, b, missing = sys.argv[1:4]
fd = os.open(a, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
print("fd", fd)
os.close(fd)
os.rename(a, b)
os.chmod(b, 0o640)
try:
    os.open(missing, os.O_RDONLY)
except FileNotFoundError:
    pass
os.unlink(b)
"#;
    let (a, b, missing) = (
        a.to_str().unwrap().to_string(),
        b.to_str().unwrap().to_string(),
        missing.to_str().unwrap().to_string(),
    );
    let mut cap = Capture::start(&[Category::File], |_| {});
    let done = cap.run(Workload::python(script, &[&a, &b, &missing]));
    done.assert_success();
    let fd: i64 = done.num("fd");

    let open = cap
        .of_pid(Kind::FileOpen, done.pid)
        .find(|e| text(&payload!(e, FileOp).path, payload!(e, FileOp).path_len) == a)
        .unwrap_or_else(|| panic!("file.open of {a}"));
    let o = payload!(open, FileOp);
    const O_CREAT: u32 = 0o100;
    const O_EXCL: u32 = 0o200;
    const O_WRONLY: u32 = 0o1;
    assert_eq!(
        o.flags & (O_CREAT | O_EXCL | O_WRONLY),
        O_CREAT | O_EXCL | O_WRONLY
    );
    assert_eq!(o.mode, 0o600);
    assert_eq!(o.ret, fd, "result is the fd the workload got");
    assert_eq!(o.syscall_nr, 257, "python opens with openat");
    assert_eq!(o.dirfd, -100, "AT_FDCWD");
    assert!(o.latency_ns > 0);

    let failed = cap
        .of_pid(Kind::FileOpen, done.pid)
        .find(|e| text(&payload!(e, FileOp).path, payload!(e, FileOp).path_len) == missing)
        .expect("file.open of the missing file");
    assert_eq!(payload!(failed, FileOp).ret, -2, "-ENOENT");

    let rename = cap
        .of_pid(Kind::FileRename, done.pid)
        .next()
        .expect("file.rename");
    let r = payload!(rename, FileRename);
    assert_eq!(text(&r.old_path, r.old_path_len), a);
    assert_eq!(text(&r.new_path, r.new_path_len), b);
    assert_eq!(r.ret, 0);

    let chmod = cap
        .of_pid(Kind::FileChmod, done.pid)
        .find(|e| text(&payload!(e, FileOp).path, payload!(e, FileOp).path_len) == b)
        .expect("file.chmod");
    let c = payload!(chmod, FileOp);
    assert_eq!((c.mode, c.ret), (0o640, 0));

    let unlink = cap
        .of_pid(Kind::FileUnlink, done.pid)
        .find(|e| text(&payload!(e, FileOp).path, payload!(e, FileOp).path_len) == b)
        .expect("file.unlink");
    assert_eq!(payload!(unlink, FileOp).ret, 0);

    // Order is the order the workload did things in.
    let ts = |e: bpf::Event<'_>| e.header.ts_ns;
    assert!(ts(open) < ts(rename) && ts(rename) < ts(chmod) && ts(chmod) < ts(unlink));
}
