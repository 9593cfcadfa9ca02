//! A UDP flood for scripts/flood: garbage or announces and scrapes with
//! forged connection ids, as fast as one thread can send, for a bounded
//! time, to a loopback tracker. Counts what it sent and every datagram
//! that came back (a tracker must answer none of them).
//!
//!   cargo run --release --example udp_flood -- 127.0.0.1:6969 forged 10
//!
//! Prints one JSON line: {"kind", "seconds", "sent", "answered"}.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: udp_flood ADDR garbage|forged SECONDS";
    let target: SocketAddr = args.get(1).expect(usage).parse().expect(usage);
    let kind = args.get(2).expect(usage).clone();
    let seconds: f64 = args.get(3).expect(usage).parse().expect(usage);
    assert!(target.ip().is_loopback(), "floods go to loopback only");
    assert!(seconds <= 600.0, "bounded: at most 600 s");
    let mut rng = fastrand::Rng::with_seed(15);
    // 256 distinct packets, sent round robin: building them costs nothing
    // during the flood.
    let packets: Vec<Vec<u8>> = (0..256)
        .map(|i| match kind.as_str() {
            "garbage" => (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect(),
            "forged" => forged(&mut rng, i % 4 == 3),
            _ => panic!("{usage}"),
        })
        .collect();
    let local = if target.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let sock = UdpSocket::bind(local).unwrap();
    sock.connect(target).unwrap();
    sock.set_nonblocking(true).unwrap();
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    while Instant::now() < until {
        for p in &packets {
            // A full send queue (ENOBUFS/EAGAIN) just drops, as a real flood does.
            if sock.send(p).is_ok() {
                sent += 1;
            }
        }
        while sock.recv(&mut buf).is_ok() {
            answered += 1;
        }
    }
    // Anything still in flight.
    std::thread::sleep(Duration::from_millis(500));
    while sock.recv(&mut buf).is_ok() {
        answered += 1;
    }
    println!(
        "{{\"kind\": \"{kind}\", \"seconds\": {:.1}, \"sent\": {sent}, \"answered\": {answered}}}",
        start.elapsed().as_secs_f64()
    );
}

/// An announce (or a scrape of 1-74 hashes) with a random connection id.
fn forged(rng: &mut fastrand::Rng, scrape: bool) -> Vec<u8> {
    let mut p = rng.u64(..).to_be_bytes().to_vec();
    p.extend_from_slice(&(if scrape { 2u32 } else { 1 }).to_be_bytes());
    p.extend_from_slice(&rng.u32(..).to_be_bytes());
    if scrape {
        for _ in 0..20 * rng.usize(1..75) {
            p.push(rng.u8(..));
        }
    } else {
        for _ in 0..82 {
            p.push(rng.u8(..));
        }
        p[80..84].copy_from_slice(&2u32.to_be_bytes()); // event: started
        p[96..98].copy_from_slice(&6881u16.to_be_bytes());
    }
    p
}
