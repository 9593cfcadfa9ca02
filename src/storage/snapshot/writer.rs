//! The snapshot writer: a plain thread that asks the shards for their
//! swarms every `storage.snapshot.interval` (a generation number they read
//! at their housekeeping tick), streams the parts they send into a new file
//! and puts it in place once every shard said it is done. At shutdown each
//! shard sends everything once more as the final generation.
//!
//! Shards never wait on it: they `try_send` over a bounded channel and
//! retry a full one later (only the final export, when nothing is served
//! any more, waits for room). A generation that does not complete (a shard
//! stuck, a disk error) is abandoned and the previous snapshot stays.

use super::format::{self, Header, TorrentRecord};
use super::AtomicFile;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The generation shards send at shutdown.
pub const FINAL: u64 = u64::MAX;

/// Parts in flight from the shards to the writer.
const CHANNEL_CAPACITY: usize = 64;

/// The longest a generation may take before it is abandoned.
const MAX_GENERATION_TIME: Duration = Duration::from_secs(120);

/// How long the writer waits, after the shards were asked to stop, for
/// their final parts.
const FINAL_DEADLINE: Duration = Duration::from_secs(60);

/// What a shard sends the writer.
pub enum Message {
    Part {
        generation: u64,
        torrents: Vec<TorrentRecord>,
    },
    Done {
        generation: u64,
        shard: usize,
    },
}

/// What the shards and the writer share.
pub struct Snapshots {
    /// The generation the writer wants; a shard exports when it grows.
    wanted: AtomicU64,
    tx: SyncSender<Message>,
    /// Set once every shard has stopped (their final parts are in, or
    /// will never come).
    shards_gone: AtomicBool,
}

impl Snapshots {
    pub fn wanted(&self) -> u64 {
        self.wanted.load(Ordering::Relaxed)
    }

    /// Hands a message over if there is room.
    pub fn try_send(&self, message: Message) -> Result<(), TrySendError<Message>> {
        self.tx.try_send(message)
    }

    /// Hands a message over, waiting for room: for the final export only,
    /// when the shard serves nothing any more.
    pub fn send(&self, message: Message) -> bool {
        self.tx.send(message).is_ok()
    }

    pub fn shards_gone(&self) {
        self.shards_gone.store(true, Ordering::Relaxed);
    }
}

/// Where and how often, and for whom.
pub struct Plan {
    pub path: PathBuf,
    pub interval: Duration,
    pub shards: usize,
    /// Written into each file's header (a random connection-id key).
    pub connection_id_key: Option<(u64, u64)>,
}

/// Starts the writer thread.
pub fn start(
    plan: Plan,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<(Arc<Snapshots>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
    let shared = Arc::new(Snapshots {
        wanted: AtomicU64::new(0),
        tx,
        shards_gone: AtomicBool::new(false),
    });
    let writer = Writer {
        plan,
        shared: shared.clone(),
        shutdown,
        current: None,
        generation: 0,
    };
    let handle = std::thread::Builder::new()
        .name("shoal-snapshot".into())
        .spawn(move || writer.run(rx))?;
    Ok((shared, handle))
}

struct InProgress {
    generation: u64,
    file: AtomicFile,
    done: Vec<bool>,
    started: Instant,
    torrents: usize,
}

struct Writer {
    plan: Plan,
    shared: Arc<Snapshots>,
    shutdown: Arc<AtomicBool>,
    current: Option<InProgress>,
    generation: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Writer {
    fn run(mut self, rx: Receiver<Message>) {
        let mut next_due = Instant::now() + self.plan.interval;
        let mut stopping_since: Option<Instant> = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(message) => {
                    if self.file(message) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if self.shutdown.load(Ordering::Relaxed) {
                let since = *stopping_since.get_or_insert(now);
                let gone = self.shared.shards_gone.load(Ordering::Relaxed);
                // Once every shard stopped, whatever they sent is queued:
                // drain it, then give up on what is missing.
                if gone {
                    while let Ok(message) = rx.try_recv() {
                        if self.file(message) {
                            return;
                        }
                    }
                }
                if gone || now - since > FINAL_DEADLINE {
                    break;
                }
                continue;
            }
            if let Some(c) = &self.current {
                if now - c.started > MAX_GENERATION_TIME {
                    tracing::warn!(
                        generation = c.generation,
                        "snapshot not complete after {MAX_GENERATION_TIME:?}: abandoned, the previous one stays"
                    );
                    self.abandon();
                }
            } else if now >= next_due {
                next_due = now + self.plan.interval;
                self.generation += 1;
                if self.begin(self.generation) {
                    self.shared.wanted.store(self.generation, Ordering::Relaxed);
                }
            }
        }
        if let Some(c) = self.current.take() {
            tracing::warn!(
                generation = c.generation,
                "shards stopped before their snapshot was complete: abandoned, the previous one stays"
            );
            c.file.abandon();
        }
    }

    /// Files one message; returns true when the final snapshot is written.
    fn file(&mut self, message: Message) -> bool {
        let generation = match &message {
            Message::Part { generation, .. } | Message::Done { generation, .. } => *generation,
        };
        if generation == FINAL && self.current.as_ref().is_none_or(|c| c.generation != FINAL) {
            // The shards are stopping: whatever was under way gives way to
            // the final snapshot.
            self.abandon();
            if !self.begin(FINAL) {
                return true;
            }
        }
        let Some(c) = self.current.as_mut().filter(|c| c.generation == generation) else {
            return false; // an abandoned generation's stragglers
        };
        match message {
            Message::Part { torrents, .. } => {
                c.torrents += torrents.len();
                if let Err(e) = c.file.write(&format::encode_block(&torrents)) {
                    tracing::error!(path = %self.plan.path.display(), error = %e, "writing the snapshot failed; the previous one stays");
                    self.abandon();
                }
                false
            }
            Message::Done { shard, .. } => {
                if let Some(d) = c.done.get_mut(shard) {
                    *d = true;
                }
                if c.done.iter().all(|d| *d) {
                    return self.complete();
                }
                false
            }
        }
    }

    /// Opens the file of a new generation; false if it cannot be created.
    fn begin(&mut self, generation: u64) -> bool {
        let header = Header {
            created_unix: unix_now(),
            connection_id_key: self.plan.connection_id_key,
        };
        let file = AtomicFile::create(&self.plan.path).and_then(|mut f| {
            f.write(&format::encode_start(&header))?;
            Ok(f)
        });
        match file {
            Ok(file) => {
                self.current = Some(InProgress {
                    generation,
                    file,
                    done: vec![false; self.plan.shards],
                    started: Instant::now(),
                    torrents: 0,
                });
                true
            }
            Err(e) => {
                tracing::error!(path = %self.plan.path.display(), error = %e, "cannot create the snapshot file");
                false
            }
        }
    }

    fn abandon(&mut self) {
        if let Some(c) = self.current.take() {
            c.file.abandon();
        }
    }

    /// Puts the finished file in place; true if it was the final one.
    fn complete(&mut self) -> bool {
        let Some(c) = self.current.take() else {
            return false;
        };
        let took = c.started.elapsed();
        match c.file.finish() {
            Ok(()) => tracing::info!(
                path = %self.plan.path.display(),
                torrents = c.torrents,
                took_ms = took.as_millis() as u64,
                "snapshot written"
            ),
            Err(e) => {
                tracing::error!(path = %self.plan.path.display(), error = %e, "finishing the snapshot failed; the previous one stays")
            }
        }
        c.generation == FINAL
    }
}
