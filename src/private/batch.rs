//! Accounting waiting to be written: what announces changed, merged by
//! row so that a batch is bounded by the rows it touches, not by the
//! announces. Shards fill one each and hand it to the database thread,
//! which merges them, writes them (one statement per table) and, when it
//! cannot, keeps them or journals them to disk. Merging is the same
//! operation everywhere: sums for deltas, the latest state for states.

use super::Map;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Upload and download credited to a user (after freeleech and
/// multipliers): added to `users_main.Uploaded` / `Downloaded`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub uploaded: u64,
    pub downloaded: u64,
}

/// One peer's row in `xbt_files_users`: its latest state (absolute, as
/// the client reported it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRow {
    pub active: bool,
    pub uploaded: u64,
    pub downloaded: u64,
    pub remaining: u64,
    /// Bytes per second since the peer's previous announce.
    pub upspeed: u64,
    pub downspeed: u64,
    /// Seconds since the peer's first announce.
    pub timespent: u64,
    /// Announces so far.
    pub announced: u32,
    /// `None` for protected users.
    pub ip: Option<IpAddr>,
    /// Unix seconds of the last announce.
    pub mtime: u64,
}

/// A `completed` event: a row of `xbt_snatched`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snatch {
    pub user_id: u32,
    pub torrent_id: u32,
    pub tstamp: u64,
    pub ip: Option<IpAddr>,
}

/// A torrent's figures for `torrents`: seeders and leechers as of the
/// latest change, completions since the last write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TorrentRow {
    pub seeders: u32,
    pub leechers: u32,
    pub snatched: u32,
}

/// (user id, torrent id, peer id): one client of one user on one torrent.
pub type PeerKey = (u32, u32, [u8; 20]);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// By user id.
    pub users: Map<u32, Transfer>,
    /// Download a freeleech token waived, by (user id, torrent id):
    /// added to `users_freeleeches.Downloaded`.
    pub tokens: Map<(u32, u32), u64>,
    pub peers: Map<PeerKey, PeerRow>,
    pub snatches: Vec<Snatch>,
    /// By torrent id.
    pub torrents: Map<u32, TorrentRow>,
}

impl Batch {
    /// Rows it would write.
    pub fn rows(&self) -> usize {
        self.users.len()
            + self.tokens.len()
            + self.peers.len()
            + self.snatches.len()
            + self.torrents.len()
    }

    /// An empty batch with room for as many rows as `self` holds: the
    /// next interval's batch grows without rehashing as it fills.
    pub fn empty_like(&self) -> Batch {
        fn map<K, V>(m: &Map<K, V>) -> Map<K, V> {
            Map::with_capacity_and_hasher(m.len(), Default::default())
        }
        Batch {
            users: map(&self.users),
            tokens: map(&self.tokens),
            peers: map(&self.peers),
            snatches: Vec::new(),
            torrents: map(&self.torrents),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }

    /// Adds `later` to this batch: deltas summed, states replaced by the
    /// later one.
    pub fn merge(&mut self, later: Batch) {
        for (id, t) in later.users {
            let e = self.users.entry(id).or_default();
            e.uploaded = e.uploaded.saturating_add(t.uploaded);
            e.downloaded = e.downloaded.saturating_add(t.downloaded);
        }
        for (key, waived) in later.tokens {
            let e = self.tokens.entry(key).or_default();
            *e = e.saturating_add(waived);
        }
        self.peers.extend(later.peers);
        self.snatches.extend(later.snatches);
        for (id, t) in later.torrents {
            let e = self.torrents.entry(id).or_default();
            e.seeders = t.seeders;
            e.leechers = t.leechers;
            e.snatched = e.snatched.saturating_add(t.snatched);
        }
    }

    /// The batch in the journal's encoding.
    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Batch, String> {
        bincode::deserialize(bytes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sums_deltas_and_keeps_the_latest_state() {
        let mut a = Batch::default();
        a.users.insert(
            1,
            Transfer {
                uploaded: 10,
                downloaded: 5,
            },
        );
        a.torrents.insert(
            9,
            TorrentRow {
                seeders: 1,
                leechers: 2,
                snatched: 1,
            },
        );
        a.tokens.insert((1, 9), 7);
        let mut b = Batch::default();
        b.users.insert(
            1,
            Transfer {
                uploaded: 1,
                downloaded: 1,
            },
        );
        b.torrents.insert(
            9,
            TorrentRow {
                seeders: 3,
                leechers: 0,
                snatched: 2,
            },
        );
        b.tokens.insert((1, 9), 3);
        b.snatches.push(Snatch {
            user_id: 1,
            torrent_id: 9,
            tstamp: 5,
            ip: None,
        });
        a.merge(b);
        assert_eq!(
            a.users[&1],
            Transfer {
                uploaded: 11,
                downloaded: 6
            }
        );
        assert_eq!(
            a.torrents[&9],
            TorrentRow {
                seeders: 3,
                leechers: 0,
                snatched: 3
            }
        );
        assert_eq!(a.tokens[&(1, 9)], 10);
        assert_eq!(a.rows(), 4);
        assert_eq!(Batch::decode(&a.encode()).unwrap(), a);
        assert!(Batch::decode(b"\xff\xff").is_err());
    }
}
