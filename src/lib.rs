//! Shoal: a thread-per-core BitTorrent tracker on io_uring.
//!
//! Data flows from the edges inward: `net` (sockets, batched I/O) ->
//! `protocol` (pure parsing and encoding) -> `middleware` (hooks) ->
//! `swarm` (the peers), with `shard` tying one core's pieces together and
//! `server` starting them all.

pub mod config;
pub mod metrics;
pub mod middleware;
pub mod net;
pub mod protocol;
pub mod request;
pub mod server;
pub mod shard;
pub mod swarm;
