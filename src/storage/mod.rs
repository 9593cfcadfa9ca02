//! The storage seam: how the tracker core keeps and reads swarms. The core
//! decides (events, the seeder rule, how many peers); a store only records
//! and samples. `memory` is the default, one per shard; a durable, capped
//! or shared store implements or wraps [`PeerStore`] (docs/architecture.md).
//!
//! The core is generic over the store, so the default costs no dynamic
//! dispatch: every call is monomorphised and inlined.

pub mod memory;
pub mod replica;
pub mod snapshot;

use crate::bittorrent::{Client, Counts, InfoHash, PeerId};

pub type V4Addr = [u8; 6];
pub type V6Addr = [u8; 18];

pub use memory::peer_list::PeerMeta;

/// Receives the sampled peers in wire format, one at a time or in runs
/// (when all or most of a list go out), with their peer ids (for
/// dictionary responses): `peer_ids[i]` is the id of `addrs[i]`.
pub trait PeerSink {
    fn v4(&mut self, addrs: &[V4Addr], peer_ids: &[PeerId]);
    fn v6(&mut self, addrs: &[V6Addr], peer_ids: &[PeerId]);
}

/// One announcer's new state, as the core decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerUpdate {
    pub info_hash: InfoHash,
    /// The stored address: the client's IP and announced port.
    pub peer: Client,
    /// The same peer's address in the other family (BEP 7 dual stack):
    /// stored too, handed out in that family's list, counted once.
    pub twin: Option<Client>,
    pub peer_id: PeerId,
    pub seeder: bool,
    /// BEP 21: a partial seed, counted with leechers but not downloading.
    pub paused: bool,
    /// The client said `completed`: a completion if it was a leecher.
    pub completed: bool,
    /// Store clock second after which the peer is gone.
    pub expires: u32,
}

/// Which peers the answer wants, as the core decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Want {
    /// The most peers, both families together.
    pub total: usize,
    /// Whether the other address family may fill what the announcer's own
    /// left of `total` (HTTP's `peers6`); UDP answers carry one family.
    pub other_family: bool,
    /// Seeders are handed leechers only.
    pub leechers_only: bool,
    /// With `tracker.prefer_subnet`: the prefix length (bits) of the
    /// announcer's family; peers sharing that prefix with it come first.
    pub near: Option<u8>,
}

/// A stored peer as `export` hands it out and `import` takes it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredPeer {
    pub peer: Client,
    pub peer_id: PeerId,
    pub seeder: bool,
    pub paused: bool,
    pub expires: u32,
}

/// Seeders and leechers of one peer list, or a sum of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCount {
    pub seeders: usize,
    pub leechers: usize,
}

/// What a store holds, for the gauges, and what its caps turned away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwarmTotals {
    pub torrents: usize,
    pub v4: PeerCount,
    pub v6: PeerCount,
    /// Torrents evicted to make room under `tracker.max_torrents`.
    pub evicted_torrents: u64,
    /// New peers answered but not stored under
    /// `tracker.max_peers_per_torrent`.
    pub unstored_peers: u64,
}

/// How much a store may hold (0: no cap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_torrents: usize,
    pub max_peers_per_torrent: usize,
}

impl Limits {
    /// One shard's share of an instance's caps.
    pub fn per_shard(max_torrents: usize, max_peers_per_torrent: usize, shards: usize) -> Self {
        Self {
            max_torrents: max_torrents.div_ceil(shards.max(1)),
            // A torrent lives on one shard: its cap is not divided.
            max_peers_per_torrent,
        }
    }
}

/// What one expiry slice did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    pub peers: usize,
    pub torrents: usize,
    pub visited: usize,
}

/// A shard's swarms. Called by the tracker core only, on the shard's own
/// thread: no locks, and nothing here may block (a store that talks to a
/// server does so from a service thread and keeps a local view).
pub trait PeerStore {
    /// Records `update` (creating the torrent if new), then samples up to
    /// `want` other peers into `sink`. Returns the counts after the update
    /// (they include the announcer).
    fn put<S: PeerSink>(
        &mut self,
        update: &PeerUpdate,
        want: Want,
        rng: &mut fastrand::Rng,
        sink: &mut S,
    ) -> Counts;

    /// Removes a peer (it said `stopped`); returns the counts after. An
    /// unknown torrent stays unknown.
    fn remove(&mut self, info_hash: &InfoHash, peer: Client) -> Counts;

    /// Scrape counts of one torrent (zeros when unknown), with `downloaders`.
    fn scrape(&self, info_hash: &InfoHash) -> Counts;

    /// Expires peers silent past `now` in up to `budget` torrents,
    /// continuing where the last slice stopped; drops emptied torrents.
    fn expire(&mut self, now: u32, budget: usize) -> Expired;

    /// What the store holds, for the gauges (kept current, not counted).
    fn totals(&self) -> SwarmTotals;

    /// The scrape counts of up to `budget` torrents from `cursor` on
    /// (start at 0), as `export` walks them (the same cursor and caveats):
    /// a full scrape's slice. Returns where to go on, or `None`.
    fn scrape_slice(
        &self,
        cursor: usize,
        budget: usize,
        visit: &mut dyn FnMut(&InfoHash, Counts),
    ) -> Option<usize> {
        self.export(cursor, budget, &mut |info_hash, _, _| {
            visit(info_hash, self.scrape(info_hash))
        })
    }

    /// Hands out up to `budget` torrents from `cursor` on (start at 0): each
    /// one's infohash, completion count and peers, for snapshots. Returns
    /// where to go on, or `None` after the last. Between calls the store may
    /// change: a torrent can then be missed or seen twice (importing is
    /// idempotent).
    fn export(
        &self,
        cursor: usize,
        budget: usize,
        visit: &mut dyn FnMut(&InfoHash, u32, &[StoredPeer]),
    ) -> Option<usize>;

    /// Takes a torrent back as `export` gave it (peers with their expiry
    /// times, already rebased to this store's clock), merging with what is
    /// stored.
    fn import(&mut self, info_hash: &InfoHash, downloaded: u32, peers: &[StoredPeer]);
}
