//! BEP 3 / BEP 7 query strings of HTTP announces and scrapes.
//!
//! Runs once per request on the hot path, so it never allocates: the query
//! is scanned once, keeping the raw value of the last occurrence of every
//! known key, and the values are then checked and decoded on the stack.

use super::decimal::parse_decimal;
use crate::bittorrent::{Announce, Event, InfoHash, UrlData};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An announce as the HTTP query states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAnnounce {
    /// `passkey` is left empty (the caller takes it from the route), and so
    /// is `url_data`, which is BEP 41's (UDP) only.
    pub announce: Announce,
    /// BEP 23; true unless `compact=0`.
    pub compact: bool,
    /// True with `no_peer_id=1`.
    pub no_peer_id: bool,
    /// BEP 7: the last usable `ip`, `ipv4` (IPv4 only) or `ipv6` (IPv6
    /// only). Unusable values (hostnames, the wrong family) are ignored.
    pub ip: Option<IpAddr>,
    /// BEP 7's `ipv4=` and `ipv6=` on their own: the addresses a
    /// dual-stacked client has in each family.
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum QueryError {
    /// A required field is absent; names the field.
    Missing(&'static str),
    /// A field is malformed; names the field (or is [`TOO_MANY_INFO_HASH`]).
    Invalid(&'static str),
}

/// The `Invalid` message of a scrape with more infohashes than allowed.
pub const TOO_MANY_INFO_HASH: &str = "too many info_hash";

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Missing(field) => write!(f, "missing {field}"),
            // Already a sentence: "invalid too many info_hash" would read badly.
            QueryError::Invalid(message) if *message == TOO_MANY_INFO_HASH => f.write_str(message),
            QueryError::Invalid(field) => write!(f, "invalid {field}"),
        }
    }
}

impl std::error::Error for QueryError {}

/// The raw value of the last occurrence of each announce key.
#[derive(Default)]
struct RawAnnounce<'q> {
    info_hash: Option<&'q [u8]>,
    peer_id: Option<&'q [u8]>,
    port: Option<&'q [u8]>,
    left: Option<&'q [u8]>,
    uploaded: Option<&'q [u8]>,
    downloaded: Option<&'q [u8]>,
    event: Option<&'q [u8]>,
    numwant: Option<&'q [u8]>,
    key: Option<&'q [u8]>,
    compact: Option<&'q [u8]>,
    no_peer_id: Option<&'q [u8]>,
    /// IP values are resolved during the scan, in query order, since the
    /// three keys feed one field: the last usable one wins.
    ip: Option<IpAddr>,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
}

impl<'q> RawAnnounce<'q> {
    fn scan(query: &'q [u8]) -> Self {
        let mut raw = RawAnnounce::default();
        for (key, value) in pairs(query) {
            let slot = match key {
                b"info_hash" => &mut raw.info_hash,
                b"peer_id" => &mut raw.peer_id,
                b"port" => &mut raw.port,
                b"left" => &mut raw.left,
                b"uploaded" => &mut raw.uploaded,
                b"downloaded" => &mut raw.downloaded,
                b"event" => &mut raw.event,
                b"numwant" => &mut raw.numwant,
                b"key" => &mut raw.key,
                b"compact" => &mut raw.compact,
                b"no_peer_id" => &mut raw.no_peer_id,
                b"ip" | b"ipv4" | b"ipv6" => {
                    if let Some(ip) = parse_ip_param(key, value) {
                        raw.ip = Some(ip);
                        match ip {
                            IpAddr::V4(v4) if key == b"ipv4" => raw.ipv4 = Some(v4),
                            IpAddr::V6(v6) if key == b"ipv6" => raw.ipv6 = Some(v6),
                            _ => {}
                        }
                    }
                    continue;
                }
                _ => continue, // trackerid, corrupt, supportcrypto, ...
            };
            *slot = Some(value);
        }
        raw
    }
}

/// Parses the query string of an announce (without the leading `?`).
///
/// Fields are checked in a fixed order (info_hash, peer_id, port, left,
/// uploaded, downloaded, event, numwant), so the first problem in that
/// order is the one reported.
pub fn parse_announce(query: &[u8]) -> Result<HttpAnnounce, QueryError> {
    let raw = RawAnnounce::scan(query);
    let announce = Announce {
        info_hash: required_hash(raw.info_hash, "info_hash")?,
        peer_id: required_hash(raw.peer_id, "peer_id")?,
        port: parse_port(raw.port.ok_or(QueryError::Missing("port"))?)?,
        left: parse_decimal(raw.left.ok_or(QueryError::Missing("left"))?)
            .ok_or(QueryError::Invalid("left"))?,
        uploaded: optional_u64(raw.uploaded, "uploaded")?,
        downloaded: optional_u64(raw.downloaded, "downloaded")?,
        event: parse_event(raw.event.unwrap_or_default())?,
        numwant: parse_numwant(raw.numwant.unwrap_or_default())?,
        key: parse_key(raw.key.unwrap_or_default()),
        url_data: UrlData::new(),
        passkey: None,
        query: None,
    };
    Ok(HttpAnnounce {
        announce,
        compact: raw.compact != Some(b"0"),
        no_peer_id: raw.no_peer_id == Some(b"1"),
        ip: raw.ip,
        ipv4: raw.ipv4,
        ipv6: raw.ipv6,
    })
}

/// Appends every `info_hash` of a scrape query to `out`, in query order
/// (duplicates kept). More than `max` is `Invalid("too many info_hash")`.
/// None at all is Ok with nothing appended: the caller decides. On an
/// error `out` is left as it was.
pub fn parse_scrape(query: &[u8], max: usize, out: &mut Vec<InfoHash>) -> Result<(), QueryError> {
    let start = out.len();
    let result = append_info_hashes(query, max, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// A scrape without `info_hash`: a full scrape's parameters.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FullScrapeQuery {
    /// `token=`, percent-decoded.
    pub token: Option<Vec<u8>>,
    /// `format=json`: JSON instead of bencode.
    pub json: bool,
}

/// `Some` when `query` names no `info_hash` (a full scrape), with its
/// `token` and `format`; `None` for an ordinary scrape.
pub fn parse_full_scrape(query: &[u8]) -> Option<FullScrapeQuery> {
    let mut full = FullScrapeQuery::default();
    for (key, value) in pairs(query) {
        match key {
            b"info_hash" => return None,
            b"token" => full.token = percent_decode(value),
            b"format" => full.json = value == b"json",
            _ => {}
        }
    }
    Some(full)
}

fn append_info_hashes(query: &[u8], max: usize, out: &mut Vec<InfoHash>) -> Result<(), QueryError> {
    let mut count = 0usize;
    for (key, value) in pairs(query) {
        if key != b"info_hash" {
            continue;
        }
        count += 1;
        if count > max {
            return Err(QueryError::Invalid(TOO_MANY_INFO_HASH));
        }
        out.push(percent_decode_exact(value).ok_or(QueryError::Invalid("info_hash"))?);
    }
    Ok(())
}

/// Percent-decodes `input` into exactly `N` bytes. None on a bad escape
/// (`%zz`, a cut-short `%4`) or when the decoded length is not `N`. `+`
/// decodes to a space (form encoding); escapes take either hex case.
pub fn percent_decode_exact<const N: usize>(input: &[u8]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    let len = percent_decode_into(input, &mut out)?;
    (len == N).then_some(out)
}

/// Percent-decodes `input` (`+` is a space); None on a bad escape.
pub fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0; input.len()];
    let len = percent_decode_into(input, &mut out)?;
    out.truncate(len);
    Some(out)
}

/// Decodes into `out`, returning the decoded length; None on a bad escape
/// or when `out` is too small.
fn percent_decode_into(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut len = 0;
    let mut rest = input;
    while let Some((&first, tail)) = rest.split_first() {
        let (byte, tail) = match (first, tail) {
            (b'%', [high, low, tail @ ..]) => ((hex_digit(*high)? << 4) | hex_digit(*low)?, tail),
            (b'%', _) => return None,
            (b'+', _) => (b' ', tail),
            _ => (first, tail),
        };
        *out.get_mut(len)? = byte;
        len += 1;
        rest = tail;
    }
    Some(len)
}

fn hex_digit(b: u8) -> Option<u8> {
    match HEX[b as usize] {
        NOT_HEX => None,
        v => Some(v),
    }
}

/// Hex digit values by byte (either case); [`NOT_HEX`] elsewhere. A table,
/// because infohashes and peer ids are mostly escapes: 40 lookups each.
const HEX: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};
const NOT_HEX: u8 = 0xff;

/// `key=value` pairs split on `&`, key and value on the first `=` (no `=`:
/// an empty value). Empty pairs (`&&`) are skipped.
fn pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = query;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let (pair, tail) = match memchr::memchr(b'&', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        rest = tail;
        if pair.is_empty() {
            continue;
        }
        return Some(match memchr::memchr(b'=', pair) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        });
    })
}

fn required_hash(raw: Option<&[u8]>, field: &'static str) -> Result<[u8; 20], QueryError> {
    let raw = raw.ok_or(QueryError::Missing(field))?;
    percent_decode_exact(raw).ok_or(QueryError::Invalid(field))
}

fn parse_port(raw: &[u8]) -> Result<u16, QueryError> {
    parse_decimal(raw)
        .and_then(|port| u16::try_from(port).ok())
        .filter(|&port| port != 0)
        .ok_or(QueryError::Invalid("port"))
}

/// An optional counter: absent or empty is 0.
fn optional_u64(raw: Option<&[u8]>, field: &'static str) -> Result<u64, QueryError> {
    match raw {
        None | Some(b"") => Ok(0),
        Some(digits) => parse_decimal(digits).ok_or(QueryError::Invalid(field)),
    }
}

fn parse_event(raw: &[u8]) -> Result<Event, QueryError> {
    match raw {
        b"" => Ok(Event::None),
        b"started" => Ok(Event::Started),
        b"stopped" => Ok(Event::Stopped),
        b"completed" => Ok(Event::Completed),
        b"paused" => Ok(Event::Paused),
        _ => Err(QueryError::Invalid("event")),
    }
}

/// Absent, empty or negative (clients send -1 for "you choose"): None.
fn parse_numwant(raw: &[u8]) -> Result<Option<u32>, QueryError> {
    let invalid = QueryError::Invalid("numwant");
    match raw {
        b"" => Ok(None),
        [b'-', digits @ ..] => parse_decimal(digits).map(|_| None).ok_or(invalid),
        digits => parse_decimal(digits)
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or(invalid),
    }
}

/// The client's key as a number: 8 hex digits (what most clients send) are
/// read as hex; anything else is hashed, so equal keys stay equal.
/// Absent or empty is 0.
fn parse_key(raw: &[u8]) -> u32 {
    if raw.is_empty() {
        return 0;
    }
    parse_hex_u32(raw).unwrap_or_else(|| fnv1a_32(raw))
}

fn parse_hex_u32(raw: &[u8]) -> Option<u32> {
    if raw.len() != 8 {
        return None;
    }
    raw.iter()
        .try_fold(0u32, |acc, &b| Some((acc << 4) | u32::from(hex_digit(b)?)))
}

fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Longest textual IPv6 address (with an embedded IPv4 part) is 45 bytes.
const MAX_IP_TEXT: usize = 45;

/// BEP 7 address parameters. The value may be percent-encoded (IPv6
/// colons often are); hostnames and the wrong family are ignored.
fn parse_ip_param(key: &[u8], value: &[u8]) -> Option<IpAddr> {
    let mut text = [0u8; MAX_IP_TEXT];
    let len = percent_decode_into(value, &mut text)?;
    let text = std::str::from_utf8(text.get(..len)?).ok()?;
    match key {
        b"ipv4" => text.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        b"ipv6" => text.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        _ => text.parse::<IpAddr>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_ESCAPED: &str = "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A";
    const HASH: [u8; 20] = [
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf1, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
        0x12, 0x34, 0x56, 0x78, 0x9a,
    ];
    const PEER_ID: &str = "-qB4500-abcdefghijkl";
    const BASE: &str = "info_hash=%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A\
                        &peer_id=-qB4500-abcdefghijkl&port=6881&left=100";

    fn parse(query: &str) -> Result<HttpAnnounce, QueryError> {
        parse_announce(query.as_bytes())
    }

    fn with(extra: &str) -> HttpAnnounce {
        parse(&format!("{BASE}&{extra}")).expect("valid announce")
    }

    fn err_with(extra: &str) -> QueryError {
        parse(&format!("{BASE}&{extra}")).expect_err("invalid announce")
    }

    #[test]
    fn minimal_announce_has_defaults() {
        let a = parse(BASE).unwrap();
        assert_eq!(a.announce.info_hash, HASH);
        assert_eq!(&a.announce.peer_id, PEER_ID.as_bytes());
        assert_eq!(a.announce.port, 6881);
        assert_eq!(a.announce.left, 100);
        assert_eq!(a.announce.uploaded, 0);
        assert_eq!(a.announce.downloaded, 0);
        assert_eq!(a.announce.event, Event::None);
        assert_eq!(a.announce.numwant, None);
        assert_eq!(a.announce.key, 0);
        assert!(a.announce.url_data.is_empty());
        assert!(a.compact);
        assert!(!a.no_peer_id);
        assert_eq!(a.ip, None);
    }

    #[test]
    fn full_announce_from_a_real_client() {
        let q = format!(
            "info_hash={HASH_ESCAPED}&peer_id={PEER_ID}&port=51413&uploaded=123&downloaded=456\
             &left=0&corrupt=0&key=1A2b3C4d&event=started&numwant=80&compact=1&no_peer_id=1\
             &supportcrypto=1&redundant=0&trackerid=abc"
        );
        let a = parse(&q).unwrap();
        assert_eq!(a.announce.info_hash, HASH);
        assert_eq!(a.announce.port, 51413);
        assert_eq!(a.announce.uploaded, 123);
        assert_eq!(a.announce.downloaded, 456);
        assert_eq!(a.announce.left, 0);
        assert!(a.announce.is_seeder());
        assert_eq!(a.announce.key, 0x1a2b_3c4d);
        assert_eq!(a.announce.event, Event::Started);
        assert_eq!(a.announce.numwant, Some(80));
        assert!(a.compact);
        assert!(a.no_peer_id);
    }

    #[test]
    fn fields_in_any_order() {
        let q = format!("left=5&port=1&peer_id={PEER_ID}&info_hash={HASH_ESCAPED}");
        let a = parse(&q).unwrap();
        assert_eq!(a.announce.info_hash, HASH);
        assert_eq!(a.announce.left, 5);
        assert_eq!(a.announce.port, 1);
    }

    #[test]
    fn each_missing_required_field_is_named() {
        let fields = [
            ("info_hash", format!("info_hash={HASH_ESCAPED}")),
            ("peer_id", format!("peer_id={PEER_ID}")),
            ("port", "port=6881".to_string()),
            ("left", "left=1".to_string()),
        ];
        for (missing, _) in &fields {
            let q: Vec<&str> = fields
                .iter()
                .filter(|(name, _)| name != missing)
                .map(|(_, pair)| pair.as_str())
                .collect();
            assert_eq!(
                parse(&q.join("&")),
                Err(QueryError::Missing(missing)),
                "{missing}"
            );
        }
    }

    #[test]
    fn empty_query_reports_info_hash_first() {
        assert_eq!(parse(""), Err(QueryError::Missing("info_hash")));
        assert_eq!(parse("&&&"), Err(QueryError::Missing("info_hash")));
    }

    #[test]
    fn empty_required_values_are_invalid_not_missing() {
        for field in ["info_hash", "peer_id", "port", "left"] {
            let q = format!("{BASE}&{field}=");
            assert_eq!(parse(&q), Err(QueryError::Invalid(field)), "{field}");
            let q = format!("{BASE}&{field}");
            assert_eq!(
                parse(&q),
                Err(QueryError::Invalid(field)),
                "{field} without ="
            );
        }
    }

    #[test]
    fn wrong_length_hashes() {
        let h19 = "a".repeat(19);
        let h21 = "a".repeat(21);
        for (field, other) in [("info_hash", "peer_id"), ("peer_id", "info_hash")] {
            for bad in [&h19, &h21] {
                let q = format!("{field}={bad}&{other}={PEER_ID}&port=1&left=0");
                assert_eq!(parse(&q), Err(QueryError::Invalid(field)));
            }
        }
        // 19 bytes written as escapes, one short.
        let q = format!(
            "info_hash={}&peer_id={PEER_ID}&port=1&left=0",
            "%00".repeat(19)
        );
        assert_eq!(parse(&q), Err(QueryError::Invalid("info_hash")));
        let q = format!(
            "info_hash={}&peer_id={PEER_ID}&port=1&left=0",
            "%00".repeat(20)
        );
        assert_eq!(parse(&q).unwrap().announce.info_hash, [0; 20]);
    }

    #[test]
    fn bad_escapes_in_hashes() {
        let prefix = "a".repeat(19);
        for bad in ["%zz", "%4", "%", "%g0", "%0g"] {
            let q = format!("info_hash={prefix}{bad}&peer_id={PEER_ID}&port=1&left=0");
            assert_eq!(parse(&q), Err(QueryError::Invalid("info_hash")), "{bad}");
        }
    }

    #[test]
    fn percent_decode_cases_and_plus() {
        assert_eq!(percent_decode_exact::<2>(b"%ab"), None);
        assert_eq!(percent_decode_exact::<1>(b"%ab"), Some([0xab]));
        assert_eq!(percent_decode_exact::<1>(b"%AB"), Some([0xab]));
        assert_eq!(percent_decode_exact::<1>(b"%aB"), Some([0xab]));
        assert_eq!(percent_decode_exact::<3>(b"a+b"), Some(*b"a b"));
        assert_eq!(percent_decode_exact::<1>(b"%2B"), Some(*b"+"));
        assert_eq!(percent_decode_exact::<1>(b"%25"), Some(*b"%"));
        assert_eq!(percent_decode_exact::<0>(b""), Some([]));
        assert_eq!(percent_decode_exact::<1>(b""), None);
        assert_eq!(percent_decode_exact::<1>(b"ab"), None);
        assert_eq!(percent_decode_exact::<1>(b"%"), None);
        assert_eq!(percent_decode_exact::<1>(b"%4"), None);
        assert_eq!(percent_decode_exact::<1>(b"%zz"), None);
        assert_eq!(percent_decode_exact::<2>(b"%4%41"), None);
        assert_eq!(
            percent_decode_exact::<4>(b"%00%FF%fF%Ff"),
            Some([0, 255, 255, 255])
        );
    }

    #[test]
    fn plus_in_peer_id_is_a_space() {
        let q = format!("info_hash={HASH_ESCAPED}&peer_id=-AZ+123-abcdefghijkl&port=1&left=0");
        assert_eq!(
            &parse(&q).unwrap().announce.peer_id,
            b"-AZ 123-abcdefghijkl"
        );
    }

    #[test]
    fn every_event() {
        for (text, event) in [
            ("", Event::None),
            ("started", Event::Started),
            ("stopped", Event::Stopped),
            ("completed", Event::Completed),
            ("paused", Event::Paused),
        ] {
            assert_eq!(
                with(&format!("event={text}")).announce.event,
                event,
                "{text}"
            );
        }
        assert_eq!(with("event").announce.event, Event::None);
        for bad in ["Started", "start", "empty", "started ", "%73tarted"] {
            assert_eq!(
                err_with(&format!("event={bad}")),
                QueryError::Invalid("event"),
                "{bad}"
            );
        }
    }

    #[test]
    fn numwant_values() {
        assert_eq!(with("numwant=-1").announce.numwant, None);
        assert_eq!(with("numwant=-200").announce.numwant, None);
        assert_eq!(with("numwant=0").announce.numwant, Some(0));
        assert_eq!(with("numwant=50").announce.numwant, Some(50));
        assert_eq!(with("numwant=4294967295").announce.numwant, Some(u32::MAX));
        assert_eq!(with("numwant=").announce.numwant, None);
        for bad in [
            "abc",
            "-",
            "--1",
            "+5",
            " 5",
            "5x",
            "4294967296",
            "-x",
            "1.5",
        ] {
            assert_eq!(
                err_with(&format!("numwant={bad}")),
                QueryError::Invalid("numwant"),
                "{bad}"
            );
        }
    }

    #[test]
    fn port_range() {
        assert_eq!(err_with("port=0"), QueryError::Invalid("port"));
        assert_eq!(with("port=1").announce.port, 1);
        assert_eq!(with("port=65535").announce.port, 65535);
        assert_eq!(with("port=065535").announce.port, 65535);
        for bad in [
            "65536",
            "99999999999999999999999",
            "-1",
            "+1",
            "1 ",
            "0x10",
            "port",
        ] {
            assert_eq!(
                err_with(&format!("port={bad}")),
                QueryError::Invalid("port"),
                "{bad}"
            );
        }
    }

    #[test]
    fn counters_and_overflow() {
        let a = with("uploaded=18446744073709551615&downloaded=7&left=42");
        assert_eq!(a.announce.uploaded, u64::MAX);
        assert_eq!(a.announce.downloaded, 7);
        assert_eq!(a.announce.left, 42);
        let overflow = "18446744073709551616";
        for field in ["uploaded", "downloaded", "left"] {
            assert_eq!(
                err_with(&format!("{field}={overflow}")),
                QueryError::Invalid(field)
            );
            assert_eq!(err_with(&format!("{field}=-1")), QueryError::Invalid(field));
            assert_eq!(
                err_with(&format!("{field}=1e3")),
                QueryError::Invalid(field)
            );
        }
        // Empty optional counters are as if absent.
        assert_eq!(with("uploaded=&downloaded").announce.uploaded, 0);
    }

    #[test]
    fn repeated_keys_last_wins() {
        let a = with("port=1&port=2&event=started&event=stopped&left=9&numwant=3&numwant=4");
        assert_eq!(a.announce.port, 2);
        assert_eq!(a.announce.event, Event::Stopped);
        assert_eq!(a.announce.left, 9);
        assert_eq!(a.announce.numwant, Some(4));
        // Only the last occurrence is checked.
        assert_eq!(with("port=bad&port=3").announce.port, 3);
        assert_eq!(err_with("port=3&port=bad"), QueryError::Invalid("port"));
        let q = format!("{BASE}&info_hash={}", "%00".repeat(20));
        assert_eq!(parse(&q).unwrap().announce.info_hash, [0; 20]);
    }

    #[test]
    fn compact_and_no_peer_id() {
        assert!(with("compact=1").compact);
        assert!(!with("compact=0").compact);
        assert!(with("compact=").compact);
        assert!(with("compact=0&compact=1").compact);
        assert!(with("no_peer_id=1").no_peer_id);
        assert!(!with("no_peer_id=0").no_peer_id);
        assert!(!with("no_peer_id").no_peer_id);
    }

    #[test]
    fn key_hex_or_hashed() {
        assert_eq!(with("key=DEADBEEF").announce.key, 0xdead_beef);
        assert_eq!(with("key=deadbeef").announce.key, 0xdead_beef);
        assert_eq!(with("key=00000000").announce.key, 0);
        assert_eq!(with("key=").announce.key, 0);
        // Not 8 hex digits: hashed, stably, and different inputs differ.
        let hashed = with("key=my-key").announce.key;
        assert_eq!(hashed, fnv1a_32(b"my-key"));
        assert_eq!(hashed, with("key=my-key").announce.key);
        assert_ne!(hashed, with("key=my-kez").announce.key);
        assert_eq!(with("key=deadbee").announce.key, fnv1a_32(b"deadbee"));
        assert_eq!(with("key=deadbeef0").announce.key, fnv1a_32(b"deadbeef0"));
        assert_eq!(with("key=deadbeeg").announce.key, fnv1a_32(b"deadbeeg"));
        // FNV-1a reference value.
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
    }

    #[test]
    fn ip_parameters() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(with("ip=192.0.2.7").ip, Some(v4));
        assert_eq!(with("ip=2001:db8::1").ip, Some(v6));
        assert_eq!(with("ip=2001%3Adb8%3A%3A1").ip, Some(v6));
        assert_eq!(with("ipv4=192.0.2.7").ip, Some(v4));
        assert_eq!(with("ipv6=2001%3adb8%3a%3a1").ip, Some(v6));
        // Wrong family or not an address: ignored.
        let both = with("ipv4=192.0.2.7&ipv6=2001%3adb8%3a%3a1");
        assert_eq!(
            (both.ipv4, both.ipv6),
            (
                Some(Ipv4Addr::new(192, 0, 2, 7)),
                Some("2001:db8::1".parse().unwrap())
            )
        );
        assert_eq!(
            with("ip=192.0.2.7").ipv4,
            None,
            "ip= is no family parameter"
        );
        assert_eq!(with("ipv4=2001:db8::1").ip, None);
        assert_eq!(with("ipv6=192.0.2.7").ip, None);
        assert_eq!(with("ip=tracker.example.org").ip, None);
        assert_eq!(with("ip=").ip, None);
        assert_eq!(with("ip=%zz").ip, None);
        assert_eq!(with(&format!("ip={}", "1".repeat(100))).ip, None);
        // The last usable one wins, whichever key carried it.
        assert_eq!(with("ipv4=192.0.2.7&ipv6=2001:db8::1").ip, Some(v6));
        assert_eq!(with("ipv6=2001:db8::1&ipv4=192.0.2.7").ip, Some(v4));
        assert_eq!(with("ip=192.0.2.7&ipv4=2001:db8::1").ip, Some(v4));
        assert_eq!(with("ip=192.0.2.7&ip=example.org").ip, Some(v4));
    }

    #[test]
    fn unknown_and_odd_pairs_are_ignored() {
        let a = with("trackerid=x&=value&&novalue&corrupt=1&supportcrypto=1&info%5Fhash=zz");
        assert_eq!(a.announce.info_hash, HASH);
    }

    #[test]
    fn value_keeps_later_equals_signs() {
        // Split on the first '=' only: the value "a=b" is not a number.
        assert_eq!(err_with("port=1=2"), QueryError::Invalid("port"));
        assert_eq!(with("key=a=b").announce.key, fnv1a_32(b"a=b"));
    }

    #[test]
    fn display() {
        assert_eq!(
            QueryError::Missing("info_hash").to_string(),
            "missing info_hash"
        );
        assert_eq!(QueryError::Invalid("port").to_string(), "invalid port");
        assert_eq!(
            QueryError::Invalid(TOO_MANY_INFO_HASH).to_string(),
            "too many info_hash"
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678u32;
        let alphabet = b"%&=+-0123456789abcdefABCDEFzinfo_hashpeer_idportleftevent";
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    alphabet[(seed >> 24) as usize % alphabet.len()]
                })
                .collect();
            let _ = parse_announce(&bytes);
            let _ = parse_scrape(&bytes, 3, &mut Vec::new());
            let _ = percent_decode_exact::<20>(&bytes);
        }
    }

    fn scrape(query: &str, max: usize) -> (Result<(), QueryError>, Vec<InfoHash>) {
        let mut out = Vec::new();
        let result = parse_scrape(query.as_bytes(), max, &mut out);
        (result, out)
    }

    #[test]
    fn scrape_zero_one_three() {
        assert_eq!(scrape("", 10), (Ok(()), vec![]));
        assert_eq!(scrape("foo=bar", 10), (Ok(()), vec![]));
        assert_eq!(
            scrape(&format!("info_hash={HASH_ESCAPED}"), 10),
            (Ok(()), vec![HASH])
        );
        let a = "a".repeat(20);
        let b = "%62".repeat(20);
        let q = format!("info_hash={HASH_ESCAPED}&x=1&info_hash={a}&info_hash={b}");
        assert_eq!(scrape(&q, 3), (Ok(()), vec![HASH, [b'a'; 20], [b'b'; 20]]));
    }

    #[test]
    fn scrape_keeps_duplicates_and_appends() {
        let q = format!("info_hash={HASH_ESCAPED}&info_hash={HASH_ESCAPED}");
        let mut out = vec![[7u8; 20]];
        assert_eq!(parse_scrape(q.as_bytes(), 2, &mut out), Ok(()));
        assert_eq!(out, vec![[7; 20], HASH, HASH]);
    }

    #[test]
    fn scrape_over_max() {
        let q =
            format!("info_hash={HASH_ESCAPED}&info_hash={HASH_ESCAPED}&info_hash={HASH_ESCAPED}");
        assert_eq!(scrape(&q, 3).0, Ok(()));
        assert_eq!(
            scrape(&q, 2),
            (Err(QueryError::Invalid(TOO_MANY_INFO_HASH)), vec![])
        );
        assert_eq!(
            scrape(&q, 0).0,
            Err(QueryError::Invalid(TOO_MANY_INFO_HASH))
        );
        // The limit counts this call's hashes only, and an error restores `out`.
        let mut out = vec![[1u8; 20]; 5];
        assert!(parse_scrape(q.as_bytes(), 2, &mut out).is_err());
        assert_eq!(out, vec![[1u8; 20]; 5]);
    }

    #[test]
    fn scrape_bad_hash() {
        let q = format!("info_hash={HASH_ESCAPED}&info_hash=short");
        assert_eq!(
            scrape(&q, 10),
            (Err(QueryError::Invalid("info_hash")), vec![])
        );
        assert_eq!(
            scrape("info_hash", 10).0,
            Err(QueryError::Invalid("info_hash"))
        );
        let q = format!("info_hash={}%zz", "a".repeat(19));
        assert_eq!(scrape(&q, 10).0, Err(QueryError::Invalid("info_hash")));
    }
}
