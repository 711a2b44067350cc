//! Instructions the semantic fold adds per event, counted by callgrind (repeatable on a
//! noisy machine, unlike time): the pipeline over N records of the synthetic mix, with
//! and without the semantic path. Run each under callgrind and difference two sizes to
//! take the set-up out:
//!
//! ```sh
//! cargo build --release -p bench --bin fold_cost
//! for mode in off on; do for n in 100000 200000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/fold_cost $mode $n 2>&1 | grep Collected
//! done; done
//! ```
//!
//! Per event = (Ir at 200000 - Ir at 100000) / 100000, for each mode.

use engine::Config;
use engine::internals::{Filter, Pipeline, Sampler, attach_semantic};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let on = args.get(1).is_some_and(|a| a == "on");
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let records = bench::synthetic_mix(n, 11);
    let dir = std::env::temp_dir().join(format!("fold-cost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut cfg = Config::embedded_default();
    cfg.storage.data_dir = dir.clone();
    cfg.storage.durability = engine::config::DurabilityMode::None;
    cfg.storage.io = engine::config::IoMode::Portable;
    let writer = storage::StreamWriter::create(engine::internals::writer_config(&cfg, 0, 1))
        .expect("writer");
    let mut p = Pipeline::new(
        writer,
        Filter::new(&cfg.filter),
        Sampler::new(0, 0, 0, 1000),
        0.8,
    );
    let _drain = on.then(|| attach_semantic(&mut p, &cfg, 0));
    for i in 0..records.len() {
        p.process(records.record(i));
    }
    let written: u64 = p.stats.written.iter().sum();
    assert_eq!(written, n as u64);
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
