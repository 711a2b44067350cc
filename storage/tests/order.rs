//! `file_order`: a stream's records in the order they were written, not by timestamp.

mod common;

use common::*;
use storage::{IoBackend, ReadOptions, Reader, RecordRef, StreamWriter};

#[test]
fn file_order_gives_write_order_and_the_default_gives_time_order() {
    let dir = TempDir::new("order");
    let mut w = StreamWriter::create(config(dir.path(), 0, IoBackend::Portable)).unwrap();
    // Out of time order within blocks and across a rotation.
    let written: Vec<u64> = (0..3000u64)
        .map(|i| 1_000_000 - (i % 7) * 1000 + i * 10)
        .collect();
    for &ts in &written {
        w.append(&RecordRef {
            ts_ns: ts,
            kind: 5,
            weight: 1,
            bytes: &ts.to_le_bytes(),
        })
        .unwrap();
    }
    w.close().unwrap();
    let read = |file_order| {
        let mut r = Reader::open(
            dir.path(),
            &ReadOptions {
                file_order,
                streams: Some(vec![0]),
                ..ReadOptions::default()
            },
        )
        .unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec.ts_ns);
        }
        out
    };
    assert_eq!(read(true), written);
    // By default the same records, each block's by time: not the write order.
    let by_time = read(false);
    assert_ne!(by_time, written);
    let (mut a, mut b) = (by_time, written);
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
}
