//! UDP requests (BEP 15 with BEP 41 options): never panics; every request
//! it accepts re-encodes to a packet that parses to the same request.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::protocol::udp::{parse, ParseError, Request};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(request) => {
            if let Request::Scrape { info_hashes, .. } = &request {
                assert!(!info_hashes.is_empty() && info_hashes.len() % 20 == 0);
            }
            let again = shoal_fuzz::encode_udp(&request);
            assert_eq!(parse(&again), Ok(request));
        }
        Err(ParseError::Invalid { message, .. }) => assert!(!message.is_empty()),
        Err(ParseError::Drop) => {}
    }
});
