//! The peers of one torrent in one address family, kept dense and in wire
//! format so a random sample is one or two slice copies.
//!
//! Layout: `addrs[..leechers]` are leechers, `addrs[leechers..]` seeders.
//! A seeder asking for peers gets a window of the leecher range; anyone else
//! a window of the whole list. Up to two peers live inline (no heap): most
//! torrents on a public tracker have one or two. Past `INDEX_FROM` peers a
//! hash index finds a peer by address; below it a linear scan is faster.

use super::slot_index::SlotIndex;
use smallvec::SmallVec;
use std::hash::Hash;
use std::ops::Range;

const INDEX_FROM: usize = 16;

/// Keyed hashing of peer addresses for the index: ports are the client's
/// choice, so an unkeyed hash would let one build a long probe chain.
#[derive(Clone, Default)]
pub struct AddrHasher(ahash::RandomState);

impl AddrHasher {
    #[inline]
    pub fn hash<A: WireAddr>(&self, addr: &A) -> u64 {
        self.0.hash_one(addr)
    }
}

/// A peer's address as it goes on the wire: IP then port, big-endian.
pub trait WireAddr: Copy + Eq + Hash + Default + AsRef<[u8]> + 'static {}
impl WireAddr for [u8; 6] {}
impl WireAddr for [u8; 18] {}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerMeta {
    pub peer_id: [u8; 20],
    /// Shard clock second after which the peer is gone.
    pub expires: u32,
    /// BEP 21 partial seed: counted with leechers, but not a downloader.
    pub paused: bool,
}

#[derive(Default)]
pub struct PeerList<A: WireAddr> {
    addrs: SmallVec<[A; 2]>,
    meta: SmallVec<[PeerMeta; 2]>,
    leechers: u32,
    /// Leechers that are paused (BEP 21), kept so `downloaders` is O(1).
    paused_leechers: u32,
    index: Option<Box<SlotIndex>>,
}

/// What an upsert found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upserted {
    pub position: usize,
    /// The peer was already a seeder before this announce.
    pub was_seeder: bool,
}

impl<A: WireAddr> PeerList<A> {
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    pub fn leechers(&self) -> usize {
        self.leechers as usize
    }

    pub fn seeders(&self) -> usize {
        self.len() - self.leechers()
    }

    /// Leechers that are not paused (BEP 21 `downloaders`).
    pub fn downloaders(&self) -> usize {
        self.leechers() - self.paused_leechers as usize
    }

    pub fn addrs(&self) -> &[A] {
        &self.addrs
    }

    pub fn meta(&self) -> &[PeerMeta] {
        &self.meta
    }

    #[inline]
    pub fn find(&self, addr: &A, h: &AddrHasher) -> Option<usize> {
        match &self.index {
            Some(index) => index
                .find(h.hash(addr), |p| self.addrs[p as usize] == *addr)
                .map(|p| p as usize),
            None => self.addrs.iter().position(|a| a == addr),
        }
    }

    /// Adds the peer or refreshes it, moving it between the leecher and
    /// seeder ranges when its status changed.
    #[inline]
    pub fn upsert(&mut self, addr: A, meta: PeerMeta, seeder: bool, h: &AddrHasher) -> Upserted {
        match self.find(&addr, h) {
            Some(mut position) => {
                let was_seeder = position >= self.leechers();
                let was_paused_leecher = !was_seeder && self.meta[position].paused;
                let is_paused_leecher = !seeder && meta.paused;
                self.paused_leechers =
                    self.paused_leechers + is_paused_leecher as u32 - was_paused_leecher as u32;
                self.meta[position] = meta;
                if seeder && !was_seeder {
                    position = self.leecher_to_seeder(position, h);
                } else if !seeder && was_seeder {
                    position = self.seeder_to_leecher(position, h);
                }
                Upserted {
                    position,
                    was_seeder,
                }
            }
            None => {
                self.paused_leechers += (!seeder && meta.paused) as u32;
                self.addrs.push(addr);
                self.meta.push(meta);
                let mut position = self.len() - 1;
                if let Some(index) = &mut self.index {
                    index.insert(h.hash(&addr), position as u32);
                } else if self.len() > INDEX_FROM {
                    self.build_index(h);
                }
                if !seeder {
                    position = self.seeder_to_leecher(position, h);
                }
                Upserted {
                    position,
                    was_seeder: false,
                }
            }
        }
    }

    pub fn remove_addr(&mut self, addr: &A, h: &AddrHasher) -> bool {
        match self.find(addr, h) {
            Some(position) => {
                self.remove(position, h);
                true
            }
            None => false,
        }
    }

    /// Removes the peer at `position`; other peers may move.
    pub fn remove(&mut self, mut position: usize, h: &AddrHasher) {
        if position < self.leechers() && self.meta[position].paused {
            self.paused_leechers -= 1;
        }
        if position < self.leechers() {
            // Keep the leecher range contiguous: hand the slot to the last
            // leecher, so the hole sits at the range's end, then turn it
            // into a seeder slot.
            position = self.leecher_to_seeder(position, h);
        }
        let last = self.len() - 1;
        self.swap(position, last, h);
        let addr = self.addrs.pop().expect("remove from a non-empty list");
        self.meta.pop();
        if let Some(index) = &mut self.index {
            index.remove(h.hash(&addr), last as u32);
            if self.addrs.len() < INDEX_FROM / 2 {
                self.index = None;
            }
        }
        if self.addrs.len() <= 2 && self.addrs.spilled() {
            self.addrs.shrink_to_fit();
            self.meta.shrink_to_fit();
        }
    }

    /// Removes every peer whose time ran out; returns how many.
    pub fn expire(&mut self, now: u32, h: &AddrHasher) -> usize {
        let before = self.len();
        let mut i = 0;
        while i < self.len() {
            if self.meta[i].expires <= now {
                // Whatever moves into slot `i` comes from a later slot, so it
                // is checked next; nothing is skipped.
                self.remove(i, h);
            } else {
                i += 1;
            }
        }
        before - self.len()
    }

    fn leecher_to_seeder(&mut self, position: usize, h: &AddrHasher) -> usize {
        let last_leecher = self.leechers() - 1;
        self.swap(position, last_leecher, h);
        self.leechers -= 1;
        last_leecher
    }

    fn seeder_to_leecher(&mut self, position: usize, h: &AddrHasher) -> usize {
        let first_seeder = self.leechers();
        self.swap(position, first_seeder, h);
        self.leechers += 1;
        first_seeder
    }

    fn swap(&mut self, a: usize, b: usize, h: &AddrHasher) {
        if a == b {
            return;
        }
        if let Some(index) = &mut self.index {
            // Were two slots to share a 32-bit hash, both would read
            // (hash, a) and (hash, b) whichever moved first: still right.
            index.relocate(h.hash(&self.addrs[a]), a as u32, b as u32);
            index.relocate(h.hash(&self.addrs[b]), b as u32, a as u32);
        }
        self.addrs.swap(a, b);
        self.meta.swap(a, b);
    }

    fn build_index(&mut self, h: &AddrHasher) {
        let mut index = SlotIndex::with_capacity(self.len() * 2);
        for (i, a) in self.addrs.iter().enumerate() {
            index.insert(h.hash(a), i as u32);
        }
        self.index = Some(Box::new(index));
    }

    /// Picks up to `want` peers at random for an announcer, calling `emit`
    /// with contiguous index ranges. Seeders get leechers only; the
    /// announcer (`exclude`) is never picked. Returns how many it picked.
    #[inline]
    pub fn sample(
        &self,
        want: usize,
        for_seeder: bool,
        exclude: Option<usize>,
        rng: &mut fastrand::Rng,
        emit: impl FnMut(Range<usize>),
    ) -> usize {
        let end = if for_seeder {
            self.leechers()
        } else {
            self.len()
        };
        let exclude = exclude.filter(|&x| x < end);
        let available = end - exclude.is_some() as usize;
        let count = want.min(available);
        if count == 0 {
            return 0;
        }
        let start = if count == available {
            0
        } else {
            rng.usize(0..end)
        };
        windows(0..end, start, count, exclude, emit);
        count
    }
}

/// Walks `range` from `start`, wrapping once, skipping `exclude`, and emits
/// the contiguous runs that make up `count` positions.
fn windows(
    range: Range<usize>,
    start: usize,
    mut count: usize,
    exclude: Option<usize>,
    mut emit: impl FnMut(Range<usize>),
) {
    for (mut from, to) in [(start, range.end), (range.start, start)] {
        if let Some(x) = exclude.filter(|x| (from..to).contains(x)) {
            let n = count.min(x - from);
            if n > 0 {
                emit(from..from + n);
                count -= n;
            }
            from = x + 1;
        }
        let n = count.min(to.saturating_sub(from));
        if n > 0 {
            emit(from..from + n);
            count -= n;
        }
        if count == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static H: std::sync::LazyLock<AddrHasher> = std::sync::LazyLock::new(AddrHasher::default);

    fn addr(n: u16) -> [u8; 6] {
        let [a, b] = n.to_be_bytes();
        [10, 0, a, b, 0x1a, 0xe1]
    }

    fn meta(expires: u32) -> PeerMeta {
        PeerMeta {
            expires,
            ..Default::default()
        }
    }

    /// Checks the invariants: partition, index agreement, no duplicates.
    fn check(list: &PeerList<[u8; 6]>) {
        assert_eq!(list.addrs.len(), list.meta.len());
        assert!(list.leechers() <= list.len());
        for (i, a) in list.addrs.iter().enumerate() {
            assert_eq!(list.find(a, &H), Some(i));
        }
        if let Some(index) = &list.index {
            assert_eq!(index.len(), list.len());
        }
    }

    fn sampled(
        list: &PeerList<[u8; 6]>,
        want: usize,
        seeder: bool,
        exclude: Option<usize>,
        seed: u64,
    ) -> Vec<usize> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut out = Vec::new();
        list.sample(want, seeder, exclude, &mut rng, |r| out.extend(r));
        out
    }

    #[test]
    fn small_lists_stay_inline() {
        let mut list = PeerList::default();
        list.upsert(addr(1), meta(10), false, &H);
        list.upsert(addr(2), meta(10), true, &H);
        assert!(!list.addrs.spilled());
        assert_eq!((list.leechers(), list.seeders()), (1, 1));
        list.upsert(addr(3), meta(10), true, &H);
        assert!(list.addrs.spilled());
        list.remove_addr(&addr(3), &H);
        assert!(!list.addrs.spilled());
        check(&list);
    }

    #[test]
    fn status_changes_keep_partition() {
        let mut list = PeerList::default();
        for n in 0..40 {
            list.upsert(addr(n), meta(10), n % 3 == 0, &H);
            check(&list);
        }
        assert!(list.index.is_some());
        let seeders = list.seeders();
        let up = list.upsert(addr(1), meta(10), true, &H);
        assert!(!up.was_seeder);
        assert!(up.position >= list.leechers());
        assert_eq!(list.seeders(), seeders + 1);
        let up = list.upsert(addr(1), meta(10), false, &H);
        assert!(up.was_seeder);
        assert!(up.position < list.leechers());
        check(&list);
        for n in (0..40).step_by(2) {
            assert!(list.remove_addr(&addr(n), &H));
            check(&list);
        }
        assert!(!list.remove_addr(&addr(0), &H));
        assert_eq!(list.len(), 20);
        for (i, a) in list.addrs.iter().enumerate() {
            let n = u16::from_be_bytes([a[2], a[3]]);
            assert_eq!(i >= list.leechers(), n % 3 == 0, "peer {n} at {i}");
        }
    }

    #[test]
    fn downloaders_follow_pause_status_and_removal() {
        let mut list = PeerList::default();
        let paused = PeerMeta {
            paused: true,
            ..meta(10)
        };
        list.upsert(addr(1), paused, false, &H);
        list.upsert(addr(2), meta(10), false, &H);
        list.upsert(addr(3), paused, true, &H); // a paused seeder is no leecher
        assert_eq!((list.leechers(), list.downloaders()), (2, 1));
        list.upsert(addr(2), paused, false, &H);
        assert_eq!(list.downloaders(), 0);
        list.upsert(addr(1), meta(10), false, &H);
        assert_eq!(list.downloaders(), 1);
        list.upsert(addr(2), paused, true, &H); // paused leecher completes
        assert_eq!((list.leechers(), list.downloaders()), (1, 1));
        list.upsert(addr(1), paused, false, &H);
        list.remove_addr(&addr(1), &H);
        assert_eq!((list.leechers(), list.downloaders()), (0, 0));
        for n in 10..40 {
            list.upsert(
                addr(n),
                PeerMeta {
                    paused: n % 2 == 0,
                    ..meta(if n < 25 { 5 } else { 50 })
                },
                false,
                &H,
            );
        }
        list.expire(10, &H);
        let scanned = list.meta[..list.leechers()]
            .iter()
            .filter(|m| !m.paused)
            .count();
        assert_eq!(list.downloaders(), scanned);
    }

    #[test]
    fn expire_removes_only_stale() {
        let mut list = PeerList::default();
        for n in 0..50 {
            list.upsert(
                addr(n),
                meta(if n % 2 == 0 { 5 } else { 50 }),
                n % 5 == 0,
                &H,
            );
        }
        assert_eq!(list.expire(10, &H), 25);
        check(&list);
        assert!(list.meta.iter().all(|m| m.expires == 50));
        assert_eq!(list.expire(100, &H), 25);
        assert!(list.is_empty());
        assert!(list.index.is_none());
    }

    #[test]
    fn sample_never_returns_announcer_or_duplicates() {
        let mut list = PeerList::default();
        for n in 0..30 {
            list.upsert(addr(n), meta(10), n >= 20, &H);
        }
        for seed in 0..200 {
            let me = (seed % 30) as usize;
            let got = sampled(&list, 8, false, Some(me), seed);
            assert_eq!(got.len(), 8);
            assert!(!got.contains(&me));
            let mut dedup = got.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), 8);
        }
    }

    #[test]
    fn seeders_get_leechers_only() {
        let mut list = PeerList::default();
        for n in 0..30 {
            list.upsert(addr(n), meta(10), n >= 20, &H);
        }
        let me = list.find(&addr(25), &H).unwrap();
        let got = sampled(&list, 100, true, Some(me), 1);
        assert_eq!(got.len(), 20);
        assert!(got.iter().all(|&i| i < list.leechers()));
    }

    #[test]
    fn want_more_than_available_returns_all_others() {
        let mut list = PeerList::default();
        for n in 0..5 {
            list.upsert(addr(n), meta(10), false, &H);
        }
        let got = sampled(&list, 50, false, Some(2), 7);
        assert_eq!(got, vec![0, 1, 3, 4]);
        assert!(sampled(&list, 0, false, None, 7).is_empty());
        let lone = {
            let mut l = PeerList::default();
            l.upsert(addr(1), meta(1), false, &H);
            l
        };
        assert!(sampled(&lone, 50, false, Some(0), 7).is_empty());
    }

    #[test]
    fn samples_cover_the_swarm() {
        let mut list = PeerList::default();
        for n in 0..100 {
            list.upsert(addr(n), meta(10), false, &H);
        }
        let mut seen = [false; 100];
        for seed in 0..100 {
            for i in sampled(&list, 5, false, None, seed) {
                seen[i] = true;
            }
        }
        assert!(seen.iter().filter(|s| **s).count() > 90);
    }

    #[test]
    fn windows_wrap_and_skip() {
        let collect = |start, count, exclude| {
            let mut out = Vec::new();
            windows(0..10, start, count, exclude, |r| out.extend(r));
            out
        };
        assert_eq!(collect(8, 4, None), vec![8, 9, 0, 1]);
        assert_eq!(collect(8, 4, Some(9)), vec![8, 0, 1, 2]);
        assert_eq!(collect(8, 4, Some(0)), vec![8, 9, 1, 2]);
        assert_eq!(collect(0, 9, Some(4)), vec![0, 1, 2, 3, 5, 6, 7, 8, 9]);
    }
}
