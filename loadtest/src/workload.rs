//! What the simulated swarm looks like: torrents with a popularity law,
//! peer identities, and the request mix. Everything here is sampled per
//! request on the hot path, so it allocates nothing after construction.

use crate::options::{Mix, Options, Popularity};

/// wyrand: tiny, fast and good enough for picking torrents and peers.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in `0..n` (n > 0) by multiply-shift: no division.
    #[inline]
    pub fn below(&mut self, n: u32) -> u32 {
        ((u64::from(self.next_u64() as u32) * u64::from(n)) >> 32) as u32
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// SplitMix64 finaliser: turns an index into well-spread bits, so peer
/// identities can be derived on the fly instead of stored.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Relative weight of each torrent, index = popularity rank.
///
/// * `pareto:a`: swarm sizes follow a Pareto law with tail index `a`; the
///   expected size of the torrent of rank `i` is then proportional to
///   `(i + 1)^(-1/a)` (Zipf with exponent `1/a`). Smaller `a` = more skew;
///   `a = 1` is the classic Zipf law.
/// * `exp-decay`: aquatic_udp_load_test's law, reproduced exactly:
///   `torrents/peers + exp(6.5 - 500 i / torrents)`.
/// * `uniform`: all equal (sampled without a table, see [`Sampler`]).
pub fn weights(popularity: Popularity, torrents: usize, peers: usize) -> Vec<f64> {
    let n = torrents as f64;
    (0..torrents)
        .map(|i| {
            let i = i as f64;
            match popularity {
                Popularity::Uniform => 1.0,
                Popularity::Pareto(shape) => (i + 1.0).powf(-1.0 / shape),
                Popularity::ExpDecay => n / peers as f64 + (6.5 - 500.0 * i / n).exp(),
            }
        })
        .collect()
}

/// Discrete distribution over torrent indices with O(1) sampling.
#[derive(Clone, Debug)]
pub enum Sampler {
    Uniform(u32),
    /// Walker/Vose alias table: one random number, one or two lookups.
    Alias {
        prob: Vec<u32>,
        alias: Vec<u32>,
    },
}

impl Sampler {
    pub fn new(popularity: Popularity, torrents: usize, peers: usize) -> Self {
        match popularity {
            Popularity::Uniform => Sampler::Uniform(torrents as u32),
            _ => Self::alias(&weights(popularity, torrents, peers)),
        }
    }

    /// Vose's alias method. `prob[i]` is the chance (scaled to u32) of
    /// keeping column `i` rather than jumping to `alias[i]`.
    pub fn alias(weights: &[f64]) -> Self {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut prob = vec![u32::MAX; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            prob[s] = (scaled[s] * 4_294_967_296.0).min(u32::MAX as f64) as u32;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Leftovers (from rounding) keep their own column: prob stays MAX.
        Sampler::Alias { prob, alias }
    }

    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u32 {
        match self {
            Sampler::Uniform(n) => rng.below(*n),
            Sampler::Alias { prob, alias } => {
                let r = rng.next_u64();
                let col = ((u64::from((r >> 32) as u32) * prob.len() as u64) >> 32) as usize;
                // `col < len` by construction; `get` keeps this panic-free anyway.
                match (prob.get(col), alias.get(col)) {
                    (Some(&p), Some(&a)) => {
                        if (r as u32) < p {
                            col as u32
                        } else {
                            a
                        }
                    }
                    _ => 0,
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Connect = 0,
    Announce = 1,
    Scrape = 2,
}

impl RequestKind {
    pub const ALL: [RequestKind; 3] = [
        RequestKind::Connect,
        RequestKind::Announce,
        RequestKind::Scrape,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Connect => "connect",
            RequestKind::Announce => "announce",
            RequestKind::Scrape => "scrape",
        }
    }
}

/// Request mix as cumulative thresholds, so picking is one multiply-shift.
#[derive(Clone, Copy, Debug)]
pub struct MixSampler {
    connect: u32,
    announce: u32,
    total: u32,
}

impl MixSampler {
    /// `with_connect = false` for HTTP, which has no connect request.
    pub fn new(mix: Mix, with_connect: bool) -> Self {
        let connect = if with_connect { mix.connect } else { 0 };
        MixSampler {
            connect,
            announce: connect + mix.announce,
            total: connect + mix.announce + mix.scrape,
        }
    }

    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> RequestKind {
        let r = rng.below(self.total.max(1));
        if r < self.connect {
            RequestKind::Connect
        } else if r < self.announce {
            RequestKind::Announce
        } else {
            RequestKind::Scrape
        }
    }
}

/// One simulated client, derived from its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub peer_id: [u8; 20],
    pub port: u16,
    pub key: u32,
}

/// Shared, read-only description of the swarm.
#[derive(Debug)]
pub struct Workload {
    pub info_hashes: Vec<[u8; 20]>,
    pub sampler: Sampler,
    pub peers: u32,
    pub seeder_threshold: u64,
    seed: u64,
}

impl Workload {
    pub fn new(opts: &Options) -> Self {
        let info_hashes = (0..opts.torrents as u64)
            .map(|i| {
                let mut h = [0u8; 20];
                let a = mix64(opts.seed ^ mix64(i));
                let b = mix64(a);
                let c = mix64(b);
                h[..8].copy_from_slice(&a.to_le_bytes());
                h[8..16].copy_from_slice(&b.to_le_bytes());
                h[16..].copy_from_slice(&c.to_le_bytes()[..4]);
                h
            })
            .collect();
        Workload {
            info_hashes,
            sampler: Sampler::new(opts.popularity, opts.torrents, opts.peers),
            peers: opts.peers as u32,
            seeder_threshold: (opts.seeders.clamp(0.0, 1.0) * u64::MAX as f64) as u64,
            seed: opts.seed,
        }
    }

    #[inline]
    pub fn info_hash(&self, rng: &mut Rng) -> &[u8; 20] {
        let i = self.sampler.sample(rng) as usize;
        // The sampler only yields valid indices; fall back rather than panic.
        self.info_hashes.get(i).unwrap_or(&self.info_hashes[0])
    }

    #[inline]
    pub fn peer(&self, rng: &mut Rng) -> PeerIdentity {
        self.peer_identity(rng.below(self.peers))
    }

    /// Azureus-style id `-SL0100-` plus 12 bytes unique to the index.
    #[inline]
    pub fn peer_identity(&self, index: u32) -> PeerIdentity {
        let a = mix64(self.seed.rotate_left(17) ^ u64::from(index));
        let b = mix64(a);
        let mut peer_id = *b"-SL0100-000000000000";
        peer_id[8..16].copy_from_slice(&a.to_le_bytes());
        peer_id[16..20].copy_from_slice(&b.to_le_bytes()[..4]);
        PeerIdentity {
            peer_id,
            port: 1024 + (b >> 32) as u16 % 64_000,
            key: (b >> 8) as u32,
        }
    }

    /// Bytes left for this announce: 0 for a seeder share of announces.
    #[inline]
    pub fn left(&self, rng: &mut Rng) -> u64 {
        let r = rng.next_u64();
        if self.seeder_threshold == u64::MAX || r < self.seeder_threshold {
            0
        } else {
            // Some plausible remainder; the value itself does not matter.
            1 + (r >> 40)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(sampler: &Sampler, n: usize, draws: usize) -> Vec<usize> {
        let mut rng = Rng::new(7);
        let mut h = vec![0usize; n];
        for _ in 0..draws {
            h[sampler.sample(&mut rng) as usize] += 1;
        }
        h
    }

    #[test]
    fn alias_table_follows_weights() {
        let s = Sampler::alias(&[1.0, 2.0, 3.0, 4.0]);
        let h = histogram(&s, 4, 400_000);
        for (i, &c) in h.iter().enumerate() {
            let expected = 400_000.0 * (i as f64 + 1.0) / 10.0;
            assert!(
                (c as f64 - expected).abs() < expected * 0.03,
                "{i}: {c} vs {expected}"
            );
        }
    }

    #[test]
    fn pareto_is_skewed_and_uniform_is_flat() {
        let p = Sampler::new(Popularity::Pareto(1.0), 1000, 10_000);
        let h = histogram(&p, 1000, 200_000);
        assert!(h[0] > 10 * h[99], "rank 0 {} rank 99 {}", h[0], h[99]);
        let u = Sampler::new(Popularity::Uniform, 1000, 10_000);
        let h = histogram(&u, 1000, 200_000);
        assert!(h.iter().all(|&c| c > 100 && c < 300));
    }

    #[test]
    fn exp_decay_matches_aquatic_formula() {
        let w = weights(Popularity::ExpDecay, 1000, 2000);
        assert!((w[0] - (0.5 + 6.5f64.exp())).abs() < 1e-9);
        assert!((w[999] - (0.5 + (6.5 - 500.0 * 999.0 / 1000.0f64).exp())).abs() < 1e-9);
    }

    #[test]
    fn mix_sampler_respects_weights() {
        let m = MixSampler::new(
            Mix {
                connect: 1,
                announce: 2,
                scrape: 1,
            },
            true,
        );
        let mut rng = Rng::new(1);
        let mut c = [0usize; 3];
        for _ in 0..100_000 {
            c[m.sample(&mut rng) as usize] += 1;
        }
        assert!(c[1] > 45_000 && c[1] < 55_000 && c[0] > 20_000 && c[2] > 20_000);
        let http = MixSampler::new(
            Mix {
                connect: 5,
                announce: 1,
                scrape: 0,
            },
            false,
        );
        assert!((0..1000).all(|_| http.sample(&mut rng) == RequestKind::Announce));
    }

    #[test]
    fn peer_identities_are_stable_and_distinct() {
        let w = Workload::new(&Options::default());
        assert_eq!(w.peer_identity(5), w.peer_identity(5));
        assert_ne!(w.peer_identity(5).peer_id, w.peer_identity(6).peer_id);
        assert!(w.peer_identity(5).port >= 1024);
        assert_eq!(&w.peer_identity(5).peer_id[..8], b"-SL0100-");
    }
}
