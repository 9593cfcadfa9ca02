//! What operators watch: per-shard counters and gauges, gathered on
//! demand by the metrics endpoint (`/metrics`, `/stats`, `/health`).
//!
//! Each shard owns its figures outright. The endpoint never reads a
//! shard's cells: it raises the shard's `wanted` generation, and the shard,
//! at its next housekeeping tick (100 ms), copies its figures into its
//! slot. A shard that does not publish within the deadline is reported
//! down; that is the health check.

pub mod counters;
pub mod endpoint;
mod json;
pub mod latency;
mod process;
mod prometheus;
pub mod reloads;

use counters::CounterFigures;
use latency::LatencyFigures;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::storage::SwarmTotals;

/// One shard's figures at one moment (or the sum over shards).
#[derive(Clone, Debug, Default)]
pub struct ShardFigures {
    pub counters: CounterFigures,
    pub swarms: SwarmTotals,
    /// Present when `metrics.latency_histograms` is on.
    pub latency: Option<LatencyFigures>,
}

impl ShardFigures {
    pub fn add(&mut self, other: &ShardFigures) {
        self.counters.add(&other.counters);
        let (a, b) = (&mut self.swarms, &other.swarms);
        a.torrents += b.torrents;
        a.evicted_torrents += b.evicted_torrents;
        a.unstored_peers += b.unstored_peers;
        for (x, y) in [(&mut a.v4, &b.v4), (&mut a.v6, &b.v6)] {
            x.seeders += y.seeders;
            x.leechers += y.leechers;
        }
        if let Some(theirs) = &other.latency {
            self.latency
                .get_or_insert_with(Default::default)
                .add(theirs);
        }
    }
}

struct Slot {
    /// The newest generation the endpoint asked for.
    wanted: AtomicU64,
    /// The generation of the figures in `figures`.
    published: AtomicU64,
    figures: Mutex<Option<ShardFigures>>,
}

/// The meeting point of the shards and the metrics endpoint.
pub struct Registry {
    slots: Vec<Slot>,
    generation: AtomicU64,
    pub latency_histograms: bool,
    pub started: SystemTime,
}

/// Every shard's latest figures after a gather.
pub struct Gathered {
    pub shards: Vec<ShardReport>,
    pub latency_histograms: bool,
    pub started: SystemTime,
}

pub struct ShardReport {
    /// The figures just published, or the last ones when the shard missed
    /// the deadline (empty if it never published).
    pub figures: ShardFigures,
    /// Whether the shard answered within the deadline.
    pub up: bool,
}

impl Gathered {
    pub fn totals(&self) -> ShardFigures {
        let mut total = ShardFigures::default();
        for s in &self.shards {
            total.add(&s.figures);
        }
        total
    }

    pub fn all_up(&self) -> bool {
        self.shards.iter().all(|s| s.up)
    }
}

impl Registry {
    pub fn new(shards: usize, latency_histograms: bool) -> Self {
        Self {
            slots: (0..shards)
                .map(|_| Slot {
                    wanted: AtomicU64::new(0),
                    published: AtomicU64::new(0),
                    figures: Mutex::new(None),
                })
                .collect(),
            generation: AtomicU64::new(0),
            latency_histograms,
            started: SystemTime::now(),
        }
    }

    /// Shard side: the generation to publish, if the endpoint is waiting.
    pub fn wanted(&self, shard: usize) -> Option<u64> {
        let slot = &self.slots[shard];
        let wanted = slot.wanted.load(Ordering::Acquire);
        (wanted > slot.published.load(Ordering::Relaxed)).then_some(wanted)
    }

    /// Shard side: stores fresh figures for `generation`.
    pub fn publish(&self, shard: usize, generation: u64, figures: ShardFigures) {
        let slot = &self.slots[shard];
        if let Ok(mut f) = slot.figures.lock() {
            *f = Some(figures);
        }
        slot.published.store(generation, Ordering::Release);
    }

    /// Endpoint side: asks every shard for fresh figures and waits for
    /// them up to `deadline`.
    pub fn gather(&self, deadline: Duration) -> Gathered {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        for slot in &self.slots {
            slot.wanted.fetch_max(generation, Ordering::Release);
        }
        let fresh = |slot: &Slot| slot.published.load(Ordering::Acquire) >= generation;
        let until = Instant::now() + deadline;
        while !self.slots.iter().all(fresh) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
        let shards = self
            .slots
            .iter()
            .map(|slot| ShardReport {
                up: fresh(slot),
                figures: slot
                    .figures
                    .lock()
                    .ok()
                    .and_then(|f| f.clone())
                    .unwrap_or_default(),
            })
            .collect();
        Gathered {
            shards,
            latency_histograms: self.latency_histograms,
            started: self.started,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_that_does_not_publish_is_down_and_keeps_its_last_figures() {
        let r = std::sync::Arc::new(Registry::new(2, false));
        let worker = {
            let r = r.clone();
            std::thread::spawn(move || {
                // Shard 0 answers the first two gathers; shard 1 only the first.
                let mut answered = [0; 2];
                let until = Instant::now() + Duration::from_secs(5);
                while answered[0] < 2 && Instant::now() < until {
                    for (shard, done) in answered.iter_mut().enumerate() {
                        if *done == 1 && shard == 1 {
                            continue;
                        }
                        if let Some(g) = r.wanted(shard) {
                            let mut f = ShardFigures::default();
                            f.swarms.torrents = 10 + shard + *done;
                            r.publish(shard, g, f);
                            *done += 1;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let first = r.gather(Duration::from_secs(2));
        assert!(first.all_up());
        assert_eq!(first.totals().swarms.torrents, 21);
        let second = r.gather(Duration::from_millis(200));
        worker.join().unwrap();
        assert!(second.shards[0].up && !second.shards[1].up);
        assert!(!second.all_up());
        assert_eq!(second.shards[0].figures.swarms.torrents, 11);
        assert_eq!(second.shards[1].figures.swarms.torrents, 11);
    }
}
