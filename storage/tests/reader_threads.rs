//! Dropping a Reader stops and joins its decode threads: nothing keeps reading the
//! files after it is gone (found by fuzzing segment_reader: LeakSanitizer saw the
//! thread-local state of decode threads still running after the Reader was dropped).
//!
//! A guard more than a proof: without the join, workers usually also vanish within
//! microseconds (their channel closes and their next send fails), so this test does not
//! reliably fail on the old code; it fails if a worker keeps running (e.g. a worker that
//! ignored a closed channel). The fuzz run is the evidence that the join was needed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use storage::{IoBackend, ReadOptions, Reader, StreamWriter};

/// How long an exited thread may still show in `/proc/self/task` after it was joined
/// (the kernel's exit bookkeeping runs after the join returns).
const LINGER_MAX: Duration = Duration::from_millis(20);

fn decode_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("decode-"))
        .count()
}

#[test]
fn dropping_a_reader_joins_its_decode_threads() {
    let dir = TempDir::new("reader-threads");
    for stream in 0..3 {
        let mut w = StreamWriter::create(config(dir.path(), stream, IoBackend::Portable)).unwrap();
        write(&mut w, stream, 0..3000);
        w.close().unwrap();
    }
    for _ in 0..20 {
        let mut r = Reader::open(dir.path(), &ReadOptions::default()).unwrap();
        assert!(r.next_record().unwrap().is_some());
        drop(r);
        let dropped = Instant::now();
        while decode_threads() > 0 {
            assert!(
                dropped.elapsed() < LINGER_MAX,
                "decode threads still running after their Reader was dropped"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
