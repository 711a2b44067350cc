//! Decoding ring records in place, and decoding plus text formatting, on a realistic
//! synthetic mix. Run: `cargo bench -p bench --bench decode`.

use std::hint::black_box;

use bench::synthetic_mix;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

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
                engine::output::text::write_text(&mut out, &ev).expect("write to memory");
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
