//! BEP 7 dual-stacked peers: one peer with an IPv4 and an IPv6 address.
//! Each address sits in its family's list (so it is sampled into `peers`
//! and `peers6` like any other), and the pair is remembered here so the
//! peer is counted once. Pairs are kept per infohash beside the torrents,
//! not in them: they are rare, and a torrent pays nothing for them.

use super::peer_list::{AddrHasher, PeerList};
use crate::bittorrent::InfoHash;
use crate::storage::{V4Addr, V6Addr};
use ahash::HashMap;
use smallvec::SmallVec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pair {
    v4: V4Addr,
    v6: V6Addr,
}

#[derive(Default)]
pub struct Twins {
    by_torrent: HashMap<InfoHash, SmallVec<[Pair; 1]>>,
}

impl Twins {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.by_torrent.is_empty()
    }

    /// Remembers that `v4` and `v6` are one peer of `info_hash` (replacing
    /// any pair that had either address).
    pub fn record(&mut self, info_hash: &InfoHash, v4: V4Addr, v6: V6Addr) {
        let pairs = self.by_torrent.entry(*info_hash).or_default();
        pairs.retain(|p| p.v4 != v4 && p.v6 != v6);
        pairs.push(Pair { v4, v6 });
    }

    /// Forgets the pairs of a torrent that left the store.
    pub fn forget_torrent(&mut self, info_hash: &InfoHash) {
        if !self.is_empty() {
            self.by_torrent.remove(info_hash);
        }
    }

    /// The seeders and leechers a torrent's lists count twice: the pairs
    /// whose two addresses are both still stored (a seeder if its IPv4
    /// entry is).
    pub fn doubles(
        &self,
        info_hash: &InfoHash,
        v4: &PeerList<V4Addr>,
        v6: Option<&PeerList<V6Addr>>,
        h: &AddrHasher,
    ) -> (u32, u32) {
        let Some(pairs) = self.by_torrent.get(info_hash) else {
            return (0, 0);
        };
        let (mut seeders, mut leechers) = (0, 0);
        for p in pairs {
            if let Some(at) = stored(p, v4, v6, h) {
                if at >= v4.leechers() {
                    seeders += 1;
                } else {
                    leechers += 1;
                }
            }
        }
        (seeders, leechers)
    }

    /// Drops the pairs of a torrent that lost an address (expired, stopped).
    pub fn prune(
        &mut self,
        info_hash: &InfoHash,
        v4: &PeerList<V4Addr>,
        v6: Option<&PeerList<V6Addr>>,
        h: &AddrHasher,
    ) {
        let Some(pairs) = self.by_torrent.get_mut(info_hash) else {
            return;
        };
        pairs.retain(|p| stored(p, v4, v6, h).is_some());
        if pairs.is_empty() {
            self.by_torrent.remove(info_hash);
        }
    }
}

/// Where the pair's IPv4 entry is, if both its addresses are stored.
fn stored(
    p: &Pair,
    v4: &PeerList<V4Addr>,
    v6: Option<&PeerList<V6Addr>>,
    h: &AddrHasher,
) -> Option<usize> {
    let at = v4.find(&p.v4, h)?;
    v6?.find(&p.v6, h)?;
    Some(at)
}
