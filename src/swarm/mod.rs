//! The swarms one shard owns: per infohash, its peers by family, its
//! completion count. Update first, then answer (design.md §4).

pub mod peer_list;
pub mod slot_index;

use crate::request::{Announce, Client, Event, InfoHash};
use peer_list::{AddrHasher, PeerList, PeerMeta};
use slot_index::SlotIndex;
use std::net::IpAddr;

pub use peer_list::WireAddr;

pub type V4Addr = [u8; 6];
pub type V6Addr = [u8; 18];

#[derive(Default)]
pub struct Torrent {
    v4: PeerList<V4Addr>,
    /// Boxed: most torrents never see an IPv6 peer.
    v6: Option<Box<PeerList<V6Addr>>>,
    downloaded: u32,
}

impl Torrent {
    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.as_ref().is_none_or(|l| l.is_empty())
    }

    pub fn counts(&self) -> Counts {
        let (v6_seeders, v6_leechers) = self
            .v6
            .as_ref()
            .map_or((0, 0), |l| (l.seeders(), l.leechers()));
        Counts {
            seeders: (self.v4.seeders() + v6_seeders) as u32,
            leechers: (self.v4.leechers() + v6_leechers) as u32,
            downloaded: self.downloaded,
            downloaders: 0,
        }
    }

    fn scrape_counts(&self) -> Counts {
        let v6 = self.v6.as_ref().map_or(0, |l| l.downloaders());
        Counts {
            downloaders: (self.v4.downloaders() + v6) as u32,
            ..self.counts()
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub seeders: u32,
    pub leechers: u32,
    pub downloaded: u32,
    /// BEP 21: leechers that are not paused. Counted for scrapes only
    /// (`Swarms::counts`); announces leave it 0.
    pub downloaders: u32,
}

/// Receives the sampled peers, as contiguous runs in wire format, with
/// their metadata (peer ids for dictionary responses).
pub trait PeerSink {
    fn v4(&mut self, addrs: &[V4Addr], meta: &[PeerMeta]);
    fn v6(&mut self, addrs: &[V6Addr], meta: &[PeerMeta]);
}

/// How many peers of each family the answer has room for.
#[derive(Clone, Copy, Debug)]
pub struct Want {
    pub v4: usize,
    pub v6: usize,
}

pub fn wire_v4(ip: std::net::Ipv4Addr, port: u16) -> V4Addr {
    let mut a = [0u8; 6];
    a[..4].copy_from_slice(&ip.octets());
    a[4..].copy_from_slice(&port.to_be_bytes());
    a
}

pub fn wire_v6(ip: std::net::Ipv6Addr, port: u16) -> V6Addr {
    let mut a = [0u8; 18];
    a[..16].copy_from_slice(&ip.octets());
    a[16..].copy_from_slice(&port.to_be_bytes());
    a
}

/// The torrents: a dense array (cheap to sweep, compact in memory) and a
/// keyed index from infohash to position.
#[derive(Default)]
pub struct Swarms {
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
}

/// Seeders and leechers of one peer list, or a sum of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCount {
    pub seeders: usize,
    pub leechers: usize,
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

/// What a shard holds, for the gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwarmTotals {
    pub torrents: usize,
    pub v4: PeerCount,
    pub v6: PeerCount,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    pub peers: usize,
    pub torrents: usize,
    pub visited: usize,
}

impl Swarms {
    pub fn torrent_count(&self) -> usize {
        self.torrents.len()
    }

    pub fn totals(&self) -> SwarmTotals {
        SwarmTotals {
            torrents: self.torrents.len(),
            v4: self.totals[0],
            v6: self.totals[1],
        }
    }

    #[inline]
    fn position(&self, hash: u64, info_hash: &InfoHash) -> Option<usize> {
        self.index
            .find(hash, |p| self.torrents[p as usize].0 == *info_hash)
            .map(|p| p as usize)
    }

    /// Removes the torrent at `position`; the last one moves into its place.
    fn remove_at(&mut self, position: usize) {
        let last = self.torrents.len() - 1;
        let hash = self.hasher.hash_one(self.torrents[position].0);
        self.index.remove(hash, position as u32);
        if position != last {
            let moved = self.hasher.hash_one(self.torrents[last].0);
            self.index.relocate(moved, last as u32, position as u32);
        }
        self.torrents.swap_remove(position);
    }

    /// Records the announce, then samples peers into `sink`. Returns the
    /// counts after the update (they include the announcer).
    pub fn announce(
        &mut self,
        announce: &Announce,
        client: Client,
        expires: u32,
        want: Want,
        rng: &mut fastrand::Rng,
        sink: &mut impl PeerSink,
    ) -> Counts {
        if announce.event == Event::Stopped {
            return self.stop(&announce.info_hash, client);
        }
        let hash = self.hasher.hash_one(announce.info_hash);
        let position = match self.position(hash, &announce.info_hash) {
            Some(p) => p,
            None => {
                self.torrents.push((announce.info_hash, Torrent::default()));
                let p = self.torrents.len() - 1;
                self.index.insert(hash, p as u32);
                p
            }
        };
        let h = &self.peer_hasher;
        let torrent = &mut self.torrents[position].1;
        let seeder = announce.is_seeder();
        let meta = PeerMeta {
            peer_id: announce.peer_id,
            expires,
            paused: announce.event == Event::Paused,
        };
        let (exclude_v4, exclude_v6, was_seeder) = match client.ip {
            IpAddr::V4(ip) => {
                let before = PeerCount::of(&torrent.v4);
                let up = torrent.v4.upsert(wire_v4(ip, client.port), meta, seeder, h);
                self.totals[0].shift(before, PeerCount::of(&torrent.v4));
                (Some(up.position), None, up.was_seeder)
            }
            IpAddr::V6(ip) => {
                let list = torrent.v6.get_or_insert_with(Default::default);
                let before = PeerCount::of(list);
                let up = list.upsert(wire_v6(ip, client.port), meta, seeder, h);
                self.totals[1].shift(before, PeerCount::of(list));
                (None, Some(up.position), up.was_seeder)
            }
        };
        // Only a real leecher-to-seeder step counts: repeating `completed`
        // (or sending it with bytes left) must not inflate the count.
        if announce.event == Event::Completed && seeder && !was_seeder {
            torrent.downloaded = torrent.downloaded.saturating_add(1);
        }
        let v4 = &torrent.v4;
        v4.sample(want.v4, seeder, exclude_v4, rng, |r| {
            sink.v4(&v4.addrs()[r.clone()], &v4.meta()[r])
        });
        if let Some(v6) = &torrent.v6 {
            v6.sample(want.v6, seeder, exclude_v6, rng, |r| {
                sink.v6(&v6.addrs()[r.clone()], &v6.meta()[r])
            });
        }
        torrent.counts()
    }

    fn stop(&mut self, info_hash: &InfoHash, client: Client) -> Counts {
        let Some(position) = self.position(self.hasher.hash_one(info_hash), info_hash) else {
            return Counts::default();
        };
        let h = &self.peer_hasher;
        let torrent = &mut self.torrents[position].1;
        match client.ip {
            IpAddr::V4(ip) => {
                let before = PeerCount::of(&torrent.v4);
                torrent.v4.remove_addr(&wire_v4(ip, client.port), h);
                self.totals[0].shift(before, PeerCount::of(&torrent.v4));
            }
            IpAddr::V6(ip) => {
                if let Some(list) = &mut torrent.v6 {
                    let before = PeerCount::of(list);
                    list.remove_addr(&wire_v6(ip, client.port), h);
                    self.totals[1].shift(before, PeerCount::of(list));
                }
            }
        }
        let counts = torrent.counts();
        // Empty torrents vanish, here as in expiry (their completion count
        // with them: keeping it would keep every torrent ever seen).
        if torrent.is_empty() {
            self.remove_at(position);
        }
        counts
    }

    /// Scrape counts of one torrent (zeros when unknown), with `downloaders`.
    pub fn counts(&self, info_hash: &InfoHash) -> Counts {
        self.position(self.hasher.hash_one(info_hash), info_hash)
            .map(|p| self.torrents[p].1.scrape_counts())
            .unwrap_or_default()
    }

    /// Expires stale peers in up to `max_torrents` torrents, continuing
    /// where the previous slice stopped, and drops torrents left empty.
    pub fn expire_slice(&mut self, now: u32, max_torrents: usize) -> Expired {
        let mut done = Expired::default();
        if self.sweep_cursor >= self.torrents.len() {
            self.sweep_cursor = 0;
        }
        while done.visited < max_torrents && self.sweep_cursor < self.torrents.len() {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect {
        v4: Vec<V4Addr>,
        v6: Vec<V6Addr>,
    }

    impl PeerSink for Collect {
        fn v4(&mut self, addrs: &[V4Addr], _: &[PeerMeta]) {
            self.v4.extend_from_slice(addrs);
        }
        fn v6(&mut self, addrs: &[V6Addr], _: &[PeerMeta]) {
            self.v6.extend_from_slice(addrs);
        }
    }

    fn announce(ih: u8, left: u64, event: Event) -> Announce {
        Announce {
            info_hash: [ih; 20],
            peer_id: [1; 20],
            downloaded: 0,
            left,
            uploaded: 0,
            event,
            key: 0,
            numwant: None,
            port: 6881,
            url_data: Default::default(),
            passkey: None,
        }
    }

    fn client(ip: &str) -> Client {
        Client {
            ip: ip.parse().unwrap(),
            port: 6881,
        }
    }

    fn run(swarms: &mut Swarms, a: &Announce, ip: &str, expires: u32) -> (Counts, Collect) {
        let mut sink = Collect {
            v4: vec![],
            v6: vec![],
        };
        let mut rng = fastrand::Rng::with_seed(1);
        let want = Want { v4: 50, v6: 50 };
        let counts = swarms.announce(a, client(ip), expires, want, &mut rng, &mut sink);
        (counts, sink)
    }

    #[test]
    fn totals_follow_announces_stops_and_expiry() {
        let mut s = Swarms::default();
        run(&mut s, &announce(1, 5, Event::Started), "10.0.0.1", 100);
        run(&mut s, &announce(1, 0, Event::Started), "10.0.0.2", 100);
        run(&mut s, &announce(2, 5, Event::Started), "::1", 200);
        let t = s.totals();
        assert_eq!(t.torrents, 2);
        assert_eq!(
            t.v4,
            PeerCount {
                seeders: 1,
                leechers: 1
            }
        );
        assert_eq!(
            t.v6,
            PeerCount {
                seeders: 0,
                leechers: 1
            }
        );
        // A leecher becoming a seeder moves between the two.
        run(&mut s, &announce(1, 0, Event::Completed), "10.0.0.1", 100);
        assert_eq!(
            s.totals().v4,
            PeerCount {
                seeders: 2,
                leechers: 0
            }
        );
        run(&mut s, &announce(1, 0, Event::Stopped), "10.0.0.2", 100);
        assert_eq!(
            s.totals().v4,
            PeerCount {
                seeders: 1,
                leechers: 0
            }
        );
        s.expire_slice(150, 10);
        let t = s.totals();
        assert_eq!(
            (t.torrents, t.v4, t.v6.leechers),
            (1, PeerCount::default(), 1)
        );
        s.expire_slice(250, 10);
        assert_eq!(s.totals(), SwarmTotals::default());
    }

    #[test]
    fn counts_include_announcer_and_peers_exclude_it() {
        let mut s = Swarms::default();
        let (c, peers) = run(&mut s, &announce(1, 10, Event::Started), "10.0.0.1", 100);
        assert_eq!((c.seeders, c.leechers), (0, 1));
        assert!(peers.v4.is_empty());
        let (c, peers) = run(&mut s, &announce(1, 10, Event::Started), "10.0.0.2", 100);
        assert_eq!((c.seeders, c.leechers), (0, 2));
        assert_eq!(peers.v4, vec![wire_v4("10.0.0.1".parse().unwrap(), 6881)]);
    }

    #[test]
    fn seeders_get_only_leechers_and_both_families_are_served() {
        let mut s = Swarms::default();
        run(&mut s, &announce(1, 0, Event::None), "10.0.0.1", 100);
        run(&mut s, &announce(1, 5, Event::None), "10.0.0.2", 100);
        run(&mut s, &announce(1, 5, Event::None), "2001:db8::1", 100);
        let (c, peers) = run(&mut s, &announce(1, 0, Event::None), "10.0.0.3", 100);
        assert_eq!((c.seeders, c.leechers), (2, 2));
        assert_eq!(peers.v4, vec![wire_v4("10.0.0.2".parse().unwrap(), 6881)]);
        assert_eq!(peers.v6.len(), 1);
        let (_, peers) = run(&mut s, &announce(1, 5, Event::None), "2001:db8::1", 100);
        assert_eq!(peers.v4.len(), 3);
        assert!(peers.v6.is_empty());
    }

    #[test]
    fn stopped_removes_and_gets_nothing() {
        let mut s = Swarms::default();
        run(&mut s, &announce(1, 5, Event::Started), "10.0.0.1", 100);
        run(&mut s, &announce(1, 5, Event::Started), "10.0.0.2", 100);
        let (c, peers) = run(&mut s, &announce(1, 5, Event::Stopped), "10.0.0.2", 100);
        assert_eq!((c.seeders, c.leechers), (0, 1));
        assert!(peers.v4.is_empty());
        run(&mut s, &announce(1, 5, Event::Stopped), "10.0.0.1", 100);
        assert_eq!(s.torrent_count(), 0);
        // A stop for an unknown torrent creates nothing.
        run(&mut s, &announce(9, 5, Event::Stopped), "10.0.0.1", 100);
        assert_eq!(s.torrent_count(), 0);
    }

    #[test]
    fn completed_is_counted_once_per_transition() {
        let mut s = Swarms::default();
        run(&mut s, &announce(1, 5, Event::Started), "10.0.0.1", 100);
        run(&mut s, &announce(1, 0, Event::Completed), "10.0.0.1", 100);
        run(&mut s, &announce(1, 0, Event::Completed), "10.0.0.1", 100);
        let c = s.counts(&[1; 20]);
        assert_eq!((c.seeders, c.leechers, c.downloaded), (1, 0, 1));
        // `completed` with bytes left is no completion.
        run(&mut s, &announce(1, 5, Event::Started), "10.0.0.2", 100);
        for _ in 0..3 {
            run(&mut s, &announce(1, 5, Event::Completed), "10.0.0.2", 100);
        }
        assert_eq!(s.counts(&[1; 20]).downloaded, 1);
        // The torrent leaves with its last peer.
        run(&mut s, &announce(1, 0, Event::Stopped), "10.0.0.1", 100);
        run(&mut s, &announce(1, 0, Event::Stopped), "10.0.0.2", 100);
        assert_eq!(s.torrent_count(), 0);
    }

    #[test]
    fn expiry_drops_stale_peers_and_empty_torrents_in_slices() {
        let mut s = Swarms::default();
        for ih in 0..10u8 {
            run(&mut s, &announce(ih, 5, Event::None), "10.0.0.1", 50);
            if ih % 2 == 0 {
                run(&mut s, &announce(ih, 5, Event::None), "2001:db8::1", 500);
            }
        }
        let first = s.expire_slice(100, 4);
        assert_eq!(first.visited, 4);
        let mut total = first;
        while s.sweep_cursor != 0 && s.sweep_cursor < s.torrent_count() {
            let e = s.expire_slice(100, 4);
            total.peers += e.peers;
            total.torrents += e.torrents;
        }
        assert_eq!(total.peers, 10);
        assert_eq!(total.torrents, 5);
        assert_eq!(s.torrent_count(), 5);
        s.expire_slice(1000, 100);
        assert_eq!(s.torrent_count(), 0);
    }
}
