//! The offline tools: `engine replay`, `engine inspect`, `engine verify`, `engine
//! summarize`, `engine fleet` (which reads the fleet's NATS stream), one file per
//! command. They only read a data directory (no lock, nothing changed), so they run
//! beside a live engine. The storage-side checks live in `storage`.

pub mod fleet;
pub mod inspect;
pub(crate) mod progress;
pub mod replay;
pub mod summarize;
pub mod time;
pub mod verify;

use std::io::{self, Write};
use std::path::Path;

use storage::SkipList;

use crate::error::{Error, Result};

/// The data directory exists and is a directory (a clearer message than the reader's).
fn ensure_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Err(Error::Invalid(format!(
            "{}: no such directory",
            dir.display()
        )));
    }
    Ok(())
}

/// One line per entry of the data directory that was passed over, with why, then how
/// many more were not listed; each line starts with `prefix`.
fn write_skipped<W: Write + ?Sized>(
    out: &mut W,
    prefix: &str,
    skipped: &SkipList,
) -> io::Result<()> {
    for s in skipped.entries() {
        writeln!(out, "{prefix}{s}")?;
    }
    if skipped.omitted() > 0 {
        writeln!(
            out,
            "{prefix}{} more skipped entries not listed",
            skipped.omitted()
        )?;
    }
    Ok(())
}
