//! `ip ban` (Shoal's own): requests from banned networks get nothing. The
//! networks are IPv4 and IPv6 CIDRs (or bare addresses), given inline
//! (`cidrs`) and/or in a file (`path`: one a line, `#` comments), read when
//! the hook is built: at start and on each reload (SIGHUP), off the shards.
//!
//! The check runs before a request is parsed, on the shard it arrived at:
//! a banned UDP source gets no answer at all (not even to a connect), a
//! banned HTTP client a 403 with a failure reason. IPv4-mapped IPv6
//! sources are matched as the IPv4 addresses they are.

use super::hook::{Hook, Refusal, RequestContext};
use super::options::{parse_options, read_list_file, Maker};
use crate::protocol::http::client_ip::{normalize, Cidr};
use serde::Deserialize;
use std::net::IpAddr;
use std::sync::Arc;

pub const NAME: &str = "ip ban";

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default)]
    pub cidrs: Vec<String>,
    pub path: Option<String>,
}

/// Banned networks as sorted, merged, inclusive address ranges (IPv4 ones
/// widened to `u128`): a lookup is one binary search, however many
/// networks overlap.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Banned {
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

impl Banned {
    pub fn from_networks(networks: impl IntoIterator<Item = Cidr>) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for network in networks {
            let (first, width, ranges) = match network.network() {
                IpAddr::V4(ip) => (u128::from(u32::from(ip)), 32, &mut v4),
                IpAddr::V6(ip) => (u128::from(ip), 128, &mut v6),
            };
            let host_bits = u32::from(width - network.prefix());
            // All ones in the host bits (none for a single host).
            let span = u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
            ranges.push((first, first | span));
        }
        Self {
            v4: merged(v4),
            v6: merged(v6),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match normalize(ip) {
            IpAddr::V4(ip) => in_ranges(&self.v4, u128::from(u32::from(ip))),
            IpAddr::V6(ip) => in_ranges(&self.v6, u128::from(ip)),
        }
    }

    /// How many disjoint ranges the networks make.
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// Sorted, with overlapping and adjacent ranges joined.
fn merged(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match out.last_mut() {
            Some(prev) if first <= prev.1.saturating_add(1) => {
                prev.1 = prev.1.max(last);
            }
            _ => out.push((first, last)),
        }
    }
    out
}

fn in_ranges(ranges: &[(u128, u128)], ip: u128) -> bool {
    // The last range starting at or before `ip` is the only candidate.
    let after = ranges.partition_point(|&(first, _)| first <= ip);
    after > 0 && ip <= ranges[after - 1].1
}

pub struct IpBan {
    banned: Arc<Banned>,
}

/// Reads the networks (errors name the option, the entry or the file's
/// line) and returns the maker of each shard's instance.
pub fn build(options: &serde_yaml::Value) -> Result<Maker, String> {
    let banned = Arc::new(banned(parse_options(options)?)?);
    Ok(Arc::new(move |_| {
        Box::new(IpBan {
            banned: banned.clone(),
        }) as Box<dyn Hook>
    }))
}

fn banned(options: Options) -> Result<Banned, String> {
    if options.cidrs.is_empty() && options.path.is_none() {
        return Err("cidrs, path: give at least one".into());
    }
    let mut networks = options
        .cidrs
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            entry
                .parse::<Cidr>()
                .map_err(|e| format!("cidrs[{i}]: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(path) = &options.path {
        networks.extend(read_list_file("path", path, str::parse::<Cidr>)?);
    }
    Ok(Banned::from_networks(networks))
}

impl Hook for IpBan {
    fn name(&self) -> &'static str {
        NAME
    }

    fn checks_requests(&self) -> bool {
        true
    }

    fn before_request(&mut self, ctx: &RequestContext) -> Result<(), Refusal> {
        if self.banned.contains(ctx.source) {
            Err(Refusal::forbidden("banned address"))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn banned_of(yaml: &str) -> Result<Banned, String> {
        banned(parse_options(&serde_yaml::from_str(yaml).unwrap())?)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_of_both_families() {
        let b = banned_of("{cidrs: [10.0.0.0/8, 192.0.2.7, \"2001:db8::/32\", \"::1\"]}").unwrap();
        for inside in [
            "10.0.0.0",
            "10.255.255.255",
            "192.0.2.7",
            "2001:db8:ffff::1",
            "::1",
        ] {
            assert!(b.contains(ip(inside)), "{inside}");
        }
        for outside in [
            "9.255.255.255",
            "11.0.0.0",
            "192.0.2.8",
            "2001:db9::",
            "::2",
        ] {
            assert!(!b.contains(ip(outside)), "{outside}");
        }
        assert!(b.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped is IPv4");
        assert!(!b.contains(ip("::ffff:11.1.2.3")));
    }

    #[test]
    fn whole_spaces_and_overlaps_merge() {
        let b = banned_of("{cidrs: [0.0.0.0/0, 10.0.0.0/8, \"::/0\"]}").unwrap();
        assert_eq!(b.ranges(), 2);
        assert!(b.contains(ip("255.255.255.255")) && b.contains(ip("0.0.0.0")));
        assert!(b.contains(ip("ffff::")));
        // Adjacent halves join into one range.
        let b = banned_of("{cidrs: [10.0.0.0/9, 10.128.0.0/9, 10.1.0.0/16]}").unwrap();
        assert_eq!(b, banned_of("{cidrs: [10.0.0.0/8]}").unwrap());
    }

    #[test]
    fn lookups_agree_with_a_linear_scan() {
        let mut rng = fastrand::Rng::with_seed(11);
        let networks: Vec<Cidr> = (0..200)
            .map(|_| {
                let prefix = rng.u8(8..=32);
                format!("{}/{prefix}", std::net::Ipv4Addr::from(rng.u32(..)))
                    .parse()
                    .unwrap()
            })
            .collect();
        let b = Banned::from_networks(networks.iter().cloned());
        for _ in 0..20_000 {
            let probe = IpAddr::V4(std::net::Ipv4Addr::from(rng.u32(..)));
            let linear = networks.iter().any(|n| n.contains(probe));
            assert_eq!(b.contains(probe), linear, "{probe}");
        }
    }

    #[test]
    fn files_and_errors() {
        let dir = std::env::temp_dir().join(format!("shoal-ban-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bans.txt");
        std::fs::write(&path, "# abusers\n198.51.100.0/24  # one\n\n2001:db8::1\n").unwrap();
        let b = banned_of(&format!("{{cidrs: [10.0.0.1], path: {}}}", path.display())).unwrap();
        assert!(b.contains(ip("198.51.100.200")) && b.contains(ip("2001:db8::1")));
        assert!(b.contains(ip("10.0.0.1")) && !b.contains(ip("10.0.0.2")));
        std::fs::write(&path, "10.0.0.0/8\n10.0.0.0/33\n").unwrap();
        let e = banned_of(&format!("{{path: {}}}", path.display()))
            .err()
            .unwrap();
        assert!(e.starts_with("path: ") && e.contains("line 2: "), "{e}");
        assert!(e.contains("longer than 32"), "{e}");
        std::fs::write(&path, "").unwrap();
        let empty = banned_of(&format!("{{path: {}}}", path.display())).unwrap();
        assert!(!empty.contains(ip("10.0.0.1")), "an empty file bans no one");
        std::fs::remove_dir_all(&dir).unwrap();

        let e = banned_of("{cidrs: [10.0.0.0/8, nonsense]}").err().unwrap();
        assert!(
            e.starts_with("cidrs[1]: invalid network \"nonsense\""),
            "{e}"
        );
        assert!(banned_of("{}").err().unwrap().contains("give at least one"));
        let e = banned_of("{path: /nonexistent/shoal-bans}").err().unwrap();
        assert!(e.contains("cannot read /nonexistent/shoal-bans"), "{e}");
    }
}
