//! The shared vocabulary of every layer (Chihaya's `bittorrent/`): what a
//! request and its answer are, whichever protocol carried them. The bottom
//! module: it imports nothing of Shoal's.

use smallvec::SmallVec;
use std::net::IpAddr;

pub type InfoHash = [u8; 20];
pub type PeerId = [u8; 20];

/// BEP 41 URL data (UDP): the path and query the client's tracker URL
/// carries. Inline up to the size of a typical `/<32-char passkey>/announce`,
/// so no allocation then. HTTP announces leave it empty (their route gives
/// the passkey).
pub type UrlData = SmallVec<[u8; 48]>;

/// A private tracker's passkey, captured from a `:passkey` route segment.
pub type Passkey = SmallVec<[u8; 40]>;

/// Which protocol carried a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Udp,
    Http,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Event {
    #[default]
    None,
    Started,
    Completed,
    Stopped,
    /// BEP 21: the client keeps seeding what it has but downloads no more.
    Paused,
}

/// `Default` is an all-zero regular announce (for tests and benches).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub downloaded: u64,
    pub left: u64,
    pub uploaded: u64,
    pub event: Event,
    pub key: u32,
    /// `None` when the client left it to the tracker (UDP: -1).
    pub numwant: Option<u32>,
    pub port: u16,
    pub url_data: UrlData,
    /// Set by HTTP routes with a `:passkey` segment, and by UDP URL data
    /// (BEP 41) whose path matches one.
    pub passkey: Option<Passkey>,
    /// The HTTP query string, kept only when a hook reads parameters
    /// beyond the standard ones (`middleware::params`).
    pub query: Option<Box<[u8]>>,
}

impl Announce {
    pub fn is_seeder(&self) -> bool {
        self.left == 0
    }
}

/// Who is asking: the address the swarm stores and answers are sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub port: u16,
}

/// A swarm's figures, as announces and scrapes report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub seeders: u32,
    pub leechers: u32,
    pub downloaded: u32,
    /// BEP 21: leechers that are not paused. Counted for scrapes only;
    /// announces leave it 0.
    pub downloaders: u32,
}
