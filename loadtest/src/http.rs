//! HTTP tracker requests and response checks: pure functions over byte
//! buffers, shared by the HTTP driver and the tests.

use std::net::SocketAddr;

use crate::bencode::{Dict, Value};
use crate::stats::ErrorKind;
use crate::workload::{PeerIdentity, RequestKind};

/// Largest response head we wait for before calling it garbage.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest body we accept (a scrape of many torrents is the biggest).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Writes requests into a caller-owned buffer, so a connection reuses
/// one allocation for its whole life.
#[derive(Clone, Debug)]
pub struct RequestBuilder {
    announce_prefix: Vec<u8>,
    scrape_prefix: Vec<u8>,
    /// `&numwant=N&compact=1 HTTP/1.1\r\nHost: ..\r\n...\r\n\r\n`
    announce_suffix: Vec<u8>,
    scrape_suffix: Vec<u8>,
}

impl RequestBuilder {
    pub fn new(target: SocketAddr, announce_path: &str, scrape_path: &str, numwant: u32) -> Self {
        let prefix = |path: &str| {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("GET {path}{sep}info_hash=").into_bytes()
        };
        let head_end = format!(" HTTP/1.1\r\nHost: {target}\r\nUser-Agent: shoal-loadtest\r\n\r\n");
        RequestBuilder {
            announce_prefix: prefix(announce_path),
            scrape_prefix: prefix(scrape_path),
            announce_suffix: format!("&numwant={numwant}&compact=1{head_end}").into_bytes(),
            scrape_suffix: head_end.into_bytes(),
        }
    }

    /// Appends an announce (event none; `left = 0` makes it a seeder).
    pub fn announce(
        &self,
        out: &mut Vec<u8>,
        info_hash: &[u8; 20],
        peer: &PeerIdentity,
        left: u64,
    ) {
        out.extend_from_slice(&self.announce_prefix);
        percent_encode(out, info_hash);
        out.extend_from_slice(b"&peer_id=");
        percent_encode(out, &peer.peer_id);
        out.extend_from_slice(b"&port=");
        put_u64(out, u64::from(peer.port));
        out.extend_from_slice(b"&uploaded=0&downloaded=0&left=");
        put_u64(out, left);
        out.extend_from_slice(b"&key=");
        for shift in (0..8).rev() {
            out.push(HEX[((peer.key >> (shift * 4)) & 0xf) as usize]);
        }
        out.extend_from_slice(&self.announce_suffix);
    }

    /// Appends a scrape for all of `hashes`.
    pub fn scrape<'a>(&self, out: &mut Vec<u8>, hashes: impl IntoIterator<Item = &'a [u8; 20]>) {
        out.extend_from_slice(&self.scrape_prefix);
        for (i, h) in hashes.into_iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b"&info_hash=");
            }
            percent_encode(out, h);
        }
        out.extend_from_slice(&self.scrape_suffix);
    }
}

/// Every byte as `%XX`: fixed length, always valid.
fn percent_encode(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
    }
}

fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// The parts of a response head the driver needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub head_len: usize,
    pub content_length: usize,
    /// The server will close after this response.
    pub close: bool,
}

/// Parses a response head at the start of `buf`: `Ok(None)` if more bytes
/// are needed. Bodies must be framed by Content-Length (no chunked).
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, ErrorKind> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(ErrorKind::HttpFraming)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ErrorKind::HttpFraming),
    };
    let status = resp.code.ok_or(ErrorKind::HttpFraming)?;
    let mut content_length = None;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).map_err(|_| ErrorKind::HttpFraming)?;
            let n: usize = v.trim().parse().map_err(|_| ErrorKind::HttpFraming)?;
            if content_length.is_some_and(|c| c != n) || n > MAX_BODY {
                return Err(ErrorKind::HttpFraming);
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ErrorKind::HttpFraming);
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = h.value.to_ascii_lowercase();
            if v.windows(5).any(|w| w == b"close") {
                close = true;
            } else if v.windows(10).any(|w| w == b"keep-alive") {
                close = false;
            }
        }
    }
    let content_length = content_length.ok_or(ErrorKind::HttpFraming)?;
    Ok(Some(Head {
        status,
        head_len,
        content_length,
        close,
    }))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    Announce { peers: usize },
    Scrape { files: usize },
}

/// Checks a complete response to an announce (`scrape_n` unused) or a
/// scrape of `scrape_n` info hashes.
pub fn check_response(
    kind: RequestKind,
    status: u16,
    body: &[u8],
    numwant: u32,
    scrape_n: usize,
) -> Result<Checked, ErrorKind> {
    if status != 200 {
        return Err(ErrorKind::HttpStatus);
    }
    // aquatic_http ends its bodies with a CRLF (inside Content-Length);
    // clients ignore it, so trailing line breaks are allowed, nothing else.
    let end = body
        .iter()
        .rposition(|b| !matches!(b, b'\r' | b'\n'))
        .map_or(0, |i| i + 1);
    let dict = Dict::parse(&body[..end]).map_err(|_| ErrorKind::BadBencode)?;
    if dict.get(b"failure reason").is_some() {
        return Err(ErrorKind::FailureReason);
    }
    match kind {
        RequestKind::Announce | RequestKind::Connect => {
            dict.get(b"interval")
                .and_then(|v| v.as_int())
                .ok_or(ErrorKind::MissingField)?;
            let v4 = dict.get(b"peers");
            let v6 = dict.get(b"peers6");
            if v4.is_none() && v6.is_none() {
                return Err(ErrorKind::MissingField);
            }
            let mut total = 0;
            for (v, size) in [(v4, 6), (v6, 18)] {
                if let Some(v) = v {
                    let n = count_peers(v, size)?;
                    if n as u64 > u64::from(numwant) {
                        return Err(ErrorKind::TooManyPeers);
                    }
                    total += n;
                }
            }
            Ok(Checked::Announce { peers: total })
        }
        RequestKind::Scrape => {
            let files = dict
                .get(b"files")
                .and_then(|v| v.as_dict())
                .ok_or(ErrorKind::MissingField)?;
            let mut n = 0;
            for (hash, stats) in files.entries() {
                if hash.len() != 20 || stats.as_dict().is_none() {
                    return Err(ErrorKind::MissingField);
                }
                n += 1;
            }
            // Repeated hashes may merge, so fewer entries are fine; none at
            // all is a tracker that ignores scrapes.
            if n > scrape_n || (n == 0 && scrape_n > 0) {
                return Err(ErrorKind::BadLength);
            }
            Ok(Checked::Scrape { files: n })
        }
    }
}

/// Peers in a compact string (`size` bytes each) or a list of dicts.
fn count_peers(v: Value<'_>, size: usize) -> Result<usize, ErrorKind> {
    if let Some(b) = v.as_bytes() {
        if !b.len().is_multiple_of(size) {
            return Err(ErrorKind::BadPeers);
        }
        return Ok(b.len() / size);
    }
    if let Some(list) = v.as_list() {
        let mut n = 0;
        for p in list {
            if p.as_dict().is_none() {
                return Err(ErrorKind::BadPeers);
            }
            n += 1;
        }
        return Ok(n);
    }
    Err(ErrorKind::BadPeers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerIdentity {
        PeerIdentity {
            peer_id: *b"-SL0100-abcdefghijkl",
            port: 6881,
            key: 0xabcd_0123,
        }
    }

    #[test]
    fn builds_announce_and_scrape() {
        let b = RequestBuilder::new(
            "127.0.0.1:8080".parse().unwrap(),
            "/announce",
            "/scrape?passkey=x",
            50,
        );
        let mut out = Vec::new();
        b.announce(&mut out, &[0xab; 20], &peer(), 0);
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(s.starts_with("GET /announce?info_hash=%AB%AB"), "{s}");
        assert!(s.contains("&peer_id=%2D%53%4C"), "{s}");
        assert!(s.contains("&port=6881&uploaded=0&downloaded=0&left=0&key=ABCD0123&numwant=50&compact=1 HTTP/1.1\r\n"));
        assert!(s.ends_with("Host: 127.0.0.1:8080\r\nUser-Agent: shoal-loadtest\r\n\r\n"));
        // Head must parse as a request.
        let mut h = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut h);
        assert!(matches!(req.parse(&out), Ok(httparse::Status::Complete(n)) if n == out.len()));

        out.clear();
        b.scrape(&mut out, [&[1u8; 20], &[2u8; 20]]);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("GET /scrape?passkey=x&info_hash=%01%01"),
            "{s}"
        );
        assert_eq!(s.matches("info_hash=").count(), 2);
    }

    #[test]
    fn parses_heads() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nd1:ae";
        let h = parse_head(r).unwrap().unwrap();
        assert_eq!(
            h,
            Head {
                status: 200,
                head_len: r.len() - 5,
                content_length: 5,
                close: false
            }
        );
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le"), Ok(None));
        let close =
            parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(close.close);
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\n\r\n"),
            Err(ErrorKind::HttpFraming)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ErrorKind::HttpFraming)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Err(ErrorKind::HttpFraming)
        );
        assert_eq!(parse_head(b"garbage\r\n\r\n"), Err(ErrorKind::HttpFraming));
    }

    #[test]
    fn checks_announce_bodies() {
        let a = RequestKind::Announce;
        let ok = b"d8:completei1e10:incompletei0e8:intervali1800e5:peers12:abcdefghijkl6:peers60:e";
        assert_eq!(
            check_response(a, 200, ok, 50, 0),
            Ok(Checked::Announce { peers: 2 })
        );
        assert_eq!(
            check_response(a, 200, ok, 1, 0),
            Err(ErrorKind::TooManyPeers)
        );
        assert_eq!(
            check_response(a, 404, ok, 50, 0),
            Err(ErrorKind::HttpStatus)
        );
        assert_eq!(
            check_response(a, 200, b"d8:intervali1800e5:peers5:abcdee", 50, 0),
            Err(ErrorKind::BadPeers)
        );
        assert_eq!(
            check_response(a, 200, b"d8:intervali1800e6:peers63:abce", 50, 0),
            Err(ErrorKind::BadPeers)
        );
        assert_eq!(
            check_response(a, 200, b"d5:peers0:e", 50, 0),
            Err(ErrorKind::MissingField)
        );
        assert_eq!(
            check_response(a, 200, b"d8:intervali1800e5:peers0:", 50, 0),
            Err(ErrorKind::BadBencode)
        );
        assert_eq!(
            check_response(a, 200, b"<html>", 50, 0),
            Err(ErrorKind::BadBencode)
        );
        // A trailing CRLF (aquatic_http) is tolerated; other trailing
        // bytes are not.
        let crlf = b"d8:intervali1800e5:peers0:e\r\n";
        assert_eq!(
            check_response(a, 200, crlf, 50, 0),
            Ok(Checked::Announce { peers: 0 })
        );
        assert_eq!(
            check_response(a, 200, b"d8:intervali1800e5:peers0:ex", 50, 0),
            Err(ErrorKind::BadBencode)
        );
        assert_eq!(
            check_response(a, 200, b"d14:failure reason6:bannede", 50, 0),
            Err(ErrorKind::FailureReason)
        );
        let dict_peers = b"d8:intervali1800e5:peersld2:ip9:127.0.0.14:porti1eeee";
        assert_eq!(
            check_response(a, 200, dict_peers, 50, 0),
            Ok(Checked::Announce { peers: 1 })
        );
    }

    #[test]
    fn arbitrary_or_cut_answers_never_panic() {
        let good = b"HTTP/1.1 200 OK\r\nContent-Length: 62\r\n\r\nd8:intervali1800e5:peers12:abcdefghijkl6:peers618:abcdefghijklmnopqre";
        for cut in 0..=good.len() {
            if let Ok(Some(h)) = parse_head(&good[..cut]) {
                let body = good
                    .get(h.head_len..(h.head_len + h.content_length).min(cut))
                    .unwrap_or(&[]);
                let _ = check_response(RequestKind::Announce, h.status, body, 50, 0);
            }
        }
        let alphabet = b"dile0123456789:-xe ";
        let mut rng = crate::workload::Rng::new(9);
        let mut buf = Vec::new();
        for _ in 0..20_000 {
            buf.clear();
            buf.push(b'd');
            for _ in 0..rng.below(60) {
                buf.push(alphabet[rng.below(alphabet.len() as u32) as usize]);
            }
            for kind in [RequestKind::Announce, RequestKind::Scrape] {
                let _ = check_response(kind, 200, &buf, 5, 5);
            }
            let _ = parse_head(&buf);
        }
    }

    #[test]
    fn checks_scrape_bodies() {
        let s = RequestKind::Scrape;
        let ok = b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei1eeee";
        assert_eq!(
            check_response(s, 200, ok, 0, 1),
            Ok(Checked::Scrape { files: 1 })
        );
        assert_eq!(check_response(s, 200, ok, 0, 0), Err(ErrorKind::BadLength));
        assert_eq!(
            check_response(s, 200, b"d8:intervali5ee", 0, 1),
            Err(ErrorKind::MissingField)
        );
        assert_eq!(
            check_response(s, 200, b"d5:filesd3:abcdeee", 0, 1),
            Err(ErrorKind::MissingField)
        );
        // An empty `files` for a scrape that named hashes: not answered.
        assert_eq!(
            check_response(s, 200, b"d5:filesdee", 0, 2),
            Err(ErrorKind::BadLength)
        );
    }
}
