//! Chihaya's middleware model. A request goes parse -> pre-hooks -> swarm
//! -> send -> post-hooks. Pre-hooks may refuse with a reason the client
//! sees, or change the answer (the interval, say); post-hooks run after the
//! answer left, for accounting. Each shard builds its own hooks, so a hook
//! keeps plain state and needs no locks; a hook that needs I/O works from
//! an in-memory view refreshed in the background and never blocks a core.

use crate::request::{Announce, Client, InfoHash};
use crate::swarm::Counts;
use std::borrow::Cow;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Udp,
    Http,
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
/// the ones you need.
pub trait Hook {
    fn name(&self) -> &'static str;

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

/// Builds the hooks of shard `n`; called once on each shard's own thread.
pub type HookFactory = Arc<dyn Fn(usize) -> Vec<Box<dyn Hook>> + Send + Sync>;

pub fn no_hooks() -> HookFactory {
    Arc::new(|_| Vec::new())
}

/// The configured hooks of one shard, in order.
pub struct Pipeline {
    hooks: Vec<Box<dyn Hook>>,
    after_announce: bool,
}

impl Pipeline {
    pub fn new(hooks: Vec<Box<dyn Hook>>) -> Self {
        let after_announce = hooks.iter().any(|h| h.wants_after_announce());
        Self {
            hooks,
            after_announce,
        }
    }

    pub fn before_announce(&mut self, ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        self.hooks
            .iter_mut()
            .try_for_each(|h| h.before_announce(ctx))
    }

    pub fn before_scrape(&mut self, ctx: &ScrapeContext) -> Result<(), Refusal> {
        self.hooks.iter_mut().try_for_each(|h| h.before_scrape(ctx))
    }

    pub fn wants_after_announce(&self) -> bool {
        self.after_announce
    }

    pub fn after_announce(&mut self, announce: &Announce, client: Client, counts: Counts) {
        for h in &mut self.hooks {
            h.after_announce(announce, client, counts);
        }
    }
}
