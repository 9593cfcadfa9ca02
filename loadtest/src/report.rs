//! The end result: merged worker counters as a [`Report`], printed as a
//! table or as one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::options::Options;
use crate::stats::{ErrorKind, WorkerStats};
use crate::workload::RequestKind;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ByAction {
    pub connect: u64,
    pub announce: u64,
    pub scrape: u64,
}

impl ByAction {
    fn from(counts: &[u64; 3]) -> Self {
        ByAction {
            connect: counts[RequestKind::Connect as usize],
            announce: counts[RequestKind::Announce as usize],
            scrape: counts[RequestKind::Scrape as usize],
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// Everything measured after warmup. Only valid responses count as
/// `responses`; anything a check rejected is in `errors`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub mode: String,
    pub target: String,
    pub workers: usize,
    pub cpus: Vec<usize>,
    /// Measured period in seconds (warmup excluded).
    pub duration_s: f64,
    pub warmup_s: f64,
    /// "closed" (as fast as answered) or "open" (fixed rate).
    pub load: String,
    pub rate: Option<f64>,
    pub sockets_per_worker: usize,
    pub inflight: usize,
    pub requests_sent: u64,
    pub responses: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// Answers that came after their request had timed out (not errors).
    pub late: u64,
    /// Open loop: requests due while every slot was busy, never sent.
    pub skipped: u64,
    /// Requests still unanswered when the run stopped (not timeouts).
    pub outstanding_at_end: u64,
    pub responses_per_second: f64,
    /// Valid responses in each 1 s interval (the last may be shorter).
    pub per_interval: Vec<u64>,
    /// Valid responses by action.
    pub by_action: ByAction,
    pub sent_by_action: ByAction,
    /// Error counts by cause (only causes seen).
    pub error_kinds: BTreeMap<String, u64>,
    pub peers_per_announce: f64,
    pub latency_us: Latency,
}

impl Report {
    pub fn build(opts: &Options, s: &WorkerStats) -> Report {
        let h = &s.latency_us;
        let latency_us = if h.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: h.value_at_quantile(0.5),
                p90: h.value_at_quantile(0.9),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
                mean: (h.mean() * 10.0).round() / 10.0,
            }
        };
        let error_kinds = ErrorKind::ALL
            .iter()
            .filter(|k| s.errors[**k as usize] > 0)
            .map(|k| (k.name().to_string(), s.errors[*k as usize]))
            .collect();
        let duration_s = opts.duration.as_secs_f64();
        let announces = s.by_kind[RequestKind::Announce as usize];
        Report {
            mode: opts.mode.name().into(),
            target: opts.target.to_string(),
            workers: opts.worker_count(),
            cpus: opts.cpus.clone(),
            duration_s,
            warmup_s: opts.warmup.as_secs_f64(),
            load: if opts.rate.is_some() {
                "open"
            } else {
                "closed"
            }
            .into(),
            rate: opts.rate,
            sockets_per_worker: opts.sockets,
            inflight: opts.inflight,
            requests_sent: s.sent,
            responses: s.responses,
            errors: s.error_total(),
            timeouts: s.timeouts,
            late: s.late,
            skipped: s.skipped,
            outstanding_at_end: s.outstanding_at_end,
            responses_per_second: (s.responses as f64 / duration_s * 10.0).round() / 10.0,
            per_interval: s.per_interval.clone(),
            by_action: ByAction::from(&s.by_kind),
            sent_by_action: ByAction::from(&s.sent_by_kind),
            error_kinds,
            peers_per_announce: if announces == 0 {
                0.0
            } else {
                (s.peers_received as f64 / announces as f64 * 100.0).round() / 100.0
            },
            latency_us,
        }
    }

    pub fn to_json(&self) -> String {
        // A struct of numbers, strings and maps with string keys always
        // serializes.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Human-readable summary.
    pub fn to_table(&self) -> String {
        let mut t = String::new();
        let row = |t: &mut String, k: &str, v: String| {
            let _ = writeln!(t, "  {k:<22} {v}");
        };
        let _ = writeln!(t, "shoal-loadtest {} -> {}", self.mode, self.target);
        let cpus = if self.cpus.is_empty() {
            "unpinned".to_string()
        } else {
            self.cpus
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        row(&mut t, "workers", format!("{} (cpus {cpus})", self.workers));
        row(
            &mut t,
            "load",
            match self.rate {
                Some(r) => format!(
                    "open loop, {r} req/s, inflight {} x {} sockets",
                    self.inflight, self.sockets_per_worker
                ),
                None => format!(
                    "closed loop, inflight {} x {} sockets",
                    self.inflight, self.sockets_per_worker
                ),
            },
        );
        row(
            &mut t,
            "duration",
            format!("{:.1} s (+{:.1} s warmup)", self.duration_s, self.warmup_s),
        );
        row(
            &mut t,
            "responses/s",
            format!("{:.0}", self.responses_per_second),
        );
        row(&mut t, "requests sent", self.requests_sent.to_string());
        row(
            &mut t,
            "responses",
            format!(
                "{} (connect {}, announce {}, scrape {})",
                self.responses,
                self.by_action.connect,
                self.by_action.announce,
                self.by_action.scrape
            ),
        );
        let kinds: Vec<String> = self
            .error_kinds
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        row(
            &mut t,
            "errors",
            if kinds.is_empty() {
                "0".into()
            } else {
                format!("{} ({})", self.errors, kinds.join(", "))
            },
        );
        row(
            &mut t,
            "timeouts",
            format!("{} (late answers {})", self.timeouts, self.late),
        );
        if self.rate.is_some() {
            row(&mut t, "skipped (window full)", self.skipped.to_string());
        }
        row(
            &mut t,
            "unanswered at end",
            self.outstanding_at_end.to_string(),
        );
        row(
            &mut t,
            "peers per announce",
            format!("{:.2}", self.peers_per_announce),
        );
        let l = &self.latency_us;
        row(
            &mut t,
            "latency us",
            format!(
                "p50 {} p90 {} p99 {} p99.9 {} max {} mean {:.1}",
                l.p50, l.p90, l.p99, l.p999, l.max, l.mean
            ),
        );
        let per: Vec<String> = self.per_interval.iter().map(|c| c.to_string()).collect();
        row(&mut t, "per second", per.join(" "));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_serializes_required_fields() {
        let opts = Options::default();
        let mut s = WorkerStats::new(2);
        s.sent(RequestKind::Announce);
        s.ok(RequestKind::Announce, 150_000, 0);
        s.error(ErrorKind::BadBencode);
        let mut other = WorkerStats::new(2);
        other.ok(RequestKind::Connect, 50_000, 1);
        s.merge(&other);
        let r = Report::build(&opts, &s);
        assert_eq!(r.responses, 2);
        assert_eq!(r.errors, 1);
        assert_eq!(r.per_interval, vec![1, 1]);
        assert_eq!(
            r.by_action,
            ByAction {
                connect: 1,
                announce: 1,
                scrape: 0
            }
        );
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for k in [
            "mode",
            "target",
            "duration_s",
            "requests_sent",
            "responses",
            "errors",
            "timeouts",
            "responses_per_second",
            "per_interval",
            "by_action",
            "latency_us",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        for k in ["p50", "p90", "p99", "p999", "max"] {
            assert!(v["latency_us"].get(k).is_some(), "missing latency {k}");
        }
        assert_eq!(v["error_kinds"]["bad_bencode"], 1);
        assert!(r.to_table().contains("responses/s"));
    }
}
