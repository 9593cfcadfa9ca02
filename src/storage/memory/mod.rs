//! The default store: the swarms one shard owns, in memory. Per
//! infohash, its peers by family (dense lists in wire format) and its
//! completion count, in a dense array with a keyed index.

mod dual;
pub mod peer_list;
pub mod slot_index;
pub mod subnet;

use super::{
    Expired, Limits, PeerCount, PeerSink, PeerStore, PeerUpdate, StoredPeer, SwarmTotals, V4Addr,
    V6Addr, Want,
};
use crate::bittorrent::{Client, Counts, InfoHash, PeerId};
use peer_list::{AddrHasher, PeerList, PeerMeta, WireAddr};
use slot_index::SlotIndex;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Three words: the completion count lives in the IPv4 list's header
/// (`PeerList::extra`), where it takes no room.
#[derive(Default)]
struct Torrent {
    v4: PeerList<V4Addr>,
    /// Boxed: most torrents never see an IPv6 peer.
    v6: Option<Box<PeerList<V6Addr>>>,
}

impl Torrent {
    fn downloaded(&self) -> u32 {
        self.v4.extra()
    }

    fn set_downloaded(&mut self, downloaded: u32) {
        self.v4.set_extra(downloaded);
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.as_ref().is_none_or(|l| l.is_empty())
    }

    fn counts(&self) -> Counts {
        let (v6_seeders, v6_leechers) = self
            .v6
            .as_ref()
            .map_or((0, 0), |l| (l.seeders(), l.leechers()));
        Counts {
            seeders: (self.v4.seeders() + v6_seeders) as u32,
            leechers: (self.v4.leechers() + v6_leechers) as u32,
            downloaded: self.downloaded(),
            downloaders: 0,
        }
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.as_ref().map_or(0, |l| l.len())
    }

    fn contains(&self, peer: Client, h: &AddrHasher) -> bool {
        match peer.ip {
            IpAddr::V4(ip) => self.v4.find(&wire_v4(ip, peer.port), h).is_some(),
            IpAddr::V6(ip) => self
                .v6
                .as_ref()
                .is_some_and(|l| l.find(&wire_v6(ip, peer.port), h).is_some()),
        }
    }

    /// When it was last announced to, as its latest peer expiry says (every
    /// announce sets now + peer_lifetime).
    fn last_announce(&self) -> u32 {
        let v6 = self.v6.as_ref().map_or(0, |l| l.last_expires());
        self.v4.last_expires().max(v6)
    }

    fn scrape_counts(&self) -> Counts {
        let v6 = self.v6.as_ref().map_or(0, |l| l.downloaders());
        Counts {
            downloaders: (self.v4.downloaders() + v6) as u32,
            ..self.counts()
        }
    }
}

pub fn wire_v4(ip: Ipv4Addr, port: u16) -> V4Addr {
    let mut a = [0u8; 6];
    a[..4].copy_from_slice(&ip.octets());
    a[4..].copy_from_slice(&port.to_be_bytes());
    a
}

pub fn wire_v6(ip: Ipv6Addr, port: u16) -> V6Addr {
    let mut a = [0u8; 18];
    a[..16].copy_from_slice(&ip.octets());
    a[16..].copy_from_slice(&port.to_be_bytes());
    a
}

fn client_of_v4(a: &V4Addr) -> Client {
    Client {
        ip: IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
        port: u16::from_be_bytes([a[4], a[5]]),
    }
}

fn client_of_v6(a: &V6Addr) -> Client {
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&a[..16]);
    Client {
        ip: IpAddr::V6(Ipv6Addr::from(ip)),
        port: u16::from_be_bytes([a[16], a[17]]),
    }
}

impl PeerCount {
    fn of<A: WireAddr>(list: &PeerList<A>) -> PeerCount {
        PeerCount {
            seeders: list.seeders(),
            leechers: list.leechers(),
        }
    }

    /// Moves the totals by a list's change from `before` to `after`.
    fn shift(&mut self, before: PeerCount, after: PeerCount) {
        self.seeders = (self.seeders + after.seeders).saturating_sub(before.seeders);
        self.leechers = (self.leechers + after.leechers).saturating_sub(before.leechers);
    }
}

/// The torrents: a dense array (cheap to sweep, compact in memory) and a
/// keyed index from infohash to position.
#[derive(Default)]
pub struct MemoryStore {
    torrents: Vec<(InfoHash, Torrent)>,
    index: SlotIndex,
    /// Keyed per process: nobody can aim infohashes at one probe run.
    hasher: ahash::RandomState,
    peer_hasher: AddrHasher,
    /// Where the next expiry slice starts.
    sweep_cursor: usize,
    /// Seeders and leechers over every torrent, by family (0: IPv4,
    /// 1: IPv6), kept as peers come and go: the gauges cost no sweep.
    totals: [PeerCount; 2],
    limits: Limits,
    evicted_torrents: u64,
    unstored_peers: u64,
    /// Reused by subnet preference.
    scratch: Vec<u32>,
    /// Dual-stacked peers (BEP 7), to count them once.
    twins: dual::Twins,
}

/// Torrents sampled for the least recently announced when one must go.
const EVICTION_SAMPLES: usize = 16;

impl MemoryStore {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    pub fn torrent_count(&self) -> usize {
        self.torrents.len()
    }

    #[inline]
    fn position(&self, hash: u64, info_hash: &InfoHash) -> Option<usize> {
        self.index
            .find(hash, |p| self.torrents[p as usize].0 == *info_hash)
            .map(|p| p as usize)
    }

    /// The torrent's position, added empty if new (evicting one when the
    /// store is at `max_torrents`).
    #[inline]
    fn position_or_insert(&mut self, info_hash: &InfoHash, rng: &mut fastrand::Rng) -> usize {
        let hash = self.hasher.hash_one(info_hash);
        match self.position(hash, info_hash) {
            Some(p) => p,
            None => {
                let cap = self.limits.max_torrents;
                if cap != 0 && self.torrents.len() >= cap {
                    self.evict_one(rng);
                }
                self.torrents.push((*info_hash, Torrent::default()));
                let p = self.torrents.len() - 1;
                self.index.insert(hash, p as u32);
                p
            }
        }
    }

    /// Evicts the least recently announced of a few torrents sampled at
    /// random (an approximate LRU, as Redis does: exact order would cost
    /// every announce two more cache misses on its list neighbours).
    #[cold]
    fn evict_one(&mut self, rng: &mut fastrand::Rng) {
        let n = self.torrents.len();
        if n == 0 {
            return;
        }
        let oldest = (0..EVICTION_SAMPLES.min(n))
            .map(|_| rng.usize(0..n))
            .min_by_key(|&p| self.torrents[p].1.last_announce())
            .expect("at least one sample");
        let torrent = &self.torrents[oldest].1;
        self.totals[0].shift(PeerCount::of(&torrent.v4), PeerCount::default());
        if let Some(v6) = &torrent.v6 {
            self.totals[1].shift(PeerCount::of(v6), PeerCount::default());
        }
        // The last torrent moves into `oldest`: the sweep may visit it a
        // pass late, which expiry tolerates.
        self.remove_at(oldest);
        self.evicted_torrents += 1;
    }

    /// The counts of the torrent at `position`, a dual-stacked peer once.
    #[inline]
    fn counts_at(&self, position: usize, scrape: bool) -> Counts {
        let (info_hash, torrent) = &self.torrents[position];
        let mut counts = if scrape {
            torrent.scrape_counts()
        } else {
            torrent.counts()
        };
        if !self.twins.is_empty() {
            let (seeders, leechers) = self.twins.doubles(
                info_hash,
                &torrent.v4,
                torrent.v6.as_deref(),
                &self.peer_hasher,
            );
            counts.seeders -= seeders;
            counts.leechers -= leechers;
            if scrape {
                counts.downloaders = counts.downloaders.saturating_sub(leechers);
            }
        }
        counts
    }

    /// Whether a new peer fits the torrent at `position`.
    #[inline]
    fn has_room(&self, position: usize) -> bool {
        let cap = self.limits.max_peers_per_torrent;
        cap == 0 || self.torrents[position].1.len() < cap
    }

    /// Removes the torrent at `position`; the last one moves into its place.
    fn remove_at(&mut self, position: usize) {
        self.twins.forget_torrent(&self.torrents[position].0);
        let last = self.torrents.len() - 1;
        let hash = self.hasher.hash_one(self.torrents[position].0);
        self.index.remove(hash, position as u32);
        if position != last {
            let moved = self.hasher.hash_one(self.torrents[last].0);
            self.index.relocate(moved, last as u32, position as u32);
        }
        self.torrents.swap_remove(position);
    }
}

/// Upserts one peer into `torrent`, keeping the store's `totals`; returns
/// its place in its family's list and whether it was a seeder before.
#[inline]
fn upsert(
    torrent: &mut Torrent,
    h: &AddrHasher,
    totals: &mut [PeerCount; 2],
    peer: Client,
    meta: PeerMeta,
    seeder: bool,
) -> Upsert {
    match peer.ip {
        IpAddr::V4(ip) => {
            let before = PeerCount::of(&torrent.v4);
            let up = torrent.v4.upsert(wire_v4(ip, peer.port), meta, seeder, h);
            totals[0].shift(before, PeerCount::of(&torrent.v4));
            Upsert {
                v4: Some(up.position),
                v6: None,
                was_seeder: up.was_seeder,
            }
        }
        IpAddr::V6(ip) => {
            let list = torrent.v6.get_or_insert_with(Default::default);
            let before = PeerCount::of(list);
            let up = list.upsert(wire_v6(ip, peer.port), meta, seeder, h);
            totals[1].shift(before, PeerCount::of(list));
            Upsert {
                v4: None,
                v6: Some(up.position),
                was_seeder: up.was_seeder,
            }
        }
    }
}

struct Upsert {
    /// The announcer's place in its family's list: never sampled.
    v4: Option<usize>,
    v6: Option<usize>,
    was_seeder: bool,
}

impl PeerStore for MemoryStore {
    #[inline]
    fn put<S: PeerSink>(
        &mut self,
        update: &PeerUpdate,
        want: Want,
        rng: &mut fastrand::Rng,
        sink: &mut S,
    ) -> Counts {
        let position = self.position_or_insert(&update.info_hash, rng);
        let meta = PeerMeta {
            peer_id: update.peer_id,
            expires: update.expires,
            paused: update.paused,
        };
        // Past the peer cap a new peer is answered but not stored; the
        // peers already there keep their place.
        let stored = self.has_room(position)
            || self.torrents[position]
                .1
                .contains(update.peer, &self.peer_hasher);
        let torrent = &mut self.torrents[position].1;
        let up = if stored {
            upsert(
                torrent,
                &self.peer_hasher,
                &mut self.totals,
                update.peer,
                meta,
                update.seeder,
            )
        } else {
            self.unstored_peers += 1;
            Upsert {
                v4: None,
                v6: None,
                was_seeder: true,
            }
        };
        // A dual-stacked peer's other address goes into the other list.
        let twin = match (stored, update.twin) {
            (true, Some(twin)) => {
                let at = upsert(
                    torrent,
                    &self.peer_hasher,
                    &mut self.totals,
                    twin,
                    meta,
                    update.seeder,
                );
                if let (IpAddr::V4(a), IpAddr::V6(b)) | (IpAddr::V6(b), IpAddr::V4(a)) =
                    (update.peer.ip, twin.ip)
                {
                    let (v4, v6) = (wire_v4(a, update.peer.port), wire_v6(b, update.peer.port));
                    self.twins.record(&update.info_hash, v4, v6);
                }
                Some(at)
            }
            _ => None,
        };
        let (exclude_v4, exclude_v6) = match &twin {
            Some(t) => (up.v4.or(t.v4), up.v6.or(t.v6)),
            None => (up.v4, up.v6),
        };
        // Only a real leecher-to-seeder step counts: repeating `completed`
        // (or sending it with bytes left) must not inflate the count, nor
        // can a peer that is not stored.
        if update.completed && update.seeder && !up.was_seeder {
            torrent.set_downloaded(torrent.downloaded().saturating_add(1));
        }
        // The announcer's own family first, then the other one with what
        // is left of the total.
        let torrent = &*torrent;
        let only = want.leechers_only;
        let mut left = want.total;
        let v4 = |n, exclude, rng: &mut _, sink: &mut S| {
            sample(&torrent.v4, n, only, exclude, rng, |a, m| sink.v4(a, m))
        };
        let v6 = |n, exclude, rng: &mut _, sink: &mut S| match &torrent.v6 {
            Some(list) => sample(list, n, only, exclude, rng, |a, m| sink.v6(a, m)),
            None => 0,
        };
        let scratch = &mut self.scratch;
        match (update.peer.ip, want.near) {
            (IpAddr::V4(ip), Some(bits)) => {
                let near = wire_v4(ip, update.peer.port);
                left -= subnet::sample(
                    &torrent.v4,
                    left,
                    only,
                    up.v4,
                    &near,
                    bits,
                    rng,
                    scratch,
                    |a, m| sink.v4(a, m),
                );
            }
            (IpAddr::V6(ip), Some(bits)) => {
                if let Some(list) = &torrent.v6 {
                    let near = wire_v6(ip, update.peer.port);
                    left -= subnet::sample(
                        list,
                        left,
                        only,
                        up.v6,
                        &near,
                        bits,
                        rng,
                        scratch,
                        |a, m| sink.v6(a, m),
                    );
                }
            }
            (IpAddr::V4(_), None) => left -= v4(left, exclude_v4, rng, sink),
            (IpAddr::V6(_), None) => left -= v6(left, exclude_v6, rng, sink),
        }
        if want.other_family {
            if update.peer.ip.is_ipv4() {
                v6(left, exclude_v6, rng, sink);
            } else {
                v4(left, exclude_v4, rng, sink);
            }
        }
        self.counts_at(position, false)
    }

    fn remove(&mut self, info_hash: &InfoHash, peer: Client) -> Counts {
        let Some(position) = self.position(self.hasher.hash_one(info_hash), info_hash) else {
            return Counts::default();
        };
        let h = &self.peer_hasher;
        let torrent = &mut self.torrents[position].1;
        match peer.ip {
            IpAddr::V4(ip) => {
                let before = PeerCount::of(&torrent.v4);
                torrent.v4.remove_addr(&wire_v4(ip, peer.port), h);
                self.totals[0].shift(before, PeerCount::of(&torrent.v4));
            }
            IpAddr::V6(ip) => {
                if let Some(list) = &mut torrent.v6 {
                    let before = PeerCount::of(list);
                    list.remove_addr(&wire_v6(ip, peer.port), h);
                    self.totals[1].shift(before, PeerCount::of(list));
                }
            }
        }
        if !self.twins.is_empty() {
            let (info_hash, torrent) = &self.torrents[position];
            self.twins.prune(
                info_hash,
                &torrent.v4,
                torrent.v6.as_deref(),
                &self.peer_hasher,
            );
        }
        let counts = self.counts_at(position, false);
        // Empty torrents vanish, here as in expiry (their completion count
        // with them: keeping it would keep every torrent ever seen).
        if self.torrents[position].1.is_empty() {
            self.remove_at(position);
        }
        counts
    }

    fn scrape(&self, info_hash: &InfoHash) -> Counts {
        self.position(self.hasher.hash_one(info_hash), info_hash)
            .map(|p| self.counts_at(p, true))
            .unwrap_or_default()
    }

    fn expire(&mut self, now: u32, budget: usize) -> Expired {
        let mut done = Expired::default();
        if self.sweep_cursor >= self.torrents.len() {
            self.sweep_cursor = 0;
        }
        while done.visited < budget && self.sweep_cursor < self.torrents.len() {
            done.visited += 1;
            let h = &self.peer_hasher;
            let torrent = &mut self.torrents[self.sweep_cursor].1;
            let before = PeerCount::of(&torrent.v4);
            done.peers += torrent.v4.expire(now, h);
            self.totals[0].shift(before, PeerCount::of(&torrent.v4));
            if let Some(v6) = &mut torrent.v6 {
                let before = PeerCount::of(v6);
                done.peers += v6.expire(now, h);
                self.totals[1].shift(before, PeerCount::of(v6));
                if v6.is_empty() {
                    torrent.v6 = None;
                }
            }
            if !self.twins.is_empty() {
                let (info_hash, torrent) = &self.torrents[self.sweep_cursor];
                self.twins
                    .prune(info_hash, &torrent.v4, torrent.v6.as_deref(), h);
            }
            let torrent = &self.torrents[self.sweep_cursor].1;
            if torrent.is_empty() {
                // The last torrent moves into this slot: visit it next.
                self.remove_at(self.sweep_cursor);
                done.torrents += 1;
            } else {
                self.sweep_cursor += 1;
            }
        }
        done
    }

    fn totals(&self) -> SwarmTotals {
        SwarmTotals {
            torrents: self.torrents.len(),
            v4: self.totals[0],
            v6: self.totals[1],
            evicted_torrents: self.evicted_torrents,
            unstored_peers: self.unstored_peers,
        }
    }

    fn export(
        &self,
        cursor: usize,
        budget: usize,
        visit: &mut dyn FnMut(&InfoHash, u32, &[StoredPeer]),
    ) -> Option<usize> {
        let end = cursor.saturating_add(budget).min(self.torrents.len());
        let mut peers = Vec::new();
        for (info_hash, torrent) in self.torrents.get(cursor..end).unwrap_or_default() {
            peers.clear();
            stored(&torrent.v4, client_of_v4, &mut peers);
            if let Some(v6) = &torrent.v6 {
                stored(v6, client_of_v6, &mut peers);
            }
            visit(info_hash, torrent.downloaded(), &peers);
        }
        (end < self.torrents.len()).then_some(end)
    }

    fn scrape_slice(
        &self,
        cursor: usize,
        budget: usize,
        visit: &mut dyn FnMut(&InfoHash, Counts),
    ) -> Option<usize> {
        let end = cursor.saturating_add(budget).min(self.torrents.len());
        for position in cursor..end {
            visit(&self.torrents[position].0, self.counts_at(position, true));
        }
        (end < self.torrents.len()).then_some(end)
    }

    fn import(&mut self, info_hash: &InfoHash, downloaded: u32, peers: &[StoredPeer]) {
        // Deterministic: only an eviction at the cap draws from it.
        let mut rng = fastrand::Rng::with_seed(self.torrents.len() as u64);
        let position = self.position_or_insert(info_hash, &mut rng);
        for p in peers {
            if !self.has_room(position) {
                self.unstored_peers += 1;
                continue;
            }
            let meta = PeerMeta {
                peer_id: p.peer_id,
                expires: p.expires,
                paused: p.paused,
            };
            let torrent = &mut self.torrents[position].1;
            upsert(
                torrent,
                &self.peer_hasher,
                &mut self.totals,
                p.peer,
                meta,
                p.seeder,
            );
        }
        let torrent = &mut self.torrents[position].1;
        torrent.set_downloaded(torrent.downloaded().max(downloaded));
        if torrent.is_empty() {
            self.remove_at(position);
        }
    }
}

/// Samples up to `want` peers of one list into `emit`; returns how many.
#[inline]
fn sample<A: WireAddr>(
    list: &PeerList<A>,
    want: usize,
    leechers_only: bool,
    exclude: Option<usize>,
    rng: &mut fastrand::Rng,
    emit: impl FnMut(&[A], &[PeerId]),
) -> usize {
    list.sample_peers(want, leechers_only, exclude, rng, emit)
}

/// Appends a list's peers as `StoredPeer`s.
fn stored<A: WireAddr>(list: &PeerList<A>, client: fn(&A) -> Client, out: &mut Vec<StoredPeer>) {
    let leechers = list.leechers();
    for (i, (addr, meta)) in list.peers().enumerate() {
        out.push(StoredPeer {
            peer: client(&addr),
            peer_id: meta.peer_id,
            seeder: i >= leechers,
            paused: meta.paused,
            expires: meta.expires,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect {
        v4: Vec<V4Addr>,
        v6: Vec<V6Addr>,
    }

    impl PeerSink for Collect {
        fn v4(&mut self, addrs: &[V4Addr], _: &[PeerId]) {
            self.v4.extend_from_slice(addrs);
        }
        fn v6(&mut self, addrs: &[V6Addr], _: &[PeerId]) {
            self.v6.extend_from_slice(addrs);
        }
    }

    fn client(ip: &str, port: u16) -> Client {
        Client {
            ip: ip.parse().unwrap(),
            port,
        }
    }

    fn update(ih: u8, peer: Client, seeder: bool, expires: u32) -> PeerUpdate {
        PeerUpdate {
            info_hash: [ih; 20],
            peer,
            twin: None,
            peer_id: [ih; 20],
            seeder,
            paused: false,
            completed: false,
            expires,
        }
    }

    fn put(s: &mut MemoryStore, u: &PeerUpdate, want: Want) -> (Counts, Collect) {
        let mut sink = Collect {
            v4: vec![],
            v6: vec![],
        };
        let mut rng = fastrand::Rng::with_seed(1);
        let counts = s.put(u, want, &mut rng, &mut sink);
        (counts, sink)
    }

    const ALL: Want = Want {
        total: 50,
        other_family: true,
        leechers_only: false,
        near: None,
    };

    #[test]
    fn a_torrent_is_three_words() {
        // With its infohash, 48 bytes in the dense array; the peers are in
        // one block per family.
        assert_eq!(std::mem::size_of::<Torrent>(), 24);
        assert_eq!(std::mem::size_of::<(InfoHash, Torrent)>(), 48);
    }

    #[test]
    fn expiry_drops_stale_peers_and_empty_torrents_in_slices() {
        let mut s = MemoryStore::default();
        for ih in 0..10u8 {
            put(&mut s, &update(ih, client("10.0.0.1", 1), false, 50), ALL);
            if ih % 2 == 0 {
                put(
                    &mut s,
                    &update(ih, client("2001:db8::1", 1), false, 500),
                    ALL,
                );
            }
        }
        let first = s.expire(100, 4);
        assert_eq!(first.visited, 4);
        let mut total = first;
        while s.sweep_cursor != 0 && s.sweep_cursor < s.torrent_count() {
            let e = s.expire(100, 4);
            total.peers += e.peers;
            total.torrents += e.torrents;
        }
        assert_eq!(total.peers, 10);
        assert_eq!(total.torrents, 5);
        assert_eq!(s.torrent_count(), 5);
        s.expire(1000, 100);
        assert_eq!(s.torrent_count(), 0);
    }

    #[test]
    fn the_own_family_comes_first_and_the_total_holds() {
        let mut s = MemoryStore::default();
        for n in 1..=5 {
            put(&mut s, &update(1, client("10.0.0.1", n), false, 9), ALL);
            put(&mut s, &update(1, client("2001:db8::1", n), false, 9), ALL);
        }
        let want = |total, other_family| Want {
            total,
            other_family,
            leechers_only: false,
            near: None,
        };
        let (_, got) = put(
            &mut s,
            &update(1, client("10.0.0.9", 1), false, 9),
            want(7, true),
        );
        assert_eq!((got.v4.len(), got.v6.len()), (5, 2));
        let (_, got) = put(
            &mut s,
            &update(1, client("2001:db8::9", 1), false, 9),
            want(7, true),
        );
        assert_eq!((got.v4.len(), got.v6.len()), (2, 5));
        let (_, got) = put(
            &mut s,
            &update(1, client("10.0.0.9", 1), false, 9),
            want(50, false),
        );
        assert_eq!(
            (got.v4.len(), got.v6.len()),
            (5, 0),
            "one family, the announcer excluded"
        );
        let (_, got) = put(
            &mut s,
            &update(1, client("10.0.0.9", 1), false, 9),
            want(0, true),
        );
        assert_eq!((got.v4.len(), got.v6.len()), (0, 0));
    }

    #[test]
    fn export_and_import_round_trip() {
        let mut a = MemoryStore::default();
        put(&mut a, &update(1, client("10.0.0.1", 1), false, 30), ALL);
        let done = PeerUpdate {
            completed: true,
            ..update(1, client("10.0.0.1", 1), true, 40)
        };
        put(&mut a, &done, ALL);
        put(&mut a, &update(1, client("2001:db8::1", 2), false, 50), ALL);
        put(&mut a, &update(2, client("10.0.0.3", 3), true, 60), ALL);
        let mut b = MemoryStore::default();
        let mut seen = 0;
        let mut cursor = Some(0);
        while let Some(from) = cursor {
            cursor = a.export(from, 1, &mut |ih, downloaded, peers| {
                seen += peers.len();
                b.import(ih, downloaded, peers);
            });
        }
        assert_eq!(seen, 3);
        assert_eq!(a.totals(), b.totals());
        for ih in [[1u8; 20], [2; 20]] {
            assert_eq!(a.scrape(&ih), b.scrape(&ih));
        }
        assert_eq!(b.scrape(&[1; 20]).downloaded, 1);
        let mut exported = Vec::new();
        assert_eq!(
            b.export(0, 100, &mut |_, _, peers| exported.extend_from_slice(peers)),
            None
        );
        let v6 = exported.iter().find(|p| p.peer.ip.is_ipv6()).unwrap();
        assert_eq!((v6.peer.port, v6.expires, v6.seeder), (2, 50, false));
        // Expiry times travel as given: the importer rebases them.
        b.expire(55, 10);
        assert_eq!(b.totals().torrents, 1);
    }

    #[test]
    fn the_torrent_cap_evicts_the_least_recently_announced() {
        let mut s = MemoryStore::new(Limits {
            max_torrents: 100,
            max_peers_per_torrent: 0,
        });
        let ih = |n: u32| {
            let mut h = [0u8; 20];
            h[..4].copy_from_slice(&n.to_be_bytes());
            h
        };
        let mut rng = fastrand::Rng::with_seed(3);
        let mut at = |s: &mut MemoryStore, n: u32, expires: u32| {
            let u = PeerUpdate {
                info_hash: ih(n),
                ..update(0, client("10.0.0.1", 1), false, expires)
            };
            s.put(
                &u,
                ALL,
                &mut rng,
                &mut Collect {
                    v4: vec![],
                    v6: vec![],
                },
            );
        };
        // 50 old torrents, then 50 announced later, then a flood of 1,000.
        for n in 0..50 {
            at(&mut s, n, 100);
        }
        for n in 50..100 {
            at(&mut s, n, 5_000);
        }
        for n in 1000..2000 {
            at(&mut s, n, 10_000 + n);
        }
        let totals = s.totals();
        assert_eq!(totals.torrents, 100, "the cap holds");
        assert_eq!(totals.evicted_torrents, 1000);
        assert_eq!(totals.v4.leechers, 100, "evicted peers left the gauges");
        let survivors =
            |range: std::ops::Range<u32>| range.filter(|n| s.scrape(&ih(*n)).leechers == 1).count();
        // Sampling 16 picks an old torrent while any is left: the old ones
        // go first, and the newest of the flood stay.
        assert_eq!(survivors(0..50), 0);
        assert_eq!(survivors(50..100), 0);
        assert!(survivors(1900..2000) >= 60, "{}", survivors(1900..2000));
    }

    #[test]
    fn past_the_peer_cap_new_peers_are_answered_but_not_stored() {
        let mut s = MemoryStore::new(Limits {
            max_torrents: 0,
            max_peers_per_torrent: 3,
        });
        for port in 1..=3 {
            put(&mut s, &update(1, client("10.0.0.1", port), false, 9), ALL);
        }
        let (counts, peers) = put(&mut s, &update(1, client("10.0.0.2", 9), false, 9), ALL);
        assert_eq!(peers.v4.len(), 3, "answered with the stored peers");
        assert_eq!(counts.leechers, 3, "not stored");
        assert_eq!(s.totals().unstored_peers, 1);
        // A stored peer still updates (here: becomes a seeder).
        let (counts, _) = put(&mut s, &update(1, client("10.0.0.1", 2), true, 9), ALL);
        assert_eq!((counts.seeders, counts.leechers), (1, 2));
        assert_eq!(s.totals().unstored_peers, 1);
    }
}
