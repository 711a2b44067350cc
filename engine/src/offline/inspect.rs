//! `engine inspect`: what a data directory holds, per stream and in total.

use std::io::Write;
use std::path::Path;

use storage::Stats;

use super::{ensure_dir, write_skipped};
use crate::enrich::enricher::ENRICH_STREAM_ID;
use crate::error::Result;
use crate::output::text::WallTime;
use crate::output::{reason_name, record_kind_name};
use crate::semantic::marker::KIND_WINDOW;

/// `engine inspect`: what a data directory holds.
pub fn inspect<W: Write>(dir: &Path, out: &mut W) -> Result<()> {
    ensure_dir(dir)?;
    // A segment of another event ABI is refused, naming the file and the version.
    let mut stats = Stats::collect_expecting_abi(dir, Some(bpf::abi::ABI_VERSION))?;
    // Window markers (the semantic path's) and the records of kinds not captured are
    // not events: counted apart.
    let mut markers = std::collections::HashMap::new();
    let mut unavailable = 0u64;
    for s in &mut stats.streams {
        let m = s.per_kind.remove(&KIND_WINDOW).unwrap_or(0);
        let u = s
            .per_kind
            .remove(&crate::unavailable::KIND_UNAVAILABLE)
            .unwrap_or(0);
        s.events = s.events.saturating_sub(m + u);
        s.weighted_events = s.weighted_events.saturating_sub(m + u);
        markers.insert(s.id, m);
        unavailable += u;
    }
    let total_markers: u64 = markers.values().sum();
    let mut rows: Vec<(String, storage::StreamStats, bool, u64)> = stats
        .streams
        .iter()
        .map(|s| {
            let table = s.id == ENRICH_STREAM_ID || s.id == crate::perf::PERF_STREAM_ID;
            let name = if s.id == ENRICH_STREAM_ID {
                format!("stream {} (enrichment: process and cgroup tables)", s.id)
            } else if table {
                format!("stream {} (perf: interval aggregates)", s.id)
            } else {
                format!("stream {}", s.id)
            };
            (
                name,
                s.clone(),
                table,
                markers.get(&s.id).copied().unwrap_or(0),
            )
        })
        .collect();
    // The total is of the event streams: table records are not events.
    let mut events_only = stats.clone();
    events_only
        .streams
        .retain(|s| s.id != ENRICH_STREAM_ID && s.id != crate::perf::PERF_STREAM_ID);
    if events_only.streams.len() > 1 {
        rows.push((
            "total (event streams)".to_string(),
            events_only.total(),
            false,
            total_markers,
        ));
    }
    for (name, s, table, markers) in &rows {
        // Table records are not events: counted as records, never sampled.
        let unit = if *table { "table records" } else { "events" };
        let off = s.mono_to_wall_ns as i128;
        writeln!(out, "{name}:")?;
        writeln!(
            out,
            "  segments {} ({} unsealed, {} torn bytes), blocks {}",
            s.segments, s.unsealed_segments, s.torn_bytes, s.blocks
        )?;
        writeln!(
            out,
            "  {unit} {}, bytes {} of records in {} on disk, ratio {:.1}x, {:.1} bytes/{}",
            s.events,
            s.record_bytes,
            s.file_bytes,
            s.compression_ratio(),
            if s.events > 0 {
                s.file_bytes as f64 / s.events as f64
            } else {
                0.0
            },
            if *table { "record" } else { "event" }
        )?;
        if s.blocks > 0 {
            writeln!(
                out,
                "  span {} .. {} ({:.3} s)",
                WallTime(s.min_ts as i128 + off),
                WallTime(s.max_ts as i128 + off),
                // Block metadata could lie (min above max): no underflow.
                s.max_ts.saturating_sub(s.min_ts) as f64 / 1e9
            )?;
        }
        let lost: Vec<String> = s
            .lost
            .iter()
            .map(|(r, c)| format!("{} {c}", reason_name(*r)))
            .collect();
        writeln!(
            out,
            "  losses: {} records{}{}",
            s.loss_records,
            if lost.is_empty() { "" } else { ": " },
            lost.join(", ")
        )?;
        if !*table {
            writeln!(
                out,
                "  sampling: {} of {} events kept with weight > 1; estimated events {}",
                s.sampled_records, s.events, s.weighted_events
            )?;
        }
        let kinds: Vec<String> = s
            .per_kind
            .iter()
            .map(|(k, c)| format!("{} {c}", record_kind_name(*k)))
            .collect();
        writeln!(out, "  kinds: {}", kinds.join(", "))?;
        if *markers > 0 {
            writeln!(
                out,
                "  window markers: {markers} (semantic path, not events)"
            )?;
        }
        if s.saturated {
            writeln!(
                out,
                "  some counts reached {} and stopped there: the true values are at least \
                 those shown",
                u64::MAX
            )?;
        }
    }
    if unavailable > 0 {
        // The records themselves: from when, which kinds, why (blocks of other kinds
        // are skipped through the index).
        let opts = storage::ReadOptions {
            kinds: Some(vec![crate::unavailable::KIND_UNAVAILABLE]),
            ..storage::ReadOptions::default()
        };
        let mut reader =
            storage::Reader::open_expecting_abi(dir, &opts, Some(bpf::abi::ABI_VERSION))?;
        while let Some(loc) = reader.next_located()? {
            let wall = loc.record.ts_ns as i128 + loc.mono_to_wall_ns as i128;
            let what = match crate::unavailable::decode(loc.record.bytes) {
                Ok(e) => e
                    .iter()
                    .map(|e| format!("{} ({})", e.kind, e.reason))
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(e) => e,
            };
            let what: String = what
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            writeln!(out, "not captured from {}: {what}", WallTime(wall))?;
        }
    }
    write_skipped(out, "", &stats.skipped)?;
    Ok(())
}
