//! The middleware API as an operator uses it: a custom binary links its
//! own hooks into the real server (in-process here) and real clients
//! see their effect over UDP.

mod common;

use common::*;
use shoal::config;
use shoal::middleware::{AnnounceContext, Hook, Refusal, ScrapeContext};
use shoal::request::{Announce as Request, Client as Peer};
use shoal::server::Server;
use shoal::swarm::Counts;
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
                || announce.event == shoal::request::Event::Stopped
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
