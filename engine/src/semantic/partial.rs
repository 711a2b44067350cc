//! A window's partial aggregate on one core thread: what the records it wrote in that
//! window add up to. Folding a record allocates nothing (every map is made with its
//! full capacity when the partial is made, and keys are fixed-size); a key that does
//! not fit goes to the map's "other" count, and the overflow is counted.

use std::collections::HashMap;
use std::hash::Hash;

use bpf::abi::{KIND_MAX, str_bytes};
use bpf::{Event, Kind, Payload};
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

/// A process as a key: pid and comm (hashed by pid alone: an exec's new comm lands in
/// the same bucket, and equality still tells them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ProcessKey {
    pub pid: u32,
    pub comm: [u8; 16],
}

impl Hash for ProcessKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u32(self.pid);
    }
}

/// A file path as a key (hashed and compared by its bytes up to `len` only).
#[derive(Clone, Copy)]
pub(crate) struct PathKey {
    pub len: u16,
    pub bytes: [u8; PATH_KEY_LEN],
}

impl PartialEq for PathKey {
    fn eq(&self, o: &Self) -> bool {
        self.path() == o.path()
    }
}
impl Eq for PathKey {}
impl Hash for PathKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write(self.path());
    }
}
impl PartialOrd for PathKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for PathKey {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.path().cmp(o.path())
    }
}

/// A fast, non-keyed hasher for the fold's maps (FxHash's multiply-rotate): the keys
/// come from the kernel and the maps are bounded, so flooding cannot grow them; the
/// output never depends on hash order (lists are sorted).
#[derive(Default, Clone, Copy)]
pub(crate) struct FoldHasher(u64);

const FOLD_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl std::hash::Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(FOLD_SEED);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() && bytes.len() >= 8 {
            // The tail as the last 8 bytes (overlapping the last whole word): one load.
            let last = &bytes[bytes.len() - 8..];
            let v = u64::from_le_bytes(last.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(FOLD_SEED);
        } else {
            for &b in rest {
                self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(FOLD_SEED);
            }
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(FOLD_SEED);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// A map hashed with [`FoldHasher`] (also the enrichment tables' maps, keyed by pids,
/// uids and cgroup ids).
pub(crate) type FoldMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FoldHasher>>;

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

/// Counts per key, at most `cap` keys. When a new key finds the map full, the lower
/// half of the keys by count (ties by key) is dropped into `other`, and the new key
/// gets a slot: a key heavy enough to matter gets in even if it comes late (a core's
/// first records often are hundreds of one-off paths), at an amortized O(log cap) per
/// drop, without allocating (the scratch is made with the map). The dropped keys'
/// events stay counted in `other`; a dropped key that comes back starts again from 0.
///
/// A map made `with_front` has a small direct-mapped cache in front of it (a slot per
/// key hash, no probing): a key that repeats (a process's burst of calls, the few
/// cgroups of a host) is counted there in a few instructions, and moved into the map
/// when another key takes its slot. Readers ([`TopMap::top`], [`TopMap::absorb`])
/// count both; the fold runs the same on the core and in `engine summarize`, so where
/// a count sits never changes the output.
#[derive(Debug, Clone)]
pub(crate) struct TopMap<K> {
    pub counts: FoldMap<K, u64>,
    cap: usize,
    /// Events of keys not in `counts` (dropped to make room).
    pub other: u64,
    /// Keys dropped to make room.
    pub overflow: u64,
    scratch: Vec<(u64, K)>,
    /// The cache in front (empty, or a power of two of slots).
    front: Vec<Option<(K, u64)>>,
}

fn fold_hash<K: Hash>(key: &K) -> u64 {
    let mut h = FoldHasher::default();
    key.hash(&mut h);
    std::hash::Hasher::finish(&h)
}

impl<K: Copy + Eq + Hash + Ord> TopMap<K> {
    pub(crate) fn new(cap: usize) -> TopMap<K> {
        TopMap {
            // Twice the keys it holds: after many removals a hash map is rebuilt in
            // place (no allocation) only while it is at most half full.
            counts: FoldMap::with_capacity_and_hasher(2 * (cap + 1), Default::default()),
            cap,
            other: 0,
            overflow: 0,
            scratch: Vec::with_capacity(cap),
            front: Vec::new(),
        }
    }

    /// [`TopMap::new`] with a cache of `slots` (a power of two) in front.
    pub(crate) fn with_front(cap: usize, slots: usize) -> TopMap<K> {
        debug_assert!(slots.is_power_of_two());
        TopMap {
            front: if cap > 0 {
                vec![None; slots]
            } else {
                Vec::new()
            },
            ..TopMap::new(cap)
        }
    }

    /// A map bounded at `cap` keys that grows as keys come (off the per-event path).
    pub(crate) fn growing(cap: usize) -> TopMap<K> {
        TopMap {
            counts: FoldMap::default(),
            cap,
            other: 0,
            overflow: 0,
            scratch: Vec::new(),
            front: Vec::new(),
        }
    }

    /// Adds `n` to `key`.
    #[inline]
    pub(crate) fn add(&mut self, key: K, n: u64) {
        if self.front.is_empty() {
            self.add_dropping(key, n);
            return;
        }
        let i = self.front_slot(&key);
        match &mut self.front[i] {
            Some((k, c)) if *k == key => *c += n,
            slot => {
                if let Some((k, c)) = slot.replace((key, n)) {
                    self.add_dropping(k, c);
                }
            }
        }
    }

    /// The slot of the cache in front that `key` may sit in (the cache is not empty).
    #[inline]
    fn front_slot(&self, key: &K) -> usize {
        (fold_hash(key) >> 32) as usize & (self.front.len() - 1)
    }

    /// Whether `key` is counted, in the map or in the cache in front.
    fn holds(&self, key: &K) -> bool {
        self.counts.contains_key(key)
            || (!self.front.is_empty()
                && self.front[self.front_slot(key)].is_some_and(|(k, _)| k == *key))
    }

    /// The counts in the cache in front.
    fn front_counts(&self) -> impl Iterator<Item = (&K, &u64)> {
        self.front.iter().flatten().map(|(k, c)| (k, c))
    }

    /// Adds `n` to `key`; true when keys were dropped to make room for it.
    pub(crate) fn add_dropping(&mut self, key: K, n: u64) -> bool {
        if let Some(c) = self.counts.get_mut(&key) {
            *c += n;
            return false;
        }
        let dropped = self.counts.len() >= self.cap && self.cap > 0;
        if dropped {
            self.drop_lower_half();
        }
        if self.counts.len() < self.cap {
            self.counts.insert(key, n);
        } else {
            self.other += n;
        }
        dropped
    }

    /// Drops the lower half of the keys by (count, key) into `other`.
    fn drop_lower_half(&mut self) {
        self.scratch.clear();
        self.scratch
            .extend(self.counts.iter().map(|(k, c)| (*c, *k)));
        let half = self.scratch.len() / 2;
        if half == 0 {
            return;
        }
        self.scratch.select_nth_unstable(half - 1);
        for &(c, k) in &self.scratch[..half] {
            self.counts.remove(&k);
            self.other += c;
            self.overflow += 1;
        }
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        self.counts.contains_key(key)
    }

    /// Adds `o` into `self` without a bound (merging is not on the per-event path).
    pub(crate) fn absorb(&mut self, o: &TopMap<K>) {
        for (k, n) in o.counts.iter().chain(o.front_counts()) {
            *self.counts.entry(*k).or_insert(0) += n;
        }
        self.other += o.other;
        self.overflow += o.overflow;
    }

    /// The `n` largest (by count, then key), and the count of all the others.
    pub(crate) fn top(&self, n: usize) -> (Vec<(K, u64)>, u64) {
        let mut all = self.counts.clone();
        for (k, c) in self.front_counts() {
            *all.entry(*k).or_insert(0) += c;
        }
        let mut v: Vec<(K, u64)> = all.iter().map(|(k, c)| (*k, *c)).collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let rest: u64 = v.iter().skip(n).map(|(_, c)| c).sum();
        v.truncate(n);
        (v, rest + self.other)
    }
}

/// Counts per file path: the hot map is keyed by the path's 64-bit hash (16-byte
/// entries, not 260), and the path itself is kept once, when its key is admitted.
/// (Two paths with one hash would share a row: about 1 in 10^17 per pair.)
#[derive(Debug, Clone)]
pub(crate) struct PathTop {
    pub counts: TopMap<u64>,
    names: Names,
    /// Per slot of the cache in front: a value derived from the path in it (for the
    /// files map, the hash of its directory), computed once when it took the slot.
    aux: Vec<u64>,
}

/// The paths of a [`PathTop`]'s keys: kept in slots made with the map (a path is 260
/// bytes), found through a small index by key. Removing a key frees its slot. The index
/// is sized at twice the keys it may hold: a hash map that has had many keys removed
/// is rebuilt in place, without allocating, only while it is at most half full.
#[derive(Debug, Clone)]
struct Names {
    index: FoldMap<u64, u32>,
    slots: Vec<(PathKey, u8)>,
    free: Vec<u32>,
    /// Slots at most (`None`: grows, off the per-event path).
    bound: Option<usize>,
}

impl Names {
    fn bounded(n: usize) -> Names {
        Names {
            index: FoldMap::with_capacity_and_hasher(2 * (n + 1), Default::default()),
            slots: Vec::with_capacity(n),
            free: Vec::with_capacity(n),
            bound: Some(n),
        }
    }

    fn growing() -> Names {
        Names {
            index: FoldMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            bound: None,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.len()
    }

    fn contains(&self, h: u64) -> bool {
        self.index.contains_key(&h)
    }

    fn get(&self, h: u64) -> Option<&(PathKey, u8)> {
        self.index.get(&h).map(|&i| &self.slots[i as usize])
    }

    /// Names `h` (unless every slot is taken, which the map's bound rules out).
    fn insert(&mut self, h: u64, path: &[u8], tag: u8) {
        let entry = (PathKey::new(path), tag);
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = entry;
                i
            }
            None if self.bound.is_none_or(|b| self.slots.len() < b) => {
                self.slots.push(entry);
                (self.slots.len() - 1) as u32
            }
            None => return,
        };
        if let Some(old) = self.index.insert(h, i) {
            self.free.push(old);
        }
    }

    fn remove(&mut self, h: u64) {
        if let Some(i) = self.index.remove(&h) {
            self.free.push(i);
        }
    }

    fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        let free = &mut self.free;
        self.index.retain(|h, i| {
            let k = keep(*h);
            if !k {
                free.push(*i);
            }
            k
        });
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &(PathKey, u8))> {
        self.index
            .iter()
            .map(|(h, &i)| (*h, &self.slots[i as usize]))
    }
}

/// A path's key in a map counted per tag (tag 0: the path's own hash).
fn tagged_hash(path_hash: u64, tag: u8) -> u64 {
    path_hash ^ u64::from(tag).wrapping_mul(FOLD_SEED)
}

fn path_hash(path: &[u8]) -> u64 {
    let mut h = FoldHasher::default();
    std::hash::Hasher::write(&mut h, path);
    std::hash::Hasher::write_usize(&mut h, path.len());
    std::hash::Hasher::finish(&h)
}

impl PathTop {
    fn new(cap: usize) -> PathTop {
        PathTop {
            counts: TopMap::with_front(cap, PATH_FRONT),
            // A map of no keys is a merge target (absorbing is unbounded): its names
            // grow.
            names: if cap > 0 {
                Names::bounded(cap + PATH_FRONT + 1)
            } else {
                Names::growing()
            },
            aux: vec![0; if cap > 0 { PATH_FRONT } else { 0 }],
        }
    }

    fn growing(cap: usize) -> PathTop {
        PathTop {
            counts: TopMap::growing(cap),
            names: Names::growing(),
            aux: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, path: &[u8], n: u64) {
        self.add_tagged(path, 0, n);
    }

    /// Adds `n` to (`path`, `tag`): a path counted apart per tag (a directory per
    /// operation).
    pub(crate) fn add_tagged(&mut self, path: &[u8], tag: u8, n: u64) {
        self.add_hashed(tagged_hash(path_hash(path), tag), n, || (path, tag), || 0);
    }

    /// Adds `n` to the key `h` (the [`tagged_hash`] of `name()`'s path and tag; the
    /// name is made only when the key is new). Returns the aux value of the key's slot
    /// in the cache in front: `aux()`, computed when the key took the slot (every time,
    /// without a cache).
    pub(crate) fn add_hashed<'p>(
        &mut self,
        h: u64,
        n: u64,
        name: impl Fn() -> (&'p [u8], u8),
        aux: impl FnOnce() -> u64,
    ) -> u64 {
        if !self.counts.front.is_empty() {
            // The common case: the key is in the cache in front.
            let i = self.counts.front_slot(&h);
            let evicted = match &mut self.counts.front[i] {
                Some((k, c)) if *k == h => {
                    *c += n;
                    return self.aux[i];
                }
                slot => slot.replace((h, n)),
            };
            let a = aux();
            self.aux[i] = a;
            if !self.names.contains(h) {
                let (path, tag) = name();
                self.names.insert(h, path, tag);
            }
            if let Some((k, c)) = evicted {
                if self.counts.add_dropping(k, c) {
                    let counts = &self.counts;
                    self.names.retain(|k| counts.holds(&k));
                }
                if !self.counts.holds(&k) {
                    self.names.remove(k);
                }
            }
            return a;
        }
        // A key already counted: one lookup.
        if let Some(c) = self.counts.counts.get_mut(&h) {
            *c += n;
            return aux();
        }
        if self.counts.add_dropping(h, n) {
            let counts = &self.counts;
            self.names.retain(|k| counts.contains(&k));
        }
        if self.counts.contains(&h) {
            let (path, tag) = name();
            self.names.insert(h, path, tag);
        }
        aux()
    }

    fn absorb(&mut self, o: &PathTop) {
        self.counts.absorb(&o.counts);
        for (h, (path, tag)) in o.names.iter() {
            if !self.names.contains(h) {
                self.names.insert(h, path.path(), *tag);
            }
        }
    }

    /// The `n` largest (by count, then path), and the count of all the others.
    pub(crate) fn top(&self, n: usize) -> (Vec<(PathKey, u64)>, u64) {
        let mut v: Vec<(PathKey, u64)> = Vec::new();
        let mut at: FoldMap<u64, usize> = FoldMap::default();
        // A key without a name (none is expected) is counted with the others.
        let mut nameless = 0;
        for (h, c) in self.counts.counts.iter().chain(self.counts.front_counts()) {
            let Some((path, _)) = self.names.get(*h) else {
                nameless += c;
                continue;
            };
            match at.get(h) {
                Some(&i) => v[i].1 += c,
                None => {
                    at.insert(*h, v.len());
                    v.push((*path, *c));
                }
            }
        }
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let rest: u64 = v.iter().skip(n).map(|(_, c)| c).sum();
        v.truncate(n);
        (v, rest + self.counts.other + nameless)
    }

    /// For a map counted with tags below `T`: the `n` paths with the most events (all
    /// tags), each with its count per tag, and the count of all the others.
    pub(crate) fn top_tagged<const T: usize>(
        &self,
        n: usize,
    ) -> (Vec<(PathKey, u64, [u64; T])>, u64) {
        let mut by: std::collections::BTreeMap<PathKey, (u64, [u64; T])> = Default::default();
        let mut nameless = 0;
        for (h, c) in self.counts.counts.iter().chain(self.counts.front_counts()) {
            match self.names.get(*h) {
                Some((path, tag)) => {
                    let e = by.entry(*path).or_insert((0, [0; T]));
                    e.0 += c;
                    if let Some(t) = e.1.get_mut(usize::from(*tag)) {
                        *t += c;
                    }
                }
                None => nameless += c,
            }
        }
        let mut v: Vec<(PathKey, u64, [u64; T])> =
            by.into_iter().map(|(k, (c, t))| (k, c, t)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let rest: u64 = v.iter().skip(n).map(|(_, c, _)| c).sum();
        v.truncate(n);
        (v, rest + self.counts.other + nameless)
    }

    pub(crate) fn overflow(&self) -> u64 {
        self.counts.overflow
    }
}

/// A notable event of the window: where its bytes are in the partial's arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Notable {
    /// Kernel time (monotonic), and the wall-clock time through the core's offset.
    pub ts_ns: u64,
    pub wall_ns: i128,
    /// The core's count of notable events before this one (its write order).
    pub seq: u64,
    pub weight: u32,
    offset: u32,
    len: u32,
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
    pub files: PathTop,
    /// File events by directory (of the path; of the new path for renames) and
    /// operation ([`FileOpTag`]).
    pub dirs: PathTop,
    pub peers: TopMap<PeerKey>,
    /// Per category (docs/semantic.md): execs by executable, exits by code and by
    /// killing signal, file calls failed by errno, connects that failed, retransmits
    /// and resets per peer, packet drops by reason, OOM victims by command, reclaim
    /// stalls (count and total ns), capability checks denied.
    pub execs: PathTop,
    pub exit_codes: TopMap<i32>,
    pub exit_signals: TopMap<u32>,
    pub file_errnos: TopMap<i64>,
    pub failed_connects: TopMap<PeerKey>,
    pub retransmits: TopMap<PeerKey>,
    pub resets: TopMap<PeerKey>,
    pub drop_reasons: TopMap<u32>,
    pub oom_victims: TopMap<[u8; 16]>,
    pub reclaim_stalls: u64,
    pub reclaim_ns: u64,
    pub capability_denied: u64,
    /// Security calls that succeeded: set*id calls by process, ptrace by the tracing
    /// process, module loads and unloads, bpf() by command, mounts by target.
    pub id_changes: TopMap<ProcessKey>,
    pub ptraces: TopMap<ProcessKey>,
    pub module_loads: u64,
    pub module_unloads: u64,
    pub bpf_cmds: TopMap<u32>,
    pub mounts: PathTop,
    /// Direct reclaim stall durations (ns).
    pub reclaim: Latency,
    /// Signals generated, by number; page faults by process.
    pub signals: TopMap<u32>,
    pub page_faults: TopMap<ProcessKey>,
    /// Generic syscalls: count and latency per id, for the first `SYSCALL_IDS_MAX` ids
    /// of the window (the rest counted in `syscalls_other`).
    pub syscalls: Vec<(u32, u64, Latency)>,
    pub syscalls_other: u64,
    /// Histograms made with the partial for the syscall ids it will see.
    latency_spares: Vec<Latency>,
    /// For ids below its length: 1 + the id's index in `syscalls`, 0 when it has none.
    syscall_slot: Vec<u8>,
    /// Notable events, in write order: their bytes in one arena made with the partial
    /// (bounded: what does not fit is counted in `notables_dropped`).
    notable_bytes: Vec<u8>,
    pub notables: Vec<Notable>,
    pub notables_dropped: u64,
}

/// Syscall ids with their own count and latency per window and core.
pub(crate) const SYSCALL_IDS_MAX: usize = 32;
/// Syscall ids found by direct index (x86-64 has fewer).
const SYSCALL_SLOT_IDS: usize = 512;

/// A latency histogram (ns): log-linear buckets, 8 per power of two (values within
/// 12.5%), 2 KiB, made before it is needed; recording is a few instructions (the
/// per-event path), and every quantile is the bucket's upper bound, an integer, the
/// same on every machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Latency {
    counts: Vec<u32>,
}

const LAT_SUB_BITS: u32 = 3;
const LAT_BUCKETS: usize = 512;

fn lat_index(v: u64) -> usize {
    let v = v.max(1);
    let msb = 63 - v.leading_zeros();
    if msb < LAT_SUB_BITS {
        return v as usize;
    }
    let sub = (v >> (msb - LAT_SUB_BITS)) & ((1 << LAT_SUB_BITS) - 1);
    (((msb - LAT_SUB_BITS + 1) << LAT_SUB_BITS) as u64 + sub) as usize
}

/// The largest value that falls in bucket `i`.
fn lat_upper(i: usize) -> u64 {
    let per = 1usize << LAT_SUB_BITS;
    if i < per {
        return i as u64;
    }
    let msb = (i / per) as u32 + LAT_SUB_BITS - 1;
    let sub = (i % per) as u64;
    let step = 1u64 << (msb - LAT_SUB_BITS);
    ((per as u64 + sub) << (msb - LAT_SUB_BITS)).saturating_add(step - 1)
}

impl Latency {
    fn new() -> Latency {
        Latency {
            counts: vec![0; LAT_BUCKETS],
        }
    }

    fn record(&mut self, ns: u64, n: u64) {
        let c = &mut self.counts[lat_index(ns)];
        *c = c.saturating_add(n.min(u64::from(u32::MAX)) as u32);
    }

    fn absorb(&mut self, o: &Latency) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a = a.saturating_add(*b);
        }
    }

    /// The value at quantile `num / den` (the upper bound of its bucket; 0 when empty).
    pub(crate) fn at(&self, num: u64, den: u64) -> u64 {
        let total: u64 = self.counts.iter().map(|&c| u64::from(c)).sum();
        if total == 0 {
            return 0;
        }
        let rank = (total * num).div_ceil(den).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return lat_upper(i);
            }
        }
        lat_upper(LAT_BUCKETS - 1)
    }
}

/// The smallest event record (header and the smallest payload): bounds the number of
/// notable events an arena can hold.
const NOTABLE_BYTES_MIN: usize = 88;

/// What a file event did, as `file.dirs` counts it per directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileOpTag {
    Open = 0,
    Create = 1,
    Unlink = 2,
    Rename = 3,
    Chmod = 4,
}

/// The tags' names, by tag.
pub(crate) const FILE_OP_NAMES: [&str; 5] = ["open", "create", "unlink", "rename", "chmod"];

/// `O_CREAT`: an open that may create the file.
const O_CREAT: u32 = 0o100;

/// The directory of a path: up to its last `/` (`/` for a file at the root, `.` for a
/// name without one).
pub(crate) fn dir_of(path: &[u8]) -> &[u8] {
    match memchr::memrchr(b'/', path) {
        Some(0) => b"/",
        Some(i) => &path[..i],
        None => b".",
    }
}

/// Slots of the caches in front of the process and cgroup maps (every event counts in
/// both).
const PROCESS_FRONT: usize = 256;
const CGROUP_FRONT: usize = 64;
/// Slots of the caches in front of the path maps (files, directories, executables).
const PATH_FRONT: usize = 64;

/// Mount targets per window and core.
const MOUNT_KEYS: usize = 64;

/// Keys of the small maps (exit codes, signals, errnos, drop reasons, OOM victims).
const SMALL_KEYS: usize = 256;
/// `TCP_SYN_SENT`: a close from this state is a connect that failed.
const TCP_SYN_SENT: u32 = 2;

/// Loss (reason, kind) pairs kept per window; more are summed under reason 0.
const LOSS_KEYS_MAX: usize = 256;

impl Partial {
    /// An empty partial of `window` whose maps hold `cap` keys each, and no notable
    /// events.
    pub(crate) fn new(window: u64, cap: usize) -> Partial {
        Partial::with_notables(window, cap, 0)
    }

    /// [`Partial::new`] with room for `notable_bytes` of notable events.
    pub(crate) fn with_notables(window: u64, cap: usize, notable_bytes: usize) -> Partial {
        Partial {
            window,
            records: 0,
            late: 0,
            kinds: [KindCount::default(); KIND_MAX],
            losses: HashMap::with_capacity(LOSS_KEYS_MAX),
            processes: TopMap::with_front(cap, PROCESS_FRONT),
            cgroups: TopMap::with_front(cap, CGROUP_FRONT),
            files: PathTop::new(cap),
            dirs: PathTop::new(cap),
            peers: TopMap::new(cap),
            execs: PathTop::new(cap),
            exit_codes: TopMap::new(SMALL_KEYS),
            exit_signals: TopMap::new(SMALL_KEYS),
            file_errnos: TopMap::new(SMALL_KEYS),
            failed_connects: TopMap::new(cap),
            retransmits: TopMap::new(cap),
            resets: TopMap::new(cap),
            drop_reasons: TopMap::new(SMALL_KEYS),
            oom_victims: TopMap::new(SMALL_KEYS),
            reclaim_stalls: 0,
            reclaim_ns: 0,
            capability_denied: 0,
            id_changes: TopMap::new(SMALL_KEYS),
            ptraces: TopMap::new(SMALL_KEYS),
            module_loads: 0,
            module_unloads: 0,
            bpf_cmds: TopMap::new(SMALL_KEYS),
            mounts: PathTop::new(if cap > 0 { MOUNT_KEYS } else { 0 }),
            reclaim: Latency::new(),
            signals: TopMap::new(SMALL_KEYS),
            page_faults: TopMap::new(cap),
            syscalls: Vec::with_capacity(if cap > 0 { SYSCALL_IDS_MAX } else { 0 }),
            syscalls_other: 0,
            syscall_slot: if cap > 0 {
                vec![0; SYSCALL_SLOT_IDS]
            } else {
                Vec::new()
            },
            latency_spares: if cap > 0 {
                (0..SYSCALL_IDS_MAX).map(|_| Latency::new()).collect()
            } else {
                Vec::new()
            },
            notable_bytes: Vec::with_capacity(notable_bytes),
            notables: Vec::with_capacity(notable_bytes / NOTABLE_BYTES_MIN),
            notables_dropped: 0,
        }
    }

    /// Keeps a notable event's bytes (or counts it dropped when the arena is full).
    pub(crate) fn notable(
        &mut self,
        bytes: &[u8],
        ts_ns: u64,
        wall_ns: i128,
        seq: u64,
        weight: u32,
    ) {
        let offset = self.notable_bytes.len();
        if offset + bytes.len() > self.notable_bytes.capacity()
            || self.notables.len() == self.notables.capacity()
        {
            self.notables_dropped += 1;
            return;
        }
        self.notable_bytes.extend_from_slice(bytes);
        self.notables.push(Notable {
            ts_ns,
            wall_ns,
            seq,
            weight,
            offset: offset as u32,
            len: bytes.len() as u32,
        });
    }

    /// The bytes of notable event `n` (one of [`Partial::notables`]).
    pub(crate) fn notable_record(&self, n: &Notable) -> &[u8] {
        &self.notable_bytes[n.offset as usize..(n.offset + n.len) as usize]
    }

    /// An empty partial bounded at `cap` keys per map whose maps grow as keys come:
    /// for offline regrouping, not for a core thread.
    pub(crate) fn growing(window: u64, cap: usize) -> Partial {
        Partial {
            processes: TopMap::growing(cap),
            cgroups: TopMap::growing(cap),
            files: PathTop::growing(cap),
            dirs: PathTop::growing(cap),
            peers: TopMap::growing(cap),
            execs: PathTop::growing(cap),
            failed_connects: TopMap::growing(cap),
            retransmits: TopMap::growing(cap),
            resets: TopMap::growing(cap),
            page_faults: TopMap::growing(cap),
            mounts: PathTop::growing(MOUNT_KEYS),
            syscalls: Vec::with_capacity(cap.min(4096)),
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
            Payload::FileOp(p) => {
                let op = match ev.kind {
                    Kind::FileOpen if p.flags & O_CREAT != 0 => FileOpTag::Create,
                    Kind::FileOpen => FileOpTag::Open,
                    Kind::FileUnlink => FileOpTag::Unlink,
                    _ => FileOpTag::Chmod,
                };
                self.file(str_bytes(&p.path, p.path_len), op, w);
                if p.ret < 0 {
                    self.file_errnos.add(-p.ret, w);
                }
            }
            Payload::FileRename(p) => {
                self.file(str_bytes(&p.new_path, p.new_path_len), FileOpTag::Rename, w);
                if p.ret < 0 {
                    self.file_errnos.add(-p.ret, w);
                }
            }
            Payload::Tcp(t) => {
                let peer = PeerKey {
                    family: t.family,
                    addr: t.daddr,
                    port: t.dport,
                };
                self.peers.add(peer, w);
                match ev.kind {
                    Kind::NetTcpClose if t.old_state == TCP_SYN_SENT => {
                        self.failed_connects.add(peer, w)
                    }
                    Kind::NetTcpRetransmit => self.retransmits.add(peer, w),
                    Kind::NetTcpResetSent | Kind::NetTcpResetReceived => self.resets.add(peer, w),
                    _ => {}
                }
            }
            Payload::ProcessExec(x) => self.execs.add(str_bytes(&x.exe, x.exe_len), w),
            Payload::ProcessExit(x) if x.signal != 0 => self.exit_signals.add(x.signal, w),
            Payload::ProcessExit(x) => self.exit_codes.add(x.exit_code, w),
            Payload::PacketDrop(d) => self.drop_reasons.add(d.reason, w),
            Payload::OomKill(o) => self.oom_victims.add(o.victim_comm, w),
            Payload::DirectReclaim(r) => {
                self.reclaim_stalls += w;
                self.reclaim_ns = self
                    .reclaim_ns
                    .saturating_add(r.duration_ns.saturating_mul(w));
                self.reclaim.record(r.duration_ns, w);
            }
            Payload::Capability(c) if c.ret != 0 => self.capability_denied += w,
            Payload::CredChange(c) if c.ret == 0 => self.id_changes.add(
                ProcessKey {
                    pid: h.pid,
                    comm: h.comm,
                },
                w,
            ),
            Payload::Ptrace(p) if p.ret == 0 => self.ptraces.add(
                ProcessKey {
                    pid: h.pid,
                    comm: h.comm,
                },
                w,
            ),
            Payload::Module(m) if m.ret == 0 => match ev.kind {
                Kind::SecurityModuleLoad => self.module_loads += w,
                _ => self.module_unloads += w,
            },
            Payload::Bpf(b) if b.ret >= 0 => self.bpf_cmds.add(b.cmd, w),
            Payload::Mount(m) if m.ret == 0 && ev.kind == Kind::SecurityMount => {
                self.mounts.add(str_bytes(&m.target, m.target_len), w)
            }
            Payload::Signal(x) => self.signals.add(x.sig, w),
            Payload::PageFault(_) => self.page_faults.add(
                ProcessKey {
                    pid: h.pid,
                    comm: h.comm,
                },
                w,
            ),
            Payload::Syscall(x) => {
                let known = h.flags & bpf::abi::FLAG_NO_RESULT == 0;
                // Ids below the table's size find their slot in one load.
                let at = match self.syscall_slot.get(x.id as usize) {
                    Some(0) => None,
                    Some(&slot) => Some(slot as usize - 1),
                    None => self.syscalls.iter().position(|(id, _, _)| *id == x.id),
                };
                match at {
                    Some(i) => {
                        let (_, n, lat) = &mut self.syscalls[i];
                        *n += w;
                        if known {
                            lat.record(x.latency_ns, w);
                        }
                    }
                    None if self.syscalls.len() < self.syscalls.capacity() => {
                        let mut lat = self.spare_latency();
                        if known {
                            lat.record(x.latency_ns, w);
                        }
                        self.syscalls.push((x.id, w, lat));
                        if let Some(slot) = self.syscall_slot.get_mut(x.id as usize) {
                            *slot = self.syscalls.len() as u8;
                        }
                    }
                    None => self.syscalls_other += w,
                }
            }
            _ => {}
        }
    }

    /// Counts a file event by path, and by directory and operation (the directory's
    /// hash rides with the path in the files map's cache: hashed once per path there).
    fn file(&mut self, path: &[u8], op: FileOpTag, n: u64) {
        let dir_hash =
            self.files
                .add_hashed(path_hash(path), n, || (path, 0), || path_hash(dir_of(path)));
        self.dirs.add_hashed(
            tagged_hash(dir_hash, op as u8),
            n,
            || (dir_of(path), op as u8),
            || 0,
        );
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
        self.dirs.absorb(&o.dirs);
        self.peers.absorb(&o.peers);
        self.execs.absorb(&o.execs);
        self.exit_codes.absorb(&o.exit_codes);
        self.exit_signals.absorb(&o.exit_signals);
        self.file_errnos.absorb(&o.file_errnos);
        self.failed_connects.absorb(&o.failed_connects);
        self.retransmits.absorb(&o.retransmits);
        self.resets.absorb(&o.resets);
        self.drop_reasons.absorb(&o.drop_reasons);
        self.oom_victims.absorb(&o.oom_victims);
        self.reclaim_stalls += o.reclaim_stalls;
        self.reclaim_ns = self.reclaim_ns.saturating_add(o.reclaim_ns);
        self.capability_denied += o.capability_denied;
        self.id_changes.absorb(&o.id_changes);
        self.ptraces.absorb(&o.ptraces);
        self.module_loads += o.module_loads;
        self.module_unloads += o.module_unloads;
        self.bpf_cmds.absorb(&o.bpf_cmds);
        self.mounts.absorb(&o.mounts);
        self.reclaim.absorb(&o.reclaim);
        self.signals.absorb(&o.signals);
        self.page_faults.absorb(&o.page_faults);
        for (id, n, lat) in &o.syscalls {
            match self.syscalls.iter_mut().find(|(i, _, _)| i == id) {
                Some((_, m, l)) => {
                    *m += n;
                    l.absorb(lat);
                }
                None => self.syscalls.push((*id, *n, lat.clone())),
            }
        }
        self.syscalls_other += o.syscalls_other;
    }

    /// A latency histogram for a new syscall id: one of those made with the partial.
    fn spare_latency(&mut self) -> Latency {
        self.latency_spares.pop().unwrap_or_else(Latency::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_hold_their_values_within_an_eighth() {
        for v in [
            1u64,
            7,
            8,
            9,
            15,
            16,
            100,
            1_000,
            123_456,
            60_000_000_000,
            u64::MAX,
        ] {
            let i = lat_index(v);
            assert!(i < LAT_BUCKETS, "{v}");
            assert!(lat_upper(i) >= v, "{v}: upper {}", lat_upper(i));
            assert!(i == 0 || lat_upper(i - 1) < v, "{v}: below");
            assert!(lat_upper(i) - v <= v / 8, "{v}: within an eighth");
        }
        let mut l = Latency::new();
        for v in 1..=1000u64 {
            l.record(v * 1000, 1);
        }
        let p50 = l.at(50, 100);
        assert!((500_000..=562_500).contains(&p50), "{p50}");
        assert!(l.at(999, 1000) >= 999_000);
        assert_eq!(Latency::new().at(99, 100), 0);
    }

    #[test]
    fn a_heavy_key_that_comes_late_gets_in_and_nothing_is_lost() {
        let mut t: TopMap<u32> = TopMap::new(64);
        let mut total = 0;
        // 1000 one-off keys fill the map many times over...
        for k in 0..1000 {
            t.add(k, 1);
            total += 1;
        }
        // ...then a heavy one comes.
        for _ in 0..300 {
            t.add(5000, 1);
            total += 1;
        }
        let (top, other) = t.top(5);
        assert_eq!(top[0], (5000, 300), "the late heavy key counted in full");
        let listed: u64 = top.iter().map(|(_, c)| c).sum();
        assert_eq!(listed + other, total, "every event is listed or other");
        assert!(t.counts.len() <= 64);
        assert!(t.overflow > 0);
    }

    #[test]
    fn counts_in_the_front_cache_are_read_and_merged_like_the_map() {
        // Two slots: keys collide and move from the cache into the map.
        let mut t: TopMap<u32> = TopMap::with_front(64, 2);
        let mut want = std::collections::BTreeMap::new();
        for i in 0..500u32 {
            let k = (i * 7919) % 13;
            t.add(k, u64::from(i % 3 + 1));
            *want.entry(k).or_insert(0u64) += u64::from(i % 3 + 1);
        }
        assert!(t.front_counts().count() > 0, "some counts are in the cache");
        let (top, other) = t.top(100);
        assert_eq!(other, 0);
        assert_eq!(
            top.iter()
                .copied()
                .collect::<std::collections::BTreeMap<_, _>>(),
            want
        );
        let mut merged: TopMap<u32> = TopMap::growing(64);
        merged.absorb(&t);
        merged.absorb(&t);
        let (top, _) = merged.top(100);
        for (k, c) in top {
            assert_eq!(c, 2 * want[&k], "key {k}");
        }
    }

    #[test]
    fn a_merge_keeps_the_names_of_every_core_path() {
        let mut merged = PathTop::new(0);
        for core in 0..2 {
            let mut p = PathTop::new(320);
            for i in 0..200 {
                p.add(format!("/core{core}/{i}").as_bytes(), 1);
            }
            merged.absorb(&p);
        }
        let (top, other) = merged.top(1000);
        assert_eq!((top.len(), other), (400, 0));
    }

    #[test]
    fn paths_dropped_from_the_map_lose_their_names_too() {
        let mut p = PathTop::new(8);
        for i in 0..100 {
            p.add(format!("/one-off/{i}").as_bytes(), 1);
        }
        for _ in 0..10 {
            p.add(b"/heavy", 1);
        }
        let (top, other) = p.top(1);
        assert_eq!(top[0].0.path(), b"/heavy");
        assert_eq!(top[0].1 + other, 110);
        // Names are kept for the keys in the map and in the cache in front only.
        assert!(p.names.len() <= 8 + PATH_FRONT, "{}", p.names.len());
        let held = p.counts.counts.len() + p.counts.front_counts().count();
        assert_eq!(p.names.len(), held);
        assert!(p.names.index.len() == held);
    }
}
