//! The crafted corpus (`common/crafted.rs`): segment files with valid CRCs and lying
//! lengths, offsets, counts and timestamps. Every read path (Segment::open and
//! open_scan, the replay Reader by monotonic and by wall-clock time, Stats as inspect
//! uses it, verify_dir, recovery) gives either a clear error naming the file and the
//! offset, or exactly the records that survive; never a panic, and never an
//! allocation above [`ALLOC_MAX`] (this binary's allocator refuses it, which aborts).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;

use common::crafted::{Case, Expect, TINY_RECORDS, corpus};
use common::*;
use storage::{
    KIND_LOSS, PROBLEMS_PER_FILE_MAX, ReadOptions, Reader, Segment, Stats, StorageError,
    VerifyOptions, verify_dir,
};

/// Largest single allocation any read path may make here: far above the largest block
/// (64 MiB) and far below what a lying length could ask for.
const ALLOC_MAX: usize = 256 << 20;

/// Refuses (so the process aborts with a message) any allocation above [`ALLOC_MAX`].
struct Bounded;

fn refuse(size: usize) -> *mut u8 {
    let msg = b"crafted: refused an allocation above ALLOC_MAX (256 MiB)\n";
    // SAFETY: writing a static buffer to stderr; no allocation.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    let _ = size;
    std::ptr::null_mut()
}

// SAFETY: forwards to the system allocator, only refusing some requests (null is a
// valid answer from `alloc`).
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.size() > ALLOC_MAX {
            return refuse(l.size());
        }
        // SAFETY: same layout contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if l.size() > ALLOC_MAX {
            return refuse(l.size());
        }
        // SAFETY: same layout contract as ours.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > ALLOC_MAX {
            return refuse(new);
        }
        // SAFETY: `p` came from `System` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Bounded = Bounded;

fn read_all(dir: &Path, wall_clock: bool) -> Result<Vec<(u64, u16)>, StorageError> {
    let opts = ReadOptions {
        wall_clock,
        ..ReadOptions::default()
    };
    let mut r = Reader::open(dir, &opts)?;
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        out.push((rec.ts_ns, rec.kind));
    }
    Ok(out)
}

fn check_error(case: &Case, path: &Path, e: &StorageError, offset: u64, contains: &str, via: &str) {
    let msg = e.to_string();
    assert_eq!(
        e.path(),
        Some(path),
        "{} via {via}: names the file: {msg}",
        case.name
    );
    assert_eq!(
        e.offset(),
        Some(offset),
        "{} via {via}: the offset: {msg}",
        case.name
    );
    assert!(
        msg.contains(contains) && msg.contains(&path.display().to_string()),
        "{} via {via}: {msg:?} should contain {contains:?}",
        case.name
    );
}

fn run(case: &Case) {
    let dir = TempDir::new(case.name);
    let sdir = storage::stream_dir(dir.path(), 0);
    std::fs::create_dir_all(&sdir).unwrap();
    let path = sdir.join(case.file_name());
    std::fs::write(&path, &case.bytes).unwrap();

    // Whatever the case, a forced scan never panics.
    let _ = Segment::open_scan(&path);

    let verify = verify_dir(dir.path(), &VerifyOptions::default(), &mut |_| Ok(())).unwrap();
    assert_eq!(verify.files, 1, "{}", case.name);
    match &case.expect {
        Expect::Error { offset, contains } => {
            let e = Segment::open(&path)
                .and_then(|seg| {
                    let (mut buf, mut d) = (Vec::new(), storage::DecodedBlock::new());
                    for m in seg.blocks() {
                        seg.read_block(m, &mut buf, &mut d)?;
                    }
                    Ok(())
                })
                .unwrap_err();
            check_error(case, &path, &e, *offset, contains, "Segment");
            for wall in [false, true] {
                let e = read_all(dir.path(), wall).unwrap_err();
                check_error(case, &path, &e, *offset, contains, "Reader");
            }
            let e = Stats::collect(dir.path()).unwrap_err();
            check_error(case, &path, &e, *offset, contains, "Stats");
            assert_eq!(
                verify.problems.len(),
                1,
                "{}: {:?}",
                case.name,
                verify.problems
            );
            let p = &verify.problems[0];
            assert_eq!(
                (p.path.as_path(), p.offset),
                (path.as_path(), Some(*offset))
            );
            assert!(p.to_string().contains(contains), "{}: {p}", case.name);
        }
        Expect::Records { records, torn_at } => {
            let seg = Segment::open(&path).unwrap();
            assert_eq!(seg.torn().map(|t| t.offset), *torn_at, "{}", case.name);
            for wall in [false, true] {
                let got = read_all(dir.path(), wall).unwrap();
                assert!(
                    got == *records,
                    "{} (wall clock {wall}): {} records read, {} expected",
                    case.name,
                    got.len(),
                    records.len()
                );
            }
            let stats = Stats::collect(dir.path()).unwrap();
            let t = stats.total();
            assert_eq!(
                t.events + t.loss_records,
                records.len() as u64,
                "{}",
                case.name
            );
            assert_eq!(verify.records, records.len() as u64, "{}", case.name);
            match torn_at {
                Some(at) => {
                    assert_eq!(verify.problems.len(), 1, "{}", case.name);
                    assert_eq!(verify.problems[0].offset, Some(*at));
                    let r = storage::recovery::recover_segment(&path).unwrap().unwrap();
                    assert_eq!(r.records, records.len() as u64);
                    assert_eq!(read_all(dir.path(), false).unwrap(), *records);
                }
                None if case.name == "tiny_block_million_bad_records" => {}
                None => assert!(verify.is_sound(), "{}: {:?}", case.name, verify.problems),
            }
        }
    }
}

#[test]
fn every_crafted_file_gives_a_clear_error_or_the_exact_survivors() {
    let cases = corpus();
    assert!(cases.len() >= 15);
    for case in &cases {
        run(case);
    }
}

/// Issue 8, defect 5: a tiny block of a million bad loss records makes a report of
/// [`PROBLEMS_PER_FILE_MAX`] problems and a count, not a million strings.
#[test]
fn verify_report_is_bounded_for_a_million_bad_records() {
    let case = corpus()
        .into_iter()
        .find(|c| c.name == "tiny_block_million_bad_records")
        .unwrap();
    assert!(
        case.bytes.len() < 64 << 10,
        "the block is tiny: {}",
        case.bytes.len()
    );
    let dir = TempDir::new("bounded");
    let sdir = storage::stream_dir(dir.path(), 0);
    std::fs::create_dir_all(&sdir).unwrap();
    let path = sdir.join(case.file_name());
    std::fs::write(&path, &case.bytes).unwrap();
    let report = verify_dir(dir.path(), &VerifyOptions::default(), &mut |_| Ok(())).unwrap();
    assert_eq!(report.records, TINY_RECORDS as u64);
    assert_eq!(report.problems.len(), PROBLEMS_PER_FILE_MAX);
    assert_eq!(report.omitted.len(), 1);
    assert_eq!(report.omitted[0].path, path);
    assert_eq!(
        report.omitted[0].count,
        (TINY_RECORDS - PROBLEMS_PER_FILE_MAX) as u64
    );
    assert_eq!(report.problem_count(), TINY_RECORDS as u64);
    let p = &report.problems[0];
    assert!(
        p.to_string()
            .contains("a loss record of 0 bytes, expected 40"),
        "{p}"
    );
    assert!(
        report.omitted[0]
            .to_string()
            .contains("999980 more problems")
    );
    // A smaller limit is honoured too, and the record callback sees no loss record.
    let opts = VerifyOptions {
        problems_per_file_max: 3,
        ..VerifyOptions::default()
    };
    let mut seen = 0;
    let report = verify_dir(dir.path(), &opts, &mut |r| {
        assert_ne!(r.kind, KIND_LOSS);
        seen += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!((report.problems.len(), seen), (3, 0));
}

/// Issue 8, defect 10: loss counts summed past u64::MAX saturate and are flagged.
#[test]
fn loss_counts_saturate_and_are_flagged() {
    let case = corpus()
        .into_iter()
        .find(|c| c.name == "loss_counts_overflow")
        .unwrap();
    let dir = TempDir::new("saturate");
    let sdir = storage::stream_dir(dir.path(), 0);
    std::fs::create_dir_all(&sdir).unwrap();
    std::fs::write(sdir.join(case.file_name()), &case.bytes).unwrap();
    let stats = Stats::collect(dir.path()).unwrap();
    let s = &stats.streams[0];
    assert!(s.saturated);
    assert_eq!(s.lost.values().copied().collect::<Vec<_>>(), vec![u64::MAX]);
    assert!(stats.total().saturated);
    assert_eq!(stats.total().lost.values().copied().sum::<u64>(), u64::MAX);
}

/// Issue 8, defect 10: records at the ends of u64 and segments with extreme clock
/// offsets are read by wall-clock bounds exactly as their saturated wall time says.
#[test]
fn wall_clock_bounds_use_saturated_times() {
    for case in corpus()
        .iter()
        .filter(|c| c.name.starts_with("extreme_mono_to_wall") || c.name == "ts_u64_max")
    {
        let dir = TempDir::new("wall");
        let sdir = storage::stream_dir(dir.path(), 0);
        std::fs::create_dir_all(&sdir).unwrap();
        std::fs::write(sdir.join(case.file_name()), &case.bytes).unwrap();
        let Expect::Records { records, .. } = &case.expect else {
            unreachable!()
        };
        let walls: Vec<u64> = records
            .iter()
            .map(|r| storage::wall_ns(r.0, case.mono_to_wall_ns))
            .collect();
        // Every bound pair over the interesting points: what the reader returns is
        // exactly the records whose saturated wall time is in [from, to) (to = MAX:
        // unbounded).
        let mut points: Vec<u64> = walls.clone();
        points.extend([0, 1, 5, 6, u64::MAX - 1, u64::MAX, 1 << 63]);
        for &from in &points {
            for &to in &points {
                let opts = ReadOptions {
                    from_ns: from,
                    to_ns: to,
                    wall_clock: true,
                    ..ReadOptions::default()
                };
                let mut r = Reader::open(dir.path(), &opts).unwrap();
                let mut got = Vec::new();
                while let Some(l) = r.next_located().unwrap() {
                    assert_eq!(
                        l.wall_ns(),
                        storage::wall_ns(l.record.ts_ns, case.mono_to_wall_ns)
                    );
                    got.push(l.record.ts_ns);
                }
                let want: Vec<u64> = records
                    .iter()
                    .zip(&walls)
                    .filter(|(_, w)| **w >= from && (**w < to || to == u64::MAX))
                    .map(|(r, _)| r.0)
                    .collect();
                assert_eq!(got, want, "{} from {from} to {to}", case.name);
            }
        }
    }
}

/// The harness itself: an allocation above [`ALLOC_MAX`] really does stop the test
/// (checked in a child process, this same binary, running only the test below).
#[test]
fn the_allocation_cap_is_enforced() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "allocates_past_the_cap", "--nocapture"])
        .env("CRAFTED_ALLOC_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child survived: {stderr}");
    assert!(
        stderr.contains("refused an allocation above ALLOC_MAX"),
        "{stderr}"
    );
}

#[test]
fn allocates_past_the_cap() {
    if std::env::var_os("CRAFTED_ALLOC_CHILD").is_none() {
        return; // only meaningful as the child of the test above
    }
    let v = vec![1u8; ALLOC_MAX + 1];
    std::hint::black_box(&v);
}
