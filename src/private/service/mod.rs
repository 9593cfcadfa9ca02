//! The database thread of private mode: never on a shard. It loads the
//! catalog (at start, every `reload_interval`), applies control changes
//! and hands every shard the new version, and merges the shards' batches.
//! Every `flush_interval` it first makes what it gathered durable (one
//! checksummed journal file), then writes everything journaled in one
//! transaction (one statement per table) and removes the files after the
//! commit. So accounting waits on disk, not in memory, while the database
//! is down; a crash loses at most the last interval's rows; a stop writes
//! them or leaves them journaled; the next start replays the journal.

pub mod db;
pub mod journal;
pub mod sql;

use super::batch::Batch;
use super::catalog::Catalog;
use super::link::{Ends, Link, FIGURES};
use crate::config::{Dialect, PrivateConfig};
use db::Db;
use journal::Journal;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one write may take before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);
/// The last write at a stop gives up sooner (the rows stay journaled),
/// within systemd's stop timeout.
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// Journaled rows kept in memory too, at most (past it a flush reads the
/// files back).
const MIRROR_ROWS: u64 = 2_000_000;
/// Journal files past which an outage's files are merged into one.
const MAX_FILES: usize = 64;
/// The start's reset of peer rows waits no longer.
const RESET_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a lost database is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// The loop's pace: how fast a control change reaches the shards.
const POLL: Duration = Duration::from_millis(10);

pub struct Service {
    config: PrivateConfig,
    dialect: Dialect,
    link: Arc<Link>,
    ends: Ends,
    journal: Journal,
    db: Option<Db>,
    max_bytes: usize,
    /// Rows gathered since the last flush (in memory only).
    pending: Batch,
    /// Journal files not yet written to the database, oldest first.
    files: Vec<PathBuf>,
    /// The rows they hold.
    file_rows: u64,
    /// The same rows in memory while they are few enough, so a flush
    /// need not read back what it just wrote; `None`: read the files.
    journaled: Option<Batch>,
    master: Catalog,
    /// Control changes since the last reload: applied again on the next
    /// one, in case its read started before the site wrote them.
    since_reload: Vec<super::catalog::Change>,
    reset_done: bool,
    /// Logged once per outage.
    outage_logged: bool,
}

impl Service {
    pub fn new(config: PrivateConfig, link: Arc<Link>, ends: Ends) -> Result<Self, String> {
        let dialect = config
            .dialect()
            .ok_or("private.database_url: unknown scheme")?;
        let journal = Journal::new(std::path::Path::new(&config.journal_dir));
        std::fs::create_dir_all(&config.journal_dir).map_err(|e| {
            format!(
                "private.journal_dir: cannot create {}: {e}",
                config.journal_dir
            )
        })?;
        Ok(Self {
            dialect,
            link,
            ends,
            journal,
            db: None,
            max_bytes: 4 << 20,
            pending: Batch::default(),
            files: Vec::new(),
            file_rows: 0,
            journaled: Some(Batch::default()),
            master: Catalog::default(),
            since_reload: Vec::new(),
            reset_done: false,
            outage_logged: false,
            config,
        })
    }

    /// The thread's body; returns when the shards are gone and every row
    /// is written or journaled.
    pub fn run(mut self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("private mode: cannot start the database runtime: {e}");
                return;
            }
        };
        runtime.block_on(self.main());
    }

    async fn main(&mut self) {
        // What a previous run could not write: its peer rows and swarm
        // counts are stale (the start resets them), the rest counts. Kept
        // as one new file, which replaces the old ones.
        let held = self.journal.read_all();
        if !held.files.is_empty() {
            let mut batch = held.batch;
            batch.peers.clear();
            for t in batch.torrents.values_mut() {
                (t.seeders, t.leechers) = (0, 0);
            }
            tracing::info!(
                files = held.files.len(),
                rows = batch.rows(),
                "private mode: replaying the journal of accounting not yet written"
            );
            let rows = batch.rows() as u64;
            self.pending = batch;
            if self.journal_pending() {
                self.journal.remove(&held.files);
            } else {
                // The disk refused the new file: the old ones are written
                // as they are (their stale peer rows too).
                self.pending = Batch::default();
                self.files = held.files;
                self.file_rows = rows;
                self.journaled = None;
            }
        }
        let mut next_reload = Instant::now();
        let mut next_flush = Instant::now() + self.config.flush_interval;
        let mut next_connect = Instant::now();
        loop {
            let gone = self.link.are_shards_gone();
            self.drain();
            if gone {
                break;
            }
            let now = Instant::now();
            if self.db.is_none() && now >= next_connect {
                self.connect().await;
                next_connect = now + RETRY;
                if self.db.is_some() {
                    next_reload = now;
                } else if !self.master.loaded {
                    self.answer_from_last_catalog();
                }
            }
            if self.db.is_some() && now >= next_reload {
                next_reload = match self.reload().await {
                    true => now + self.config.reload_interval,
                    false => now + RETRY,
                };
            }
            if now >= next_flush {
                self.flush(WRITE_TIMEOUT).await;
                next_flush = now + self.config.flush_interval;
            }
            self.show();
            tokio::time::sleep(POLL).await;
        }
        self.finish().await;
    }

    /// Takes the shards' batches and the control changes.
    fn drain(&mut self) {
        for queue in &self.ends.batches {
            while let Ok(batch) = queue.try_recv() {
                self.pending.merge(batch);
            }
        }
        let mut changed = false;
        while let Ok(change) = self.ends.control.try_recv() {
            self.since_reload.push(change.clone());
            self.master.apply(change);
            changed = true;
        }
        if changed {
            self.link.publish(self.master.clone());
        }
    }

    async fn connect(&mut self) {
        let limit = self.config.connect_timeout;
        match Db::connect(&self.config.database_url, self.dialect, limit).await {
            Ok(mut db) => {
                self.max_bytes = db.max_statement_bytes(limit).await;
                if !self.reset_done {
                    // Best effort: a reset held up (a killed instance's
                    // transaction still rolling back, say) must not keep
                    // the catalog from loading; it is tried again before
                    // the first write.
                    match db.reset(RESET_TIMEOUT).await {
                        Ok(()) => self.reset_done = true,
                        Err(e) => tracing::warn!(
                            "private mode: resetting peer rows failed ({e}); trying again before the first write"
                        ),
                    }
                }
                if self.outage_logged {
                    tracing::info!("private mode: the database is back");
                }
                self.outage_logged = false;
                FIGURES.database_up.store(true, Ordering::Relaxed);
                self.db = Some(db);
            }
            Err(e) => self.lost(&e),
        }
    }

    /// The database went away: the connection is dropped, tried again
    /// later; logged once per outage.
    fn lost(&mut self, why: &str) {
        self.db = None;
        FIGURES.database_up.store(false, Ordering::Relaxed);
        if !self.outage_logged {
            tracing::error!(
                "private mode: database unreachable ({why}); answering from the last catalog and keeping accounting until it is back"
            );
            self.outage_logged = true;
        }
    }

    /// The database is down and nothing was read yet: announces are
    /// answered from the catalog the last run read, until it is back.
    fn answer_from_last_catalog(&mut self) {
        if let Some(catalog) = self.journal.read_catalog() {
            tracing::warn!(
                users = catalog.users.len(),
                torrents = catalog.torrents.len(),
                "private mode: the database is down; answering from the last catalog read before this start"
            );
            self.master = catalog;
            self.link.publish(self.master.clone());
        }
    }

    /// Reads the catalog again; `false` on failure.
    async fn reload(&mut self) -> bool {
        let Some(db) = &mut self.db else { return false };
        match db.load(WRITE_TIMEOUT).await {
            Ok(mut catalog) => {
                // Deletion reasons live only here (the site deletes the row).
                catalog.deleted = std::mem::take(&mut self.master.deleted);
                catalog
                    .deleted
                    .retain(|h, _| !catalog.torrents.contains_key(h));
                // The read may have begun before the site wrote what it
                // told us since; applying it again is harmless.
                for change in self.since_reload.drain(..) {
                    catalog.apply(change);
                }
                tracing::info!(
                    users = catalog.users.len(),
                    torrents = catalog.torrents.len(),
                    tokens = catalog.tokens.len(),
                    whitelist = catalog.whitelist.len(),
                    "private mode: catalog loaded"
                );
                self.master = catalog;
                self.link.publish(self.master.clone());
                if let Err(e) = self.journal.write_catalog(&self.master) {
                    tracing::warn!("private mode: cannot keep the catalog on disk ({e}): a start while the database is down will answer nothing");
                }
                FIGURES.reloads.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                FIGURES.reload_failures.fetch_add(1, Ordering::Relaxed);
                self.lost(&e);
                false
            }
        }
    }

    /// Makes the rows gathered since the last flush durable: one journal
    /// file. `false` (logged) when the disk refused; they stay in memory
    /// and the next flush tries again.
    fn journal_pending(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        match self.journal.write(&self.pending) {
            Ok(path) => {
                self.files.push(path);
                self.file_rows += self.pending.rows() as u64;
                let batch = std::mem::take(&mut self.pending);
                match &mut self.journaled {
                    Some(mirror) if self.file_rows <= MIRROR_ROWS => mirror.merge(batch),
                    _ => self.journaled = None,
                }
                true
            }
            Err(e) => {
                tracing::error!(
                    "private mode: cannot journal accounting to {} ({e}); keeping it in memory",
                    self.config.journal_dir
                );
                false
            }
        }
    }

    /// Journals what was gathered, then writes every journaled row in one
    /// transaction (with `limit` per statement); on success the files go.
    /// When the database cannot take them they wait on disk (merged into
    /// one file once there are many).
    async fn flush(&mut self, limit: Duration) {
        let durable = self.journal_pending();
        if self.files.is_empty() {
            return;
        }
        if self.db.is_none() {
            self.connect().await;
        }
        if let Some(db) = &mut self.db {
            if !self.reset_done {
                // The last chance: written rows must not be reset later.
                if let Err(e) = db.reset(RESET_TIMEOUT).await {
                    tracing::warn!(
                        "private mode: resetting peer rows failed again ({e}); the previous run's rows in xbt_files_users and its swarm counts stay until overwritten"
                    );
                }
                self.reset_done = true;
            }
            let started = Instant::now();
            let combined;
            let all = match (&self.journaled, durable) {
                (Some(mirror), true) => mirror,
                (mirror, _) => {
                    let mut owned = match mirror {
                        Some(mirror) => mirror.clone(),
                        None => match self.journal.read_files(&self.files) {
                            Ok(batch) => batch,
                            Err(e) => {
                                // Every file stays; the next flush tries again.
                                tracing::error!("private mode: cannot read the journal now ({e})");
                                return;
                            }
                        },
                    };
                    if !durable {
                        owned.merge(self.pending.clone());
                    }
                    combined = owned;
                    &combined
                }
            };
            let statements = sql::writes(self.dialect, all, self.max_bytes);
            match db.write(&statements, limit).await {
                Ok(()) => {
                    let micros = started.elapsed().as_micros() as u64;
                    FIGURES.flushes.fetch_add(1, Ordering::Relaxed);
                    FIGURES.flush_micros.fetch_add(micros, Ordering::Relaxed);
                    FIGURES.last_flush_micros.store(micros, Ordering::Relaxed);
                    FIGURES
                        .rows_written
                        .fetch_add(all.rows() as u64, Ordering::Relaxed);
                    tracing::debug!(
                        rows = all.rows(),
                        statements = statements.len(),
                        micros,
                        "private mode: flushed"
                    );
                    if !durable {
                        self.pending = Batch::default();
                    }
                    self.journal.remove(&self.files);
                    self.files.clear();
                    self.file_rows = 0;
                    self.journaled = Some(Batch::default());
                    return;
                }
                Err(e) => {
                    FIGURES.flush_failures.fetch_add(1, Ordering::Relaxed);
                    self.lost(&format!("writing accounting: {e}"));
                }
            }
        } else {
            FIGURES.flush_failures.fetch_add(1, Ordering::Relaxed);
        }
        FIGURES
            .journaled_rows
            .store(self.file_rows, Ordering::Relaxed);
        if self.files.len() > MAX_FILES {
            self.compact();
        }
    }

    /// Merges the journal's files into one (a long outage writes one per
    /// flush).
    fn compact(&mut self) {
        let all = match self.journal.read_files(&self.files) {
            Ok(all) => all,
            Err(e) => {
                tracing::error!("private mode: cannot read the journal to compact it ({e})");
                return;
            }
        };
        match self.journal.write(&all) {
            Ok(path) => {
                self.journal.remove(&self.files);
                self.files = vec![path];
                self.file_rows = all.rows() as u64;
            }
            Err(e) => tracing::error!("private mode: cannot compact the journal: {e}"),
        }
    }

    /// At the stop: one last write, else the journal.
    async fn finish(&mut self) {
        self.drain();
        self.flush(FINAL_WRITE_TIMEOUT).await;
        self.journal_pending();
        let clients = self.link.take_parting();
        if let Err(e) = self.journal.write_clients(&clients) {
            tracing::error!(
                "private mode: cannot keep {} clients' last reports in {} ({e}): their next announces start a new count",
                clients.len(),
                self.config.journal_dir
            );
        }
        self.show();
        tracing::info!(
            journaled_files = self.files.len(),
            "private mode: database thread stopped"
        );
    }

    fn show(&self) {
        FIGURES.pending_rows.store(
            self.pending.rows() as u64 + self.file_rows,
            Ordering::Relaxed,
        );
    }
}
