//! Subnet preference (`tracker.prefer_subnet`, Chihaya's old option for
//! Facebook's case): peers in the announcer's subnet first, then a random
//! choice of the rest. It costs one pass over the announcer's family list,
//! so it is off by default.

use super::peer_list::{PeerList, WireAddr};
use crate::bittorrent::PeerId;

/// Whether the first `bits` bits of two wire addresses' IPs agree (the
/// port, after the IP, never counts).
pub fn same_subnet<A: WireAddr>(a: &A, b: &A, bits: u8) -> bool {
    let (a, b) = (a.as_ref(), b.as_ref());
    let ip_len = a.len() - 2;
    let bits = usize::from(bits).min(ip_len * 8);
    let (whole, rest) = (bits / 8, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// Picks up to `want` eligible peers of `list` (leechers only for a
/// seeder; never `exclude`): those in `near`'s subnet first, in random
/// order, then a uniform choice of the others. `scratch` is reused between
/// calls. Returns how many it picked.
#[allow(clippy::too_many_arguments)]
pub fn sample<A: WireAddr>(
    list: &PeerList<A>,
    want: usize,
    leechers_only: bool,
    exclude: Option<usize>,
    near: &A,
    bits: u8,
    rng: &mut fastrand::Rng,
    scratch: &mut Vec<u32>,
    mut emit: impl FnMut(&[A], &[PeerId]),
) -> usize {
    let end = if leechers_only {
        list.leechers()
    } else {
        list.len()
    };
    if want == 0 || end == 0 {
        return 0;
    }
    // Near peers at the front of `scratch`, the others behind them.
    scratch.clear();
    let (addrs, ids) = (list.addrs(), list.peer_ids());
    let mut near_count = 0;
    for i in (0..end).filter(|&i| Some(i) != exclude) {
        scratch.push(i as u32);
        if same_subnet(&addrs[i], near, bits) {
            let last = scratch.len() - 1;
            scratch.swap(near_count, last);
            near_count += 1;
        }
    }
    let count = want.min(scratch.len());
    // A partial Fisher-Yates within each group: a random subset of the
    // near peers, then of the others for what is left.
    for i in 0..count {
        let group_end = if i < near_count {
            near_count
        } else {
            scratch.len()
        };
        let j = rng.usize(i..group_end);
        scratch.swap(i, j);
        let p = scratch[i] as usize;
        emit(&addrs[p..p + 1], &ids[p..p + 1]);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::peer_list::{AddrHasher, PeerMeta};

    fn addr(a: u8, b: u8, c: u8, d: u8) -> [u8; 6] {
        [a, b, c, d, 0x1a, 0xe1]
    }

    #[test]
    fn prefixes_compare_the_ip_only() {
        assert!(same_subnet(&addr(10, 1, 2, 3), &addr(10, 1, 2, 200), 24));
        assert!(!same_subnet(&addr(10, 1, 2, 3), &addr(10, 1, 3, 3), 24));
        assert!(same_subnet(&addr(10, 1, 2, 3), &addr(10, 1, 3, 3), 22));
        assert!(!same_subnet(&addr(10, 1, 2, 3), &addr(10, 1, 4, 3), 22));
        let mut other_port = addr(10, 1, 2, 3);
        other_port[5] = 1;
        assert!(same_subnet(&addr(10, 1, 2, 3), &other_port, 32));
        assert!(same_subnet(&addr(1, 2, 3, 4), &addr(9, 9, 9, 9), 0));
    }

    #[test]
    fn near_peers_come_first_then_a_random_rest() {
        let h = AddrHasher::default();
        let mut list = PeerList::default();
        let meta = PeerMeta::default();
        for n in 0..50u8 {
            let subnet = if n < 5 { 7 } else { 100 + n };
            list.upsert(addr(10, 0, subnet, n), meta, false, &h);
        }
        let mut rng = fastrand::Rng::with_seed(9);
        let mut scratch = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut got = Vec::new();
            let n = sample(
                &list,
                8,
                false,
                None,
                &addr(10, 0, 7, 99),
                24,
                &mut rng,
                &mut scratch,
                |a, _| got.extend_from_slice(a),
            );
            assert_eq!(n, 8);
            assert!(
                got[..5].iter().all(|a| a[2] == 7),
                "the five near peers first: {got:?}"
            );
            assert!(got[5..].iter().all(|a| a[2] != 7));
            let distinct: std::collections::HashSet<_> = got.iter().collect();
            assert_eq!(distinct.len(), 8, "no peer twice");
            seen.extend(got[5..].iter().copied());
        }
        assert!(
            seen.len() > 35,
            "the rest is drawn at random: {} seen",
            seen.len()
        );
        // Fewer wanted than near peers: a random subset of them.
        let mut got = Vec::new();
        sample(
            &list,
            2,
            false,
            None,
            &addr(10, 0, 7, 99),
            24,
            &mut rng,
            &mut scratch,
            |a, _| got.extend_from_slice(a),
        );
        assert!(got.iter().all(|a| a[2] == 7) && got.len() == 2);
    }
}
