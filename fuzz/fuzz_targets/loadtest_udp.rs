//! The load generator's UDP answer checker. Input: 4 bytes of what was
//! asked (kind, scrape count, numwant, family), then the answer. Never
//! panics; what it accepts is the shape the request asked for.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal_loadtest::udp::{check_response, response_header, Checked, Expect};
use shoal_loadtest::workload::RequestKind;

fuzz_target!(|data: &[u8]| {
    let Some((ask, answer)) = data.split_first_chunk::<4>() else {
        return;
    };
    let kind = match ask[0] % 3 {
        0 => RequestKind::Connect,
        1 => RequestKind::Announce,
        _ => RequestKind::Scrape,
    };
    let e = Expect {
        kind,
        scrape_n: usize::from(ask[1] % 75),
        numwant: u32::from(ask[2]),
        ipv6: ask[3] & 1 == 1,
    };
    let _ = response_header(answer);
    match check_response(answer, &e) {
        Ok(Checked::Connect { .. }) => assert_eq!(answer.len(), 16),
        Ok(Checked::Announce { peers }) => {
            assert!(peers as u64 <= u64::from(e.numwant));
            assert_eq!(answer.len(), 20 + peers * if e.ipv6 { 18 } else { 6 });
        }
        Ok(Checked::Scrape) => assert_eq!(answer.len(), 8 + 12 * e.scrape_n),
        Err(_) => {}
    }
});
