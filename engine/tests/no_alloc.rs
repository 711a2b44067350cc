//! After warm-up, the hot path (decode, filter, sample, encode, compress, write)
//! allocates nothing per event: checked with a counting global allocator over 200,000
//! records and dozens of block writes. A second test crosses segment rotations: each
//! costs a few small allocations (file names), never the block buffers or the ring.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bpf::Kind;
use bpf::abi::{EventHeader, FileOp, SyscallEvent};
use engine::Config;
use engine::internals::Filter;
use engine::internals::Pipeline;
use engine::internals::Sampler;

struct Counting;
thread_local! {
    /// Allocations and bytes allocated by this thread: the test harness's own threads
    /// (and the other test of this file) may allocate meanwhile, and must not count.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    let _ = BYTES.try_with(|n| n.set(n.get() + bytes));
}

// SAFETY: forwards to the system allocator unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        count(new);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Records of two kinds, 8-byte aligned, with varying fields.
fn records(n: usize) -> Vec<Vec<u64>> {
    (0..n)
        .map(|i| {
            let kind = if i % 3 == 0 {
                Kind::Syscall
            } else {
                Kind::FileOpen
            };
            let len = kind.record_len();
            let mut words = vec![0u64; len / 8];
            let b: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
            let (head, body) = b.split_at_mut(64);
            let h: &mut EventHeader = bytemuck::from_bytes_mut(head);
            h.ts_ns = 1_000_000 + i as u64 * 1000;
            h.kind = kind as u16;
            h.len = len as u32;
            // More processes, paths and directories than a partial's maps hold (320 keys
            // at the default top_n): the fold's caches spill and its maps drop keys.
            h.pid = 100 + (i % 601) as u32;
            h.tid = h.pid;
            h.comm[..6].copy_from_slice(b"worker");
            if kind == Kind::FileOpen {
                let p: &mut FileOp = bytemuck::from_bytes_mut(body);
                let path = format!("/var/lib/app/{}/{}", i % 13, i % 1009);
                p.path[..path.len()].copy_from_slice(path.as_bytes());
                p.path_len = path.len() as u32;
                p.ret = (i % 17) as i64;
            } else {
                let p: &mut SyscallEvent = bytemuck::from_bytes_mut(body);
                p.id = (i % 300) as u32;
                p.ret = i as i64;
            }
            words
        })
        .collect()
}

/// A pipeline writing under `dir` (made afresh) with the embedded default config as
/// `tune` changes it, warmed up with 100,000 records; and 200,000 more to measure.
fn warmed_up(dir: &std::path::Path, tune: impl FnOnce(&mut Config)) -> (Pipeline, Vec<Vec<u64>>) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut config = Config::embedded_default();
    config.storage.data_dir = dir.to_path_buf();
    tune(&mut config);
    let writer =
        storage::StreamWriter::create(engine::internals::writer_config(&config, 0, 1)).unwrap();
    let mut p = Pipeline::new(
        writer,
        Filter::new(&config.filter),
        Sampler::new(0, 0, 0, 1000),
        0.8,
    );
    let mut recs = records(300_000);
    let hot = recs.split_off(100_000);
    for r in &recs {
        p.process(bytemuck::cast_slice(r));
    }
    (p, hot)
}

#[test]
fn hot_path_allocates_nothing_after_warm_up() {
    let dir = std::env::temp_dir().join(format!("engine-noalloc-{}", std::process::id()));
    let (mut p, hot) = warmed_up(&dir, |c| c.storage.block_bytes = 256 << 10);
    let blocks_before = p.writer.stats().blocks;
    let before = ALLOCS.with(Cell::get);
    for r in &hot {
        p.process(bytemuck::cast_slice(r));
    }
    let allocations = ALLOCS.with(Cell::get) - before;
    let blocks = p.writer.stats().blocks - blocks_before;
    assert!(blocks >= 20, "the measured stretch wrote {blocks} blocks");
    assert_eq!(
        allocations, 0,
        "{allocations} allocations for 200000 events and {blocks} blocks"
    );
    let total: u64 = p.stats.written.iter().sum();
    assert_eq!(total, 300_000);
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn segment_rotations_reuse_buffers_and_allocate_little() {
    let dir = std::env::temp_dir().join(format!("engine-noalloc-rot-{}", std::process::id()));
    let (mut p, hot) = warmed_up(&dir, |c| {
        c.storage.block_bytes = 64 << 10;
        // Two blocks per segment: a rotation every other block.
        c.storage.segment_bytes_max = 128 << 10;
        c.storage.durability = engine::config::DurabilityMode::None;
        // Retention lists the stream directory at each seal (a few allocations per
        // segment kept): proportional to segments, not events; left out of this count.
        c.storage.retention_bytes_max = 0;
        c.storage.retention_age_s = 0;
    });
    let sealed_before = p.writer.stats().segments_sealed;
    let (allocs, bytes) = (ALLOCS.with(Cell::get), BYTES.with(Cell::get));
    for r in &hot {
        p.process(bytemuck::cast_slice(r));
    }
    let allocations = ALLOCS.with(Cell::get) - allocs;
    let allocated = BYTES.with(Cell::get) - bytes;
    let stats = p.writer.stats();
    let rotations = (stats.segments_sealed - sealed_before) as usize;
    assert!(
        rotations >= 5,
        "the measured stretch rotated {rotations} times"
    );
    assert_eq!(
        stats.io_buffer_allocations, 1,
        "block buffers made once per stream"
    );
    // Per rotation: the new file's name and path, the sealed name (a handful of small
    // allocations); nothing in proportion to events or block size.
    assert!(
        allocations <= rotations * 16,
        "{allocations} allocations for {rotations} rotations"
    );
    assert!(
        allocated <= rotations * 4096,
        "{allocated} bytes allocated for {rotations} rotations (block buffers are 64 KiB)"
    );
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_enrichment_tap_allocates_nothing() {
    let dir = std::env::temp_dir().join(format!("engine-noalloc-tap-{}", std::process::id()));
    let (mut p, hot) = warmed_up(&dir, |c| c.storage.block_bytes = 256 << 10);
    let (producer, mut consumer) = engine::internals::enrich_tap(1 << 20);
    p.set_tap(producer);
    // Lifecycle records (exec), which the pipeline copies into the tap.
    let len = Kind::ProcessExec.record_len();
    let exec: Vec<Vec<u64>> = (0..1000)
        .map(|i| {
            let mut words = vec![0u64; len / 8];
            let b: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
            let h: &mut EventHeader = bytemuck::from_bytes_mut(&mut b[..64]);
            h.ts_ns = 5_000_000 + i as u64;
            h.kind = Kind::ProcessExec as u16;
            h.len = len as u32;
            h.pid = 7;
            words
        })
        .collect();
    let mut drained = Vec::with_capacity(4096);
    let mut copies = 0;
    let before = ALLOCS.with(Cell::get);
    for (i, r) in hot.iter().enumerate().take(100_000) {
        p.process(bytemuck::cast_slice(r));
        if i % 100 == 0 {
            p.process(bytemuck::cast_slice(&exec[(i / 100) % exec.len()]));
            while consumer.pop_into(&mut drained) {
                copies += 1;
            }
        }
    }
    let allocations = ALLOCS.with(Cell::get) - before;
    assert_eq!(copies, 1000, "every exec copied");
    assert_eq!(p.stats.enrich_dropped, 0);
    assert_eq!(allocations, 0, "{allocations} allocations with the tap on");
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_semantic_fold_allocates_nothing() {
    let dir = std::env::temp_dir().join(format!("engine-noalloc-sem-{}", std::process::id()));
    let (mut p, hot) = warmed_up(&dir, |c| c.storage.block_bytes = 256 << 10);
    let config = Config::embedded_default();
    let mut drain = engine::internals::attach_semantic(&mut p, &config, 1_000_000);
    let before = ALLOCS.with(Cell::get);
    for r in &hot {
        p.process(bytemuck::cast_slice(r));
    }
    let allocations = ALLOCS.with(Cell::get) - before;
    assert_eq!(
        allocations, 0,
        "{allocations} allocations for 200000 events folded into windows"
    );
    assert_eq!(drain.drain(), 0, "no window closed without a tick");
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
