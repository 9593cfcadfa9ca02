//! The built-in `client approval` and `torrent approval` hooks in the
//! shipped binary, over UDP and HTTP, and a live reload (SIGHUP) of a
//! torrent list file: taken when good, refused with the old list kept
//! when bad.

mod common;

use common::bencode::Fields;
use common::http::{announce_target, HttpClient};
use common::*;
use std::time::{Duration, Instant};

/// A UDP announce with `peer_id`: the answer's action (1 announce, 3
/// error) and, for errors, the message.
fn udp_announce(c: &Client, info_hash: [u8; 20], peer_id: &[u8; 20], port: u16) -> (u32, Vec<u8>) {
    let mut p = c.announce_packet(&Announce::new(info_hash, port), 7);
    p[36..56].copy_from_slice(peer_id);
    c.send(&p);
    let r = c.recv().expect("an answer");
    (be32(&r[0..4]), r[8..].to_vec())
}

fn peer_id(prefix: &[u8]) -> [u8; 20] {
    let mut id = [b'1'; 20];
    id[..prefix.len()].copy_from_slice(prefix);
    id
}

fn hex(hash: &[u8; 20]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn client_approval_checks_the_client_id_on_both_protocols() {
    let t =
        Tracker::start(&["hooks.pre=[{name: client approval, options: {whitelist: [TR2940]}}]"]);
    let ih = random_hash();
    let (good, bad) = (peer_id(b"-TR2940-"), peer_id(b"-UT3550-"));
    let mut http = HttpClient::connect(t.v4);
    let r = http.get(&announce_target(&ih, &good, 7001, 5, ""));
    assert_eq!(r.bencode().int("incomplete"), 1);
    let r = http.get(&announce_target(&ih, &bad, 7002, 5, ""));
    assert_eq!(r.failure(), "unapproved client");
    let c = Client::connected(t.v4);
    assert_eq!(udp_announce(&c, ih, &good, 7003).0, 1);
    assert_eq!(
        udp_announce(&c, ih, &bad, 7004),
        (3, b"unapproved client".to_vec())
    );
    // Scrapes are not checked; the refused peers were not stored.
    assert_eq!(c.scrape(&[ih]), vec![(0, 0, 2)]);
}

#[test]
fn torrent_lists_reload_on_sighup_and_a_bad_one_is_refused() {
    let dir = std::env::temp_dir().join(format!("shoal-approval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("allowed.txt");
    let (a, b) = (random_hash(), random_hash());
    std::fs::write(&list, format!("# allowed\n{}\n", hex(&a))).unwrap();
    let mut t = Tracker::start(&[&format!(
        "hooks.pre=[{{name: torrent approval, options: {{whitelist: {{path: {}}}}}}}]",
        list.display()
    )]);
    let id = peer_id(b"-TR2940-");
    let c = Client::connected(t.v4);
    let mut http = HttpClient::connect(t.v4);
    let allowed = |http: &mut HttpClient, ih: &[u8; 20], port| {
        let r = http.get(&announce_target(ih, &id, port, 5, ""));
        if r.body.starts_with(b"d14:failure reason") {
            assert_eq!(r.failure(), "unapproved torrent");
            false
        } else {
            true
        }
    };
    assert!(allowed(&mut http, &a, 7101));
    assert!(!allowed(&mut http, &b, 7102));
    assert_eq!(udp_announce(&c, a, &id, 7103).0, 1);
    assert_eq!(
        udp_announce(&c, b, &id, 7104),
        (3, b"unapproved torrent".to_vec())
    );

    // The new list is taken within a few housekeeping ticks.
    std::fs::write(&list, format!("{}\n", hex(&b))).unwrap();
    t.signal(libc::SIGHUP);
    // Each shard takes it at its own tick, and `a` and `b` may have
    // different owners: wait until both sides show the new list.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !allowed(&mut http, &b, 7105) || allowed(&mut http, &a, 7106) {
        assert!(Instant::now() < deadline, "the reload was not taken");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(udp_announce(&c, b, &id, 7107).0, 1);

    // A bad list is refused: the running one stays, the server too.
    std::fs::write(&list, "not a hash\n").unwrap();
    t.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(t.is_running());
    assert!(allowed(&mut http, &b, 7108));
    assert!(!allowed(&mut http, &a, 7109));
    std::fs::remove_dir_all(&dir).unwrap();
}
