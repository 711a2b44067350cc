//! The ring and block buffers are made once per stream and reused by every segment
//! (issue 8): a counting allocator (this binary's global allocator, counting per thread,
//! so the test harness's own threads do not count) shows that rotating through many segments allocates
//! only names and paths, not a new ring and ~1 MiB of buffers each time.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use storage::{Durability, IoBackend, RecordRef, StreamWriter};

thread_local! {
    /// Bytes allocated by this thread.
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    let _ = BYTES.try_with(|n| n.set(n.get() + bytes as u64));
}

struct Counting;

// SAFETY: forwards every call to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new);
        // SAFETY: `p` came from `System` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes allocated per rotation at most: a few names and paths.
const BYTES_PER_ROTATION_MAX: u64 = 8 << 10;

fn rotate_many(io: IoBackend) {
    let dir = TempDir::new("rotation-alloc");
    let mut cfg = config(dir.path(), 0, io);
    cfg.block_bytes = 64 << 10;
    cfg.segment_bytes_max = 128 << 10;
    cfg.durability = Durability::None;
    let mut w = StreamWriter::create(cfg).unwrap();
    let recs: Vec<_> = (0..20_000).map(|i| record(i, 0)).collect();
    let mut i = 0;
    let mut append_until_sealed = |w: &mut StreamWriter, segments: u64| {
        let target = w.stats().segments_sealed + segments;
        while w.stats().segments_sealed < target {
            let (ts, kind, weight, bytes) = &recs[i % recs.len()];
            w.append(&RecordRef {
                ts_ns: *ts,
                kind: *kind,
                weight: *weight,
                bytes,
            })
            .unwrap();
            i += 1;
        }
    };
    // Warm up: the first segment grows whatever grows once (zstd contexts, staging).
    append_until_sealed(&mut w, 2);
    let before = BYTES.with(Cell::get);
    let rotations = 50;
    append_until_sealed(&mut w, rotations);
    let per_rotation = (BYTES.with(Cell::get) - before) / rotations;
    eprintln!("{io:?}: {per_rotation} bytes allocated per rotation");
    assert!(
        per_rotation <= BYTES_PER_ROTATION_MAX,
        "{io:?}: {per_rotation} bytes allocated per rotation (a new ring and buffers per segment?)"
    );
    let stats = w.close().unwrap();
    assert_eq!(stats.io_buffer_allocations, 1);
    assert!(stats.segments_sealed >= rotations + 2);
    assert_eq!(stats.records_on_disk, stats.records);
}

#[test]
fn rotation_reuses_the_ring_and_buffers() {
    rotate_many(IoBackend::Uring);
    rotate_many(IoBackend::Portable);
}
