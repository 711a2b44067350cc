//! process.exec, process.fork, process.exit on the real kernel.

use bpf::{Category, Kind};
use tests::{Capture, Workload, bpf_available, payload, text, unique};

#[test]
fn exec_with_args_and_exit_code() {
    if !bpf_available("exec_with_args_and_exit_code") {
        return;
    }
    let marker = unique("procmarker");
    let mut cap = Capture::start(&[Category::Process], |_| {});
    let done = cap.run(Workload::command(
        "/bin/sh",
        &["-c", "exit 7", &marker, "second arg"],
    ));
    assert_eq!(done.status.code(), Some(7));

    // The gate's own exec may be seen too (spawn returns once exec closed the
    // CLOEXEC pipe, which is before the tracepoint): take the last exec.
    let exec = cap
        .of_pid(Kind::ProcessExec, done.pid)
        .last()
        .expect("process.exec of /bin/sh");
    let p = payload!(exec, ProcessExec);
    assert_eq!(text(&p.filename, p.filename_len), "/bin/sh");
    let sh = std::fs::canonicalize("/bin/sh").expect("canonical /bin/sh");
    assert_eq!(
        text(&p.exe, p.exe_len),
        sh.to_str().unwrap(),
        "exe is the file executed, symlinks resolved"
    );
    let argv: Vec<String> = text(&p.argv, p.argv_len)
        .trim_end_matches('\0')
        .split('\0')
        .map(str::to_string)
        .collect();
    assert_eq!(
        argv,
        ["/bin/sh", "-c", "exit 7", marker.as_str(), "second arg"]
    );
    assert_eq!(p.argc, 5);
    assert_eq!(p.ppid, std::process::id(), "parent is the test process");
    assert_eq!(exec.header.tid, done.pid);
    assert_eq!(exec.header.uid, 0);
    assert_eq!(exec.comm(), b"sh");

    let exit = cap
        .of_pid(Kind::ProcessExit, done.pid)
        .next()
        .expect("process.exit");
    let x = payload!(exit, ProcessExit);
    assert_eq!((x.exit_code, x.signal, x.core_dumped), (7, 0, 0));
    assert!(x.lifetime_ns > 0);
    assert!(exit.header.ts_ns > exec.header.ts_ns);
}

#[test]
fn fork_and_exit_by_signal() {
    if !bpf_available("fork_and_exit_by_signal") {
        return;
    }
    let script = r#"
import os, signal, threading
pid = os.fork()
if pid == 0:
    os.kill(os.getpid(), signal.SIGKILL)
_, status = os.waitpid(pid, 0)
t = threading.Thread(target=lambda: None); t.start(); t.join()
print("child", pid)
print("status", status)
"#;
    let mut cap = Capture::start(&[Category::Process], |_| {});
    let done = cap.run(Workload::python(script, &[]));
    done.assert_success();
    let child: u32 = done.num("child");

    let fork = cap
        .of_pid(Kind::ProcessFork, done.pid)
        .find(|e| payload!(e, ProcessFork).child_pid == child)
        .expect("process.fork of the child");
    let f = payload!(fork, ProcessFork);
    assert_eq!(
        (f.parent_pid, f.child_tid, f.is_thread),
        (done.pid, child, 0)
    );

    // The thread shows up as a fork with is_thread = 1 and no exit of its own.
    let thread = cap
        .of_pid(Kind::ProcessFork, done.pid)
        .find(|e| payload!(e, ProcessFork).is_thread == 1)
        .expect("process.fork of the thread");
    assert_eq!(payload!(thread, ProcessFork).child_pid, done.pid);

    let exit = cap
        .of_pid(Kind::ProcessExit, child)
        .next()
        .expect("child's process.exit");
    let x = payload!(exit, ProcessExit);
    assert_eq!((x.signal, x.exit_code), (9, 0), "killed by SIGKILL");
    assert_eq!(
        cap.of_pid(Kind::ProcessExit, done.pid).count(),
        1,
        "one exit per process, not per thread"
    );
}
