//! Decoding ring records in place, and decoding plus text or JSON formatting (what
//! `engine tail` and `engine replay` do per event), on a realistic synthetic mix.
//! Run: `cargo bench -p bench --bench decode`.

use std::hint::black_box;

use bench::synthetic_mix;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::internals::JsonWriter;

/// A wall-clock offset as a segment header holds it (2026-11-26T00:00:00Z at boot).
const MONO_TO_WALL_NS: i128 = 1_795_651_200_000_000_000;

fn decode(c: &mut Criterion) {
    let records = synthetic_mix(100_000, 42);
    // Correctness before speed: every record decodes to its kind.
    for i in 0..records.len() {
        bpf::decode(records.record(i)).expect("synthetic record decodes");
    }
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("in_place", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for i in 0..records.len() {
                let ev = bpf::decode(records.record(i)).expect("decodes");
                sum = sum.wrapping_add(ev.header.ts_ns);
            }
            black_box(sum)
        })
    });
    g.bench_function("and_format_text", |b| {
        let mut out = Vec::with_capacity(64 << 20);
        b.iter(|| {
            out.clear();
            for i in 0..records.len() {
                let ev = bpf::decode(records.record(i)).expect("decodes");
                engine::internals::write_text(&mut out, &ev).expect("write to memory");
            }
            black_box(out.len())
        })
    });
    // Correctness before speed: each event is one line, an object that starts with its
    // wall-clock time.
    let mut w = JsonWriter::default();
    for i in 0..records.len() {
        let ev = bpf::decode(records.record(i)).expect("decodes");
        w.event(&ev, 1, ev.header.ts_ns as i128 + MONO_TO_WALL_NS);
        let line = w.bytes();
        assert!(line.starts_with(b"{\"ts\":\"2026-11-") && line.ends_with(b"}\n"));
    }
    g.bench_function("and_format_json", |b| {
        let mut out = Vec::with_capacity(128 << 20);
        let mut w = JsonWriter::default();
        b.iter(|| {
            out.clear();
            for i in 0..records.len() {
                let ev = bpf::decode(records.record(i)).expect("decodes");
                w.event(&ev, 1, ev.header.ts_ns as i128 + MONO_TO_WALL_NS);
                out.extend_from_slice(w.bytes());
            }
            black_box(out.len())
        })
    });
    g.finish();
}

/// The JSON writer's timestamps: its per-second date cache against formatting every
/// timestamp with jiff (what the writer would do without the cache).
fn json_time(c: &mut Criterion) {
    use std::io::Write as _;
    let records = synthetic_mix(100_000, 42);
    let times: Vec<i128> = (0..records.len())
        .map(|i| records.header(i).ts_ns as i128 + MONO_TO_WALL_NS)
        .collect();
    // Correctness before speed: both write the same text.
    let mut w = JsonWriter::default();
    let mut plain = Vec::new();
    for &t in &times {
        w.clear();
        w.time("ts", t);
        plain.clear();
        write!(plain, ",\"ts\":\"{}\"", engine::internals::Rfc3339(t)).expect("to memory");
        assert_eq!(w.bytes(), &plain[..]);
    }
    let mut g = c.benchmark_group("json_time");
    g.throughput(Throughput::Elements(times.len() as u64));
    g.bench_function("cached_date", |b| {
        let mut w = JsonWriter::default();
        b.iter(|| {
            let mut n = 0;
            for &t in &times {
                w.clear();
                w.time("ts", t);
                n += w.bytes().len();
            }
            black_box(n)
        })
    });
    g.bench_function("jiff_each", |b| {
        let mut out = Vec::with_capacity(64);
        b.iter(|| {
            let mut n = 0;
            for &t in &times {
                out.clear();
                write!(out, ",\"ts\":\"{}\"", engine::internals::Rfc3339(t)).expect("to memory");
                n += out.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, decode, json_time);
criterion_main!(benches);
