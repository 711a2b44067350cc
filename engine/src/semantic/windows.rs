//! One core's open windows, folded in its write order: the same state machine runs on
//! the core thread (live: the clock closes windows and markers record it) and in
//! `engine summarize` (offline: the markers close them). A record whose window has
//! closed is late: it goes to the first open window, counted as late.

use std::collections::VecDeque;

use bpf::Event;
use storage::Loss;

use super::partial::Partial;

/// Windows open at once at most; a record further ahead goes to the last of them.
pub(crate) const OPEN_WINDOWS_MAX: usize = 4;

/// Keys per top map of a core's partial, for `top_n` shown: enough that the top of the
/// merged window is exact in all but adversarial spreads.
pub(crate) fn keys_per_partial(top_n: usize) -> usize {
    (top_n * 32).clamp(64, 4096)
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Windows {
    window_ns: u64,
    cap: usize,
    notable_bytes: usize,
    /// Notable events folded since the start (the next one's sequence number).
    notable_seq: u64,
    /// The first open window; `None` before the start.
    first: Option<u64>,
    /// Partials of `first`, `first + 1`, ... (as far as records reached).
    open: VecDeque<Partial>,
    /// Made ahead (not on the per-event path): a window a record opens takes one.
    spare: Vec<Partial>,
    /// Where the first open window starts (wall ns): the per-record window is then a
    /// u64 division from here, not a 128-bit one.
    first_start: i128,
    /// Where it ends.
    first_end: i128,
}

impl Windows {
    /// Windows of `window_ns`, top lists of `top_n`, `notable_bytes` of notable events
    /// per window.
    pub(crate) fn new(window_ns: u64, top_n: usize, notable_bytes: usize) -> Windows {
        Windows {
            window_ns,
            cap: keys_per_partial(top_n),
            notable_bytes,
            notable_seq: 0,
            first: None,
            open: VecDeque::with_capacity(OPEN_WINDOWS_MAX),
            spare: Vec::with_capacity(OPEN_WINDOWS_MAX),
            first_start: 0,
            first_end: 0,
        }
    }

    pub(crate) fn window_ns(&self) -> u64 {
        self.window_ns
    }

    /// Windows open from `window` on (what an earlier start left is dropped).
    pub(crate) fn start(&mut self, window: u64) {
        self.first = Some(window);
        self.notable_seq = 0;
        self.first_start = i128::from(window) * i128::from(self.window_ns);
        self.first_end = self.first_start + i128::from(self.window_ns);
        self.open.clear();
        self.refill();
    }

    /// Makes the spare partials (call off the per-event path: after a close, at a tick).
    pub(crate) fn refill(&mut self) {
        while self.spare.len() < OPEN_WINDOWS_MAX {
            self.spare
                .push(Partial::with_notables(0, self.cap, self.notable_bytes));
        }
    }

    /// The first open window.
    pub(crate) fn first(&self) -> Option<u64> {
        self.first
    }

    /// The partial a record at `wall_ns` folds into, and whether it is late; `None`
    /// before the start.
    #[inline]
    fn slot(&mut self, wall_ns: i128) -> Option<(&mut Partial, bool)> {
        // The common case: a record of the first open window, which has a partial.
        if wall_ns < self.first_end
            && wall_ns >= self.first_start
            && self.first.is_some()
            && !self.open.is_empty()
        {
            return self.open.front_mut().map(|p| (p, false));
        }
        let first = self.first?;
        let (i, late) = if wall_ns < self.first_start {
            (0, true)
        } else if wall_ns < self.first_end {
            (0, false)
        } else {
            let ahead = (wall_ns - self.first_start).min(i128::from(u64::MAX)) as u64;
            (
                ((ahead / self.window_ns) as usize).min(OPEN_WINDOWS_MAX - 1),
                false,
            )
        };
        if i == 0 && !self.open.is_empty() {
            return Some((&mut self.open[0], late));
        }
        while self.open.len() <= i {
            let mut p = self
                .spare
                .pop()
                .unwrap_or_else(|| Partial::with_notables(0, self.cap, self.notable_bytes));
            p.window = first + self.open.len() as u64;
            self.open.push_back(p);
        }
        Some((&mut self.open[i], late))
    }

    /// Folds an event; `notable`: its bytes, when it is notable.
    pub(crate) fn event(
        &mut self,
        ev: &Event<'_>,
        weight: u32,
        wall_ns: i128,
        notable: Option<&[u8]>,
    ) {
        let seq = self.notable_seq;
        if let Some((p, late)) = self.slot(wall_ns) {
            p.event(ev, weight, late);
            if let Some(bytes) = notable {
                p.notable(bytes, ev.header.ts_ns, wall_ns, seq, weight);
                self.notable_seq += 1;
            }
        }
    }

    pub(crate) fn loss(&mut self, l: &Loss, wall_ns: i128) {
        if let Some((p, late)) = self.slot(wall_ns) {
            p.loss(l, late);
        }
    }

    /// Closes the first open window: its partial (empty if nothing fell in it).
    pub(crate) fn close_first(&mut self) -> Option<Partial> {
        let first = self.first?;
        self.first = Some(first + 1);
        self.first_start = self.first_end;
        self.first_end += i128::from(self.window_ns);
        Some(match self.open.pop_front() {
            Some(p) => p,
            None => {
                let mut p = self
                    .spare
                    .pop()
                    .unwrap_or_else(|| Partial::with_notables(0, self.cap, self.notable_bytes));
                p.window = first;
                p
            }
        })
    }

    /// Whether the first open window ends (plus `lateness_ns`) at or before `wall_ns`.
    pub(crate) fn due(&self, wall_ns: i128, lateness_ns: u64) -> bool {
        self.first.is_some_and(|f| {
            (i128::from(f) + 1) * i128::from(self.window_ns) + i128::from(lateness_ns) <= wall_ns
        })
    }

    /// Whether any window past the first holds records (a stop closes up to there).
    pub(crate) fn last_open(&self) -> Option<u64> {
        self.first
            .map(|f| f + self.open.len().saturating_sub(1) as u64)
    }
}

#[cfg(test)]
mod tests {
    use bpf::Kind;
    use bpf::abi::EventHeader;

    use super::*;

    const W: u64 = 1_000;

    fn event(ts: u64) -> Vec<u64> {
        let len = Kind::SecurityCapability.record_len();
        let mut words = vec![0u64; len / 8];
        let b: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        let h: &mut EventHeader = bytemuck::from_bytes_mut(&mut b[..64]);
        h.ts_ns = ts;
        h.kind = Kind::SecurityCapability as u16;
        h.len = len as u32;
        h.pid = 7;
        words
    }

    fn fold(ws: &mut Windows, ts: u64) {
        let words = event(ts);
        let ev = bpf::decode(bytemuck::cast_slice(&words)).unwrap();
        let bytes: &[u8] = bytemuck::cast_slice(&words);
        ws.event(&ev, 2, i128::from(ts), Some(bytes));
    }

    #[test]
    fn late_records_go_to_the_first_open_window_and_far_ones_to_the_last() {
        let mut ws = Windows::new(W, 10, 4096);
        fold(&mut ws, 500); // before the start: nothing is open yet
        ws.start(1);
        fold(&mut ws, 1_500);
        fold(&mut ws, 2_100);
        assert!(!ws.due(1_999, 0) && ws.due(2_000, 0) && !ws.due(2_000, 1));
        let p = ws.close_first().unwrap();
        assert_eq!((p.window, p.records, p.late), (1, 1, 0));
        // Every event here is notable: kept with its sequence in write order.
        assert_eq!(p.notables.iter().map(|n| n.seq).collect::<Vec<_>>(), [0]);
        assert_eq!(p.kinds[Kind::SecurityCapability as usize].events, 2);
        // Window 1 is closed: a record of it now is late, in window 2.
        fold(&mut ws, 1_900);
        // Far ahead: into the last window that may be open (2 + 3 = 5).
        fold(&mut ws, 99_000);
        assert_eq!(ws.last_open(), Some(5));
        let p = ws.close_first().unwrap();
        assert_eq!((p.window, p.records, p.late), (2, 2, 1));
        // Windows nothing fell in close empty.
        let p = ws.close_first().unwrap();
        assert_eq!((p.window, p.records), (3, 0));
        ws.close_first();
        let p = ws.close_first().unwrap();
        assert_eq!((p.window, p.records), (5, 1));
        assert_eq!(ws.first(), Some(6));
    }
}
