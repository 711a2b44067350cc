//! Context records: kinds handed out from the head of the segment covering the start of
//! the range (and whatever the kind filter), so a reader starting in the middle of a
//! recording can rebuild state that a writer snapshots at each segment head.

mod common;

use common::*;
use storage::{IoBackend, ReadOptions, Reader, RecordRef, StreamWriter};

const SNAP: u16 = 62;
const EVENT: u16 = 5;

fn put(w: &mut StreamWriter, ts: u64, kind: u16) {
    let bytes = ts.to_le_bytes();
    w.append(&RecordRef {
        ts_ns: ts,
        kind,
        weight: 1,
        bytes: &bytes,
    })
    .unwrap();
}

/// Stream 0: segment A (ts 100..=190: snapshot at 100, events every 10, an update at
/// 150), segment B (ts 200..=290: snapshot at 200, events, an update at 250), segment C
/// (ts 300..=390 likewise). Stream 1: events only, at odd times 105..=395.
fn recording(dir: &std::path::Path) {
    let mut w = StreamWriter::create(config(dir, 0, IoBackend::Portable)).unwrap();
    for seg in 1..=3u64 {
        let base = seg * 100;
        put(&mut w, base, SNAP);
        for t in (base..base + 100).step_by(10) {
            put(&mut w, t, EVENT);
            if t == base + 50 {
                put(&mut w, t, SNAP);
            }
        }
        w.flush().unwrap();
        w.seal().unwrap();
    }
    w.close().unwrap();
    let mut w = StreamWriter::create(config(dir, 1, IoBackend::Portable)).unwrap();
    for t in (105..=395).step_by(10) {
        put(&mut w, t, EVENT);
    }
    w.close().unwrap();
}

/// (stream, ts, kind, context) of every record read with `opts`.
fn read(dir: &std::path::Path, opts: &ReadOptions) -> Vec<(u32, u64, u16, bool)> {
    let mut r = Reader::open(dir, opts).unwrap();
    let mut out = Vec::new();
    while let Some(l) = r.next_located().unwrap() {
        out.push((l.stream, l.record.ts_ns, l.record.kind, l.context));
    }
    out
}

#[test]
fn context_comes_from_the_head_of_the_segment_covering_the_start() {
    let dir = TempDir::new("context");
    recording(dir.path());
    let opts = ReadOptions {
        from_ns: 260,
        to_ns: 330,
        kinds: Some(vec![EVENT]),
        context_kinds: Some(vec![SNAP]),
        ..ReadOptions::default()
    };
    let got = read(dir.path(), &opts);
    // Context: segment B's snapshot and update (before 260), segment C's snapshot (in
    // range, but not a wanted kind); nothing of segment A.
    let context: Vec<(u64, bool)> = got
        .iter()
        .filter(|r| r.2 == SNAP)
        .map(|r| (r.1, r.3))
        .collect();
    assert_eq!(context, vec![(200, true), (250, true), (300, true)]);
    // Events: exactly those wanted, from both streams, not as context.
    let events: Vec<(u32, u64)> = got
        .iter()
        .filter(|r| r.2 == EVENT)
        .map(|r| {
            assert!(!r.3, "{r:?}");
            (r.0, r.1)
        })
        .collect();
    let mut expected: Vec<(u32, u64)> = (260..330)
        .step_by(10)
        .map(|t| (0, t))
        .chain((265..330).step_by(10).map(|t| (1, t)))
        .collect();
    expected.sort_by_key(|&(s, t)| (t, s));
    assert_eq!(events, expected);
    // Merged in time order, context included.
    assert!(got.windows(2).all(|w| w[0].1 <= w[1].1), "{got:?}");
}

#[test]
fn wanted_kinds_are_not_context_and_nothing_after_the_end_is() {
    let dir = TempDir::new("context-all");
    recording(dir.path());
    let opts = ReadOptions {
        from_ns: 260,
        to_ns: 301,
        context_kinds: Some(vec![SNAP]),
        ..ReadOptions::default()
    };
    let snaps: Vec<(u64, bool)> = read(dir.path(), &opts)
        .into_iter()
        .filter(|r| r.2 == SNAP)
        .map(|r| (r.1, r.3))
        .collect();
    // 200 and 250 before the range: context; 300 in range and of a wanted kind: not
    // context; 350 after the range: not read.
    assert_eq!(snaps, vec![(200, true), (250, true), (300, false)]);
}

#[test]
fn without_a_start_before_every_segment_context_starts_at_the_first() {
    let dir = TempDir::new("context-first");
    recording(dir.path());
    let opts = ReadOptions {
        kinds: Some(vec![EVENT]),
        context_kinds: Some(vec![SNAP]),
        ..ReadOptions::default()
    };
    let snaps: Vec<u64> = read(dir.path(), &opts)
        .into_iter()
        .filter(|r| r.2 == SNAP)
        .map(|r| {
            assert!(r.3);
            r.1
        })
        .collect();
    assert_eq!(snaps, vec![100, 150, 200, 250, 300, 350]);
    let opts = ReadOptions {
        from_ns: 50,
        kinds: Some(vec![EVENT]),
        context_kinds: Some(vec![SNAP]),
        ..ReadOptions::default()
    };
    let first = read(dir.path(), &opts)
        .into_iter()
        .find(|r| r.2 == SNAP)
        .unwrap();
    assert_eq!(first.1, 100);
}

#[test]
fn without_context_kinds_the_read_is_unchanged() {
    let dir = TempDir::new("context-none");
    recording(dir.path());
    let plain = ReadOptions {
        from_ns: 260,
        to_ns: 330,
        kinds: Some(vec![EVENT]),
        ..ReadOptions::default()
    };
    let got = read(dir.path(), &plain);
    assert!(got.iter().all(|r| r.2 == EVENT && !r.3));
    assert_eq!(got.len(), 7 + 7);
    // Segment A is not read at all: its only block holds neither wanted records nor
    // context.
    let mut r = Reader::open(dir.path(), &plain).unwrap();
    while r.next_record().unwrap().is_some() {}
    let c = r.block_counts();
    assert_eq!((c.read, c.skipped), (3, 1), "{c:?}");
}
