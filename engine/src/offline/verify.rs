//! `engine verify`: every segment, block and record of a data directory checked by
//! `storage::verify_dir`, with the event decoder as the record check, and its bounded
//! report printed.

use std::io::Write;
use std::path::Path;

use storage::{VerifyOptions, VerifyReport, verify_dir};

use super::{ensure_dir, write_skipped};
use crate::error::Result;
use crate::semantic::marker::{KIND_WINDOW, Marker};

/// `engine verify`: checks `dir` and writes the report to `out`. Returns whether every
/// block is sound (skipped entries are listed but are not problems).
pub fn verify<W: Write>(dir: &Path, out: &mut W) -> Result<bool> {
    ensure_dir(dir)?;
    let opts = VerifyOptions {
        abi_version: Some(bpf::abi::ABI_VERSION),
        ..VerifyOptions::default()
    };
    let report = verify_dir(dir, &opts, &mut |r| {
        if r.kind == KIND_WINDOW {
            return Marker::decode(r.bytes)
                .map(drop)
                .ok_or_else(|| format!("not a window marker ({} bytes)", r.bytes.len()));
        }
        if let Some(agg) = crate::perf::Aggregate::decode(r.kind, r.bytes) {
            return agg.map(drop);
        }
        match crate::enrich::record::check(r.kind, r.bytes) {
            Some(table_record) => table_record.map_err(|e| e.to_string()),
            None => bpf::decode(r.bytes).map(drop).map_err(|e| e.to_string()),
        }
    })?;
    write_report(dir, &report, out)?;
    Ok(report.is_sound())
}

/// The report: problems (bounded per file, then counts), skipped entries, totals, and
/// the verdict line.
fn write_report<W: Write>(dir: &Path, r: &VerifyReport, out: &mut W) -> std::io::Result<()> {
    for p in &r.problems {
        writeln!(out, "{p}")?;
    }
    for o in &r.omitted {
        writeln!(out, "{} more problem(s) in {}", o.count, o.path.display())?;
    }
    if r.unlisted_problems > 0 {
        writeln!(
            out,
            "{} more problem(s) in {} more file(s), not listed",
            r.unlisted_problems, r.unlisted_files
        )?;
    }
    write_skipped(out, "", &r.skipped)?;
    writeln!(
        out,
        "checked {} segment file(s), {} block(s), {} record(s)",
        r.files, r.blocks, r.records
    )?;
    if r.is_sound() {
        writeln!(out, "{}: every block is sound", dir.display())
    } else {
        writeln!(out, "{} problem(s)", r.problem_count())
    }
}
