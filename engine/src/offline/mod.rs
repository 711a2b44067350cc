//! The offline tools: `engine replay`, `engine inspect`, `engine verify`, one file per
//! command. They only read a data directory (no lock, nothing changed), so they run
//! beside a live engine. The storage-side checks live in `storage`.

pub mod inspect;
pub mod replay;
pub mod time;
pub mod verify;

use std::path::Path;

use anyhow::bail;

/// The data directory exists and is a directory (a clearer message than the reader's).
fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!("{}: no such directory", dir.display());
    }
    Ok(())
}
