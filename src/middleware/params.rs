//! Announce parameters beyond the ones Shoal parses (Chihaya's
//! `req.Params`), for hooks such as `jwt`: from the HTTP query string
//! (kept when a hook's `wants_params` asks for it) or from the query part
//! of UDP URL data (BEP 41, e.g. `/announce?jwt=...`).

use crate::bittorrent::Announce;
use crate::protocol::http::query::percent_decode;

/// The decoded value of parameter `name`: the first one, HTTP query
/// before URL data. None when absent or badly escaped.
pub fn param(announce: &Announce, name: &[u8]) -> Option<Vec<u8>> {
    let http = announce.query.as_deref().unwrap_or_default();
    let udp = url_data_query(&announce.url_data);
    [http, udp]
        .into_iter()
        .find_map(|query| raw_param(query, name))
        .and_then(percent_decode)
}

/// The path part of BEP 41 URL data (before any `?`).
pub fn url_data_path(url_data: &[u8]) -> &[u8] {
    match memchr::memchr(b'?', url_data) {
        Some(i) => &url_data[..i],
        None => url_data,
    }
}

fn url_data_query(url_data: &[u8]) -> &[u8] {
    match memchr::memchr(b'?', url_data) {
        Some(i) => &url_data[i + 1..],
        None => &[],
    }
}

/// The still-escaped value of `name` in a query string.
fn raw_param<'a>(query: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match memchr::memchr(b'=', pair) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce(query: Option<&[u8]>, url_data: &[u8]) -> Announce {
        Announce {
            port: 1,
            url_data: url_data.into(),
            query: query.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn params_come_from_the_http_query_or_the_url_data() {
        let a = announce(Some(b"info_hash=x&jwt=a.b%2Ec&port=1"), b"");
        assert_eq!(param(&a, b"jwt").as_deref(), Some(&b"a.b.c"[..]));
        assert_eq!(param(&a, b"nope"), None);
        let a = announce(None, b"/pk/announce?x=1&jwt=t%2B");
        assert_eq!(param(&a, b"jwt").as_deref(), Some(&b"t+"[..]));
        assert_eq!(url_data_path(&a.url_data), b"/pk/announce");
        let a = announce(None, b"/announce");
        assert_eq!(param(&a, b"jwt"), None);
        assert_eq!(url_data_path(&a.url_data), b"/announce");
        let a = announce(Some(b"jwt=%zz"), b"");
        assert_eq!(param(&a, b"jwt"), None, "a bad escape is no value");
    }
}
