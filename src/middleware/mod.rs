//! Chihaya's middleware model. A request goes parse -> pre-hooks -> store
//! -> send -> post-hooks. Pre-hooks may refuse with a reason the client
//! sees, or change the answer (the interval, say); post-hooks run after the
//! answer left, for accounting. Each shard builds its own hooks, so a hook
//! keeps plain state and needs no locks; a hook that needs I/O works from
//! an in-memory view refreshed in the background and never blocks a core.
//!
//! - `hook.rs`: the [`Hook`] trait (an operator's own hooks implement it)
//!   and what a hook sees;
//! - `chain.rs`: one shard's hooks in order, each in its stages;
//! - `registry.rs`: config names to hooks (`hooks.pre`, `hooks.post`);
//! - `options.rs`: reading a hook's options, the per-shard maker;
//! - `params.rs`: announce parameters beyond the standard ones (`jwt`);
//! - `recent.rs`: a fixed-size table of recently seen clients (`rate limit`);
//! - one file per built-in hook (`jwt` with its key fetcher, `jwk_set.rs`).

pub mod chain;
pub mod client_approval;
pub mod hook;
pub mod interval_variation;
pub mod ip_ban;
pub mod jwk_set;
pub mod jwt;
pub mod options;
pub mod params;
pub mod rate_limit;
pub mod recent;
pub mod registry;
pub mod torrent_approval;

pub use chain::{Chain, Link, Stage};
pub use hook::{
    AnnounceContext, Hook, Refusal, RefusalKind, RequestContext, RequestKind, ScrapeContext,
};
pub use registry::{ConfiguredHooks, HookFactory, Registry};
