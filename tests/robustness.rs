//! Hostile traffic against the real server on loopback, small enough for
//! the test suite (each well under 20 s); scripts/flood runs the large
//! versions and reports figures (docs/robustness.md).
//!
//! - Amplification: bytes answered per byte received, per kind of
//!   unauthenticated request. UDP's source address is unproven, so every
//!   kind must answer at most what it received (ratio <= 1). TCP's
//!   handshake proves the address before the first byte, so HTTP cannot
//!   reflect; its ratios are measured and bounded, not held to 1.
//! - UDP flood: garbage and forged connection ids from many sockets while
//!   valid clients keep being answered; forged ids get nothing.
//! - HTTP: a pipelining flood on one connection is answered in order and
//!   in full; idle and slowloris connections do not stop a fresh client.
//! - Crash safety: SIGKILL at random points while snapshots are written;
//!   every restart reads back a whole snapshot (old or new).
mod common;

use common::http::{announce_target, HttpClient};
use common::{be32, random_hash, Announce, Client, Tracker, PROTOCOL_ID};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Sends `packets` from one fresh socket, then a valid connect as a
/// sentinel; counts every byte that comes back before the sentinel's
/// answer and for a grace period after it. Returns (sent, received)
/// excluding the sentinel's own 16 + 16 bytes.
fn udp_exchange(target: SocketAddr, packets: &[Vec<u8>]) -> (usize, usize) {
    let local = if target.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let sock = UdpSocket::bind(local).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut sent = 0;
    for p in packets {
        sent += sock.send_to(p, target).unwrap();
    }
    let sentinel_tid = 0x5e17_1e15u32;
    let mut sentinel = PROTOCOL_ID.to_be_bytes().to_vec();
    sentinel.extend_from_slice(&0u32.to_be_bytes());
    sentinel.extend_from_slice(&sentinel_tid.to_be_bytes());
    sock.send_to(&sentinel, target).unwrap();
    let mut received = 0;
    let mut seen_sentinel = None;
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if seen_sentinel.is_some_and(|at: Instant| at.elapsed() > Duration::from_millis(200)) {
            break;
        }
        let Ok(n) = sock.recv(&mut buf) else { continue };
        if n == 16 && be32(&buf[4..8]) == sentinel_tid && seen_sentinel.is_none() {
            seen_sentinel = Some(Instant::now());
        } else {
            received += n;
        }
    }
    assert!(seen_sentinel.is_some(), "the sentinel connect was answered");
    (sent, received)
}

fn connect_packet(tid: u32) -> Vec<u8> {
    let mut p = PROTOCOL_ID.to_be_bytes().to_vec();
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&tid.to_be_bytes());
    p
}

fn forged_announce(event: u32, port: u16, options: &[u8]) -> Vec<u8> {
    let mut c = Client::new("127.0.0.1:1".parse().unwrap());
    c.connection_id = fastrand::u64(..);
    let mut p = c.announce_packet(&Announce::new(random_hash(), port).event(event), 7);
    p.extend_from_slice(options);
    p
}

fn forged_scrape(hashes: usize) -> Vec<u8> {
    let mut c = Client::new("127.0.0.1:1".parse().unwrap());
    c.connection_id = fastrand::u64(..);
    let hashes: Vec<[u8; 20]> = (0..hashes).map(|_| random_hash()).collect();
    c.scrape_packet(&hashes, 9)
}

fn peer_id(port: u16) -> [u8; 20] {
    let mut id = *b"-RB0001-............";
    id[8..10].copy_from_slice(&port.to_be_bytes());
    id
}

fn garbage(len: usize) -> Vec<u8> {
    (0..len).map(|_| fastrand::u8(..)).collect()
}

/// What each kind of unauthenticated UDP request gets back, per byte.
fn udp_amplification(target: SocketAddr) -> Vec<(&'static str, usize, usize)> {
    let mut bad_protocol = connect_packet(1);
    bad_protocol[..8].copy_from_slice(&1u64.to_be_bytes());
    let mut unknown_action = connect_packet(1);
    unknown_action[..8].copy_from_slice(&fastrand::u64(..).to_be_bytes());
    unknown_action[8..12].copy_from_slice(&9u32.to_be_bytes());
    let mut error_action = unknown_action.clone();
    error_action[8..12].copy_from_slice(&3u32.to_be_bytes());
    let url = b"\x02\x0f/passkey/announc\x00";
    let kinds: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("connect", (0..50).map(connect_packet).collect()),
        ("connect, wrong protocol id", vec![bad_protocol; 50]),
        (
            "announce, forged id",
            (0..50).map(|_| forged_announce(2, 6881, b"")).collect(),
        ),
        (
            "announce, forged id, BEP 41 URL data",
            (0..50).map(|_| forged_announce(2, 6881, url)).collect(),
        ),
        (
            "announce, forged id, bad event",
            (0..50).map(|_| forged_announce(77, 6881, b"")).collect(),
        ),
        (
            "announce, forged id, port 0",
            (0..50).map(|_| forged_announce(2, 0, b"")).collect(),
        ),
        (
            "announce, forged id, too short",
            (0..50)
                .map(|_| forged_announce(2, 1, b"")[..60].to_vec())
                .collect(),
        ),
        (
            "scrape, forged id, 1 hash",
            (0..50).map(|_| forged_scrape(1)).collect(),
        ),
        (
            "scrape, forged id, 74 hashes",
            (0..50).map(|_| forged_scrape(74)).collect(),
        ),
        (
            "scrape, forged id, no hash",
            (0..50).map(|_| forged_scrape(0)).collect(),
        ),
        ("unknown action", vec![unknown_action; 50]),
        ("error action", vec![error_action; 50]),
        ("garbage, 1-15 bytes", (1..=15).map(garbage).collect()),
        (
            "garbage, 16-1400 bytes",
            (0..50)
                .map(|_| garbage(fastrand::usize(16..1400)))
                .collect(),
        ),
    ];
    kinds
        .into_iter()
        .map(|(name, packets)| {
            let (sent, received) = udp_exchange(target, &packets);
            (name, sent, received)
        })
        .collect()
}

#[test]
fn unauthenticated_udp_never_answers_more_than_it_got() {
    let t = Tracker::start(&[]);
    for target in [t.v4, t.v6] {
        for (name, sent, received) in udp_amplification(target) {
            let ratio = received as f64 / sent as f64;
            println!(
                "udp {target}: {name}: sent {sent} B, answered {received} B, ratio {ratio:.2}"
            );
            assert!(ratio <= 1.0, "{name}: {received} B answered to {sent} B");
            if name != "connect" {
                assert_eq!(
                    received, 0,
                    "{name}: no answer without a valid connection id"
                );
            }
        }
    }
}

/// One request on a fresh connection: (bytes sent, bytes answered).
fn http_exchange(target: SocketAddr, request: &[u8]) -> (usize, usize) {
    let mut s = TcpStream::connect(target).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may answer and close before the whole request is read
    // (too large): a failed write is fine, the answer is what counts.
    let _ = s.write_all(request);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    (request.len(), answer.len())
}

#[test]
fn bad_http_requests_get_short_answers() {
    let t = Tracker::start(&[]);
    let long_path = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(8000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage line", b"\x16\x03\x01 hello\r\n\r\n".to_vec()),
        ("bare blank line", b"\n\n".to_vec()),
        ("request line only", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        (
            "unknown path",
            b"GET /nothing/here HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        ),
        (
            "POST with a body",
            b"POST /announce HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
        ),
        (
            "announce, no query",
            b"GET /announce HTTP/1.1\r\n\r\n".to_vec(),
        ),
        (
            "announce, bad info_hash",
            b"GET /announce?info_hash=%zz HTTP/1.1\r\n\r\n".to_vec(),
        ),
        ("scrape, too many hashes", {
            let q: String = (0..80).map(|_| "info_hash=aaaaaaaaaaaaaaaaaaaa&").collect();
            format!("GET /scrape?{q} HTTP/1.1\r\n\r\n").into_bytes()
        }),
        ("head over max_request_size", long_path.into_bytes()),
        ("binary garbage, 2 KiB", {
            let mut g = garbage(2048);
            g.extend_from_slice(b"\r\n\r\n");
            g
        }),
    ];
    for (name, request) in cases {
        let (sent, answered) = http_exchange(t.v4, &request);
        let ratio = answered as f64 / sent as f64;
        println!("http: {name}: sent {sent} B, answered {answered} B, ratio {ratio:.2}");
        // Every refusal is one short head and a bencoded reason.
        assert!(answered > 0, "{name}: answered");
        assert!(answered <= 200, "{name}: {answered} B answered");
    }
}

/// Many sockets spray garbage and announces with forged connection ids;
/// a valid client keeps connecting and announcing throughout, and none of
/// the forged packets is answered.
#[test]
fn udp_flood_of_garbage_and_forged_ids_leaves_valid_clients_answered() {
    let t = Tracker::start(&[]);
    let target = t.v4;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..1)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                sock.set_nonblocking(true).unwrap();
                let packets: Vec<Vec<u8>> = (0..64)
                    .map(|j| match (i + j) % 3 {
                        0 => garbage(fastrand::usize(0..200)),
                        1 => forged_announce(2, 6881, b""),
                        _ => forged_scrape(10),
                    })
                    .collect();
                let (mut sent, mut answered) = (0u64, 0u64);
                let mut buf = [0u8; 2048];
                let until = Instant::now() + Duration::from_secs(4);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
                    for p in &packets {
                        if sock.send_to(p, target).is_ok() {
                            sent += 1;
                        }
                    }
                    while sock.recv(&mut buf).is_ok() {
                        answered += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
                while sock.recv(&mut buf).is_ok() {
                    answered += 1;
                }
                (sent, answered)
            })
        })
        .collect();
    // The valid client: connect and announce, again and again, under the
    // flood. Like a real client (BEP 15) it retransmits what was lost: a
    // flood that fills the socket's queue drops valid datagrams with the
    // rest, so what must hold is that each exchange gets through.
    let exchange =
        |sock: &UdpSocket, packet: &[u8], tid: u32, action: u32| -> Option<(Vec<u8>, u32)> {
            let mut buf = [0u8; 2048];
            for attempt in 1..=20 {
                sock.send_to(packet, target).unwrap();
                let until = Instant::now() + Duration::from_millis(250);
                while Instant::now() < until {
                    if let Ok(n) = sock.recv(&mut buf) {
                        if n >= 8 && be32(&buf[0..4]) == action && be32(&buf[4..8]) == tid {
                            return Some((buf[..n].to_vec(), attempt));
                        }
                    }
                }
            }
            None
        };
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let started = Instant::now();
    let (mut rounds, mut first_try, mut answered) = (0, 0, 0);
    while started.elapsed() < Duration::from_secs(3) {
        rounds += 1;
        let tid = fastrand::u32(..);
        let Some((r, tries)) = exchange(&sock, &connect_packet(tid), tid, 0) else {
            continue;
        };
        let mut c = Client::new(target);
        c.connection_id = u64::from_be_bytes(r[8..16].try_into().unwrap());
        let tid = fastrand::u32(..);
        let announce = c.announce_packet(&Announce::new(random_hash(), 7000), tid);
        if let Some((_, more)) = exchange(&sock, &announce, tid, 1) {
            answered += 1;
            if tries + more == 2 {
                first_try += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut flood_sent = 0;
    for f in flooders {
        let (sent, answered) = f.join().unwrap();
        assert_eq!(answered, 0, "a forged or garbage packet was answered");
        flood_sent += sent;
    }
    println!(
        "flood: {flood_sent} packets; valid connect+announce rounds answered {answered}/{rounds} ({first_try} without a retransmit)"
    );
    assert!(flood_sent > 10_000, "the flood ran ({flood_sent} packets)");
    assert_eq!(answered, rounds, "every valid round got through");
    let mut t = t;
    assert!(t.is_running());
}

/// 5,000 announces pipelined on one connection without reading, then
/// every answer read back, in order.
#[test]
fn a_pipelining_flood_is_answered_in_full_and_in_order() {
    let t = Tracker::start(&[]);
    let mut c = HttpClient::connect(t.v4);
    let ih = random_hash();
    let n = 5_000;
    let writer = {
        let mut stream = c.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut batch = Vec::new();
            for i in 0..n {
                let port = 10_000 + (i % 50_000) as u16;
                let target = announce_target(&ih, &peer_id(port), port, 100, "");
                batch.extend_from_slice(
                    format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
                );
                if batch.len() > 64 << 10 {
                    stream.write_all(&batch).unwrap();
                    batch.clear();
                }
            }
            stream.write_all(&batch).unwrap();
        })
    };
    for i in 0..n {
        let r = c
            .read_response()
            .unwrap_or_else(|| panic!("answer {i} of {n}"));
        assert_eq!(r.status, 200, "answer {i}");
        let d = r.bencode();
        assert!(d.get(b"interval").is_some(), "answer {i}");
    }
    writer.join().unwrap();
    // The connection is still usable afterwards.
    let r = c.get(&announce_target(&ih, &peer_id(9), 9, 0, ""));
    assert_eq!(r.status, 200);
}

/// Closed by the server: end of stream or a reset. Open: the read times out.
fn closed_by_server(mut s: &TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    match s.read(&mut [0u8; 64]) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// A fresh connection's announce: whether it was answered 200.
fn fresh_announce(target: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
        return false;
    };
    drop(stream);
    let mut c = HttpClient::connect(target);
    let port = fastrand::u16(1..);
    c.send_raw(
        format!(
            "GET {} HTTP/1.1\r\nHost: t\r\n\r\n",
            announce_target(&random_hash(), &peer_id(port), port, 1, "")
        )
        .as_bytes(),
    );
    c.read_response().is_some_and(|r| r.status == 200)
}

/// Idle connections and slowloris clients (a head trickled a byte at a
/// time, never finished) hold no one else up: fresh clients are answered
/// meanwhile, the slow heads are cut at the read timeout and the idle
/// connections at the idle timeout. scripts/flood holds 10,000.
#[test]
fn idle_and_slowloris_connections_do_not_starve_fresh_clients() {
    let t = Tracker::start(&["http.read_timeout=2s", "http.idle_timeout=4s"]);
    let target = t.v4;
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(target).unwrap())
        .collect();
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(target).unwrap())
        .collect();
    let head = b"GET /announce?info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    let started = Instant::now();
    let mut fresh = (0, 0);
    let mut at = 0;
    // Trickle for 3 s (past the 2 s read timeout), announcing meanwhile.
    while started.elapsed() < Duration::from_secs(3) {
        for s in &mut slow {
            let _ = s.write_all(&head[at % head.len()..at % head.len() + 1]);
        }
        at += 1;
        fresh.1 += 1;
        if fresh_announce(target) {
            fresh.0 += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "fresh clients answered {}/{} under {} idle + {} slowloris",
        fresh.0,
        fresh.1,
        idle.len(),
        slow.len()
    );
    assert_eq!(fresh.0, fresh.1, "every fresh client answered");
    let slow_closed = slow.iter().filter(|s| closed_by_server(s)).count();
    assert_eq!(
        slow_closed,
        slow.len(),
        "slow heads cut at the read timeout"
    );
    std::thread::sleep(
        Duration::from_secs(4).saturating_sub(started.elapsed()) + Duration::from_millis(1500),
    );
    let idle_closed = idle.iter().filter(|s| closed_by_server(s)).count();
    assert_eq!(
        idle_closed,
        idle.len(),
        "idle connections closed at the idle timeout"
    );
    assert!(fresh_announce(target));
}

/// At `http.max_connections`, a new connection closes the one that has
/// waited longest for a request: a client holding the cap with idle
/// connections cannot keep fresh clients out until its connections time out.
#[test]
fn at_the_connection_cap_fresh_clients_push_out_the_longest_idle() {
    let t = Tracker::start(&["runtime.cores=[0]", "http.max_connections=50"]);
    let idle: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(t.v4).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // Fresh clients that stay connected: each one's arrival finds the cap
    // held and must push out one of the idle connections, oldest first.
    let mut fresh = Vec::new();
    for i in 0..20u16 {
        let mut c = HttpClient::connect(t.v4);
        let port = 20_000 + i;
        let r = c.get(&announce_target(
            &random_hash(),
            &peer_id(port),
            port,
            1,
            "",
        ));
        assert_eq!(r.status, 200, "fresh client {i} answered at the cap");
        fresh.push(c);
    }
    let closed: Vec<bool> = idle.iter().map(closed_by_server).collect();
    assert_eq!(closed.iter().filter(|&&c| c).count(), 20, "{closed:?}");
    assert!(
        closed[..20].iter().all(|&c| c),
        "the oldest went first: {closed:?}"
    );
}

/// Kills the server with SIGKILL at random points of its snapshot cycle
/// (every second, with a few thousand torrents so a write takes a while),
/// then restarts it with `on_bad_file=fail`: every start must succeed and
/// bring back the torrents of a whole snapshot, never a torn one.
#[test]
fn sigkill_during_snapshots_always_restarts_from_a_whole_snapshot() {
    let dir = std::env::temp_dir().join(format!("shoal-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("swarms.snapshot");
    let set = format!("storage.snapshot.path=\"{}\"", path.display());
    let fast = [
        "storage.snapshot.interval=1s",
        "storage.snapshot.on_bad_file=fail",
        "runtime.cores=[0]",
    ];
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec![set.clone()];
        a.extend(fast.iter().map(|s| s.to_string()));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // The base: torrents every snapshot holds, written by a clean stop.
    let base: Vec<[u8; 20]> = (0..2_000).map(|_| random_hash()).collect();
    let a = args(&[]);
    let t = Tracker::start(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let c = Client::connected(t.v4);
    for chunk in base.chunks(64) {
        for ih in chunk {
            c.send(&c.announce_packet(&Announce::new(*ih, 6881).seeder(), 1));
        }
        for _ in chunk {
            c.recv().expect("announce answered");
        }
    }
    let expected = c.scrape(&base[..50]);
    assert!(t.stop().success());

    let (mut during_write, rounds) = (0, 8);
    for round in 0..rounds {
        let t = Tracker::start(&a.iter().map(String::as_str).collect::<Vec<_>>());
        let c = Client::connected(t.v4);
        assert_eq!(
            c.scrape(&base[..50]),
            expected,
            "round {round}: the base is back"
        );
        // New torrents each round, so each snapshot differs from the last.
        for _ in 0..200 {
            c.send(&c.announce_packet(&Announce::new(random_hash(), 6882).seeder(), 2));
        }
        std::thread::sleep(Duration::from_millis(fastrand::u64(200..2_300)));
        let temporary = dir.join(format!("swarms.snapshot.tmp.{}", t.pid()));
        t.signal(libc::SIGKILL);
        if temporary.exists() {
            during_write += 1;
        }
        drop(t);
    }
    // The last start reads what the kills left, and the leftover
    // temporaries of killed writers are cleaned away by its first write.
    let t = Tracker::start(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let c = Client::connected(t.v4);
    assert_eq!(c.scrape(&base[..50]), expected);
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(t.stop().success());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "only the snapshot is left: {left:?}");
    println!(
        "{rounds} SIGKILLs, {during_write} of them during a snapshot write; every restart whole"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
