//! What the shards and the database thread share: the newest catalog
//! version (taken by each shard at its tick), a bounded queue of batches
//! from each shard, a bounded queue of control changes, and the figures
//! the metrics endpoint shows. A shard never waits on any of it: a full
//! queue keeps its batch for the next tick, and a control request is
//! refused.

use super::batch::Batch;
use super::catalog::{Catalog, Change};
use super::ledger::KeptClient;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Batches in flight from one shard to the database thread.
const BATCH_QUEUE: usize = 16;
/// Control requests waiting for the database thread.
const CONTROL_QUEUE: usize = 4096;

/// Figures of the database thread, for /metrics (one private mode per
/// process).
pub static FIGURES: Figures = Figures::new();

pub struct Figures {
    /// Private mode is on: the metrics show these figures.
    pub enabled: AtomicBool,
    /// Rows waiting to be written (memory and journal).
    pub pending_rows: AtomicU64,
    /// Of those, the rows in journal files.
    pub journaled_rows: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_failures: AtomicU64,
    /// Microseconds, summed over successful flushes.
    pub flush_micros: AtomicU64,
    pub last_flush_micros: AtomicU64,
    pub rows_written: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    pub users: AtomicU64,
    pub torrents: AtomicU64,
    pub database_up: AtomicBool,
}

impl Figures {
    const fn new() -> Self {
        Self {
            enabled: AtomicBool::new(false),
            pending_rows: AtomicU64::new(0),
            journaled_rows: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flush_failures: AtomicU64::new(0),
            flush_micros: AtomicU64::new(0),
            last_flush_micros: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            users: AtomicU64::new(0),
            torrents: AtomicU64::new(0),
            database_up: AtomicBool::new(false),
        }
    }
}

pub struct Link {
    catalog: Mutex<Arc<Catalog>>,
    generation: AtomicU64,
    /// One queue per shard.
    batches: Vec<SyncSender<Batch>>,
    control: SyncSender<Change>,
    shards_gone: AtomicBool,
    /// Clients the shards kept at their stop, for the next start.
    parting: Mutex<Vec<KeptClient>>,
    /// Clients a previous run kept, by the shard that owns their torrent,
    /// for the shards to take at start.
    restored: Mutex<Vec<Vec<KeptClient>>>,
}

/// The database thread's ends of the queues.
pub struct Ends {
    pub batches: Vec<Receiver<Batch>>,
    pub control: Receiver<Change>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Link {
    pub fn new(shards: usize) -> (Link, Ends) {
        let (batches, batches_rx): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| sync_channel(BATCH_QUEUE)).unzip();
        let (control, control_rx) = sync_channel(CONTROL_QUEUE);
        let link = Link {
            catalog: Mutex::new(Arc::new(Catalog::default())),
            generation: AtomicU64::new(0),
            batches,
            control,
            shards_gone: AtomicBool::new(false),
            parting: Mutex::new(Vec::new()),
            restored: Mutex::new(Vec::new()),
        };
        FIGURES.enabled.store(true, Ordering::Relaxed);
        (
            link,
            Ends {
                batches: batches_rx,
                control: control_rx,
            },
        )
    }

    /// Hands every shard a new catalog version.
    pub fn publish(&self, catalog: Catalog) {
        FIGURES
            .users
            .store(catalog.users.len() as u64, Ordering::Relaxed);
        FIGURES
            .torrents
            .store(catalog.torrents.len() as u64, Ordering::Relaxed);
        let mut latest = match self.catalog.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        *latest = Arc::new(catalog);
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.lock() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A shard's batch; given back when the queue is full.
    pub fn submit(&self, shard: usize, batch: Batch) -> Option<Batch> {
        let Some(queue) = self.batches.get(shard) else {
            return Some(batch);
        };
        match queue.try_send(batch) {
            Ok(()) => None,
            Err(TrySendError::Full(b)) | Err(TrySendError::Disconnected(b)) => Some(b),
        }
    }

    /// A shard's last batch, at its stop: waits for room (the database
    /// thread drains the queue until every shard is gone).
    pub fn submit_last(&self, shard: usize, batch: Batch) {
        if let (false, Some(queue)) = (batch.is_empty(), self.batches.get(shard)) {
            let _ = queue.send(batch);
        }
    }

    /// A control change; `false` when the queue is full.
    pub fn control(&self, change: Change) -> bool {
        self.control.try_send(change).is_ok()
    }

    /// A stopping shard's clients.
    pub fn part(&self, clients: Vec<KeptClient>) {
        lock(&self.parting).extend(clients);
    }

    /// Every stopped shard's clients (the database thread keeps them).
    pub fn take_parting(&self) -> Vec<KeptClient> {
        std::mem::take(&mut *lock(&self.parting))
    }

    /// Clients a previous run kept, by shard, before the shards start.
    pub fn set_restored(&self, by_shard: Vec<Vec<KeptClient>>) {
        *lock(&self.restored) = by_shard;
    }

    /// Shard `shard`'s kept clients (those of the torrents it owns).
    pub fn take_restored(&self, shard: usize) -> Vec<KeptClient> {
        lock(&self.restored)
            .get_mut(shard)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Every shard has stopped and submitted its last batch: the database
    /// thread writes (or journals) what it holds and ends.
    pub fn shards_gone(&self) {
        self.shards_gone.store(true, Ordering::Release);
    }

    pub fn are_shards_gone(&self) -> bool {
        self.shards_gone.load(Ordering::Acquire)
    }
}
