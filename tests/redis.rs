//! Shared swarms through a real redis-server (`storage.backend: redis`):
//! two and three instances see each other's peers and agree on counts,
//! stopped peers vanish everywhere, an instance started later loads the
//! cluster's swarms, and a Redis killed during announces and restarted
//! loses nothing from the cluster view.

mod common;

use common::redis::RedisServer;
use common::*;
use std::time::{Duration, Instant};

fn instance(redis: &RedisServer, prefix: &str) -> Tracker {
    let url = format!("storage.redis.url={}", redis.url());
    let prefix = format!("storage.redis.key_prefix={prefix}");
    Tracker::start(&[
        "storage.backend=redis",
        url.as_str(),
        prefix.as_str(),
        "storage.redis.sync_interval=100ms",
        "storage.redis.command_timeout=500ms",
        "storage.redis.connect_timeout=500ms",
    ])
}

/// Waits (up to 10 s) until `t`'s scrape of `ih` is `expected`
/// (seeders, completed, leechers).
fn await_scrape(t: &Tracker, ih: &[u8; 20], expected: (u32, u32, u32)) {
    let client = Client::connected(t.v4);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = client.scrape(&[*ih])[0];
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "scrape {got:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_instances_share_peers_counts_and_stops() {
    let redis = RedisServer::start();
    let prefix = format!("t{}", fastrand::u32(..));
    let (a, b) = (instance(&redis, &prefix), instance(&redis, &prefix));
    let ih = random_hash();

    // A leecher on A, a seeder on B.
    let on_a = Client::connected(a.v4);
    on_a.announce(&Announce::new(ih, 6001));
    await_scrape(&b, &ih, (0, 0, 1));
    let reply = Client::connected(b.v4).announce(&Announce::new(ih, 6002).seeder());
    assert_eq!(reply.peers, vec![v4_peer(6001)], "B hands out A's peer");
    assert_eq!((reply.seeders, reply.leechers), (1, 1), "cluster counts");
    await_scrape(&a, &ih, (1, 0, 1));

    // A's leecher completes: counted once, on both.
    on_a.announce(&Announce::new(ih, 6001).seeder().event(1));
    await_scrape(&a, &ih, (2, 1, 0));
    await_scrape(&b, &ih, (2, 1, 0));

    // It stops: gone everywhere.
    on_a.announce(&Announce::new(ih, 6001).seeder().event(3));
    await_scrape(&b, &ih, (1, 1, 0));
    let reply = on_a.announce(&Announce::new(ih, 6003));
    assert_eq!(reply.peers, vec![v4_peer(6002)]);

    // Far below one command per announce, even at this low rate.
    let commands = a.metric("shoal_redis_commands_total");
    assert!(a.metric("shoal_redis_up") == 1.0);
    assert!(commands > 0.0);
}

#[test]
fn a_unix_socket_url_works() {
    let redis = RedisServer::start_unix();
    assert!(redis.url().starts_with("unix://"));
    let (a, b) = (instance(&redis, "unix"), instance(&redis, "unix"));
    let ih = random_hash();
    Client::connected(a.v4).announce(&Announce::new(ih, 8001).seeder());
    await_scrape(&b, &ih, (1, 0, 0));
}

#[test]
fn a_redis_outage_loses_nothing_and_late_instances_load_the_swarms() {
    let mut redis = RedisServer::start();
    let prefix = format!("t{}", fastrand::u32(..));
    let (a, b) = (instance(&redis, &prefix), instance(&redis, &prefix));
    let ih = random_hash();
    Client::connected(a.v4).announce(&Announce::new(ih, 7001));
    await_scrape(&b, &ih, (0, 0, 1));

    // A third instance, started later, reads the cluster's swarms.
    let c = instance(&redis, &prefix);
    await_scrape(&c, &ih, (0, 0, 1));

    // Redis dies (and forgets everything); the instances keep answering
    // from memory, and keep what is announced meanwhile.
    redis.kill();
    let during = Client::connected(b.v4).announce(&Announce::new(ih, 7002).seeder());
    assert_eq!(during.peers, vec![v4_peer(7001)]);
    Client::connected(c.v4).announce(&Announce::new(ih, 7003));
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.metric("shoal_redis_errors_total") < 1.0 {
        assert!(Instant::now() < deadline, "no failed exchange counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.metric("shoal_redis_up"), 0.0);
    assert!(c.metric("shoal_redis_pending_changes") >= 1.0);
    await_scrape(&a, &ih, (0, 0, 1));

    // Back: the outage's announces reach every instance.
    redis.restart();
    for t in [&a, &b, &c] {
        await_scrape(t, &ih, (1, 0, 2));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.metric("shoal_redis_up") != 1.0 {
        assert!(Instant::now() < deadline, "never back up");
        std::thread::sleep(Duration::from_millis(50));
    }
}
