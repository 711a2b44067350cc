//! Per-CPU ring handles and an epoll-based poller over a set of them.
//!
//! A [`CpuRing`] owns the ring buffer map of one CPU (its fd and its memory mappings);
//! it outlives the [`crate::Collector`] it came from and can be moved to the thread
//! that drains it. Records are read in place from the mapping.
//!
//! Unlike a record-at-a-time reader, [`CpuRing::drain`] publishes the consumer position
//! once per batch: the kernel producer reads that position on every reserve, and moving
//! it after each record makes its cache line bounce between the cores per record.
//!
//! The kernel side wakes a sleeping reader only once `wakeup_bytes` are pending, so a
//! reader must also poll on a timeout: [`Poller::wait`] takes one.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use aya::maps::MapData;

/// `BPF_RINGBUF_BUSY_BIT`: the record is reserved but not yet committed.
const BUSY_BIT: u32 = 1 << 31;
/// `BPF_RINGBUF_DISCARD_BIT`: the record was discarded; skip it.
const DISCARD_BIT: u32 = 1 << 30;
/// `BPF_RINGBUF_HDR_SZ`: each record is preceded by an 8-byte header (length word first).
const HDR_SZ: u64 = 8;

/// A shared mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: RawFd, len: usize, prot: i32, offset: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping of `len` bytes of a BPF map fd; the kernel validates fd,
        // length, protection and offset, and we check the result.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows the mapping
        // past the life of its owner.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The ring buffer of one CPU.
pub struct CpuRing {
    cpu: u32,
    /// Keeps the map (and so the fd the mappings and epoll use) alive.
    map: MapData,
    /// Consumer page, read-write: `consumer_pos` at offset 0.
    consumer: Mapping,
    /// Producer page (`producer_pos` at offset 0), then the data pages mapped twice so a
    /// record that wraps around the end reads as one contiguous slice.
    producer: Mapping,
    page: usize,
    mask: u64,
    /// Our copy of the consumer position (the kernel's is only written on publish).
    pos: u64,
}

// SAFETY: the mappings are plain shared memory owned by this value; the only shared
// state with the kernel is accessed through atomics.
unsafe impl Send for CpuRing {}

impl std::fmt::Debug for CpuRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuRing")
            .field("cpu", &self.cpu)
            .field("bytes", &(self.mask + 1))
            .field("pos", &self.pos)
            .finish()
    }
}

impl CpuRing {
    pub(crate) fn new(cpu: u32, map: MapData, ring_bytes: u32) -> io::Result<Self> {
        let page = page_size();
        let fd = map.fd().as_fd().as_raw_fd();
        let consumer = Mapping::new(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = Mapping::new(fd, page + 2 * ring_bytes as usize, libc::PROT_READ, page)?;
        let mut ring = CpuRing {
            cpu,
            map,
            consumer,
            producer,
            page,
            mask: ring_bytes as u64 - 1,
            pos: 0,
        };
        ring.pos = ring.consumer_pos().load(Ordering::Acquire);
        Ok(ring)
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page is mapped read-write for our life and starts with the
        // kernel's 8-byte aligned `unsigned long consumer_pos`.
        unsafe { self.consumer.ptr.cast::<AtomicU64>().as_ref() }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: as above, for the read-only producer page's `producer_pos`; we only load.
        unsafe { self.producer.ptr.cast::<AtomicU64>().as_ref() }
    }

    /// The CPU whose events this ring carries.
    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    /// Size of the ring in bytes.
    pub fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// Bytes written by the kernel and not yet consumed.
    pub fn pending_bytes(&self) -> u64 {
        self.producer_pos().load(Ordering::Acquire) - self.pos
    }

    /// Hands up to `budget` committed records to `f`, in place, then gives their space
    /// back to the kernel in one step. Returns how many records were read. Stops early at
    /// a record the kernel has reserved but not yet committed.
    pub fn drain(&mut self, budget: usize, mut f: impl FnMut(&[u8])) -> usize {
        let producer = self.producer_pos().load(Ordering::Acquire);
        let data = self.page;
        let mut pos = self.pos;
        let mut n = 0;
        while pos < producer && n < budget {
            let off = data + (pos & self.mask) as usize;
            // SAFETY: `off` is inside the first copy of the data pages and 8-byte aligned
            // (positions always are); the length word is written by the kernel atomically.
            let word = unsafe {
                self.producer
                    .ptr
                    .add(off)
                    .cast::<AtomicU32>()
                    .as_ref()
                    .load(Ordering::Acquire)
            };
            if word & BUSY_BIT != 0 {
                break;
            }
            let len = (word & !(BUSY_BIT | DISCARD_BIT)) as usize;
            if word & DISCARD_BIT == 0 {
                let start = off + HDR_SZ as usize;
                // The kernel never reserves more than the ring size, and the data pages are
                // mapped twice, so [start, start + len) is always inside the mapping.
                assert!(
                    start + len <= self.producer.len,
                    "ring record past the mapping"
                );
                // SAFETY: in bounds (checked above) and committed (busy bit clear, acquire
                // load); the kernel does not reuse it until we publish a position past it.
                let record = unsafe {
                    std::slice::from_raw_parts(self.producer.ptr.as_ptr().add(start), len)
                };
                f(record);
                n += 1;
            }
            pos += (len as u64 + HDR_SZ).next_multiple_of(8);
        }
        if pos != self.pos {
            self.pos = pos;
            self.consumer_pos().store(pos, Ordering::Release);
        }
        n
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}

impl AsFd for CpuRing {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.map.fd().as_fd()
    }
}

impl AsRawFd for CpuRing {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
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
