//! Per-shard counters: plain cells, owned by the shard's thread.

use std::cell::Cell;

#[derive(Clone, Debug, Default)]
pub struct ShardStats {
    pub datagrams: Cell<u64>,
    pub answered: Cell<u64>,
    pub forwarded: Cell<u64>,
    /// UDP announces dropped because the owner shard was saturated.
    pub forward_dropped: Cell<u64>,
    pub bad_connection_id: Cell<u64>,
    pub malformed: Cell<u64>,
    pub send_dropped: Cell<u64>,
    pub expired_peers: Cell<u64>,
    pub http_answered: Cell<u64>,
    pub http_malformed: Cell<u64>,
    pub http_refused: Cell<u64>,
}

impl ShardStats {
    pub(crate) fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get() + n);
    }
}
