//! What a segment stores: event records (opaque bytes with a timestamp, a kind and a
//! sampling weight) and loss records.

/// The kind id of loss records. Event kinds start at 1, so 0 is free for this.
pub const KIND_LOSS: u16 = 0;

/// A record to store, borrowed from wherever it lives (a ring, a buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Monotonic timestamp, ns.
    pub ts_ns: u64,
    /// Event kind id (`KIND_LOSS` for loss records).
    pub kind: u16,
    /// Sampling weight: this record stands for `weight` events (1 in N kept). At least 1.
    pub weight: u32,
    /// The record's bytes, stored and given back exactly.
    pub bytes: &'a [u8],
}

/// Why events were lost. Stable ids: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum LossReason {
    /// The kernel's per-CPU ring was full (`ring_full` counter).
    KernelRingFull = 1,
    /// A queue between threads was full.
    QueueFull = 2,
    /// The writer could not keep up and records were shed.
    WriterBehind = 3,
    /// A record from the kernel did not decode.
    Undecodable = 4,
    /// Storage failed (e.g. disk full) and records were not written.
    StorageError = 5,
    /// The kernel's per-CPU token bucket rejected them (a configured rate limit).
    KernelRateLimited = 6,
    /// The copy of a lifecycle event for the enrichment tables did not fit in its queue
    /// (the event itself was kept): enrichment may be missing after this.
    EnrichQueueFull = 7,
    /// A window's partial aggregate could not be handed to the semantic thread (its
    /// queue was full): the records it held are missing from that window's summary.
    SemanticQueueFull = 8,
    /// Lines of the summary stream an exporter (NATS) had to drop: its backlog was
    /// full while the server was away. `count` is lines, not events.
    ExportDropped = 9,
}

impl LossReason {
    /// The stable name used in output.
    pub fn name(self) -> &'static str {
        match self {
            LossReason::KernelRingFull => "kernel_ring_full",
            LossReason::QueueFull => "queue_full",
            LossReason::WriterBehind => "writer_behind",
            LossReason::Undecodable => "undecodable",
            LossReason::StorageError => "storage_error",
            LossReason::KernelRateLimited => "kernel_rate_limited",
            LossReason::EnrichQueueFull => "enrich_queue_full",
            LossReason::SemanticQueueFull => "semantic_queue_full",
            LossReason::ExportDropped => "export_dropped",
        }
    }

    /// The reason for a stored id, if known.
    pub fn from_id(id: u16) -> Option<LossReason> {
        Some(match id {
            1 => LossReason::KernelRingFull,
            2 => LossReason::QueueFull,
            3 => LossReason::WriterBehind,
            4 => LossReason::Undecodable,
            5 => LossReason::StorageError,
            6 => LossReason::KernelRateLimited,
            7 => LossReason::EnrichQueueFull,
            8 => LossReason::SemanticQueueFull,
            9 => LossReason::ExportDropped,
            _ => return None,
        })
    }
}

/// "We lost `count` events of `kind` on `cpu` between `start_ns` and `end_ns`, because
/// `reason`": stored in-band so replay can tell "nothing happened" from "we lost it".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    /// Stream that observed the loss.
    pub stream: u32,
    /// CPU the events were lost on, `u32::MAX` when not per CPU.
    pub cpu: u32,
    /// Event kind lost, 0 when not known.
    pub kind: u16,
    /// Raw reason id (see [`LossReason`]); unknown ids are kept, not rejected.
    pub reason: u16,
    /// Events lost.
    pub count: u64,
    /// Interval in which they were lost (monotonic ns).
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Bytes of an encoded [`Loss`].
pub const LOSS_LEN: usize = 40;

impl Loss {
    /// The fixed 40-byte little-endian encoding stored as a `KIND_LOSS` record.
    pub fn encode(&self) -> [u8; LOSS_LEN] {
        let mut b = [0u8; LOSS_LEN];
        b[0..8].copy_from_slice(&self.end_ns.to_le_bytes());
        b[8..12].copy_from_slice(&self.stream.to_le_bytes());
        b[12..16].copy_from_slice(&self.cpu.to_le_bytes());
        b[16..18].copy_from_slice(&self.kind.to_le_bytes());
        b[18..20].copy_from_slice(&self.reason.to_le_bytes());
        b[24..32].copy_from_slice(&self.count.to_le_bytes());
        b[32..40].copy_from_slice(&self.start_ns.to_le_bytes());
        b
    }

    /// Parses a loss record's bytes.
    pub fn decode(b: &[u8]) -> Option<Loss> {
        if b.len() != LOSS_LEN {
            return None;
        }
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        Some(Loss {
            end_ns: u64_at(0),
            stream: u32_at(8),
            cpu: u32_at(12),
            kind: u16::from_le_bytes([b[16], b[17]]),
            reason: u16::from_le_bytes([b[18], b[19]]),
            count: u64_at(24),
            start_ns: u64_at(32),
        })
    }

    /// The reason, if it is one this version knows.
    pub fn known_reason(&self) -> Option<LossReason> {
        LossReason::from_id(self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_round_trips() {
        let l = Loss {
            stream: 2,
            cpu: 1,
            kind: 10,
            reason: LossReason::KernelRingFull as u16,
            count: 12345,
            start_ns: 100,
            end_ns: 200,
        };
        assert_eq!(Loss::decode(&l.encode()), Some(l));
        assert_eq!(Loss::decode(&[0; 39]), None);
        assert_eq!(l.known_reason(), Some(LossReason::KernelRingFull));
        for id in 1..=8 {
            assert_eq!(LossReason::from_id(id).map(|r| r as u16), Some(id));
        }
    }
}
