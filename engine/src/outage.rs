//! A stream whose storage failed (full disk, read-only directory, I/O error) while the
//! engine keeps running: what it dropped since, per kind, the loss reports that could
//! not be written meanwhile, and when to try again. On resuming, all of it goes in-band
//! as loss records, so replay shows the gap.

use std::time::Duration;

use bpf::abi::KIND_MAX;
use storage::{Loss, LossReason};

/// How often a stopped stream tries to reopen its storage.
pub(crate) const STORAGE_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Loss reports parked during an outage at most (merged by CPU, kind and reason first,
/// so this is only reached with thousands of CPUs); beyond it they are counted.
const PARKED_LOSSES_MAX: usize = 4096;

/// The state of a stopped stream.
#[derive(Debug)]
pub(crate) struct Outage {
    /// Why storage stopped (the latest error).
    pub(crate) why: String,
    /// When (monotonic ns).
    pub(crate) since_ns: u64,
    /// Kept events dropped since, per kind (including those lost in failed blocks).
    pub(crate) dropped: [u64; KIND_MAX],
    /// Loss reports that arrived meanwhile, merged by CPU, kind and reason.
    pub(crate) parked: Vec<Loss>,
    /// Loss reports beyond [`PARKED_LOSSES_MAX`] (their counts stay in the identity).
    pub(crate) parked_overflow: u64,
    /// When to try again (monotonic ns).
    pub(crate) next_retry_ns: u64,
}

impl Outage {
    pub(crate) fn new(why: String, since_ns: u64) -> Outage {
        Outage {
            why,
            since_ns,
            dropped: [0; KIND_MAX],
            parked: Vec::new(),
            parked_overflow: 0,
            next_retry_ns: since_ns.saturating_add(STORAGE_RETRY_INTERVAL.as_nanos() as u64),
        }
    }

    /// Keeps `loss` for when storage is back.
    pub(crate) fn park(&mut self, loss: &Loss) {
        if let Some(p) = self
            .parked
            .iter_mut()
            .find(|p| p.cpu == loss.cpu && p.kind == loss.kind && p.reason == loss.reason)
        {
            p.count = p.count.saturating_add(loss.count);
            p.start_ns = p.start_ns.min(loss.start_ns);
            p.end_ns = p.end_ns.max(loss.end_ns);
        } else if self.parked.len() < PARKED_LOSSES_MAX {
            self.parked.push(*loss);
        } else {
            self.parked_overflow += 1;
        }
    }

    /// Events dropped so far.
    pub(crate) fn total_dropped(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// The loss records that tell replay about this outage, ending at `end_ns`: one per
    /// kind that dropped events (reason `storage_error`, CPU `u32::MAX` = the engine),
    /// then the parked reports.
    pub(crate) fn losses(&self, stream: u32, end_ns: u64) -> impl Iterator<Item = Loss> + '_ {
        let since = self.since_ns;
        self.dropped
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(move |(kind, &count)| Loss {
                stream,
                cpu: u32::MAX,
                kind: kind as u16,
                reason: LossReason::StorageError as u16,
                count,
                start_ns: since,
                end_ns,
            })
            .chain(self.parked.iter().copied())
    }

    /// Takes over an earlier outage that a failed resume did not end: its drops, its
    /// parked reports and its start.
    pub(crate) fn absorb(&mut self, earlier: Outage) {
        self.since_ns = self.since_ns.min(earlier.since_ns);
        for (d, e) in self.dropped.iter_mut().zip(earlier.dropped) {
            *d = d.saturating_add(e);
        }
        for l in &earlier.parked {
            self.park(l);
        }
        self.parked_overflow += earlier.parked_overflow;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_reports_merge_and_the_outage_becomes_loss_records() {
        let mut o = Outage::new("disk full".into(), 100);
        assert_eq!(
            o.next_retry_ns,
            100 + STORAGE_RETRY_INTERVAL.as_nanos() as u64
        );
        let l = |cpu, count, s, e| Loss {
            stream: 1,
            cpu,
            kind: 7,
            reason: LossReason::KernelRingFull as u16,
            count,
            start_ns: s,
            end_ns: e,
        };
        o.park(&l(0, 5, 200, 300));
        o.park(&l(0, 6, 300, 400));
        o.park(&l(1, 1, 300, 400));
        assert_eq!(o.parked.len(), 2);
        assert_eq!(
            (o.parked[0].count, o.parked[0].start_ns, o.parked[0].end_ns),
            (11, 200, 400)
        );
        o.dropped[3] = 10;
        o.dropped[9] = 2;
        assert_eq!(o.total_dropped(), 12);
        let out: Vec<Loss> = o.losses(4, 999).collect();
        assert_eq!(out.len(), 4);
        assert_eq!(
            (
                out[0].stream,
                out[0].kind,
                out[0].count,
                out[0].start_ns,
                out[0].end_ns
            ),
            (4, 3, 10, 100, 999)
        );
        assert_eq!(out[0].reason, LossReason::StorageError as u16);
        assert_eq!((out[1].kind, out[1].count), (9, 2));
        assert_eq!(out[2].count, 11);
        // A failed resume: the new outage takes the old one over.
        let mut later = Outage::new("read-only".into(), 5_000);
        later.dropped[3] = 1;
        later.park(&l(0, 1, 4_000, 4_500));
        later.absorb(o);
        assert_eq!(later.since_ns, 100);
        assert_eq!((later.dropped[3], later.dropped[9]), (11, 2));
        assert_eq!(later.parked.len(), 2);
        assert_eq!(later.parked[0].count, 12);
        assert_eq!(later.why, "read-only");
    }
}
