//! BEP 15 request building and response checking: pure functions on byte
//! slices, shared by the UDP driver and the tests.

use crate::stats::ErrorKind;
use crate::workload::RequestKind;

pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
pub const ACTION_CONNECT: u32 = 0;
pub const ACTION_ANNOUNCE: u32 = 1;
pub const ACTION_SCRAPE: u32 = 2;
pub const ACTION_ERROR: u32 = 3;

pub const CONNECT_LEN: usize = 16;
pub const ANNOUNCE_LEN: usize = 98;
pub const SCRAPE_HEADER_LEN: usize = 16;

/// Writes a connect request into `buf[..16]`; returns its length.
#[inline]
pub fn write_connect(buf: &mut [u8], tid: u32) -> usize {
    buf[0..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    buf[8..12].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
    buf[12..16].copy_from_slice(&tid.to_be_bytes());
    CONNECT_LEN
}

/// The per-request parts of an announce.
#[derive(Clone, Copy, Debug)]
pub struct AnnounceFields<'a> {
    pub connection_id: [u8; 8],
    pub tid: u32,
    pub info_hash: &'a [u8; 20],
    pub peer_id: &'a [u8; 20],
    pub left: u64,
    pub key: u32,
    pub port: u16,
}

/// BEP 41 option types.
const OPTION_END: u8 = 0;
const OPTION_URL_DATA: u8 = 2;
/// Longest URL data we send: one option (its length is one byte).
pub const MAX_URL_DATA: usize = 255;

/// A pre-filled announce: constant fields are written once, each request
/// copies them and patches the rest. With URL data (BEP 41, e.g. a
/// private tracker's `/<passkey>/announce`) every announce carries the
/// same options after its 98 bytes, so all have the same length (one GSO
/// segment size still fits them).
#[derive(Clone, Debug)]
pub struct AnnounceTemplate(Vec<u8>);

impl AnnounceTemplate {
    pub fn new(numwant: u32) -> Self {
        Self::with_url_data(numwant, b"")
    }

    /// `url_data` at most [`MAX_URL_DATA`] bytes (longer is cut); empty
    /// sends no options.
    pub fn with_url_data(numwant: u32, url_data: &[u8]) -> Self {
        let mut t = vec![0u8; ANNOUNCE_LEN];
        t[8..12].copy_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
        // downloaded (56), uploaded (72), event none (80), ip 0 (84): zero.
        t[92..96].copy_from_slice(&numwant.to_be_bytes());
        if !url_data.is_empty() {
            let data = &url_data[..url_data.len().min(MAX_URL_DATA)];
            t.extend_from_slice(&[OPTION_URL_DATA, data.len() as u8]);
            t.extend_from_slice(data);
            t.push(OPTION_END);
        }
        AnnounceTemplate(t)
    }

    /// Bytes of each announce.
    pub fn size(&self) -> usize {
        self.0.len()
    }

    #[inline]
    pub fn write(&self, buf: &mut [u8], f: &AnnounceFields<'_>) -> usize {
        let b = &mut buf[..self.0.len()];
        b.copy_from_slice(&self.0);
        b[0..8].copy_from_slice(&f.connection_id);
        b[12..16].copy_from_slice(&f.tid.to_be_bytes());
        b[16..36].copy_from_slice(f.info_hash);
        b[36..56].copy_from_slice(f.peer_id);
        b[64..72].copy_from_slice(&f.left.to_be_bytes());
        b[88..92].copy_from_slice(&f.key.to_be_bytes());
        b[96..98].copy_from_slice(&f.port.to_be_bytes());
        self.0.len()
    }
}

/// Writes a scrape header; the caller appends the info hashes with
/// [`put_scrape_hash`]. Returns the header length.
#[inline]
pub fn write_scrape_header(buf: &mut [u8], connection_id: [u8; 8], tid: u32) -> usize {
    buf[0..8].copy_from_slice(&connection_id);
    buf[8..12].copy_from_slice(&ACTION_SCRAPE.to_be_bytes());
    buf[12..16].copy_from_slice(&tid.to_be_bytes());
    SCRAPE_HEADER_LEN
}

#[inline]
pub fn put_scrape_hash(buf: &mut [u8], index: usize, hash: &[u8; 20]) {
    let at = SCRAPE_HEADER_LEN + 20 * index;
    buf[at..at + 20].copy_from_slice(hash);
}

/// Convenience for tests and one-off use.
pub fn write_scrape(
    buf: &mut [u8],
    connection_id: [u8; 8],
    tid: u32,
    hashes: &[[u8; 20]],
) -> usize {
    write_scrape_header(buf, connection_id, tid);
    for (i, h) in hashes.iter().enumerate() {
        put_scrape_hash(buf, i, h);
    }
    SCRAPE_HEADER_LEN + 20 * hashes.len()
}

/// Action and transaction id of a response, if it is long enough to have them.
#[inline]
pub fn response_header(buf: &[u8]) -> Option<(u32, u32)> {
    let action = u32::from_be_bytes(buf.get(0..4)?.try_into().ok()?);
    let tid = u32::from_be_bytes(buf.get(4..8)?.try_into().ok()?);
    Some((action, tid))
}

/// What the matched request leads us to expect.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    pub kind: RequestKind,
    /// Info hashes sent in a scrape.
    pub scrape_n: usize,
    pub numwant: u32,
    /// Peers are 18 bytes (IPv6 target) instead of 6.
    pub ipv6: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    Connect { connection_id: [u8; 8] },
    Announce { peers: usize },
    Scrape,
}

/// Checks a response already matched to its request by transaction id.
pub fn check_response(buf: &[u8], e: &Expect) -> Result<Checked, ErrorKind> {
    let (action, _) = response_header(buf).ok_or(ErrorKind::Truncated)?;
    if action == ACTION_ERROR {
        return Err(ErrorKind::ErrorAction);
    }
    if action != e.kind as u32 {
        return Err(ErrorKind::WrongAction);
    }
    match e.kind {
        RequestKind::Connect => match buf.get(8..16) {
            Some(id) if buf.len() == 16 => {
                let mut connection_id = [0u8; 8];
                connection_id.copy_from_slice(id);
                Ok(Checked::Connect { connection_id })
            }
            Some(_) => Err(ErrorKind::BadLength),
            None => Err(ErrorKind::Truncated),
        },
        RequestKind::Announce => {
            // action, tid, interval, leechers, seeders, then peers.
            if buf.len() < 20 {
                return Err(ErrorKind::Truncated);
            }
            let size = if e.ipv6 { 18 } else { 6 };
            let body = buf.len() - 20;
            if !body.is_multiple_of(size) {
                return Err(ErrorKind::BadLength);
            }
            let peers = body / size;
            if peers as u64 > u64::from(e.numwant) {
                return Err(ErrorKind::TooManyPeers);
            }
            Ok(Checked::Announce { peers })
        }
        RequestKind::Scrape => {
            let want = 8 + 12 * e.scrape_n;
            if buf.len() < want {
                Err(ErrorKind::Truncated)
            } else if buf.len() > want {
                Err(ErrorKind::BadLength)
            } else {
                Ok(Checked::Scrape)
            }
        }
    }
}

/// Transaction ids: slot index in the low 16 bits, a per-slot generation
/// in the high 16, XORed with a per-socket salt so ids look random on the
/// wire and stale or invented ids are rejected.
#[derive(Clone, Copy, Debug)]
pub struct TidCodec {
    salt: u32,
}

impl TidCodec {
    pub fn new(salt: u32) -> Self {
        TidCodec { salt }
    }

    #[inline]
    pub fn encode(&self, slot: u16, generation: u16) -> u32 {
        ((u32::from(generation) << 16) | u32::from(slot)) ^ self.salt
    }

    /// Slot the id claims to belong to (still to be compared in full).
    #[inline]
    pub fn slot(&self, tid: u32) -> usize {
        ((tid ^ self.salt) & 0xffff) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_expect() -> Expect {
        Expect {
            kind: RequestKind::Connect,
            scrape_n: 0,
            numwant: 0,
            ipv6: false,
        }
    }

    fn announce_expect(numwant: u32, ipv6: bool) -> Expect {
        Expect {
            kind: RequestKind::Announce,
            scrape_n: 0,
            numwant,
            ipv6,
        }
    }

    /// A scrape of `n` hashes, and an answer (tid 5) with `entries` entries.
    fn scrape_case(n: usize, entries: usize) -> (Vec<u8>, Expect) {
        let mut s = vec![0, 0, 0, 2, 0, 0, 0, 5];
        s.resize(8 + 12 * entries, 0);
        let e = Expect {
            kind: RequestKind::Scrape,
            scrape_n: n,
            numwant: 0,
            ipv6: false,
        };
        (s, e)
    }

    fn announce_reply(tid: u32, peers: usize, size: usize) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
        r.extend_from_slice(&tid.to_be_bytes());
        r.extend_from_slice(&[0, 0, 7, 8, 0, 0, 0, 1, 0, 0, 0, 2]);
        r.resize(20 + peers * size, 9);
        r
    }

    #[test]
    fn builds_connect_announce_scrape() {
        let mut b = [0u8; 1500];
        assert_eq!(write_connect(&mut b, 0xdead_beef), 16);
        assert_eq!(&b[0..8], &PROTOCOL_ID.to_be_bytes());
        assert_eq!(&b[8..16], &[0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]);

        let t = AnnounceTemplate::new(50);
        let f = AnnounceFields {
            connection_id: [1, 2, 3, 4, 5, 6, 7, 8],
            tid: 7,
            info_hash: &[0xaa; 20],
            peer_id: &[0xbb; 20],
            left: 0,
            key: 0x0102_0304,
            port: 6881,
        };
        assert_eq!(t.write(&mut b, &f), 98);
        assert_eq!(&b[0..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[8..12], &1u32.to_be_bytes());
        assert_eq!(&b[12..16], &7u32.to_be_bytes());
        assert_eq!(&b[16..36], &[0xaa; 20]);
        assert_eq!(&b[36..56], &[0xbb; 20]);
        assert_eq!(&b[64..72], &[0; 8]);
        assert_eq!(&b[80..84], &[0; 4]);
        assert_eq!(&b[88..92], &[1, 2, 3, 4]);
        assert_eq!(&b[92..96], &50u32.to_be_bytes());
        assert_eq!(&b[96..98], &6881u16.to_be_bytes());

        // BEP 41 URL data: one option, then the end of options.
        let t = AnnounceTemplate::with_url_data(50, b"/pk/announce");
        assert_eq!(t.size(), 98 + 2 + 12 + 1);
        assert_eq!(t.write(&mut b, &f), t.size());
        assert_eq!(&b[96..98], &6881u16.to_be_bytes());
        assert_eq!(&b[98..100], &[2, 12]);
        assert_eq!(&b[100..112], b"/pk/announce");
        assert_eq!(b[112], 0);
        let long = AnnounceTemplate::with_url_data(50, &[b'x'; 300]);
        assert_eq!(long.size(), 98 + 2 + MAX_URL_DATA + 1);

        let n = write_scrape(&mut b, [9; 8], 3, &[[1; 20], [2; 20]]);
        assert_eq!(n, 56);
        assert_eq!(&b[8..12], &2u32.to_be_bytes());
        assert_eq!(&b[36..56], &[2; 20]);
    }

    #[test]
    fn accepts_good_responses() {
        let mut c = vec![0, 0, 0, 0, 0, 0, 0, 5];
        c.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let e = connect_expect();
        assert_eq!(
            check_response(&c, &e),
            Ok(Checked::Connect {
                connection_id: [1, 2, 3, 4, 5, 6, 7, 8]
            })
        );
        assert_eq!(
            check_response(&announce_reply(5, 3, 6), &announce_expect(50, false)),
            Ok(Checked::Announce { peers: 3 })
        );
        assert_eq!(
            check_response(&announce_reply(5, 2, 18), &announce_expect(2, true)),
            Ok(Checked::Announce { peers: 2 })
        );
        let (s, e) = scrape_case(3, 3);
        assert_eq!(check_response(&s, &e), Ok(Checked::Scrape));
    }

    #[test]
    fn catches_truncated_answers() {
        assert_eq!(response_header(&[0, 0, 0, 1, 0, 0]), None);
        let e = connect_expect();
        assert_eq!(
            check_response(&[0, 0, 0, 0, 0, 0, 0, 5, 1, 2], &e),
            Err(ErrorKind::Truncated)
        );
        assert_eq!(
            check_response(&[0, 0, 0, 1, 0, 0, 0, 5, 1, 2], &announce_expect(5, false)),
            Err(ErrorKind::Truncated)
        );
        let (s, e) = scrape_case(3, 2);
        assert_eq!(check_response(&s, &e), Err(ErrorKind::Truncated));
        // A peer list cut mid-entry.
        let mut a = announce_reply(5, 3, 6);
        a.pop();
        assert_eq!(
            check_response(&a, &announce_expect(50, false)),
            Err(ErrorKind::BadLength)
        );
        // IPv4-sized peers where IPv6 ones are due.
        assert_eq!(
            check_response(&announce_reply(5, 1, 6), &announce_expect(50, true)),
            Err(ErrorKind::BadLength)
        );
    }

    #[test]
    fn catches_too_many_peers() {
        assert_eq!(
            check_response(&announce_reply(5, 21, 6), &announce_expect(20, false)),
            Err(ErrorKind::TooManyPeers)
        );
        assert_eq!(
            check_response(&announce_reply(5, 20, 6), &announce_expect(20, false)),
            Ok(Checked::Announce { peers: 20 })
        );
    }

    #[test]
    fn counts_error_action_and_wrong_action() {
        let mut err = vec![0, 0, 0, 3, 0, 0, 0, 5];
        err.extend_from_slice(b"unknown connection id");
        assert_eq!(
            check_response(&err, &announce_expect(50, false)),
            Err(ErrorKind::ErrorAction)
        );
        let mut c = vec![0, 0, 0, 0, 0, 0, 0, 5];
        c.extend_from_slice(&[1; 8]);
        assert_eq!(
            check_response(&c, &announce_expect(50, false)),
            Err(ErrorKind::WrongAction)
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = crate::workload::Rng::new(3);
        let mut buf = vec![0u8; 1600];
        for round in 0..20_000 {
            let len = rng.below(buf.len() as u32) as usize;
            for b in &mut buf[..len] {
                *b = rng.next_u64() as u8;
            }
            // Bias the action field towards real ones.
            if len >= 4 {
                buf[3] = (round % 5) as u8;
                buf[..3].fill(0);
            }
            for kind in RequestKind::ALL {
                let e = Expect {
                    kind,
                    scrape_n: round % 80,
                    numwant: round as u32 % 60,
                    ipv6: round % 2 == 0,
                };
                let _ = check_response(&buf[..len], &e);
            }
        }
    }

    #[test]
    fn tid_codec_round_trips_and_rejects_others() {
        let c = TidCodec::new(0x1234_5678);
        let t = c.encode(42, 7);
        assert_eq!(c.slot(t), 42);
        assert_ne!(c.encode(42, 8), t);
        // A wrong id may point at any slot, but never compares equal to t.
        assert_ne!(t.wrapping_add(1), t);
    }
}
