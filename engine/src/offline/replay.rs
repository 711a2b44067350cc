//! `engine replay`: the events of a data directory, merged across streams in time order,
//! as text or JSON lines.
//!
//! Every record the reader hands out is printed or counted: a record whose bytes do not
//! decode is reported on the diagnostics stream by segment file, block offset and index
//! in the block (the first [`UNDECODABLE_REPORTED_MAX`] one by one, then only counted)
//! and skipped, unless `strict`, where it stops the replay. Segments of another event
//! ABI version are refused before anything is read.

use std::io::Write;
use std::path::Path;

use bpf::Kind;
use bpf::abi::cstr_bytes;
use storage::{KIND_LOSS, Loss, ReadOptions, Reader};

use super::time::TimeRange;
use super::{ensure_dir, write_skipped};
use crate::enrich::record::{KIND_CGROUP, KIND_PROCESS};
use crate::enrich::tables::Tables;
use crate::error::{Error, Result};
use crate::output::json::JsonWriter;
use crate::output::text::{WallTime, write_aggregate, write_loss, write_replay};
use crate::perf::Aggregate;
use crate::semantic::marker::KIND_WINDOW;

/// Output format of `engine replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// What `engine replay` selects and how it treats bad records.
#[derive(Debug, Clone, Default)]
pub struct ReplayArgs {
    /// Kind names (`process.exec`, ..., `loss`); empty: all.
    pub kinds: Vec<String>,
    pub pid: Option<u32>,
    /// Exact, or a prefix with a trailing `*`.
    pub comm: Option<String>,
    /// Wall-clock bounds.
    pub range: TimeRange,
    pub limit: Option<u64>,
    /// Stop with an error at the first undecodable record instead of skipping it.
    pub strict: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Events and loss records written.
    pub shown: u64,
    /// Records skipped because they do not decode.
    pub undecodable: u64,
}

/// Undecodable records reported one by one; beyond that they are only counted.
pub const UNDECODABLE_REPORTED_MAX: u64 = 20;

fn comm_matches(pattern: &str, comm: &[u8]) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => comm.starts_with(prefix.as_bytes()),
        None => comm == pattern.as_bytes(),
    }
}

/// The reader's options for `args`: kinds by id, and wall-clock bounds only when some
/// bound is given (without bounds every record is read, whatever its segment's offset).
fn read_options(args: &ReplayArgs) -> Result<ReadOptions> {
    let mut kinds = Vec::new();
    for k in &args.kinds {
        if k == "loss" {
            kinds.push(KIND_LOSS);
        } else if let Some(kind) = Aggregate::kind_of(k) {
            kinds.push(kind);
        } else {
            let kind = Kind::from_name(k)
                .ok_or_else(|| Error::Invalid(format!("--kind: unknown kind {k:?}")))?;
            kinds.push(kind as u16);
        }
    }
    let TimeRange {
        from_unix_ns,
        to_unix_ns,
    } = args.range;
    // The reader's wall-clock bounds are u64 with `to = u64::MAX` meaning "no bound": a
    // given `--to` stays a bound.
    let unix = |t: i128| t.clamp(0, u64::MAX as i128 - 1) as u64;
    Ok(ReadOptions {
        from_ns: from_unix_ns.map_or(0, unix),
        to_ns: to_unix_ns.map_or(u64::MAX, unix),
        wall_clock: from_unix_ns.is_some() || to_unix_ns.is_some(),
        kinds: (!kinds.is_empty()).then_some(kinds),
        streams: None,
        // The table records, whatever the kinds asked for, from the head of the segment
        // that covers `--from` (it starts with a snapshot): the tables at `--from`.
        context_kinds: Some(vec![KIND_PROCESS, KIND_CGROUP]),
        file_order: false,
    })
}

/// JSON lines are written out in chunks of about this many bytes.
const JSON_SPILL_BYTES: usize = 1 << 16;

/// Writes the accumulated JSON lines to `out` once they are `at_least` bytes (0: now).
fn spill(json: &mut JsonWriter, out: &mut impl Write, at_least: usize) -> std::io::Result<()> {
    if json.bytes().len() >= at_least.max(1) {
        out.write_all(json.bytes())?;
        json.clear();
    }
    Ok(())
}

/// What the enrichment of an event depends on besides the tables: consecutive events
/// with the same key, and no table record between them, get the same enrichment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MemoKey {
    pid: u32,
    uid: u32,
    gid: u32,
    cgroup_id: u64,
    /// `process.exec` lines leave out the table's `exe` (theirs is the new one).
    exec: bool,
}

impl MemoKey {
    fn of(ev: &bpf::Event<'_>) -> MemoKey {
        let h = ev.header;
        MemoKey {
            pid: h.pid,
            uid: h.uid,
            gid: h.gid,
            cgroup_id: h.cgroup_id,
            exec: matches!(ev.payload, bpf::Payload::ProcessExec(_)),
        }
    }
}

/// The enrichment JSON of the last event line ([`JsonWriter::enrichment_again`]): events
/// come in runs from one process, and the lookup and its strings then cost one copy.
#[derive(Debug, Default)]
struct Memo {
    key: Option<MemoKey>,
    tail: Vec<u8>,
}

/// `engine replay`: the events of `dir` merged in time order, written to `out`;
/// undecodable records and progress are reported on `diag`.
pub(crate) fn replay<W: Write, D: Write>(
    dir: &Path,
    args: &ReplayArgs,
    format: Format,
    out: &mut W,
    diag: &mut D,
    bar: &super::progress::Bar,
) -> Result<ReplaySummary> {
    ensure_dir(dir)?;
    let opts = read_options(args)?;
    let mut reader = Reader::open_expecting_abi(dir, &opts, Some(bpf::abi::ABI_VERSION))?;
    write_skipped(diag, "replay: ", reader.skipped())?;
    let progress = bar.handle().is_some();
    let blocks = reader.progress();
    let mut json = JsonWriter::default();
    json.accumulate();
    let mut tables = Tables::for_reader();
    let mut memo = Memo::default();
    let mut summary = ReplaySummary::default();
    let mut seen = 0u64;
    loop {
        if args.limit.is_some_and(|l| summary.shown >= l) {
            break;
        }
        // Lines before a failure are written before it is reported.
        let next = reader.next_located();
        if next.is_err() {
            spill(&mut json, out, 0)?;
        }
        let Some(loc) = next? else {
            break;
        };
        let rec = loc.record;
        seen += 1;
        if progress && seen.is_multiple_of(1024) {
            let c = blocks.counts();
            bar.set(c.read + c.skipped);
        }
        // Each record's own segment says how its boot's clock maps to wall time.
        let wall = rec.ts_ns as i128 + loc.mono_to_wall_ns as i128;
        let problem = if rec.kind == KIND_PROCESS || rec.kind == KIND_CGROUP {
            // Table updates: applied, never shown.
            memo.key = None;
            match tables.apply_record(rec.kind, rec.bytes) {
                Ok(_) => continue,
                Err(e) => e.to_string(),
            }
        } else if loc.context || rec.kind == KIND_WINDOW {
            // Window markers belong to the semantic path (`engine summarize`).
            continue;
        } else if let Some(agg) = Aggregate::decode(rec.kind, rec.bytes) {
            match agg {
                Ok(a) => {
                    // Histograms are the machine's: --pid and --comm leave them out; flows and
                    // processes are selected by their process.
                    let keep = match a.process() {
                        Some((pid, comm)) => {
                            args.pid.is_none_or(|p| p == pid)
                                && args
                                    .comm
                                    .as_ref()
                                    .is_none_or(|c| comm_matches(c, cstr_bytes(comm)))
                        }
                        None => args.pid.is_none() && args.comm.is_none(),
                    };
                    if !keep {
                        continue;
                    }
                    match format {
                        Format::Json => {
                            json.aggregate(&a, loc.mono_to_wall_ns);
                            spill(&mut json, out, JSON_SPILL_BYTES)?;
                        }
                        Format::Text => write_aggregate(out, &a, loc.mono_to_wall_ns)?,
                    }
                    summary.shown += 1;
                    continue;
                }
                Err(e) => e,
            }
        } else if rec.kind == crate::unavailable::KIND_UNAVAILABLE {
            if args.pid.is_some() || args.comm.is_some() {
                continue;
            }
            match crate::unavailable::decode(rec.bytes) {
                Ok(entries) => {
                    spill(&mut json, out, 0)?;
                    write_unavailable(out, &entries, wall, format)?;
                    summary.shown += 1;
                    continue;
                }
                Err(e) => e,
            }
        } else if rec.kind == KIND_LOSS {
            if args.pid.is_some() || args.comm.is_some() {
                continue;
            }
            match Loss::decode(rec.bytes) {
                Some(l) => {
                    match format {
                        Format::Json => {
                            json.loss(&l, loc.mono_to_wall_ns);
                            spill(&mut json, out, JSON_SPILL_BYTES)?;
                        }
                        Format::Text => write_loss(out, &l, loc.mono_to_wall_ns)?,
                    }
                    summary.shown += 1;
                    continue;
                }
                None => format!("a loss record of {} bytes", rec.bytes.len()),
            }
        } else {
            match bpf::decode(rec.bytes) {
                Ok(ev) => {
                    let h = ev.header;
                    if args.pid.is_some_and(|p| h.pid != p)
                        || args
                            .comm
                            .as_ref()
                            .is_some_and(|c| !comm_matches(c, cstr_bytes(&h.comm)))
                    {
                        continue;
                    }
                    match format {
                        Format::Json => {
                            json.event(&ev, rec.weight, wall);
                            let key = MemoKey::of(&ev);
                            if memo.key == Some(key) {
                                json.enrichment_again(&memo.tail);
                            } else {
                                let start = json.bytes().len().saturating_sub(2);
                                json.enrichment(&ev, &tables.lookup(h));
                                memo.tail.clear();
                                memo.tail.extend_from_slice(&json.bytes()[start..]);
                                memo.key = Some(key);
                            }
                            spill(&mut json, out, JSON_SPILL_BYTES)?;
                        }
                        Format::Text => {
                            write_replay(out, &ev, rec.weight, wall, Some(&tables.lookup(h)))?
                        }
                    }
                    summary.shown += 1;
                    continue;
                }
                Err(e) => e.to_string(),
            }
        };
        // Where it is, as `engine verify` names a block: the file, the block's offset in
        // it, the record's index in the block.
        let what = format!(
            "{}: block at offset {}, record {} (kind {}, at {}, ts_ns {}): does not decode: {problem}",
            loc.path.display(),
            loc.block_offset,
            loc.index,
            crate::output::record_kind_name(rec.kind),
            WallTime(wall),
            rec.ts_ns
        );
        if args.strict {
            spill(&mut json, out, 0)?;
            return Err(Error::Invalid(format!(
                "{what} (--strict stops at the first undecodable record)"
            )));
        }
        summary.undecodable += 1;
        if summary.undecodable <= UNDECODABLE_REPORTED_MAX {
            writeln!(diag, "replay: {what}; skipped")?;
        }
    }
    spill(&mut json, out, 0)?;
    if progress {
        bar.finish();
        writeln!(diag, "replay: {seen} records read, {} shown", summary.shown)?;
    }
    if summary.undecodable > 0 {
        let more = summary.undecodable.saturating_sub(UNDECODABLE_REPORTED_MAX);
        writeln!(
            diag,
            "replay: warning: {} undecodable record(s) skipped{}; `engine verify {}` checks \
             every record, `--strict` stops at the first",
            summary.undecodable,
            if more > 0 {
                format!(" ({more} not listed above)")
            } else {
                String::new()
            },
            dir.display()
        )?;
    }
    out.flush()?;
    Ok(summary)
}

/// The line of a `capture.unavailable` record: from when, which kinds, why.
fn write_unavailable<W: Write>(
    out: &mut W,
    entries: &[crate::unavailable::Entry],
    wall_ns: i128,
    format: Format,
) -> Result<()> {
    let io = |e| crate::error::Error::io("writing the replay")(e);
    match format {
        Format::Json => {
            let mut j = JsonWriter::default();
            j.open(None, b'{');
            j.time("ts", wall_ns);
            j.field(
                "kind",
                crate::output::json::Str(crate::unavailable::NAME.as_bytes()),
            );
            j.open(Some("unavailable"), b'[');
            for e in entries {
                j.open(None, b'{');
                j.field("kind", crate::output::json::Str(e.kind.as_bytes()));
                j.field("reason", crate::output::json::Str(e.reason.as_bytes()));
                j.field("detail", crate::output::json::Str(e.detail.as_bytes()));
                j.close(b'}');
            }
            j.close(b']');
            j.close(b'}');
            j.newline();
            out.write_all(j.bytes()).map_err(io)
        }
        Format::Text => {
            let kinds: Vec<String> = entries
                .iter()
                .map(|e| format!("{} ({})", e.kind, e.reason))
                .collect();
            writeln!(
                out,
                "{} NOT CAPTURED from here on (this kernel has no hook for them): {}",
                crate::output::text::WallTime(wall_ns),
                // Names from the file: nothing that is not printable reaches the terminal.
                kinds
                    .join(", ")
                    .chars()
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect::<String>()
            )
            .map_err(io)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_patterns() {
        assert!(comm_matches("cat", b"cat"));
        assert!(!comm_matches("cat", b"cats"));
        assert!(comm_matches("ca*", b"cats"));
        assert!(comm_matches("*", b""));
    }

    #[test]
    fn without_bounds_every_time_is_read() {
        let o = read_options(&ReplayArgs::default()).unwrap();
        assert_eq!((o.from_ns, o.to_ns, o.wall_clock), (0, u64::MAX, false));
        let o = read_options(&ReplayArgs {
            range: TimeRange {
                from_unix_ns: Some(-5),
                to_unix_ns: Some(i128::MAX),
            },
            ..ReplayArgs::default()
        })
        .unwrap();
        assert_eq!((o.from_ns, o.to_ns, o.wall_clock), (0, u64::MAX - 1, true));
    }
}
