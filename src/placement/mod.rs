//! Where things run: which shard owns an infohash (`owner`) and which
//! CPUs the process may pin shards to (`cpus`). Below `config` and `net`,
//! which both use it.

pub mod cpus;
pub mod owner;
