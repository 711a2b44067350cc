//! Per-CPU ring handles and an epoll-based poller over a set of them.
//!
//! A [`CpuRing`] owns the ring buffer map of one CPU (its fd and its memory mapping);
//! it outlives the [`crate::Collector`] it came from and can be moved to the thread
//! that drains it. Records are read in place: [`CpuRing::next`] lends the bytes inside
//! the mapping, and the slot is released to the kernel when the item is dropped.
//!
//! The kernel side wakes a sleeping reader only once `wakeup_bytes` are pending, so a
//! reader must also poll on a timeout: [`Poller::wait`] takes one.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use aya::maps::{MapData, RingBuf, ring_buf::RingBufItem};

/// The ring buffer of one CPU.
pub struct CpuRing {
    cpu: u32,
    ring: RingBuf<MapData>,
}

impl std::fmt::Debug for CpuRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuRing").field("cpu", &self.cpu).finish()
    }
}

impl CpuRing {
    pub(crate) fn new(cpu: u32, ring: RingBuf<MapData>) -> Self {
        Self { cpu, ring }
    }

    /// The CPU whose events this ring carries.
    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    /// The next record, in place; `None` when the ring is empty. The record's slot goes
    /// back to the kernel when the returned item is dropped.
    #[expect(
        clippy::should_implement_trait,
        reason = "lends a borrow of the ring; cannot be an Iterator"
    )]
    pub fn next(&mut self) -> Option<RingBufItem<'_>> {
        self.ring.next()
    }

    /// Drains up to `budget` records into `f`; returns how many were read.
    pub fn drain(&mut self, budget: usize, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while n < budget {
            let Some(item) = self.ring.next() else { break };
            f(&item);
            n += 1;
        }
        n
    }
}

impl AsFd for CpuRing {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

impl AsRawFd for CpuRing {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

/// Waits on several rings with one epoll instance.
#[derive(Debug)]
pub struct Poller {
    epfd: std::os::fd::OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Poller {
    /// A poller over `rings`; ring `i` is reported as token `i`.
    pub fn new(rings: &[CpuRing]) -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        let epfd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        for (i, ring) in rings.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: both fds are valid for the call and `ev` outlives it.
            let rc = unsafe {
                libc::epoll_ctl(
                    epfd.as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    ring.as_raw_fd(),
                    &mut ev,
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Self {
            epfd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; rings.len().max(1)],
        })
    }

    /// Sleeps until a ring signals data or `timeout` passes; returns the tokens of the
    /// rings that signalled (possibly none: on timeout, poll every ring anyway).
    pub fn wait(&mut self, timeout: Duration) -> io::Result<impl Iterator<Item = usize> + '_> {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `events` is a live buffer of `events.len()` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                ms,
            )
        };
        let n = if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
            0
        } else {
            n as usize
        };
        Ok(self.events[..n].iter().map(|e| e.u64 as usize))
    }
}
