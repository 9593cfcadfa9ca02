//! A shard's side of snapshots: taking its torrents back at start, and
//! exporting them to the writer thread in slices (periodically, between
//! requests) and all at once when it stops.

use super::Shard;
use crate::storage::memory::MemoryStore;
use crate::storage::snapshot::writer::FINAL;
use crate::storage::snapshot::{self, Message, Snapshots, TorrentRecord};
use crate::tracker::Tracker;
use std::rc::Rc;
use std::sync::mpsc::TrySendError;
use std::time::Duration;

/// Torrents per exported slice: small enough that a slice never holds the
/// core for long (about a millisecond), large enough to keep blocks few.
const SLICE: usize = 4096;

/// Imports this shard's part of the snapshot read at start, its peers'
/// lifetimes rebased to the shard clock `now`.
pub(super) fn restore(
    shard: usize,
    tracker: &mut Tracker<MemoryStore>,
    restored: super::Restored,
    now: u32,
) {
    if restored.torrents.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    let offered = restored.torrents.len();
    let mut peers = Vec::new();
    for torrent in restored.torrents {
        peers.clear();
        peers.extend(
            torrent
                .peers
                .iter()
                .filter_map(|p| snapshot::rebase(p, restored.elapsed, now)),
        );
        if !peers.is_empty() {
            tracker.import(&torrent.info_hash, torrent.downloaded, &peers);
        }
    }
    let totals = tracker.totals();
    tracing::info!(
        shard,
        torrents = totals.torrents,
        peers = totals.v4.seeders + totals.v4.leechers + totals.v6.seeders + totals.v6.leechers,
        offered,
        took_ms = started.elapsed().as_millis() as u64,
        "swarms restored"
    );
}

/// Starts an export when the writer asked for a new generation.
pub(super) fn maybe_start(shard: &Rc<Shard>) {
    let Some(snapshots) = &shard.common.snapshots else {
        return;
    };
    let wanted = snapshots.wanted();
    if wanted > shard.snapshot_generation.get() {
        shard.snapshot_generation.set(wanted);
        glommio::spawn_local(export(shard.clone(), snapshots.clone(), wanted)).detach();
    }
}

/// One slice of the store from `cursor`, as records; where to go on.
fn slice(shard: &Shard, cursor: usize, budget: usize) -> (Vec<TorrentRecord>, Option<usize>) {
    let now = shard.coarse_clock.get().mono;
    let mut torrents = Vec::new();
    let next =
        shard
            .tracker
            .borrow()
            .export(cursor, budget, &mut |info_hash, downloaded, peers| {
                torrents.push(TorrentRecord {
                    info_hash: *info_hash,
                    downloaded,
                    peers: peers.iter().map(|p| snapshot::record(p, now)).collect(),
                });
            });
    (torrents, next)
}

/// Exports the store for `generation` a slice at a time, letting requests
/// in between; a full channel is retried shortly, never waited on.
async fn export(shard: Rc<Shard>, snapshots: std::sync::Arc<Snapshots>, generation: u64) {
    let mut cursor = Some(0);
    while let Some(from) = cursor {
        let (torrents, next) = slice(&shard, from, SLICE);
        cursor = next;
        let mut message = Message::Part {
            generation,
            torrents,
        };
        loop {
            match snapshots.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) => {
                    message = m;
                    glommio::timer::sleep(Duration::from_millis(2)).await;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        glommio::yield_if_needed().await;
    }
    let done = Message::Done {
        generation,
        shard: shard.id,
    };
    let mut message = done;
    while let Err(TrySendError::Full(m)) = snapshots.try_send(message) {
        message = m;
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
}

/// The final export at shutdown: everything, waiting for room (nothing is
/// served any more).
pub(super) fn export_final(shard: &Shard) {
    let Some(snapshots) = &shard.common.snapshots else {
        return;
    };
    let mut cursor = Some(0);
    while let Some(from) = cursor {
        let (torrents, next) = slice(shard, from, SLICE);
        cursor = next;
        if !snapshots.send(Message::Part {
            generation: FINAL,
            torrents,
        }) {
            return;
        }
    }
    snapshots.send(Message::Done {
        generation: FINAL,
        shard: shard.id,
    });
}
