//! Bounded stress on loopback: the cross-shard mesh under pressure.

mod common;

use common::http::{announce_target, HttpClient};
use common::*;
use std::time::{Duration, Instant};

/// Three shards, one-batch channels, kernel steering off (so most UDP
/// announces cross shards), floods of UDP and HTTP announces from several
/// threads for 3 s: afterwards every shard still answers. (With forwards
/// and replies flushed by the same tasks, the shards used to wait on each
/// other's full channels for ever.)
#[test]
fn mesh_under_pressure_never_locks_up() {
    let t = Tracker::start(&[
        "runtime.cores=[0, 1, 1]",
        "runtime.channel_capacity=1",
        "udp.kernel_steering=false",
    ]);
    // Connect every flooding client first: once the floods run, the
    // kernel drops datagrams (a connect among them would time out).
    let udp_clients: Vec<Vec<Client>> = (0..3)
        .map(|_| (0..8).map(|_| Client::connected(t.v4)).collect())
        .collect();
    let http_clients: Vec<HttpClient> = (0..2).map(|_| HttpClient::connect(t.v4)).collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut floods = Vec::new();
    for (thread, clients) in udp_clients.into_iter().enumerate() {
        let target = t.v4;
        floods.push(std::thread::spawn(move || {
            for c in &clients {
                c.sock.set_nonblocking(true).unwrap();
            }
            let mut buf = [0u8; 2048];
            let mut sent = 0u64;
            while Instant::now() < deadline {
                for c in &clients {
                    for _ in 0..8 {
                        let packet = c.announce_packet(
                            &Announce::new(random_hash(), 1000 + thread as u16),
                            1,
                        );
                        let _ = c.sock.send_to(&packet, target);
                        sent += 1;
                    }
                    while c.sock.recv_from(&mut buf).is_ok() {}
                }
            }
            sent
        }));
    }
    for mut http in http_clients {
        floods.push(std::thread::spawn(move || {
            // Answers may be slow while the shards are saturated; they
            // must come.
            http.stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut sent = 0u64;
            while Instant::now() < deadline {
                let r = http.get(&announce_target(&random_hash(), &[7; 20], 2000, 1, ""));
                assert_eq!(r.status, 200);
                sent += 1;
            }
            sent
        }));
    }
    let sent: u64 = floods.into_iter().map(|f| f.join().unwrap()).sum();
    assert!(sent > 1000, "the floods ran ({sent} requests)");
    // Every new client is answered once the backlog the floods left in the
    // socket buffers is worked off (a locked-up shard never answers).
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in 0..40 {
        let mut c = Client::new(t.v4);
        c.sock
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(
            c.connect_by(deadline),
            "client {n} got no connect answer in 20s"
        );
        c.sock
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(c.announce(&Announce::new(random_hash(), 3000)).leechers, 1);
    }
    let mut http = HttpClient::connect(t.v4);
    assert_eq!(
        http.get(&announce_target(&random_hash(), &[8; 20], 2001, 1, ""))
            .status,
        200
    );
}
