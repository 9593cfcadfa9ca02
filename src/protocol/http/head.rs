//! The HTTP/1.x request head (request line and headers), parsed with
//! httparse without copying: everything borrows the read buffer.

use super::decimal::parse_decimal;

/// Most headers a request may carry; real clients send a handful.
pub const MAX_HEADERS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    /// The request target before the first `?`, as sent (not decoded).
    pub path: &'a [u8],
    /// The request target after the first `?`; empty if there is none.
    pub query: &'a [u8],
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// The value of the configured real-IP header (its last occurrence).
    pub real_ip: Option<&'a [u8]>,
    /// Bytes of the head, including the final CRLFCRLF: the next
    /// pipelined request starts here.
    pub len: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x: the connection should be answered 400 and closed.
    Malformed(&'static str),
    /// The request has a body (tracker requests never do).
    BodyNotAccepted,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::Malformed(why) => write!(f, "malformed request: {why}"),
            HeadError::BodyNotAccepted => f.write_str("request bodies are not accepted"),
        }
    }
}

impl std::error::Error for HeadError {}

/// Where the blank line that ends a request head starts, searched for
/// from `from` on (a few bytes before it, so a terminator split across
/// reads is found): "\n\n", or "\n\r\n" with the "\r" before it if there
/// is one. Only says whether a head is complete; [`parse_head`] decides
/// what it holds. One pass over the newlines only.
pub fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let window = buf.get(start..)?;
    memchr::memchr_iter(b'\n', window).find_map(|i| {
        let at = start + i;
        match &buf[at + 1..] {
            [b'\n', ..] => Some(at),
            [b'\r', b'\n', ..] => Some(at - usize::from(at > 0 && buf[at - 1] == b'\r')),
            _ => None,
        }
    })
}

/// Parses the request head at the start of `buf`. `Ok(None)`: incomplete,
/// read more (the caller bounds how much it buffers). `real_ip_header`
/// names the header to report in `real_ip`, case-insensitively.
pub fn parse_head<'a>(
    buf: &'a [u8],
    real_ip_header: Option<&str>,
) -> Result<Option<RequestHead<'a>>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(HeadError::Malformed(describe(error))),
    };
    // A complete parse always sets these; treat their absence as malformed
    // rather than trusting that.
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    let headers = Headers::scan(request.headers, real_ip_header)?;
    let (path, query) = split_target(target.as_bytes());
    Ok(Some(RequestHead {
        method,
        path,
        query,
        keep_alive: headers.keep_alive(version),
        real_ip: headers.real_ip,
        len,
    }))
}

fn describe(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid new line",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// Splits the request target at its first `?`.
fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let mut halves = target.splitn(2, |&b| b == b'?');
    let path = halves.next().unwrap_or_default();
    (path, halves.next().unwrap_or_default())
}

/// What the head's headers say, gathered in one pass.
#[derive(Default)]
struct Headers<'a> {
    close: bool,
    keep_alive: bool,
    real_ip: Option<&'a [u8]>,
}

impl<'a> Headers<'a> {
    fn scan(
        headers: &[httparse::Header<'a>],
        real_ip_header: Option<&str>,
    ) -> Result<Self, HeadError> {
        let mut seen = Headers::default();
        for header in headers {
            let name = header.name;
            let value = header.value.trim_ascii();
            if name.eq_ignore_ascii_case("content-length") {
                if parse_content_length(value)? > 0 {
                    return Err(HeadError::BodyNotAccepted);
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(HeadError::BodyNotAccepted);
            } else if name.eq_ignore_ascii_case("connection") {
                seen.connection_tokens(value);
            }
            // Checked on its own: the configured header could be any name.
            if real_ip_header.is_some_and(|wanted| name.eq_ignore_ascii_case(wanted)) {
                seen.real_ip = Some(value); // the last occurrence wins
            }
        }
        Ok(seen)
    }

    /// `Connection` is a comma list of case-insensitive tokens.
    fn connection_tokens(&mut self, value: &[u8]) {
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            }
        }
    }

    /// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes
    /// it unless asked to keep it. `close` wins over `keep-alive`.
    fn keep_alive(&self, minor_version: u8) -> bool {
        if self.close {
            return false;
        }
        minor_version >= 1 || self.keep_alive
    }
}

/// Plain decimal only: anything else is malformed, since disagreeing
/// about a body's length is how requests get smuggled past proxies.
fn parse_content_length(value: &[u8]) -> Result<u64, HeadError> {
    parse_decimal(value).ok_or(HeadError::Malformed("invalid content-length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_a_head_incrementally() {
        let req = b"GET /announce HTTP/1.1\r\nHost: x\r\n\r\nrest";
        assert_eq!(head_end(req, 0), Some(31));
        for split in 0..req.len() {
            let found = head_end(&req[..split], 0);
            assert_eq!(found.is_some(), split >= 35, "split {split}");
        }
        // Resuming from where the last read ended still finds a boundary
        // split across reads.
        assert_eq!(head_end(req, 33), Some(31));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n", 10), Some(14));
        assert_eq!(head_end(b"", 5), None);
        // Bare newlines, mixed endings, and a head that is only an end.
        assert_eq!(head_end(b"GET / HTTP/1.0\nHost: x\n\r\n", 0), Some(22));
        assert_eq!(head_end(b"\r\n\r\n", 0), Some(0));
        assert_eq!(head_end(b"\n\n", 0), Some(0));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r", 0), None);
        // Every complete head is found from every resume point up to its end.
        for from in 0..=35 {
            assert_eq!(head_end(req, from), Some(31), "from {from}");
        }
    }

    const SAMPLE: &[u8] = b"GET /announce?info_hash=%12abc&port=6881 HTTP/1.1\r\n\
        Host: tracker.example.org:6969\r\n\
        User-Agent: qBittorrent/4.5.0\r\n\
        Accept-Encoding: gzip\r\n\
        X-Real-IP: 192.0.2.9\r\n\
        \r\n";

    fn head(buf: &[u8]) -> RequestHead<'_> {
        parse_head(buf, None).expect("valid").expect("complete")
    }

    fn head_with<'a>(buf: &'a [u8], real_ip: &str) -> RequestHead<'a> {
        parse_head(buf, Some(real_ip))
            .expect("valid")
            .expect("complete")
    }

    fn keep_alive(buf: &[u8]) -> bool {
        head(buf).keep_alive
    }

    #[test]
    fn get_with_query() {
        let h = head(SAMPLE);
        assert_eq!(h.method, "GET");
        assert_eq!(h.path, b"/announce");
        assert_eq!(h.query, b"info_hash=%12abc&port=6881");
        assert!(h.keep_alive);
        assert_eq!(h.real_ip, None);
        assert_eq!(h.len, SAMPLE.len());
    }

    #[test]
    fn get_without_query() {
        let h = head(b"GET /scrape HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, b"/scrape");
        assert_eq!(h.query, b"");
        let h = head(b"GET /scrape? HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, b"/scrape");
        assert_eq!(h.query, b"");
    }

    #[test]
    fn query_splits_at_first_question_mark() {
        let h = head(b"GET /a?b=1?c=2 HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, b"/a");
        assert_eq!(h.query, b"b=1?c=2");
    }

    #[test]
    fn other_methods_are_reported() {
        assert_eq!(head(b"HEAD /announce HTTP/1.1\r\n\r\n").method, "HEAD");
        assert_eq!(
            head(b"POST /announce HTTP/1.1\r\nContent-Length: 0\r\n\r\n").method,
            "POST"
        );
    }

    #[test]
    fn http11_keep_alive_rules() {
        assert!(keep_alive(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!keep_alive(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!keep_alive(b"GET / HTTP/1.1\r\nconnection: CLOSE\r\n\r\n"));
        assert!(keep_alive(
            b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(!keep_alive(
            b"GET / HTTP/1.1\r\nConnection: Upgrade, close\r\n\r\n"
        ));
        assert!(!keep_alive(
            b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"
        ));
        // "closed" is not the token "close".
        assert!(keep_alive(b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n"));
    }

    #[test]
    fn http10_keep_alive_rules() {
        assert!(!keep_alive(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keep_alive(
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(keep_alive(
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive, Upgrade\r\n\r\n"
        ));
        assert!(keep_alive(
            b"GET / HTTP/1.0\r\nConnection: Upgrade ,  KEEP-ALIVE \r\n\r\n"
        ));
        assert!(!keep_alive(
            b"GET / HTTP/1.0\r\nConnection: Upgrade\r\n\r\n"
        ));
        assert!(!keep_alive(
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
        assert!(!keep_alive(
            b"GET / HTTP/1.0\r\nKeep-Alive: timeout=5\r\n\r\n"
        ));
    }

    #[test]
    fn incomplete_at_every_split_point() {
        for cut in 0..SAMPLE.len() {
            assert_eq!(
                parse_head(&SAMPLE[..cut], Some("x-real-ip")),
                Ok(None),
                "cut at {cut}"
            );
        }
        assert_eq!(head_with(SAMPLE, "x-real-ip").len, SAMPLE.len());
    }

    #[test]
    fn garbage_is_malformed() {
        for garbage in [
            &b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n"[..],
            b"GET /announce HTTP/2.0\r\n\r\n",
            b"GET /announce FTP/1.1\r\n\r\n",
            b"GET  HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n: novalue\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            assert!(
                matches!(parse_head(garbage, None), Err(HeadError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
    }

    #[test]
    fn invalid_utf8_in_target_is_malformed() {
        let buf = b"GET /announce?x=\xff\xfe HTTP/1.1\r\n\r\n";
        assert!(matches!(
            parse_head(buf, None),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn header_limit() {
        let mut at_limit = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            at_limit.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        let mut over = at_limit.clone();
        at_limit.extend_from_slice(b"\r\n");
        assert!(head(&at_limit).keep_alive);
        over.extend_from_slice(b"X-One-More: v\r\n\r\n");
        assert_eq!(
            parse_head(&over, None),
            Err(HeadError::Malformed("too many headers"))
        );
    }

    #[test]
    fn bodies_refused() {
        for buf in [
            &b"POST /announce HTTP/1.1\r\nContent-Length: 10\r\n\r\n"[..],
            b"GET /announce HTTP/1.1\r\ncontent-length: 1\r\n\r\n",
            b"GET /announce HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
            b"GET /announce HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /announce HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n",
            b"GET /announce HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
        ] {
            assert_eq!(parse_head(buf, None), Err(HeadError::BodyNotAccepted));
        }
        assert!(head(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(head(b"GET / HTTP/1.1\r\nContent-Length: 000\r\n\r\n").keep_alive);
    }

    #[test]
    fn bad_content_length_is_malformed() {
        for value in [
            "",
            "-1",
            "+1",
            "1a",
            "0x10",
            "1, 1",
            "99999999999999999999999",
        ] {
            let buf = format!("GET / HTTP/1.1\r\nContent-Length: {value}\r\n\r\n");
            assert_eq!(
                parse_head(buf.as_bytes(), None),
                Err(HeadError::Malformed("invalid content-length")),
                "{value:?}"
            );
        }
    }

    #[test]
    fn real_ip_header_case_insensitive() {
        assert_eq!(
            head_with(SAMPLE, "x-real-ip").real_ip,
            Some(&b"192.0.2.9"[..])
        );
        assert_eq!(
            head_with(SAMPLE, "X-REAL-IP").real_ip,
            Some(&b"192.0.2.9"[..])
        );
        assert_eq!(head_with(SAMPLE, "X-Forwarded-For").real_ip, None);
        assert_eq!(head(SAMPLE).real_ip, None);
    }

    #[test]
    fn real_ip_last_occurrence_wins() {
        let buf = b"GET / HTTP/1.1\r\n\
            X-Forwarded-For: 203.0.113.1\r\n\
            Host: x\r\n\
            x-forwarded-for:   198.51.100.2, 10.0.0.1  \r\n\r\n";
        let h = head_with(buf, "X-Forwarded-For");
        assert_eq!(h.real_ip, Some(&b"198.51.100.2, 10.0.0.1"[..]));
    }

    #[test]
    fn real_ip_empty_value() {
        let h = head_with(b"GET / HTTP/1.1\r\nX-Real-IP:\r\n\r\n", "x-real-ip");
        assert_eq!(h.real_ip, Some(&b""[..]));
    }

    #[test]
    fn pipelined_requests() {
        let second = b"GET /scrape?info_hash=b HTTP/1.1\r\nConnection: close\r\n\r\n";
        let mut buf = b"GET /announce?a=1 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let first_len = buf.len();
        buf.extend_from_slice(second);
        buf.extend_from_slice(b"GET /ann"); // a third, cut short

        let first = head(&buf);
        assert_eq!(first.len, first_len);
        assert_eq!(first.path, b"/announce");
        assert!(first.keep_alive);

        let rest = buf.get(first.len..).unwrap();
        let next = head(rest);
        assert_eq!(next.path, b"/scrape");
        assert_eq!(next.query, b"info_hash=b");
        assert!(!next.keep_alive);
        assert_eq!(next.len, second.len());

        assert_eq!(parse_head(rest.get(next.len..).unwrap(), None), Ok(None));
    }

    #[test]
    fn empty_buffer_is_incomplete() {
        assert_eq!(parse_head(b"", None), Ok(None));
    }

    #[test]
    fn display() {
        assert_eq!(
            HeadError::Malformed("too many headers").to_string(),
            "malformed request: too many headers"
        );
        assert_eq!(
            HeadError::BodyNotAccepted.to_string(),
            "request bodies are not accepted"
        );
    }
}
