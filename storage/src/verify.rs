//! Verifying a data directory: every segment, every block, every record, with a
//! bounded report.
//!
//! # Design constraints
//! - Read-only and lock-free, like the reader: it can run beside a live engine (whose
//!   `.open` segments then show a torn tail, which is reported, not "fixed").
//! - The report is bounded whatever the input: at most
//!   [`VerifyOptions::problems_per_file_max`] problems are kept per file and at most
//!   [`VerifyOptions::files_listed_max`] files have their problems listed; the rest are
//!   counted. A tiny block that claims millions of bad records costs a counter, not a
//!   string per record.
//! - Storage knows nothing of the event ABI: the caller passes the record check (the
//!   engine's decoder). Loss records ([`KIND_LOSS`]) are storage's own and are checked
//!   here.
//! - Nothing is skipped silently: entries passed over are in [`VerifyReport::skipped`].

use std::path::{Path, PathBuf};

use crate::block::DecodedBlock;
use crate::error::StorageError;
use crate::format::FILE_HEADER_LEN;
use crate::layout::{SkipList, SkipReason, Skipped, list_segments, list_streams};
use crate::record::{KIND_LOSS, LOSS_LEN, Loss, RecordRef};
use crate::segment::Segment;

/// Default for [`VerifyOptions::problems_per_file_max`].
pub const PROBLEMS_PER_FILE_MAX: usize = 20;
/// Default for [`VerifyOptions::files_listed_max`].
pub const FILES_LISTED_MAX: usize = 1000;

/// What to check and how much to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Problems kept per file; the rest of that file's problems are only counted
    /// (in [`VerifyReport::omitted`]).
    pub problems_per_file_max: usize,
    /// Files whose problems are listed; problems of further files are only counted
    /// (in [`VerifyReport::unlisted_problems`]).
    pub files_listed_max: usize,
    /// When set, a segment whose header has another event ABI version is a problem
    /// ([`StorageError::AbiMismatch`]) and its records are not checked.
    pub abi_version: Option<u32>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            problems_per_file_max: PROBLEMS_PER_FILE_MAX,
            files_listed_max: FILES_LISTED_MAX,
            abi_version: None,
        }
    }
}

/// One problem: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    /// File offset of the structure at fault (a record's problem gives its block's
    /// offset); `None` when the problem is about the file as a whole (it cannot be opened).
    pub offset: Option<u64>,
    /// What was found and what was expected.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(o) => write!(
                f,
                "{}: at offset {o}: {}",
                self.path.display(),
                self.message
            ),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// Problems of one file beyond those kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Omitted {
    pub path: PathBuf,
    pub count: u64,
}

impl std::fmt::Display for Omitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} more problems not shown",
            self.path.display(),
            self.count
        )
    }
}

/// What [`verify_dir`] found. Bounded in size by [`VerifyOptions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files opened (or attempted).
    pub files: u64,
    /// Blocks read and checked.
    pub blocks: u64,
    /// Records decoded and checked.
    pub records: u64,
    /// Problems kept, in the order found.
    pub problems: Vec<Problem>,
    /// Per file, problems beyond [`VerifyOptions::problems_per_file_max`].
    pub omitted: Vec<Omitted>,
    /// Problems of files beyond [`VerifyOptions::files_listed_max`], counted only.
    pub unlisted_problems: u64,
    /// Files with problems beyond [`VerifyOptions::files_listed_max`].
    pub unlisted_files: u64,
    /// Entries passed over, with why.
    pub skipped: SkipList,
}

impl VerifyReport {
    /// True when no problem at all was found (skipped entries are not problems; show them).
    pub fn is_sound(&self) -> bool {
        self.problem_count() == 0
    }

    /// Every problem found, kept or not.
    pub fn problem_count(&self) -> u64 {
        let omitted = self
            .omitted
            .iter()
            .fold(0u64, |n, o| n.saturating_add(o.count));
        (self.problems.len() as u64)
            .saturating_add(omitted)
            .saturating_add(self.unlisted_problems)
    }
}

/// Collects one file's problems into the report, within the bounds.
struct FileProblems<'a> {
    report: &'a mut VerifyReport,
    opts: &'a VerifyOptions,
    path: &'a Path,
    kept: usize,
    more: u64,
    files_with_problems: &'a mut usize,
}

impl FileProblems<'_> {
    fn push(&mut self, offset: Option<u64>, message: String) {
        if self.kept == 0 && self.more == 0 {
            *self.files_with_problems += 1;
        }
        if *self.files_with_problems > self.opts.files_listed_max {
            if self.kept == 0 && self.more == 0 {
                self.report.unlisted_files += 1;
            }
            self.more += 1;
            self.report.unlisted_problems = self.report.unlisted_problems.saturating_add(1);
            return;
        }
        if self.kept < self.opts.problems_per_file_max {
            self.kept += 1;
            self.report.problems.push(Problem {
                path: self.path.to_path_buf(),
                offset,
                message,
            });
        } else {
            self.more += 1;
        }
    }

    fn error(&mut self, e: &StorageError) {
        self.push(e.offset(), e.detail());
    }

    fn finish(self) {
        let listed = *self.files_with_problems <= self.opts.files_listed_max;
        if listed && self.more > 0 {
            self.report.omitted.push(Omitted {
                path: self.path.to_path_buf(),
                count: self.more,
            });
        }
    }
}

/// Checks every segment under data directory `dir`: headers, index, every block's
/// CRCs and encoding, every record. Loss records are checked here
/// ([`Loss::decode`]); every other record is given to `check_record`, whose `Err`
/// message becomes a problem. Fails only when `dir` itself cannot be read; everything
/// wrong inside is in the report.
pub fn verify_dir(
    dir: &Path,
    opts: &VerifyOptions,
    check_record: &mut dyn FnMut(&RecordRef<'_>) -> Result<(), String>,
) -> Result<VerifyReport, StorageError> {
    let mut report = VerifyReport::default();
    let mut files_with_problems = 0usize;
    let mut decoded = DecodedBlock::new();
    let mut buf = Vec::new();
    let streams = list_streams(dir, &mut report.skipped)?;
    for (id, sdir) in streams {
        let segments = match list_segments(&sdir, &mut report.skipped) {
            Ok(s) => s,
            Err(e) => {
                let mut f = FileProblems {
                    report: &mut report,
                    opts,
                    path: &sdir,
                    kept: 0,
                    more: 0,
                    files_with_problems: &mut files_with_problems,
                };
                f.error(&e);
                f.finish();
                continue;
            }
        };
        for (name, path) in segments {
            if !name.sealed {
                let len = std::fs::metadata(&path).map_or(u64::MAX, |m| m.len());
                if len < FILE_HEADER_LEN as u64 {
                    report.skipped.push(Skipped {
                        path,
                        reason: SkipReason::EmptyUnsealed { len },
                    });
                    continue;
                }
            }
            report.files += 1;
            let (mut blocks, mut records) = (0u64, 0u64);
            let mut f = FileProblems {
                report: &mut report,
                opts,
                path: &path,
                kept: 0,
                more: 0,
                files_with_problems: &mut files_with_problems,
            };
            verify_segment(
                &mut f,
                id,
                name.seq,
                check_record,
                &mut decoded,
                &mut buf,
                (&mut blocks, &mut records),
            );
            f.finish();
            report.blocks = report.blocks.saturating_add(blocks);
            report.records = report.records.saturating_add(records);
        }
    }
    Ok(report)
}

fn verify_segment(
    f: &mut FileProblems<'_>,
    stream_id: u32,
    seq: u64,
    check_record: &mut dyn FnMut(&RecordRef<'_>) -> Result<(), String>,
    decoded: &mut DecodedBlock,
    buf: &mut Vec<u8>,
    (blocks, records): (&mut u64, &mut u64),
) {
    let seg = match Segment::open(f.path) {
        Ok(seg) => seg,
        Err(e) => return f.error(&e),
    };
    if let Err(e) = seg.check_abi(f.opts.abi_version) {
        return f.error(&e); // another ABI's records cannot be checked by this decoder
    }
    let h = seg.header();
    if h.stream_id != stream_id || h.seq != seq {
        f.push(
            Some(0),
            format!(
                "header says stream {} segment {}, the path says stream {stream_id} segment {seq}",
                h.stream_id, h.seq
            ),
        );
    }
    if let Some(t) = seg.torn() {
        f.push(
            Some(t.offset),
            format!(
                "unsealed, {} bytes after the last sound block ({})",
                t.bytes, t.what
            ),
        );
    }
    for meta in seg.blocks() {
        *blocks += 1;
        if let Err(e) = seg.read_block(meta, buf, decoded) {
            f.error(&e);
            continue;
        }
        for i in 0..decoded.len() {
            *records += 1;
            let r = decoded.record(i);
            let bad = if r.kind == KIND_LOSS {
                Loss::decode(r.bytes).is_none().then(|| {
                    format!(
                        "a loss record of {} bytes, expected {LOSS_LEN}",
                        r.bytes.len()
                    )
                })
            } else {
                check_record(&r).err()
            };
            if let Some(why) = bad {
                f.push(
                    Some(meta.offset),
                    format!(
                        "record {i} of the block (kind {}, ts {}) does not decode: {why}",
                        r.kind, r.ts_ns
                    ),
                );
            }
        }
    }
}
