//! The JSON-lines sink: to stdout (`-`), or to a file rotated by size (`PATH` grows to
//! `bytes_max`, then becomes `PATH.1`, replacing the one before: at most twice the
//! bound on disk).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use super::Sink;

/// See the module docs.
pub(crate) struct JsonlSink {
    out: Out,
    written: u64,
    bytes_max: u64,
}

enum Out {
    Stdout(io::Stdout),
    File { path: PathBuf, w: BufWriter<File> },
}

impl std::fmt::Debug for JsonlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlSink")
            .field("written", &self.written)
            .finish()
    }
}

fn open(path: &PathBuf) -> io::Result<(BufWriter<File>, u64)> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    let len = f.metadata()?.len();
    Ok((BufWriter::new(f), len))
}

impl JsonlSink {
    /// `-` for stdout, else a file (appended to) rotated at `bytes_max`.
    pub(crate) fn open(path: &str, bytes_max: u64) -> io::Result<JsonlSink> {
        if path == "-" {
            return Ok(JsonlSink {
                out: Out::Stdout(io::stdout()),
                written: 0,
                bytes_max,
            });
        }
        let path = PathBuf::from(path);
        let (w, written) = open(&path)?;
        Ok(JsonlSink {
            out: Out::File { path, w },
            written,
            bytes_max,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Out::File { path, w } = &mut self.out {
            w.flush()?;
            let mut old = path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(&*path, &old)?;
            let (nw, len) = open(path)?;
            *w = nw;
            self.written = len;
        }
        Ok(())
    }
}

impl Sink for JsonlSink {
    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        if let Out::File { .. } = self.out
            && self.written > 0
            && self.written + line.len() as u64 > self.bytes_max
        {
            self.rotate()?;
        }
        match &mut self.out {
            Out::Stdout(s) => s.lock().write_all(line)?,
            Out::File { w, .. } => w.write_all(line)?,
        }
        self.written += line.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Out::Stdout(s) => s.lock().flush(),
            Out::File { w, .. } => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_at_the_bound_and_keep_one_old() {
        let dir = std::env::temp_dir().join(format!("jsonl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.jsonl");
        let mut s = JsonlSink::open(path.to_str().unwrap(), 100).unwrap();
        for i in 0..10 {
            s.line(format!("{{\"i\":{i:030}}}\n").as_bytes()).unwrap();
        }
        s.flush().unwrap();
        let now = std::fs::read_to_string(&path).unwrap();
        let old = std::fs::read_to_string(dir.join("s.jsonl.1")).unwrap();
        assert!(now.len() <= 100 && old.len() <= 100, "{now:?} {old:?}");
        assert!(now.ends_with(&format!("{:030}}}\n", 9)));
        assert_eq!(
            now.lines().count() + old.lines().count(),
            4,
            "the rest rotated away"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
