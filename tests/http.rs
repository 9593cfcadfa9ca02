//! The real server, two shards, real TCP on loopback.

mod common;

use common::bencode::{Dict, Fields};
use common::http::{announce_target, encode, HttpClient};
use common::*;
use std::time::Duration;

fn peer_id(n: u8) -> [u8; 20] {
    let mut id = *b"-SH0001-000000000000";
    id[19] = n;
    id
}

fn compact_peers(v: &Dict, key: &str, width: usize) -> Vec<Vec<u8>> {
    v.bytes(key).chunks(width).map(|c| c.to_vec()).collect()
}

#[test]
fn http_announce_sees_a_udp_peer_and_peers6() {
    let t = Tracker::start(&[]);
    let ih = random_hash();
    Client::connected(t.v4).announce(&Announce::new(ih, 7001));
    Client::connected(t.v6).announce(&Announce::new(ih, 7002));
    let mut http = HttpClient::connect(t.v4);
    let r = http.get(&announce_target(&ih, &peer_id(1), 7003, 100, ""));
    assert_eq!(r.status, 200);
    let v = r.bencode();
    assert_eq!((v.int("complete"), v.int("incomplete")), (0, 3));
    assert_eq!(v.int("interval"), 1800);
    assert_eq!(v.int("min interval"), 900);
    assert_eq!(v.bytes("external ip"), &[127, 0, 0, 1]);
    assert_eq!(compact_peers(&v, "peers", 6), vec![v4_peer(7001)]);
    let mut v6 = vec![0u8; 15];
    v6.push(1);
    v6.extend_from_slice(&7002u16.to_be_bytes());
    assert_eq!(
        compact_peers(&v, "peers6", 18),
        vec![v6],
        "an IPv4 announcer gets IPv6 peers too"
    );
    // And a UDP announcer sees the HTTP peer.
    let udp = Client::connected(t.v4).announce(&Announce::new(ih, 7004));
    assert!(udp.peers.contains(&v4_peer(7003)));
}

#[test]
fn keep_alive_pipelining_and_both_shards() {
    let t = Tracker::start(&[]);
    let mut a = HttpClient::connect(t.v4);
    let mut b = HttpClient::connect(t.v6);
    // 20 infohashes: both shards own some, so some announces are answered
    // by the other shard over the mesh, on the same connections.
    let hashes: Vec<[u8; 20]> = (0..20).map(|_| random_hash()).collect();
    for ih in &hashes {
        let first = a.get(&announce_target(ih, &peer_id(1), 8001, 5, ""));
        assert_eq!(first.header("connection"), Some("keep-alive"));
        assert_eq!(first.bencode().int("incomplete"), 1);
        let second = b.get(&announce_target(ih, &peer_id(2), 8002, 5, ""));
        let v = second.bencode();
        assert_eq!(v.int("incomplete"), 2);
        assert_eq!(compact_peers(&v, "peers", 6), vec![v4_peer(8001)]);
    }
    // Three pipelined requests in one write: three answers, in order.
    let mut batch = Vec::new();
    for n in 0..3u16 {
        let target = announce_target(&hashes[n as usize], &peer_id(3), 8100 + n, 5, "");
        batch.extend_from_slice(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    a.send_raw(&batch);
    for _ in 0..3 {
        assert_eq!(a.read_response().unwrap().bencode().int("incomplete"), 3);
    }
}

#[test]
fn scrape_across_shards_is_exact() {
    let t = Tracker::start(&[]);
    let mut http = HttpClient::connect(t.v4);
    let hashes: Vec<[u8; 20]> = (0..20).map(|_| random_hash()).collect();
    for (n, ih) in hashes.iter().enumerate() {
        for k in 0..n % 3 {
            http.get(&announce_target(
                ih,
                &peer_id(k as u8),
                9000 + k as u16,
                0,
                "&event=started",
            ));
        }
        for k in 0..n % 4 {
            http.get(&announce_target(
                ih,
                &peer_id(10 + k as u8),
                9100 + k as u16,
                7,
                "",
            ));
        }
        if n % 5 == 0 {
            http.get(&announce_target(ih, &peer_id(30), 9200, 7, "&event=paused"));
            http.get(&announce_target(ih, &peer_id(31), 9201, 7, ""));
            http.get(&announce_target(
                ih,
                &peer_id(31),
                9201,
                0,
                "&event=completed",
            ));
        }
    }
    let query: String = hashes
        .iter()
        .map(|h| format!("info_hash={}&", encode(h)))
        .collect();
    let r = http.get(&format!("/scrape?{query}"));
    assert_eq!(r.status, 200);
    let v = r.bencode();
    let files = v.dict("files");
    assert_eq!(files.len(), 20);
    for (n, ih) in hashes.iter().enumerate() {
        let f = files.dict(ih);
        let extra = (n % 5 == 0) as i64;
        assert_eq!(f.int("complete"), (n % 3) as i64 + extra, "torrent {n}");
        assert_eq!(f.int("incomplete"), (n % 4) as i64 + extra, "torrent {n}");
        assert_eq!(f.int("downloaded"), extra, "torrent {n}");
        assert_eq!(
            f.int("downloaders"),
            (n % 4) as i64,
            "paused peers are not downloaders"
        );
    }
    // The same counts over UDP.
    let udp = Client::connected(t.v4).scrape(&hashes[..3]);
    assert_eq!(udp[0], (1, 1, 1));
}

#[test]
fn dictionary_form_with_and_without_peer_ids() {
    let t = Tracker::start(&[]);
    let mut http = HttpClient::connect(t.v4);
    let ih = random_hash();
    http.get(&announce_target(&ih, &peer_id(7), 6001, 5, ""));
    let r = http.get(&announce_target(&ih, &peer_id(8), 6002, 5, "&compact=0"));
    let v = r.bencode();
    let peers = v.dicts("peers");
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].bytes("ip"), b"127.0.0.1");
    assert_eq!(peers[0].int("port"), 6001);
    assert_eq!(peers[0].bytes("peer id"), &peer_id(7));
    let r = http.get(&announce_target(
        &ih,
        &peer_id(8),
        6002,
        5,
        "&compact=0&no_peer_id=1",
    ));
    assert!(r.bencode().dicts("peers")[0].get(b"peer id").is_none());
}

#[test]
fn stopped_numwant_and_seeders() {
    let t = Tracker::start(&[]);
    let mut http = HttpClient::connect(t.v4);
    let ih = random_hash();
    for n in 0..6u8 {
        http.get(&announce_target(
            &ih,
            &peer_id(n),
            5000 + n as u16,
            if n < 3 { 0 } else { 9 },
            "",
        ));
    }
    let r = http.get(&announce_target(&ih, &peer_id(9), 5009, 0, "&numwant=50"));
    let v = r.bencode();
    assert_eq!(
        compact_peers(&v, "peers", 6).len(),
        3,
        "a seeder gets the 3 leechers only"
    );
    let r = http.get(&announce_target(&ih, &peer_id(10), 5010, 9, "&numwant=2"));
    let v = r.bencode();
    assert_eq!(compact_peers(&v, "peers", 6).len(), 2);
    let r = http.get(&announce_target(
        &ih,
        &peer_id(10),
        5010,
        9,
        "&event=stopped",
    ));
    let v = r.bencode();
    assert!(v.bytes("peers").is_empty());
    assert_eq!((v.int("complete"), v.int("incomplete")), (4, 3));
}

#[test]
fn malformed_requests_get_failure_reasons_and_the_server_keeps_serving() {
    let t = Tracker::start(&[]);
    let mut http = HttpClient::connect(t.v4);
    let ih = random_hash();
    let cases = [
        ("/announce?peer_id=x", "info_hash"),
        (
            &*format!(
                "/announce?info_hash={}&peer_id={}&left=1",
                encode(&ih),
                encode(&peer_id(1))
            ),
            "port",
        ),
        (
            &*format!(
                "/announce?info_hash={}&peer_id={}&port=0&left=1",
                encode(&ih),
                encode(&peer_id(1))
            ),
            "port",
        ),
        (
            &*format!(
                "/announce?info_hash={}&peer_id={}&port=1&left=1",
                encode(&ih[..19]),
                encode(&peer_id(1))
            ),
            "info_hash",
        ),
        (
            &*format!(
                "/announce?info_hash=%zz{}&peer_id={}&port=1&left=1",
                encode(&ih[..19]),
                encode(&peer_id(1))
            ),
            "info_hash",
        ),
        (
            &*announce_target(&ih, &peer_id(1), 1, 1, "&event=exploded"),
            "event",
        ),
        (
            &*announce_target(&ih, &peer_id(1), 1, 1, "&numwant=lots"),
            "numwant",
        ),
        ("/scrape?info_hash=short", "info_hash"),
        ("/scrape", "info_hash"),
    ];
    for (target, field) in cases {
        let r = http.get(target);
        assert_eq!(r.status, 400, "{target}");
        assert!(r.failure().contains(field), "{target}: {}", r.failure());
    }
    let r = http.get("/elsewhere");
    assert_eq!(r.status, 404);
    assert!(!r.failure().is_empty());
    // Garbage on a fresh connection: 400, connection closed.
    let mut junk = HttpClient::connect(t.v4);
    junk.send_raw(b"\x00\x01\x02 what\r\n\r\n");
    let r = junk.read_response().unwrap();
    assert_eq!(r.status, 400);
    assert!(junk.is_closed());
    // A request with a body is refused.
    let mut body = HttpClient::connect(t.v4);
    body.send_raw(b"POST /announce HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(body.read_response().unwrap().status, 400);
    // Still serving, on the first connection too.
    let r = http.get(&announce_target(&ih, &peer_id(1), 4000, 1, ""));
    let v = r.bencode();
    assert_eq!(v.int("incomplete"), 1);
}

#[test]
fn oversized_requests_are_refused() {
    let t = Tracker::start(&[]);
    let mut http = HttpClient::connect(t.v4);
    let long = "x".repeat(5000);
    http.send_raw(format!("GET /announce?pad={long} HTTP/1.1\r\n\r\n").as_bytes());
    let r = http.read_response().unwrap();
    assert_eq!(r.status, 431);
    assert!(http.is_closed());
    let mut again = HttpClient::connect(t.v4);
    assert_eq!(
        again
            .get(&announce_target(&random_hash(), &peer_id(1), 1, 1, ""))
            .status,
        200
    );
}

#[test]
fn http10_closes_and_idle_connections_time_out() {
    let t = Tracker::start(&["http.idle_timeout=1s"]);
    let mut http = HttpClient::connect(t.v4);
    let target = announce_target(&random_hash(), &peer_id(1), 1, 1, "");
    http.send_raw(format!("GET {target} HTTP/1.0\r\n\r\n").as_bytes());
    let r = http.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(http.is_closed());
    let mut idle = HttpClient::connect(t.v4);
    idle.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let start = std::time::Instant::now();
    assert!(idle.is_closed(), "an idle connection is closed");
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[test]
fn a_client_that_half_closes_gets_its_answer_and_the_end_of_file() {
    // The request and the client's FIN arrive together: one readiness
    // edge. The server must answer and then see the end of file at once,
    // not after the 30 s idle timeout.
    let t = Tracker::start(&[]);
    let mut http = HttpClient::connect(t.v4);
    let target = announce_target(&random_hash(), &peer_id(1), 1, 1, "");
    // Once the server waits on the new connection, the request and the
    // FIN come as one segment (corked).
    std::thread::sleep(Duration::from_millis(200));
    socket2::SockRef::from(&http.stream).set_cork(true).unwrap();
    http.send_raw(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    http.stream.shutdown(std::net::Shutdown::Write).unwrap();
    http.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = std::time::Instant::now();
    let r = http.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(http.is_closed(), "the server closes after the client's FIN");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn real_ip_header_is_believed_only_from_trusted_proxies() {
    let trusted = Tracker::start(&[
        "http.real_ip_header=X-Forwarded-For",
        "http.trusted_proxies=[\"127.0.0.0/8\"]",
    ]);
    let mut http = HttpClient::connect(trusted.v4);
    let ih = random_hash();
    let target = announce_target(&ih, &peer_id(1), 1234, 1, "");
    http.send_raw(
        format!("GET {target} HTTP/1.1\r\nX-Forwarded-For: 198.51.100.7, 127.0.0.9\r\n\r\n")
            .as_bytes(),
    );
    let r = http.read_response().unwrap();
    let v = r.bencode();
    assert_eq!(
        v.bytes("external ip"),
        &[198, 51, 100, 7],
        "rightmost untrusted address"
    );
    let r = http.get(&announce_target(&ih, &peer_id(2), 1235, 1, ""));
    let v = r.bencode();
    assert_eq!(v.bytes("peers"), &[198, 51, 100, 7, 0x04, 0xd2]);

    let untrusted = Tracker::start(&[
        "http.real_ip_header=X-Forwarded-For",
        "http.trusted_proxies=[\"10.0.0.0/8\"]",
    ]);
    let mut http = HttpClient::connect(untrusted.v4);
    http.send_raw(
        format!("GET {target} HTTP/1.1\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n").as_bytes(),
    );
    let r = http.read_response().unwrap();
    let v = r.bencode();
    assert_eq!(
        v.bytes("external ip"),
        &[127, 0, 0, 1],
        "the header of an untrusted peer is ignored"
    );
}

#[test]
fn ip_parameters_only_with_spoofing_allowed() {
    let ih = random_hash();
    for (allowed, expected) in [("false", [127, 0, 0, 1]), ("true", [192, 0, 2, 4])] {
        let t = Tracker::start(&[&format!("http.allow_ip_spoofing={allowed}")]);
        let mut http = HttpClient::connect(t.v4);
        let r = http.get(&announce_target(&ih, &peer_id(1), 1, 1, "&ip=192.0.2.4"));
        let v = r.bencode();
        assert_eq!(
            v.bytes("external ip"),
            &expected,
            "allow_ip_spoofing={allowed}"
        );
    }
}

#[test]
fn passkey_routes_and_connection_cap() {
    let t = Tracker::start(&[
        "http.announce_routes=[\"/:passkey/announce\"]",
        "http.max_connections=2",
    ]);
    let mut a = HttpClient::connect(t.v4);
    let target = announce_target(&random_hash(), &peer_id(1), 1, 1, "");
    assert_eq!(a.get(&format!("/abc123{target}")).status, 200);
    assert_eq!(
        a.get(&target).status,
        404,
        "the plain route is not configured"
    );
    drop(a);
    // Two shards, two connections each at most. The kernel spreads new
    // connections by hash, so which ones land where varies; what holds is
    // that at most 4 are served at once and the rest are closed (each new
    // one past the cap closes the oldest still waiting for a request).
    std::thread::sleep(Duration::from_millis(100));
    let mut open: Vec<HttpClient> = (0..10).map(|_| HttpClient::connect(t.v4)).collect();
    // Let the shards accept them all first: a connection served and then
    // idle again would be pushed out by one accepted after it.
    std::thread::sleep(Duration::from_millis(300));
    let mut served = 0;
    for c in &mut open {
        c.send_raw(format!("GET /k{target} HTTP/1.1\r\n\r\n").as_bytes());
        if c.read_response().is_some() {
            served += 1;
        }
    }
    assert!(
        (1..=4).contains(&served),
        "served {served} of 10 with a cap of 2 per shard"
    );
    // Closing them gives the places back.
    drop(open);
    std::thread::sleep(Duration::from_millis(200));
    let mut again = HttpClient::connect(t.v4);
    assert_eq!(again.get(&format!("/k{target}")).status, 200);
}

#[test]
fn a_trickled_request_is_cut_off_at_the_read_deadline() {
    let t = Tracker::start(&["http.read_timeout=1s"]);
    let mut slow = HttpClient::connect(t.v4);
    let request = format!(
        "GET {} HTTP/1.1\r\n\r\n",
        announce_target(&random_hash(), &[1; 20], 1, 1, "")
    );
    let start = std::time::Instant::now();
    // One byte every 200 ms: each read is quick, the request never ends
    // in time.
    let mut closed = false;
    for b in request.as_bytes() {
        if std::io::Write::write_all(&mut slow.stream, &[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    if !closed {
        slow.stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        closed = slow.is_closed();
    }
    assert!(closed, "the trickling connection was closed");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn only_get_is_served() {
    let t = Tracker::start(&[]);
    for method in ["POST", "DELETE", "HEAD", "PUT"] {
        let mut c = HttpClient::connect(t.v4);
        let target = announce_target(&random_hash(), &[1; 20], 1, 1, "");
        c.send_raw(format!("{method} {target} HTTP/1.1\r\n\r\n").as_bytes());
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 405, "{method}");
        assert!(c.is_closed());
    }
}

#[test]
fn refusals_reach_the_client_despite_unread_bytes() {
    let t = Tracker::start(&[]);
    for _ in 0..5 {
        let mut c = HttpClient::connect(t.v4);
        // Far past the 4KiB cap: most of it is never read by the server,
        // which must still not reset the connection over it.
        let long = "y".repeat(64 * 1024);
        let writer = {
            let mut stream = c.stream.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = std::io::Write::write_all(
                    &mut stream,
                    format!("GET /announce?pad={long} HTTP/1.1\r\n\r\n").as_bytes(),
                );
            })
        };
        let r = c.read_response().expect("the 431 arrives");
        assert_eq!(r.status, 431);
        writer.join().unwrap();
    }
}

#[test]
fn prefer_subnet_hands_out_the_announcers_subnet_first() {
    let t = Tracker::start(&[
        "http.allow_ip_spoofing=true",
        "tracker.prefer_subnet={ipv4_prefix: 24, ipv6_prefix: 64}",
    ]);
    let mut http = HttpClient::connect(t.v4);
    let ih = random_hash();
    // 30 peers in 30 subnets, 3 of them beside the announcer (10.9.9.0/24).
    for n in 0..30u8 {
        let ip = if n < 3 {
            format!("10.9.9.{n}")
        } else {
            format!("10.{n}.0.1")
        };
        http.get(&announce_target(
            &ih,
            &peer_id(n),
            6000 + n as u16,
            5,
            &format!("&ip={ip}&numwant=0"),
        ));
    }
    for _ in 0..10 {
        let r = http.get(&announce_target(
            &ih,
            &peer_id(99),
            7000,
            5,
            "&ip=10.9.9.200&numwant=5",
        ));
        let v = r.bencode();
        let peers = compact_peers(&v, "peers", 6);
        assert_eq!(peers.len(), 5);
        assert!(
            peers[..3].iter().all(|p| p[..3] == [10, 9, 9]),
            "the near peers first: {peers:?}"
        );
        assert!(peers[3..].iter().all(|p| p[..3] != [10, 9, 9]));
    }
}

/// Peer 1 announces over IPv4 and names its IPv6 address (BEP 7 `ipv6=`).
fn announce_dual(http: &mut HttpClient, ih: &[u8; 20], extra: &str) {
    let extra = format!("{extra}&ipv6={}", encode(b"2001:db8::7"));
    http.get(&announce_target(ih, &peer_id(1), 6001, 5, &extra));
}

#[test]
fn dual_stacked_peers_are_one_peer_in_both_lists() {
    let t = Tracker::start(&["http.dual_stack=true"]);
    let mut http = HttpClient::connect(t.v4);
    let ih = random_hash();
    announce_dual(&mut http, &ih, "");
    let r = http.get(&announce_target(&ih, &peer_id(2), 6002, 5, ""));
    let v = r.bencode();
    assert_eq!(v.int("incomplete"), 2, "the dual-stacked peer counts once");
    assert_eq!(compact_peers(&v, "peers", 6), vec![v4_peer(6001)]);
    let mut v6 = "2001:db8::7"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets()
        .to_vec();
    v6.extend_from_slice(&6001u16.to_be_bytes());
    assert_eq!(
        compact_peers(&v, "peers6", 18),
        vec![v6],
        "and is handed out in peers6"
    );
    let scraped = {
        let r = http.get(&format!("/scrape?info_hash={}", encode(&ih)));
        r.bencode().dict("files").dict(ih).int("incomplete")
    };
    assert_eq!(scraped, 2);
    // A stop removes both addresses.
    announce_dual(&mut http, &ih, "&event=stopped");
    let r = http.get(&announce_target(&ih, &peer_id(2), 6002, 5, ""));
    let v = r.bencode();
    assert_eq!(v.int("incomplete"), 1);
    assert!(v.bytes("peers").is_empty() && v.bytes("peers6").is_empty());

    // Off (the default), the named address is not believed.
    let t = Tracker::start(&[]);
    let mut http = HttpClient::connect(t.v4);
    announce_dual(&mut http, &ih, "");
    let r = http.get(&announce_target(&ih, &peer_id(2), 6002, 5, ""));
    assert!(r.bencode().bytes("peers6").is_empty());
}
