//! One criterion group per hot-path stage, on the synthetic kernel mix: filter, sampler,
//! block encode + compress, and the SPSC hop between threads (rtrb). Decode, segment
//! write, read and seek are in `decode.rs` and `segments.rs`. Each checks a result
//! before it measures and reports events/s.
//!
//! Run: `cargo bench -p bench --bench stages`

use std::hint::black_box;

use bench::synthetic_mix;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::config;
use engine::internals::Filter;
use engine::internals::{Sampler, class_of};
use storage::{BlockBuilder, Compressor, RecordRef};

const N: usize = 100_000;

fn stages(c: &mut Criterion) {
    let mix = synthetic_mix(N, 5);
    let events: Vec<_> = (0..N)
        .map(|i| bpf::decode(mix.record(i)).expect("decodes"))
        .collect();

    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Elements(N as u64));

    // Filter: a realistic rule set (exclude a comm prefix, keep a path prefix).
    let rules = config::Filter {
        exclude_comms: vec!["kworker*".into()],
        path_prefixes: vec!["/usr".into(), "/etc".into(), "/var".into()],
        ..Default::default()
    };
    let filter = Filter::new(&rules);
    let kept = events.iter().filter(|e| filter.keep(e)).count();
    assert!(
        kept > 0 && kept < N,
        "the rules keep some and drop some ({kept})"
    );
    g.bench_function("filter", |b| {
        b.iter(|| events.iter().filter(|e| filter.keep(e)).count())
    });

    // Sampler: class, deterministic decision, counting (N = 1 here: the decision path).
    let mut sampler = Sampler::new(0, 0, 0, 1000);
    assert_eq!(
        events
            .iter()
            .filter(|e| sampler.decide(e, class_of(e)).is_some())
            .count(),
        N
    );
    g.bench_function("sampler", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for e in &events {
                n += sampler.decide(e, class_of(e)).unwrap_or(0) as u64;
            }
            black_box(n)
        })
    });

    // Block encode + compress: records into 1 MiB blocks, zstd 1.
    let mut builder = BlockBuilder::new(1 << 20);
    let mut zstd = Compressor::new(1).unwrap();
    let mut out = Vec::with_capacity(2 << 20);
    let encode_all = |builder: &mut BlockBuilder, zstd: &mut Compressor, out: &mut Vec<u8>| {
        let mut bytes = 0usize;
        for (i, e) in events.iter().enumerate() {
            let r = mix.record(i);
            builder.push(&RecordRef {
                ts_ns: e.header.ts_ns,
                kind: e.kind as u16,
                weight: 1,
                bytes: r,
            });
            if builder.raw_len() > (1 << 20) - 1024 {
                builder.finish(zstd, out).unwrap();
                bytes += out.len();
            }
        }
        builder.finish(zstd, out).unwrap();
        bytes + out.len()
    };
    let total = encode_all(&mut builder, &mut zstd, &mut out);
    assert!(
        total < mix.bytes().len() / 4,
        "compresses: {total} of {}",
        mix.bytes().len()
    );
    g.bench_function("encode_compress_zstd1", |b| {
        b.iter(|| encode_all(&mut builder, &mut zstd, &mut out))
    });

    // SPSC hop: record indices through an rtrb queue to a consumer thread and back.
    g.bench_function("spsc_hop", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(4096);
                let start = std::time::Instant::now();
                let consumer = std::thread::spawn(move || {
                    let mut sum = 0u64;
                    let mut got = 0;
                    while got < N {
                        if let Ok(v) = rx.pop() {
                            sum = sum.wrapping_add(v);
                            got += 1;
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                    sum
                });
                for i in 0..N as u64 {
                    let mut v = i;
                    loop {
                        match tx.push(v) {
                            Ok(()) => break,
                            Err(rtrb::PushError::Full(back)) => {
                                v = back;
                                std::hint::spin_loop();
                            }
                        }
                    }
                }
                let sum = consumer.join().unwrap();
                assert_eq!(
                    sum,
                    (N as u64 - 1) * N as u64 / 2,
                    "every value arrived once"
                );
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
