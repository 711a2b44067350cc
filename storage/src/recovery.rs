//! Recovery of segments that were never sealed (the writer crashed or the disk filled):
//! keep every complete, sound block, cut the torn tail, write the index, seal.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::StorageError;
use crate::format::encode_index;
use crate::layout::{SegmentName, SkipList, list_segments};
use crate::segment::Segment;

/// What recovering one segment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The unsealed file that was recovered.
    pub from: PathBuf,
    /// The sealed file it became.
    pub to: PathBuf,
    /// Complete blocks kept.
    pub blocks: usize,
    /// Records in those blocks.
    pub records: u64,
    /// Bytes cut from the tail (0 when the file ended cleanly after a block).
    pub truncated_bytes: u64,
    /// Why the tail was cut, if it was.
    pub reason: Option<String>,
}

impl std::fmt::Display for Recovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recovered {} -> {}: {} blocks, {} records kept",
            self.from.display(),
            self.to.display(),
            self.blocks,
            self.records
        )?;
        if let Some(r) = &self.reason {
            write!(f, "; cut {} bytes of torn tail ({r})", self.truncated_bytes)?;
        }
        Ok(())
    }
}

/// Recovers the unsealed segment at `path` (a `.open` file) and seals it as `.seg`.
/// A file too short to hold a header is removed: it never held a block.
pub fn recover_segment(path: &Path) -> Result<Option<Recovered>, StorageError> {
    // By type before any open: opening a FIFO for writing would block.
    let meta = std::fs::metadata(path).map_err(|e| StorageError::io(path, "stat", e))?;
    if !meta.is_file() {
        return Err(StorageError::NotRegularFile {
            path: path.to_path_buf(),
            found: crate::layout::file_type_name(&meta.file_type()),
        });
    }
    let len = meta.len();
    if len < crate::format::FILE_HEADER_LEN as u64 {
        std::fs::remove_file(path).map_err(|e| StorageError::io(path, "unlink", e))?;
        return Ok(None);
    }
    let seg = Segment::open_scan(path)?;
    let end = seg.blocks_end();
    let mut index = Vec::new();
    encode_index(seg.blocks(), end, &mut index);
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io(path, "open", e))?;
    file.set_len(end)
        .map_err(|e| StorageError::io(path, "ftruncate", e))?;
    file.write_all_at(&index, end)
        .map_err(|e| StorageError::io(path, "pwrite", e))?;
    file.sync_all()
        .map_err(|e| StorageError::io(path, "fsync", e))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(SegmentName::parse);
    let to = match name {
        Some(n) => path.with_file_name(SegmentName { sealed: true, ..n }.file_name()),
        None => path.with_extension("seg"),
    };
    std::fs::rename(path, &to).map_err(|e| StorageError::io(path, "rename", e))?;
    if let Some(dir) = to.parent() {
        sync_dir(dir)?;
    }
    Ok(Some(Recovered {
        from: path.to_path_buf(),
        to,
        blocks: seg.blocks().len(),
        records: seg
            .blocks()
            .iter()
            .fold(0u64, |n, b| n.saturating_add(b.count as u64)),
        truncated_bytes: seg.file_len().saturating_sub(end),
        reason: seg.torn().map(|t| t.what.clone()),
    }))
}

/// Recovers every `.open` segment in stream directory `dir`. Only regular files are
/// touched; anything else in the directory is left alone (the readers report it).
pub fn recover_stream_dir(dir: &Path) -> Result<Vec<Recovered>, StorageError> {
    let mut out = Vec::new();
    let mut ignored = SkipList::default();
    for (name, path) in list_segments(dir, &mut ignored)? {
        if name.sealed {
            continue;
        }
        if let Some(r) = recover_segment(&path)? {
            out.push(r);
        }
    }
    Ok(out)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let d = std::fs::File::open(dir).map_err(|e| StorageError::io(dir, "open", e))?;
    d.sync_all().map_err(|e| StorageError::io(dir, "fsync", e))
}
