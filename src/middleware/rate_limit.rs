//! `rate limit` (Shoal's own): at most `announces_per_window` announces per
//! client address per `window`, and, with `enforce_min_interval`, no
//! regular re-announce of a peer before the `min interval` its last answer
//! gave. Over either limit the client is told when to come back: HTTP a
//! failure reason with BEP 31 `retry in`, UDP an error packet.
//!
//! State is per shard and bounded: each limit keeps a fixed table of
//! `max_tracked` entries ([`Recent`]), the longest-unseen forgotten first.
//! - The per-address count runs on the shard the request arrived at,
//!   before it is parsed. IPv6 clients are counted per `ipv6_prefix`
//!   network (a host usually holds a whole /64).
//! - The min interval is checked on the shard that owns the torrent, per
//!   peer (infohash, peer id, address), so it holds exactly. `stopped` and
//!   `completed` announces are always let through; `stopped` forgets the
//!   peer.

use super::hook::{AnnounceContext, Hook, Refusal, RequestContext, RequestKind};
use super::options::{parse_options, Maker};
use super::recent::Recent;
use crate::bittorrent::Event;
use crate::protocol::http::client_ip::normalize;
use serde::Deserialize;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "rate limit";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Announces per address per window; 0 turns the count off.
    pub announces_per_window: u32,
    #[serde(with = "crate::config::duration")]
    pub window: Duration,
    pub enforce_min_interval: bool,
    /// Entries per table per shard.
    pub max_tracked: usize,
    /// IPv6 clients are counted per network of this length.
    pub ipv6_prefix: u8,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            announces_per_window: 60,
            window: Duration::from_secs(60),
            enforce_min_interval: true,
            max_tracked: 65_536,
            ipv6_prefix: 64,
        }
    }
}

/// Large enough for any tracker, small enough that a typo cannot take
/// gigabytes (16 bytes an entry, two tables per shard: 512 MiB at most).
const MAX_TRACKED: usize = 1 << 24;

impl Options {
    pub fn check(&self) -> Result<(), String> {
        let window = self.window.as_secs();
        if !(1..=u64::from(u32::MAX)).contains(&window) || self.window.subsec_nanos() != 0 {
            return Err(format!(
                "window: {} is not a whole number of seconds from 1s",
                humantime::format_duration(self.window)
            ));
        }
        if !(1..=MAX_TRACKED).contains(&self.max_tracked) {
            return Err(format!(
                "max_tracked: {} is not in 1..={MAX_TRACKED}",
                self.max_tracked
            ));
        }
        if self.ipv6_prefix > 128 {
            return Err(format!(
                "ipv6_prefix: {} is longer than 128",
                self.ipv6_prefix
            ));
        }
        if self.announces_per_window == 0 && !self.enforce_min_interval {
            return Err(
                "announces_per_window, enforce_min_interval: both off limits nothing".into(),
            );
        }
        Ok(())
    }
}

pub struct RateLimit {
    options: Options,
    /// Per address (or IPv6 network): `since` the window's start, `count`
    /// the announces in it.
    addresses: Recent,
    /// Per peer: `since` its last announce let through.
    peers: Recent,
}

pub fn build(options: &serde_yaml::Value) -> Result<Maker, String> {
    let options: Options = parse_options(options)?;
    options.check()?;
    Ok(Arc::new(move |_| {
        Box::new(RateLimit::new(options.clone())) as Box<dyn Hook>
    }))
}

impl RateLimit {
    pub fn new(options: Options) -> Self {
        let tables = |on: bool| Recent::new(if on { options.max_tracked } else { 1 });
        Self {
            addresses: tables(options.announces_per_window > 0),
            peers: tables(options.enforce_min_interval),
            options,
        }
    }

    /// The address announces are counted under.
    fn counted_as(&self, ip: IpAddr) -> IpAddr {
        match normalize(ip) {
            IpAddr::V6(v6) => {
                let keep = u128::MAX
                    .checked_shl(128 - u32::from(self.options.ipv6_prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
            }
            v4 => v4,
        }
    }

    fn count_announce(&mut self, source: IpAddr, now: u32) -> Result<(), Refusal> {
        let limit = self.options.announces_per_window;
        let window = self.options.window.as_secs() as u32;
        let (entry, new) = self.addresses.entry(self.counted_as(source));
        let elapsed = now.saturating_sub(entry.since);
        if new || elapsed >= window {
            entry.since = now;
            entry.count = 0;
        }
        if entry.count >= limit {
            let wait = window - now.saturating_sub(entry.since);
            return Err(Refusal::retry_in(
                "too many announces from your address",
                wait,
            ));
        }
        entry.count += 1;
        Ok(())
    }

    fn check_min_interval(&mut self, ctx: &AnnounceContext) -> Result<(), Refusal> {
        let peer = (
            ctx.announce.info_hash,
            ctx.announce.peer_id,
            normalize(ctx.client.ip),
        );
        match ctx.announce.event {
            Event::Stopped => {
                self.peers.remove(peer);
                return Ok(());
            }
            Event::Completed => {
                self.peers.entry(peer).0.since = ctx.now;
                return Ok(());
            }
            _ => {}
        }
        let (entry, new) = self.peers.entry(peer);
        let elapsed = ctx.now.saturating_sub(entry.since);
        if !new && elapsed < ctx.min_interval {
            return Err(Refusal::retry_in(
                "announced before the min interval",
                ctx.min_interval - elapsed,
            ));
        }
        entry.since = ctx.now;
        Ok(())
    }
}

impl Hook for RateLimit {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Keeps the counts when only the limits change; new table sizes
    /// start the tables afresh.
    fn reload(&mut self, options: &serde_yaml::Value) -> bool {
        let Ok(options) = parse_options::<Options>(options) else {
            return false;
        };
        if options.check().is_err() {
            return false;
        }
        if options.max_tracked != self.options.max_tracked {
            *self = RateLimit::new(options);
        } else {
            self.options = options;
        }
        true
    }

    fn checks_requests(&self) -> bool {
        self.options.announces_per_window > 0
    }

    fn before_request(&mut self, ctx: &RequestContext) -> Result<(), Refusal> {
        if ctx.kind == RequestKind::Announce && self.options.announces_per_window > 0 {
            self.count_announce(ctx.source, ctx.now)
        } else {
            Ok(())
        }
    }

    fn before_announce(&mut self, ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        if self.options.enforce_min_interval {
            self.check_min_interval(ctx)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bittorrent::{Announce, Client, Protocol};
    use crate::middleware::RefusalKind;

    fn limiter(yaml: &str) -> Result<RateLimit, String> {
        let options: Options = parse_options(&serde_yaml::from_str(yaml).unwrap())?;
        options.check()?;
        Ok(RateLimit::new(options))
    }

    fn request(source: &str, now: u32) -> RequestContext {
        RequestContext {
            protocol: Protocol::Udp,
            source: source.parse().unwrap(),
            kind: RequestKind::Announce,
            now,
        }
    }

    fn retry(result: Result<(), Refusal>) -> Option<u32> {
        match result {
            Ok(()) => None,
            Err(Refusal {
                kind: RefusalKind::RetryIn { seconds },
                ..
            }) => Some(seconds),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn counts_announces_per_address_per_window() {
        let mut rl = limiter("{announces_per_window: 3, window: 10s}").unwrap();
        for now in [100, 101, 102] {
            assert_eq!(retry(rl.before_request(&request("192.0.2.1", now))), None);
        }
        assert_eq!(
            retry(rl.before_request(&request("192.0.2.1", 104))),
            Some(6)
        );
        assert_eq!(
            retry(rl.before_request(&request("::ffff:192.0.2.1", 109))),
            Some(1),
            "IPv4-mapped counts as IPv4"
        );
        assert_eq!(retry(rl.before_request(&request("192.0.2.2", 104))), None);
        assert_eq!(retry(rl.before_request(&request("192.0.2.1", 110))), None);
        // Connects and scrapes are not counted.
        let mut connect = request("192.0.2.1", 110);
        connect.kind = RequestKind::Connect;
        for _ in 0..10 {
            assert_eq!(retry(rl.before_request(&connect)), None);
        }
    }

    #[test]
    fn ipv6_is_counted_per_network() {
        let mut rl = limiter("{announces_per_window: 1}").unwrap();
        assert_eq!(retry(rl.before_request(&request("2001:db8::1", 5))), None);
        assert!(retry(rl.before_request(&request("2001:db8::ffff", 5))).is_some());
        assert_eq!(
            retry(rl.before_request(&request("2001:db8:0:1::1", 5))),
            None
        );
        let mut rl = limiter("{announces_per_window: 1, ipv6_prefix: 128}").unwrap();
        assert_eq!(retry(rl.before_request(&request("2001:db8::1", 5))), None);
        assert_eq!(retry(rl.before_request(&request("2001:db8::2", 5))), None);
    }

    fn announce(event: Event) -> Announce {
        Announce {
            info_hash: [1; 20],
            peer_id: [2; 20],
            left: 1,
            event,
            port: 6881,
            ..Default::default()
        }
    }

    fn min_interval(rl: &mut RateLimit, event: Event, ip: &str, now: u32) -> Option<u32> {
        let mut a = announce(event);
        let mut ctx = AnnounceContext {
            protocol: Protocol::Http,
            client: Client {
                ip: ip.parse().unwrap(),
                port: 6881,
            },
            shard: 0,
            announce: &mut a,
            interval: 1800,
            min_interval: 900,
            now,
        };
        retry(rl.before_announce(&mut ctx))
    }

    #[test]
    fn enforces_min_interval_per_peer() {
        let mut rl = limiter("{}").unwrap();
        let ip = "192.0.2.1";
        assert_eq!(min_interval(&mut rl, Event::Started, ip, 1000), None);
        assert_eq!(min_interval(&mut rl, Event::None, ip, 1100), Some(800));
        assert_eq!(
            min_interval(&mut rl, Event::None, "192.0.2.9", 1100),
            None,
            "another address is another peer"
        );
        assert_eq!(min_interval(&mut rl, Event::None, ip, 1900), None);
        assert_eq!(min_interval(&mut rl, Event::Completed, ip, 1901), None);
        assert_eq!(min_interval(&mut rl, Event::None, ip, 1902), Some(899));
        assert_eq!(min_interval(&mut rl, Event::Stopped, ip, 1903), None);
        assert_eq!(
            min_interval(&mut rl, Event::Started, ip, 1904),
            None,
            "stopped forgets the peer"
        );
        let mut off = limiter("{enforce_min_interval: false}").unwrap();
        assert_eq!(min_interval(&mut off, Event::None, ip, 1), None);
        assert_eq!(min_interval(&mut off, Event::None, ip, 2), None);
    }

    #[test]
    fn bad_options_are_named() {
        let e = |yaml| limiter(yaml).err().unwrap();
        assert!(e("{window: 0s}").starts_with("window:"));
        assert!(e("{window: 1500ms}").starts_with("window:"));
        assert!(e("{max_tracked: 0}").starts_with("max_tracked:"));
        assert!(e("{ipv6_prefix: 129}").starts_with("ipv6_prefix:"));
        assert!(e("{announces_per_window: 0, enforce_min_interval: false}").contains("both off"));
        assert!(e("{announces_per_window: -1}").starts_with("announces_per_window:"));
        assert!(e("{typo: 1}").contains("typo"));
    }

    #[test]
    fn reload_keeps_counts_unless_the_size_changes() {
        let mut rl = limiter("{announces_per_window: 1}").unwrap();
        assert_eq!(retry(rl.before_request(&request("192.0.2.1", 5))), None);
        let same_size = serde_yaml::from_str("{announces_per_window: 1, window: 2m}").unwrap();
        assert!(rl.reload(&same_size));
        assert_eq!(
            retry(rl.before_request(&request("192.0.2.1", 6))),
            Some(119)
        );
        let resized = serde_yaml::from_str("{announces_per_window: 1, max_tracked: 8}").unwrap();
        assert!(rl.reload(&resized));
        assert_eq!(retry(rl.before_request(&request("192.0.2.1", 7))), None);
        assert!(!rl.reload(&serde_yaml::from_str("{window: 0s}").unwrap()));
    }
}
