//! The middleware API as an operator uses it: a custom binary links its
//! own hooks into the real server (in-process here) and real clients see
//! their effect over UDP; the shipped binary turns on built-in hooks from
//! the config, and refuses bad ones naming the key.

mod common;

use common::bencode::Fields;
use common::http::{announce_target, HttpClient};
use common::*;
use shoal::bittorrent::Counts;
use shoal::bittorrent::{Announce as Request, Client as Peer};
use shoal::config;
use shoal::middleware::{AnnounceContext, Hook, Refusal, ScrapeContext};
use shoal::server::Server;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Refuses odd ports, shortens the interval, refuses scrapes of 3+
/// hashes, and counts what reaches its post-hook.
struct HouseRules {
    after: Arc<AtomicU64>,
}

impl Hook for HouseRules {
    fn name(&self) -> &'static str {
        "house-rules"
    }

    fn before_announce(&mut self, ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        if ctx.announce.port % 2 == 1 {
            return Err(Refusal::new("odd ports are not welcome here"));
        }
        ctx.interval = 77;
        Ok(())
    }

    fn after_announce(&mut self, announce: &Request, _client: Peer, counts: Counts) {
        assert!(
            counts.leechers + counts.seeders >= 1
                || announce.event == shoal::bittorrent::Event::Stopped
        );
        self.after.fetch_add(1, Ordering::Relaxed);
    }

    fn wants_after_announce(&self) -> bool {
        true
    }

    fn before_scrape(&mut self, ctx: &ScrapeContext) -> Result<(), Refusal> {
        if ctx.info_hashes.len() >= 3 {
            return Err(Refusal::new("scrape at most two"));
        }
        Ok(())
    }
}

#[test]
fn hooks_refuse_change_and_observe() {
    let port = free_port();
    let config = config::from_yaml(
        "",
        &[
            format!("runtime.cores={}", test_cores()),
            format!("udp.listen=[\"127.0.0.1:{port}\"]"),
            "metrics.listen=[]".into(),
        ],
    )
    .unwrap();
    let after = Arc::new(AtomicU64::new(0));
    let counter = after.clone();
    let running = Server::new(config)
        .with_hooks(Arc::new(move |_shard| {
            vec![Box::new(HouseRules {
                after: counter.clone(),
            }) as Box<dyn Hook>]
        }))
        .start()
        .unwrap();
    let c = Client::connected(running.udp_addrs[0]);

    // Refused: an error packet with the hook's reason, and no swarm entry.
    let ih = random_hash();
    c.send(&c.announce_packet(&Announce::new(ih, 1001), 9));
    let r = c.recv().unwrap();
    assert_eq!(be32(&r[0..4]), 3);
    assert_eq!(&r[8..], b"odd ports are not welcome here");

    // Changed: the interval the hook set.
    let first = c.announce(&Announce::new(ih, 1002));
    assert_eq!(first.interval, 77);
    assert_eq!(first.leechers, 1, "the refused announce was not stored");
    c.announce(&Announce::new(ih, 1004));

    // Scrape refusal, and an allowed scrape.
    c.send(&c.scrape_packet(&[ih, ih, ih], 5));
    let r = c.recv().unwrap();
    assert_eq!(be32(&r[0..4]), 3);
    assert_eq!(&r[8..], b"scrape at most two");
    assert_eq!(c.scrape(&[ih]), vec![(0, 0, 2)]);

    running.shutdown();
    running.join().unwrap();
    assert_eq!(
        after.load(Ordering::Relaxed),
        2,
        "post-hooks ran for both answered announces"
    );
}

/// The shipped binary turns on a built-in hook from the config, and it
/// acts on UDP and HTTP announces alike.
#[test]
fn configured_hooks_act_on_both_protocols() {
    let t = Tracker::start(&[
        "hooks.pre=[{name: interval variation, options: {modify_response_probability: 1, max_increase_delta: 60}}]",
    ]);
    let ih = random_hash();
    let udp = Client::connected(t.v4).announce(&Announce::new(ih, 6001));
    assert!(
        (1801..=1860).contains(&udp.interval),
        "UDP interval {}",
        udp.interval
    );
    let mut http = HttpClient::connect(t.v4);
    let r = http.get(&announce_target(&ih, &[b'p'; 20], 6002, 5, ""));
    let v = r.bencode();
    let interval = v.int("interval");
    assert!(
        (1801..=1860).contains(&interval),
        "HTTP interval {interval}"
    );
    assert_eq!(v.int("min interval"), 900, "modify_min_interval is off");
}

/// Over many announces, interval variation only ever adds 1..=max seconds,
/// and with probability 0.5 it leaves some answers unchanged and changes
/// others (the chance that 200 announces all land on one side is 2^-199).
#[test]
fn interval_variation_stays_within_its_bounds() {
    let t = Tracker::start(&[
        "hooks.pre=[{name: interval variation, options: {modify_response_probability: 0.5, max_increase_delta: 60, modify_min_interval: true}}]",
    ]);
    let client = Client::connected(t.v4);
    let mut http = HttpClient::connect(t.v4);
    let (mut unchanged, mut changed) = (0, 0);
    for i in 0..100u16 {
        let ih = random_hash();
        let udp = client.announce(&Announce::new(ih, 7000 + i)).interval;
        let reply = http.get(&announce_target(&ih, &[b'q'; 20], 8000 + i, 5, ""));
        let v = reply.bencode();
        let (interval, min) = (v.int("interval") as u32, v.int("min interval") as u32);
        for got in [udp, interval] {
            assert!((1800..=1860).contains(&got), "interval {got}");
            if got == 1800 {
                unchanged += 1;
            } else {
                changed += 1;
            }
        }
        assert!((900..=960).contains(&min), "min interval {min}");
        assert_eq!(
            interval - 1800,
            min - 900,
            "modify_min_interval adds the same seconds to both"
        );
    }
    assert!(
        unchanged > 0 && changed > 0,
        "{unchanged} unchanged, {changed} changed"
    );
}

#[test]
fn bad_hooks_stop_the_start_naming_the_key() {
    for (set, expected) in [
        ("hooks.pre=[{name: xyz}]", "hooks.pre[0]: unknown hook \"xyz\""),
        (
            "hooks.post=[{name: interval variation, options: {modify_response_probability: 0, max_increase_delta: 5}}]",
            "hooks.post[0].options.modify_response_probability",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["--check-config", "--set", set])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{set}: {err}");
        assert!(err.contains(expected), "{set}: {err}");
    }
}

/// Records the passkeys announces carry and counts scrapes' post-hooks.
struct Passkeys {
    seen: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    scrapes: Arc<AtomicU64>,
}

impl Hook for Passkeys {
    fn name(&self) -> &'static str {
        "passkeys"
    }

    fn before_announce(&mut self, ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        let key = ctx.announce.passkey.as_deref().unwrap_or_default().to_vec();
        self.seen.lock().unwrap().push(key);
        Ok(())
    }

    fn after_scrape(&mut self, ctx: &ScrapeContext, counts: &[Counts]) {
        assert_eq!(ctx.info_hashes.len(), counts.len());
        self.scrapes.fetch_add(1, Ordering::Relaxed);
    }

    fn wants_after_scrape(&self) -> bool {
        true
    }
}

/// A hook sees the passkey of an HTTP route and of UDP URL data (BEP 41)
/// matching the same route, and post-scrape hooks run for both protocols.
#[test]
fn hooks_see_passkeys_from_http_routes_and_udp_url_data() {
    let port = free_port();
    let config = config::from_yaml(
        "",
        &[
            format!("runtime.cores={}", test_cores()),
            format!("udp.listen=[\"127.0.0.1:{port}\"]"),
            format!("http.listen=[\"127.0.0.1:{port}\"]"),
            "http.announce_routes=[\"/:passkey/announce\"]".into(),
            "http.scrape_routes=[\"/:passkey/scrape\"]".into(),
            "metrics.listen=[]".into(),
        ],
    )
    .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let scrapes = Arc::new(AtomicU64::new(0));
    let (s, n) = (seen.clone(), scrapes.clone());
    let running = Server::new(config)
        .with_hooks(Arc::new(move |_| {
            vec![Box::new(Passkeys {
                seen: s.clone(),
                scrapes: n.clone(),
            }) as Box<dyn Hook>]
        }))
        .start()
        .unwrap();
    let ih = random_hash();
    let mut http = HttpClient::connect(running.http_addrs[0]);
    let target = announce_target(&ih, &[b'p'; 20], 6101, 5, "");
    let r = http.get(&target.replacen("/announce", "/httpkey/announce", 1));
    assert_eq!(r.bencode().int("incomplete"), 1);
    let c = Client::connected(running.udp_addrs[0]);
    let mut p = c.announce_packet(&Announce::new(ih, 6102), 3);
    let url = b"/udpkey/announce?x=1";
    p.extend_from_slice(&[2, url.len() as u8]);
    p.extend_from_slice(url);
    p.push(0);
    c.send(&p);
    assert_eq!(be32(&c.recv().unwrap()[0..4]), 1);
    assert_eq!(c.scrape(&[ih]), vec![(0, 0, 2)]);
    let r = http.get(&format!(
        "/httpkey/scrape?info_hash={}",
        common::http::encode(&ih)
    ));
    assert_eq!(r.status, 200);
    running.shutdown();
    running.join().unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.contains(&b"httpkey".to_vec()), "{seen:?}");
    assert!(seen.contains(&b"udpkey".to_vec()), "{seen:?}");
    assert_eq!(scrapes.load(Ordering::Relaxed), 2);
}
