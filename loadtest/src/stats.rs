//! Per-worker counters: plain integers on the hot path, a few atomics
//! published now and then for the progress line, merged at the end.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use crate::workload::RequestKind;

/// Why a response (or a request) counted as an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Too short for its header or its action's fixed part.
    Truncated,
    /// Transaction id of no outstanding request (UDP), or an HTTP
    /// response with nothing outstanding.
    UnknownTransaction,
    /// Action other than the request's.
    WrongAction,
    /// BEP 15 error reply (action 3).
    ErrorAction,
    /// Length that does not fit the action (or was cut by the buffer).
    BadLength,
    /// More peers than numwant.
    TooManyPeers,
    /// HTTP status other than 200.
    HttpStatus,
    /// Unparsable HTTP head, missing or bad Content-Length, chunked body.
    HttpFraming,
    /// Body is not a valid bencoded dictionary.
    BadBencode,
    /// `interval` (announce) or `files` (scrape) missing or mistyped.
    MissingField,
    /// The tracker answered with `failure reason`.
    FailureReason,
    /// `peers`/`peers6` of a length that is not a multiple of 6/18.
    BadPeers,
    /// Refused, reset, or closed with requests outstanding.
    Connection,
    /// Any other socket error.
    Socket,
}

impl ErrorKind {
    pub const COUNT: usize = 14;
    pub const ALL: [ErrorKind; Self::COUNT] = [
        ErrorKind::Truncated,
        ErrorKind::UnknownTransaction,
        ErrorKind::WrongAction,
        ErrorKind::ErrorAction,
        ErrorKind::BadLength,
        ErrorKind::TooManyPeers,
        ErrorKind::HttpStatus,
        ErrorKind::HttpFraming,
        ErrorKind::BadBencode,
        ErrorKind::MissingField,
        ErrorKind::FailureReason,
        ErrorKind::BadPeers,
        ErrorKind::Connection,
        ErrorKind::Socket,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Truncated => "truncated",
            ErrorKind::UnknownTransaction => "unknown_transaction",
            ErrorKind::WrongAction => "wrong_action",
            ErrorKind::ErrorAction => "error_action",
            ErrorKind::BadLength => "bad_length",
            ErrorKind::TooManyPeers => "too_many_peers",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::HttpFraming => "http_framing",
            ErrorKind::BadBencode => "bad_bencode",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::FailureReason => "failure_reason",
            ErrorKind::BadPeers => "bad_peers",
            ErrorKind::Connection => "connection",
            ErrorKind::Socket => "socket",
        }
    }
}

/// Highest latency the histogram tracks (µs); larger values are clamped.
pub const MAX_LATENCY_US: u64 = 120_000_000;

pub fn new_histogram() -> Histogram<u64> {
    // 3 significant digits up to 2 minutes: about 100 KiB per worker.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// Everything one worker counted over the measured period.
#[derive(Clone, Debug)]
pub struct WorkerStats {
    pub sent: u64,
    pub sent_by_kind: [u64; 3],
    /// Responses that passed every check.
    pub responses: u64,
    pub by_kind: [u64; 3],
    pub errors: [u64; ErrorKind::COUNT],
    pub timeouts: u64,
    /// Answers to requests already counted as timeouts.
    pub late: u64,
    /// Open loop: requests due but not sent because every slot was busy.
    pub skipped: u64,
    pub outstanding_at_end: u64,
    pub peers_received: u64,
    pub latency_us: Histogram<u64>,
    /// Valid responses per 1 s interval of the measured period.
    pub per_interval: Vec<u64>,
}

impl WorkerStats {
    pub fn new(intervals: usize) -> Self {
        WorkerStats {
            sent: 0,
            sent_by_kind: [0; 3],
            responses: 0,
            by_kind: [0; 3],
            errors: [0; ErrorKind::COUNT],
            timeouts: 0,
            late: 0,
            skipped: 0,
            outstanding_at_end: 0,
            peers_received: 0,
            latency_us: new_histogram(),
            per_interval: vec![0; intervals],
        }
    }

    #[inline]
    pub fn error(&mut self, kind: ErrorKind) {
        self.errors[kind as usize] += 1;
    }

    #[inline]
    pub fn sent(&mut self, kind: RequestKind) {
        self.sent += 1;
        self.sent_by_kind[kind as usize] += 1;
    }

    /// Takes back a request that never reached the server's attention.
    #[inline]
    pub fn unsent(&mut self, kind: RequestKind) {
        self.sent = self.sent.saturating_sub(1);
        let k = &mut self.sent_by_kind[kind as usize];
        *k = k.saturating_sub(1);
    }

    /// A valid response, `latency_ns` after its request, in 1 s interval
    /// `interval` of the measured period (None during warmup).
    #[inline]
    pub fn ok(&mut self, kind: RequestKind, latency_ns: u64, interval: usize) {
        self.responses += 1;
        self.by_kind[kind as usize] += 1;
        let us = (latency_ns / 1000).clamp(1, MAX_LATENCY_US);
        // Cannot fail: the value is clamped into the histogram's range.
        let _ = self.latency_us.record(us);
        if let Some(c) = self.per_interval.get_mut(interval) {
            *c += 1;
        }
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn merge(&mut self, o: &WorkerStats) {
        self.sent += o.sent;
        self.responses += o.responses;
        for i in 0..3 {
            self.sent_by_kind[i] += o.sent_by_kind[i];
            self.by_kind[i] += o.by_kind[i];
        }
        for (a, b) in self.errors.iter_mut().zip(o.errors.iter()) {
            *a += b;
        }
        self.timeouts += o.timeouts;
        self.late += o.late;
        self.skipped += o.skipped;
        self.outstanding_at_end += o.outstanding_at_end;
        self.peers_received += o.peers_received;
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.latency_us.add(&o.latency_us);
        if self.per_interval.len() < o.per_interval.len() {
            self.per_interval.resize(o.per_interval.len(), 0);
        }
        for (a, b) in self.per_interval.iter_mut().zip(o.per_interval.iter()) {
            *a += b;
        }
    }
}

/// Running totals (warmup included) a worker publishes for the progress
/// line; padded so workers do not share cache lines.
#[repr(align(128))]
#[derive(Default, Debug)]
pub struct Live {
    pub sent: AtomicU64,
    pub responses: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
}

impl Live {
    /// Stores `base + current` (base = what was counted during warmup).
    pub fn publish(&self, base: &LiveTotals, s: &WorkerStats) {
        self.sent.store(base.sent + s.sent, Ordering::Relaxed);
        self.responses
            .store(base.responses + s.responses, Ordering::Relaxed);
        self.errors
            .store(base.errors + s.error_total(), Ordering::Relaxed);
        self.timeouts
            .store(base.timeouts + s.timeouts, Ordering::Relaxed);
    }

    pub fn load(&self) -> LiveTotals {
        LiveTotals {
            sent: self.sent.load(Ordering::Relaxed),
            responses: self.responses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
        }
    }
}

#[derive(Clone, Copy, Default, Debug)]
pub struct LiveTotals {
    pub sent: u64,
    pub responses: u64,
    pub errors: u64,
    pub timeouts: u64,
}

impl LiveTotals {
    pub fn of(s: &WorkerStats) -> Self {
        LiveTotals {
            sent: s.sent,
            responses: s.responses,
            errors: s.error_total(),
            timeouts: s.timeouts,
        }
    }

    pub fn add(&mut self, o: &LiveTotals) {
        self.sent += o.sent;
        self.responses += o.responses;
        self.errors += o.errors;
        self.timeouts += o.timeouts;
    }
}
