//! Which address is the client: the TCP peer, or, behind trusted reverse
//! proxies, the address they report in a header such as X-Forwarded-For.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// A network: an address and a prefix length, host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    /// "10.0.0.0/8", "fd00::/8", or a bare address (a single host). Host
    /// bits are cleared, so "10.1.2.3/8" is "10.0.0.0/8"; IPv4-mapped
    /// networks are IPv4 ones ("::ffff:10.0.0.0/104" is "10.0.0.0/8").
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |why: &str| format!("invalid network {text:?}: {why}");
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| fail("not an IP address"))?;
        let max = max_prefix(network);
        let prefix = match prefix {
            None => max,
            Some(digits) => parse_prefix(digits).ok_or_else(|| fail("bad prefix length"))?,
        };
        if prefix > max {
            return Err(fail(&format!("prefix {prefix} is longer than {max}")));
        }
        Ok(Cidr::new(network, prefix))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// `prefix` must not exceed the family's width (checked by `from_str`).
    /// A network inside ::ffff:0:0/96 is stored as its IPv4 network, since
    /// addresses are compared normalized: "::ffff:10.0.0.0/104" is
    /// "10.0.0.0/8". Wider IPv6 networks ("::/0") hold no IPv4 address.
    fn new(network: IpAddr, prefix: u8) -> Cidr {
        let network = mask(network, prefix);
        match network {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Cidr {
                    network: IpAddr::V4(v4),
                    prefix: prefix - 96,
                },
                None => Cidr { network, prefix },
            },
            _ => Cidr { network, prefix },
        }
    }

    /// The network's first address (IPv4 for networks inside
    /// ::ffff:0:0/96).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the network, comparing addresses normalized: an
    /// IPv4-mapped address is its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        // Addresses of different families never compare equal.
        mask(normalize(ip), self.prefix) == self.network
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Plain decimal, at most three digits (no sign, no spaces).
fn parse_prefix(digits: &str) -> Option<u8> {
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `ip` with every bit past `prefix` cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let keep = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & keep))
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
        }
    }
}

/// IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes IPv4 (a dual-stack socket
/// reports IPv4 clients that way); anything else is unchanged.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn is_trusted(ip: IpAddr, trusted: &[Cidr]) -> bool {
    trusted.iter().any(|cidr| cidr.contains(ip))
}

/// The client's address. `peer` is the TCP peer; `header` the value of the
/// real-IP header (a comma list, each proxy appending the address it saw).
///
/// The header is believed only when `peer` is a trusted proxy. Then it is
/// walked from the right, past the trusted proxies, and the first untrusted
/// address is the client: entries left of it could be forged by the client
/// itself. If every entry is trusted, the leftmost. An unparseable entry
/// ends the walk with `peer`: nothing beyond it can be believed.
pub fn client_ip(peer: IpAddr, header: Option<&[u8]>, trusted: &[Cidr]) -> IpAddr {
    let peer = normalize(peer);
    let Some(header) = header else {
        return peer;
    };
    if !is_trusted(peer, trusted) {
        return peer; // anyone can send the header
    }
    let mut leftmost = peer;
    for entry in header.rsplit(|&b| b == b',') {
        let Some(ip) = parse_entry(entry) else {
            return peer;
        };
        if !is_trusted(ip, trusted) {
            return ip;
        }
        leftmost = ip;
    }
    leftmost
}

/// One list entry, normalized: an address with optional surrounding
/// whitespace, or an address with a port ("192.0.2.1:80", "[2001:db8::1]:80")
/// as some proxies write it.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry.trim_ascii()).ok()?;
    let ip = match text.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => text.parse::<SocketAddr>().ok()?.ip(),
    };
    Some(normalize(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn cidrs(texts: &[&str]) -> Vec<Cidr> {
        texts.iter().map(|t| cidr(t)).collect()
    }

    #[test]
    fn parse_cidrs() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(cidr("fd00::/8").to_string(), "fd00::/8");
        assert_eq!(cidr("fd12:3456::1/16").to_string(), "fd12::/16");
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("1.2.3.4/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("::/0").to_string(), "::/0");
        assert_eq!(cidr("10.0.0.0/008"), cidr("10.0.0.0/8"));
    }

    #[test]
    fn bad_cidrs_name_the_text() {
        for text in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0.0/8/8",
            "10.0.0.0/0008",
            "10.0.0.0/256",
            "10.0.0/8",
            "example.org/8",
            "",
            "/8",
            " 10.0.0.0/8",
            "[::1]/128",
        ] {
            let err = text.parse::<Cidr>().expect_err(text);
            assert!(err.contains(&format!("{text:?}")), "{err}");
        }
        assert!("10.0.0.0/33"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("longer than 32"));
        assert!("::/129"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("longer than 128"));
    }

    #[test]
    fn v4_contains() {
        let all = cidr("0.0.0.0/0");
        let ten = cidr("10.0.0.0/8");
        let host = cidr("192.0.2.1/32");
        assert!(all.contains(ip("1.2.3.4")));
        assert!(all.contains(ip("255.255.255.255")));
        assert!(!all.contains(ip("::1")));
        assert!(ten.contains(ip("10.0.0.0")));
        assert!(ten.contains(ip("10.255.255.255")));
        assert!(!ten.contains(ip("11.0.0.0")));
        assert!(!ten.contains(ip("9.255.255.255")));
        assert!(host.contains(ip("192.0.2.1")));
        assert!(!host.contains(ip("192.0.2.2")));
        assert!(cidr("172.16.0.0/12").contains(ip("172.31.255.255")));
        assert!(!cidr("172.16.0.0/12").contains(ip("172.32.0.0")));
    }

    #[test]
    fn v6_contains() {
        let all = cidr("::/0");
        let fd = cidr("fd00::/8");
        let host = cidr("2001:db8::1/128");
        assert!(all.contains(ip("2001:db8::5")));
        assert!(
            !all.contains(ip("1.2.3.4")),
            "::/0 is not every IPv4 address"
        );
        assert!(fd.contains(ip("fd12::1")));
        assert!(fd.contains(ip("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!fd.contains(ip("fe00::")));
        assert!(!fd.contains(ip("10.0.0.1")));
        assert!(host.contains(ip("2001:db8::1")));
        assert!(!host.contains(ip("2001:db8::2")));
    }

    #[test]
    fn mapped_addresses_on_both_sides() {
        // A mapped address is its IPv4 address.
        assert!(cidr("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(!cidr("10.0.0.0/8").contains(ip("::ffff:11.1.2.3")));
        assert!(cidr("0.0.0.0/0").contains(ip("::ffff:1.2.3.4")));
        // A mapped network holds the IPv4 addresses it maps.
        assert!(cidr("::ffff:10.0.0.0/104").contains(ip("10.1.2.3")));
        assert!(cidr("::ffff:10.0.0.0/104").contains(ip("::ffff:10.1.2.3")));
        assert!(!cidr("::ffff:10.0.0.0/104").contains(ip("11.1.2.3")));
        assert!(cidr("::ffff:0:0/96").contains(ip("8.8.8.8")));
        assert!(cidr("::ffff:192.0.2.1").contains(ip("192.0.2.1")));
        assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
        assert_eq!(cidr("::ffff:192.0.2.1"), cidr("192.0.2.1"));
        assert_eq!(cidr("::ffff:0:0/96").to_string(), "0.0.0.0/0");
        // Wider than the mapped range: an IPv6 network, holding no IPv4.
        assert!(!cidr("::ffff:0:0/95").contains(ip("8.8.8.8")));
        assert!(!cidr("::/0").contains(ip("::ffff:8.8.8.8")));
        // IPv4-compatible (::a.b.c.d) is not mapped.
        assert!(!cidr("10.0.0.0/8").contains(ip("::10.1.2.3")));
    }

    #[test]
    fn normalize_mapped_only() {
        assert_eq!(normalize(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(normalize(ip("1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(normalize(ip("::1.2.3.4")), ip("::1.2.3.4"));
        assert_eq!(normalize(ip("2001:db8::1")), ip("2001:db8::1"));
        assert_eq!(normalize(ip("::1")), ip("::1"));
    }

    #[test]
    fn no_header_or_no_trust_gives_the_peer() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("10.0.0.1"), None, &trusted), ip("10.0.0.1"));
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), None, &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some(b"1.2.3.4"), &[]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn spoofing_from_an_untrusted_peer() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let attacker = ip("203.0.113.66");
        for header in [
            &b"1.2.3.4"[..],
            b"10.0.0.1",
            b"1.2.3.4, 10.0.0.1",
            b"garbage",
        ] {
            assert_eq!(client_ip(attacker, Some(header), &trusted), attacker);
        }
        // Mapped form of an untrusted peer is still untrusted.
        assert_eq!(
            client_ip(ip("::ffff:203.0.113.66"), Some(b"10.0.0.9"), &trusted),
            attacker
        );
    }

    #[test]
    fn one_trusted_proxy() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let got = client_ip(ip("10.0.0.1"), Some(b"198.51.100.7"), &trusted);
        assert_eq!(got, ip("198.51.100.7"));
        // Mapped peer and mapped entry.
        let got = client_ip(
            ip("::ffff:10.0.0.1"),
            Some(b"::ffff:198.51.100.7"),
            &trusted,
        );
        assert_eq!(got, ip("198.51.100.7"));
        let got = client_ip(ip("10.0.0.1"), Some(b"2001:db8::7"), &trusted);
        assert_eq!(got, ip("2001:db8::7"));
    }

    #[test]
    fn client_forged_entries_left_of_the_real_one_are_ignored() {
        // The client sent "X-Forwarded-For: 6.6.6.6"; the proxy appended
        // the address it saw.
        let trusted = cidrs(&["10.0.0.0/8"]);
        let got = client_ip(ip("10.0.0.1"), Some(b"6.6.6.6, 198.51.100.7"), &trusted);
        assert_eq!(got, ip("198.51.100.7"));
        // Even a forged "trusted" entry on the left changes nothing.
        let got = client_ip(ip("10.0.0.1"), Some(b"10.9.9.9,198.51.100.7"), &trusted);
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn chain_of_proxies() {
        let trusted = cidrs(&["10.0.0.0/8", "fd00::/8", "192.0.2.0/24"]);
        let header = b" 6.6.6.6 ,198.51.100.7 , 192.0.2.5,\tfd00::2 ,10.0.0.3 ";
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some(header), &trusted),
            ip("198.51.100.7")
        );
        let header = b"2001:db8::9, ::ffff:10.1.1.1, fd00::1";
        assert_eq!(
            client_ip(ip("fd00::9"), Some(header), &trusted),
            ip("2001:db8::9")
        );
    }

    #[test]
    fn all_trusted_gives_the_leftmost() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let got = client_ip(
            ip("10.0.0.1"),
            Some(b"10.0.0.7, 10.0.0.8, 10.0.0.9"),
            &trusted,
        );
        assert_eq!(got, ip("10.0.0.7"));
        let got = client_ip(ip("10.0.0.1"), Some(b"::ffff:10.0.0.7"), &trusted);
        assert_eq!(got, ip("10.0.0.7"));
        let everyone = cidrs(&["0.0.0.0/0", "::/0"]);
        let got = client_ip(ip("1.1.1.1"), Some(b"2001:db8::1, 3.3.3.3"), &everyone);
        assert_eq!(got, ip("2001:db8::1"));
    }

    #[test]
    fn garbage_entries_end_the_walk_with_the_peer() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        for header in [
            &b"198.51.100.7, unknown"[..],
            b"garbage",
            b"198.51.100.7,,10.0.0.2",
            b"10.0.0.2, , 10.0.0.3",
            b"198.51.100.7,",
            b"\xff\xfe",
            b"1.2.3.4.5",
            b"[2001:db8::1]",
            b"2001:db8::1:80:x",
        ] {
            assert_eq!(client_ip(peer, Some(header), &trusted), peer, "{header:?}");
        }
        // Garbage left of the first untrusted address is never reached.
        let got = client_ip(peer, Some(b"garbage, 198.51.100.7"), &trusted);
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn empty_header_gives_the_peer() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some(b""), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some(b"   "), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn entries_with_ports() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let got = client_ip(ip("10.0.0.1"), Some(b"198.51.100.7:51413"), &trusted);
        assert_eq!(got, ip("198.51.100.7"));
        let got = client_ip(
            ip("10.0.0.1"),
            Some(b"[2001:db8::7]:51413, 10.0.0.2:80"),
            &trusted,
        );
        assert_eq!(got, ip("2001:db8::7"));
    }
}
