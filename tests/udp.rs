//! The real server, two shards, real UDP sockets on loopback.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn second_peer_receives_the_first() {
    let t = Tracker::start(&[]);
    let a = Client::connected(t.v4);
    let b = Client::connected(t.v4);
    let ih = random_hash();
    let first = a.announce(&Announce::new(ih, 1001));
    assert_eq!((first.seeders, first.leechers), (0, 1));
    assert!(
        first.peers.is_empty(),
        "the announcer is not in its own list"
    );
    assert_eq!(first.interval, 1800);
    let second = b.announce(&Announce::new(ih, 1002));
    assert_eq!((second.seeders, second.leechers), (0, 2));
    assert_eq!(second.peers, vec![v4_peer(1001)]);
}

#[test]
fn one_shard_serves_alone() {
    let t = Tracker::start(&["runtime.cores=[0]"]);
    let a = Client::connected(t.v4);
    let b = Client::connected(t.v6);
    let hashes: Vec<[u8; 20]> = (0..10).map(|_| random_hash()).collect();
    for ih in &hashes {
        a.announce(&Announce::new(*ih, 1501));
        b.announce(&Announce::new(*ih, 1502).seeder());
        assert_eq!(
            a.announce(&Announce::new(*ih, 1503)).peers,
            vec![v4_peer(1501)]
        );
    }
    assert_eq!(a.scrape(&hashes), vec![(1, 0, 2); 10]);
}

/// Many infohashes (so both shards own some), many client sockets (so
/// the kernel spreads connects over both shards' sockets): everyone sees
/// everyone, with kernel steering on and with it off (then the shards
/// forward announces to each other).
#[test]
fn peers_on_different_sockets_and_shards_see_each_other() {
    for steering in ["true", "false"] {
        let t = Tracker::start(&[&format!("udp.kernel_steering={steering}")]);
        let clients: Vec<Client> = (0..8).map(|_| Client::connected(t.v4)).collect();
        let hashes: Vec<[u8; 20]> = (0..16).map(|_| random_hash()).collect();
        for ih in &hashes {
            for (i, c) in clients.iter().enumerate() {
                let reply = c.announce(&Announce::new(*ih, 2000 + i as u16));
                assert_eq!(reply.leechers as usize, i + 1, "steering={steering}");
                assert_eq!(reply.peers.len(), i);
                for j in 0..i {
                    assert!(reply.peers.contains(&v4_peer(2000 + j as u16)));
                }
            }
        }
    }
}

#[test]
fn scrape_across_shards_is_exact() {
    let t = Tracker::start(&[]);
    let c = Client::connected(t.v4);
    // 20 random infohashes: both shards own some unless the owner key is
    // astronomically unlucky (2^-19).
    let hashes: Vec<[u8; 20]> = (0..20).map(|_| random_hash()).collect();
    let mut expected = Vec::new();
    for (n, ih) in hashes.iter().enumerate() {
        let seeders = n % 3;
        let leechers = n % 4;
        let completed = n % 2;
        let mut port = 3000;
        for _ in 0..leechers {
            c.announce(&Announce::new(*ih, port));
            port += 1;
        }
        for k in 0..seeders {
            if k < completed {
                c.announce(&Announce::new(*ih, port));
                c.announce(&Announce::new(*ih, port).seeder().event(1));
            } else {
                c.announce(&Announce::new(*ih, port).seeder());
            }
            port += 1;
        }
        expected.push((
            seeders as u32,
            completed.min(seeders) as u32,
            leechers as u32,
        ));
    }
    assert_eq!(c.scrape(&hashes), expected);
    // Unknown infohashes scrape as zeros; a single one answers too.
    assert_eq!(c.scrape(&[random_hash()]), vec![(0, 0, 0)]);
    // Kernel steering off: the gather goes over the mesh even more.
    let t = Tracker::start(&["udp.kernel_steering=false"]);
    let c = Client::connected(t.v4);
    for ih in &hashes {
        c.announce(&Announce::new(*ih, 4000).seeder());
    }
    assert_eq!(c.scrape(&hashes), vec![(1, 0, 0); 20]);
}

#[test]
fn seeders_get_leechers_and_stopped_leaves() {
    let t = Tracker::start(&[]);
    let c = Client::connected(t.v4);
    let ih = random_hash();
    c.announce(&Announce::new(ih, 5001).seeder());
    c.announce(&Announce::new(ih, 5002));
    c.announce(&Announce::new(ih, 5003));
    let seeder = c.announce(&Announce::new(ih, 5004).seeder());
    assert_eq!((seeder.seeders, seeder.leechers), (2, 2));
    let mut got = seeder.peers.clone();
    got.sort();
    assert_eq!(
        got,
        vec![v4_peer(5002), v4_peer(5003)],
        "a seeder gets leechers only"
    );
    let stopped = c.announce(&Announce::new(ih, 5002).event(3));
    assert_eq!((stopped.seeders, stopped.leechers), (2, 1));
    assert!(stopped.peers.is_empty(), "a stopped peer gets no peers");
    let leecher = c.announce(&Announce::new(ih, 5005));
    assert!(
        !leecher.peers.contains(&v4_peer(5002)),
        "a stopped peer is gone"
    );
    assert_eq!(leecher.peers.len(), 3);
}

#[test]
fn numwant_is_honoured_and_clamped() {
    let t = Tracker::start(&["tracker.max_numwant=5", "tracker.default_numwant=3"]);
    let c = Client::connected(t.v4);
    let ih = random_hash();
    for port in 6000..6010 {
        c.announce(&Announce::new(ih, port));
    }
    assert_eq!(c.announce(&Announce::new(ih, 7000)).peers.len(), 3);
    assert_eq!(
        c.announce(&Announce::new(ih, 7000).numwant(2)).peers.len(),
        2
    );
    assert_eq!(
        c.announce(&Announce::new(ih, 7000).numwant(50)).peers.len(),
        5
    );
    assert_eq!(
        c.announce(&Announce::new(ih, 7000).numwant(0)).peers.len(),
        0
    );
}

#[test]
fn ipv6_announces_get_18_byte_peers() {
    let t = Tracker::start(&[]);
    let a = Client::connected(t.v6);
    let b = Client::connected(t.v6);
    let v4 = Client::connected(t.v4);
    let ih = random_hash();
    a.announce(&Announce::new(ih, 8001));
    v4.announce(&Announce::new(ih, 8002));
    let reply = b.announce(&Announce::new(ih, 8003));
    assert_eq!(reply.leechers, 3, "counts cover both families");
    let mut expected = vec![0u8; 15];
    expected.push(1);
    expected.extend_from_slice(&8001u16.to_be_bytes());
    assert_eq!(
        reply.peers,
        vec![expected],
        "only IPv6 peers, 18 bytes each"
    );
    let reply = v4.announce(&Announce::new(ih, 8002));
    assert!(reply.peers.is_empty(), "IPv4 answers carry IPv4 peers");
}

#[test]
fn bad_connection_id_gets_no_reply() {
    let t = Tracker::start(&[]);
    let mut c = Client::connected(t.v4);
    c.sock
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let good = c.connection_id;
    c.connection_id = good ^ 1;
    c.send(&c.announce_packet(&Announce::new(random_hash(), 9000), 1));
    assert_eq!(c.recv(), None, "announce with a forged id");
    c.send(&c.scrape_packet(&[random_hash()], 2));
    assert_eq!(c.recv(), None, "scrape with a forged id");
    // A malformed request with a bad id gets no error packet either.
    let mut short = c.announce_packet(&Announce::new(random_hash(), 9000), 3);
    short.truncate(60);
    c.send(&short);
    assert_eq!(c.recv(), None);
    // An id handed to another IP (127.0.0.2) does not work from this one.
    let mut other = Client::new(t.v4);
    other.sock = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    other
        .sock
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    other.connect();
    c.connection_id = other.connection_id;
    c.send(&c.announce_packet(&Announce::new(random_hash(), 9000), 4));
    assert_eq!(c.recv(), None, "an id made for another address");
    c.connection_id = good;
    c.announce(&Announce::new(random_hash(), 9000));
}

#[test]
fn malformed_requests_from_a_valid_connection_get_error_packets() {
    let t = Tracker::start(&[]);
    let c = Client::connected(t.v4);
    let error_of = |packet: &[u8]| {
        c.send(packet);
        let r = c.recv().expect("an error answer");
        assert_eq!(be32(&r[0..4]), 3, "action error");
        assert_eq!(be32(&r[4..8]), 77);
        String::from_utf8(r[8..].to_vec()).unwrap()
    };
    let mut p = c.announce_packet(&Announce::new(random_hash(), 9100), 77);
    p[96..98].copy_from_slice(&0u16.to_be_bytes());
    assert!(error_of(&p).contains("port"));
    let p = c.announce_packet(&Announce::new(random_hash(), 9100).event(42), 77);
    assert!(error_of(&p).contains("event"));
    let mut p = c.announce_packet(&Announce::new(random_hash(), 9100), 77);
    p.truncate(80);
    assert!(error_of(&p).contains("short"));
    let mut p = c.scrape_packet(&[], 77);
    assert!(error_of(&p).contains("info hash"));
    p[8..12].copy_from_slice(&9u32.to_be_bytes());
    assert!(error_of(&p).contains("action"));
    let too_many: Vec<[u8; 20]> = (0..75).map(|_| random_hash()).collect();
    assert!(error_of(&c.scrape_packet(&too_many, 77)).contains("too many"));
}

#[test]
fn garbage_and_truncated_packets_leave_the_server_serving() {
    let t = Tracker::start(&[]);
    let mut junk = Client::new(t.v4);
    junk.sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut rng = fastrand::Rng::with_seed(42);
    let announce = junk.announce_packet(&Announce::new(random_hash(), 1), 1);
    for len in 0..announce.len() {
        junk.send(&announce[..len]);
    }
    for _ in 0..2000 {
        let len = rng.usize(0..1600);
        let mut p = vec![0u8; len];
        rng.fill(&mut p);
        if len >= 12 && rng.bool() {
            // Valid-looking actions with random bodies.
            p[8..12].copy_from_slice(&rng.u32(0..4).to_be_bytes());
        }
        junk.send(&p);
    }
    // Oversized datagrams (larger than any request) are dropped.
    junk.send(&vec![0u8; 8000]);
    // A connect with the wrong protocol id is not answered.
    let mut p = 12345u64.to_be_bytes().to_vec();
    p.extend_from_slice(&[0; 8]);
    junk.send(&p);
    while junk.recv().is_some() {}
    // Still serving, with state intact.
    let c = Client::connected(t.v4);
    let ih = random_hash();
    c.announce(&Announce::new(ih, 1111));
    assert_eq!(
        c.announce(&Announce::new(ih, 1112)).peers,
        vec![v4_peer(1111)]
    );
    junk.connect();
    assert_eq!(junk.announce(&Announce::new(ih, 1113)).peers.len(), 2);
}

#[test]
fn bep41_url_data_is_accepted() {
    let t = Tracker::start(&[]);
    let c = Client::connected(t.v4);
    let ih = random_hash();
    c.announce(&Announce::new(ih, 1201));
    let mut p = c.announce_packet(&Announce::new(ih, 1202), 5);
    p.extend_from_slice(&[2, 9]);
    p.extend_from_slice(b"/announce");
    p.extend_from_slice(&[1, 2, 3]);
    p.extend_from_slice(b"?a=");
    p.push(0);
    p.extend_from_slice(b"trailing bytes");
    c.send(&p);
    let r = c.recv().unwrap();
    assert_eq!(be32(&r[0..4]), 1);
    assert_eq!(&r[20..], &v4_peer(1201)[..]);
}

#[test]
fn sigterm_stops_gracefully() {
    let t = Tracker::start(&[]);
    let c = Client::connected(t.v4);
    c.announce(&Announce::new(random_hash(), 1300));
    let status = t.stop();
    assert!(status.success(), "exit status {status:?}");
}
