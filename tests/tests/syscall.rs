//! The generic syscall kind on the real kernel: only the configured ids, paired with
//! their result and latency.

use bpf::{Category, Kind, SyscallSet};
use tests::{Capture, Workload, bpf_available, payload};

const GETPPID: u32 = 110;

#[test]
fn only_selected_syscalls_with_result_and_latency() {
    if !bpf_available("only_selected_syscalls_with_result_and_latency") {
        return;
    }
    let mut cap = Capture::start(&[Category::Syscall], |c| {
        c.syscalls = SyscallSet::Ids(vec![GETPPID]);
    });
    let done = cap.run(Workload::python(
        "import os\nfor _ in range(1000): os.getppid()\nprint('ok', 1)",
        &[],
    ));
    done.assert_success();
    let calls: Vec<_> = cap.of_pid(Kind::Syscall, done.pid).collect();
    assert!(calls.len() >= 1000, "{} getppid calls seen", calls.len());
    for ev in &calls {
        let s = payload!(ev, Syscall);
        assert_eq!(s.id, GETPPID, "only the selected id is kept");
        assert_eq!(
            s.ret,
            std::process::id() as i64,
            "getppid returns the test's pid"
        );
        assert!(s.latency_ns > 0 && s.latency_ns < 1_000_000_000);
    }
    assert_eq!(
        cap.records.len(),
        calls.len(),
        "nothing but syscall.call was captured"
    );
}

#[test]
fn enter_only_records_without_result_and_attaches_no_sys_exit() {
    if !bpf_available("enter_only_records_without_result_and_attaches_no_sys_exit") {
        return;
    }
    let mut cap = Capture::start(&[Category::Syscall], |c| {
        c.syscalls = SyscallSet::Ids(vec![GETPPID]);
        c.syscall_enter_only = true;
    });
    assert!(cap.collector.attached().contains(&"sys_enter"));
    assert!(
        !cap.collector.attached().contains(&"sys_exit"),
        "no sys_exit program"
    );
    let done = cap.run(Workload::python(
        "import os\nfor _ in range(500): os.getppid()",
        &[],
    ));
    done.assert_success();
    let calls: Vec<_> = cap.of_pid(Kind::Syscall, done.pid).collect();
    assert!(calls.len() >= 500, "{} getppid calls seen", calls.len());
    for ev in &calls {
        let s = payload!(ev, Syscall);
        assert_eq!(s.id, GETPPID);
        assert_eq!((s.ret, s.latency_ns), (0, 0), "no result at sys_enter");
        assert_ne!(ev.header.flags & bpf::abi::FLAG_NO_RESULT, 0);
    }
    let c = cap.counters()[Kind::Syscall as usize];
    assert_eq!(c.unpaired, 0, "nothing waits for a sys_exit");
}
