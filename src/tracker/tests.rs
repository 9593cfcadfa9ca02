//! The tracker core without sockets: what the UDP and HTTP paths both get.

use super::*;
use crate::bittorrent::{Announce, Event, PeerId};
use crate::middleware::{Hook, Link, Stage};
use crate::storage::memory::{wire_v4, MemoryStore};
use crate::storage::{PeerCount, V4Addr, V6Addr};
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Default)]
struct Collect {
    v4: Vec<V4Addr>,
    v6: Vec<V6Addr>,
    ids: Vec<PeerId>,
}

impl PeerSink for Collect {
    fn v4(&mut self, addrs: &[V4Addr], peer_ids: &[PeerId]) {
        self.v4.extend_from_slice(addrs);
        self.ids.extend_from_slice(peer_ids);
    }
    fn v6(&mut self, addrs: &[V6Addr], peer_ids: &[PeerId]) {
        self.v6.extend_from_slice(addrs);
        self.ids.extend_from_slice(peer_ids);
    }
}

fn settings() -> Settings {
    Settings {
        interval: 1800,
        min_interval: 900,
        default_numwant: 50,
        max_numwant: 200,
        peer_lifetime: 2700,
        max_scrape: 74,
        allow_ip_spoofing: false,
        dual_stack: false,
        prefer_subnet: None,
    }
}

fn tracker_with(settings: Settings, links: Vec<Link>) -> Tracker<MemoryStore> {
    Tracker::new(
        0,
        settings,
        MemoryStore::default(),
        Chain::new(links),
        fastrand::Rng::with_seed(1),
    )
}

fn tracker() -> Tracker<MemoryStore> {
    tracker_with(settings(), Vec::new())
}

fn announce(ih: u8, left: u64, event: Event) -> Announce {
    Announce {
        info_hash: [ih; 20],
        peer_id: [7; 20],
        left,
        event,
        port: 6881,
        ..Default::default()
    }
}

struct Call {
    protocol: Protocol,
    source: &'static str,
    announce: Announce,
    claimed: Option<&'static str>,
    dual: Dual,
    now: u32,
}

fn call(source: &'static str, announce: Announce) -> Call {
    Call {
        protocol: Protocol::Http,
        source,
        announce,
        claimed: None,
        dual: Dual::default(),
        now: 0,
    }
}

impl Call {
    fn udp(mut self) -> Self {
        self.protocol = Protocol::Udp;
        self
    }

    fn run(self, t: &mut Tracker<MemoryStore>) -> (Result<AnnounceAnswer, Rejection>, Collect) {
        let source: IpAddr = self.source.parse().unwrap();
        let room = match self.protocol {
            Protocol::Http => Room::HTTP,
            Protocol::Udp => Room::udp(source.is_ipv6()),
        };
        let origin = Origin {
            protocol: self.protocol,
            source,
            claimed: self.claimed.map(|c| c.parse().unwrap()),
            dual: self.dual,
        };
        let mut sink = Collect::default();
        let mut announce = self.announce;
        let answer = t.announce(
            origin,
            &mut announce,
            room,
            self.now,
            &mut sink,
            &mut Vec::new(),
        );
        (answer, sink)
    }

    fn ok(self, t: &mut Tracker<MemoryStore>) -> (AnnounceAnswer, Collect) {
        let (answer, sink) = self.run(t);
        (answer.expect("answered"), sink)
    }
}

/// `n` leechers (or seeders) of torrent `ih` on 10.0.0.x, port 1000 + x.
fn fill(t: &mut Tracker<MemoryStore>, ih: u8, n: u8, left: u64, v6: bool) {
    for x in 1..=n {
        let mut a = announce(ih, left, Event::Started);
        a.port = 1000 + x as u16;
        a.numwant = Some(0);
        call(if v6 { "2001:db8::1" } else { "10.0.0.1" }, a).ok(t);
    }
}

#[test]
fn counts_include_the_announcer_and_its_list_does_not() {
    let mut t = tracker();
    let (a, peers) = call("10.0.0.1", announce(1, 10, Event::Started)).ok(&mut t);
    assert_eq!((a.counts.seeders, a.counts.leechers), (0, 1));
    assert!(peers.v4.is_empty());
    let (a, peers) = call("10.0.0.2", announce(1, 10, Event::Started)).ok(&mut t);
    assert_eq!((a.counts.seeders, a.counts.leechers), (0, 2));
    assert_eq!(peers.v4, vec![wire_v4("10.0.0.1".parse().unwrap(), 6881)]);
    assert_eq!(peers.ids, vec![[7; 20]]);
    assert_eq!((a.interval, a.min_interval), (1800, 900));
    assert_eq!(a.client.ip, "10.0.0.2".parse::<IpAddr>().unwrap());
}

#[test]
fn seeders_get_leechers_only_and_http_serves_both_families() {
    let mut t = tracker();
    call("10.0.0.1", announce(1, 0, Event::None)).ok(&mut t);
    call("10.0.0.2", announce(1, 5, Event::None)).ok(&mut t);
    call("2001:db8::1", announce(1, 5, Event::None)).ok(&mut t);
    let (a, peers) = call("10.0.0.3", announce(1, 0, Event::None)).ok(&mut t);
    assert_eq!((a.counts.seeders, a.counts.leechers), (2, 2));
    assert_eq!(peers.v4, vec![wire_v4("10.0.0.2".parse().unwrap(), 6881)]);
    assert_eq!(peers.v6.len(), 1);
    let (_, peers) = call("2001:db8::1", announce(1, 5, Event::None)).ok(&mut t);
    assert_eq!((peers.v4.len(), peers.v6.len()), (3, 0));
    // UDP answers carry the packet's family only.
    let (_, peers) = call("10.0.0.9", announce(1, 5, Event::None))
        .udp()
        .ok(&mut t);
    assert_eq!((peers.v4.len(), peers.v6.len()), (3, 0));
}

#[test]
fn stopped_removes_and_gets_nothing() {
    let mut t = tracker();
    call("10.0.0.1", announce(1, 5, Event::Started)).ok(&mut t);
    call("10.0.0.2", announce(1, 5, Event::Started)).ok(&mut t);
    let (a, peers) = call("10.0.0.2", announce(1, 5, Event::Stopped)).ok(&mut t);
    assert_eq!((a.counts.seeders, a.counts.leechers), (0, 1));
    assert!(peers.v4.is_empty());
    call("10.0.0.1", announce(1, 5, Event::Stopped)).ok(&mut t);
    assert_eq!(t.totals().torrents, 0);
    // A stop for an unknown torrent creates nothing.
    call("10.0.0.1", announce(9, 5, Event::Stopped)).ok(&mut t);
    assert_eq!(t.totals().torrents, 0);
}

#[test]
fn completed_is_counted_once_per_transition() {
    let mut t = tracker();
    call("10.0.0.1", announce(1, 5, Event::Started)).ok(&mut t);
    call("10.0.0.1", announce(1, 0, Event::Completed)).ok(&mut t);
    call("10.0.0.1", announce(1, 0, Event::Completed)).ok(&mut t);
    let c = t.scrape(&[1; 20]);
    assert_eq!((c.seeders, c.leechers, c.downloaded), (1, 0, 1));
    // `completed` with bytes left is no completion.
    call("10.0.0.2", announce(1, 5, Event::Started)).ok(&mut t);
    for _ in 0..3 {
        call("10.0.0.2", announce(1, 5, Event::Completed)).ok(&mut t);
    }
    assert_eq!(t.scrape(&[1; 20]).downloaded, 1);
    // The torrent leaves with its last peer.
    call("10.0.0.1", announce(1, 0, Event::Stopped)).ok(&mut t);
    call("10.0.0.2", announce(1, 0, Event::Stopped)).ok(&mut t);
    assert_eq!(t.totals().torrents, 0);
}

#[test]
fn paused_peers_are_leechers_but_not_downloaders() {
    let mut t = tracker();
    call("10.0.0.1", announce(1, 5, Event::Paused)).ok(&mut t);
    call("10.0.0.2", announce(1, 5, Event::None)).ok(&mut t);
    let c = t.scrape(&[1; 20]);
    assert_eq!((c.leechers, c.downloaders), (2, 1));
    assert_eq!(t.scrape(&[9; 20]), Counts::default());
}

#[test]
fn numwant_is_the_default_the_clamp_and_the_room() {
    let mut t = tracker_with(
        Settings {
            default_numwant: 3,
            max_numwant: 5,
            ..settings()
        },
        Vec::new(),
    );
    fill(&mut t, 1, 10, 5, false);
    let with = |n: Option<u32>| {
        let mut a = announce(1, 5, Event::None);
        a.numwant = n;
        a
    };
    let got = |t: &mut Tracker<MemoryStore>, n| call("10.0.0.9", with(n)).udp().ok(t).1.v4.len();
    assert_eq!(got(&mut t, None), 3, "default");
    assert_eq!(got(&mut t, Some(2)), 2);
    assert_eq!(got(&mut t, Some(50)), 5, "clamped to max_numwant");
    assert_eq!(got(&mut t, Some(0)), 0);

    // The datagram's room caps it: 242 IPv4 peers, 67 IPv6 peers.
    let mut t = tracker_with(
        Settings {
            max_numwant: 1000,
            ..settings()
        },
        Vec::new(),
    );
    for x in 0..300u16 {
        for source in ["10.0.0.1", "2001:db8::1"] {
            let mut a = announce(2, 5, Event::None);
            a.port = x + 1;
            a.numwant = Some(0);
            call(source, a).ok(&mut t);
        }
    }
    let mut a = announce(2, 5, Event::None);
    a.numwant = Some(1000);
    let (_, v4) = call("10.0.0.9", a.clone()).udp().ok(&mut t);
    assert_eq!(v4.v4.len(), 242);
    let (_, v6) = call("2001:db8::9", a.clone()).udp().ok(&mut t);
    assert_eq!((v6.v4.len(), v6.v6.len()), (0, 67));
    // HTTP: numwant is the total over both lists, own family first.
    a.numwant = Some(350);
    let (_, both) = call("10.0.0.9", a).ok(&mut t);
    assert_eq!((both.v4.len(), both.v6.len()), (300, 50));
}

#[test]
fn a_claimed_address_counts_only_with_spoofing_allowed() {
    let mut claim = call("10.0.0.1", announce(1, 5, Event::None));
    claim.claimed = Some("::ffff:192.0.2.7");
    let (a, _) = claim.ok(&mut tracker());
    assert_eq!(a.client.ip, "10.0.0.1".parse::<IpAddr>().unwrap());
    let mut t = tracker_with(
        Settings {
            allow_ip_spoofing: true,
            ..settings()
        },
        Vec::new(),
    );
    let mut claim = call("10.0.0.1", announce(1, 5, Event::None));
    claim.claimed = Some("::ffff:192.0.2.7");
    let (a, _) = claim.ok(&mut t);
    // Stored (and reported) as the plain IPv4 address it maps.
    assert_eq!(a.client.ip, "192.0.2.7".parse::<IpAddr>().unwrap());
    assert_eq!(t.totals().v4.leechers, 1);
}

/// Records what it saw; refuses port 13; moves the interval, the address
/// and (in vain) the infohash.
#[derive(Default)]
struct Probe {
    seen: Rc<RefCell<Vec<String>>>,
}

impl Hook for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn start(&mut self, shard: usize) {
        self.seen.borrow_mut().push(format!("start {shard}"));
    }
    fn stop(&mut self) {
        self.seen.borrow_mut().push("stop".into());
    }
    fn before_announce(&mut self, ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        self.seen.borrow_mut().push(format!(
            "before {:?} {}",
            ctx.protocol,
            String::from_utf8_lossy(ctx.announce.passkey.as_deref().unwrap_or(b"-"))
        ));
        if ctx.announce.port == 13 {
            return Err(Refusal::new("unlucky"));
        }
        ctx.interval = 60;
        ctx.min_interval = 30;
        ctx.client.ip = "192.0.2.1".parse().unwrap();
        ctx.announce.info_hash = [0xee; 20];
        Ok(())
    }
    fn after_announce(&mut self, announce: &Announce, client: Client, counts: Counts) {
        self.seen.borrow_mut().push(format!(
            "after {} {} {}",
            announce.info_hash[0], client.ip, counts.leechers
        ));
    }
    fn wants_after_announce(&self) -> bool {
        true
    }
    fn before_scrape(&mut self, ctx: &ScrapeContext) -> Result<(), Refusal> {
        if ctx.info_hashes.len() == 2 {
            return Err(Refusal::new("not two"));
        }
        Ok(())
    }
}

fn probed(stage: Stage) -> (Tracker<MemoryStore>, Rc<RefCell<Vec<String>>>) {
    let probe = Probe::default();
    let seen = probe.seen.clone();
    let link = Link {
        hook: Box::new(probe),
        stage,
        options: serde_yaml::Value::Null,
    };
    (tracker_with(settings(), vec![link]), seen)
}

#[test]
fn hooks_refuse_change_and_observe() {
    let (mut t, seen) = probed(Stage::Both);
    let mut refused = announce(1, 5, Event::None);
    refused.port = 13;
    let (answer, _) = call("10.0.0.1", refused).run(&mut t);
    assert_eq!(answer, Err(Rejection::Refused(Refusal::new("unlucky"))));
    assert_eq!(t.totals().torrents, 0, "a refused announce is not stored");

    let mut keyed = announce(1, 5, Event::None);
    keyed.passkey = Some(b"KEY"[..].into());
    let origin = Origin {
        protocol: Protocol::Udp,
        source: "10.0.0.1".parse().unwrap(),
        claimed: None,
        dual: Default::default(),
    };
    let mut after = Vec::new();
    let a = t
        .announce(
            origin,
            &mut keyed,
            Room::udp(false),
            0,
            &mut Collect::default(),
            &mut after,
        )
        .unwrap();
    assert_eq!((a.interval, a.min_interval), (60, 30));
    assert_eq!(a.client.ip, "192.0.2.1".parse::<IpAddr>().unwrap());
    assert_eq!(
        t.scrape(&[1; 20]).leechers,
        1,
        "the infohash change was undone"
    );
    assert_eq!(t.scrape(&[0xee; 20]).leechers, 0);
    assert_eq!(after.len(), 1);
    t.run_after_hooks(&mut after);
    assert!(after.is_empty());
    t.stop();
    assert_eq!(
        *seen.borrow(),
        [
            "start 0",
            "before Http -",
            "before Udp KEY",
            "after 1 192.0.2.1 1",
            "stop"
        ]
    );
}

#[test]
fn stages_decide_which_half_of_a_hook_runs() {
    let (mut t, seen) = probed(Stage::Pre);
    let mut after = Vec::new();
    let origin = Origin {
        protocol: Protocol::Http,
        source: "10.0.0.1".parse().unwrap(),
        claimed: None,
        dual: Default::default(),
    };
    t.announce(
        origin,
        &mut announce(1, 5, Event::None),
        Room::HTTP,
        0,
        &mut Collect::default(),
        &mut after,
    )
    .unwrap();
    assert!(after.is_empty(), "no post-hook wants the announce");
    assert_eq!(seen.borrow().len(), 2, "{:?}", seen.borrow());

    let (mut t, seen) = probed(Stage::Post);
    let a = t
        .announce(
            origin,
            &mut announce(1, 5, Event::None),
            Room::HTTP,
            0,
            &mut Collect::default(),
            &mut after,
        )
        .unwrap();
    assert_eq!(a.interval, 1800, "the pre half did not run");
    t.run_after_hooks(&mut after);
    assert_eq!(*seen.borrow(), ["start 0", "after 1 10.0.0.1 1"]);
}

#[test]
fn scrapes_are_checked_before_their_counts() {
    let (mut t, _) = probed(Stage::Both);
    let check = |t: &mut Tracker<MemoryStore>, n: usize| {
        let hashes = vec![[1u8; 20]; n];
        t.check_scrape(&ScrapeRequest {
            protocol: Protocol::Udp,
            client: Client {
                ip: "10.0.0.1".parse().unwrap(),
                port: 1,
            },
            info_hashes: &hashes,
            passkey: None,
        })
    };
    assert!(matches!(check(&mut t, 0), Err(Rejection::BadRequest(_))));
    assert_eq!(check(&mut t, 1), Ok(()));
    assert_eq!(
        check(&mut t, 2),
        Err(Rejection::Refused(Refusal::new("not two")))
    );
    assert_eq!(check(&mut t, 74), Ok(()));
    assert_eq!(
        check(&mut t, 75).map_err(|r| r.reason().to_owned()),
        Err("too many info hashes in one scrape".into())
    );
}

#[test]
fn totals_follow_announces_stops_and_expiry() {
    let mut t = tracker_with(
        Settings {
            peer_lifetime: 100,
            ..settings()
        },
        Vec::new(),
    );
    call("10.0.0.1", announce(1, 5, Event::Started)).ok(&mut t);
    call("10.0.0.2", announce(1, 0, Event::Started)).ok(&mut t);
    let mut later = call("::1", announce(2, 5, Event::Started));
    later.now = 100;
    later.ok(&mut t);
    let totals = t.totals();
    assert_eq!(totals.torrents, 2);
    let one_each = PeerCount {
        seeders: 1,
        leechers: 1,
    };
    assert_eq!(totals.v4, one_each);
    assert_eq!(totals.v6.leechers, 1);
    // A leecher becoming a seeder moves between the two.
    call("10.0.0.1", announce(1, 0, Event::Completed)).ok(&mut t);
    assert_eq!(t.totals().v4.seeders, 2);
    call("10.0.0.2", announce(1, 0, Event::Stopped)).ok(&mut t);
    assert_eq!(t.totals().v4.seeders, 1);
    // Peers expire at announce time + peer_lifetime.
    assert_eq!(t.expire(150).peers, 1);
    let totals = t.totals();
    assert_eq!(
        (totals.torrents, totals.v4, totals.v6.leechers),
        (1, PeerCount::default(), 1)
    );
    assert_eq!(t.expire(250).torrents, 1);
    assert_eq!(t.totals(), SwarmTotals::default());
}

#[test]
fn a_dual_stacked_peer_is_one_peer_in_both_families() {
    let dual = Dual {
        ipv4: None,
        ipv6: Some("2001:db8::7".parse().unwrap()),
    };
    let mut t = tracker_with(
        Settings {
            dual_stack: true,
            ..settings()
        },
        Vec::new(),
    );
    let mut both = call("10.0.0.1", announce(1, 5, Event::Started));
    both.dual = dual;
    let (a, _) = both.ok(&mut t);
    assert_eq!(a.counts.leechers, 1, "counted once");
    let (a, peers) = call("10.0.0.2", announce(1, 0, Event::None)).ok(&mut t);
    assert_eq!((a.counts.seeders, a.counts.leechers), (1, 1));
    assert_eq!(
        (peers.v4.len(), peers.v6.len()),
        (1, 1),
        "in peers and peers6"
    );
    assert_eq!(t.scrape(&[1; 20]).leechers, 1);
    // It never gets itself back through its other address.
    let mut again = call("10.0.0.1", announce(1, 5, Event::None));
    again.dual = dual;
    let (_, peers) = again.ok(&mut t);
    assert_eq!((peers.v4.len(), peers.v6.len()), (1, 0));
    // A stop removes both addresses.
    let mut stop = call("10.0.0.1", announce(1, 5, Event::Stopped));
    stop.dual = dual;
    let (a, _) = stop.ok(&mut t);
    assert_eq!((a.counts.seeders, a.counts.leechers), (1, 0));
    assert_eq!(t.totals().v6.leechers, 0);

    // Without http.dual_stack the named address is not believed.
    let mut t = tracker();
    let mut both = call("10.0.0.1", announce(1, 5, Event::Started));
    both.dual = dual;
    both.ok(&mut t);
    assert_eq!(t.totals().v6, PeerCount::default());
}
