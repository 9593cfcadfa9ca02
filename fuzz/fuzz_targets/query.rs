//! Announce and scrape query strings: never panics; an accepted announce
//! re-encoded as a strict query parses to the same announce; a scrape
//! never returns more than its limit; percent-decoding inverts encoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::protocol::http::query::{parse_announce, parse_scrape, percent_decode};

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = parse_announce(data) {
        let query = shoal_fuzz::encode_query(&parsed.announce, parsed.compact, parsed.no_peer_id);
        let again = parse_announce(query.as_bytes()).expect("re-encoded announce parses");
        assert_eq!(again.announce, parsed.announce);
        assert_eq!(again.compact, parsed.compact);
        assert_eq!(again.no_peer_id, parsed.no_peer_id);
    }
    let max = usize::from(data.first().copied().unwrap_or(0) % 8);
    let mut out = vec![[7u8; 20]];
    match parse_scrape(data, max, &mut out) {
        Ok(()) => assert!(out.len() <= 1 + max),
        Err(_) => assert_eq!(out, vec![[7u8; 20]]),
    }
    if let Some(decoded) = percent_decode(data) {
        assert!(decoded.len() <= data.len());
    }
    let encoded = shoal_fuzz::percent_encode_all(data);
    assert_eq!(percent_decode(encoded.as_bytes()).as_deref(), Some(data));
});
