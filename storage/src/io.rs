//! Writing a segment file: through io_uring with a bounded number of block writes in
//! flight (Linux), or with plain positioned writes (anywhere; selectable on Linux too).
//!
//! Buffers come from a pool allocated once. A buffer handed to io_uring belongs to the
//! operation until its completion is reaped; only then is it given out again.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::StorageError;

/// How a writer does its I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoBackend {
    /// io_uring (Linux only): block writes are submitted and reaped asynchronously.
    #[cfg_attr(target_os = "linux", default)]
    Uring,
    /// `pwrite`/`fdatasync`, synchronous.
    #[cfg_attr(not(target_os = "linux"), default)]
    Portable,
}

impl IoBackend {
    /// Parses `uring` or `portable`.
    pub fn from_name(s: &str) -> Option<IoBackend> {
        match s {
            "uring" | "io_uring" => Some(IoBackend::Uring),
            "portable" => Some(IoBackend::Portable),
            _ => None,
        }
    }
}

#[cfg(target_os = "linux")]
struct Uring {
    ring: io_uring::IoUring,
    /// Buffers currently owned by a submitted write, with the write's offset and length.
    inflight: Vec<(usize, u64, usize)>,
}

/// One open segment file and its write path.
pub(crate) struct FileWriter {
    path: PathBuf,
    file: File,
    /// Offset of the next byte to be written.
    offset: u64,
    buffers: Vec<Vec<u8>>,
    free: Vec<usize>,
    #[cfg(target_os = "linux")]
    uring: Option<Uring>,
    /// A write failed: the file's tail is unknown; nothing more is accepted.
    failed: bool,
}

impl FileWriter {
    /// Creates `path` (must not exist), mode 0640, with `inflight_max` buffers of
    /// `buffer_bytes` capacity each.
    pub(crate) fn create(
        path: &Path,
        backend: IoBackend,
        inflight_max: usize,
        buffer_bytes: usize,
    ) -> Result<FileWriter, StorageError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(path)
            .map_err(|e| StorageError::io(path, "create", e))?;
        let n = inflight_max.max(1);
        #[cfg(target_os = "linux")]
        let uring = match backend {
            IoBackend::Uring => Some(Uring {
                ring: io_uring::IoUring::new((n as u32 * 2).next_power_of_two())
                    .map_err(|e| StorageError::io(path, "io_uring_setup", e))?,
                inflight: Vec::with_capacity(n),
            }),
            IoBackend::Portable => None,
        };
        #[cfg(not(target_os = "linux"))]
        let _ = backend;
        Ok(FileWriter {
            path: path.to_path_buf(),
            file,
            offset: 0,
            buffers: (0..n).map(|_| Vec::with_capacity(buffer_bytes)).collect(),
            free: (0..n).collect(),
            #[cfg(target_os = "linux")]
            uring,
            failed: false,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Offset the next write lands at.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    fn check(&self) -> Result<(), StorageError> {
        if self.failed {
            return Err(StorageError::Stopped(format!(
                "{}: an earlier write failed",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// A free buffer (cleared), waiting for an in-flight write to complete if needed.
    pub(crate) fn buffer(&mut self) -> Result<(usize, &mut Vec<u8>), StorageError> {
        self.check()?;
        if self.free.is_empty() {
            self.reap(1)?;
        }
        let idx = self.free.pop().expect("a buffer is free after reaping");
        let buf = &mut self.buffers[idx];
        buf.clear();
        Ok((idx, buf))
    }

    /// Writes buffer `idx` at the current end of the file.
    pub(crate) fn submit(&mut self, idx: usize) -> Result<(), StorageError> {
        self.check()?;
        let offset = self.offset;
        let len = self.buffers[idx].len();
        self.offset += len as u64;
        #[cfg(target_os = "linux")]
        if let Some(u) = &mut self.uring {
            use std::os::fd::AsRawFd;
            let buf = &self.buffers[idx];
            let sqe = io_uring::opcode::Write::new(
                io_uring::types::Fd(self.file.as_raw_fd()),
                buf.as_ptr(),
                len as u32,
            )
            .offset(offset)
            .build()
            .user_data(idx as u64);
            // SAFETY: the buffer lives in `self.buffers`, is not touched and not given out
            // again until this write's completion is reaped (it is off the free list), and
            // the fd outlives the ring's use of it (we reap everything before close).
            let pushed = unsafe { u.ring.submission().push(&sqe) };
            if pushed.is_err() {
                // The queue holds 2x the buffers, so it cannot be full; treat it as a bug
                // in the bounds rather than losing the write.
                self.failed = true;
                return Err(StorageError::Stopped(
                    "io_uring submission queue full".into(),
                ));
            }
            u.inflight.push((idx, offset, len));
            u.ring
                .submit()
                .map_err(|e| StorageError::io(&self.path, "io_uring_enter", e))?;
            return Ok(());
        }
        let result = self.file.write_all_at(&self.buffers[idx], offset);
        self.free.push(idx);
        result.map_err(|e| self.fail(e, offset, "pwrite"))
    }

    fn fail(&mut self, e: std::io::Error, offset: u64, op: &'static str) -> StorageError {
        self.failed = true;
        if e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == std::io::ErrorKind::WriteZero {
            return StorageError::DiskFull {
                path: self.path.clone(),
                offset,
            };
        }
        StorageError::Io {
            path: self.path.clone(),
            op,
            source: e,
        }
    }

    /// Reaps completions until at least `want` buffers are free or nothing is in flight.
    fn reap(&mut self, want: usize) -> Result<(), StorageError> {
        #[cfg(target_os = "linux")]
        if let Some(u) = &mut self.uring {
            let mut first_error = None;
            while self.free.len() < want && !u.inflight.is_empty() {
                u.ring
                    .submit_and_wait(1)
                    .map_err(|e| StorageError::io(&self.path, "io_uring_enter", e))?;
                // At most one completion per buffer (64 at most): no allocation.
                let mut done = [(0u64, 0i32); 64];
                let mut count = 0;
                for c in u.ring.completion() {
                    if count < done.len() {
                        done[count] = (c.user_data(), c.result());
                        count += 1;
                    }
                }
                for &(user_data, res) in &done[..count] {
                    let Some(pos) = u.inflight.iter().position(|f| f.0 as u64 == user_data) else {
                        continue;
                    };
                    let (idx, offset, len) = u.inflight.swap_remove(pos);
                    self.free.push(idx);
                    let err = if res < 0 {
                        Some(std::io::Error::from_raw_os_error(-res))
                    } else if (res as usize) < len {
                        // A short write to a regular file means the device is full.
                        Some(std::io::Error::from_raw_os_error(libc::ENOSPC))
                    } else {
                        None
                    };
                    if let (Some(e), None) = (err, &first_error) {
                        first_error = Some((e, offset));
                    }
                }
            }
            if let Some((e, offset)) = first_error {
                return Err(self.fail(e, offset, "io_uring write"));
            }
        }
        let _ = want;
        Ok(())
    }

    /// Waits for every write in flight.
    pub(crate) fn flush(&mut self) -> Result<(), StorageError> {
        let all = self.buffers.len();
        self.reap(all)?;
        self.check()
    }

    /// Writes `bytes` at the end of the file, synchronously, after everything in flight.
    pub(crate) fn write_tail(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.flush()?;
        let offset = self.offset;
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| self.fail(e, offset, "pwrite"))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Waits for everything in flight, then makes the data durable.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        let offset = self.offset;
        self.file
            .sync_data()
            .map_err(|e| self.fail(e, offset, "fdatasync"))
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // Buffers must not be freed while the kernel may still write from them.
        let _ = self.flush();
    }
}
