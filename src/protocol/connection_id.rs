//! Stateless BEP 15 connection ids: a 32-bit timestamp and a 32-bit keyed
//! SipHash tag over (timestamp, client IP). Nothing is stored per client;
//! any shard, or any instance sharing the key, can check an id.

use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::net::IpAddr;

/// Stamps this far in the future are refused (clock skew between instances
/// sharing a key is tolerated up to this much).
const MAX_FUTURE_SKEW_SECS: u32 = 30;

#[derive(Clone)]
pub struct ConnectionIdKey {
    k0: u64,
    k1: u64,
    lifetime_secs: u32,
}

impl ConnectionIdKey {
    /// From the configured key text, or a random key when it is empty.
    pub fn new(key_text: &str, lifetime_secs: u32) -> Self {
        let (k0, k1) = if key_text.is_empty() {
            let mut bytes = [0u8; 16];
            getrandom::getrandom(&mut bytes).expect("the OS random source failed");
            (
                u64::from_le_bytes(bytes[..8].try_into().unwrap()),
                u64::from_le_bytes(bytes[8..].try_into().unwrap()),
            )
        } else {
            // Two fixed-key SipHashes stretch any text into a 128-bit key.
            let derive = |salt: u64| {
                let mut h = SipHasher24::new_with_keys(salt, !salt);
                h.write(key_text.as_bytes());
                h.finish()
            };
            (derive(0x5348_4f41_4c5f_6b30), derive(0x5348_4f41_4c5f_6b31))
        };
        Self {
            k0,
            k1,
            lifetime_secs,
        }
    }

    /// A key kept from an earlier run (its snapshot), so the ids it
    /// handed out stay valid.
    pub fn from_keys(keys: (u64, u64), lifetime_secs: u32) -> Self {
        Self {
            k0: keys.0,
            k1: keys.1,
            lifetime_secs,
        }
    }

    /// The key itself, for a snapshot to keep.
    pub fn keys(&self) -> (u64, u64) {
        (self.k0, self.k1)
    }

    fn tag(&self, stamp: u32, ip: IpAddr) -> u32 {
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        h.write_u32(stamp);
        match ip {
            IpAddr::V4(ip) => h.write(&ip.octets()),
            IpAddr::V6(ip) => h.write(&ip.octets()),
        }
        h.finish() as u32
    }

    /// A fresh id for `ip` at unix time `now`.
    pub fn make(&self, ip: IpAddr, now: u32) -> [u8; 8] {
        let mut id = [0u8; 8];
        id[..4].copy_from_slice(&now.to_be_bytes());
        id[4..].copy_from_slice(&self.tag(now, ip).to_be_bytes());
        id
    }

    /// Whether `id` was made for `ip` within the lifetime before `now`.
    pub fn check(&self, id: [u8; 8], ip: IpAddr, now: u32) -> bool {
        let stamp = u32::from_be_bytes(id[..4].try_into().unwrap());
        let fresh = stamp <= now.saturating_add(MAX_FUTURE_SKEW_SECS)
            && now.saturating_sub(stamp) <= self.lifetime_secs;
        let tag = u32::from_be_bytes(id[4..].try_into().unwrap());
        // One integer comparison: it takes the same time whichever bits differ.
        let tag_ok = (tag ^ self.tag(stamp, ip)) == 0;
        fresh & tag_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3));

    #[test]
    fn accepts_own_id_within_lifetime() {
        let key = ConnectionIdKey::new("", 120);
        let id = key.make(IP, 1_000_000);
        assert!(key.check(id, IP, 1_000_000));
        assert!(key.check(id, IP, 1_000_120));
        assert!(!key.check(id, IP, 1_000_121));
    }

    #[test]
    fn refuses_other_ip_forged_tag_and_far_future() {
        let key = ConnectionIdKey::new("", 120);
        let id = key.make(IP, 1_000_000);
        assert!(!key.check(id, "10.1.2.4".parse().unwrap(), 1_000_000));
        assert!(!key.check(id, "::1".parse().unwrap(), 1_000_000));
        let mut forged = id;
        forged[7] ^= 1;
        assert!(!key.check(forged, IP, 1_000_000));
        let future = key.make(IP, 1_000_100);
        assert!(!key.check(future, IP, 1_000_000));
        let slight_skew = key.make(IP, 1_000_010);
        assert!(key.check(slight_skew, IP, 1_000_000));
    }

    #[test]
    fn shared_key_text_is_shared_between_instances() {
        let a = ConnectionIdKey::new("a shared secret of some length", 120);
        let b = ConnectionIdKey::new("a shared secret of some length", 120);
        let c = ConnectionIdKey::new("another secret of some length!", 120);
        let id = a.make(IP, 5_000);
        assert!(b.check(id, IP, 5_001));
        assert!(!c.check(id, IP, 5_001));
        let random = ConnectionIdKey::new("", 120);
        assert!(!random.check(id, IP, 5_001));
    }
}
