//! Bencoded tracker answers (BEP 3, 7, 23, 24, 48, 21), written straight
//! into an output buffer. Dictionary keys must be sorted, so each writer
//! emits its keys in their fixed byte order.

use crate::bittorrent::InfoHash;
use std::net::IpAddr;

/// The fixed part of an announce answer.
#[derive(Clone, Copy, Debug)]
pub struct AnnounceHead {
    pub complete: u32,
    pub incomplete: u32,
    pub interval: u32,
    pub min_interval: u32,
    /// BEP 24: the announcer's address as the tracker sees it.
    pub external_ip: Option<IpAddr>,
}

// itoa rather than `write!`: integer formatting through core::fmt was
// about 1.5% of the CPU per HTTP answer.
fn int(out: &mut Vec<u8>, key: &[u8], value: u64) {
    bytes(out, key);
    out.push(b'i');
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    out.push(b'e');
}

fn bytes(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(itoa::Buffer::new().format(value.len()).as_bytes());
    out.push(b':');
    out.extend_from_slice(value);
}

fn ip_bytes(ip: IpAddr, out: &mut Vec<u8>) {
    match ip {
        IpAddr::V4(ip) => bytes(out, &ip.octets()),
        IpAddr::V6(ip) => bytes(out, &ip.octets()),
    }
}

/// Keys before `peers`: complete, external ip, incomplete, interval,
/// min interval (sorted).
fn announce_head(out: &mut Vec<u8>, head: &AnnounceHead) {
    out.push(b'd');
    int(out, b"complete", head.complete.into());
    if let Some(ip) = head.external_ip {
        bytes(out, b"external ip");
        ip_bytes(ip, out);
    }
    int(out, b"incomplete", head.incomplete.into());
    int(out, b"interval", head.interval.into());
    int(out, b"min interval", head.min_interval.into());
}

/// Compact answer (BEP 23, 7): `peers` holds 6-byte IPv4 entries and
/// `peers6` 18-byte IPv6 entries, both always present.
pub fn announce_compact(out: &mut Vec<u8>, head: &AnnounceHead, peers4: &[u8], peers6: &[u8]) {
    announce_head(out, head);
    bytes(out, b"peers");
    bytes(out, peers4);
    bytes(out, b"peers6");
    bytes(out, peers6);
    out.push(b'e');
}

/// One peer of a dictionary answer.
pub struct DictPeer<'a> {
    pub ip: IpAddr,
    pub port: u16,
    pub peer_id: Option<&'a [u8; 20]>,
}

/// Dictionary answer (BEP 3, `compact=0`): a list of {ip, peer id, port},
/// both families in one list; `peer id` left out under `no_peer_id`.
pub fn announce_dict<'a>(
    out: &mut Vec<u8>,
    head: &AnnounceHead,
    peers: impl IntoIterator<Item = DictPeer<'a>>,
) {
    announce_head(out, head);
    bytes(out, b"peers");
    out.push(b'l');
    for peer in peers {
        out.push(b'd');
        bytes(out, b"ip");
        bytes(out, peer.ip.to_string().as_bytes());
        if let Some(id) = peer.peer_id {
            bytes(out, b"peer id");
            bytes(out, id);
        }
        int(out, b"port", peer.port.into());
        out.push(b'e');
    }
    out.push(b'e');
    out.push(b'e');
}

pub fn failure(out: &mut Vec<u8>, reason: &str) {
    out.push(b'd');
    bytes(out, b"failure reason");
    bytes(out, reason.as_bytes());
    out.push(b'e');
}

/// A failure with BEP 31's `retry in` (minutes).
pub fn failure_retry_in(out: &mut Vec<u8>, reason: &str, minutes: u32) {
    out.push(b'd');
    bytes(out, b"failure reason");
    bytes(out, reason.as_bytes());
    int(out, b"retry in", minutes.into());
    out.push(b'e');
}

/// Scrape counts of one torrent (BEP 48 with BEP 21's `downloaders`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrapeFile {
    pub complete: u32,
    pub downloaded: u32,
    pub downloaders: u32,
    pub incomplete: u32,
}

/// `files` must be sorted by infohash (bencode dictionaries are sorted);
/// duplicates are written once.
pub fn scrape(out: &mut Vec<u8>, files: &[(InfoHash, ScrapeFile)]) {
    out.extend_from_slice(b"d5:filesd");
    let mut previous: Option<&InfoHash> = None;
    for (hash, f) in files {
        if previous == Some(hash) {
            continue;
        }
        previous = Some(hash);
        scrape_file(out, hash, f);
    }
    out.extend_from_slice(b"ee");
}

/// One entry of a scrape's `files` dictionary: the key and its counts.
pub fn scrape_file(out: &mut Vec<u8>, hash: &InfoHash, f: &ScrapeFile) {
    bytes(out, hash);
    out.push(b'd');
    int(out, b"complete", f.complete.into());
    int(out, b"downloaded", f.downloaded.into());
    int(out, b"downloaders", f.downloaders.into());
    int(out, b"incomplete", f.incomplete.into());
    out.push(b'e');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(external_ip: Option<IpAddr>) -> AnnounceHead {
        AnnounceHead {
            complete: 2,
            incomplete: 3,
            interval: 1800,
            min_interval: 900,
            external_ip,
        }
    }

    #[test]
    fn compact_is_byte_exact() {
        let mut out = Vec::new();
        announce_compact(&mut out, &head(None), &[127, 0, 0, 1, 0x1a, 0xe1], &[]);
        assert_eq!(
            out,
            b"d8:completei2e10:incompletei3e8:intervali1800e12:min intervali900e5:peers6:\x7f\x00\x00\x01\x1a\xe16:peers60:e"
        );
    }

    #[test]
    fn external_ip_is_raw_bytes() {
        let mut out = Vec::new();
        announce_compact(&mut out, &head(Some("10.1.2.3".parse().unwrap())), &[], &[]);
        assert!(out.starts_with(b"d8:completei2e11:external ip4:\x0a\x01\x02\x0310:incomplete"));
        let mut out = Vec::new();
        announce_compact(&mut out, &head(Some("::1".parse().unwrap())), &[], &[]);
        let mut expected = b"d8:completei2e11:external ip16:".to_vec();
        expected.extend_from_slice(&[0; 15]);
        expected.push(1);
        assert!(out.starts_with(&expected));
    }

    #[test]
    fn dictionary_form_with_and_without_peer_ids() {
        let id = [b'A'; 20];
        let mut out = Vec::new();
        announce_dict(
            &mut out,
            &head(None),
            [
                DictPeer {
                    ip: "127.0.0.1".parse().unwrap(),
                    port: 6881,
                    peer_id: Some(&id),
                },
                DictPeer {
                    ip: "::1".parse().unwrap(),
                    port: 80,
                    peer_id: None,
                },
            ],
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "d8:completei2e10:incompletei3e8:intervali1800e12:min intervali900e5:peersl\
             d2:ip9:127.0.0.17:peer id20:AAAAAAAAAAAAAAAAAAAA4:porti6881ee\
             d2:ip3:::14:porti80eeee"
        );
    }

    #[test]
    fn failure_and_scrape_are_byte_exact() {
        let mut out = Vec::new();
        failure(&mut out, "missing info_hash");
        assert_eq!(out, b"d14:failure reason17:missing info_hashe");
        let mut out = Vec::new();
        failure_retry_in(&mut out, "slow down", 2);
        assert_eq!(out, b"d14:failure reason9:slow down8:retry ini2ee");

        let file = ScrapeFile {
            complete: 1,
            downloaded: 2,
            downloaders: 3,
            incomplete: 4,
        };
        let mut out = Vec::new();
        scrape(&mut out, &[([b'a'; 20], file), ([b'a'; 20], file)]);
        assert_eq!(
            out,
            b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei1e10:downloadedi2e11:downloadersi3e10:incompletei4eeee"
                .as_slice()
        );
        let mut out = Vec::new();
        scrape(&mut out, &[]);
        assert_eq!(out, b"d5:filesdee");
    }
}
