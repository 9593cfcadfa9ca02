//! BEP 15 (UDP tracker protocol) with BEP 41 options: parsing requests and
//! encoding responses. Pure functions over byte slices.

use crate::bittorrent::{Announce, Event, UrlData};

pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

pub const ACTION_CONNECT: u32 = 0;
pub const ACTION_ANNOUNCE: u32 = 1;
pub const ACTION_SCRAPE: u32 = 2;
pub const ACTION_ERROR: u32 = 3;

const HEADER_LEN: usize = 16;
const ANNOUNCE_LEN: usize = 98;
const SCRAPE_ENTRY_LEN: usize = 20;

/// Largest UDP payload that crosses common paths unfragmented: 1500-byte
/// Ethernet MTU for IPv4, the 1280-byte IPv6 minimum MTU for IPv6.
pub const MAX_PAYLOAD_V4: usize = 1500 - 20 - 8;
pub const MAX_PAYLOAD_V6: usize = 1280 - 40 - 8;
pub const ANNOUNCE_RESPONSE_HEADER_LEN: usize = 20;

/// Most peers an announce answer may carry for a family.
pub const fn max_peers(ipv6: bool) -> usize {
    if ipv6 {
        (MAX_PAYLOAD_V6 - ANNOUNCE_RESPONSE_HEADER_LEN) / 18
    } else {
        (MAX_PAYLOAD_V4 - ANNOUNCE_RESPONSE_HEADER_LEN) / 6
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Connect {
        transaction_id: u32,
    },
    Announce {
        connection_id: [u8; 8],
        transaction_id: u32,
        announce: Announce,
    },
    Scrape {
        connection_id: [u8; 8],
        transaction_id: u32,
        /// 20-byte infohashes, back to back (never empty).
        info_hashes: &'a [u8],
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not a tracker request we can answer: no reply at all.
    Drop,
    /// Well-formed header but a bad body. Answered with an error packet,
    /// but only once the connection id proves the sender's address.
    Invalid {
        connection_id: [u8; 8],
        transaction_id: u32,
        message: &'static str,
    },
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().unwrap()
}

pub fn parse(packet: &[u8]) -> Result<Request<'_>, ParseError> {
    if packet.len() < HEADER_LEN {
        return Err(ParseError::Drop);
    }
    let connection_id: [u8; 8] = array(packet, 0);
    let action = be_u32(packet, 8);
    let transaction_id = be_u32(packet, 12);
    let invalid = |message| ParseError::Invalid {
        connection_id,
        transaction_id,
        message,
    };
    match action {
        ACTION_CONNECT => {
            if u64::from_be_bytes(connection_id) != PROTOCOL_ID {
                return Err(ParseError::Drop);
            }
            Ok(Request::Connect { transaction_id })
        }
        ACTION_ANNOUNCE => {
            if packet.len() < ANNOUNCE_LEN {
                return Err(invalid("announce packet is too short"));
            }
            let event = match be_u32(packet, 80) {
                0 => Event::None,
                1 => Event::Completed,
                2 => Event::Started,
                3 => Event::Stopped,
                4 => Event::Paused,
                _ => return Err(invalid("unknown event")),
            };
            let port = u16::from_be_bytes(array(packet, 96));
            if port == 0 {
                return Err(invalid("port 0 is not a valid port"));
            }
            let numwant = be_u32(packet, 92) as i32;
            Ok(Request::Announce {
                connection_id,
                transaction_id,
                announce: Announce {
                    info_hash: array(packet, 16),
                    peer_id: array(packet, 36),
                    downloaded: be_u64(packet, 56),
                    left: be_u64(packet, 64),
                    uploaded: be_u64(packet, 72),
                    event,
                    key: be_u32(packet, 88),
                    numwant: (numwant >= 0).then_some(numwant as u32),
                    port,
                    url_data: parse_options(&packet[ANNOUNCE_LEN..]),
                    passkey: None,
                    query: None,
                },
            })
        }
        ACTION_SCRAPE => {
            let body = &packet[HEADER_LEN..];
            let count = body.len() / SCRAPE_ENTRY_LEN;
            if count == 0 {
                return Err(invalid("scrape names no info hash"));
            }
            // A partial trailing entry is ignored, like trailing bytes elsewhere.
            Ok(Request::Scrape {
                connection_id,
                transaction_id,
                info_hashes: &body[..count * SCRAPE_ENTRY_LEN],
            })
        }
        _ => Err(invalid("unknown action")),
    }
}

/// BEP 41 options after the announce body. URL data options concatenate;
/// NOP is skipped; unknown options are skipped by their length byte; an
/// option cut short by the end of the packet ends parsing (tolerated).
fn parse_options(mut rest: &[u8]) -> UrlData {
    const END_OF_OPTIONS: u8 = 0;
    const NOP: u8 = 1;
    const URL_DATA: u8 = 2;
    let mut url_data = UrlData::new();
    while let Some((&kind, tail)) = rest.split_first() {
        match kind {
            END_OF_OPTIONS => break,
            NOP => rest = tail,
            _ => {
                let Some((&len, tail)) = tail.split_first() else {
                    break;
                };
                let len = len as usize;
                if tail.len() < len {
                    break;
                }
                if kind == URL_DATA {
                    url_data.extend_from_slice(&tail[..len]);
                }
                rest = &tail[len..];
            }
        }
    }
    url_data
}

/// Writes responses into a fixed send slot. Callers size the slot for the
/// largest answer (see `max_peers`), so writes never run past it.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    pub fn put_u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }
}

pub fn write_connect(w: &mut Writer, transaction_id: u32, connection_id: [u8; 8]) {
    w.put_u32(ACTION_CONNECT);
    w.put_u32(transaction_id);
    w.put(&connection_id);
}

/// The header of an announce answer; the peers follow via `Writer::put`.
pub fn write_announce_header(
    w: &mut Writer,
    transaction_id: u32,
    interval: u32,
    leechers: u32,
    seeders: u32,
) {
    w.put_u32(ACTION_ANNOUNCE);
    w.put_u32(transaction_id);
    w.put_u32(interval);
    w.put_u32(leechers);
    w.put_u32(seeders);
}

pub fn write_scrape_header(w: &mut Writer, transaction_id: u32) {
    w.put_u32(ACTION_SCRAPE);
    w.put_u32(transaction_id);
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrapeCounts {
    pub seeders: u32,
    pub completed: u32,
    pub leechers: u32,
}

pub fn write_scrape_entry(w: &mut Writer, counts: ScrapeCounts) {
    w.put_u32(counts.seeders);
    w.put_u32(counts.completed);
    w.put_u32(counts.leechers);
}

pub fn write_error(w: &mut Writer, transaction_id: u32, message: &str) {
    w.put_u32(ACTION_ERROR);
    w.put_u32(transaction_id);
    w.put(message.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce_packet() -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&[7u8; 8]); // connection id
        p.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
        p.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        p.extend_from_slice(&[0xaa; 20]); // info hash
        p.extend_from_slice(&[0xbb; 20]); // peer id
        p.extend_from_slice(&11u64.to_be_bytes()); // downloaded
        p.extend_from_slice(&22u64.to_be_bytes()); // left
        p.extend_from_slice(&33u64.to_be_bytes()); // uploaded
        p.extend_from_slice(&2u32.to_be_bytes()); // event started
        p.extend_from_slice(&0u32.to_be_bytes()); // ip
        p.extend_from_slice(&0x1234u32.to_be_bytes()); // key
        p.extend_from_slice(&(-1i32).to_be_bytes()); // numwant
        p.extend_from_slice(&6881u16.to_be_bytes());
        assert_eq!(p.len(), ANNOUNCE_LEN);
        p
    }

    fn parsed_announce(p: &[u8]) -> Announce {
        match parse(p) {
            Ok(Request::Announce { announce, .. }) => announce,
            other => panic!("expected an announce, got {other:?}"),
        }
    }

    #[test]
    fn parses_connect() {
        let mut p = PROTOCOL_ID.to_be_bytes().to_vec();
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&42u32.to_be_bytes());
        assert_eq!(parse(&p), Ok(Request::Connect { transaction_id: 42 }));
        p.push(0); // trailing bytes tolerated
        assert_eq!(parse(&p), Ok(Request::Connect { transaction_id: 42 }));
        p[0] = 1; // wrong protocol id: not a tracker packet
        assert_eq!(parse(&p), Err(ParseError::Drop));
    }

    #[test]
    fn every_short_length_is_handled() {
        let full = announce_packet();
        for len in 0..full.len() {
            let result = parse(&full[..len]);
            if len < HEADER_LEN {
                assert_eq!(result, Err(ParseError::Drop), "len {len}");
            } else {
                assert!(
                    matches!(
                        result,
                        Err(ParseError::Invalid {
                            transaction_id: 0xdead_beef,
                            ..
                        })
                    ),
                    "len {len}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn parses_announce_fields() {
        let a = parsed_announce(&announce_packet());
        assert_eq!(a.info_hash, [0xaa; 20]);
        assert_eq!(a.peer_id, [0xbb; 20]);
        assert_eq!((a.downloaded, a.left, a.uploaded), (11, 22, 33));
        assert_eq!(a.event, Event::Started);
        assert_eq!(a.key, 0x1234);
        assert_eq!(a.numwant, None);
        assert_eq!(a.port, 6881);
        assert!(a.url_data.is_empty());
    }

    #[test]
    fn announce_events_numwant_and_port() {
        let mut p = announce_packet();
        for (code, event) in [
            (0, Event::None),
            (1, Event::Completed),
            (2, Event::Started),
            (3, Event::Stopped),
            (4, Event::Paused),
        ] {
            p[80..84].copy_from_slice(&(code as u32).to_be_bytes());
            assert_eq!(parsed_announce(&p).event, event);
        }
        p[80..84].copy_from_slice(&9u32.to_be_bytes());
        assert!(matches!(
            parse(&p),
            Err(ParseError::Invalid {
                message: "unknown event",
                ..
            })
        ));
        p[80..84].copy_from_slice(&0u32.to_be_bytes());
        p[92..96].copy_from_slice(&25u32.to_be_bytes());
        assert_eq!(parsed_announce(&p).numwant, Some(25));
        p[92..96].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(parsed_announce(&p).numwant, None);
        p[96..98].copy_from_slice(&0u16.to_be_bytes());
        assert!(matches!(
            parse(&p),
            Err(ParseError::Invalid {
                message: "port 0 is not a valid port",
                ..
            })
        ));
    }

    #[test]
    fn bep41_options() {
        let with = |options: &[u8]| {
            let mut p = announce_packet();
            p.extend_from_slice(options);
            parsed_announce(&p).url_data.to_vec()
        };
        assert_eq!(with(&[]), b"");
        assert_eq!(with(&[0]), b"");
        assert_eq!(with(&[2, 3, b'/', b'a', b'b']), b"/ab");
        // Two URL data options concatenate; NOPs between are skipped.
        assert_eq!(with(&[2, 2, b'/', b'a', 1, 1, 2, 2, b'/', b'b']), b"/a/b");
        // End of options stops parsing: what follows is ignored.
        assert_eq!(with(&[2, 1, b'x', 0, 2, 1, b'y']), b"x");
        // Unknown option types are skipped by their length byte.
        assert_eq!(with(&[9, 2, 0xff, 0xff, 2, 1, b'z']), b"z");
        // Cut-short options and lone type bytes are tolerated.
        assert_eq!(with(&[2, 5, b'a']), b"");
        assert_eq!(with(&[2, 1, b'a', 2]), b"a");
        assert_eq!(with(&[9]), b"");
        // Long URL data (beyond the inline capacity) is kept whole.
        let mut long = vec![2u8, 200];
        long.extend(std::iter::repeat_n(b'p', 200));
        assert_eq!(with(&long), vec![b'p'; 200]);
    }

    #[test]
    fn parses_scrape() {
        let mut p = vec![1u8; 8];
        p.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
        p.extend_from_slice(&5u32.to_be_bytes());
        assert!(matches!(
            parse(&p),
            Err(ParseError::Invalid {
                message: "scrape names no info hash",
                ..
            })
        ));
        p.extend_from_slice(&[1; 20]);
        p.extend_from_slice(&[2; 20]);
        p.extend_from_slice(&[3; 7]); // partial entry ignored
        match parse(&p) {
            Ok(Request::Scrape {
                transaction_id: 5,
                info_hashes,
                ..
            }) => {
                let (all, rest) = info_hashes.as_chunks::<20>();
                assert_eq!(all, [[1; 20], [2; 20]]);
                assert!(rest.is_empty(), "only whole entries are kept");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_action_is_invalid() {
        let mut p = vec![1u8; 8];
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(&5u32.to_be_bytes());
        assert!(matches!(
            parse(&p),
            Err(ParseError::Invalid {
                message: "unknown action",
                transaction_id: 5,
                ..
            })
        ));
        p[8..12].copy_from_slice(&ACTION_ERROR.to_be_bytes());
        assert!(matches!(parse(&p), Err(ParseError::Invalid { .. })));
    }

    #[test]
    fn encodes_byte_exact() {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        write_connect(&mut w, 9, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            &buf[..16],
            &[0, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8]
        );

        let mut w = Writer::new(&mut buf);
        write_announce_header(&mut w, 9, 1800, 3, 4);
        w.put(&[127, 0, 0, 1, 0x1a, 0xe1]);
        assert_eq!(w.len(), 26);
        assert_eq!(
            &buf[..26],
            &[
                0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 7, 8, 0, 0, 0, 3, 0, 0, 0, 4, 127, 0, 0, 1, 0x1a,
                0xe1
            ]
        );

        let mut w = Writer::new(&mut buf);
        write_scrape_header(&mut w, 9);
        write_scrape_entry(
            &mut w,
            ScrapeCounts {
                seeders: 1,
                completed: 2,
                leechers: 3,
            },
        );
        assert_eq!(
            &buf[..20],
            &[0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]
        );

        let mut w = Writer::new(&mut buf);
        write_error(&mut w, 9, "bad");
        assert_eq!(w.len(), 11);
        assert_eq!(&buf[..11], &[0, 0, 0, 3, 0, 0, 0, 9, b'b', b'a', b'd']);
    }

    #[test]
    fn peer_caps_fit_one_datagram() {
        assert_eq!(max_peers(false), 242);
        assert_eq!(max_peers(true), 67);
        assert!(ANNOUNCE_RESPONSE_HEADER_LEN + 18 * max_peers(true) <= MAX_PAYLOAD_V6);
    }
}
