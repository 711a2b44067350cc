//! Dropping a Reader stops and joins its decode threads: nothing keeps reading the
//! files after it is gone (found by fuzzing segment_reader: LeakSanitizer saw the
//! thread-local state of decode threads still running after the Reader was dropped).

mod common;

use common::*;
use storage::{IoBackend, ReadOptions, Reader, StreamWriter};

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
        assert_eq!(
            decode_threads(),
            3,
            "one decode thread per stream while reading"
        );
        drop(r);
        assert_eq!(decode_threads(), 0, "decode threads outlived their Reader");
    }
}
