//! security.* on the real kernel: setuid in a child, the capability check behind it,
//! a signal, ptrace, a module unload, bpf(), mount and umount; once with the syscall-based
//! kinds from the per-syscall tracepoints (the default) and once from the raw programs.

use bpf::{Category, Kind};
use tests::{Capture, Workload, bpf_available, payload, text, unique};

const SCRIPT: &str = r#"
import ctypes, os, signal, struct, sys, tempfile, time
marker = sys.argv[1].encode()
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

pid = os.fork()
if pid == 0:
    os.setuid(65534)
    os._exit(0)
os.waitpid(pid, 0)
print("setuid_child", pid)

pid2 = os.fork()
if pid2 == 0:
    time.sleep(30)
    os._exit(0)
time.sleep(0.05)
os.kill(pid2, signal.SIGUSR1)
os.waitpid(pid2, 0)
print("signalled", pid2)

libc.syscall(101, 2, 0x7ffffff0, 0, 0)           # ptrace(PTRACE_PEEKDATA, no such pid)
libc.syscall(176, b"nomod_" + marker, 0)        # delete_module of no such module
attr = struct.pack("IIII", 2, 4, 4, 1) + bytes(64)  # BPF_MAP_CREATE of an array
fd = libc.syscall(321, 0, attr, len(attr))
print("bpf_fd", fd)
print("bpf_size", len(attr))
os.close(fd)

d = tempfile.mkdtemp(prefix="sectest-")
rc = libc.mount(b"src-" + marker, d.encode(), b"tmpfs", 0, None)
print("mount_rc", rc)
print("mount_target", d)
libc.umount2(d.encode(), 0)
os.rmdir(d)
"#;

#[test]
fn setuid_capability_signal_ptrace_module_bpf_mount() {
    if !bpf_available("setuid_capability_signal_ptrace_module_bpf_mount") {
        return;
    }
    // A kernel built without module support has no delete_module tracepoint (the call
    // only fails with ENOSYS): the per-syscall mode cannot see it, the raw programs can.
    let has_module_events =
        std::path::Path::new("/sys/kernel/tracing/events/syscalls/sys_enter_delete_module")
            .exists()
            || !std::path::Path::new("/sys/kernel/tracing/events/syscalls").exists();
    for per_syscall in [true, false] {
        security_kinds(per_syscall, !per_syscall || has_module_events);
    }
}

fn security_kinds(per_syscall: bool, module_visible: bool) {
    let marker = unique("sec");
    let mut cap = Capture::start(&[Category::Security], |c| c.syscall_events = per_syscall);
    if per_syscall {
        assert!(
            cap.collector.attached().contains(&"sys_enter_setuid")
                && !cap.collector.attached().contains(&"sys_enter"),
            "per-syscall tracepoints, no raw program: {:?}",
            cap.collector.attached()
        );
    } else {
        assert!(cap.collector.attached().contains(&"sys_enter"));
    }
    let done = cap.run(Workload::python(SCRIPT, &[&marker]));
    done.assert_success();

    let child: u32 = done.num("setuid_child");
    let setuid = cap
        .of_pid(Kind::SecuritySetuid, child)
        .next()
        .expect("security.setuid in the child");
    let s = payload!(setuid, CredChange);
    assert_eq!((s.syscall_nr, s.args[0], s.ret), (105, 65534, 0));
    assert_eq!((s.new_uid, s.new_euid), (65534, 65534));

    let capcheck = cap
        .of_pid(Kind::SecurityCapability, child)
        .map(|e| payload!(e, Capability))
        .find(|c| c.cap == 7)
        .expect("security.capability CAP_SETUID in the child");
    assert_eq!(
        (capcheck.ret, capcheck.euid),
        (0, 0),
        "allowed, checked as root"
    );

    let target: u32 = done.num("signalled");
    let sig = cap
        .of_pid(Kind::SecuritySignal, done.pid)
        .map(|e| payload!(e, Signal))
        .find(|s| s.target_pid == target && s.sig == 10)
        .expect("security.signal SIGUSR1 to the child");
    assert_eq!((sig.result, sig.code), (0, 0), "delivered, SI_USER");
    assert!(!tests::cstr_bytes(&sig.target_comm).is_empty());

    let ptrace = cap
        .of_pid(Kind::SecurityPtrace, done.pid)
        .next()
        .expect("security.ptrace");
    let p = payload!(ptrace, Ptrace);
    assert_eq!(
        (p.request, p.target_pid, p.ret),
        (2, 0x7ffffff0, -3),
        "PEEKDATA, -ESRCH"
    );

    let unload = cap.of_pid(Kind::SecurityModuleUnload, done.pid).next();
    if module_visible {
        let m = payload!(unload.expect("security.module_unload"), Module);
        assert_eq!(text(&m.text, m.text_len), format!("nomod_{marker}"));
        assert_eq!(m.syscall_nr, 176);
        // -ENOENT, or -ENOSYS on a kernel built without module support (as here).
        assert!(m.ret == -2 || m.ret == -38, "ret {}", m.ret);
    } else {
        assert!(unload.is_none(), "no tracepoint, no record");
    }

    let bpf_fd: i64 = done.num("bpf_fd");
    let bpf_size: u32 = done.num("bpf_size");
    let call = cap
        .of_pid(Kind::SecurityBpf, done.pid)
        .next()
        .expect("security.bpf");
    let b = payload!(call, Bpf);
    assert_eq!(
        (b.cmd, b.attr_type, b.attr_size, b.ret),
        (0, 2, bpf_size, bpf_fd)
    );

    assert_eq!(done.value("mount_rc"), "0");
    let target_dir = done.value("mount_target");
    let mount = cap
        .of_pid(Kind::SecurityMount, done.pid)
        .next()
        .expect("security.mount");
    let m = payload!(mount, Mount);
    assert_eq!(text(&m.source, m.source_len), format!("src-{marker}"));
    assert_eq!(text(&m.target, m.target_len), target_dir);
    assert_eq!(text(&m.fstype, m.fstype_len), "tmpfs");
    assert_eq!(m.ret, 0);
    let umount = cap
        .of_pid(Kind::SecurityUmount, done.pid)
        .next()
        .expect("security.umount");
    let u = payload!(umount, Mount);
    assert_eq!(
        (text(&u.target, u.target_len).as_str(), u.ret),
        (target_dir, 0)
    );
}
