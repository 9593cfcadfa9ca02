//! SIGHUP under announce load: the new config's hook lists and tracker
//! settings are taken on every shard, no stored peer is lost, the server
//! keeps answering; a broken config is refused and the running one kept.
//! Both outcomes are counted in `/metrics`.

mod common;

use common::http::HttpClient;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn hex(hash: &[u8; 20]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The shipped config with the announce interval and the hooks (its last
/// section) replaced.
fn config(interval: &str, blacklisted: &[u8; 20]) -> String {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml")).unwrap();
    let shipped = shipped.replace(
        "announce_interval: 30m",
        &format!("announce_interval: {interval}"),
    );
    let hooks = shipped.find("\nhooks:").expect("a hooks section");
    format!(
        "{}\nhooks:\n  pre:\n    - name: torrent approval\n      options:\n        blacklist: [\"{}\"]\n  post: []\n",
        &shipped[..hooks],
        hex(blacklisted),
    )
}

fn reloads(t: &Tracker, result: &str) -> u64 {
    let text = String::from_utf8(HttpClient::connect(t.metrics).get("/metrics").body).unwrap();
    let prefix = format!("shoal_config_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .expect("the reload counter")
        .trim()
        .parse()
        .unwrap()
}

/// Whether an announce for `ih` is refused as unapproved.
fn refused(c: &Client, ih: [u8; 20], port: u16) -> bool {
    c.send(&c.announce_packet(&Announce::new(ih, port), 5));
    let r = c.recv().expect("an answer");
    be32(&r[0..4]) == 3
}

#[test]
fn sighup_under_load_keeps_every_peer_and_takes_the_new_settings() {
    let dir = std::env::temp_dir().join(format!("shoal-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    let (a, b) = (random_hash(), random_hash());
    std::fs::write(&path, config("30m", &a)).unwrap();
    let mut t = Tracker::start_with(&path, &[]);

    // 100 torrents, 5 peers each, spread over both shards.
    let c = Client::connected(t.v4);
    let torrents: Vec<[u8; 20]> = (0..100).map(|_| random_hash()).collect();
    for (i, ih) in torrents.iter().enumerate() {
        for p in 0..5 {
            let a = Announce::new(*ih, 10_000 + (i * 5 + p) as u16);
            assert_eq!(c.announce(&a).interval, 1800);
        }
    }
    let before: Vec<_> = torrents.chunks(50).flat_map(|ch| c.scrape(ch)).collect();
    assert!(before.iter().all(|&(_, _, leechers)| leechers == 5));
    assert!(refused(&c, a, 9001) && !refused(&c, b, 9002));

    // Announces keep coming from another client during the reload.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, unanswered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, answered, unanswered) = (stop.clone(), answered.clone(), unanswered.clone());
        let target = t.v4;
        std::thread::spawn(move || {
            let c = Client::connected(target);
            let ih = random_hash();
            let mut port = 20_000u16;
            while !stop.load(Ordering::Relaxed) {
                port = port.wrapping_add(1).max(20_000);
                c.send(&c.announce_packet(&Announce::new(ih, port), 6));
                match c.recv() {
                    Some(r) if be32(&r[0..4]) == 1 => answered.fetch_add(1, Ordering::Relaxed),
                    _ => unanswered.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&path, config("20m", &b)).unwrap();
    t.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.announce(&Announce::new(random_hash(), 9003)).interval != 1200 {
        assert!(Instant::now() < deadline, "the new interval was not taken");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every shard took it: each torrent (owned by one shard or the other)
    // answers with the new interval and the new list.
    for ih in &torrents {
        assert_eq!(c.announce(&Announce::new(*ih, 9004)).interval, 1200);
    }
    assert!(!refused(&c, a, 9005) && refused(&c, b, 9006));
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert!(answered.load(Ordering::Relaxed) > 100);
    assert_eq!(
        unanswered.load(Ordering::Relaxed),
        0,
        "every announce answered"
    );

    // Every stored peer is still there (plus the one each torrent got above).
    let after: Vec<_> = torrents.chunks(50).flat_map(|ch| c.scrape(ch)).collect();
    assert!(
        after.iter().all(|&(_, _, leechers)| leechers == 6),
        "{after:?}"
    );
    assert_eq!((reloads(&t, "success"), reloads(&t, "failure")), (1, 0));

    // A broken file is refused: the running settings stay.
    std::fs::write(&path, "tracker: [not, a, map\n").unwrap();
    t.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloads(&t, "failure") == 0 {
        assert!(Instant::now() < deadline, "the refusal was not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(t.is_running());
    assert_eq!(
        c.announce(&Announce::new(random_hash(), 9007)).interval,
        1200
    );
    assert!(refused(&c, b, 9008));
    std::fs::remove_dir_all(&dir).unwrap();
}
