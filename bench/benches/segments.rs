//! Segment storage on a realistic synthetic mix of kernel records: write (encode,
//! compress, write) events/s per core, bytes per event, decode events/s per core, and a
//! one-minute window against a full scan of a one-hour stream.
//!
//! Run: `cargo bench -p bench --bench segments`

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bench::{RecordBuf, synthetic_mix};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use storage::{
    Durability, IoBackend, ReadOptions, Reader, RecordRef, Stats, StreamWriter, WriterConfig,
};

const N: usize = 200_000;

fn write_all(dir: &Path, records: &RecordBuf, io: IoBackend, level: i32) -> storage::WriterStats {
    let mut cfg = WriterConfig::new(dir, 0);
    cfg.io = io;
    cfg.zstd_level = level;
    cfg.durability = Durability::None;
    let mut w = StreamWriter::create(cfg).expect("writer");
    for i in 0..records.len() {
        let h = records.header(i);
        w.append(&RecordRef {
            ts_ns: h.ts_ns,
            kind: h.kind,
            weight: 1,
            bytes: records.record(i),
        })
        .expect("append");
    }
    w.close().expect("close")
}

fn fresh_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("segbench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(c: &mut Criterion) {
    let records = synthetic_mix(N, 42);
    let raw: usize = records.bytes().len();
    // Correctness first: what goes in comes out, byte for byte.
    let dir = fresh_dir("check");
    let stats = write_all(&dir, &records, IoBackend::Uring, 1);
    let mut reader = Reader::open(&dir, &ReadOptions::default()).unwrap();
    let mut n = 0;
    while let Some(r) = reader.next_record().unwrap() {
        assert_eq!(r.bytes, records.record(n), "record {n}");
        n += 1;
    }
    assert_eq!(n, N);
    let on_disk = Stats::collect(&dir).unwrap().total().file_bytes;
    eprintln!(
        "mix: {N} records, {:.1} bytes/record raw, {:.1} bytes/record on disk (zstd 1), ratio {:.1}x, {} blocks",
        raw as f64 / N as f64,
        on_disk as f64 / N as f64,
        raw as f64 / on_disk as f64,
        stats.blocks
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let mut g = c.benchmark_group("write");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    for (name, io, level) in [
        ("uring_zstd1", IoBackend::Uring, 1),
        ("portable_zstd1", IoBackend::Portable, 1),
        ("uring_zstd-1", IoBackend::Uring, -1),
        ("uring_zstd3", IoBackend::Uring, 3),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = fresh_dir(name);
                    let start = Instant::now();
                    black_box(write_all(&dir, &records, io, level));
                    total += start.elapsed();
                    std::fs::remove_dir_all(&dir).unwrap();
                }
                total
            })
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let records = synthetic_mix(N, 7);
    let dir = fresh_dir("decode");
    write_all(&dir, &records, IoBackend::Uring, 1);
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(20);
    g.bench_function("all_records_merged", |b| {
        b.iter(|| {
            let mut reader = Reader::open(&dir, &ReadOptions::default()).unwrap();
            let mut sum = 0u64;
            while let Some(r) = reader.next_record().unwrap() {
                sum = sum.wrapping_add(r.ts_ns ^ r.bytes.len() as u64);
            }
            black_box(sum)
        })
    });
    g.finish();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One hour of events at ~2000/s in one stream; a one-minute window against a full scan.
fn seek(c: &mut Criterion) {
    let dir = fresh_dir("seek");
    let mut cfg = WriterConfig::new(&dir, 0);
    cfg.durability = Durability::None;
    cfg.block_bytes = 256 << 10;
    let mut w = StreamWriter::create(cfg).unwrap();
    let mix = synthetic_mix(10_000, 3);
    let hour_ns = 3_600_000_000_000u64;
    let total = 7_200_000u64;
    for i in 0..total {
        let j = (i % 10_000) as usize;
        w.append(&RecordRef {
            ts_ns: i * (hour_ns / total),
            kind: mix.header(j).kind,
            weight: 1,
            bytes: mix.record(j),
        })
        .unwrap();
    }
    w.close().unwrap();
    let window = ReadOptions {
        from_ns: 30 * 60_000_000_000,
        to_ns: 31 * 60_000_000_000,
        ..ReadOptions::default()
    };
    let count = |opts: &ReadOptions| {
        let mut r = Reader::open(&dir, opts).unwrap();
        let mut n = 0u64;
        while r.next_record().unwrap().is_some() {
            n += 1;
        }
        (n, r.block_counts())
    };
    let (n, blocks) = count(&window);
    let (all, all_blocks) = count(&ReadOptions::default());
    assert_eq!(n, total / 60, "a minute holds 1/60 of the events");
    assert_eq!(all, total);
    eprintln!(
        "seek: one minute of one hour: {n} records, decoded {} of {} blocks ({:.2}%), skipped {} by metadata",
        blocks.read,
        all_blocks.read,
        100.0 * blocks.read as f64 / all_blocks.read as f64,
        blocks.skipped
    );
    let mut g = c.benchmark_group("seek");
    g.sample_size(10);
    g.bench_function("one_minute_window", |b| {
        b.iter(|| black_box(count(&window)))
    });
    g.bench_function("full_scan", |b| {
        b.iter(|| black_box(count(&ReadOptions::default())))
    });
    g.finish();
    std::fs::remove_dir_all(&dir).unwrap();
}

criterion_group!(benches, write, decode, seek);
criterion_main!(benches);
