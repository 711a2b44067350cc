//! The quick start, in Rust: start a collector from a preset, take its process
//! executions and window summaries for a while, stop it (the segments are sealed).
//!
//! ```sh
//! cargo run --release -p engine --example quickstart -- /tmp/kevent-example 10
//! ```
//! (as root, like the `engine` command: it loads the kernel programs).

use std::time::{Duration, Instant};

use engine::api::Subscription;
use engine::{Collector, Config, Message};

fn main() -> Result<(), engine::Error> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "/tmp/kevent-example".into());
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);

    let mut config = Config::high_performance();
    config.storage.data_dir = dir.into();
    config.semantic.window_ms = 1000;
    let collector = Collector::start(config)?;
    let sub = collector.subscribe(Subscription {
        raw_events: true,
        kinds: vec!["process.exec".into()],
        summaries: true,
        correlations: true,
        ..Default::default()
    })?;

    let deadline = Instant::now() + Duration::from_secs(secs);
    while let Some(m) = sub.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        match m {
            Message::Events(batch) => {
                for e in batch {
                    println!(
                        "exec pid {} uid {} {} (container {})",
                        e.pid, e.uid, e.exe, e.container
                    );
                }
            }
            Message::Summary(s) => println!(
                "window {} .. {}: {} bytes of summary",
                s.start,
                s.end,
                s.json.len()
            ),
            Message::Correlation(c) => println!("correlation {}: {}", c.rule, c.description),
            Message::Dropped(d) => println!("dropped {} messages for this subscriber", d.total),
            Message::Notable(_) => {}
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let report = collector.stop()?;
    print!("{report}");
    Ok(())
}
