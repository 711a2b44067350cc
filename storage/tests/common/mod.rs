//! Shared helpers for the storage integration tests.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use storage::{Durability, IoBackend, RecordRef, StreamWriter, WriterConfig};

/// A directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "storage-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A deterministic record: kind-specific size, zero tail, timestamp embedded at 0.
pub fn record(i: u64, stream: u32) -> (u64, u16, u32, Vec<u8>) {
    let ts = 1_000_000 + i * 1000 + stream as u64;
    let kind = [1u16, 10, 11, 20, 33][(i % 5) as usize];
    let len = 64 + (kind as usize % 7) * 40;
    let mut b = vec![0u8; len];
    b[..8].copy_from_slice(&ts.to_le_bytes());
    b[8..12].copy_from_slice(&stream.to_le_bytes());
    b[16..18].copy_from_slice(&kind.to_le_bytes());
    // Some entropy, as real records have (latencies, addresses).
    let mut x = i
        .wrapping_add(stream as u64 * 7919)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    b[24..32].copy_from_slice(&x.to_le_bytes());
    b[40..44].copy_from_slice(&(x as u32 >> 7).to_le_bytes());
    let text = format!("/var/lib/record/{i}");
    b[64.min(len - text.len())..][..text.len()].copy_from_slice(text.as_bytes());
    let weight = if i.is_multiple_of(7) { 10 } else { 1 };
    (ts, kind, weight, b)
}

pub fn config(dir: &Path, stream: u32, io: IoBackend) -> WriterConfig {
    let mut c = WriterConfig::new(dir, stream);
    c.io = io;
    c.block_bytes = 16 << 10;
    c.segment_bytes_max = 32 << 10;
    c.durability = Durability::OnSeal;
    c
}

/// Writes records `0..n` of `stream` and returns the writer unclosed.
pub fn write(w: &mut StreamWriter, stream: u32, range: std::ops::Range<u64>) {
    for i in range {
        let (ts, kind, weight, bytes) = record(i, stream);
        w.append(&RecordRef {
            ts_ns: ts,
            kind,
            weight,
            bytes: &bytes,
        })
        .unwrap();
    }
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg" || e == "open"))
        .collect();
    v.sort();
    v
}
pub mod crafted;
