//! `interval variation` (Chihaya's `varinterval`): adds 1..=`max_increase_delta`
//! seconds to the interval of a share of the announces, so that clients
//! which started together do not keep re-announcing together.
//!
//! As in Chihaya, the draw is seeded by the request alone (infohash and
//! peer id through XorShift128+), not by time: a given peer on a given
//! torrent always gets the same decision and delta.

use super::hook::{AnnounceContext, Hook, Refusal};
use serde::Deserialize;

pub const NAME: &str = "interval variation";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The share of answers changed, in (0, 1].
    pub modify_response_probability: f32,
    /// Seconds; the delta is uniform in 1..=this.
    pub max_increase_delta: i64,
    #[serde(default)]
    pub modify_min_interval: bool,
}

impl Options {
    /// Chihaya's checks, with the option named.
    pub fn check(&self) -> Result<(), String> {
        let p = self.modify_response_probability;
        if !(p > 0.0 && p <= 1.0) {
            return Err(format!("modify_response_probability: {p} is not in (0, 1]"));
        }
        if self.max_increase_delta <= 0 || self.max_increase_delta > i64::from(u32::MAX) {
            return Err(format!(
                "max_increase_delta: {} is not a positive number of seconds",
                self.max_increase_delta
            ));
        }
        Ok(())
    }
}

pub struct IntervalVariation {
    options: Options,
}

impl IntervalVariation {
    pub fn new(options: Options) -> Self {
        Self { options }
    }

    /// The seconds to add for this infohash and peer id, if any.
    pub fn delta(&self, info_hash: &[u8; 20], peer_id: &[u8; 20]) -> Option<u32> {
        let be = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
        let mut rng = XorShift128Plus {
            s0: be(&info_hash[..8]).wrapping_add(be(&info_hash[8..16])),
            s1: be(&peer_id[..8]).wrapping_add(be(&peer_id[8..16])),
        };
        const SCALE: u64 = 1 << 24;
        let p = rng.below(SCALE) as f32 / SCALE as f32;
        let probability = self.options.modify_response_probability;
        if probability == 1.0 || p < probability {
            Some(rng.below(self.options.max_increase_delta as u64) as u32 + 1)
        } else {
            None
        }
    }
}

impl Hook for IntervalVariation {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reload(&mut self, options: &serde_yaml::Value) -> bool {
        // The registry checked them; the hook holds no other state.
        match serde_yaml::from_value::<Options>(options.clone()) {
            Ok(o) if o.check().is_ok() => {
                self.options = o;
                true
            }
            _ => false,
        }
    }

    fn before_announce(&mut self, ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        if let Some(delta) = self.delta(&ctx.announce.info_hash, &ctx.announce.peer_id) {
            ctx.interval = ctx.interval.saturating_add(delta);
            if self.options.modify_min_interval {
                ctx.min_interval = ctx.min_interval.saturating_add(delta);
            }
        }
        Ok(())
    }
}

/// Chihaya's `pkg/random` generator.
struct XorShift128Plus {
    s0: u64,
    s1: u64,
}

impl XorShift128Plus {
    fn next(&mut self) -> u64 {
        let v = self.s0.wrapping_add(self.s1);
        let mut x = self.s0;
        let y = self.s1;
        self.s0 = y;
        x ^= x << 23;
        self.s1 = x ^ y ^ (x >> 18) ^ (y >> 5);
        v
    }

    /// Go's `Intn` over the value read as a signed integer: |v| mod n.
    fn below(&mut self, n: u64) -> u64 {
        (self.next() as i64).unsigned_abs() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(p: f32, delta: i64) -> IntervalVariation {
        IntervalVariation::new(Options {
            modify_response_probability: p,
            max_increase_delta: delta,
            modify_min_interval: false,
        })
    }

    #[test]
    fn options_are_checked_like_chihaya() {
        let o = |p, d| Options {
            modify_response_probability: p,
            max_increase_delta: d,
            modify_min_interval: false,
        };
        assert!(o(1.0, 60).check().is_ok());
        assert!(o(0.0, 60)
            .check()
            .unwrap_err()
            .contains("modify_response_probability"));
        assert!(o(1.5, 60)
            .check()
            .unwrap_err()
            .contains("modify_response_probability"));
        assert!(o(0.5, 0)
            .check()
            .unwrap_err()
            .contains("max_increase_delta"));
    }

    #[test]
    fn always_modifies_at_probability_one_within_the_delta() {
        let h = hook(1.0, 10);
        for n in 0..200u8 {
            let d = h.delta(&[n; 20], &[n.wrapping_mul(7); 20]).unwrap();
            assert!((1..=10).contains(&d), "{d}");
        }
    }

    #[test]
    fn the_same_request_gets_the_same_delta_and_a_share_is_modified() {
        let h = hook(0.25, 1000);
        let a = h.delta(&[3; 20], &[4; 20]);
        assert_eq!(a, h.delta(&[3; 20], &[4; 20]));
        // Infohashes are SHA-1 digests: random bytes.
        let mut rng = fastrand::Rng::with_seed(5);
        let modified = (0..4000)
            .filter(|_| {
                let ih: [u8; 20] = std::array::from_fn(|_| rng.u8(..));
                h.delta(&ih, b"-qB4500-abcdefghijkl").is_some()
            })
            .count();
        assert!((600..1400).contains(&modified), "{modified} of 4000");
    }

    #[test]
    fn generator_matches_the_reference_steps() {
        // v = s0 + s1; s1' = x ^ s1 ^ (x >> 18) ^ (s1 >> 5), x = s0 ^ (s0 << 23).
        let mut g = XorShift128Plus { s0: 1, s1: 2 };
        assert_eq!(g.next(), 3);
        let x = 1u64 ^ (1 << 23);
        let (y, shifted) = (2u64, 2u64 >> 5);
        assert_eq!((g.s0, g.s1), (2, x ^ y ^ (x >> 18) ^ shifted));
    }
}
