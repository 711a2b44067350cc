//! In-kernel switches and filters on the real kernel: categories that are off are not
//! attached, tgid exclusion, cgroup inclusion, and the collector's own exclusion.

use bpf::{Category, IdFilter, Kind};
use tests::{Capture, Workload, bpf_available, payload, text, unique};

#[test]
fn a_category_that_is_off_is_not_attached() {
    if !bpf_available("a_category_that_is_off_is_not_attached") {
        return;
    }
    let cap = Capture::start(&[Category::Net], |c| c.tgid_filter = IdFilter::Off);
    let attached = cap.collector.attached();
    assert!(attached.contains(&"inet_sock_set_state"));
    for tp in [
        "sys_enter",
        "sys_exit",
        "sched_process_exec",
        "cap_capable",
        "page_fault_user",
    ] {
        assert!(
            !attached.contains(&tp),
            "{tp} attached with only net on: {attached:?}"
        );
    }
}

#[test]
fn excluded_tgid_produces_nothing() {
    if !bpf_available("excluded_tgid_produces_nothing") {
        return;
    }
    let (ma, mb) = (unique("excluded"), unique("kept"));
    let excluded = Workload::command("/bin/sh", &["-c", "exit 0", &ma]);
    let kept = Workload::command("/bin/sh", &["-c", "exit 0", &mb]);
    let (pa, pb) = (excluded.pid, kept.pid);
    let mut cap = Capture::start(&[Category::Process], |c| {
        c.tgid_filter = IdFilter::Exclude(vec![pa]);
        c.follow_children = false;
    });
    cap.run_unfollowed(excluded, true).assert_success();
    cap.run_unfollowed(kept, true).assert_success();
    assert_eq!(
        cap.of_pid(Kind::ProcessExec, pa).count(),
        0,
        "excluded tgid leaked"
    );
    assert_eq!(
        cap.of_pid(Kind::ProcessExit, pa).count(),
        0,
        "excluded tgid leaked"
    );
    assert!(
        cap.of_pid(Kind::ProcessExec, pb).count() >= 1,
        "kept tgid missing"
    );
    let c = cap.counters();
    assert!(c[Kind::ProcessExec as usize].filtered >= 1);
}

#[test]
fn cgroup_include_filter_keeps_only_that_cgroup() {
    if !bpf_available("cgroup_include_filter_keeps_only_that_cgroup") {
        return;
    }
    let root = tests::cgroup2_root().expect("cgroup v2 mounted");
    let root = root.to_str().unwrap();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a v2 cgroup line");
    let home = format!("{root}{}", own.trim_end_matches('/'));
    let cg = format!("{home}/{}", unique("cgfilter"));
    std::fs::create_dir(&cg).expect("creating a cgroup");
    let id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&cg).unwrap());

    let dir = std::env::temp_dir();
    let (inside, outside) = (dir.join(unique("in")), dir.join(unique("out")));
    let (inside, outside) = (inside.to_str().unwrap(), outside.to_str().unwrap());
    let script = r#"
import os, sys
cg, home, inside, outside = sys.argv[1:5]
open(os.path.join(cg, "cgroup.procs"), "w").write(str(os.getpid()))
open(inside, "w").close()
open(os.path.join(home, "cgroup.procs"), "w").write(str(os.getpid()))
open(outside, "w").close()
os.unlink(inside); os.unlink(outside)
"#;
    let mut cap = Capture::start(&[Category::File], |c| {
        c.tgid_filter = IdFilter::Off;
        c.cgroup_filter = IdFilter::Include(vec![id]);
    });
    let done = cap.run_unfollowed(
        Workload::python(script, &[&cg, &home, inside, outside]),
        true,
    );
    std::fs::remove_dir(&cg).expect("removing the cgroup");
    done.assert_success();
    let opened: Vec<String> = cap
        .of(Kind::FileOpen)
        .map(|e| {
            assert_eq!(e.header.cgroup_id, id, "only the included cgroup passes");
            let p = payload!(e, FileOp);
            text(&p.path, p.path_len)
        })
        .collect();
    assert!(
        opened.iter().any(|p| p == inside),
        "open inside the cgroup missing: {opened:?}"
    );
    assert!(
        !opened.iter().any(|p| p == outside),
        "open outside the cgroup leaked"
    );
}

#[test]
fn the_collectors_own_process_is_always_excluded() {
    if !bpf_available("the_collectors_own_process_is_always_excluded") {
        return;
    }
    let mut cap = Capture::start(&[Category::File], |c| c.tgid_filter = IdFilter::Off);
    let path = std::env::temp_dir().join(unique("self"));
    std::fs::write(&path, b"x").unwrap();
    std::fs::remove_file(&path).unwrap();
    // The records (if any leaked) are in the ring once the syscalls returned.
    cap.drain();
    let path = path.to_str().unwrap();
    let leaked = cap
        .of(Kind::FileOpen)
        .chain(cap.of(Kind::FileUnlink))
        .filter(|e| text(&payload!(e, FileOp).path, payload!(e, FileOp).path_len) == path)
        .count();
    assert_eq!(leaked, 0, "the collector's own file activity was captured");
    let c = cap.counters();
    assert!(
        c[Kind::FileOpen as usize].filtered >= 1,
        "own open counted as filtered"
    );
    assert!(
        c[Kind::FileUnlink as usize].filtered >= 1,
        "own unlink counted as filtered"
    );
}
