//! Optional request latency histograms (`metrics.latency_histograms`),
//! one hdrhistogram per protocol and action, owned by the shard. Latency
//! is from the moment a request was read (the batch's receive time for
//! UDP, the end of the request head for HTTP) to its answer being handed
//! to the kernel.

use super::counters::{Action, ACTIONS, PROTOCOLS};
use crate::bittorrent::Protocol;
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// Served actions with a latency (not `Invalid`).
const TIMED_ACTIONS: usize = 3;
/// Highest recordable latency; longer ones are clamped to it.
const MAX_NANOS: u64 = 60_000_000_000;

/// Bucket bounds (seconds) of the exported Prometheus histograms.
pub const BUCKETS: [f64; 16] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

pub struct Latency {
    histograms: RefCell<Vec<Histogram<u64>>>,
    /// Answers written in the current batch, waiting for its send.
    pending: RefCell<Vec<(Protocol, Action, Instant)>>,
}

fn slot(p: Protocol, a: Action) -> Option<usize> {
    (a != Action::Invalid).then(|| p as usize * TIMED_ACTIONS + a as usize)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NANOS, 2).expect("static histogram bounds are valid")
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            histograms: RefCell::new(
                (0..PROTOCOLS.len() * TIMED_ACTIONS)
                    .map(|_| new_histogram())
                    .collect(),
            ),
            pending: RefCell::default(),
        }
    }
}

impl Latency {
    pub fn record(&self, p: Protocol, a: Action, took: Duration) {
        let Some(i) = slot(p, a) else { return };
        let nanos = (took.as_nanos() as u64).clamp(1, MAX_NANOS);
        self.histograms.borrow_mut()[i].saturating_record(nanos);
    }

    /// Notes an answer received at `received`; `settle` records it once
    /// its batch was sent.
    pub fn mark(&self, p: Protocol, a: Action, received: Instant) {
        self.pending.borrow_mut().push((p, a, received));
    }

    /// Records every marked answer as sent now.
    pub fn settle(&self) {
        let mut pending = self.pending.borrow_mut();
        if pending.is_empty() {
            return;
        }
        let now = Instant::now();
        for (p, a, received) in pending.drain(..) {
            self.record(p, a, now.saturating_duration_since(received));
        }
    }

    pub fn snapshot(&self) -> LatencyFigures {
        let histograms = self.histograms.borrow();
        let mut series = Vec::new();
        for (p, protocol) in PROTOCOLS.iter().enumerate() {
            for (a, action) in ACTIONS.iter().enumerate().take(TIMED_ACTIONS) {
                if *protocol == "http" && *action == "connect" {
                    continue; // HTTP has no connect
                }
                let h = &histograms[p * TIMED_ACTIONS + a];
                series.push(LatencySeries {
                    protocol,
                    action,
                    histogram: h.clone(),
                });
            }
        }
        LatencyFigures { series }
    }
}

/// One shard's latency histograms (or several shards' merged).
#[derive(Clone, Debug, Default)]
pub struct LatencyFigures {
    pub series: Vec<LatencySeries>,
}

#[derive(Clone, Debug)]
pub struct LatencySeries {
    pub protocol: &'static str,
    pub action: &'static str,
    pub histogram: Histogram<u64>,
}

impl LatencySeries {
    /// Cumulative counts at each of `BUCKETS`, then the total.
    pub fn cumulative(&self) -> (Vec<u64>, u64) {
        let h = &self.histogram;
        let counts = BUCKETS
            .iter()
            .map(|le| h.count_between(0, (le * 1e9) as u64))
            .collect();
        (counts, h.len())
    }

    /// Sum of the recorded latencies in seconds (from the histogram's
    /// quantised values).
    pub fn sum_seconds(&self) -> f64 {
        let h = &self.histogram;
        h.iter_recorded()
            .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
            .fold(0.0, |sum, v| sum + v)
            / 1e9
    }
}

impl LatencyFigures {
    pub fn add(&mut self, other: &LatencyFigures) {
        if self.series.is_empty() {
            self.series = other.series.clone();
            return;
        }
        for (mine, theirs) in self.series.iter_mut().zip(&other.series) {
            // Same bounds on every shard: adding cannot fail.
            let _ = mine.histogram.add(&theirs.histogram);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_marked_answers_into_cumulative_buckets() {
        let l = Latency::default();
        l.record(Protocol::Udp, Action::Announce, Duration::from_micros(30));
        l.record(Protocol::Udp, Action::Announce, Duration::from_millis(3));
        l.record(Protocol::Udp, Action::Invalid, Duration::from_millis(3));
        l.mark(Protocol::Http, Action::Scrape, Instant::now());
        l.settle();
        let figures = l.snapshot();
        let announce = figures
            .series
            .iter()
            .find(|s| s.protocol == "udp" && s.action == "announce")
            .unwrap();
        let (buckets, total) = announce.cumulative();
        assert_eq!(total, 2);
        assert_eq!(buckets[1], 0); // <= 10us
        assert_eq!(buckets[3], 1); // <= 50us
        assert_eq!(buckets[9], 2); // <= 5ms
        assert!((announce.sum_seconds() - 0.00303).abs() < 0.0001);
        let scrape = figures
            .series
            .iter()
            .find(|s| s.protocol == "http" && s.action == "scrape")
            .unwrap();
        assert_eq!(scrape.histogram.len(), 1);
    }
}
