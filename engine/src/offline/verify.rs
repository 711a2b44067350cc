//! `engine verify`: every block of every segment read and checked, every record decoded.

use std::path::{Path, PathBuf};

use anyhow::Context;
use storage::{KIND_LOSS, Loss, Segment};

use super::ensure_dir;

/// `engine verify`: checks every block of every segment; the problems found.
pub fn verify(dir: &Path) -> anyhow::Result<Vec<String>> {
    ensure_dir(dir)?;
    let mut problems = Vec::new();
    let mut streams: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: reading", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("stream-"))
        })
        .collect();
    streams.sort();
    let mut decoded = storage::DecodedBlock::new();
    let mut buf = Vec::new();
    for s in streams {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&s)
            .with_context(|| format!("{}: reading", s.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "seg" || e == "open"))
            .collect();
        files.sort();
        for f in files {
            let seg = match Segment::open(&f) {
                Ok(seg) => seg,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            if let Some(t) = seg.torn() {
                problems.push(format!(
                    "{}: at offset {}: unsealed, {} bytes after the last sound block ({})",
                    f.display(),
                    t.offset,
                    t.bytes,
                    t.what
                ));
            }
            for meta in seg.blocks() {
                if let Err(e) = seg.read_block(meta, &mut buf, &mut decoded) {
                    problems.push(e.to_string());
                    continue;
                }
                for i in 0..decoded.len() {
                    let r = decoded.record(i);
                    let bad = if r.kind == KIND_LOSS {
                        Loss::decode(r.bytes).is_none()
                    } else {
                        bpf::decode(r.bytes).is_err()
                    };
                    if bad {
                        problems.push(format!(
                            "{}: at offset {}: record {i} (kind {}) does not decode",
                            f.display(),
                            meta.offset,
                            r.kind
                        ));
                    }
                }
            }
        }
    }
    Ok(problems)
}
