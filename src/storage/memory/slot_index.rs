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
//!
//! `SlotIndex` owns its slots (the torrents' index); the free functions
//! work on any `Slots`, such as the index a large peer list keeps in its
//! own block (`peer_list`).

/// `(hash32 << 32) | (position + 1)`; 0 is an empty slot.
type Slot = u64;

/// Where slots live: a boxed array (`SlotIndex`), or a region of a peer
/// list's block as native-endian bytes (no alignment there).
pub trait Slots {
    fn count(&self) -> usize;
    fn get(&self, i: usize) -> Slot;
    fn set(&mut self, i: usize, slot: Slot);
}

impl Slots for [u64] {
    #[inline]
    fn count(&self) -> usize {
        self.len()
    }
    #[inline]
    fn get(&self, i: usize) -> Slot {
        self[i]
    }
    #[inline]
    fn set(&mut self, i: usize, slot: Slot) {
        self[i] = slot;
    }
}

impl Slots for [[u8; 8]] {
    #[inline]
    fn count(&self) -> usize {
        self.len()
    }
    #[inline]
    fn get(&self, i: usize) -> Slot {
        u64::from_ne_bytes(self[i])
    }
    #[inline]
    fn set(&mut self, i: usize, slot: Slot) {
        self[i] = slot.to_ne_bytes();
    }
}

#[derive(Clone, Debug, Default)]
pub struct SlotIndex {
    slots: Box<[Slot]>,
    len: usize,
}

const MIN_SLOTS: usize = 16;

/// The slots for `entries` keys at most 3/4 full (linear probing stays
/// short), a power of two.
pub fn slots_for(entries: usize) -> usize {
    (entries * 4 / 3 + 1).next_power_of_two()
}

#[inline]
fn pack(hash: u64, position: u32) -> Slot {
    ((hash as u32 as u64) << 32) | (position as u64 + 1)
}

#[inline]
fn position_of(slot: Slot) -> u32 {
    (slot as u32).wrapping_sub(1)
}

#[inline]
fn home<S: Slots + ?Sized>(slots: &S, hash32: u32) -> usize {
    hash32 as usize & (slots.count() - 1)
}

/// The position whose key has `hash` and satisfies `is_key`, in a
/// power-of-two table with at least one empty slot.
#[inline]
pub fn find<S: Slots + ?Sized>(
    slots: &S,
    hash: u64,
    mut is_key: impl FnMut(u32) -> bool,
) -> Option<u32> {
    if slots.count() == 0 {
        return None;
    }
    let mask = slots.count() - 1;
    let hash32 = hash as u32;
    let mut i = home(slots, hash32);
    loop {
        let slot = slots.get(i);
        if slot == 0 {
            return None;
        }
        if (slot >> 32) as u32 == hash32 && is_key(position_of(slot)) {
            return Some(position_of(slot));
        }
        i = (i + 1) & mask;
    }
}

/// Adds a key known to be absent (the table has room).
#[inline]
pub fn insert<S: Slots + ?Sized>(slots: &mut S, hash: u64, position: u32) {
    place(slots, pack(hash, position));
}

#[inline]
fn place<S: Slots + ?Sized>(slots: &mut S, slot: Slot) {
    let mask = slots.count() - 1;
    let mut i = home(slots, (slot >> 32) as u32);
    while slots.get(i) != 0 {
        i = (i + 1) & mask;
    }
    slots.set(i, slot);
}

fn slot_of<S: Slots + ?Sized>(slots: &S, hash: u64, position: u32) -> Option<usize> {
    if slots.count() == 0 {
        return None;
    }
    let mask = slots.count() - 1;
    let wanted = pack(hash, position);
    let mut i = home(slots, hash as u32);
    loop {
        match slots.get(i) {
            0 => return None,
            s if s == wanted => return Some(i),
            _ => i = (i + 1) & mask,
        }
    }
}

/// Points the key at `from` to `to` (its entry moved in the array).
pub fn relocate<S: Slots + ?Sized>(slots: &mut S, hash: u64, from: u32, to: u32) {
    if let Some(i) = slot_of(slots, hash, from) {
        slots.set(i, pack(hash, to));
    } else {
        debug_assert!(false, "relocating a position the index does not hold");
    }
}

/// Forgets the key at `position`; returns whether it was there.
pub fn remove<S: Slots + ?Sized>(slots: &mut S, hash: u64, position: u32) -> bool {
    let Some(mut hole) = slot_of(slots, hash, position) else {
        return false;
    };
    // Backward-shift deletion: pull later entries of the probe run
    // into the hole unless that would put them before their home.
    let mask = slots.count() - 1;
    let mut j = hole;
    loop {
        j = (j + 1) & mask;
        let slot = slots.get(j);
        if slot == 0 {
            break;
        }
        let home = home(slots, (slot >> 32) as u32);
        // The entry at j may fill the hole if its home is not in the
        // cyclic range (hole, j].
        let home_in_range = if hole <= j {
            hole < home && home <= j
        } else {
            hole < home || home <= j
        };
        if !home_in_range {
            slots.set(hole, slot);
            hole = j;
        }
    }
    slots.set(hole, 0);
    true
}

impl SlotIndex {
    pub fn with_capacity(entries: usize) -> Self {
        Self {
            slots: vec![0; slots_for(entries).max(MIN_SLOTS)].into_boxed_slice(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The position whose key has `hash` and satisfies `is_key`.
    #[inline]
    pub fn find(&self, hash: u64, is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        find(&*self.slots, hash, is_key)
    }

    /// Adds a key known to be absent.
    pub fn insert(&mut self, hash: u64, position: u32) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        place(&mut *self.slots, pack(hash, position));
        self.len += 1;
    }

    fn grow(&mut self) {
        let bigger = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![0; bigger].into_boxed_slice());
        for slot in old.iter().copied().filter(|&s| s != 0) {
            place(&mut *self.slots, slot);
        }
    }

    /// Points the key at `from` to `to` (its entry moved in the array).
    pub fn relocate(&mut self, hash: u64, from: u32, to: u32) {
        relocate(&mut *self.slots, hash, from, to);
    }

    /// Forgets the key at `position`; returns whether it was there.
    pub fn remove(&mut self, hash: u64, position: u32) -> bool {
        let removed = remove(&mut *self.slots, hash, position);
        self.len -= removed as usize;
        removed
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
