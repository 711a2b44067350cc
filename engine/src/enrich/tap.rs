//! The queue of lifecycle events from a core thread to the enrichment thread: an SPSC
//! byte ring (`rtrb`), each entry a u32 length and the record's bytes. The core side
//! never blocks and never allocates: a record that does not fit is dropped from the
//! queue (counted per kind by the core, the event itself is written as usual).

use std::mem::MaybeUninit;

use bpf::abi::KIND_MAX;

/// The core thread's end.
pub struct TapProducer {
    ring: rtrb::Producer<u8>,
    /// Copies dropped because the queue was full, per kind.
    pub dropped: [u64; KIND_MAX],
}

/// The enrichment thread's end.
pub struct TapConsumer {
    ring: rtrb::Consumer<u8>,
}

impl std::fmt::Debug for TapProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapProducer")
            .field("free", &self.ring.slots())
            .finish()
    }
}

impl std::fmt::Debug for TapConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapConsumer")
            .field("pending", &self.ring.slots())
            .finish()
    }
}

/// A queue of `bytes` capacity.
pub fn tap(bytes: usize) -> (TapProducer, TapConsumer) {
    let (p, c) = rtrb::RingBuffer::new(bytes);
    (
        TapProducer {
            ring: p,
            dropped: [0; KIND_MAX],
        },
        TapConsumer { ring: c },
    )
}

fn copy_from(src: (&[u8], &[u8]), dst: &mut [u8]) {
    let (a, b) = src;
    let n = a.len().min(dst.len());
    dst[..n].copy_from_slice(&a[..n]);
    let rest = dst.len() - n;
    dst[n..].copy_from_slice(&b[..rest]);
}

impl TapProducer {
    /// Queues `record` (of kind `kind`); false, and counted, when there is no room.
    pub fn push(&mut self, kind: usize, record: &[u8]) -> bool {
        self.push_parts(kind, &[], record)
    }

    /// Queues `head` and `record` as one entry (of kind `kind`); false, and counted,
    /// when there is no room.
    pub fn push_parts(&mut self, kind: usize, head: &[u8], record: &[u8]) -> bool {
        let len = head.len() + record.len();
        let n = 4 + len;
        let Ok(mut chunk) = self.ring.write_chunk_uninit(n) else {
            if let Some(d) = self.dropped.get_mut(kind) {
                *d += 1;
            }
            return false;
        };
        let (a, b) = chunk.as_mut_slices();
        // Length then bytes, across the ring's wrap.
        put(a, b, 0, &(len as u32).to_le_bytes());
        put(a, b, 4, head);
        put(a, b, 4 + head.len(), record);
        // SAFETY: `put` wrote all `n` slots (the 4 length bytes, the head, the record).
        unsafe { chunk.commit_all() };
        true
    }
}

/// Writes `src` at offset `at` of the concatenation `a ++ b` (which must hold it).
fn put(a: &mut [MaybeUninit<u8>], b: &mut [MaybeUninit<u8>], at: usize, src: &[u8]) {
    let n = a.len().saturating_sub(at).min(src.len());
    let off = at.saturating_sub(a.len());
    let rest = &src[n..];
    assert!(
        off + rest.len() <= b.len() && (n == 0 || at + n <= a.len()),
        "the chunk holds the record"
    );
    // SAFETY: both ranges were checked above to lie within the slices; u8 has no
    // invalid bit patterns, and source and destination do not overlap (the record
    // lives outside the ring).
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), a.as_mut_ptr().add(at.min(a.len())).cast(), n);
        std::ptr::copy_nonoverlapping(rest.as_ptr(), b.as_mut_ptr().add(off).cast(), rest.len());
    }
}

impl TapConsumer {
    /// Moves the next queued record into `out` (cleared first); false when empty.
    pub fn pop_into(&mut self, out: &mut Vec<u8>) -> bool {
        let len = match self.ring.read_chunk(4) {
            Ok(c) => {
                let mut b = [0u8; 4];
                copy_from(c.as_slices(), &mut b);
                u32::from_le_bytes(b) as usize
            }
            Err(_) => return false,
        };
        // The producer commits length and bytes together.
        let Ok(chunk) = self.ring.read_chunk(4 + len) else {
            return false;
        };
        out.clear();
        out.resize(4 + len, 0);
        copy_from(chunk.as_slices(), out);
        out.drain(..4);
        chunk.commit_all();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_cross_the_wrap_intact_and_a_full_queue_counts_drops() {
        let (mut p, mut c) = tap(64);
        let mut out = Vec::new();
        for round in 0..50u8 {
            let rec: Vec<u8> = (0..(round % 23) + 1).map(|i| i ^ round).collect();
            assert!(p.push(1, &rec));
            assert!(c.pop_into(&mut out));
            assert_eq!(out, rec, "round {round}");
        }
        assert!(!c.pop_into(&mut out));
        assert!(p.push(2, &[7; 40]));
        assert!(!p.push(2, &[7; 40]), "no room for a second");
        assert_eq!(p.dropped[2], 1);
        assert!(c.pop_into(&mut out));
        assert_eq!(out, [7; 40]);
    }
}
