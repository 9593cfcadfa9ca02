//! The hook trait an operator implements, and what a hook sees.

use crate::bittorrent::{Announce, Client, Counts, InfoHash, Protocol};
use std::borrow::Cow;
use std::net::IpAddr;

/// What a request asks for, as far as `before_request` can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// A UDP connect (BEP 15).
    Connect,
    Announce,
    Scrape,
}

/// A request as it arrives, before it is parsed or forwarded: who sends
/// it. Seen on the shard the request landed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestContext {
    pub protocol: Protocol,
    /// The sender's address (after trusted proxies, for HTTP).
    pub source: IpAddr,
    pub kind: RequestKind,
    /// The shard's clock, in seconds (monotonic, from an arbitrary start):
    /// for hooks that count per time window.
    pub now: u32,
}

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
    /// The store's clock, in seconds (monotonic, from an arbitrary start).
    pub now: u32,
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
pub struct Refusal {
    pub reason: Cow<'static, str>,
    pub kind: RefusalKind,
}

/// How a refusal is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// HTTP: a failure reason with 200 (as Chihaya answers); UDP: an error
    /// packet.
    Failure,
    /// HTTP: 403 with the failure reason; UDP: no answer at all (a banned
    /// source gets nothing to amplify).
    Forbidden,
    /// Come back later: HTTP adds BEP 31 `retry in` (minutes, rounded
    /// up) to the failure; UDP: an error packet.
    RetryIn { seconds: u32 },
}

impl Refusal {
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason: reason.into(),
            kind: RefusalKind::Failure,
        }
    }

    pub fn forbidden(reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason: reason.into(),
            kind: RefusalKind::Forbidden,
        }
    }

    pub fn retry_in(reason: impl Into<Cow<'static, str>>, seconds: u32) -> Self {
        Self {
            reason: reason.into(),
            kind: RefusalKind::RetryIn { seconds },
        }
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

    /// Every request (UDP connects too) on the shard it arrived at, before
    /// it is parsed: for checks on the sender alone (bans, rate limits).
    /// Runs only when `checks_requests` says so.
    fn before_request(&mut self, _ctx: &RequestContext) -> Result<(), Refusal> {
        Ok(())
    }

    /// Whether `before_request` does anything.
    fn checks_requests(&self) -> bool {
        false
    }

    /// Whether this hook reads announce parameters beyond the standard
    /// ones (`middleware::params`): HTTP announces then keep their query
    /// string for it.
    fn wants_params(&self) -> bool {
        false
    }

    fn before_announce(&mut self, _ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        Ok(())
    }

    /// After the answer was sent, with the swarm's counts after the update.
    fn after_announce(&mut self, _announce: &Announce, _client: Client, _counts: Counts) {}

    fn before_scrape(&mut self, _ctx: &ScrapeContext) -> Result<(), Refusal> {
        Ok(())
    }

    /// After a scrape's answer was sent, with the counts it carried (in
    /// the order of `ctx.info_hashes`). Runs on the shard the scrape
    /// arrived at, only when `wants_after_scrape` says so.
    fn after_scrape(&mut self, _ctx: &ScrapeContext, _counts: &[Counts]) {}

    fn wants_after_scrape(&self) -> bool {
        false
    }

    /// Whether `after_announce` does anything; when no hook needs it the
    /// request path keeps no copy of the request.
    fn wants_after_announce(&self) -> bool {
        false
    }
}
