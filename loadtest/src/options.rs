//! Run options: plain data with defaults, usable from the CLI and from
//! code (`Options::udp(addr).duration(..)`), validated once in `run`.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::Error;

/// Longest run we accept: load runs must always be bounded.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most info hashes that fit one BEP 15 scrape packet below a 1500 MTU.
pub const MAX_UDP_SCRAPE: usize = 74;
/// Transaction ids carry the slot index in 16 bits.
pub const MAX_INFLIGHT: usize = 65_535;
/// BEP 15 connection ids are to be used for one minute.
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Udp,
    Http,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Udp => "udp",
            Mode::Http => "http",
        }
    }
}

/// Which torrents requests go to; see [`crate::workload::weights`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Popularity {
    Uniform,
    Pareto(f64),
    ExpDecay,
}

impl FromStr for Popularity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(Popularity::Uniform),
            "exp-decay" => Ok(Popularity::ExpDecay),
            "pareto" => Ok(Popularity::Pareto(1.0)),
            _ => match s.strip_prefix("pareto:").map(str::parse::<f64>) {
                Some(Ok(shape)) if (0.05..=100.0).contains(&shape) => Ok(Popularity::Pareto(shape)),
                Some(_) => Err(format!("bad pareto shape in {s:?} (want 0.05..=100)")),
                None => Err(format!(
                    "unknown popularity {s:?} (want pareto:SHAPE, uniform or exp-decay)"
                )),
            },
        }
    }
}

impl fmt::Display for Popularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Popularity::Uniform => f.write_str("uniform"),
            Popularity::Pareto(s) => write!(f, "pareto:{s}"),
            Popularity::ExpDecay => f.write_str("exp-decay"),
        }
    }
}

/// Relative weights `connect:announce:scrape`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    pub connect: u32,
    pub announce: u32,
    pub scrape: u32,
}

impl Default for Mix {
    /// Announce-dominated, so the figures measure the tracker's real work;
    /// aquatic_udp_load_test's default is `50:50:1`.
    fn default() -> Self {
        Mix {
            connect: 1,
            announce: 100,
            scrape: 1,
        }
    }
}

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let bad = || format!("bad mix {s:?} (want CONNECT:ANNOUNCE:SCRAPE weights, e.g. 1:100:1)");
        if parts.len() != 3 {
            return Err(bad());
        }
        let mut w = [0u32; 3];
        for (slot, p) in w.iter_mut().zip(&parts) {
            *slot = p.trim().parse::<u32>().map_err(|_| bad())?;
            if *slot > 1_000_000 {
                return Err(bad());
            }
        }
        Ok(Mix {
            connect: w[0],
            announce: w[1],
            scrape: w[2],
        })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.connect, self.announce, self.scrape)
    }
}

/// Everything a run needs. Fields are public; [`Options::udp`] and
/// [`Options::http`] give the defaults and the setters chain.
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    pub target: SocketAddr,
    /// Measured time, after warmup.
    pub duration: Duration,
    /// Load before measuring starts; not counted anywhere in the report.
    pub warmup: Duration,
    /// One worker pinned to each CPU; when empty, `workers` unpinned threads.
    pub cpus: Vec<usize>,
    pub workers: usize,
    pub torrents: usize,
    /// Number of distinct peer identities (peer id, port, key).
    pub peers: usize,
    pub popularity: Popularity,
    /// Fraction of announces with `left = 0`.
    pub seeders: f64,
    pub mix: Mix,
    pub numwant: u32,
    /// Info hashes per scrape request.
    pub scrape_size: usize,
    /// UDP sockets or TCP connections per worker.
    pub sockets: usize,
    /// Outstanding requests per socket/connection (closed-loop window).
    pub inflight: usize,
    /// Open loop: total requests per second over all workers.
    pub rate: Option<f64>,
    pub timeout: Duration,
    pub announce_path: String,
    pub scrape_path: String,
    /// UDP: BEP 41 URL data sent with every announce (e.g. a private
    /// tracker's `/<passkey>/announce`); empty: none.
    pub url_data: String,
    /// UDP: send announces of a batch as one GSO message (the server still
    /// sees ordinary datagrams); saves most of our send-path CPU.
    pub gso: bool,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options::udp(SocketAddr::from(([127, 0, 0, 1], 3000)))
    }
}

impl Options {
    pub fn udp(target: SocketAddr) -> Self {
        Options {
            mode: Mode::Udp,
            target,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            cpus: Vec::new(),
            workers: 1,
            torrents: 10_000,
            peers: 100_000,
            popularity: Popularity::Pareto(1.0),
            seeders: 0.75,
            mix: Mix::default(),
            numwant: 50,
            scrape_size: 5,
            sockets: 8,
            // 8 x 32 outstanding keeps a one-core server busy without
            // queueing needlessly (more only adds latency).
            inflight: 32,
            rate: None,
            timeout: Duration::from_secs(1),
            announce_path: "/announce".into(),
            scrape_path: "/scrape".into(),
            url_data: String::new(),
            gso: true,
            progress: false,
            seed: DEFAULT_SEED,
        }
    }

    /// HTTP defaults: no pipelining, like ordinary clients.
    pub fn http(target: SocketAddr) -> Self {
        Options {
            mode: Mode::Http,
            sockets: 32,
            inflight: 1,
            ..Options::udp(target)
        }
    }

    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = d;
        self
    }
    pub fn warmup(mut self, d: Duration) -> Self {
        self.warmup = d;
        self
    }
    pub fn cpus(mut self, cpus: Vec<usize>) -> Self {
        self.cpus = cpus;
        self
    }
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }
    pub fn mix(mut self, mix: Mix) -> Self {
        self.mix = mix;
        self
    }
    pub fn popularity(mut self, p: Popularity) -> Self {
        self.popularity = p;
        self
    }
    pub fn sockets(mut self, n: usize) -> Self {
        self.sockets = n;
        self
    }
    pub fn inflight(mut self, n: usize) -> Self {
        self.inflight = n;
        self
    }
    pub fn rate(mut self, r: Option<f64>) -> Self {
        self.rate = r;
        self
    }
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    pub fn numwant(mut self, n: u32) -> Self {
        self.numwant = n;
        self
    }
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Number of worker threads this run starts.
    pub fn worker_count(&self) -> usize {
        if self.cpus.is_empty() {
            self.workers
        } else {
            self.cpus.len()
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Options(m));
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad(format!(
                "duration must be > 0 and at most 1h, got {:?}",
                self.duration
            ));
        }
        if self.warmup > MAX_DURATION {
            return bad("warmup must be at most 1h".into());
        }
        if self.worker_count() == 0 || self.worker_count() > 1024 {
            return bad("need 1..=1024 workers".into());
        }
        let max_cpu = libc::CPU_SETSIZE as usize;
        for (i, &c) in self.cpus.iter().enumerate() {
            if c >= max_cpu || self.cpus[..i].contains(&c) {
                return bad(format!("bad or repeated cpu {c}"));
            }
        }
        if self.torrents == 0 || self.torrents > 50_000_000 {
            return bad("torrents must be in 1..=50000000".into());
        }
        if self.peers == 0 || self.peers > u32::MAX as usize {
            return bad("peers must be in 1..=4294967295".into());
        }
        if let Popularity::Pareto(s) = self.popularity {
            if !(s.is_finite() && s > 0.0) {
                return bad("pareto shape must be > 0".into());
            }
        }
        if !(0.0..=1.0).contains(&self.seeders) {
            return bad("seeders must be a fraction in 0..=1".into());
        }
        let m = self.mix;
        let useful = match self.mode {
            Mode::Udp => m.connect + m.announce + m.scrape,
            Mode::Http => m.announce + m.scrape,
        };
        if useful == 0 {
            return bad(format!(
                "mix {m} sends nothing in {} mode",
                self.mode.name()
            ));
        }
        if self.numwant > i32::MAX as u32 {
            return bad("numwant too large".into());
        }
        let max_scrape = match self.mode {
            Mode::Udp => MAX_UDP_SCRAPE,
            Mode::Http => 1000,
        };
        if self.scrape_size == 0 || self.scrape_size > max_scrape {
            return bad(format!("scrape size must be in 1..={max_scrape}"));
        }
        if self.sockets == 0 || self.sockets > 10_000 {
            return bad("sockets must be in 1..=10000".into());
        }
        if self.inflight == 0 || self.inflight > MAX_INFLIGHT {
            return bad(format!("inflight must be in 1..={MAX_INFLIGHT}"));
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0 && r <= 1e9) {
                return bad("rate must be > 0 requests/s".into());
            }
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return bad("timeout must be > 0 and at most 60s".into());
        }
        for p in [&self.announce_path, &self.scrape_path] {
            if !p.starts_with('/') || p.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return bad(format!("bad HTTP path {p:?}"));
            }
        }
        if self.url_data.len() > crate::udp::MAX_URL_DATA {
            return bad(format!(
                "URL data must be at most {} bytes",
                crate::udp::MAX_URL_DATA
            ));
        }
        Ok(())
    }
}

/// Fixed default seed so runs are repeatable.
pub const DEFAULT_SEED: u64 = 0x5ba0_1c0f_fee0_0001;

/// `--cpus 0,1` or `--cpus 2-5,8`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad cpu list {s:?}");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b || b - a > 1024 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(format!("empty cpu list {s:?}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_popularity_mix_and_cpus() {
        assert_eq!("uniform".parse::<Popularity>(), Ok(Popularity::Uniform));
        assert_eq!(
            "pareto:0.5".parse::<Popularity>(),
            Ok(Popularity::Pareto(0.5))
        );
        assert_eq!("exp-decay".parse::<Popularity>(), Ok(Popularity::ExpDecay));
        assert!("pareto:-1".parse::<Popularity>().is_err());
        assert!("zipf".parse::<Popularity>().is_err());
        assert_eq!(
            "50:50:1".parse::<Mix>(),
            Ok(Mix {
                connect: 50,
                announce: 50,
                scrape: 1
            })
        );
        assert!("1:2".parse::<Mix>().is_err());
        assert_eq!(parse_cpu_list("0,2-3"), Ok(vec![0, 2, 3]));
        assert!(parse_cpu_list("x").is_err());
    }

    #[test]
    fn refuses_unbounded_or_empty_runs() {
        let o = Options::default();
        assert!(o.validate().is_ok());
        assert!(o.clone().duration(Duration::ZERO).validate().is_err());
        assert!(o
            .clone()
            .duration(Duration::from_secs(3601))
            .validate()
            .is_err());
        assert!(o
            .clone()
            .mix(Mix {
                connect: 0,
                announce: 0,
                scrape: 0
            })
            .validate()
            .is_err());
        let http = Options::http(o.target).mix(Mix {
            connect: 1,
            announce: 0,
            scrape: 0,
        });
        assert!(http.validate().is_err());
        assert!(o.clone().cpus(vec![1, 1]).validate().is_err());
        let mut long = o.clone();
        long.url_data = "x".repeat(256);
        assert!(long.validate().is_err());
        assert!(o.inflight(0).validate().is_err());
    }
}
