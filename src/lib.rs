//! Shoal: a thread-per-core BitTorrent tracker on io_uring.
//!
//! Layers, bottom up; a module imports only from layers below it (see
//! docs/architecture.md):
//! - `bittorrent`: the shared request and answer types;
//! - `placement` (owner function, CPUs), `protocol` (pure wire formats);
//! - `config`: the YAML schema and its validation;
//! - `storage` (the swarms behind the `PeerStore` seam), `middleware`
//!   (hooks, their chain and registry), `private` (private tracker mode:
//!   passkeys, accounting, the database thread);
//! - `tracker`: the sans-IO core, every announce and scrape decision;
//! - `net` (sockets, batched I/O), `metrics`;
//! - `shard`: one core's I/O loops around its tracker; `server`: start-up.

pub mod bittorrent;
pub mod config;
pub mod metrics;
pub mod middleware;
pub mod net;
pub mod placement;
pub mod private;
pub mod protocol;
pub mod server;
pub mod shard;
pub mod storage;
pub mod tracker;
