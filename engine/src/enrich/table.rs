//! A map with a limit, for the process and cgroup tables: entries are born (a process
//! starts, a cgroup is made) and retired (it exits, it is removed); retired ones stay
//! for a grace period so late events still resolve, then are forgotten.
//!
//! When the table is full, an insert evicts a retired entry (the earliest retired
//! first) or, when none is retired, the youngest live one: under a fork storm the
//! storm's own children make room for each other, and the long-lived entries (init,
//! sshd, the shells and container runtimes that are everyone's ancestors) stay.

use std::collections::BTreeSet;
use std::hash::Hash;

use crate::semantic::partial::FoldMap;

#[derive(Debug, Clone)]
struct Slot<V> {
    value: V,
    born: u64,
    /// 0 while live.
    retired: u64,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Bounded<K, V> {
    map: FoldMap<K, Slot<V>>,
    live: BTreeSet<(u64, K)>,
    retired: BTreeSet<(u64, K)>,
    limit: usize,
    /// Entries dropped to make room (not counting replacements and expiries).
    pub evictions: u64,
}

impl<K: Copy + Ord + Hash, V> Bounded<K, V> {
    /// A table holding at most `limit` entries (at least 1).
    pub(crate) fn new(limit: usize) -> Bounded<K, V> {
        Bounded {
            map: FoldMap::default(),
            live: BTreeSet::new(),
            retired: BTreeSet::new(),
            limit: limit.max(1),
            evictions: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|s| &s.value)
    }

    /// Inserts or replaces `key`; `retired` 0 means live. Returns the entry evicted to
    /// make room, if one was.
    pub(crate) fn insert(&mut self, key: K, born: u64, retired: u64, value: V) -> Option<(K, V)> {
        let replaced = self.remove(&key).is_some();
        let mut evicted = None;
        if !replaced && self.map.len() >= self.limit {
            let victim = self
                .retired
                .first()
                .or_else(|| self.live.last())
                .map(|&(_, k)| k);
            if let Some(k) = victim
                && let Some(v) = self.remove(&k)
            {
                self.evictions += 1;
                evicted = Some((k, v));
            }
        }
        if retired == 0 {
            self.live.insert((born, key));
        } else {
            self.retired.insert((retired, key));
        }
        self.map.insert(
            key,
            Slot {
                value,
                born,
                retired,
            },
        );
        evicted
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.map.remove(key)?;
        if slot.retired == 0 {
            self.live.remove(&(slot.born, *key));
        } else {
            self.retired.remove(&(slot.retired, *key));
        }
        Some(slot.value)
    }

    /// Keys retired at or before `cutoff`, earliest first.
    pub(crate) fn retired_before(&self, cutoff: u64) -> impl Iterator<Item = K> + '_ {
        self.retired
            .iter()
            .take_while(move |(at, _)| *at <= cutoff)
            .map(|&(_, k)| k)
    }

    /// Every entry, in key order (snapshots are written in this order).
    pub(crate) fn sorted(&self) -> Vec<(&K, &V)> {
        let mut v: Vec<_> = self.map.iter().map(|(k, s)| (k, &s.value)).collect();
        v.sort_unstable_by_key(|(k, _)| **k);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_tables_evict_retired_first_then_the_youngest() {
        let mut t = Bounded::new(3);
        assert!(t.insert(1u32, 10, 0, "init").is_none());
        assert!(t.insert(2, 20, 0, "shell").is_none());
        assert!(t.insert(3, 30, 35, "gone").is_none());
        // Full: the retired one goes.
        assert_eq!(t.insert(4, 40, 0, "a"), Some((3, "gone")));
        // None retired: the youngest live one goes, not init.
        assert_eq!(t.insert(5, 50, 0, "b"), Some((4, "a")));
        assert_eq!(t.insert(6, 60, 0, "c"), Some((5, "b")));
        assert_eq!(t.len(), 3);
        assert_eq!(t.evictions, 3);
        assert_eq!(t.get(&1), Some(&"init"));
        // Replacing a key evicts nothing.
        assert!(t.insert(6, 61, 70, "c exited").is_none());
        assert_eq!(t.retired_before(70).collect::<Vec<_>>(), vec![6]);
        assert_eq!(t.retired_before(69).count(), 0);
        assert_eq!(t.remove(&6), Some("c exited"));
        assert_eq!(t.retired_before(u64::MAX).count(), 0);
        let keys: Vec<u32> = t.sorted().into_iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![1, 2]);
    }

    #[test]
    fn a_fork_storm_stays_within_the_limit() {
        let mut t = Bounded::new(64);
        for pid in 0..100_000u32 {
            t.insert(pid, u64::from(pid), 0, ());
            assert!(t.len() <= 64);
        }
        assert_eq!(t.evictions, 100_000 - 64);
        assert!(t.get(&0).is_some(), "the oldest survive");
    }
}
