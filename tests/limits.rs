//! The built-in `ip ban` and `rate limit` hooks in the shipped binary,
//! over UDP and HTTP, from several loopback source addresses (all of
//! 127.0.0.0/8 reaches the server), and a ban list reloaded on SIGHUP.

mod common;

use common::bencode::Fields;
use common::http::{announce_target, HttpClient};
use common::*;
use std::net::IpAddr;
use std::time::{Duration, Instant};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Whether a UDP connect from `from` is answered within 300 ms.
fn udp_answered(t: &Tracker, from: &str) -> bool {
    let mut c = Client::from_address(ip(from), t.v4);
    c.sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    c.connect_by(Instant::now() + Duration::from_millis(300))
}

/// An HTTP announce from `from`: its status and failure reason, if any.
fn http_announce(t: &Tracker, from: &str) -> (u16, Option<String>) {
    let mut http = HttpClient::connect_from(ip(from), t.v4);
    let r = http.get(&announce_target(&random_hash(), &[b'p'; 20], 7001, 5, ""));
    let failure = r
        .body
        .starts_with(b"d14:failure reason")
        .then(|| r.failure());
    (r.status, failure)
}

#[test]
fn banned_sources_get_nothing_and_a_reload_changes_the_list() {
    let dir = std::env::temp_dir().join(format!("shoal-ban-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("bans.txt");
    std::fs::write(&list, "# abusers\n127.0.0.2\n").unwrap();
    let mut t = Tracker::start(&[&format!(
        "hooks.pre=[{{name: ip ban, options: {{cidrs: [\"127.0.0.8/29\"], path: {}}}}}]",
        list.display()
    )]);
    for banned in ["127.0.0.2", "127.0.0.9", "127.0.0.15"] {
        assert!(!udp_answered(&t, banned), "{banned}: no UDP answer at all");
        let (status, failure) = http_announce(&t, banned);
        assert_eq!(status, 403, "{banned}");
        assert_eq!(failure.as_deref(), Some("banned address"));
    }
    for allowed in ["127.0.0.1", "127.0.0.3", "127.0.0.16"] {
        assert!(udp_answered(&t, allowed), "{allowed}");
        assert_eq!(http_announce(&t, allowed), (200, None));
    }
    // Banned UDP announces and scrapes (with a connection id got from an
    // allowed address, which a banned one cannot have) are not answered.
    let proven = Client::connected(t.v4);
    let mut banned = Client::from_address(ip("127.0.0.2"), t.v4);
    banned.connection_id = proven.connection_id;
    banned
        .sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    banned.send(&banned.announce_packet(&Announce::new(random_hash(), 7002), 1));
    banned.send(&banned.scrape_packet(&[random_hash()], 2));
    assert_eq!(banned.recv(), None);

    // SIGHUP re-reads the file: 127.0.0.2 is let in, 127.0.0.3 banned.
    std::fs::write(&list, "127.0.0.3\n").unwrap();
    t.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !udp_answered(&t, "127.0.0.2") {
        assert!(Instant::now() < deadline, "the reload was not taken");
    }
    assert!(!udp_answered(&t, "127.0.0.3"));
    assert_eq!(http_announce(&t, "127.0.0.3").0, 403);
    assert_eq!(http_announce(&t, "127.0.0.2"), (200, None));

    // A bad file is refused and the running list kept.
    std::fs::write(&list, "127.0.0.300\n").unwrap();
    t.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(t.is_running());
    assert!(!udp_answered(&t, "127.0.0.3"));
    assert!(udp_answered(&t, "127.0.0.2"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn announces_per_address_are_limited_with_a_retry_time() {
    let t = Tracker::start(&[
        "hooks.pre=[{name: rate limit, options: {announces_per_window: 3, window: 1m, enforce_min_interval: false}}]",
    ]);
    // One keep-alive connection stays on one shard, which counts it.
    let mut http = HttpClient::connect_from(ip("127.0.0.4"), t.v4);
    for port in 7101..7104 {
        let r = http.get(&announce_target(&random_hash(), &[b'h'; 20], port, 5, ""));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.bencode().int("interval"),
            1800,
            "announce {port} answered"
        );
    }
    let r = http.get(&announce_target(&random_hash(), &[b'h'; 20], 7104, 5, ""));
    assert_eq!(r.failure(), "too many announces from your address");
    assert_eq!(r.bencode().int("retry in"), 1, "minutes, rounded up");

    // UDP announces are steered to the shard that owns their infohash,
    // which counts them: one torrent, one count. Connects are not counted.
    let mut c = Client::from_address(ip("127.0.0.5"), t.v4);
    for _ in 0..5 {
        c.connect();
    }
    let ih = random_hash();
    for port in 7201..7204 {
        assert_eq!(c.announce(&Announce::new(ih, port)).interval, 1800);
    }
    c.send(&c.announce_packet(&Announce::new(ih, 7204), 9));
    let r = c.recv().expect("an error packet");
    assert_eq!(be32(&r[0..4]), 3);
    assert_eq!(&r[8..], b"too many announces from your address");

    // Other addresses have their own count.
    let other = Client::connected(t.v4);
    assert_eq!(
        other.announce(&Announce::new(random_hash(), 7205)).interval,
        1800
    );
}

#[test]
fn a_peer_reannouncing_before_the_min_interval_is_told_to_wait() {
    let t = Tracker::start(&[
        "tracker.min_announce_interval=10m",
        "hooks.pre=[{name: rate limit, options: {announces_per_window: 0}}]",
    ]);
    let ih = random_hash();
    let id = [b'm'; 20];
    let mut http = HttpClient::connect(t.v4);
    let regular =
        |http: &mut HttpClient, extra: &str| http.get(&announce_target(&ih, &id, 7301, 5, extra));
    assert_eq!(
        regular(&mut http, "&event=started")
            .bencode()
            .int("interval"),
        1800
    );
    let r = regular(&mut http, "");
    assert_eq!(r.failure(), "announced before the min interval");
    assert_eq!(r.bencode().int("retry in"), 10);
    // Completed and stopped always go through; stopped forgets the peer.
    assert_eq!(
        regular(&mut http, "&event=completed")
            .bencode()
            .int("interval"),
        1800
    );
    assert_eq!(
        regular(&mut http, "&event=stopped")
            .bencode()
            .int("interval"),
        1800
    );
    assert_eq!(
        regular(&mut http, "&event=started")
            .bencode()
            .int("interval"),
        1800
    );

    // UDP: a peer is its infohash, peer id and address; the tracker
    // holds it on the owner shard whichever socket it comes from.
    let c = Client::connected(t.v4);
    let udp_ih = random_hash();
    assert_eq!(c.announce(&Announce::new(udp_ih, 7302)).leechers, 1);
    let again = Client::connected(t.v4);
    again.send(&again.announce_packet(&Announce::new(udp_ih, 7302).event(0), 4));
    let r = again.recv().expect("an error packet");
    assert_eq!(be32(&r[0..4]), 3);
    assert_eq!(&r[8..], b"announced before the min interval");
    // Still stored: the refusal did not drop the peer.
    assert_eq!(c.scrape(&[udp_ih]), vec![(0, 0, 1)]);
}
