//! A hash map whose copy is cheap: the entries sit in shards shared between copies, and a change
//! copies only the shard it touches. The workers' lookup tables are immutable snapshots; with
//! 10,000 SAs installed, copying a whole table for each SA a rekey installs or removes was most
//! of a gateway's CPU in a rekey storm.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

/// Shards per map: a change copies about 1/SHARDS of the entries, a copy costs SHARDS reference
/// counts.
const SHARDS: usize = 64;

/// A map of `K` to `V` in [`SHARDS`] copy-on-write shards.
#[derive(Debug)]
pub(crate) struct ShardedMap<K, V> {
    shards: Vec<Arc<HashMap<K, V>>>,
    /// Picks the shard; keyed per map, so that nobody can aim many keys at one shard. It must
    /// not be the shards' own hasher: all keys of a shard share the low bits of this hash, and
    /// would collide in a shard hashing them the same way.
    hasher: RandomState,
    len: usize,
}

// Not derived: the derive would require `K: Clone, V: Clone`, but a copy only counts references.
impl<K, V> Clone for ShardedMap<K, V> {
    fn clone(&self) -> Self {
        Self {
            shards: self.shards.clone(),
            hasher: self.hasher.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ShardedMap<K, V> {
    fn shard_of(&self, key: &K) -> usize {
        // The low bits of a SipHash are as good as any; SHARDS divides 2^64.
        (self.hasher.hash_one(key) % SHARDS as u64) as usize
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.shards.get(self.shard_of(key))?.get(key)
    }

    /// Inserts or replaces; copies the shard if another copy of the map shares it.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        let at = self.shard_of(&key);
        if let Some(shard) = self.shards.get_mut(at)
            && Arc::make_mut(shard).insert(key, value).is_none()
        {
            self.len += 1;
        }
    }

    /// Removes; copies the shard only if the key is there and another copy shares the shard.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.shard_of(key);
        let shard = self.shards.get_mut(at)?;
        if !shard.contains_key(key) {
            return None;
        }
        let removed = Arc::make_mut(shard).remove(key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_change_to_a_copy_leaves_the_original_and_shares_untouched_shards() {
        let mut a = ShardedMap::default();
        for k in 0..1000u32 {
            a.insert(k, k * 2);
        }
        let mut b = a.clone();
        b.insert(5000, 1);
        assert_eq!(b.remove(&7), Some(14));
        assert_eq!(b.remove(&7), None);
        assert_eq!((a.len(), b.len()), (1000, 1000));
        assert_eq!(a.get(&7), Some(&14));
        assert_eq!(b.get(&7), None);
        assert_eq!(a.get(&5000), None);
        let shared = a
            .shards
            .iter()
            .zip(&b.shards)
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert!(shared >= SHARDS - 2, "only the touched shards are copied");
    }

    proptest! {
        /// The map agrees with a plain HashMap after any sequence of inserts and removals, and
        /// an earlier copy keeps what it held.
        #[test]
        fn agrees_with_a_hash_map(ops in proptest::collection::vec((any::<bool>(), 0u16..64, any::<u8>()), 0..200)) {
            let mut ours = ShardedMap::default();
            let mut plain = HashMap::new();
            let mut snapshots = Vec::new();
            for (i, (insert, k, v)) in ops.iter().enumerate() {
                if *insert {
                    ours.insert(*k, *v);
                    plain.insert(*k, *v);
                } else {
                    prop_assert_eq!(ours.remove(k), plain.remove(k));
                }
                if i % 17 == 0 {
                    snapshots.push((ours.clone(), plain.clone()));
                }
            }
            snapshots.push((ours, plain));
            for (ours, plain) in snapshots {
                prop_assert_eq!(ours.len(), plain.len());
                for k in 0u16..64 {
                    prop_assert_eq!(ours.get(&k), plain.get(&k));
                }
                prop_assert_eq!(ours.iter().count(), plain.len());
            }
        }
    }
}
