//! The data directory's layout: every name and every walk, in one place.
//!
//! # Design constraints
//! - One owner: the stream directory names, the segment file names, the lock file name
//!   and the listing of streams and segments are defined here and nowhere else; the
//!   writer, recovery, the reader, [`crate::Stats`] and [`crate::verify_dir`] all walk
//!   through this module.
//! - Only regular files are ever opened as segments. A FIFO, socket, device or directory
//!   named like a segment is passed over by its type (taken before any open, so a FIFO
//!   never blocks a reader) and reported.
//! - Nothing that could be ours is skipped silently: every entry of a stream directory
//!   that is not a segment, and every entry of the data directory that looks like a
//!   stream or a segment but is not one, is reported as a [`Skipped`] with its reason.
//!   The report is bounded ([`SKIPPED_KEPT_MAX`] entries, then a count).
//! - Listing is read-only: it never creates, locks or changes anything, so replay,
//!   inspect and verify can run beside a live engine.
//!
//! # On-disk layout
//! ```text
//! DIR/
//!   engine.lock                          the engine's exclusive flock (LOCK_FILE_NAME)
//!   stream-000/                          one directory per stream (core thread), "stream-{id:03}"
//!     {created_unix_ns:020}-{seq:010}.seg    sealed segment
//!     {created_unix_ns:020}-{seq:010}.open   segment being written, or left by a crash
//!   stream-001/
//! ```
//! Other entries of `DIR` that do not start with `stream-` and are not named like a
//! segment are not ours and are ignored without a report (an operator's notes, a
//! `lost+found`).

use std::fs::FileType;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::error::StorageError;

/// The file in the data directory on which the engine holds an exclusive `flock` for
/// its whole life (one engine per data directory). Readers never take it, and the
/// walks here pass over it without reporting it.
pub const LOCK_FILE_NAME: &str = "engine.lock";

/// Stream directories are named `stream-{id:03}`.
pub const STREAM_DIR_PREFIX: &str = "stream-";

/// Skipped entries kept in a [`SkipList`]; beyond that they are only counted.
pub const SKIPPED_KEPT_MAX: usize = 100;

/// `stream-{id:03}`.
pub fn stream_dir_name(stream_id: u32) -> String {
    format!("{STREAM_DIR_PREFIX}{stream_id:03}")
}

/// `dir/stream-{id:03}`.
pub fn stream_dir(dir: &Path, stream_id: u32) -> PathBuf {
    dir.join(stream_dir_name(stream_id))
}

/// The stream id of a stream directory name; `None` unless the name is exactly what
/// [`stream_dir_name`] makes (so `stream-5` and `stream-005` cannot both be stream 5).
pub fn parse_stream_dir_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(STREAM_DIR_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id = digits.parse().ok()?;
    (stream_dir_name(id) == name).then_some(id)
}

/// `{created_unix_ns:020}-{seq:010}.seg` (sealed) or `.open` (being written, or left
/// by a crash): names sort in creation order with `ls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    pub created_unix_ns: u64,
    pub seq: u64,
    pub sealed: bool,
}

impl SegmentName {
    /// The file name.
    pub fn file_name(&self) -> String {
        format!(
            "{:020}-{:010}.{}",
            self.created_unix_ns,
            self.seq,
            if self.sealed { "seg" } else { "open" }
        )
    }

    /// Parses a file name; `None` for anything that is not a segment.
    pub fn parse(name: &str) -> Option<SegmentName> {
        let (stem, ext) = name.rsplit_once('.')?;
        let sealed = match ext {
            "seg" => true,
            "open" => false,
            _ => return None,
        };
        let (ts, seq) = stem.split_once('-')?;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ts, 20) || !digits(seq, 10) {
            return None;
        }
        Some(SegmentName {
            created_unix_ns: ts.parse().ok()?,
            seq: seq.parse().ok()?,
            sealed,
        })
    }
}

/// Why an entry of the data directory was passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Named like a segment or a stream but not of the right type (a FIFO, a socket, a
    /// device, a directory, a file where a directory belongs): never opened.
    WrongType {
        /// What it is (`"fifo"`, `"socket"`, `"directory"`, ...).
        found: &'static str,
        /// What its name says it should be (`"regular file"`, `"directory"`).
        expected: &'static str,
    },
    /// In a stream directory, a name that is not a segment's; in the data directory, a
    /// `stream-` name that is not a stream's, or a segment outside any stream.
    UnknownName,
    /// An unsealed segment shorter than its header: the writer died (or the disk filled)
    /// while creating it, so it never held a record.
    EmptyUnsealed {
        /// Its length in bytes.
        len: u64,
    },
    /// Its type could not be read (e.g. a dangling symbolic link).
    Unreadable(String),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::WrongType { found, expected } => {
                write!(f, "a {found}, not a {expected}")
            }
            SkipReason::UnknownName => f.write_str("not a segment or stream name"),
            SkipReason::EmptyUnsealed { len } => write!(
                f,
                "unsealed segment of {len} bytes, shorter than its header (never held a record)"
            ),
            SkipReason::Unreadable(why) => write!(f, "cannot stat: {why}"),
        }
    }
}

/// An entry passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: SkipReason,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: skipped: {}", self.path.display(), self.reason)
    }
}

/// Skipped entries: the first [`SKIPPED_KEPT_MAX`] kept, the rest counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipList {
    kept: Vec<Skipped>,
    omitted: u64,
}

impl SkipList {
    /// Records one skipped entry.
    pub fn push(&mut self, s: Skipped) {
        if self.kept.len() < SKIPPED_KEPT_MAX {
            self.kept.push(s);
        } else {
            self.omitted = self.omitted.saturating_add(1);
        }
    }

    /// The entries kept, in the order found.
    pub fn entries(&self) -> &[Skipped] {
        &self.kept
    }

    /// Entries skipped beyond those kept.
    pub fn omitted(&self) -> u64 {
        self.omitted
    }

    /// Entries skipped in all.
    pub fn total(&self) -> u64 {
        (self.kept.len() as u64).saturating_add(self.omitted)
    }

    /// True when nothing was skipped.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Appends `other`'s entries (bounded the same way).
    pub fn extend(&mut self, other: SkipList) {
        for s in other.kept {
            self.push(s);
        }
        self.omitted = self.omitted.saturating_add(other.omitted);
    }
}

fn type_name(t: &FileType) -> &'static str {
    if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// The name of a file type, for messages.
pub(crate) fn file_type_name(t: &FileType) -> &'static str {
    type_name(t)
}

/// The type of `entry`, following a symbolic link (never opening anything).
fn entry_type(entry: &std::fs::DirEntry) -> Result<FileType, String> {
    let t = entry.file_type().map_err(|e| e.to_string())?;
    if !t.is_symlink() {
        return Ok(t);
    }
    std::fs::metadata(entry.path())
        .map(|m| m.file_type())
        .map_err(|e| e.to_string())
}

/// A directory entry: its name (lossy), its path, and its type or why it has none.
type Entry = (String, PathBuf, Result<FileType, String>);

/// Reads a directory's entries.
fn entries(dir: &Path) -> Result<Vec<Entry>, StorageError> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, "readdir", e))?;
    for entry in rd {
        let entry = entry.map_err(|e| StorageError::io(dir, "readdir", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        out.push((name, entry.path(), entry_type(&entry)));
    }
    Ok(out)
}

/// The stream directories under data directory `dir`, by id. Entries that look like
/// ours but are not usable (a `stream-` name that does not parse, a `stream-NNN` that is
/// not a directory, a segment file outside any stream) go to `skipped`; the lock file
/// and entries that are not ours are passed over without a report.
pub fn list_streams(
    dir: &Path,
    skipped: &mut SkipList,
) -> Result<Vec<(u32, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    for (name, path, t) in entries(dir)? {
        if name == LOCK_FILE_NAME {
            continue;
        }
        let looks_ours = name.starts_with(STREAM_DIR_PREFIX)
            || SegmentName::parse(&name).is_some()
            || name.ends_with(".seg")
            || name.ends_with(".open");
        if !looks_ours {
            continue;
        }
        let reason = match (parse_stream_dir_name(&name), t) {
            (Some(id), Ok(t)) if t.is_dir() => {
                out.push((id, path));
                continue;
            }
            (Some(_), Ok(t)) => SkipReason::WrongType {
                found: type_name(&t),
                expected: "directory",
            },
            (Some(_), Err(why)) => SkipReason::Unreadable(why),
            (None, _) => SkipReason::UnknownName,
        };
        skipped.push(Skipped { path, reason });
    }
    out.sort();
    Ok(out)
}

/// The segments of stream directory `dir` that are regular files, sorted by sequence
/// number. Every other entry goes to `skipped` with its reason.
pub fn list_segments(
    dir: &Path,
    skipped: &mut SkipList,
) -> Result<Vec<(SegmentName, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    for (name, path, t) in entries(dir)? {
        let reason = match (SegmentName::parse(&name), t) {
            (Some(n), Ok(t)) if t.is_file() => {
                out.push((n, path));
                continue;
            }
            (Some(_), Ok(t)) => SkipReason::WrongType {
                found: type_name(&t),
                expected: "regular file",
            },
            (Some(_), Err(why)) => SkipReason::Unreadable(why),
            (None, _) => SkipReason::UnknownName,
        };
        skipped.push(Skipped { path, reason });
    }
    out.sort_by_key(|(n, _)| (n.seq, n.created_unix_ns));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_creation_order_and_parse_back() {
        let a = SegmentName {
            created_unix_ns: 1_700_000_000_000_000_000,
            seq: 9,
            sealed: true,
        };
        let b = SegmentName {
            created_unix_ns: 1_700_000_000_100_000_000,
            seq: 10,
            sealed: false,
        };
        assert!(a.file_name() < b.file_name());
        assert_eq!(SegmentName::parse(&a.file_name()), Some(a));
        assert_eq!(SegmentName::parse(&b.file_name()), Some(b));
        assert_eq!(SegmentName::parse("notes.txt"), None);
        assert_eq!(SegmentName::parse("1-2.seg"), None);
        // `u64::from_str` takes a sign; a segment name does not.
        assert_eq!(
            SegmentName::parse("+0000000000000000001-0000000001.seg"),
            None
        );
    }

    #[test]
    fn stream_dir_names_are_canonical() {
        assert_eq!(stream_dir_name(7), "stream-007");
        assert_eq!(stream_dir_name(1234), "stream-1234");
        assert_eq!(parse_stream_dir_name("stream-007"), Some(7));
        assert_eq!(parse_stream_dir_name("stream-1234"), Some(1234));
        for bad in [
            "stream-7",
            "stream-0007",
            "stream-+07",
            "stream-",
            "stream-abc",
            "x-007",
        ] {
            assert_eq!(parse_stream_dir_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn skip_list_is_bounded() {
        let mut s = SkipList::default();
        for i in 0..SKIPPED_KEPT_MAX + 5 {
            s.push(Skipped {
                path: PathBuf::from(format!("f{i}")),
                reason: SkipReason::UnknownName,
            });
        }
        assert_eq!(s.entries().len(), SKIPPED_KEPT_MAX);
        assert_eq!(s.omitted(), 5);
        assert_eq!(s.total(), SKIPPED_KEPT_MAX as u64 + 5);
    }
}
