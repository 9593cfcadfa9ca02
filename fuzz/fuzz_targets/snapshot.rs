//! The snapshot decoder: never panics, whatever the file holds; what it
//! accepts re-encodes to a file that decodes to the same records.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::storage::snapshot::format::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok((header, torrents)) = decode(data) {
        let again = encode(&header, &[torrents.clone()]);
        assert_eq!(decode(&again), Ok((header, torrents)));
    }
});
