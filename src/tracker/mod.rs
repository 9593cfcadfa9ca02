//! The tracker core, without I/O: every decision of an announce or a
//! scrape, made once for UDP and HTTP alike. The shard parses a request,
//! calls the core, encodes what it returns and sends it; the core calls the
//! hooks and the store. Nothing here touches a socket, a clock or another
//! shard, so all of it is unit-tested in `tests.rs`.
//!
//! Decisions made here:
//! - **Hooks first.** Pre-hooks see the request and may refuse it or
//!   change it (the interval, the address); the infohash stays fixed, since
//!   it chose the shard. Post-hooks run after the answer left
//!   (`run_after_hooks`).
//! - **Events.** `stopped` removes the peer and hands out nothing;
//!   anything else stores it (BEP 21 `paused` as a partial seed). A seeder
//!   (`left` = 0) gets leechers only; the announcer is never in its own list.
//!   `completed` counts once per leecher-to-seeder step.
//! - **`numwant`** is the total over both address families: the client's
//!   value, or `tracker.default_numwant` when it left it to us, at most
//!   `tracker.max_numwant`, and at most what the answer has room for. The
//!   announcer's own family is sampled first; an HTTP answer fills what is
//!   left with the other family (`peers6` for an IPv4 client and back, as
//!   BEP 7 allows); a UDP answer carries its packet's family only (BEP 15)
//!   and fits one unfragmented datagram. libtorrent sends `numwant` as the
//!   total it wants, so no answer exceeds it.
//! - **Address.** The swarm stores the request's source address, or with
//!   `http.allow_ip_spoofing` the one the client claimed (BEP 7 `ip=`);
//!   HTTP answers report it as `external ip` (BEP 24).
//! - **Subnet preference** (`tracker.prefer_subnet`, off by default): peers
//!   sharing the announcer's IPv4 /n or IPv6 /n prefix come first, then a
//!   random choice of the rest.
//! - **Dual-stacked peers** (BEP 7, `http.dual_stack`): an IPv4 client that
//!   names its IPv6 address (or the other way round) is one peer with both
//!   addresses: it is handed out in both lists and counted once.
//! - **Intervals** come from the config and may be changed by a hook.

#[cfg(test)]
mod tests;

use crate::bittorrent::PeerId;
use crate::bittorrent::{Announce, Client, Counts, Event, InfoHash, Protocol};
use crate::config::{PreferSubnet, TrackerConfig};
use crate::middleware::{AnnounceContext, Chain, Refusal, RequestContext, ScrapeContext};
use crate::private::Gate;
use crate::protocol::http::client_ip::normalize;
use crate::protocol::udp;
use crate::storage::replica::Change;
use crate::storage::{
    Expired, PeerSink, PeerStore, PeerUpdate, StoredPeer, SwarmTotals, V4Addr, V6Addr, Want,
};
use std::net::IpAddr;

/// The tracker's answer settings in wire units, from the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Seconds.
    pub interval: u32,
    pub min_interval: u32,
    pub default_numwant: u32,
    pub max_numwant: u32,
    pub peer_lifetime: u32,
    pub max_scrape: usize,
    /// BEP 7: believe the address a client claims.
    pub allow_ip_spoofing: bool,
    /// BEP 7: store a dual-stacked client's other-family address with it.
    pub dual_stack: bool,
    /// Peers in the announcer's subnet first.
    pub prefer_subnet: Option<PreferSubnet>,
}

impl Settings {
    pub fn new(tracker: &TrackerConfig, allow_ip_spoofing: bool, dual_stack: bool) -> Self {
        Self {
            interval: tracker.announce_interval.as_secs() as u32,
            min_interval: tracker.min_announce_interval.as_secs() as u32,
            default_numwant: tracker.default_numwant,
            max_numwant: tracker.max_numwant,
            peer_lifetime: tracker.peer_lifetime.as_secs() as u32,
            max_scrape: tracker.max_scrape_infohashes,
            allow_ip_spoofing,
            dual_stack,
            prefer_subnet: tracker.prefer_subnet,
        }
    }
}

/// What an answer can carry, which depends on the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Room {
    /// The most peers of the announcer's own family.
    pub own_family: usize,
    /// Whether peers of the other family fit (HTTP's second list).
    pub other_family: bool,
}

impl Room {
    /// An HTTP answer: both lists, any length.
    pub const HTTP: Room = Room {
        own_family: usize::MAX,
        other_family: true,
    };

    /// A UDP answer: its packet's family, within one unfragmented datagram.
    pub const fn udp(ipv6: bool) -> Room {
        Room {
            own_family: udp::max_peers(ipv6),
            other_family: false,
        }
    }
}

/// Where an announce came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub protocol: Protocol,
    /// The address the request came from (after trusted proxies).
    pub source: IpAddr,
    /// The address the client claims (HTTP `ip=`), believed only with
    /// `http.allow_ip_spoofing`.
    pub claimed: Option<IpAddr>,
    /// BEP 7: the addresses a dual-stacked client names per family (HTTP
    /// `ipv4=` / `ipv6=`); the one of the other family than the stored
    /// address is believed with `http.dual_stack`.
    pub dual: Dual,
}

/// A client's own word on its address in each family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dual {
    pub ipv4: Option<std::net::Ipv4Addr>,
    pub ipv6: Option<std::net::Ipv6Addr>,
}

/// What to tell an announcer: the protocol encodes it, with the peers the
/// core wrote into the sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnnounceAnswer {
    /// After the update: they include the announcer.
    pub counts: Counts,
    pub interval: u32,
    pub min_interval: u32,
    /// The announcer as stored (BEP 24 `external ip`).
    pub client: Client,
}

/// Why a request gets an error answer instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The request itself is wrong (HTTP: 400).
    BadRequest(&'static str),
    /// A hook said no (HTTP: a failure reason with 200, as Chihaya does).
    Refused(Refusal),
}

impl Rejection {
    pub fn reason(&self) -> &str {
        match self {
            Rejection::BadRequest(reason) => reason,
            Rejection::Refused(refusal) => &refusal.reason,
        }
    }
}

/// A post-hook's view of an announce whose answer is on its way.
pub struct AfterAnnounce {
    pub announce: Announce,
    pub client: Client,
    pub counts: Counts,
}

/// A scrape before its counts are read: who asks, for what.
pub struct ScrapeRequest<'a> {
    pub protocol: Protocol,
    pub client: Client,
    pub info_hashes: &'a [InfoHash],
    /// From an HTTP route with a `:passkey` segment.
    pub passkey: Option<&'a [u8]>,
}

/// One shard's tracker: its settings, its store, its hooks.
pub struct Tracker<S> {
    shard: usize,
    settings: Settings,
    store: S,
    hooks: Chain,
    rng: fastrand::Rng,
    /// With shared swarms: the changes announces made since the shard last
    /// took them (expiry on the store clock).
    journal: Option<Vec<Change>>,
    /// Private mode: passkeys, registered torrents, accounting.
    private: Option<Gate>,
}

/// Takes no peers: remote changes are stored, never answered.
struct NoPeers;

impl PeerSink for NoPeers {
    fn v4(&mut self, _: &[V4Addr], _: &[PeerId]) {}
    fn v6(&mut self, _: &[V6Addr], _: &[PeerId]) {}
}

/// Torrents expired per tick at least; more when the store holds many, so
/// a full sweep takes about `SWEEP_TICKS` housekeeping ticks.
const MIN_SWEEP_SLICE: usize = 256;
const SWEEP_TICKS: usize = 600;

impl<S: PeerStore> Tracker<S> {
    /// Starts the hooks on this shard.
    pub fn new(
        shard: usize,
        settings: Settings,
        store: S,
        mut hooks: Chain,
        rng: fastrand::Rng,
    ) -> Self {
        hooks.start(shard);
        Self {
            shard,
            settings,
            store,
            hooks,
            rng,
            journal: None,
            private: None,
        }
    }

    /// Private mode: every announce and scrape passes the gate first.
    pub fn set_private(&mut self, gate: Gate) {
        self.private = Some(gate);
    }

    /// Private mode's tick (Unix and store-clock seconds): a new catalog,
    /// silent clients dropped, accounting handed to the database thread.
    pub fn private_tick(&mut self, unix: u32, now: u32) {
        if let Some(gate) = &mut self.private {
            gate.tick(unix, now);
        }
    }

    /// Starts keeping a journal of the changes announces make (shared
    /// swarms).
    pub fn keep_journal(&mut self) {
        self.journal.get_or_insert_with(Vec::new);
    }

    /// The changes since the last call.
    pub fn take_journal(&mut self) -> Vec<Change> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Gives back changes that could not be handed on (kept first).
    pub fn return_journal(&mut self, mut changes: Vec<Change>) {
        if let Some(journal) = &mut self.journal {
            changes.append(journal);
            *journal = changes;
        }
    }

    /// Applies another instance's change (expiry on this store's clock) as
    /// its announce would have been applied here: the same seeder and
    /// completion rules, no answer, no hooks, no journal.
    pub fn apply_remote(&mut self, change: &Change) {
        let u = &change.update;
        if change.stopped {
            self.store.remove(&u.info_hash, u.peer);
            if let Some(twin) = u.twin {
                self.store.remove(&u.info_hash, twin);
            }
        } else {
            let want = Want {
                total: 0,
                other_family: false,
                leechers_only: false,
                near: None,
            };
            self.store.put(u, want, &mut self.rng, &mut NoPeers);
        }
    }

    /// Raises a torrent's completion count to the cluster's `downloaded`
    /// (torrents this store does not hold are left alone).
    pub fn raise_downloaded(&mut self, info_hash: &InfoHash, downloaded: u32) {
        let held = self.store.scrape(info_hash);
        if held.seeders + held.leechers > 0 && held.downloaded < downloaded {
            self.store.import(info_hash, downloaded, &[]);
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Answers an announce at store time `now` (seconds): refused, or
    /// stored with peers written to `sink`. Hooks may change `announce` (it
    /// is borrowed, not moved: it is large, and this is the hot path). When a
    /// post-hook wants it, a copy is kept in `after` for `run_after_hooks`.
    pub fn announce(
        &mut self,
        origin: Origin,
        announce: &mut Announce,
        room: Room,
        now: u32,
        sink: &mut impl PeerSink,
        after: &mut Vec<AfterAnnounce>,
    ) -> Result<AnnounceAnswer, Rejection> {
        let s = &self.settings;
        let ip = match origin.claimed {
            Some(ip) if s.allow_ip_spoofing => normalize(ip),
            _ => origin.source,
        };
        let info_hash = announce.info_hash;
        if let Some(gate) = &mut self.private {
            gate.announce(announce, ip, now)
                .map_err(|reason| Rejection::Refused(Refusal::new(reason)))?;
        }
        let (mut interval, mut min_interval, mut client) = (
            s.interval,
            s.min_interval,
            Client {
                ip,
                port: announce.port,
            },
        );
        if self.hooks.has_pre_hooks() {
            let mut ctx = AnnounceContext {
                protocol: origin.protocol,
                client,
                shard: self.shard,
                announce: &mut *announce,
                interval,
                min_interval,
                now,
            };
            self.hooks
                .before_announce(&mut ctx)
                .map_err(Rejection::Refused)?;
            let ip = ctx.client.ip;
            (interval, min_interval) = (ctx.interval, ctx.min_interval);
            announce.info_hash = info_hash;
            client = Client {
                ip,
                port: announce.port,
            };
        }
        // The same peer's address in the other family, if it named one.
        let twin = match client.ip {
            _ if !s.dual_stack => None,
            IpAddr::V4(_) => origin.dual.ipv6.map(IpAddr::V6),
            IpAddr::V6(_) => origin.dual.ipv4.map(IpAddr::V4),
        }
        .map(|ip| Client {
            ip,
            port: announce.port,
        });
        let stopped = announce.event == Event::Stopped;
        let update = PeerUpdate {
            info_hash,
            peer: client,
            twin,
            peer_id: announce.peer_id,
            seeder: announce.is_seeder(),
            paused: announce.event == Event::Paused,
            completed: announce.event == Event::Completed,
            expires: now.saturating_add(s.peer_lifetime),
        };
        if let Some(journal) = &mut self.journal {
            journal.push(Change { update, stopped });
        }
        let counts = if stopped {
            let counts = self.store.remove(&info_hash, client);
            match twin {
                Some(twin) => self.store.remove(&info_hash, twin),
                None => counts,
            }
        } else {
            let requested = announce.numwant.unwrap_or(s.default_numwant);
            let want = Want {
                total: (requested.min(s.max_numwant) as usize).min(room.own_family),
                other_family: room.other_family,
                leechers_only: announce.is_seeder(),
                near: s.prefer_subnet.map(|p| {
                    if client.ip.is_ipv4() {
                        p.ipv4_prefix
                    } else {
                        p.ipv6_prefix
                    }
                }),
            };
            self.store.put(&update, want, &mut self.rng, sink)
        };
        if self.hooks.wants_after_announce() {
            after.push(AfterAnnounce {
                announce: announce.clone(),
                client,
                counts,
            });
        }
        Ok(AnnounceAnswer {
            counts,
            interval,
            min_interval,
            client,
        })
    }

    /// Whether any hook checks requests as they arrive (`check_request`);
    /// when none does, the request path skips the call.
    #[inline]
    pub fn checks_requests(&self) -> bool {
        self.hooks.checks_requests()
    }

    /// Whether HTTP announces should keep their query string for hooks.
    #[inline]
    pub fn wants_params(&self) -> bool {
        self.hooks.wants_params()
    }

    /// A request's first check, on the shard it arrived at: the hooks that
    /// judge the sender alone (bans, rate limits).
    pub fn check_request(&mut self, request: &RequestContext) -> Result<(), Refusal> {
        self.hooks.before_request(request)
    }

    /// Whether a scrape may be answered: it names 1..=`max_scrape`
    /// infohashes and the hooks let it through.
    pub fn check_scrape(&mut self, request: &ScrapeRequest) -> Result<(), Rejection> {
        if request.info_hashes.is_empty() {
            return Err(Rejection::BadRequest(
                "name at least one info_hash (full scrapes are not served)",
            ));
        }
        if request.info_hashes.len() > self.settings.max_scrape {
            return Err(Rejection::BadRequest("too many info hashes in one scrape"));
        }
        if let Some(gate) = &self.private {
            gate.scrape(request.passkey)
                .map_err(|reason| Rejection::Refused(Refusal::new(reason)))?;
        }
        let ctx = self.scrape_context(request);
        self.hooks.before_scrape(&ctx).map_err(Rejection::Refused)
    }

    /// Scrape counts of one torrent this shard owns.
    #[inline]
    pub fn scrape(&self, info_hash: &InfoHash) -> Counts {
        self.store.scrape(info_hash)
    }

    /// Whether any post-hook wants scrapes (`after_scrape`).
    #[inline]
    pub fn wants_after_scrape(&self) -> bool {
        self.hooks.wants_after_scrape()
    }

    /// Post-hooks of a scrape whose answer just left, with its counts.
    pub fn after_scrape(&mut self, request: &ScrapeRequest, counts: &[Counts]) {
        let ctx = self.scrape_context(request);
        self.hooks.after_scrape(&ctx, counts);
    }

    fn scrape_context<'a>(&self, request: &ScrapeRequest<'a>) -> ScrapeContext<'a> {
        ScrapeContext {
            protocol: request.protocol,
            client: request.client,
            shard: self.shard,
            info_hashes: request.info_hashes,
            passkey: request.passkey,
        }
    }

    /// Post-hooks of the announces whose answers just left.
    pub fn run_after_hooks(&mut self, after: &mut Vec<AfterAnnounce>) {
        for a in after.drain(..) {
            self.hooks.after_announce(&a.announce, a.client, a.counts);
        }
    }

    /// One housekeeping tick's slice of expiry at store time `now`.
    pub fn expire(&mut self, now: u32) -> Expired {
        let budget = (self.store.totals().torrents / SWEEP_TICKS).max(MIN_SWEEP_SLICE);
        self.store.expire(now, budget)
    }

    pub fn totals(&self) -> SwarmTotals {
        self.store.totals()
    }

    /// Hands out a slice of the swarms (see `PeerStore::export`).
    pub fn export(
        &self,
        cursor: usize,
        budget: usize,
        visit: &mut dyn FnMut(&InfoHash, u32, &[StoredPeer]),
    ) -> Option<usize> {
        self.store.export(cursor, budget, visit)
    }

    /// A full scrape's slice of this shard's torrents (`PeerStore::scrape_slice`).
    pub fn scrape_slice(
        &self,
        cursor: usize,
        budget: usize,
        visit: &mut dyn FnMut(&InfoHash, Counts),
    ) -> Option<usize> {
        self.store.scrape_slice(cursor, budget, visit)
    }

    /// Takes a torrent back from a snapshot, its peers' expiry already on
    /// this store's clock.
    pub fn import(&mut self, info_hash: &InfoHash, downloaded: u32, peers: &[StoredPeer]) {
        self.store.import(info_hash, downloaded, peers);
    }

    /// Takes a reloaded configuration's chain for this shard.
    pub fn reload_hooks(&mut self, fresh: Chain) {
        self.hooks.reload(fresh, self.shard);
    }

    /// Takes reloaded settings; stored peers keep the expiry they have.
    pub fn reload_settings(&mut self, settings: Settings) {
        if let Some(gate) = &mut self.private {
            gate.set_peer_lifetime(u64::from(settings.peer_lifetime));
        }
        self.settings = settings;
    }

    /// Stops the hooks and hands private mode's last accounting over (the
    /// shard is stopping).
    pub fn stop(&mut self) {
        self.hooks.stop();
        if let Some(gate) = &mut self.private {
            gate.stop();
        }
    }
}
