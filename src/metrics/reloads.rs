//! Configuration reloads (SIGHUP) since start, taken and refused. Counted
//! by the reload thread, never by a shard.

use std::sync::atomic::{AtomicU64, Ordering};

static TAKEN: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);

pub fn record(taken: bool) {
    let counter = if taken { &TAKEN } else { &REFUSED };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// (taken, refused).
pub fn counts() -> (u64, u64) {
    (
        TAKEN.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
    )
}
