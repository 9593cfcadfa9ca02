//! HTTP request heads: never panics; a complete head lies inside the
//! buffer, ends where the server's terminator scan says it does, and its
//! path and query are the request target split at the first '?'.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::protocol::http::head::{head_end, parse_head};

fuzz_target!(|data: &[u8]| {
    // The server reads until head_end finds the blank line, then parses.
    let end = head_end(data, 0);
    if let Some(end) = end {
        assert!(end < data.len());
    }
    // Split-read resumption: scanning from any later point finds nothing
    // earlier than a scan from the start (the server rescans from there).
    if data.len() > 8 {
        let from = data.len() / 2;
        if let (Some(a), Some(b)) = (end, head_end(data, from)) {
            assert!(b >= a);
        }
    }
    for header in [None, Some("X-Forwarded-For")] {
        if let Ok(Some(head)) = parse_head(data, header) {
            assert!(head.len <= data.len());
            assert!(head.path.len() + head.query.len() < head.len);
            assert!(!head.path.contains(&b'?'));
            // Whatever httparse calls complete, the server's scan agrees
            // that a blank line ends the head.
            assert!(end.is_some(), "complete head without a blank line");
        }
    }
});
