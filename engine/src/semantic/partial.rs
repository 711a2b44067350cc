//! A window's partial aggregate on one core thread: what the records it wrote in that
//! window add up to. Folding a record allocates nothing (every map is made with its
//! full capacity when the partial is made, and keys are fixed-size); a key that does
//! not fit goes to the map's "other" count, and the overflow is counted.

use std::collections::HashMap;
use std::hash::Hash;

use bpf::abi::{KIND_MAX, str_bytes};
use bpf::{Event, Payload};
use storage::Loss;

/// Longest path kept as a file key (the kernel's bound).
pub(crate) const PATH_KEY_LEN: usize = bpf::abi::PATH_MAX_LEN;

/// Per-kind counts of a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KindCount {
    /// Records stored.
    pub stored: u64,
    /// Events they stand for (the sum of their sampling weights).
    pub events: u64,
    /// The largest weight seen (1 in N sampling in force at its most).
    pub max_weight: u32,
}

/// A process as a key: pid and comm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ProcessKey {
    pub pid: u32,
    pub comm: [u8; 16],
}

/// A file path as a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PathKey {
    pub len: u16,
    pub bytes: [u8; PATH_KEY_LEN],
}

impl std::fmt::Debug for PathKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.path()))
    }
}

impl PathKey {
    fn new(path: &[u8]) -> PathKey {
        let n = path.len().min(PATH_KEY_LEN);
        let mut bytes = [0u8; PATH_KEY_LEN];
        bytes[..n].copy_from_slice(&path[..n]);
        PathKey {
            len: n as u16,
            bytes,
        }
    }

    pub(crate) fn path(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// A remote peer as a key: family, address (IPv4 in the first 4 bytes) and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PeerKey {
    pub family: u16,
    pub addr: [u8; 16],
    pub port: u16,
}

/// Counts per key, at most `cap` keys; the rest go to `other`.
#[derive(Debug, Clone)]
pub(crate) struct TopMap<K> {
    pub counts: HashMap<K, u64>,
    cap: usize,
    /// Events of keys that did not fit.
    pub other: u64,
    /// Records whose key did not fit.
    pub overflow: u64,
}

impl<K: Copy + Eq + Hash + Ord> TopMap<K> {
    pub(crate) fn new(cap: usize) -> TopMap<K> {
        TopMap {
            counts: HashMap::with_capacity(cap),
            cap,
            other: 0,
            overflow: 0,
        }
    }

    /// A map bounded at `cap` keys that grows as keys come (off the per-event path).
    pub(crate) fn growing(cap: usize) -> TopMap<K> {
        TopMap {
            counts: HashMap::new(),
            cap,
            other: 0,
            overflow: 0,
        }
    }

    pub(crate) fn add(&mut self, key: K, n: u64) {
        if let Some(c) = self.counts.get_mut(&key) {
            *c += n;
        } else if self.counts.len() < self.cap {
            self.counts.insert(key, n);
        } else {
            self.other += n;
            self.overflow += 1;
        }
    }

    /// Adds `o` into `self` without a bound (merging is not on the per-event path).
    pub(crate) fn absorb(&mut self, o: &TopMap<K>) {
        for (k, n) in &o.counts {
            *self.counts.entry(*k).or_insert(0) += n;
        }
        self.other += o.other;
        self.overflow += o.overflow;
    }

    /// The `n` largest (by count, then key), and the count of all the others.
    pub(crate) fn top(&self, n: usize) -> (Vec<(K, u64)>, u64) {
        let mut v: Vec<(K, u64)> = self.counts.iter().map(|(k, c)| (*k, *c)).collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let rest: u64 = v.iter().skip(n).map(|(_, c)| c).sum();
        v.truncate(n);
        (v, rest + self.other)
    }
}

/// One core's aggregate of one window.
#[derive(Debug, Clone)]
pub(crate) struct Partial {
    /// Window index (wall-clock ns / window length).
    pub window: u64,
    /// Records folded (events and loss records), and of them those that came after
    /// their own window had closed.
    pub records: u64,
    pub late: u64,
    pub kinds: [KindCount; KIND_MAX],
    /// Events lost, by (reason, kind), from the loss records stored in the window.
    pub losses: HashMap<(u16, u16), u64>,
    pub processes: TopMap<ProcessKey>,
    pub cgroups: TopMap<u64>,
    pub files: TopMap<PathKey>,
    pub peers: TopMap<PeerKey>,
}

/// Loss (reason, kind) pairs kept per window; more are summed under reason 0.
const LOSS_KEYS_MAX: usize = 256;

impl Partial {
    /// An empty partial of `window` whose maps hold `cap` keys each.
    pub(crate) fn new(window: u64, cap: usize) -> Partial {
        Partial {
            window,
            records: 0,
            late: 0,
            kinds: [KindCount::default(); KIND_MAX],
            losses: HashMap::with_capacity(LOSS_KEYS_MAX),
            processes: TopMap::new(cap),
            cgroups: TopMap::new(cap),
            files: TopMap::new(cap),
            peers: TopMap::new(cap),
        }
    }

    /// An empty partial bounded at `cap` keys per map whose maps grow as keys come:
    /// for offline regrouping, not for a core thread.
    pub(crate) fn growing(window: u64, cap: usize) -> Partial {
        Partial {
            processes: TopMap::growing(cap),
            cgroups: TopMap::growing(cap),
            files: TopMap::growing(cap),
            peers: TopMap::growing(cap),
            ..Partial::new(window, 0)
        }
    }

    /// Folds an event stored with `weight`.
    pub(crate) fn event(&mut self, ev: &Event<'_>, weight: u32, late: bool) {
        self.records += 1;
        self.late += u64::from(late);
        let w = u64::from(weight.max(1));
        let k = &mut self.kinds[ev.kind as usize];
        k.stored += 1;
        k.events += w;
        k.max_weight = k.max_weight.max(weight);
        let h = ev.header;
        self.processes.add(
            ProcessKey {
                pid: h.pid,
                comm: h.comm,
            },
            w,
        );
        self.cgroups.add(h.cgroup_id, w);
        match ev.payload {
            Payload::FileOp(p) => self
                .files
                .add(PathKey::new(str_bytes(&p.path, p.path_len)), w),
            Payload::FileRename(p) => self
                .files
                .add(PathKey::new(str_bytes(&p.new_path, p.new_path_len)), w),
            Payload::Tcp(t) => self.peers.add(
                PeerKey {
                    family: t.family,
                    addr: t.daddr,
                    port: t.dport,
                },
                w,
            ),
            _ => {}
        }
    }

    /// Folds a stored loss record.
    pub(crate) fn loss(&mut self, l: &Loss, late: bool) {
        self.records += 1;
        self.late += u64::from(late);
        let key = (l.reason, l.kind);
        let key = if self.losses.len() < LOSS_KEYS_MAX || self.losses.contains_key(&key) {
            key
        } else {
            (0, 0)
        };
        let c = self.losses.entry(key).or_insert(0);
        *c = c.saturating_add(l.count);
    }

    /// Adds `o` (another core's partial of the same window) into `self`.
    pub(crate) fn absorb(&mut self, o: &Partial) {
        self.records += o.records;
        self.late += o.late;
        for (a, b) in self.kinds.iter_mut().zip(o.kinds.iter()) {
            a.stored += b.stored;
            a.events += b.events;
            a.max_weight = a.max_weight.max(b.max_weight);
        }
        for (k, n) in &o.losses {
            let c = self.losses.entry(*k).or_insert(0);
            *c = c.saturating_add(*n);
        }
        self.processes.absorb(&o.processes);
        self.cgroups.absorb(&o.cgroups);
        self.files.absorb(&o.files);
        self.peers.absorb(&o.peers);
    }
}
