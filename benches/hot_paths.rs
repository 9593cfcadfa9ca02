//! Criterion benchmarks of the request path's pure pieces, without
//! sockets: what one request costs in parsing, the swarm and encoding.
//!
//!   cargo bench --bench hot_paths            # all
//!   cargo bench --bench hot_paths -- swarm   # one group

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shoal::bittorrent::{Announce, Event, PeerId, Protocol};
use shoal::config::TrackerConfig;
use shoal::middleware::Chain;
use shoal::protocol::connection_id::ConnectionIdKey;
use shoal::protocol::http::{bencode, head, query};
use shoal::protocol::udp::{self, Writer};
use shoal::storage::memory::MemoryStore;
use shoal::storage::{PeerSink, V4Addr, V6Addr};
use shoal::tracker::{Origin, Room, Settings, Tracker};
use std::net::{IpAddr, Ipv4Addr};

const PROTOCOL_ID: u64 = 0x0417_2710_1980;

fn udp_announce_packet() -> Vec<u8> {
    let mut p = 0x1122_3344_5566_7788u64.to_be_bytes().to_vec();
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&0xdead_beefu32.to_be_bytes());
    p.extend_from_slice(&[7; 20]); // info_hash
    p.extend_from_slice(&[8; 20]); // peer_id
    p.extend_from_slice(&0u64.to_be_bytes());
    p.extend_from_slice(&1000u64.to_be_bytes());
    p.extend_from_slice(&0u64.to_be_bytes());
    p.extend_from_slice(&2u32.to_be_bytes()); // started
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&42u32.to_be_bytes());
    p.extend_from_slice(&(-1i32).to_be_bytes());
    p.extend_from_slice(&6881u16.to_be_bytes());
    p
}

fn bench_udp(c: &mut Criterion) {
    let mut g = c.benchmark_group("udp");
    let announce = udp_announce_packet();
    g.bench_function("parse_announce", |b| {
        b.iter(|| udp::parse(black_box(&announce)))
    });
    let mut connect = PROTOCOL_ID.to_be_bytes().to_vec();
    connect.extend_from_slice(&[0, 0, 0, 0, 1, 2, 3, 4]);
    g.bench_function("parse_connect", |b| {
        b.iter(|| udp::parse(black_box(&connect)))
    });
    let peers = vec![[1u8; 6]; 50];
    let mut out = [0u8; 1500];
    g.bench_function("encode_announce_50_peers", |b| {
        b.iter(|| {
            let (head, body) = out.split_at_mut(udp::ANNOUNCE_RESPONSE_HEADER_LEN);
            let mut w = Writer::new(body);
            w.put(black_box(peers.as_flattened()));
            udp::write_announce_header(&mut Writer::new(head), 1, 1800, 10, 40);
            w.len()
        })
    });
    g.bench_function("encode_scrape_10", |b| {
        b.iter(|| {
            let mut w = Writer::new(&mut out);
            udp::write_scrape_header(&mut w, 1);
            for i in 0..10 {
                udp::write_scrape_entry(
                    &mut w,
                    udp::ScrapeCounts {
                        seeders: black_box(i),
                        completed: 3,
                        leechers: 4,
                    },
                );
            }
            w.len()
        })
    });
    g.finish();
}

fn bench_connection_id(c: &mut Criterion) {
    let key = ConnectionIdKey::new("a benchmark key of some length", 120);
    let ip = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let id = key.make(ip, 1_000_000);
    let mut g = c.benchmark_group("connection_id");
    g.bench_function("make", |b| {
        b.iter(|| key.make(black_box(ip), black_box(1_000_000)))
    });
    g.bench_function("check", |b| {
        b.iter(|| key.check(black_box(id), black_box(ip), 1_000_030))
    });
    g.finish();
}

const HTTP_REQUEST: &[u8] = b"GET /announce?info_hash=%12%34%56%78%9A%BC%DE%F0%12%34%56%78%9A%BC%DE%F0%12%34%56%78&peer_id=-qB4650-abcdefghijkl&port=6881&uploaded=0&downloaded=0&left=1000&event=started&compact=1&numwant=50&key=12345 HTTP/1.1\r\nHost: tracker.example\r\nUser-Agent: qBittorrent/4.6.5\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n";

fn bench_http(c: &mut Criterion) {
    let mut g = c.benchmark_group("http");
    g.bench_function("parse_head", |b| {
        b.iter(|| head::parse_head(black_box(HTTP_REQUEST), None))
    });
    g.bench_function("head_end", |b| {
        b.iter(|| head::head_end(black_box(HTTP_REQUEST), 0))
    });
    let parsed = head::parse_head(HTTP_REQUEST, None).unwrap().unwrap();
    let q = parsed.query.to_vec();
    g.bench_function("parse_announce_query", |b| {
        b.iter(|| query::parse_announce(black_box(&q)))
    });
    let peers4 = vec![1u8; 6 * 50];
    let mut body = Vec::with_capacity(1024);
    let head = bencode::AnnounceHead {
        complete: 40,
        incomplete: 10,
        interval: 1800,
        min_interval: 900,
        external_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
    };
    g.bench_function("bencode_announce_50_peers", |b| {
        b.iter(|| {
            body.clear();
            bencode::announce_compact(&mut body, black_box(&head), &peers4, &[]);
            body.len()
        })
    });
    g.finish();
}

/// Counts peers handed out, like an encoder would copy them.
struct Count(usize);

impl PeerSink for Count {
    fn v4(&mut self, addrs: &[V4Addr], _: &[PeerId]) {
        self.0 += black_box(addrs).len();
    }
    fn v6(&mut self, addrs: &[V6Addr], _: &[PeerId]) {
        self.0 += black_box(addrs).len();
    }
}

fn announce(info_hash: [u8; 20], left: u64) -> Announce {
    Announce {
        info_hash,
        peer_id: [1; 20],
        left,
        port: 6881,
        ..Default::default()
    }
}

fn source(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

type MemoryTracker = Tracker<MemoryStore>;

/// One announce through the tracker core (no hooks), as an HTTP answer
/// would sample it (both families).
fn run(t: &mut MemoryTracker, announce: &mut Announce, from: u32, sink: &mut Count) {
    let origin = Origin {
        protocol: Protocol::Http,
        source: source(from),
        claimed: None,
        dual: Default::default(),
    };
    let _ = t.announce(origin, announce, Room::HTTP, 0, sink, &mut Vec::new());
}

/// A swarm with `peers` peers (a fifth of them seeders) on one torrent,
/// among `torrents` torrents of 3 peers each.
fn filled(torrents: u32, peers: u32) -> MemoryTracker {
    let mut t = Tracker::new(
        0,
        Settings::new(&TrackerConfig::default(), false, false),
        MemoryStore::default(),
        Chain::default(),
        fastrand::Rng::with_seed(7),
    );
    for p in 0..peers {
        let left = if p % 5 == 0 { 0 } else { 100 };
        let mut a = announce([0; 20], left);
        a.numwant = Some(0);
        run(&mut t, &mut a, p, &mut Count(0));
    }
    for n in 1..torrents {
        let mut ih = [0u8; 20];
        ih[..4].copy_from_slice(&n.to_be_bytes());
        for p in 0..3 {
            let mut a = announce(ih, 100);
            a.numwant = Some(0);
            run(&mut t, &mut a, p, &mut Count(0));
        }
    }
    t
}

fn bench_swarm(c: &mut Criterion) {
    let mut g = c.benchmark_group("swarm");
    g.throughput(Throughput::Elements(1));
    for (name, torrents, peers) in [
        ("announce_small_swarm", 100_000, 10),
        ("announce_large_swarm", 10_000, 10_000),
    ] {
        let mut t = filled(torrents, peers);
        let mut n = 0u32;
        // Existing peers re-announcing (the common case): update, then
        // sample 50 peers for the answer.
        g.bench_function(name, |b| {
            b.iter(|| {
                n = (n + 1) % peers;
                let mut sink = Count(0);
                run(&mut t, &mut announce([0; 20], 100), n, &mut sink);
                sink.0
            })
        });
    }
    // A peer joining (insert, sample) and leaving again (remove).
    let mut t = filled(1000, 1000);
    g.bench_function("announce_new_peer_then_stop", |b| {
        b.iter(|| {
            let mut a = announce([0; 20], 100);
            run(&mut t, &mut a, 5000, &mut Count(0));
            a.event = Event::Stopped;
            run(&mut t, &mut a, 5000, &mut Count(0));
        })
    });
    let t = filled(100_000, 10);
    let hashes: Vec<[u8; 20]> = (0..10u32)
        .map(|t| {
            let mut ih = [0u8; 20];
            ih[..4].copy_from_slice(&(t * 997).to_be_bytes());
            ih
        })
        .collect();
    g.bench_function("scrape_10_of_100k_torrents", |b| {
        b.iter(|| {
            hashes
                .iter()
                .map(|h| t.scrape(black_box(h)).seeders)
                .sum::<u32>()
        })
    });
    g.finish();
}

/// What the `jwt` hook adds to an announce: one token checked against
/// the test fixtures' keys (RS256 with RSA 2048, ES256 with P-256).
fn bench_jwt(c: &mut Criterion) {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use shoal::middleware::jwk_set::KeySet;
    use shoal::middleware::jwt::{Jwt, Options};

    let fixture = |name: &str| {
        std::fs::read(format!(
            "{}/tests/fixtures/jwt/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let options = Options {
        issuer: "https://issuer.example".into(),
        audience: "shoal".into(),
        jwk_set_url: "http://127.0.0.1/unused".into(),
        jwk_set_update_interval: std::time::Duration::from_secs(60),
    };
    let jwt = Jwt::with_keys(&options, KeySet::parse(&fixture("jwks.json")).unwrap());
    let info_hash = [7u8; 20];
    let hex: String = info_hash.iter().map(|b| format!("{b:02x}")).collect();
    let claims =
        serde_json::json!({"iss": options.issuer, "aud": [options.audience], "infohash": hex});
    let now = 1.0e9;
    let mut g = c.benchmark_group("jwt");
    g.throughput(Throughput::Elements(1));
    for (alg, kid, key) in [
        (
            Algorithm::RS256,
            "test-rsa",
            EncodingKey::from_rsa_pem(&fixture("rsa.pem")).unwrap(),
        ),
        (
            Algorithm::ES256,
            "test-ec",
            EncodingKey::from_ec_pem(&fixture("ec.pem")).unwrap(),
        ),
    ] {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        let token = encode(&header, &claims, &key).unwrap();
        assert!(jwt.validate(token.as_bytes(), &info_hash, now).is_ok());
        g.bench_function(format!("validate_{alg:?}"), |b| {
            b.iter(|| jwt.validate(black_box(token.as_bytes()), &info_hash, now))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_udp,
    bench_connection_id,
    bench_http,
    bench_swarm,
    bench_jwt
);
criterion_main!(benches);
