//! Drop accounting on the real kernel: a one-page ring and a syscall storm that is not
//! drained while it runs. Every record offered is either delivered or counted as
//! dropped for a full ring, exactly.

use bpf::{Category, Kind, SyscallSet};
use tests::{Capture, Workload, bpf_available};

#[test]
fn produced_equals_delivered_plus_dropped_exactly() {
    if !bpf_available("produced_equals_delivered_plus_dropped_exactly") {
        return;
    }
    let calls = 200_000u64;
    let mut cap = Capture::start(&[Category::Syscall], |c| {
        c.syscalls = SyscallSet::Ids(vec![110]);
        c.ring_bytes = 4096;
        c.wakeup_bytes = 1024;
    });
    let workload = Workload::python(
        &format!("import os\nfor _ in range({calls}): os.getppid()"),
        &[],
    );
    cap.follow(workload.pid);
    let done = cap.run_unfollowed(workload, false);
    done.assert_success();
    cap.drain();

    let c = cap.counters()[Kind::Syscall as usize];
    let delivered = cap.of(Kind::Syscall).count() as u64;
    assert!(
        c.produced >= calls,
        "produced {} < {calls} calls made",
        c.produced
    );
    assert!(
        c.ring_full > 0,
        "a one-page ring must overflow under {calls} calls"
    );
    assert!(delivered > 0, "the ring held some records");
    assert_eq!(
        c.produced,
        delivered + c.ring_full,
        "produced = delivered + ring_full (delivered {delivered}, ring_full {})",
        c.ring_full
    );
    assert_eq!(c.rate_limited, 0);
}
