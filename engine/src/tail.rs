//! The live tail: load the collector, drain every CPU ring on one thread, print each
//! event as a line, and at the end print the per-kind accounting.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use bpf::abi::KIND_MAX;
use bpf::{CaptureConfig, Collector, Kind, Poller, decode};

use crate::config::{DEFAULT_CGROUPS_MAX, DEFAULT_EXIT_GRACE_MS, DEFAULT_PROCESSES_MAX};
use crate::enrich::tracker::{Sources, Tracker};
use crate::error::{Error, Result};
use crate::pipeline::monotonic_ns;

/// What the tail saw, per kind id: records delivered to user space and records that
/// did not decode.
#[derive(Debug)]
pub struct TailStats {
    pub delivered: [u64; KIND_MAX],
    pub undecodable: u64,
}

/// Runs until `duration` passes or a stop signal arrives, writing events to `out`.
pub fn run(
    config: &CaptureConfig,
    duration: Option<Duration>,
    out: &mut impl Write,
) -> Result<(Collector, TailStats)> {
    let mut collector =
        Collector::load(config).map_err(Error::capture("starting kernel capture"))?;
    crate::run::check_required(collector.report(), crate::config::Require::Any)?;
    // The same tables as the main job's enrichment, kept here and never written.
    let mut tracker = Tracker::new(
        DEFAULT_PROCESSES_MAX,
        DEFAULT_CGROUPS_MAX,
        DEFAULT_EXIT_GRACE_MS * 1_000_000,
        Sources::host(),
    );
    tracker.scan(monotonic_ns());
    tracker.take_updates().for_each(drop);
    let mut next_expire = monotonic_ns();
    eprintln!("engine: attached {}", collector.attached_summary());
    let mut rings = collector.take_rings();
    let mut poller = Poller::new(&rings).map_err(Error::io("creating epoll instance"))?;
    let started = Instant::now();
    let mut stats = TailStats {
        delivered: [0; KIND_MAX],
        undecodable: 0,
    };
    let mut drain = |rings: &mut Vec<bpf::CpuRing>, out: &mut dyn Write| -> io::Result<usize> {
        let mut total = 0;
        let mut result = Ok(());
        for ring in rings.iter_mut() {
            total += ring.drain(4096, |bytes| match decode(bytes) {
                Ok(ev) => {
                    stats.delivered[ev.kind as usize] += 1;
                    if crate::enrich::is_lifecycle(&ev) {
                        tracker.event(&ev);
                    } else {
                        // Live, a process the tables do not know yet can be read now.
                        tracker.ensure(ev.header.pid, ev.header.ts_ns);
                    }
                    tracker.take_updates().for_each(drop);
                    if result.is_ok() {
                        let e = tracker.tables.lookup(ev.header);
                        result = crate::output::text::write_text_enriched(&mut *out, &ev, &e);
                    }
                }
                Err(_) => stats.undecodable += 1,
            });
        }
        let now = monotonic_ns();
        if now >= next_expire {
            next_expire = now + 1_000_000_000;
            tracker.expire(now);
            tracker.take_updates().for_each(drop);
        }
        result.map(|_| total)
    };
    loop {
        let stopping =
            crate::signals::stop_requested() || duration.is_some_and(|d| started.elapsed() >= d);
        if stopping {
            // Final drain: everything the kernel wrote before we stopped.
            while drain(&mut rings, out)? > 0 {}
            break;
        }
        match drain(&mut rings, out) {
            // Sleep only when the rings were empty: the kernel wakes us when the pending
            // bytes cross wakeup_bytes, and the timeout picks up the trickle below it.
            Ok(0) => poller.wait(Duration::from_millis(50))?.for_each(drop),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(Error::io("writing events")(e)),
        }
    }
    out.flush().ok();
    Ok((collector, stats))
}

/// Writes the accounting per kind: produced = delivered + ring_full (exact), plus what
/// the kernel filtered and rate-limited.
pub fn write_summary(out: &mut impl Write, collector: &Collector, stats: &TailStats) -> Result<()> {
    let counters = collector
        .counters()
        .map_err(Error::capture("reading kernel counters"))?;
    writeln!(
        out,
        "{:<26} {:>10} {:>10} {:>10} {:>10} {:>12} {:>9}",
        "kind", "produced", "delivered", "ring_full", "filtered", "rate_limited", "unpaired"
    )?;
    for &kind in Kind::ALL {
        let c = &counters[kind as usize];
        let d = stats.delivered[kind as usize];
        if c.produced + c.filtered + c.rate_limited + c.unpaired + d == 0 {
            continue;
        }
        writeln!(
            out,
            "{:<26} {:>10} {:>10} {:>10} {:>10} {:>12} {:>9}",
            kind.name(),
            c.produced,
            d,
            c.ring_full,
            c.filtered,
            c.rate_limited,
            c.unpaired
        )?;
    }
    if stats.undecodable > 0 {
        writeln!(out, "undecodable records: {}", stats.undecodable)?;
    }
    Ok(())
}

/// `engine tail`: the given categories (names as in the config) until `duration` passes
/// or SIGINT/SIGTERM/SIGQUIT; events to `out`, the accounting to `report`.
pub fn tail(
    categories: &[String],
    duration: Option<Duration>,
    out: &mut impl Write,
    report: &mut impl Write,
) -> Result<()> {
    let mut set = std::collections::BTreeSet::new();
    for name in categories {
        let Some(c) = bpf::Category::from_name(name.trim()) else {
            return Err(Error::Invalid(format!(
                "--categories: unknown category {name:?}"
            )));
        };
        set.insert(c);
    }
    let config = CaptureConfig {
        categories: set,
        ..CaptureConfig::default()
    };
    crate::caps::check_capture(&config)?;
    crate::signals::install_stop();
    let (collector, stats) = run(&config, duration, out)?;
    write_summary(report, &collector, &stats)
}
