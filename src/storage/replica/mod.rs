//! Swarms shared between instances (`storage.backend: redis`). Each shard
//! keeps answering from its own memory store; what it changes goes, in
//! batches, to a service thread that pushes it to Redis, and what other
//! instances changed comes back from that thread and is applied on the
//! owner shard. Redis is never on the request path (docs/redis.md).
//!
//! - `wire.rs`: a batch of changes as bytes (pure);
//! - `redis.rs`: the service thread: push, pull, outages, start-up load.

pub mod redis;
pub mod wire;

use crate::bittorrent::InfoHash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Mutex;
pub use wire::Change;

/// What the service thread hands a shard.
#[derive(Debug)]
pub enum Remote {
    /// Other instances' changes to this shard's torrents.
    Changes(Vec<Change>),
    /// Cluster completion counts read at start (infohash, downloaded).
    Downloaded(Vec<(InfoHash, u32)>),
}

/// Batches a shard may queue for the service thread.
const OUTBOX_BATCHES: usize = 4096;
/// Batches the service thread may queue for one shard.
const INBOX_BATCHES: usize = 1024;

/// The shards' ends of the channels, and the figures.
pub struct Replication {
    outbox: SyncSender<Vec<Change>>,
    inboxes: Vec<Mutex<Receiver<Remote>>>,
    /// Set once every shard stopped: the service pushes what is left and
    /// ends.
    shards_gone: AtomicBool,
}

/// The service thread's ends.
pub struct ServiceEnds {
    pub outbox: Receiver<Vec<Change>>,
    pub inboxes: Vec<SyncSender<Remote>>,
}

impl Replication {
    pub fn new(shards: usize) -> (Replication, ServiceEnds) {
        let (outbox, from_shards) = std::sync::mpsc::sync_channel(OUTBOX_BATCHES);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards)
            .map(|_| std::sync::mpsc::sync_channel(INBOX_BATCHES))
            .unzip();
        (
            Replication {
                outbox,
                inboxes: receivers.into_iter().map(Mutex::new).collect(),
                shards_gone: AtomicBool::new(false),
            },
            ServiceEnds {
                outbox: from_shards,
                inboxes: senders,
            },
        )
    }

    /// Hands a shard's changes over; gives them back when the queue is
    /// full (the shard keeps them for its next tick).
    pub fn push(&self, changes: Vec<Change>) -> Result<(), Vec<Change>> {
        match self.outbox.try_send(changes) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(c)) | Err(TrySendError::Disconnected(c)) => Err(c),
        }
    }

    pub fn shards_gone(&self) {
        self.shards_gone.store(true, Ordering::Relaxed);
    }

    pub fn are_shards_gone(&self) -> bool {
        self.shards_gone.load(Ordering::Relaxed)
    }

    /// The next message for `shard`, if any; never waits.
    pub fn next_for(&self, shard: usize) -> Option<Remote> {
        // Only shard `shard` locks its inbox: never contended.
        let inbox = self.inboxes[shard].lock().ok()?;
        inbox.try_recv().ok()
    }
}

/// The service thread's figures, for /metrics (one service a process).
pub static STATS: Stats = Stats::new();

pub struct Stats {
    /// Set when a service starts: the figures are shown.
    pub enabled: AtomicBool,
    /// 1 while the last exchange with Redis worked.
    pub up: AtomicU64,
    /// Changes waiting to be pushed.
    pub pending: AtomicU64,
    pub pushed: AtomicU64,
    pub pulled: AtomicU64,
    /// Commands sent (a pipeline counts each of its commands).
    pub commands: AtomicU64,
    /// Exchanges that failed (connect, timeout, error reply).
    pub errors: AtomicU64,
    /// Changes merged away past `max_pending` (only a peer's latest kept).
    pub coalesced: AtomicU64,
}

impl Stats {
    const fn new() -> Self {
        Self {
            enabled: AtomicBool::new(false),
            up: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
            pulled: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
