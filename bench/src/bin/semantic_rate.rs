//! How many events per second the semantic thread keeps up with: two cores' records
//! of the synthetic mix (about 100,000 per core per second of kernel time) are folded
//! into windows, then the semantic thread merges each window, looks its notable
//! events up in the enrichment tables, correlates them and writes the lines, timed
//! alone. Its rate is the events those windows stand for over its time.
//!
//! ```sh
//! cargo build --release -p bench --bin semantic_rate
//! target/release/semantic_rate [RECORDS_PER_CORE] [-o KEY=VALUE ...]
//! ```

use engine::Config;
use engine::internals::semantic_rate;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut per_core = 1_000_000usize;
    let mut sets = Vec::new();
    while let Some(a) = args.next() {
        if a == "-o" {
            sets.push(args.next().expect("-o KEY=VALUE"));
        } else {
            per_core = a.parse().expect("records per core");
        }
    }
    let overrides: Vec<engine::config::Override> = sets
        .iter()
        .map(|s| s.parse().unwrap_or_else(|e| fail(&format!("-o {s}: {e}"))))
        .collect();
    let cfg = Config::load_with(None, &overrides).unwrap_or_else(|e| fail(&e.to_string()));
    let mixes = [
        bench::synthetic_mix(per_core, 11),
        bench::synthetic_mix(per_core, 23),
    ];
    let cores: Vec<Vec<&[u8]>> = mixes
        .iter()
        .map(|m| (0..m.len()).map(|i| m.record(i)).collect())
        .collect();
    let r = semantic_rate(&cfg, &cores);
    let secs = r.elapsed.as_secs_f64();
    println!(
        "{} events ({} notable) in {} windows of {} ms; {} lines, {} bytes; tables of {} processes",
        r.events, r.notable, r.windows, cfg.semantic.window_ms, r.lines, r.bytes, r.processes
    );
    println!(
        "semantic thread: {:.1} ms, {:.2} ms per window, {:.1} M events/s",
        secs * 1e3,
        secs * 1e3 / r.windows.max(1) as f64,
        r.events as f64 / secs / 1e6
    );
}

fn fail(msg: &str) -> ! {
    eprintln!("semantic_rate: {msg}");
    std::process::exit(2);
}
