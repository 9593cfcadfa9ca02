//! The peers of one torrent in one address family, in one heap block of
//! the size it needs, in wire format.
//!
//! The block is a `Box<[u8]>`: a list is two words, an empty one owns no
//! heap. For `cap` peers it holds
//!
//! ```text
//! header   leechers, paused leechers, extra   3 x u32, native endian
//!          (len, cap: 2 x u32 more when indexed)
//! addrs    cap wire addresses        contiguous: a scan for a peer reads
//!                                    len x 6 bytes, handing all out is one copy
//! expires  cap x u32                 the top bit: BEP 21 paused
//! ids      cap peer ids
//! slots    the address index         only past INDEX_FROM peers
//! ```
//!
//! 30 bytes per IPv4 peer, where two vectors of doubling capacity took
//! about 58 (a peer id and expiry in a padded 28-byte struct, ~37% slack,
//! two allocations). Up to `INDEX_FROM` peers the capacity is the length
//! (a join or a leave copies at most half a kilobyte) and a linear scan
//! finds a peer; past it the capacity grows by half again and an open
//! addressing index of (hash, position) slots (`slot_index`) sits at the
//! block's end, so a lookup follows no pointer but the block's.
//!
//! `addrs[..leechers]` are leechers, `addrs[leechers..]` seeders. A sample
//! is a uniform random choice of the eligible peers (`sample`).

use super::slot_index;
use std::hash::Hash;
use std::marker::PhantomData;
use std::ops::Range;

const INDEX_FROM: usize = 16;

/// Header words.
const LEECHERS: usize = 0;
const PAUSED: usize = 1;
const EXTRA: usize = 2;
/// Only in an indexed block (a small one's length is its capacity).
const LEN: usize = 3;
const CAP: usize = 4;
const SMALL_HEADER: usize = 12;
const INDEXED_HEADER: usize = 20;
/// The `expires` bit that marks a paused peer; the rest is the time.
const PAUSED_BIT: u32 = 1 << 31;
/// The latest expiry a list keeps (68 years of shard clock).
pub const MAX_EXPIRES: u32 = PAUSED_BIT - 1;

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
pub trait WireAddr: Copy + Eq + Hash + Default + AsRef<[u8]> + 'static {
    const LEN: usize;
    /// `bytes` (a multiple of `LEN` long) as addresses.
    fn slice(bytes: &[u8]) -> &[Self];
    fn slice_mut(bytes: &mut [u8]) -> &mut [Self];
}

/// IPv4 (6 bytes) and IPv6 (18 bytes) wire addresses.
impl<const N: usize> WireAddr for [u8; N]
where
    [u8; N]: Default,
{
    const LEN: usize = N;
    #[inline]
    fn slice(bytes: &[u8]) -> &[Self] {
        bytes.as_chunks().0
    }
    #[inline]
    fn slice_mut(bytes: &mut [u8]) -> &mut [Self] {
        bytes.as_chunks_mut().0
    }
}

/// What is stored with a peer's address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerMeta {
    pub peer_id: [u8; 20],
    /// Shard clock second after which the peer is gone (kept up to
    /// `MAX_EXPIRES`).
    pub expires: u32,
    /// BEP 21 partial seed: counted with leechers, but not a downloader.
    pub paused: bool,
}

impl PeerMeta {
    #[inline]
    fn packed_expires(&self) -> [u8; 4] {
        (self.expires.min(MAX_EXPIRES) | if self.paused { PAUSED_BIT } else { 0 }).to_ne_bytes()
    }
}

#[inline]
fn expires_of(packed: &[u8; 4]) -> u32 {
    u32::from_ne_bytes(*packed) & !PAUSED_BIT
}

#[inline]
fn paused_of(packed: &[u8; 4]) -> bool {
    u32::from_ne_bytes(*packed) & PAUSED_BIT != 0
}

pub struct PeerList<A: WireAddr> {
    block: Box<[u8]>,
    _addr: PhantomData<A>,
}

impl<A: WireAddr> Default for PeerList<A> {
    fn default() -> Self {
        Self {
            block: Box::default(),
            _addr: PhantomData,
        }
    }
}

/// What an upsert found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upserted {
    pub position: usize,
    /// The peer was already a seeder before this announce.
    pub was_seeder: bool,
}

/// A header word of a block (0 in the empty block).
#[inline]
fn word(bytes: &[u8], i: usize) -> u32 {
    match bytes.get(4 * i..4 * i + 4) {
        Some(w) => u32::from_ne_bytes(w.try_into().expect("four bytes")),
        None => 0,
    }
}

#[inline]
fn set_word(bytes: &mut [u8], i: usize, v: u32) {
    bytes[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
}

/// Where a block's parts are.
#[derive(Clone, Copy, Debug)]
struct Shape {
    len: usize,
    cap: usize,
    header: usize,
    slots: usize,
}

/// A list's peers, each region `len` long, and its index slots.
struct View<'a, A> {
    addrs: &'a [A],
    expires: &'a [[u8; 4]],
    ids: &'a [[u8; 20]],
    slots: &'a [[u8; 8]],
}

/// A block's regions, each `cap` long.
struct Regions<'a, A> {
    addrs: &'a mut [A],
    expires: &'a mut [[u8; 4]],
    ids: &'a mut [[u8; 20]],
    slots: &'a mut [[u8; 8]],
}

impl<A: WireAddr> PeerList<A> {
    /// Bytes per peer in the block.
    const STRIDE: usize = A::LEN + 4 + 20;
    /// The longest block without an index.
    const SMALL_MAX: usize = SMALL_HEADER + INDEX_FROM * Self::STRIDE;

    #[inline]
    fn shape_of(bytes: &[u8]) -> Shape {
        if bytes.len() <= Self::SMALL_MAX {
            let cap = bytes.len().saturating_sub(SMALL_HEADER) / Self::STRIDE;
            Shape {
                len: cap,
                cap,
                header: SMALL_HEADER,
                slots: 0,
            }
        } else {
            let cap = word(bytes, CAP) as usize;
            Shape {
                len: word(bytes, LEN) as usize,
                cap,
                header: INDEXED_HEADER,
                slots: Self::slots_for(cap),
            }
        }
    }

    /// Index slots for a block of `cap` peers: at most 3/4 full.
    fn slots_for(cap: usize) -> usize {
        if cap > INDEX_FROM {
            slot_index::slots_for(cap)
        } else {
            0
        }
    }

    fn block_len(cap: usize) -> usize {
        if cap > INDEX_FROM {
            INDEXED_HEADER + cap * Self::STRIDE + Self::slots_for(cap) * 8
        } else {
            SMALL_HEADER + cap * Self::STRIDE
        }
    }

    #[inline]
    fn shape(&self) -> Shape {
        Self::shape_of(&self.block)
    }

    #[inline]
    fn view(&self) -> View<'_, A> {
        let s = self.shape();
        let rest = self.block.get(s.header..).unwrap_or_default();
        let (addrs, rest) = rest.split_at(s.cap * A::LEN);
        let (expires, rest) = rest.split_at(s.cap * 4);
        let (ids, slots) = rest.split_at(s.cap * 20);
        View {
            addrs: &A::slice(addrs)[..s.len],
            expires: &expires.as_chunks().0[..s.len],
            ids: &ids.as_chunks().0[..s.len],
            slots: slots.as_chunks().0,
        }
    }

    #[inline]
    fn regions_of(bytes: &mut [u8], s: Shape) -> Regions<'_, A> {
        let rest = bytes.get_mut(s.header..).unwrap_or_default();
        let (addrs, rest) = rest.split_at_mut(s.cap * A::LEN);
        let (expires, rest) = rest.split_at_mut(s.cap * 4);
        let (ids, slots) = rest.split_at_mut(s.cap * 20);
        Regions {
            addrs: A::slice_mut(addrs),
            expires: expires.as_chunks_mut().0,
            ids: ids.as_chunks_mut().0,
            slots: slots.as_chunks_mut().0,
        }
    }

    #[inline]
    fn regions(&mut self) -> Regions<'_, A> {
        let s = self.shape();
        Self::regions_of(&mut self.block, s)
    }

    #[inline]
    fn header(&self, i: usize) -> usize {
        word(&self.block, i) as usize
    }

    #[inline]
    fn set_header(&mut self, i: usize, v: usize) {
        set_word(&mut self.block, i, v as u32);
    }

    pub fn len(&self) -> usize {
        self.shape().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn leechers(&self) -> usize {
        self.header(LEECHERS)
    }

    pub fn seeders(&self) -> usize {
        self.len() - self.leechers()
    }

    fn paused_leechers(&self) -> usize {
        self.header(PAUSED)
    }

    /// Leechers that are not paused (BEP 21 `downloaders`).
    pub fn downloaders(&self) -> usize {
        self.leechers() - self.paused_leechers()
    }

    /// A word the owner keeps in the list's header, where it costs no
    /// room (a torrent's completion count); 0 until set.
    pub fn extra(&self) -> u32 {
        word(&self.block, EXTRA)
    }

    pub fn set_extra(&mut self, v: u32) {
        if self.block.is_empty() {
            if v == 0 {
                return;
            }
            self.block = vec![0; SMALL_HEADER].into_boxed_slice();
        }
        set_word(&mut self.block, EXTRA, v);
    }

    /// The peers' addresses, leechers first.
    pub fn addrs(&self) -> &[A] {
        self.view().addrs
    }

    /// The peers' ids, in the order of `addrs`.
    pub fn peer_ids(&self) -> &[[u8; 20]] {
        self.view().ids
    }

    /// What is stored with the peer at `position`.
    pub fn meta_at(&self, position: usize) -> PeerMeta {
        let v = self.view();
        PeerMeta {
            peer_id: v.ids[position],
            expires: expires_of(&v.expires[position]),
            paused: paused_of(&v.expires[position]),
        }
    }

    /// Every peer with what is stored with it, leechers first (for export).
    pub fn peers(&self) -> impl Iterator<Item = (A, PeerMeta)> + '_ {
        let v = self.view();
        v.addrs
            .iter()
            .zip(v.expires)
            .zip(v.ids)
            .map(|((addr, e), id)| {
                let meta = PeerMeta {
                    peer_id: *id,
                    expires: expires_of(e),
                    paused: paused_of(e),
                };
                (*addr, meta)
            })
    }

    /// The latest expiry of any peer, 0 when empty (O(len): one pass over
    /// the contiguous expiry times).
    pub fn last_expires(&self) -> u32 {
        self.view()
            .expires
            .iter()
            .map(expires_of)
            .max()
            .unwrap_or(0)
    }

    #[inline]
    pub fn find(&self, addr: &A, h: &AddrHasher) -> Option<usize> {
        let v = self.view();
        if v.slots.is_empty() {
            v.addrs.iter().position(|a| a == addr)
        } else {
            slot_index::find(v.slots, h.hash(addr), |p| {
                v.addrs.get(p as usize) == Some(addr)
            })
            .map(|p| p as usize)
        }
    }

    /// Adds the peer or refreshes it, moving it between the leecher and
    /// seeder ranges when its status changed.
    #[inline]
    pub fn upsert(&mut self, addr: A, meta: PeerMeta, seeder: bool, h: &AddrHasher) -> Upserted {
        match self.find(&addr, h) {
            Some(mut position) => {
                let was_seeder = position >= self.leechers();
                let was_paused_leecher = !was_seeder && self.is_paused(position);
                let is_paused_leecher = !seeder && meta.paused;
                if was_paused_leecher != is_paused_leecher {
                    let paused = self.paused_leechers() + is_paused_leecher as usize
                        - was_paused_leecher as usize;
                    self.set_header(PAUSED, paused);
                }
                let r = self.regions();
                r.expires[position] = meta.packed_expires();
                r.ids[position] = meta.peer_id;
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
                let mut position = self.push(addr, &meta, h);
                if !seeder {
                    if meta.paused {
                        let paused = self.paused_leechers() + 1;
                        self.set_header(PAUSED, paused);
                    }
                    position = self.seeder_to_leecher(position, h);
                }
                Upserted {
                    position,
                    was_seeder: false,
                }
            }
        }
    }

    #[inline]
    fn is_paused(&self, position: usize) -> bool {
        paused_of(&self.view().expires[position])
    }

    /// Appends a peer (in the seeder range); returns its position.
    fn push(&mut self, addr: A, meta: &PeerMeta, h: &AddrHasher) -> usize {
        let Shape { len, cap, .. } = self.shape();
        if len == cap {
            let grown = if cap < INDEX_FROM {
                cap + 1
            } else {
                cap + cap / 2
            };
            self.resize(grown, len, h);
        }
        let indexed = self.block.len() > Self::SMALL_MAX;
        if indexed {
            self.set_header(LEN, len + 1);
        }
        let r = self.regions();
        r.addrs[len] = addr;
        r.expires[len] = meta.packed_expires();
        r.ids[len] = meta.peer_id;
        if indexed {
            slot_index::insert(r.slots, h.hash(&addr), len as u32);
        }
        len
    }

    /// Moves the first `len` peers into a block for `cap` (at least `len`;
    /// exactly `len` unless `cap` is past `INDEX_FROM`) peers, indexing them
    /// there if it is that large.
    fn resize(&mut self, cap: usize, len: usize, h: &AddrHasher) {
        debug_assert!(cap >= len && (cap > INDEX_FROM || cap == len || cap == len + 1));
        let extra = self.extra();
        if cap == 0 && extra == 0 {
            self.block = Box::default();
            return;
        }
        let mut new = vec![0u8; Self::block_len(cap)].into_boxed_slice();
        let (leechers, paused) = (self.leechers(), self.paused_leechers());
        set_word(&mut new, LEECHERS, leechers as u32);
        set_word(&mut new, PAUSED, paused as u32);
        set_word(&mut new, EXTRA, extra);
        if cap > INDEX_FROM {
            set_word(&mut new, LEN, len as u32);
            set_word(&mut new, CAP, cap as u32);
        }
        let shape = Self::shape_of(&new);
        let old = self.view();
        let r = Self::regions_of(&mut new, shape);
        r.addrs[..len].copy_from_slice(&old.addrs[..len]);
        r.expires[..len].copy_from_slice(&old.expires[..len]);
        r.ids[..len].copy_from_slice(&old.ids[..len]);
        if !r.slots.is_empty() {
            for (i, a) in r.addrs[..len].iter().enumerate() {
                slot_index::insert(&mut *r.slots, h.hash(a), i as u32);
            }
        }
        self.block = new;
    }

    /// Sets the length to `len` after `take`s: a small block shrinks to
    /// it, a large one to 1.25 times it once less than half full.
    fn truncate(&mut self, len: usize, h: &AddrHasher) {
        let Shape { cap, slots, .. } = self.shape();
        if slots == 0 {
            if len < cap {
                self.resize(len, len, h);
            }
        } else if len < cap / 2 {
            let fit = if len <= INDEX_FROM {
                len
            } else {
                len + len / 4
            };
            self.resize(fit, len, h);
        } else {
            self.set_header(LEN, len);
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
    pub fn remove(&mut self, position: usize, h: &AddrHasher) {
        let len = self.take(position, self.len(), h);
        self.truncate(len, h);
    }

    /// Moves the peer at `position` past the first `len` (those still
    /// held) and out of the index; returns the new length.
    fn take(&mut self, mut position: usize, len: usize, h: &AddrHasher) -> usize {
        if position < self.leechers() {
            if self.is_paused(position) {
                let paused = self.paused_leechers() - 1;
                self.set_header(PAUSED, paused);
            }
            // Keep the leecher range contiguous: hand the slot to the last
            // leecher, so the hole sits at the range's end, then turn it
            // into a seeder slot.
            position = self.leecher_to_seeder(position, h);
        }
        let last = len - 1;
        self.swap(position, last, h);
        let r = self.regions();
        if !r.slots.is_empty() {
            slot_index::remove(r.slots, h.hash(&r.addrs[last]), last as u32);
        }
        last
    }

    /// Removes every peer whose time ran out; returns how many.
    pub fn expire(&mut self, now: u32, h: &AddrHasher) -> usize {
        let before = self.len();
        let (mut i, mut len) = (0, before);
        while i < len {
            if expires_of(&self.regions().expires[i]) <= now {
                // Whatever moves into slot `i` comes from a later slot, so it
                // is checked next; nothing is skipped.
                len = self.take(i, len, h);
            } else {
                i += 1;
            }
        }
        if len != before {
            self.truncate(len, h);
        }
        before - len
    }

    fn leecher_to_seeder(&mut self, position: usize, h: &AddrHasher) -> usize {
        let last_leecher = self.leechers() - 1;
        self.swap(position, last_leecher, h);
        self.set_header(LEECHERS, last_leecher);
        last_leecher
    }

    fn seeder_to_leecher(&mut self, position: usize, h: &AddrHasher) -> usize {
        let first_seeder = self.leechers();
        self.swap(position, first_seeder, h);
        self.set_header(LEECHERS, first_seeder + 1);
        first_seeder
    }

    fn swap(&mut self, a: usize, b: usize, h: &AddrHasher) {
        if a == b {
            return;
        }
        let r = self.regions();
        if !r.slots.is_empty() {
            // Were two slots to share a 32-bit hash, both would read
            // (hash, a) and (hash, b) whichever moved first: still right.
            slot_index::relocate(&mut *r.slots, h.hash(&r.addrs[a]), a as u32, b as u32);
            slot_index::relocate(&mut *r.slots, h.hash(&r.addrs[b]), b as u32, a as u32);
        }
        r.addrs.swap(a, b);
        r.expires.swap(a, b);
        r.ids.swap(a, b);
    }

    /// Picks up to `want` peers for an announcer, a uniform random choice
    /// of the eligible ones, calling `emit` with their positions (one at a
    /// time, or one or two runs when all are handed out). Seeders get leechers
    /// only; the announcer (`exclude`) is never picked. Returns how many it
    /// picked.
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
        if count == available {
            emit_all(end, exclude, emit);
        } else if count > 0 {
            choose(end, exclude, count, rng, emit);
        }
        count
    }

    /// `sample`, handing out the picked peers' addresses and ids.
    #[inline]
    pub fn sample_peers(
        &self,
        want: usize,
        for_seeder: bool,
        exclude: Option<usize>,
        rng: &mut fastrand::Rng,
        mut emit: impl FnMut(&[A], &[[u8; 20]]),
    ) -> usize {
        let v = self.view();
        // Of one length: one bounds check serves both.
        let (addrs, ids) = (v.addrs, &v.ids[..v.addrs.len()]);
        self.sample(want, for_seeder, exclude, rng, |r| {
            emit(&addrs[r.clone()], &ids[r])
        })
    }
}

/// Up to this many eligible peers a stack bitmap marks the picked ones
/// exactly (512 bytes to clear at most).
const EXACT_BITS: usize = 4096;
/// Past `EXACT_BITS` peers, the most picked with a stack list of them.
const SPARSE_MAX: usize = 256;

/// Emits the positions `0..end` but `exclude` (one or two runs).
#[inline]
fn emit_all(end: usize, exclude: Option<usize>, mut emit: impl FnMut(Range<usize>)) {
    match exclude {
        Some(x) => {
            if x > 0 {
                emit(0..x);
            }
            if x + 1 < end {
                emit(x + 1..end);
            }
        }
        None => emit(0..end),
    }
}

/// Emits `count` distinct positions of `0..end` but `exclude` (fewer than
/// there are), a uniform random choice.
#[inline(never)]
fn choose(
    end: usize,
    exclude: Option<usize>,
    count: usize,
    rng: &mut fastrand::Rng,
    emit: impl FnMut(Range<usize>),
) {
    let eligible = end - exclude.is_some() as usize;
    debug_assert!(count > 0 && count < eligible);
    // The smallest stack scratch that serves: it is cleared every time.
    if eligible <= 1024 {
        choose_dense(&mut [0u64; 16], end, exclude, count, rng, emit);
    } else if eligible <= EXACT_BITS {
        choose_dense(&mut [0u64; EXACT_BITS / 64], end, exclude, count, rng, emit);
    } else if count < 64 {
        choose_sparse::<64, 16>(end, exclude, count, rng, emit);
    } else if count < SPARSE_MAX {
        choose_sparse::<SPARSE_MAX, 64>(end, exclude, count, rng, emit);
    } else {
        // Only an HTTP numwant past SPARSE_MAX on a swarm past EXACT_BITS.
        let mut bits = vec![0u64; eligible.div_ceil(64)];
        choose_dense(&mut bits, end, exclude, count, rng, emit);
    }
}

/// Uniform in `0..n` from 32 random bits, or `None` to draw again
/// (Lemire's multiply-shift with its rejection: exact).
#[inline]
fn below(bits: u32, n: u32) -> Option<u32> {
    let m = bits as u64 * n as u64;
    if (m as u32) < n && (m as u32) < n.wrapping_neg() % n {
        return None;
    }
    Some((m >> 32) as u32)
}

/// Floyd's algorithm over a bitmap of `0..end - 1` (the eligible peers:
/// position `exclude` stands for the last one), for lists of up to
/// `EXACT_BITS` peers: for each `j` of the last `count` indices a uniform
/// `t` in `0..=j` is taken, or `j` itself if `t` already was. It draws
/// exactly `count` times, where rejection would mispredict its branch the
/// more often the larger the share wanted; the picks go out one at a time
/// in the order taken (handing them out in position order, runs merged,
/// measured slower: the bitmap scan's branches mispredict).
fn choose_dense(
    bits: &mut [u64],
    end: usize,
    exclude: Option<usize>,
    count: usize,
    rng: &mut fastrand::Rng,
    mut emit: impl FnMut(Range<usize>),
) {
    let (eligible, stand_in) = match exclude {
        Some(x) => (end - 1, x),
        None => (end, usize::MAX),
    };
    let mut j = eligible - count;
    while j < eligible {
        let r = rng.u64(..);
        // Two draws per 64 random bits.
        for half in [r as u32, (r >> 32) as u32] {
            let Some(t) = below(half, j as u32 + 1) else {
                continue;
            };
            let t = t as usize;
            let v = if bits[t / 64] >> (t % 64) & 1 != 0 {
                j
            } else {
                t
            };
            bits[v / 64] |= 1 << (v % 64);
            let p = if v == stand_in { end - 1 } else { v };
            emit(p..p + 1);
            j += 1;
            if j == eligible {
                return;
            }
        }
    }
}

/// Rejection sampling over a large list (past `EXACT_BITS` peers, so a
/// draw is seldom taken already): a filter of `W` words over the picks'
/// low bits answers most draws, the list of the picks (fewer than `N`, the
/// announcer first) the rest (a false hit, about one draw in `64W / N`,
/// costs a scan of it). The picks go out in the order drawn.
fn choose_sparse<const N: usize, const W: usize>(
    end: usize,
    exclude: Option<usize>,
    count: usize,
    rng: &mut fastrand::Rng,
    mut emit: impl FnMut(Range<usize>),
) {
    debug_assert!(count < N);
    let mut filter = [0u64; W];
    let mut picked = [0u32; N];
    let mut n = 0;
    let mut fresh = |e: usize| {
        let low = e % (W * 64);
        let (w, b) = (low / 64, 1u64 << (low % 64));
        if filter[w] & b != 0 && picked[..n].contains(&(e as u32)) {
            return false;
        }
        filter[w] |= b;
        picked[n] = e as u32;
        n += 1;
        true
    };
    if let Some(x) = exclude {
        fresh(x);
    }
    let m = end as u32;
    let mut left = count;
    loop {
        let r = rng.u64(..);
        for half in [r as u32, (r >> 32) as u32] {
            let Some(e) = below(half, m) else {
                continue;
            };
            let e = e as usize;
            if fresh(e) {
                emit(e..e + 1);
                left -= 1;
                if left == 0 {
                    return;
                }
            }
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

    fn indexed<A: WireAddr>(list: &PeerList<A>) -> bool {
        list.shape().slots > 0
    }

    /// Checks the invariants: partition, index agreement, no duplicates,
    /// the block's size.
    fn check(list: &PeerList<[u8; 6]>) {
        assert!(list.leechers() <= list.len());
        assert!(list.paused_leechers() <= list.leechers());
        assert_eq!(list.addrs().len(), list.len());
        assert_eq!(list.peer_ids().len(), list.len());
        for (i, a) in list.addrs().iter().enumerate() {
            assert_eq!(list.find(a, &H), Some(i));
        }
        let v = list.view();
        let held = v.slots.iter().filter(|s| **s != [0; 8]).count();
        assert_eq!(held, if indexed(list) { list.len() } else { 0 });
        if !list.block.is_empty() {
            let cap = list.shape().cap;
            assert_eq!(list.block.len(), PeerList::<[u8; 6]>::block_len(cap));
        }
        // Shrinking keeps the index down to half of INDEX_FROM.
        if list.len() > INDEX_FROM {
            assert!(indexed(list));
        } else if list.len() < INDEX_FROM / 2 {
            assert!(!indexed(list));
        }
        if !indexed(list) {
            assert_eq!(list.shape().cap, list.len(), "small lists are exact");
        }
        assert!(list.shape().cap >= list.len());
        let paused = list
            .peers()
            .take(list.leechers())
            .filter(|(_, m)| m.paused)
            .count();
        assert_eq!(paused, list.paused_leechers());
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
        let n = list.sample(want, seeder, exclude, &mut rng, |r| out.extend(r));
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn a_list_is_two_words_and_its_block_fits_exactly() {
        assert_eq!(std::mem::size_of::<PeerList<[u8; 6]>>(), 16);
        assert_eq!(std::mem::size_of::<Option<Box<PeerList<[u8; 18]>>>>(), 8);
        let mut list = PeerList::default();
        assert_eq!(list.block.len(), 0, "an empty list owns no block");
        for n in 0..10 {
            list.upsert(addr(n), meta(10), n % 4 == 0, &H);
            check(&list);
        }
        assert_eq!(list.block.len(), SMALL_HEADER + 10 * 30);
        list.remove_addr(&addr(3), &H);
        assert_eq!(list.block.len(), SMALL_HEADER + 9 * 30);
        for n in 0..10 {
            list.remove_addr(&addr(n), &H);
        }
        assert!(list.is_empty());
        assert_eq!(list.block.len(), 0);
    }

    #[test]
    fn the_extra_word_stays_with_the_list() {
        let mut list = PeerList::default();
        list.set_extra(0);
        assert_eq!(list.block.len(), 0);
        list.set_extra(7);
        assert_eq!((list.extra(), list.len()), (7, 0));
        for n in 0..40 {
            list.upsert(addr(n), meta(10), n % 2 == 0, &H);
            assert_eq!(list.extra(), 7);
        }
        list.set_extra(8);
        assert_eq!(list.expire(100, &H), 40);
        assert_eq!((list.extra(), list.len()), (8, 0));
        check(&list);
        let mut plain = PeerList::default();
        plain.upsert(addr(1), meta(10), false, &H);
        plain.remove_addr(&addr(1), &H);
        assert_eq!((plain.block.len(), plain.extra()), (0, 0));
    }

    #[test]
    fn meta_round_trips_with_paused_in_the_expiry() {
        let mut list = PeerList::default();
        let a = PeerMeta {
            peer_id: [7; 20],
            expires: 1234,
            paused: true,
        };
        let b = PeerMeta {
            peer_id: [8; 20],
            expires: u32::MAX,
            paused: false,
        };
        list.upsert(addr(1), a, false, &H);
        list.upsert(addr(2), b, true, &H);
        assert_eq!(list.meta_at(0), a);
        assert_eq!(
            list.meta_at(1),
            PeerMeta {
                expires: MAX_EXPIRES,
                ..b
            }
        );
        let all: Vec<_> = list.peers().collect();
        assert_eq!(all[0], (addr(1), a));
        assert_eq!(list.peer_ids(), &[[7; 20], [8; 20]]);
        assert_eq!(list.last_expires(), MAX_EXPIRES);
        list.remove_addr(&addr(2), &H);
        assert_eq!(list.last_expires(), 1234);
        list.remove_addr(&addr(1), &H);
        assert_eq!(list.last_expires(), 0);
    }

    #[test]
    fn status_changes_keep_partition() {
        let mut list = PeerList::default();
        for n in 0..40 {
            list.upsert(addr(n), meta(10), n % 3 == 0, &H);
            check(&list);
        }
        assert!(indexed(&list));
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
        for (i, a) in list.addrs().iter().enumerate() {
            let n = u16::from_be_bytes([a[2], a[3]]);
            assert_eq!(i >= list.leechers(), n % 3 == 0, "peer {n} at {i}");
        }
        for n in (1..40).step_by(2) {
            assert!(list.remove_addr(&addr(n), &H));
            check(&list);
        }
        assert!(list.is_empty() && !indexed(&list));
    }

    #[test]
    fn random_operations_keep_every_invariant() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut list = PeerList::default();
        let mut model = std::collections::HashMap::new();
        for step in 0..20_000 {
            let n = rng.u16(0..60);
            match rng.u8(0..4) {
                0..=1 => {
                    let m = PeerMeta {
                        peer_id: [n as u8; 20],
                        expires: rng.u32(0..100),
                        paused: rng.bool(),
                    };
                    let seeder = rng.bool();
                    list.upsert(addr(n), m, seeder, &H);
                    model.insert(n, (m, seeder));
                }
                2 => assert_eq!(list.remove_addr(&addr(n), &H), model.remove(&n).is_some()),
                _ => {
                    let now = rng.u32(0..20);
                    let gone = list.expire(now, &H);
                    let before = model.len();
                    model.retain(|_, (m, _)| m.expires > now);
                    assert_eq!(gone, before - model.len());
                }
            }
            if step % 97 == 0 {
                check(&list);
            }
            assert_eq!(list.len(), model.len());
        }
        check(&list);
        for (n, (m, seeder)) in &model {
            let p = list.find(&addr(*n), &H).unwrap();
            assert_eq!(list.meta_at(p), *m);
            assert_eq!(p >= list.leechers(), *seeder);
        }
        let downloaders = model.values().filter(|(m, s)| !s && !m.paused).count();
        assert_eq!(list.downloaders(), downloaders);
    }

    #[test]
    fn large_lists_grow_and_shrink_with_their_index() {
        let mut rng = fastrand::Rng::with_seed(8);
        let mut list = PeerList::default();
        let mut model = std::collections::HashMap::new();
        // Up to 3,000 peers, then down to none, twice: the block grows by
        // half again, rebuilds its index, shrinks back to a scanned list.
        for round in 0..2 {
            for n in 0..3_000u16 {
                let seeder = rng.bool();
                let m = PeerMeta {
                    peer_id: [n as u8; 20],
                    expires: 1 + (n as u32 % 50),
                    paused: rng.u8(0..8) == 0,
                };
                list.upsert(addr(n), m, seeder, &H);
                model.insert(n, (m, seeder));
                if n % 500 == 0 {
                    check(&list);
                }
            }
            assert_eq!(list.len(), model.len());
            check(&list);
            // Half leave one by one, the rest expire in two sweeps.
            for n in (0..3_000u16).filter(|n| n % 2 == round) {
                assert!(list.remove_addr(&addr(n), &H));
                model.remove(&n);
            }
            check(&list);
            for (n, (m, seeder)) in &model {
                let p = list.find(&addr(*n), &H).expect("still held");
                assert_eq!((list.meta_at(p), p >= list.leechers()), (*m, *seeder));
            }
            assert_eq!(
                list.expire(25, &H),
                model.values().filter(|(m, _)| m.expires <= 25).count()
            );
            check(&list);
            assert!(list.shape().cap < 2 * list.len() + INDEX_FROM);
            list.expire(100, &H);
            model.clear();
            assert!(list.is_empty() && !indexed(&list));
            assert_eq!(list.block.len(), 0);
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
        let scanned = list
            .peers()
            .take(list.leechers())
            .filter(|(_, m)| !m.paused)
            .count();
        assert_eq!(list.downloaders(), scanned);
        check(&list);
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
        assert_eq!(list.last_expires(), 50);
        assert_eq!(list.expire(10, &H), 25);
        check(&list);
        assert!(list.peers().all(|(_, m)| m.expires == 50));
        assert_eq!(list.expire(100, &H), 25);
        assert!(list.is_empty());
        assert!(!indexed(&list));
        assert_eq!(list.block.len(), 0);
    }

    #[test]
    fn sample_never_returns_announcer_or_duplicates() {
        let mut list = PeerList::default();
        for n in 0..30 {
            list.upsert(addr(n), meta(10), n >= 20, &H);
        }
        for want in [1, 8, 20, 28, 29, 50] {
            for seed in 0..200 {
                let me = (seed % 30) as usize;
                let got = sampled(&list, want, false, Some(me), seed);
                assert_eq!(got.len(), want.min(29));
                assert!(!got.contains(&me));
                let mut dedup = got.clone();
                dedup.sort();
                dedup.dedup();
                assert_eq!(dedup.len(), got.len());
            }
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
        let got = sampled(&list, 5, true, Some(me), 1);
        assert_eq!(got.len(), 5);
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
    fn sample_peers_hands_out_what_sample_picks() {
        let mut list = PeerList::default();
        for n in 0..40 {
            let m = PeerMeta {
                peer_id: [n as u8; 20],
                ..meta(10)
            };
            list.upsert(addr(n), m, false, &H);
        }
        let picked = sampled(&list, 12, false, Some(3), 9);
        let mut rng = fastrand::Rng::with_seed(9);
        let mut got = Vec::new();
        list.sample_peers(12, false, Some(3), &mut rng, |a, ids| {
            assert_eq!(a.len(), ids.len());
            got.extend(a.iter().copied().zip(ids.iter().copied()));
        });
        let want: Vec<_> = picked
            .iter()
            .map(|&p| (list.addrs()[p], list.peer_ids()[p]))
            .collect();
        assert_eq!(got, want);
        assert!(got.iter().all(|(a, id)| a[3] == id[0]));
    }

    /// Over `draws` samples of `want` from `n` eligible positions, how
    /// often each position came and how often neighbours (p, p + 1 mod n)
    /// came together.
    fn statistics(
        n: usize,
        draws: usize,
        mut sample: impl FnMut(&mut fastrand::Rng, &mut dyn FnMut(usize)),
    ) -> (Vec<u32>, u64) {
        let mut rng = fastrand::Rng::with_seed(42);
        let mut hits = vec![0u32; n];
        let mut together = 0u64;
        let mut picked = vec![false; n];
        for _ in 0..draws {
            picked.fill(false);
            sample(&mut rng, &mut |p| {
                assert!(!picked[p], "a duplicate");
                picked[p] = true;
            });
            for p in 0..n {
                hits[p] += picked[p] as u32;
                together += (picked[p] && picked[(p + 1) % n]) as u64;
            }
        }
        (hits, together)
    }

    /// Whether every position came within 10% of its share, and
    /// neighbours within 10% of how often a uniform choice pairs them.
    fn uniform(n: usize, want: usize, draws: usize, stats: &(Vec<u32>, u64)) -> Result<(), String> {
        let share = (draws * want) as f64 / n as f64;
        for (p, &h) in stats.0.iter().enumerate() {
            if (h as f64 - share).abs() > share * 0.1 {
                return Err(format!("position {p}: {h} picks, {share} expected"));
            }
        }
        // A uniform choice holds a given pair with probability
        // want(want-1) / (n(n-1)), and there are n neighbour pairs.
        let pairs = draws as f64 * (want * (want - 1)) as f64 / (n - 1) as f64;
        if (stats.1 as f64 - pairs).abs() > pairs * 0.1 {
            return Err(format!("{} neighbour pairs, {pairs} expected", stats.1));
        }
        Ok(())
    }

    /// The old sampler: a window of `want` from a random start.
    fn window(n: usize, want: usize, rng: &mut fastrand::Rng, emit: &mut dyn FnMut(usize)) {
        let start = rng.usize(0..n);
        for i in 0..want {
            emit((start + i) % n);
        }
    }

    #[test]
    fn samples_are_a_uniform_choice_not_a_window() {
        const N: usize = 100;
        const WANT: usize = 10;
        const DRAWS: usize = 40_000;
        let mut list = PeerList::default();
        for n in 0..N as u16 {
            list.upsert(addr(n), meta(10), false, &H);
        }
        let stats = statistics(N, DRAWS, |rng, emit| {
            list.sample(WANT, false, None, rng, |r| r.for_each(&mut *emit));
        });
        uniform(N, WANT, DRAWS, &stats).unwrap();
        // The bound has teeth: a window picks every peer as often, but
        // holds 9 neighbour pairs where a uniform choice holds 0.9.
        let windows = statistics(N, DRAWS, |rng, emit| window(N, WANT, rng, emit));
        let verdict = uniform(N, WANT, DRAWS, &windows).unwrap_err();
        assert!(verdict.contains("neighbour pairs"), "{verdict}");
    }

    #[test]
    fn every_path_of_the_choice_is_uniform() {
        // (peers, want, leechers of them, draws): most of a small list (the
        // complement is drawn), a seeder's leechers-only choice, a large
        // list (a sparse choice), and a large want of a large list.
        for (n, want, leechers, draws) in [
            (20usize, 15usize, 20usize, 20_000usize),
            (60, 8, 40, 40_000),
            (5_000, 50, 5_000, 10_000),
            (4_500, 3_000, 4_500, 400),
        ] {
            let mut list = PeerList::default();
            for p in 0..n as u16 {
                list.upsert(addr(p), meta(10), p as usize >= leechers, &H);
            }
            let for_seeder = leechers < n;
            // The announcer: a leecher (excluded) or a seeder (out of range).
            let me = if for_seeder { n - 1 } else { n / 2 };
            let eligible = leechers - (!for_seeder) as usize;
            let stats = statistics(n, draws, |rng, emit| {
                let got = list.sample(want, for_seeder, Some(me), rng, |r| r.for_each(&mut *emit));
                assert_eq!(got, want);
            });
            assert_eq!(stats.0[me], 0, "the announcer is never picked");
            // Fold the positions onto the eligible ones and test those.
            let mut hits: Vec<u32> = stats.0[..leechers].to_vec();
            if !for_seeder {
                hits.remove(me);
            }
            let share = (draws * want) as f64 / eligible as f64;
            if n > EXACT_BITS {
                // Fewer draws per peer: test the hits in 50 blocks.
                let per = eligible.div_ceil(50);
                let block_share = share * per as f64;
                for (b, block) in hits.chunks(per).enumerate() {
                    let h: u32 = block.iter().sum();
                    let expected = block_share * block.len() as f64 / per as f64;
                    assert!(
                        (h as f64 - expected).abs() < expected * 0.05,
                        "{n}/{want}: block {b}: {h}, {expected} expected"
                    );
                }
            } else {
                for (p, &h) in hits.iter().enumerate() {
                    assert!(
                        (h as f64 - share).abs() < share * 0.1,
                        "{n}/{want}: peer {p}: {h}, {share} expected"
                    );
                }
            }
            // Neighbours (among the eligible, away from the announcer) come
            // together as often as any pair.
            let pair = want as f64 * (want - 1) as f64 / (eligible * (eligible - 1)) as f64;
            let mut together = 0u64;
            let mut pairs = 0u64;
            let mut rng = fastrand::Rng::with_seed(1);
            let mut picked = vec![false; n];
            for _ in 0..draws {
                picked.fill(false);
                list.sample(want, for_seeder, Some(me), &mut rng, |r| {
                    r.for_each(|p| picked[p] = true)
                });
                for p in 0..leechers - 1 {
                    if p != me && p + 1 != me {
                        together += (picked[p] && picked[p + 1]) as u64;
                        pairs += 1;
                    }
                }
            }
            let expected = pairs as f64 * pair;
            assert!(
                (together as f64 - expected).abs() < expected * 0.1,
                "{n}/{want}: {together} neighbour pairs, {expected} expected"
            );
        }
    }

    #[test]
    fn handing_out_all_skips_the_announcer() {
        let all = |end, exclude| {
            let mut out = Vec::new();
            emit_all(end, exclude, |r| out.push(r));
            out
        };
        assert_eq!(all(5, None), vec![0..5]);
        assert_eq!(all(6, Some(2)), vec![0..2, 3..6]);
        assert_eq!(all(6, Some(0)), vec![1..6]);
        assert_eq!(all(6, Some(5)), vec![0..5]);
    }
}
