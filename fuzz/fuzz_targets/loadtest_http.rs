//! The load generator's HTTP answer checks: the response head parser, the
//! body checker and its bencode reader. Input: 3 bytes of what was asked
//! (kind, numwant, scrape count), then the response. Never panics; what it
//! accepts is framed and within what was asked.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal_loadtest::bencode::{skip, Dict};
use shoal_loadtest::http::{check_response, parse_head, Checked};
use shoal_loadtest::workload::RequestKind;

fuzz_target!(|data: &[u8]| {
    let Some((ask, response)) = data.split_first_chunk::<3>() else {
        return;
    };
    let kind = if ask[0] & 1 == 0 {
        RequestKind::Announce
    } else {
        RequestKind::Scrape
    };
    let (numwant, scrape_n) = (u32::from(ask[1]), usize::from(ask[2] % 80));
    if let Ok(end) = skip(response, 0) {
        assert!(end <= response.len());
    }
    if let Ok(dict) = Dict::parse(response) {
        for (key, _) in dict.entries() {
            assert!(key.len() <= response.len());
        }
    }
    // The body alone, as when the head said 200.
    match check_response(kind, 200, response, numwant, scrape_n) {
        Ok(Checked::Announce { peers }) => assert!(peers as u64 <= 2 * u64::from(numwant)),
        Ok(Checked::Scrape { files }) => assert!(files <= scrape_n),
        Err(_) => {}
    }
    // Head and body, as the driver reads them.
    if let Ok(Some(head)) = parse_head(response) {
        assert!(head.head_len <= response.len());
        let body = &response[head.head_len..];
        if body.len() >= head.content_length {
            let _ = check_response(
                kind,
                head.status,
                &body[..head.content_length],
                numwant,
                scrape_n,
            );
        }
    }
});
