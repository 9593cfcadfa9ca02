//! The hook trait an operator implements, and what a hook sees.

use crate::bittorrent::{Announce, Client, Counts, InfoHash, Protocol};
use std::borrow::Cow;

/// What pre-hooks see of an announce, and may change: the client, the
/// request's fields and the intervals. The infohash is fixed (it chose the
/// shard): a change to it is undone.
pub struct AnnounceContext<'a> {
    pub protocol: Protocol,
    pub client: Client,
    pub shard: usize,
    pub announce: &'a mut Announce,
    /// Seconds; what the answer will tell the client.
    pub interval: u32,
    pub min_interval: u32,
}

pub struct ScrapeContext<'a> {
    pub protocol: Protocol,
    pub client: Client,
    pub shard: usize,
    pub info_hashes: &'a [InfoHash],
    /// From an HTTP route with a `:passkey` segment.
    pub passkey: Option<&'a [u8]>,
}

/// A pre-hook's no: the client gets `reason` as a failure or error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub Cow<'static, str>);

impl Refusal {
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        Self(reason.into())
    }
}

/// A middleware hook. Every method has a do-nothing default; implement
/// the ones you need. Each shard has its own instance, built and used on
/// the shard's thread: plain state, no locks.
///
/// Lifecycle: `start` once before the shard's first request, `reload`
/// when the operator reloads the configuration, `stop` when the shard
/// stops. Request methods never block: a hook that needs I/O works from a
/// view a service thread refreshes.
pub trait Hook {
    fn name(&self) -> &'static str;

    /// Called on the shard's thread before its first request.
    fn start(&mut self, _shard: usize) {}

    /// New options on a live reload, already checked by the registry.
    /// `true`: this instance took them and keeps its state; `false` (the
    /// default): the chain replaces it with one built from the options.
    fn reload(&mut self, _options: &serde_yaml::Value) -> bool {
        false
    }

    /// Called when the shard stops.
    fn stop(&mut self) {}

    fn before_announce(&mut self, _ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        Ok(())
    }

    /// After the answer was sent, with the swarm's counts after the update.
    fn after_announce(&mut self, _announce: &Announce, _client: Client, _counts: Counts) {}

    fn before_scrape(&mut self, _ctx: &ScrapeContext) -> Result<(), Refusal> {
        Ok(())
    }

    /// Whether `after_announce` does anything; when no hook needs it the
    /// request path keeps no copy of the request.
    fn wants_after_announce(&self) -> bool {
        false
    }
}
