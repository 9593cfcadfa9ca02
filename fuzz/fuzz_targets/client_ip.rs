//! Client addresses behind trusted proxies, and CIDR text. Input: one
//! byte selecting the peer, CIDR lines, a NUL, the header value. Never
//! panics; an untrusted peer is always its own address; a CIDR that
//! parses prints as text that parses to the same CIDR.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::protocol::http::client_ip::{client_ip, normalize, Cidr};
use std::net::IpAddr;

const PEERS: [&str; 4] = ["127.0.0.1", "10.1.2.3", "::1", "::ffff:10.0.0.1"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let peer: IpAddr = PEERS[usize::from(pick % 4)].parse().unwrap();
    let (cidrs, header) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let mut trusted = Vec::new();
    for line in String::from_utf8_lossy(cidrs).lines() {
        if let Ok(cidr) = line.parse::<Cidr>() {
            let again: Cidr = cidr.to_string().parse().expect("a printed CIDR parses");
            assert_eq!(again.to_string(), cidr.to_string());
            assert!(cidr.contains(cidr.network()));
            trusted.push(cidr);
        }
    }
    let ip = client_ip(peer, header, &trusted);
    if !trusted.iter().any(|c| c.contains(normalize(peer))) || header.is_none() {
        assert_eq!(ip, normalize(peer));
    }
    assert_eq!(ip, normalize(ip));
});
