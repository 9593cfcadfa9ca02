//! A hash index from keys to positions in a dense array, for the two
//! lookups on every announce: infohash -> torrent, address -> peer.
//!
//! Open addressing with linear probing over 8-byte slots, each holding the
//! key hash's low 32 bits and the position: a probe reads one cache line
//! and finds both, where a general map reads a control group and then a
//! bucket elsewhere (one more dependent miss; measured ~2% of CPU per
//! table under aquatic_udp_load_test). The key itself lives in the dense
//! array and is compared there. Since slots keep the hash's home bits,
//! growing and backward-shift deletion never need the keys.

/// `(hash32 << 32) | (position + 1)`; 0 is an empty slot.
type Slot = u64;

#[derive(Clone, Debug, Default)]
pub struct SlotIndex {
    slots: Box<[Slot]>,
    len: usize,
}

const MIN_SLOTS: usize = 16;

#[inline]
fn pack(hash: u64, position: u32) -> Slot {
    ((hash as u32 as u64) << 32) | (position as u64 + 1)
}

#[inline]
fn position_of(slot: Slot) -> u32 {
    (slot as u32).wrapping_sub(1)
}

impl SlotIndex {
    pub fn with_capacity(entries: usize) -> Self {
        // At most 3/4 full: linear probing stays short.
        let slots = (entries * 4 / 3 + 1).next_power_of_two().max(MIN_SLOTS);
        Self {
            slots: vec![0; slots].into_boxed_slice(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    fn home(&self, hash32: u32) -> usize {
        hash32 as usize & self.mask()
    }

    /// The position whose key has `hash` and satisfies `is_key`.
    #[inline]
    pub fn find(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let hash32 = hash as u32;
        let mut i = self.home(hash32);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            if (slot >> 32) as u32 == hash32 && is_key(position_of(slot)) {
                return Some(position_of(slot));
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Adds a key known to be absent.
    pub fn insert(&mut self, hash: u64, position: u32) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        self.place(pack(hash, position));
        self.len += 1;
    }

    fn place(&mut self, slot: Slot) {
        let mut i = self.home((slot >> 32) as u32);
        while self.slots[i] != 0 {
            i = (i + 1) & self.mask();
        }
        self.slots[i] = slot;
    }

    fn grow(&mut self) {
        let bigger = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![0; bigger].into_boxed_slice());
        for slot in old.iter().copied().filter(|&s| s != 0) {
            self.place(slot);
        }
    }

    fn slot_of(&self, hash: u64, position: u32) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let wanted = pack(hash, position);
        let mut i = self.home(hash as u32);
        loop {
            match self.slots[i] {
                0 => return None,
                s if s == wanted => return Some(i),
                _ => i = (i + 1) & self.mask(),
            }
        }
    }

    /// Points the key at `from` to `to` (its entry moved in the array).
    pub fn relocate(&mut self, hash: u64, from: u32, to: u32) {
        if let Some(i) = self.slot_of(hash, from) {
            self.slots[i] = pack(hash, to);
        } else {
            debug_assert!(false, "relocating a position the index does not hold");
        }
    }

    /// Forgets the key at `position`; returns whether it was there.
    pub fn remove(&mut self, hash: u64, position: u32) -> bool {
        let Some(mut hole) = self.slot_of(hash, position) else {
            return false;
        };
        self.len -= 1;
        // Backward-shift deletion: pull later entries of the probe run
        // into the hole unless that would put them before their home.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let slot = self.slots[j];
            if slot == 0 {
                break;
            }
            let home = self.home((slot >> 32) as u32);
            // The entry at j may fill the hole if its home is not in the
            // cyclic range (hole, j].
            let home_in_range = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !home_in_range {
                self.slots[hole] = slot;
                hole = j;
            }
        }
        self.slots[hole] = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Keys with deliberately colliding low bits, to exercise probing.
    fn hash_of(key: u64) -> u64 {
        key.wrapping_mul(0x9E37_79B9_7F4A_7C15) & 0xFFFF_0000_0000_00FF
    }

    #[test]
    fn agrees_with_a_hashmap_under_random_operations() {
        let mut rng = fastrand::Rng::with_seed(11);
        // A dense array of keys and the index over it, as the swarms use them.
        let mut dense: Vec<u64> = Vec::new();
        let mut index = SlotIndex::default();
        let mut model: HashMap<u64, ()> = HashMap::new();
        for step in 0..60_000 {
            let key = rng.u64(0..3_000);
            let found = index.find(hash_of(key), |p| dense[p as usize] == key);
            assert_eq!(found.is_some(), model.contains_key(&key), "step {step}");
            if let Some(p) = found {
                assert_eq!(dense[p as usize], key);
            }
            match (found, rng.u8(0..3)) {
                (None, 0 | 1) => {
                    dense.push(key);
                    index.insert(hash_of(key), dense.len() as u32 - 1);
                    model.insert(key, ());
                }
                (Some(p), 2) => {
                    // swap_remove, as the swarms do.
                    let last = dense.len() as u32 - 1;
                    assert!(index.remove(hash_of(key), p));
                    if p != last {
                        let moved = dense[last as usize];
                        index.relocate(hash_of(moved), last, p);
                    }
                    dense.swap_remove(p as usize);
                    model.remove(&key);
                }
                _ => {}
            }
            assert_eq!(index.len(), model.len());
        }
        for (p, key) in dense.iter().enumerate() {
            assert_eq!(
                index.find(hash_of(*key), |q| dense[q as usize] == *key),
                Some(p as u32)
            );
        }
    }

    #[test]
    fn empty_index_finds_nothing_and_removes_nothing() {
        let mut index = SlotIndex::default();
        assert_eq!(index.find(7, |_| true), None);
        assert!(!index.remove(7, 0));
        index.insert(7, 0);
        assert_eq!(index.find(7, |_| true), Some(0));
        assert_eq!(index.find(8, |_| true), None);
        assert!(index.remove(7, 0));
        assert!(index.is_empty());
    }

    #[test]
    fn stays_at_most_three_quarters_full() {
        let mut index = SlotIndex::with_capacity(0);
        for p in 0..10_000u32 {
            index.insert(u64::from(p).wrapping_mul(0x9E37_79B9_7F4A_7C15), p);
            assert!(index.len * 4 <= index.slots.len() * 3);
        }
    }
}
