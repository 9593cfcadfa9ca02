//! One shard's private mode: who may announce (passkey, whitelist,
//! registered torrent, leech permission, with Ocelot's messages) and the
//! accounting of what they report. Called by the tracker core on the shard
//! that owns the torrent; reads the shard's catalog version only, never
//! waits on the database.

use super::catalog::{deletion_reason, Catalog};
use super::ledger::{Ledger, Rates, Report};
use super::link::Link;
use crate::bittorrent::{Announce, Event};
use crate::config::PrivateConfig;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

// Ocelot's messages (worker.cpp).
pub const UNAVAILABLE: &str = "The tracker is temporarily unavailable.";
pub const PASSKEY_NOT_FOUND: &str = "Passkey not found";
pub const NOT_WHITELISTED: &str = "Your client is not on the whitelist";
pub const UNREGISTERED: &str = "Unregistered torrent";
pub const LEECHING_FORBIDDEN: &str = "Access denied, leeching forbidden";

/// Clients looked at for expiry per tick, at most: a mass expiry is
/// spread over ticks instead of stalling the shard.
const EXPIRY_SLICE: usize = 16_384;

pub struct Gate {
    shard: usize,
    link: Arc<Link>,
    catalog: Arc<Catalog>,
    generation: u64,
    ledger: Ledger,
    /// Unix seconds minus store-clock seconds, as of the last tick.
    unix_offset: u64,
}

impl Gate {
    pub fn new(
        shard: usize,
        link: Arc<Link>,
        config: &PrivateConfig,
        peer_lifetime_secs: u64,
    ) -> Self {
        let rates = Rates {
            upload_multiplier: config.upload_multiplier,
            download_multiplier: config.download_multiplier,
            global_freeleech: config.global_freeleech,
        };
        Self {
            shard,
            generation: link.generation(),
            catalog: link.catalog(),
            link,
            ledger: Ledger::new(peer_lifetime_secs, rates),
            unix_offset: 0,
        }
    }

    /// Checks and accounts an announce (its store-clock second `now`, the
    /// address the swarm stores). Refused ones are accounted too when the
    /// user and torrent are known, as Ocelot does for leech refusals.
    pub fn announce(
        &mut self,
        announce: &Announce,
        ip: IpAddr,
        now: u32,
    ) -> Result<(), Cow<'static, str>> {
        let catalog = &self.catalog;
        if !catalog.loaded {
            return Err(UNAVAILABLE.into());
        }
        let user = announce
            .passkey
            .as_deref()
            .and_then(|p| catalog.user(p))
            .ok_or(PASSKEY_NOT_FOUND)?;
        if !catalog.client_allowed(&announce.peer_id) {
            return Err(NOT_WHITELISTED.into());
        }
        let Some(&torrent) = catalog.torrents.get(&announce.info_hash) else {
            return Err(match catalog.deleted.get(&announce.info_hash) {
                Some(&code) if !deletion_reason(code).is_empty() => {
                    format!("{UNREGISTERED}: {}", deletion_reason(code)).into()
                }
                _ => UNREGISTERED.into(),
            });
        };
        self.ledger.announce(&Report {
            info_hash: announce.info_hash,
            user,
            torrent,
            token: catalog.tokens.contains(&(user.id, torrent.id)),
            peer_id: announce.peer_id,
            uploaded: announce.uploaded,
            downloaded: announce.downloaded,
            left: announce.left,
            started: announce.event == Event::Started,
            completed: announce.event == Event::Completed,
            stopped: announce.event == Event::Stopped,
            ip: (!user.protected).then_some(ip),
            now: self.unix_offset + u64::from(now),
        });
        if !user.can_leech && announce.left > 0 && announce.event != Event::Stopped {
            return Err(LEECHING_FORBIDDEN.into());
        }
        Ok(())
    }

    /// Whether a scrape's passkey may scrape.
    pub fn scrape(&self, passkey: Option<&[u8]>) -> Result<(), Cow<'static, str>> {
        if !self.catalog.loaded {
            return Err(UNAVAILABLE.into());
        }
        match passkey.and_then(|p| self.catalog.user(p)) {
            Some(_) => Ok(()),
            None => Err(PASSKEY_NOT_FOUND.into()),
        }
    }

    /// The shard's tick (Unix and store-clock seconds): takes a new
    /// catalog version, drops silent clients, hands the rows over.
    pub fn tick(&mut self, unix: u32, now: u32) {
        self.unix_offset = u64::from(unix.saturating_sub(now));
        let generation = self.link.generation();
        if generation != self.generation {
            self.generation = generation;
            self.catalog = self.link.catalog();
        }
        self.ledger
            .expire(self.unix_offset + u64::from(now), EXPIRY_SLICE);
        let batch = self.ledger.take_batch();
        if !batch.is_empty() {
            if let Some(back) = self.link.submit(self.shard, batch) {
                self.ledger.return_batch(back);
            }
        }
    }

    pub fn set_peer_lifetime(&mut self, secs: u64) {
        self.ledger.set_lifetime(secs);
    }

    /// At the shard's start (Unix and store-clock seconds): the clock, and
    /// the clients a previous run kept (see `stop`).
    pub fn start(&mut self, unix: u32, now: u32) {
        self.unix_offset = u64::from(unix.saturating_sub(now));
        let kept = self.link.take_restored(self.shard);
        self.ledger.import(kept, u64::from(unix));
    }

    /// The shard stops: its rows go to the database thread, waiting for
    /// room if need be, and its clients' last reports are kept for the
    /// next start.
    pub fn stop(&mut self) {
        self.link.submit_last(self.shard, self.ledger.take_batch());
        self.link.part(self.ledger.export());
    }
}
