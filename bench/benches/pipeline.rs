//! The engine's user-space pipeline on one core, fed synthetic kernel records: decode in
//! place, filter, sample, encode, compress, write (io_uring, durability none).
//!
//! Run: `cargo bench -p bench --bench pipeline`

use std::time::{Duration, Instant};

use bench::synthetic_mix;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::Config;
use engine::internals::Filter;
use engine::internals::Pipeline;
use engine::internals::Sampler;
use engine::internals::enrich_tap;

const N: usize = 200_000;

fn pipeline(c: &mut Criterion) {
    let records = synthetic_mix(N, 11);
    // Lifecycle events in the mix (exec and exit; the mix has no fork or cgroup events).
    let lifecycle = (0..records.len())
        .filter(|&i| {
            let k = records.header(i).kind;
            k == bpf::Kind::ProcessExec as u16 || k == bpf::Kind::ProcessExit as u16
        })
        .count() as u64;
    let base = std::env::temp_dir().join(format!("pipebench-{}", std::process::id()));
    let run_with =
        |config: &Config, sampler: Sampler, enrich: bool, semantic: bool| -> (Duration, u64) {
            let _ = std::fs::remove_dir_all(&base);
            std::fs::create_dir_all(&base).unwrap();
            let mut cfg = config.clone();
            cfg.storage.data_dir = base.clone();
            cfg.storage.durability = engine::config::DurabilityMode::None;
            let writer =
                storage::StreamWriter::create(engine::internals::writer_config(&cfg, 0, 1))
                    .unwrap();
            let mut p = Pipeline::new(writer, Filter::new(&cfg.filter), sampler, 0.8);
            // With the semantic path: every written record folded into its window.
            let _windows = semantic.then(|| engine::internals::attach_semantic(&mut p, &cfg, 0));
            // With enrichment: lifecycle events are copied into the tap, and a thread in the
            // enrichment thread's place drains and decodes them meanwhile.
            let stop = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|s| {
                let drained = enrich.then(|| {
                    let (producer, mut consumer) = enrich_tap(cfg.enrich.queue_bytes);
                    p.set_tap(producer);
                    let stop = &stop;
                    s.spawn(move || {
                        let mut buf = Vec::new();
                        let mut n = 0u64;
                        loop {
                            let done = stop.load(std::sync::atomic::Ordering::Acquire);
                            let mut got = false;
                            while consumer.pop_into(&mut buf) {
                                n += u64::from(bpf::decode(&buf).is_ok());
                                got = true;
                            }
                            if done && !got {
                                return n;
                            }
                            if !got {
                                std::thread::sleep(Duration::from_micros(200));
                            }
                        }
                    })
                });
                let start = Instant::now();
                for i in 0..records.len() {
                    p.process(records.record(i));
                }
                let written: u64 = p.stats.written.iter().sum();
                let dropped = p.stats.enrich_dropped;
                p.writer.close().unwrap();
                let elapsed = start.elapsed();
                stop.store(true, std::sync::atomic::Ordering::Release);
                if let Some(h) = drained {
                    let n = h.join().unwrap();
                    assert_eq!(n + dropped, lifecycle, "every copy drained or counted");
                }
                (elapsed, written)
            })
        };
    let run_tapped = |config: &Config, sampler: Sampler, enrich: bool| -> (Duration, u64) {
        run_with(config, sampler, enrich, false)
    };
    let run = |config: &Config, sampler: Sampler| run_tapped(config, sampler, false);
    let config = Config::embedded_default();
    // Correctness first: with no budgets every record is written.
    let (_, written) = run(&config, Sampler::new(0, 0, 0, 1000));
    assert_eq!(written, N as u64);
    let (_, written) = run_tapped(&config, Sampler::new(0, 0, 0, 1000), true);
    assert_eq!(written, N as u64);
    let (_, written) = run_with(&config, Sampler::new(0, 0, 0, 1000), false, true);
    assert_eq!(written, N as u64);

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.bench_function("keep_all_zstd1", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| run(&config, Sampler::new(0, 0, 0, 1000)).0)
                .sum()
        })
    });
    g.bench_function("keep_all_zstd1_semantic", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| run_with(&config, Sampler::new(0, 0, 0, 1000), false, true).0)
                .sum()
        })
    });
    g.bench_function("keep_all_zstd1_enrich", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| run_tapped(&config, Sampler::new(0, 0, 0, 1000), true).0)
                .sum()
        })
    });
    let mut fast = config.clone();
    fast.storage.zstd_level = -3;
    g.bench_function("keep_all_zstd-3", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| run(&fast, Sampler::new(0, 0, 0, 1000)).0)
                .sum()
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&base);
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
