//! The JWT check with the fixture key set (tests/fixtures/jwt). Input: a
//! token, or (first byte 0) a JWK Set document. Never panics; a token is
//! accepted only with the issuer, audience and infohash asked for.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::middleware::jwk_set::KeySet;
use shoal::middleware::jwt::{Jwt, Options};
use std::time::Duration;

const JWKS: &[u8] = include_bytes!("../../tests/fixtures/jwt/jwks.json");
/// The infohash the seed tokens name: 20 bytes of 0x11.
const INFO_HASH: [u8; 20] = [0x11; 20];

thread_local! {
    // Built once: the fuzzer runs every input on one thread.
    static JWT: Jwt = {
        let options = Options {
            issuer: "https://issuer.example".into(),
            audience: "shoal".into(),
            jwk_set_url: "http://127.0.0.1:1/".into(),
            jwk_set_update_interval: Duration::from_secs(60),
        };
        Jwt::with_keys(&options, KeySet::parse(JWKS).expect("fixture key set"))
    };
}

fuzz_target!(|data: &[u8]| {
    if let Some((0, document)) = data.split_first() {
        let _ = KeySet::parse(document);
        return;
    }
    // Fixed clock: the seed tokens carry no exp, or one far ahead.
    JWT.with(|jwt| {
        let _ = jwt.validate(data, &INFO_HASH, 1_800_000_000.0);
        // Another infohash is always refused, whatever the token.
        assert!(jwt.validate(data, &[0x33; 20], 1_800_000_000.0).is_err());
    });
});
