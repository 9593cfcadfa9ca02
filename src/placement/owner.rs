//! The one owner function, `owner(ih) = mix(be32(ih[0..4])) % shards`, in
//! Rust and as the classic-BPF program that lets the kernel deliver each
//! UDP announce and scrape to the socket of the shard that owns it.
//!
//! `mix` folds in a per-process random key so nobody can choose the core
//! their infohashes land on (infohashes with equal first 4 bytes still
//! share one, whichever it is). Both versions must agree bit for bit; a test
//! runs the BPF program through a small interpreter against `of`.

use crate::bittorrent::InfoHash;

#[derive(Clone, Copy, Debug)]
pub struct Owner {
    shards: u32,
    xor_key: u32,
    mul_key: u32,
}

impl Owner {
    pub fn new(shards: usize) -> Self {
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes).expect("the OS random source failed");
        Self::with_keys(
            shards,
            u32::from_le_bytes(bytes[..4].try_into().unwrap()),
            u32::from_le_bytes(bytes[4..].try_into().unwrap()),
        )
    }

    pub fn with_keys(shards: usize, xor_key: u32, mul_key: u32) -> Self {
        assert!(shards >= 1 && shards <= u16::MAX as usize);
        Self {
            shards: shards as u32,
            xor_key,
            // Odd, so the multiplication is a bijection on u32.
            mul_key: mul_key | 1,
        }
    }

    pub fn shards(&self) -> usize {
        self.shards as usize
    }

    #[inline]
    pub fn of(&self, info_hash: &InfoHash) -> usize {
        let x = u32::from_be_bytes([info_hash[0], info_hash[1], info_hash[2], info_hash[3]]);
        let mut h = (x ^ self.xor_key).wrapping_mul(self.mul_key);
        h ^= h >> 16;
        (h % self.shards) as usize
    }

    /// The SO_ATTACH_REUSEPORT_CBPF program. It sees the UDP payload; for
    /// announces and scrapes it returns the owner's socket index, for
    /// anything else an out-of-range index, so the kernel falls back to
    /// its usual hash (connects are stateless: any shard answers them).
    pub fn reuseport_program(&self) -> Vec<libc::sock_filter> {
        const LD_LEN: u16 = 0x80; // A = packet length
        const LD_W_ABS: u16 = 0x20; // A = be32 at k
        const JGE_K: u16 = 0x35;
        const JEQ_K: u16 = 0x15;
        const XOR_K: u16 = 0xa4;
        const MUL_K: u16 = 0x24;
        const RSH_K: u16 = 0x74;
        const XOR_X: u16 = 0xac;
        const MOD_K: u16 = 0x94;
        const TAX: u16 = 0x07;
        const RET_A: u16 = 0x16;
        const RET_K: u16 = 0x06;
        let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
        vec![
            /* 0 */ op(LD_LEN, 0, 0, 0),
            /* 1 */ op(JGE_K, 0, 11, 36), // shorter than 36 bytes: fall back
            /* 2 */ op(LD_W_ABS, 0, 0, 8), // action
            /* 3 */ op(JEQ_K, 1, 0, 1), // announce
            /* 4 */ op(JEQ_K, 0, 8, 2), // scrape, else fall back
            /* 5 */ op(LD_W_ABS, 0, 0, 16), // first 4 infohash bytes
            /* 6 */ op(XOR_K, 0, 0, self.xor_key),
            /* 7 */ op(MUL_K, 0, 0, self.mul_key),
            /* 8 */ op(TAX, 0, 0, 0),
            /* 9 */ op(RSH_K, 0, 0, 16),
            /* 10 */ op(XOR_X, 0, 0, 0),
            /* 11 */ op(MOD_K, 0, 0, self.shards),
            /* 12 */ op(RET_A, 0, 0, 0),
            /* 13 */ op(RET_K, 0, 0, u32::MAX),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Just enough of a classic-BPF interpreter for the program above.
    fn run(program: &[libc::sock_filter], packet: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        loop {
            let i = program[pc];
            pc += 1;
            match i.code {
                0x80 => a = packet.len() as u32,
                0x20 => {
                    let k = i.k as usize;
                    if k + 4 > packet.len() {
                        return 0;
                    }
                    a = u32::from_be_bytes(packet[k..k + 4].try_into().unwrap());
                }
                0x35 => pc += if a >= i.k { i.jt } else { i.jf } as usize,
                0x15 => pc += if a == i.k { i.jt } else { i.jf } as usize,
                0xa4 => a ^= i.k,
                0x24 => a = a.wrapping_mul(i.k),
                0x74 => a >>= i.k,
                0xac => a ^= x,
                0x94 => a %= i.k,
                0x07 => x = a,
                0x16 => return a,
                0x06 => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn packet(action: u32, info_hash: &InfoHash, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len.max(36)];
        p[8..12].copy_from_slice(&action.to_be_bytes());
        p[16..36].copy_from_slice(info_hash);
        p.truncate(len);
        p
    }

    #[test]
    fn program_agrees_with_owner_function() {
        let mut rng = fastrand::Rng::with_seed(3);
        for shards in 1..=5 {
            let owner = Owner::with_keys(shards, rng.u32(..), rng.u32(..));
            let program = owner.reuseport_program();
            for _ in 0..2000 {
                let mut ih = [0u8; 20];
                rng.fill(&mut ih);
                let expected = owner.of(&ih) as u32;
                assert_eq!(run(&program, &packet(1, &ih, 98)), expected);
                assert_eq!(run(&program, &packet(2, &ih, 36)), expected);
                assert_eq!(run(&program, &packet(0, &ih, 98)), u32::MAX);
                assert_eq!(run(&program, &packet(3, &ih, 98)), u32::MAX);
                assert_eq!(run(&program, &packet(1, &ih, 35)), u32::MAX);
            }
        }
    }

    #[test]
    fn spreads_evenly_and_depends_on_key() {
        let a = Owner::with_keys(4, 1, 2);
        let b = Owner::with_keys(4, 0x1234_5678, 0x9abc_def1);
        let mut counts = [0usize; 4];
        let mut differ = 0;
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..40_000 {
            let mut ih = [0u8; 20];
            rng.fill(&mut ih);
            counts[a.of(&ih)] += 1;
            differ += (a.of(&ih) != b.of(&ih)) as usize;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
        assert!(differ > 25_000);
    }
}
