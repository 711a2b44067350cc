//! The per-CPU ring transport on the real kernel: wake-ups are batched (a reader is not
//! woken per record) yet every record is readable at once, and records are zeroed
//! (padding and string tails carry no stale bytes).

use std::time::Duration;

use bpf::{Category, Kind, Poller};
use tests::{Capture, Workload, bpf_available, payload};

fn ready_after_workload(wakeup_bytes: u32) -> (usize, usize) {
    let mut cap = Capture::start(&[Category::Process], |c| c.wakeup_bytes = wakeup_bytes);
    let rings = cap.take_rings();
    let mut poller = Poller::new(&rings).expect("epoll");
    cap.give_rings(rings);
    let done = cap.run_followed_without_draining(Workload::command("/bin/true", &[]));
    done.assert_success();
    let woken = poller
        .wait(Duration::from_millis(200))
        .expect("epoll_wait")
        .count();
    let records = cap.drain();
    (woken, records)
}

#[test]
fn wakeups_are_batched_but_records_are_readable_at_once() {
    if !bpf_available("wakeups_are_batched_but_records_are_readable_at_once") {
        return;
    }
    // A few records, far below 1 MiB: nobody is woken, yet all of them can be read.
    let (woken, records) = ready_after_workload(1 << 20);
    assert!(records >= 2, "exec and exit were written ({records})");
    assert_eq!(woken, 0, "no wake-up below wakeup_bytes");
    // wakeup_bytes = 0: every record wakes the reader.
    let (woken, records) = ready_after_workload(0);
    assert!(records >= 2);
    assert!(woken >= 1, "a wake-up per record when wakeup_bytes is 0");
}

#[test]
fn records_are_zeroed_before_they_are_filled() {
    if !bpf_available("records_are_zeroed_before_they_are_filled") {
        return;
    }
    let mut cap = Capture::start(&[Category::File, Category::Process], |_| {});
    let done = cap.run(Workload::python(
        "import os\nfor p in ('/etc/hostname', '/etc/passwd', '/nonexistent/x' * 3): \n  try: os.open(p, os.O_RDONLY)\n  except OSError: pass",
        &[],
    ));
    done.assert_success();
    let mut checked = 0;
    for e in cap.of_pid(Kind::FileOpen, done.pid) {
        let p = payload!(e, FileOp);
        assert_eq!(
            e.header.weight, 1,
            "nothing sampled here: the kernel stamps 1"
        );
        assert_eq!(p._pad0, 0);
        let tail = &p.path[p.path_len as usize..];
        assert!(
            tail.iter().all(|&b| b == 0),
            "bytes after the path are zero"
        );
        checked += 1;
    }
    for e in cap.of_pid(Kind::ProcessExec, done.pid) {
        let p = payload!(e, ProcessExec);
        assert!(
            p.filename[p.filename_len as usize..]
                .iter()
                .all(|&b| b == 0)
        );
        assert!(p.argv[p.argv_len as usize..].iter().all(|&b| b == 0));
        assert_eq!(p._pad1, 0);
        assert_eq!(p.secure, 0, "a plain exec by root gains nothing");
        checked += 1;
    }
    assert!(checked >= 4, "checked {checked} records");
}
