//! Decoding a record into a typed view allocates nothing: checked with a counting
//! global allocator over records of every kind.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bpf::Kind;
use bpf::abi::EventHeader;

struct Counting;

thread_local! {
    /// Allocations made by this thread: the test harness's own threads may allocate
    /// while a test runs, and must not count.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards every call to the system allocator unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decode_allocates_nothing() {
    // Build one record of every kind (allocation allowed here).
    let mut buffers: Vec<Vec<u64>> = Vec::new();
    for &kind in Kind::ALL {
        let mut words = vec![0u64; kind.record_len() / 8];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        let h: &mut EventHeader = bytemuck::from_bytes_mut(&mut bytes[..64]);
        h.kind = kind as u16;
        h.len = kind.record_len() as u32;
        buffers.push(words);
    }
    let before = allocs();
    let mut sum = 0u64;
    for _ in 0..1000 {
        for words in &buffers {
            let ev = bpf::decode(bytemuck::cast_slice(words)).expect("decodes");
            sum = sum.wrapping_add(ev.kind as u64 + ev.comm().len() as u64);
        }
    }
    let after = allocs();
    assert_eq!(after - before, 0, "decode allocated");
    assert!(sum > 0);
}
