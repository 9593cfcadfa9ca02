//! A fixed-size table of recently seen keys, for hooks that remember
//! clients for a while (`rate limit`). Its memory is set when it is made
//! and never grows: a key that finds its bucket full takes the place of the
//! entry seen longest ago, so under a flood of new keys the oldest are
//! forgotten first.
//!
//! Keys are 64-bit hashes with a per-table random key (`ahash`), so a
//! client cannot choose addresses that crowd out a given entry.

use std::hash::Hash;

/// Entries a bucket holds; a key lives in one bucket only.
const WAYS: usize = 4;

#[derive(Clone, Copy, Default)]
pub struct Entry {
    /// The key's hash; 0 is a free entry.
    tag: u64,
    /// Clock second the entry was (re)started by its owner.
    pub since: u32,
    pub count: u32,
}

pub struct Recent {
    entries: Box<[Entry]>,
    /// Buckets - 1 (a power of two).
    mask: usize,
    hasher: ahash::RandomState,
}

impl Recent {
    /// Room for at least `capacity` keys (rounded up to a power of two).
    pub fn new(capacity: usize) -> Self {
        let buckets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        Self {
            entries: vec![Entry::default(); buckets * WAYS].into_boxed_slice(),
            mask: buckets - 1,
            hasher: ahash::RandomState::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// `key`'s entry, and whether it is new: then it is zeroed, in the
    /// place of a free entry or else of the one with the oldest `since`.
    pub fn entry(&mut self, key: impl Hash) -> (&mut Entry, bool) {
        let (start, tag) = self.place(key);
        let bucket = &mut self.entries[start..start + WAYS];
        if let Some(i) = bucket.iter().position(|e| e.tag == tag) {
            return (&mut bucket[i], false);
        }
        let i = bucket
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| (e.tag != 0, e.since))
            .map_or(0, |(i, _)| i);
        bucket[i] = Entry {
            tag,
            since: 0,
            count: 0,
        };
        (&mut bucket[i], true)
    }

    /// `key`'s entry, if it is there.
    pub fn get(&self, key: impl Hash) -> Option<&Entry> {
        let (start, tag) = self.place(key);
        self.entries[start..start + WAYS]
            .iter()
            .find(|e| e.tag == tag)
    }

    /// Forgets `key`, if it is there.
    pub fn remove(&mut self, key: impl Hash) {
        let (start, tag) = self.place(key);
        if let Some(e) = self.entries[start..start + WAYS]
            .iter_mut()
            .find(|e| e.tag == tag)
        {
            *e = Entry::default();
        }
    }

    /// The first entry of `key`'s bucket, and its tag.
    fn place(&self, key: impl Hash) -> (usize, u64) {
        let tag = self.hasher.hash_one(key).max(1);
        ((tag as usize & self.mask) * WAYS, tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_keys_and_forgets_the_oldest_first() {
        let mut table = Recent::new(64);
        assert_eq!(table.capacity(), 64);
        let (e, new) = table.entry(1u32);
        assert!(new);
        e.since = 5;
        e.count = 3;
        let (e, new) = table.entry(1u32);
        assert!(!new && e.count == 3 && e.since == 5);
        table.remove(1u32);
        assert!(table.entry(1u32).1, "removed");

        // A flood of new keys: memory stays put, and the keys seen
        // last are the ones kept.
        let mut table = Recent::new(1024);
        for key in 0..100_000u32 {
            table.entry(key).0.since = key;
        }
        assert_eq!(table.capacity(), 1024);
        let kept_recent = (99_000..100_000u32)
            .filter(|&k| table.get(k).is_some())
            .count();
        let kept_old = (0..1000u32).filter(|&k| table.get(k).is_some()).count();
        assert_eq!(kept_old, 0);
        assert!(kept_recent > 500, "{kept_recent} of the last 1000 kept");
    }
}
