//! Writing segment files: through io_uring with a bounded number of block writes in
//! flight (Linux), or with plain positioned writes (anywhere; selectable on Linux too).
//!
//! # Design constraints
//! - Allocated once per stream: an [`IoPool`] (the ring and the block buffers) is made
//!   when the stream's writer starts and serves every segment file of the stream in
//!   turn; rotating to a new segment opens a file, nothing more.
//! - A buffer handed to io_uring belongs to the operation until its completion is
//!   reaped; only then is it given out again. If the completions cannot be reaped (the
//!   ring fails while writes are in flight), the buffers and the ring are leaked rather
//!   than freed: the kernel may still read them.
//! - Exact accounting: a block's records count as on disk once its write completed in
//!   full *and* every block before it in the file did too (a reader scanning the file
//!   stops at the first torn block, so a block after a failed one is unreadable). Every
//!   other block whose write was attempted counts as lost, by kind.
//! - Interrupted waits (`EINTR`, likely during shutdown) and transient refusals
//!   (`EAGAIN`, `EBUSY`) are retried, never taken for a failed write.

use std::collections::VecDeque;
use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::block::KindTally;
use crate::error::StorageError;

/// The most block writes in flight per stream, and the most completions reaped in one
/// batch: one constant, so a batch can always take every completion there is.
pub const INFLIGHT_MAX: usize = 64;

/// Retries of an `io_uring_enter` refused with `EAGAIN`/`EBUSY` before giving up.
const ENTER_RETRIES_MAX: u32 = 10_000;

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

/// The error for a failed write of `op` at `offset` of `path`: a full device and a
/// read-only file system are told apart, so the engine can say which.
pub(crate) fn write_error(
    path: &Path,
    op: &'static str,
    offset: u64,
    e: std::io::Error,
) -> StorageError {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => StorageError::DiskFull {
            path: path.to_path_buf(),
            offset,
        },
        Some(libc::EROFS) => StorageError::ReadOnly {
            path: path.to_path_buf(),
            offset,
        },
        _ if e.kind() == std::io::ErrorKind::WriteZero => StorageError::DiskFull {
            path: path.to_path_buf(),
            offset,
        },
        _ => StorageError::Io {
            path: path.to_path_buf(),
            op,
            source: e,
        },
    }
}

/// Records that reached the file, and records that did not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IoCounts {
    /// Records of blocks written in full, with every block before them.
    pub(crate) records_on_disk: u64,
    /// Records of blocks whose write failed or that follow a failed one, by kind.
    pub(crate) lost: KindTally,
    /// Block writes that completed in full.
    pub(crate) blocks_on_disk: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    InFlight,
    /// Completed: `None` when every byte was written, else the error.
    Done(Option<i32>),
}

/// What a buffer is doing.
#[derive(Debug, Clone, Copy)]
struct Slot {
    state: SlotState,
    offset: u64,
    len: usize,
    tally: KindTally,
}

#[cfg(target_os = "linux")]
struct Uring {
    ring: io_uring::IoUring,
}

#[cfg(target_os = "linux")]
impl Uring {
    /// `io_uring_enter` submitting what is queued and waiting for `want` completions,
    /// retrying interruptions and transient refusals.
    fn enter(&mut self, want: usize) -> std::io::Result<()> {
        let mut retries = 0;
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // EBUSY: the completion queue needs reaping first; EAGAIN: the kernel
                // is short of resources for a moment. Completions already there are
                // progress: let the caller reap them.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EBUSY)) => {
                    if want > 0 && !self.ring.completion().is_empty() {
                        return Ok(());
                    }
                    retries += 1;
                    if retries > ENTER_RETRIES_MAX {
                        return Err(e);
                    }
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The file the pool currently writes.
struct Target {
    path: PathBuf,
    file: File,
    /// Offset of the next byte to be written.
    offset: u64,
}

/// One stream's write path: the ring (io_uring) and the block buffers, made once, and
/// the segment file currently written.
///
/// Field order matters: fields drop in declaration order, so the ring goes before the
/// buffers it may read from (and `Drop` leaks the buffers outright if writes are still
/// in flight).
pub(crate) struct IoPool {
    #[cfg(target_os = "linux")]
    uring: ManuallyDrop<Option<Uring>>,
    target: Option<Target>,
    /// Block buffers, `inflight_max` of them, each of `buffer_bytes` capacity.
    buffers: ManuallyDrop<Vec<Vec<u8>>>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Buffers submitted, in file order (the order they must complete to be readable).
    order: VecDeque<usize>,
    counts: IoCounts,
    /// A write failed: the file's tail is unknown; nothing more is accepted.
    failed: bool,
    /// Offset of the first block write that failed in the current file: blocks from
    /// there on are unreadable. (A failure of the ring itself stops the pool without
    /// tearing the file: writes still completing before it count as on disk.)
    torn_from: Option<u64>,
    /// Times the buffers were allocated (once per pool: checked by tests).
    allocations: u64,
}

impl IoPool {
    /// A pool of `inflight_max` (1..=[`INFLIGHT_MAX`]) buffers of `buffer_bytes` each;
    /// `dir` names the stream in errors.
    pub(crate) fn new(
        dir: &Path,
        backend: IoBackend,
        inflight_max: usize,
        buffer_bytes: usize,
    ) -> Result<IoPool, StorageError> {
        let n = inflight_max.clamp(1, INFLIGHT_MAX);
        #[cfg(target_os = "linux")]
        let uring = match backend {
            // The submission queue holds 2x the buffers, so it cannot be full.
            IoBackend::Uring => Some(Uring {
                ring: io_uring::IoUring::new((n as u32 * 2).next_power_of_two())
                    .map_err(|e| StorageError::io(dir, "io_uring_setup", e))?,
            }),
            IoBackend::Portable => None,
        };
        #[cfg(not(target_os = "linux"))]
        let _ = (backend, dir);
        let slot = Slot {
            state: SlotState::Free,
            offset: 0,
            len: 0,
            tally: KindTally::default(),
        };
        Ok(IoPool {
            #[cfg(target_os = "linux")]
            uring: ManuallyDrop::new(uring),
            target: None,
            buffers: ManuallyDrop::new((0..n).map(|_| Vec::with_capacity(buffer_bytes)).collect()),
            slots: vec![slot; n],
            free: (0..n).rev().collect(),
            order: VecDeque::with_capacity(n),
            counts: IoCounts::default(),
            failed: false,
            torn_from: None,
            allocations: 1,
        })
    }

    /// Starts writing a new file at `path` (which must not exist), mode 0640. Every
    /// write to the previous file must have been waited for ([`IoPool::close_file`]).
    pub(crate) fn open_file(&mut self, path: &Path) -> Result<(), StorageError> {
        use std::os::unix::fs::OpenOptionsExt;
        self.check()?;
        debug_assert!(
            self.order.is_empty(),
            "writes in flight to the previous file"
        );
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(path)
            .map_err(|e| write_error(path, "create", 0, e))?;
        self.target = Some(Target {
            path: path.to_path_buf(),
            file,
            offset: 0,
        });
        Ok(())
    }

    /// After a failure: waits for every write still in flight (their records are then
    /// counted), forgets the current file and accepts writes again. Fails, leaving the
    /// pool stopped, if writes may still be in flight (the buffers cannot be reused).
    pub(crate) fn reset(&mut self) -> Result<(), StorageError> {
        let _ = self.wait_all();
        if !self.order.is_empty() {
            return Err(StorageError::Stopped(format!(
                "{}: block writes still in flight after a failure",
                self.path().display()
            )));
        }
        self.target = None;
        // The torn file is left behind: the next file starts whole.
        self.torn_from = None;
        self.failed = false;
        Ok(())
    }

    /// Waits for every write in flight, then closes the current file.
    pub(crate) fn close_file(&mut self) -> Result<(), StorageError> {
        let r = self.flush();
        self.target = None;
        r
    }

    fn target(&self) -> Result<&Target, StorageError> {
        self.target
            .as_ref()
            .ok_or_else(|| StorageError::Stopped("no segment file open".into()))
    }

    /// The current file's path (empty when none is open).
    pub(crate) fn path(&self) -> &Path {
        self.target.as_ref().map_or(Path::new(""), |t| &t.path)
    }

    /// Offset the next write to the current file lands at.
    pub(crate) fn offset(&self) -> u64 {
        self.target.as_ref().map_or(0, |t| t.offset)
    }

    /// Records on disk and lost so far.
    pub(crate) fn counts(&self) -> &IoCounts {
        &self.counts
    }

    /// Counts records that never reached a block (the writer stopped with them
    /// buffered) as lost.
    pub(crate) fn lose(&mut self, tally: &KindTally) {
        self.counts.lost.add(tally);
    }

    /// Times the buffers were allocated.
    pub(crate) fn allocations(&self) -> u64 {
        self.allocations
    }

    fn check(&self) -> Result<(), StorageError> {
        if self.failed {
            return Err(StorageError::Stopped(format!(
                "{}: an earlier write failed",
                self.path().display()
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
        let Some(idx) = self.free.pop() else {
            // reap(1) returns with a buffer free or an error: this is a bug.
            return Err(StorageError::Stopped(
                "no block buffer free after reaping".into(),
            ));
        };
        let buf = &mut self.buffers[idx];
        buf.clear();
        Ok((idx, buf))
    }

    /// Gives back a buffer taken with [`IoPool::buffer`] that will not be written.
    pub(crate) fn release(&mut self, idx: usize) {
        debug_assert_eq!(self.slots[idx].state, SlotState::Free);
        self.free.push(idx);
    }

    /// Writes buffer `idx`, a block holding `tally`'s records, at the end of the file.
    pub(crate) fn submit(&mut self, idx: usize, tally: &KindTally) -> Result<(), StorageError> {
        if let Err(e) = self.check().and_then(|_| self.target().map(|_| ())) {
            self.counts.lost.add(tally);
            self.free.push(idx);
            return Err(e);
        }
        let target = self.target.as_mut().expect("checked above");
        let offset = target.offset;
        let len = self.buffers[idx].len();
        target.offset += len as u64;
        self.slots[idx] = Slot {
            state: SlotState::InFlight,
            offset,
            len,
            tally: *tally,
        };
        self.order.push_back(idx);
        #[cfg(target_os = "linux")]
        if let Some(u) = self.uring.as_mut() {
            use std::os::fd::AsRawFd;
            let buf = &self.buffers[idx];
            let sqe = io_uring::opcode::Write::new(
                io_uring::types::Fd(target.file.as_raw_fd()),
                buf.as_ptr(),
                len as u32,
            )
            .offset(offset)
            .build()
            .user_data(idx as u64);
            // SAFETY: the buffer lives in `self.buffers`, is not touched and not given out
            // again until this write's completion is reaped (its slot is in flight), and is
            // leaked rather than freed if that never happens (see `Drop`); the fd outlives
            // the write (every write is reaped before the file is closed).
            let pushed = unsafe { u.ring.submission().push(&sqe) };
            if pushed.is_err() {
                // The queue holds 2x the buffers, so it cannot be full: a bug in the
                // bounds. The write never started.
                self.slots[idx].state = SlotState::Done(Some(libc::EAGAIN));
                let path = target.path.clone();
                self.settle();
                return Err(self.fail_with(StorageError::Stopped(format!(
                    "{}: io_uring submission queue full",
                    path.display()
                ))));
            }
            // Submitting without waiting: a refusal here leaves the entry queued, and
            // the next wait submits it.
            if let Err(e) = u.enter(0) {
                let path = target.path.clone();
                return Err(self.fail_with(StorageError::io(path, "io_uring_enter", e)));
            }
            return Ok(());
        }
        let result = target.file.write_all_at(&self.buffers[idx], offset);
        self.slots[idx].state = SlotState::Done(result.as_ref().err().map(|e| {
            e.raw_os_error()
                .unwrap_or(if e.kind() == std::io::ErrorKind::WriteZero {
                    libc::ENOSPC
                } else {
                    libc::EIO
                })
        }));
        let path = target.path.clone();
        if let Some((offset, e)) = self.settle() {
            return Err(self.fail_with(write_error(&path, "pwrite", offset, e)));
        }
        Ok(())
    }

    /// Frees completed buffers in file order, counting their records on disk or lost;
    /// the first failed write (offset and error), if one is settled now.
    fn settle(&mut self) -> Option<(u64, std::io::Error)> {
        let mut first = None;
        while let Some(&idx) = self.order.front() {
            let SlotState::Done(err) = self.slots[idx].state else {
                break;
            };
            self.order.pop_front();
            let slot = &mut self.slots[idx];
            match err {
                // Readable: no write before it in the file failed.
                None if self.torn_from.is_none() => {
                    self.counts.records_on_disk = self
                        .counts
                        .records_on_disk
                        .saturating_add(slot.tally.total());
                    self.counts.blocks_on_disk += 1;
                }
                // After a failed write the file is torn there: later blocks are
                // unreadable even if their own write succeeded.
                None => self.counts.lost.add(&slot.tally),
                Some(errno) => {
                    self.counts.lost.add(&slot.tally);
                    self.torn_from.get_or_insert(slot.offset);
                    if !self.failed {
                        self.failed = true;
                        first = Some((slot.offset, std::io::Error::from_raw_os_error(errno)));
                    }
                }
            }
            slot.state = SlotState::Free;
            self.free.push(idx);
        }
        first
    }

    /// Marks the pool failed, waits for whatever is still in flight (so the counts are
    /// final), and returns `e`.
    fn fail_with(&mut self, e: StorageError) -> StorageError {
        self.failed = true;
        let _ = self.wait_all();
        e
    }

    /// Reaps completions until at least `want` buffers are free or nothing is in flight.
    fn reap(&mut self, want: usize) -> Result<(), StorageError> {
        #[cfg(target_os = "linux")]
        while self.free.len() < want && !self.order.is_empty() {
            let Some(u) = self.uring.as_mut() else {
                break;
            };
            if let Err(e) = u.enter(1) {
                // The ring itself failed: the writes in flight may never be reaped.
                let path = self.path().to_path_buf();
                self.failed = true;
                return Err(StorageError::io(path, "io_uring_enter", e));
            }
            // At most one completion per buffer in flight, so INFLIGHT_MAX always
            // suffices; any beyond stay queued for the next round. No allocation.
            let mut done = [(0u64, 0i32); INFLIGHT_MAX];
            let mut count = 0;
            for c in u.ring.completion().take(INFLIGHT_MAX) {
                done[count] = (c.user_data(), c.result());
                count += 1;
            }
            for &(user_data, res) in &done[..count] {
                let Some(slot) = self.slots.get_mut(user_data as usize) else {
                    continue;
                };
                if slot.state != SlotState::InFlight {
                    continue;
                }
                slot.state = SlotState::Done(if res < 0 {
                    Some(-res)
                } else if (res as usize) < slot.len {
                    // A short write to a regular file means the device is full.
                    Some(libc::ENOSPC)
                } else {
                    None
                });
            }
            if let Some((offset, e)) = self.settle() {
                let path = self.path().to_path_buf();
                return Err(self.fail_with(write_error(&path, "io_uring write", offset, e)));
            }
        }
        let _ = want;
        Ok(())
    }

    /// Waits for every write in flight, whatever happened before.
    fn wait_all(&mut self) -> Result<(), StorageError> {
        let all = self.slots.len();
        let was = self.failed;
        // `reap` stops on the first failure; keep going so nothing stays in flight.
        let mut r = Ok(());
        for _ in 0..=all {
            r = self.reap(all);
            if self.order.is_empty() || matches!(r, Err(StorageError::Io { .. })) {
                break;
            }
        }
        self.failed |= was;
        r
    }

    /// Waits for every write in flight.
    pub(crate) fn flush(&mut self) -> Result<(), StorageError> {
        let all = self.slots.len();
        self.reap(all)?;
        self.check()
    }

    /// Writes `bytes` at the end of the file, synchronously, after everything in flight.
    pub(crate) fn write_tail(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.flush()?;
        let t = self
            .target
            .as_mut()
            .ok_or_else(|| StorageError::Stopped("no segment file open".into()))?;
        let offset = t.offset;
        if let Err(e) = t.file.write_all_at(bytes, offset) {
            self.failed = true;
            return Err(write_error(&t.path, "pwrite", offset, e));
        }
        t.offset += bytes.len() as u64;
        Ok(())
    }

    /// Waits for everything in flight, then makes the data durable.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        let t = self
            .target
            .as_ref()
            .ok_or_else(|| StorageError::Stopped("no segment file open".into()))?;
        if let Err(e) = t.file.sync_data() {
            let err = write_error(&t.path, "fdatasync", t.offset, e);
            self.failed = true;
            return Err(err);
        }
        Ok(())
    }
}

impl Drop for IoPool {
    fn drop(&mut self) {
        let _ = self.wait_all();
        if self.order.is_empty() {
            // Nothing in flight: the ring, then the buffers, can go.
            #[cfg(target_os = "linux")]
            // SAFETY: dropped once, here, and never used again.
            unsafe {
                ManuallyDrop::drop(&mut self.uring)
            };
            // SAFETY: as above; no write reads the buffers any more.
            unsafe { ManuallyDrop::drop(&mut self.buffers) };
        }
        // Otherwise the kernel may still read the buffers: leak them, and the ring with
        // them (ManuallyDrop), rather than free memory a write is using.
    }
}

#[cfg(test)]
mod accounting_tests {
    use super::*;

    fn tally(kind: u16, n: u64) -> KindTally {
        let mut t = KindTally::default();
        for _ in 0..n {
            t.add_one(kind);
        }
        t
    }

    /// Blocks count as on disk in file order only: a block that completed after a
    /// failed one is unreadable (the reader's scan stops at the torn block), so lost.
    #[test]
    fn completions_settle_in_file_order() {
        let mut pool = IoPool::new(Path::new("/nonexistent"), IoBackend::Portable, 4, 16).unwrap();
        let states = [
            (SlotState::Done(None), 1u16, 10u64),
            (SlotState::InFlight, 2, 20),
            (SlotState::Done(None), 3, 30),
            (SlotState::Done(None), 4, 40),
        ];
        pool.free.clear();
        for (i, &(state, kind, n)) in states.iter().enumerate() {
            pool.slots[i] = Slot {
                state,
                offset: 256 + 100 * i as u64,
                len: 100,
                tally: tally(kind, n),
            };
            pool.order.push_back(i);
        }
        // Block 1 is still in flight: only block 0 is on disk so far.
        assert!(pool.settle().is_none());
        assert_eq!(pool.counts.records_on_disk, 10);
        assert_eq!(pool.free, vec![0]);
        // Block 1 fails: it and the blocks after it (complete or not) are lost.
        pool.slots[1].state = SlotState::Done(Some(libc::ENOSPC));
        let (offset, e) = pool.settle().expect("the failure is reported once");
        assert_eq!((offset, e.raw_os_error()), (356, Some(libc::ENOSPC)));
        assert_eq!(pool.counts.records_on_disk, 10);
        assert_eq!(pool.counts.lost.total(), 90);
        assert_eq!(pool.counts.lost.per_kind[2..5], [20, 30, 40]);
        assert!(pool.order.is_empty() && pool.free.len() == 4);
        assert!(pool.failed);
    }

    /// A pool stopped for another reason than a failed write (the ring failed, a sync
    /// failed) still counts writes completing in full as on disk: the file is not torn.
    #[test]
    fn a_stopped_pool_still_counts_complete_writes() {
        let mut pool = IoPool::new(Path::new("/nonexistent"), IoBackend::Portable, 2, 16).unwrap();
        pool.failed = true;
        pool.free.retain(|&i| i != 0);
        pool.slots[0] = Slot {
            state: SlotState::Done(None),
            offset: 256,
            len: 100,
            tally: tally(5, 7),
        };
        pool.order.push_back(0);
        assert!(pool.settle().is_none());
        assert_eq!(
            (pool.counts.records_on_disk, pool.counts.lost.total()),
            (7, 0)
        );
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    extern "C" fn ignore(_: libc::c_int) {}

    /// A wait interrupted by signals (a handler without SA_RESTART, as at shutdown)
    /// is resumed, not taken for a failure: before, `reap` returned the EINTR.
    #[test]
    fn enter_retries_interrupted_waits() {
        // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe (empty).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = ignore as *const () as usize;
            sa.sa_flags = 0; // no SA_RESTART: the wait sees EINTR
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
        }
        let mut u = Uring {
            ring: io_uring::IoUring::new(4).unwrap(),
        };
        let ts = io_uring::types::Timespec::new().nsec(300_000_000);
        let sqe = io_uring::opcode::Timeout::new(&ts).build().user_data(7);
        // SAFETY: `ts` outlives the operation (we wait for its completion below).
        unsafe { u.ring.submission().push(&sqe).unwrap() };
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let signaller = std::thread::spawn(move || {
            for _ in 0..5 {
                std::thread::sleep(Duration::from_millis(30));
                // SAFETY: `me` is alive: it joins this thread before returning.
                unsafe { libc::pthread_kill(me, libc::SIGUSR2) };
            }
        });
        let started = Instant::now();
        // As `reap` does: wait until the completion is there. (The first interrupted
        // enter reports the submission, Ok(1); later ones fail with EINTR, which
        // `enter` must absorb.)
        let mut r = Ok(());
        while r.is_ok() && u.ring.completion().is_empty() {
            r = u.enter(1);
        }
        signaller.join().unwrap();
        r.expect("interrupted waits are retried");
        let c = u.ring.completion().next().expect("the timeout completed");
        assert_eq!(c.user_data(), 7);
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
}
