//! The bundled load generator against the real server: a short, bounded
//! run per protocol and family must count responses and find no errors
//! (its checkers reject anything malformed, so this also cross-checks
//! Shoal's answers under load).

mod common;

use common::*;
use shoal_loadtest::{Mix, Options, Report};
use std::time::Duration;

fn run(options: Options) -> Report {
    let options = options
        .warmup(Duration::from_millis(300))
        .duration(Duration::from_secs(2))
        .workers(1)
        .progress(false);
    shoal_loadtest::run(&options).expect("the generator runs")
}

fn assert_clean(name: &str, r: &Report) {
    assert!(r.responses > 100, "{name}: only {} responses", r.responses);
    assert_eq!(r.errors, 0, "{name}: errors {:?}", r.error_kinds);
    assert_eq!(r.timeouts, 0, "{name}: timeouts");
    assert!(r.by_action.announce > 0, "{name}: no announce answered");
    assert!(r.latency_us.p50 > 0 && r.latency_us.max >= r.latency_us.p99);
    // Requests go to a few thousand torrents: answers carry peers.
    assert!(r.peers_per_announce > 0.0, "{name}: no peers handed out");
}

#[test]
fn udp_and_http_runs_are_counted_without_errors() {
    let t = Tracker::start(&[]);
    let udp4 = run(Options::udp(t.v4).mix(Mix {
        connect: 1,
        announce: 20,
        scrape: 2,
    }));
    assert_clean("udp ipv4", &udp4);
    assert!(udp4.by_action.connect > 0 && udp4.by_action.scrape > 0);
    let udp6 = run(Options::udp(t.v6));
    assert_clean("udp ipv6", &udp6);
    let http4 = run(Options::http(t.v4).sockets(8));
    assert_clean("http ipv4", &http4);
    assert!(http4.by_action.scrape > 0);
    let http6 = run(Options::http(t.v6).sockets(4));
    assert_clean("http ipv6", &http6);
    assert_eq!(t.stop().code(), Some(0));
}

/// BEP 41 URL data (a private tracker's `/<passkey>/announce`) makes every
/// announce longer: grouped as one GSO message or sent one by one, each
/// must still reach the server as one whole announce and be answered.
#[test]
fn udp_announces_with_url_data_are_answered() {
    let t = Tracker::start(&[]);
    for gso in [true, false] {
        let mut o = Options::udp(t.v4).mix(Mix {
            connect: 1,
            announce: 50,
            scrape: 0,
        });
        o.url_data = format!("/{}/announce", "a".repeat(32));
        o.gso = gso;
        let r = run(o);
        assert_clean(&format!("udp with url data (gso {gso})"), &r);
    }
    assert_eq!(t.stop().code(), Some(0));
}
