//! memory.page_fault (and its in-kernel rate limit) and memory.oom_kill on the real kernel.

use bpf::abi::RATE_SLOT_PAGE_FAULT;
use bpf::{Category, Kind};
use tests::{Capture, Workload, bpf_available, payload};

const TOUCH: &str = r#"
import mmap, ctypes, sys
pages = int(sys.argv[1])
m = mmap.mmap(-1, pages * 4096)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
for i in range(pages):
    m[i * 4096] = 1
print("addr", addr)
print("len", pages * 4096)
"#;

#[test]
fn page_faults_land_in_the_touched_mapping() {
    if !bpf_available("page_faults_land_in_the_touched_mapping") {
        return;
    }
    let mut cap = Capture::start(&[Category::Memory], |c| {
        c.rate_per_sec[RATE_SLOT_PAGE_FAULT] = 0; // unlimited
    });
    let done = cap.run(Workload::python(TOUCH, &["256"]));
    done.assert_success();
    let addr: u64 = done.num("addr");
    let len: u64 = done.num("len");
    let inside: Vec<u64> = cap
        .of_pid(Kind::MemoryPageFault, done.pid)
        .map(|e| payload!(e, PageFault).address)
        .filter(|a| (addr..addr + len).contains(a))
        .collect();
    assert!(
        inside.len() >= 256,
        "every page touched faults once: {} faults in the mapping",
        inside.len()
    );
    let counters = cap.counters();
    assert_eq!(counters[Kind::MemoryPageFault as usize].rate_limited, 0);
}

#[test]
fn page_fault_rate_limit_is_enforced_and_counted() {
    if !bpf_available("page_fault_rate_limit_is_enforced_and_counted") {
        return;
    }
    let (rate, burst) = (10u64, 5u64);
    let mut cap = Capture::start(&[Category::Memory], |c| {
        c.rate_per_sec[RATE_SLOT_PAGE_FAULT] = rate;
        c.burst[RATE_SLOT_PAGE_FAULT] = burst;
    });
    let started = std::time::Instant::now();
    let done = cap.run(Workload::python(TOUCH, &["2000"]));
    let secs = started.elapsed().as_secs_f64();
    done.assert_success();
    let delivered = cap.of(Kind::MemoryPageFault).count() as u64;
    let c = cap.counters()[Kind::MemoryPageFault as usize];
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    // Per CPU: at most the burst plus the rate over the run.
    let bound = cpus * (burst + (rate as f64 * secs).ceil() as u64);
    assert!(
        delivered <= bound,
        "{delivered} page faults delivered, bound {bound}"
    );
    assert!(delivered >= 1);
    assert!(
        c.rate_limited >= 2000 - bound,
        "rate_limited {}",
        c.rate_limited
    );
    assert_eq!(c.produced, delivered, "every admitted fault was delivered");
}

const OOM: &str = r#"
import os, sys
name = sys.argv[1]
v1 = "/sys/fs/cgroup/memory"
if os.path.exists(os.path.join(v1, "memory.limit_in_bytes")):
    cg = os.path.join(v1, name); os.mkdir(cg)
    open(os.path.join(cg, "memory.limit_in_bytes"), "w").write(str(32 << 20))
else:
    root = [l.split()[1] for l in open("/proc/mounts") if l.split()[2] == "cgroup2"][0]
    if "memory" not in open(os.path.join(root, "cgroup.subtree_control")).read():
        print("unsupported no memory controller"); sys.exit(0)
    cg = os.path.join(root, name); os.mkdir(cg)
    open(os.path.join(cg, "memory.max"), "w").write(str(32 << 20))
    open(os.path.join(cg, "memory.swap.max"), "w").write("0")
pid = os.fork()
if pid == 0:
    open(os.path.join(cg, "cgroup.procs"), "w").write(str(os.getpid()))
    hog = []
    while True:
        hog.append(bytearray(1 << 20))
_, status = os.waitpid(pid, 0)
os.rmdir(cg)
print("victim", pid)
print("signal", os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0)
"#;

#[test]
fn oom_kill_names_the_victim() {
    if !bpf_available("oom_kill_names_the_victim") {
        return;
    }
    let mut cap = Capture::start(&[Category::Memory], |c| {
        c.rate_per_sec[RATE_SLOT_PAGE_FAULT] = 1; // keep the ring for what matters
    });
    let done = cap.run(Workload::python(OOM, &[&tests::unique("oomtest")]));
    done.assert_success();
    if done.stdout.starts_with("unsupported") {
        eprintln!("SKIPPED oom_kill_names_the_victim: {}", done.stdout.trim());
        return;
    }
    let victim: u32 = done.num("victim");
    assert_eq!(done.value("signal"), "9", "the hog was OOM-killed");
    let oom = cap
        .of(Kind::MemoryOomKill)
        .map(|e| payload!(e, OomKill))
        .find(|o| o.victim_pid == victim);
    let oom = oom.expect("memory.oom_kill of the hog");
    assert_eq!(oom.victim_uid, 0);
    assert!(
        oom.total_vm_pages > (32 << 20) / 4096,
        "total_vm {} pages",
        oom.total_vm_pages
    );
    assert_eq!(tests::cstr_bytes(&oom.victim_comm), b"python3");
}
