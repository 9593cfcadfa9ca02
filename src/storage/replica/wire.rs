//! Peer changes as instances exchange them through Redis: a batch is one
//! byte string, so a whole flush is one stream entry. Pure code.
//!
//! A change: flags (1), infohash (20), peer id (20), expiry in Unix
//! seconds (4), the address (4 or 16 bytes, then the port), and the twin's
//! when there is one. Everything big-endian.

use crate::bittorrent::Client;
use crate::storage::PeerUpdate;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One announcer's new state as a peer instance sees it; `update.expires`
/// is in Unix seconds here (instances' store clocks differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub update: PeerUpdate,
    /// The peer said `stopped`: remove it (and its twin).
    pub stopped: bool,
}

const SEEDER: u8 = 1;
const PAUSED: u8 = 2;
const COMPLETED: u8 = 4;
const STOPPED: u8 = 8;
const V6: u8 = 16;
const TWIN: u8 = 32;
const TWIN_V6: u8 = 64;

/// The most bytes one change takes.
pub const MAX_CHANGE_LEN: usize = 1 + 20 + 20 + 4 + 2 * 18;

fn put_client(out: &mut Vec<u8>, client: &Client) {
    match client.ip {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&client.port.to_be_bytes());
}

pub fn encode(change: &Change, out: &mut Vec<u8>) {
    let u = &change.update;
    let mut flags = 0;
    for (on, bit) in [
        (u.seeder, SEEDER),
        (u.paused, PAUSED),
        (u.completed, COMPLETED),
        (change.stopped, STOPPED),
        (u.peer.ip.is_ipv6(), V6),
        (u.twin.is_some(), TWIN),
        (u.twin.is_some_and(|t| t.ip.is_ipv6()), TWIN_V6),
    ] {
        if on {
            flags |= bit;
        }
    }
    out.push(flags);
    out.extend_from_slice(&u.info_hash);
    out.extend_from_slice(&u.peer_id);
    out.extend_from_slice(&u.expires.to_be_bytes());
    put_client(out, &u.peer);
    if let Some(twin) = &u.twin {
        put_client(out, twin);
    }
}

/// Reads changes until `bytes` ends; a cut-short or malformed tail (another
/// program's entry, say) ends the batch there.
pub fn decode(mut bytes: &[u8], out: &mut Vec<Change>) {
    while !bytes.is_empty() {
        match decode_one(bytes) {
            Some((change, len)) => {
                out.push(change);
                bytes = &bytes[len..];
            }
            None => return,
        }
    }
}

fn take<const N: usize>(bytes: &[u8], at: &mut usize) -> Option<[u8; N]> {
    let slice = bytes.get(*at..*at + N)?;
    *at += N;
    slice.try_into().ok()
}

fn take_client(bytes: &[u8], at: &mut usize, v6: bool) -> Option<Client> {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(take::<16>(bytes, at)?))
    } else {
        IpAddr::V4(Ipv4Addr::from(take::<4>(bytes, at)?))
    };
    let port = u16::from_be_bytes(take::<2>(bytes, at)?);
    Some(Client { ip, port })
}

fn decode_one(bytes: &[u8]) -> Option<(Change, usize)> {
    let mut at = 0;
    let [flags] = take::<1>(bytes, &mut at)?;
    if flags & 128 != 0 {
        return None;
    }
    let info_hash = take::<20>(bytes, &mut at)?;
    let peer_id = take::<20>(bytes, &mut at)?;
    let expires = u32::from_be_bytes(take::<4>(bytes, &mut at)?);
    let peer = take_client(bytes, &mut at, flags & V6 != 0)?;
    let twin = if flags & TWIN != 0 {
        Some(take_client(bytes, &mut at, flags & TWIN_V6 != 0)?)
    } else {
        None
    };
    let update = PeerUpdate {
        info_hash,
        peer,
        twin,
        peer_id,
        seeder: flags & SEEDER != 0,
        paused: flags & PAUSED != 0,
        completed: flags & COMPLETED != 0,
        expires,
    };
    Some((
        Change {
            update,
            stopped: flags & STOPPED != 0,
        },
        at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(ip: &str, twin: Option<&str>, flags: u8) -> Change {
        Change {
            update: PeerUpdate {
                info_hash: [flags; 20],
                peer: Client {
                    ip: ip.parse().unwrap(),
                    port: 6881,
                },
                twin: twin.map(|t| Client {
                    ip: t.parse().unwrap(),
                    port: 6881,
                }),
                peer_id: [9; 20],
                seeder: flags & 1 != 0,
                paused: flags & 2 != 0,
                completed: flags & 4 != 0,
                expires: 1_800_000_000,
            },
            stopped: flags & 8 != 0,
        }
    }

    #[test]
    fn batches_round_trip() {
        let changes: Vec<Change> = (0..16u8)
            .map(|f| match f % 3 {
                0 => change("192.0.2.1", None, f),
                1 => change("2001:db8::1", Some("192.0.2.9"), f),
                _ => change("198.51.100.2", Some("2001:db8::7"), f),
            })
            .collect();
        let mut bytes = Vec::new();
        for c in &changes {
            let before = bytes.len();
            encode(c, &mut bytes);
            assert!(bytes.len() - before <= MAX_CHANGE_LEN);
        }
        let mut back = Vec::new();
        decode(&bytes, &mut back);
        assert_eq!(back, changes);
    }

    #[test]
    fn cut_or_foreign_bytes_end_the_batch_without_panicking() {
        let mut bytes = Vec::new();
        encode(&change("192.0.2.1", None, 1), &mut bytes);
        let one = bytes.len();
        encode(&change("2001:db8::1", Some("192.0.2.9"), 2), &mut bytes);
        for cut in 0..bytes.len() {
            let mut back = Vec::new();
            decode(&bytes[..cut], &mut back);
            assert_eq!(back.len(), usize::from(cut >= one));
        }
        let mut back = Vec::new();
        decode(&[255; 100], &mut back);
        assert!(back.is_empty());
    }
}
