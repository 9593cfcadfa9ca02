//! Private tracker mode (`private.enabled`): a drop-in for Ocelot on a
//! Gazelle site. Users announce with their passkey (HTTP
//! `/<passkey>/announce`, UDP BEP 41 URL data of the same path); only
//! registered torrents and whitelisted clients are served; each client's
//! transfer is accounted per user and written to the site's database in
//! batches by a thread of its own. docs/private.md has the contract.
//!
//! - `catalog.rs`: users, torrents, tokens, whitelist; control changes;
//! - `control.rs`: the site's `/<site_password>/update?action=...`;
//! - `ledger.rs`: one shard's accounting (pure);
//! - `batch.rs`: rows waiting for the database, merged by row;
//! - `gate.rs`: one shard's checks and ledger, called by the tracker core;
//! - `link.rs`: what the shards and the database thread share;
//! - `service/`: the database thread (sqlx), its SQL and its journal.

pub mod batch;
pub mod catalog;
pub mod control;
pub mod gate;
pub mod ledger;
pub mod link;
pub mod service;

pub use gate::Gate;

/// The maps of this module: aHash with a random key per map (fast, and
/// no client can aim collisions at a known key).
pub type Map<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
pub type Set<T> = std::collections::HashSet<T, ahash::RandomState>;
pub use link::Link;
