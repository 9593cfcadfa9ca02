//! Per-shard counters: plain cells owned by the shard's thread (no atomics
//! on the request path), copied into `Figures` when the metrics endpoint
//! asks. Every label value is one of the constants here, never a value
//! taken from a request.

use crate::bittorrent::Protocol;
use std::cell::Cell;
use std::net::IpAddr;
use std::time::Duration;

/// What a request asked for; `Invalid` is a request that could not be
/// understood (or routed) but was answered with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Connect,
    Announce,
    Scrape,
    Invalid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// How a request was answered: `Error` is a BEP 15 error packet or an
/// HTTP `failure reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
}

/// Why a UDP datagram got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpDrop {
    /// The connection id was not one this tracker handed out (or expired).
    BadConnectionId,
    /// Too short or unknown to answer safely.
    Malformed,
    /// The owner shard's queue was full (the client retries).
    OwnerSaturated,
    /// `sendmmsg` refused the answer.
    SendFailed,
    /// A hook refused the sender and answering would amplify (a connect)
    /// or the refusal says to stay silent (a ban).
    Refused,
}

/// What was forwarded to the owner shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarded {
    UdpAnnounce,
    HttpAnnounce,
    ScrapePart,
}

pub const PROTOCOLS: [&str; 2] = ["udp", "http"];
pub const ACTIONS: [&str; 4] = ["connect", "announce", "scrape", "invalid"];
pub const FAMILIES: [&str; 2] = ["ipv4", "ipv6"];
pub const OUTCOMES: [&str; 2] = ["ok", "error"];
pub const UDP_DROPS: [&str; 5] = [
    "bad_connection_id",
    "malformed",
    "owner_saturated",
    "send_failed",
    "refused",
];
pub const FORWARDED: [&str; 3] = ["udp_announce", "http_announce", "scrape_part"];

/// Upper bounds (seconds) of the expiry sweep histogram's buckets.
pub const SWEEP_BUCKETS: [f64; 10] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
];

const REQUESTS: usize = PROTOCOLS.len() * ACTIONS.len() * FAMILIES.len();
const RESPONSES: usize = REQUESTS * OUTCOMES.len();

fn request_index(p: Protocol, a: Action, f: Family) -> usize {
    ((p as usize * ACTIONS.len()) + a as usize) * FAMILIES.len() + f as usize
}

fn bump(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}

/// One shard's counters. `&self` everywhere: the shard is shared by its
/// tasks through `Rc`.
pub struct Counters {
    requests: [Cell<u64>; REQUESTS],
    responses: [Cell<u64>; RESPONSES],
    udp_dropped: [Cell<u64>; UDP_DROPS.len()],
    forwarded: [Cell<u64>; FORWARDED.len()],
    udp_datagrams: Cell<u64>,
    http_accepted: Cell<u64>,
    http_refused: Cell<u64>,
    tls_handshake_failures: Cell<u64>,
    http_evicted: Cell<u64>,
    expired_peers: Cell<u64>,
    expired_torrents: Cell<u64>,
    sweep_buckets: [Cell<u64>; SWEEP_BUCKETS.len()],
    sweep_count: Cell<u64>,
    sweep_nanos: Cell<u64>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| Cell::new(0)),
            responses: std::array::from_fn(|_| Cell::new(0)),
            udp_dropped: Default::default(),
            forwarded: Default::default(),
            udp_datagrams: Cell::new(0),
            http_accepted: Cell::new(0),
            http_refused: Cell::new(0),
            tls_handshake_failures: Cell::new(0),
            http_evicted: Cell::new(0),
            expired_peers: Cell::new(0),
            expired_torrents: Cell::new(0),
            sweep_buckets: Default::default(),
            sweep_count: Cell::new(0),
            sweep_nanos: Cell::new(0),
        }
    }
}

impl Counters {
    #[inline]
    pub fn request(&self, p: Protocol, a: Action, f: Family) {
        bump(&self.requests[request_index(p, a, f)], 1);
    }

    #[inline]
    pub fn response(&self, p: Protocol, a: Action, f: Family, o: Outcome) {
        let i = request_index(p, a, f) * OUTCOMES.len() + o as usize;
        bump(&self.responses[i], 1);
    }

    /// A request answered at once: counted as received and as answered.
    #[inline]
    pub fn served(&self, p: Protocol, a: Action, f: Family, o: Outcome) {
        self.request(p, a, f);
        self.response(p, a, f, o);
    }

    #[inline]
    pub fn udp_dropped(&self, why: UdpDrop, n: u64) {
        bump(&self.udp_dropped[why as usize], n);
    }

    #[inline]
    pub fn forwarded(&self, what: Forwarded, n: u64) {
        bump(&self.forwarded[what as usize], n);
    }

    #[inline]
    pub fn udp_datagrams(&self, n: u64) {
        bump(&self.udp_datagrams, n);
    }

    pub fn http_connection(&self, accepted: bool) {
        bump(
            if accepted {
                &self.http_accepted
            } else {
                &self.http_refused
            },
            1,
        );
    }

    /// A TLS handshake that failed or timed out: the connection dropped.
    pub fn tls_handshake_failed(&self) {
        bump(&self.tls_handshake_failures, 1);
    }

    /// A waiting connection closed at the cap to admit a new one.
    pub fn http_evicted(&self) {
        bump(&self.http_evicted, 1);
    }

    pub fn sweep(&self, took: Duration, expired_peers: usize, expired_torrents: usize) {
        bump(&self.expired_peers, expired_peers as u64);
        bump(&self.expired_torrents, expired_torrents as u64);
        bump(&self.sweep_count, 1);
        bump(&self.sweep_nanos, took.as_nanos() as u64);
        let secs = took.as_secs_f64();
        if let Some(b) = SWEEP_BUCKETS.iter().position(|&le| secs <= le) {
            bump(&self.sweep_buckets[b], 1);
        }
    }

    /// A copy of every counter, for the metrics endpoint.
    pub fn snapshot(&self) -> CounterFigures {
        fn copy<const N: usize>(cells: &[Cell<u64>; N]) -> Vec<u64> {
            cells.iter().map(Cell::get).collect()
        }
        CounterFigures {
            requests: copy(&self.requests),
            responses: copy(&self.responses),
            udp_dropped: copy(&self.udp_dropped),
            forwarded: copy(&self.forwarded),
            udp_datagrams: self.udp_datagrams.get(),
            http_accepted: self.http_accepted.get(),
            http_refused: self.http_refused.get(),
            tls_handshake_failures: self.tls_handshake_failures.get(),
            http_evicted: self.http_evicted.get(),
            expired_peers: self.expired_peers.get(),
            expired_torrents: self.expired_torrents.get(),
            sweep_buckets: copy(&self.sweep_buckets),
            sweep_count: self.sweep_count.get(),
            sweep_seconds: self.sweep_nanos.get() as f64 / 1e9,
        }
    }
}

/// A snapshot of one shard's counters (or the sum of several), laid out
/// as in `Counters`; read it through the accessors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CounterFigures {
    requests: Vec<u64>,
    responses: Vec<u64>,
    udp_dropped: Vec<u64>,
    forwarded: Vec<u64>,
    pub udp_datagrams: u64,
    pub http_accepted: u64,
    pub http_refused: u64,
    pub tls_handshake_failures: u64,
    pub http_evicted: u64,
    pub expired_peers: u64,
    pub expired_torrents: u64,
    /// Per bucket (not cumulative), in `SWEEP_BUCKETS` order; sweeps
    /// longer than the last bound count only in `sweep_count`.
    sweep_buckets: Vec<u64>,
    pub sweep_count: u64,
    pub sweep_seconds: f64,
}

impl CounterFigures {
    /// Requests by protocol, action and family (indices into the label
    /// constants).
    pub fn requests(&self, p: usize, a: usize, f: usize) -> u64 {
        let i = (p * ACTIONS.len() + a) * FAMILIES.len() + f;
        self.requests.get(i).copied().unwrap_or(0)
    }

    pub fn responses(&self, p: usize, a: usize, f: usize, o: usize) -> u64 {
        let i = ((p * ACTIONS.len() + a) * FAMILIES.len() + f) * OUTCOMES.len() + o;
        self.responses.get(i).copied().unwrap_or(0)
    }

    pub fn udp_dropped(&self, why: usize) -> u64 {
        self.udp_dropped.get(why).copied().unwrap_or(0)
    }

    pub fn forwarded(&self, what: usize) -> u64 {
        self.forwarded.get(what).copied().unwrap_or(0)
    }

    /// Cumulative sweep counts per bucket bound, as Prometheus wants.
    pub fn sweep_cumulative(&self) -> Vec<u64> {
        self.sweep_buckets
            .iter()
            .scan(0, |sum, n| {
                *sum += n;
                Some(*sum)
            })
            .collect()
    }

    /// Adds `other` into `self` (totals over shards).
    pub fn add(&mut self, other: &CounterFigures) {
        fn add_all(into: &mut Vec<u64>, from: &[u64]) {
            if into.len() < from.len() {
                into.resize(from.len(), 0);
            }
            for (a, b) in into.iter_mut().zip(from) {
                *a += b;
            }
        }
        add_all(&mut self.requests, &other.requests);
        add_all(&mut self.responses, &other.responses);
        add_all(&mut self.udp_dropped, &other.udp_dropped);
        add_all(&mut self.forwarded, &other.forwarded);
        add_all(&mut self.sweep_buckets, &other.sweep_buckets);
        self.udp_datagrams += other.udp_datagrams;
        self.http_accepted += other.http_accepted;
        self.http_refused += other.http_refused;
        self.tls_handshake_failures += other.tls_handshake_failures;
        self.http_evicted += other.http_evicted;
        self.expired_peers += other.expired_peers;
        self.expired_torrents += other.expired_torrents;
        self.sweep_count += other.sweep_count;
        self.sweep_seconds += other.sweep_seconds;
    }

    /// Requests of every label combination.
    pub fn total_requests(&self) -> u64 {
        self.requests.iter().sum()
    }

    pub fn total_responses(&self) -> u64 {
        self.responses.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_label_combination_has_its_own_counter() {
        let c = Counters::default();
        c.served(Protocol::Udp, Action::Announce, Family::V6, Outcome::Ok);
        c.served(Protocol::Http, Action::Scrape, Family::V4, Outcome::Error);
        c.served(Protocol::Http, Action::Scrape, Family::V4, Outcome::Error);
        c.udp_dropped(UdpDrop::SendFailed, 3);
        let s = c.snapshot();
        assert_eq!(s.requests(0, 1, 1), 1);
        assert_eq!(s.responses(0, 1, 1, 0), 1);
        assert_eq!(s.requests(1, 2, 0), 2);
        assert_eq!(s.responses(1, 2, 0, 1), 2);
        assert_eq!(s.responses(1, 2, 0, 0), 0);
        assert_eq!(s.total_requests(), 3);
        assert_eq!(s.udp_dropped(3), 3);
        let mut total = s.clone();
        total.add(&s);
        assert_eq!(total.total_responses(), 6);
    }

    #[test]
    fn sweep_histogram_is_cumulative() {
        let c = Counters::default();
        c.sweep(Duration::from_micros(5), 2, 1);
        c.sweep(Duration::from_micros(700), 0, 0);
        c.sweep(Duration::from_secs(2), 0, 0);
        let s = c.snapshot();
        let cumulative = s.sweep_cumulative();
        assert_eq!(cumulative[0], 1);
        assert_eq!(cumulative[4], 2); // <= 1ms
        assert_eq!(*cumulative.last().unwrap(), 2); // 2s is above every bound
        assert_eq!(s.sweep_count, 3);
        assert_eq!(s.expired_peers, 2);
        assert!(Family::of("::ffff:1.2.3.4".parse().unwrap()) == Family::V4);
    }
}
