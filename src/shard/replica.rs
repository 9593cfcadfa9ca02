//! A shard's side of shared swarms (`storage.backend: redis`): each tick it
//! hands the changes its announces made to the Redis service thread and
//! applies what other instances changed in its torrents. Never waits: a
//! full queue keeps the changes for the next tick.

use super::{Clock, Shard};
use crate::storage::replica::{Change, Remote};

/// Messages from the service thread applied per tick, at most.
const MESSAGES_PER_TICK: usize = 256;

pub(super) fn exchange(shard: &Shard, clock: Clock) {
    let Some(replication) = &shard.common.replication else {
        return;
    };
    let mut tracker = shard.tracker.borrow_mut();
    let mut changes = tracker.take_journal();
    if !changes.is_empty() {
        for c in &mut changes {
            c.update.expires = to_unix(c.update.expires, clock);
        }
        if let Err(mut back) = replication.push(changes) {
            for c in &mut back {
                c.update.expires = to_mono(c.update.expires, clock).unwrap_or(clock.mono);
            }
            tracker.return_journal(back);
        }
    }
    for _ in 0..MESSAGES_PER_TICK {
        match replication.next_for(shard.id) {
            Some(Remote::Changes(changes)) => {
                for change in changes {
                    apply(&mut tracker, change, clock);
                }
            }
            Some(Remote::Downloaded(counts)) => {
                for (info_hash, downloaded) in counts {
                    tracker.raise_downloaded(&info_hash, downloaded);
                }
            }
            None => break,
        }
    }
}

fn apply(
    tracker: &mut crate::tracker::Tracker<crate::storage::memory::MemoryStore>,
    mut change: Change,
    clock: Clock,
) {
    match to_mono(change.update.expires, clock) {
        Some(expires) => change.update.expires = expires,
        // Already expired: only a removal still matters.
        None if change.stopped => {}
        None => return,
    }
    tracker.apply_remote(&change);
}

/// A store-clock expiry as Unix seconds.
fn to_unix(expires: u32, clock: Clock) -> u32 {
    clock
        .unix
        .saturating_add(expires.saturating_sub(clock.mono))
}

/// A Unix expiry on the store clock; `None` once it is past.
fn to_mono(expires: u32, clock: Clock) -> Option<u32> {
    let remaining = expires.checked_sub(clock.unix).filter(|r| *r > 0)?;
    Some(clock.mono.saturating_add(remaining))
}
