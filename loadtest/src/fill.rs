//! Memory benchmark: stores exactly `torrents × peers_per_torrent` peers
//! in a tracker over UDP (one announce each, every one answered), so the
//! tracker's resident memory per stored peer can be compared.
//!
//! Peer `j` of torrent `t` announces from port `1024 + j` with a peer id
//! unique to `(t, j)`: trackers that key peers by address and those that
//! key them by peer id store the same number. `numwant` is 0, so answers
//! stay small and the fill measures storage, not sampling.

use crate::udp::{
    response_header, write_connect, AnnounceFields, AnnounceTemplate, ACTION_ANNOUNCE,
    ACTION_CONNECT, ACTION_ERROR,
};
use crate::Error;
use serde::Serialize;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct FillOptions {
    pub target: SocketAddr,
    pub torrents: usize,
    pub peers_per_torrent: usize,
    /// Fraction of each torrent's peers that announce as seeders.
    pub seeders: f64,
    /// Announces outstanding at once.
    pub inflight: usize,
    /// An unanswered announce is sent again after this long.
    pub timeout: Duration,
}

impl FillOptions {
    pub fn new(target: SocketAddr) -> Self {
        FillOptions {
            target,
            torrents: 100_000,
            peers_per_torrent: 10,
            seeders: 0.5,
            inflight: 256,
            timeout: Duration::from_millis(500),
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        if self.torrents == 0 || self.torrents > u32::MAX as usize {
            return Err(Error::Options(
                "--torrents must be between 1 and 2^32-1".into(),
            ));
        }
        if self.peers_per_torrent == 0 || self.peers_per_torrent > 60_000 {
            return Err(Error::Options(
                "--peers-per-torrent must be between 1 and 60000 (one port each)".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.seeders) {
            return Err(Error::Options("--seeders must be between 0 and 1".into()));
        }
        if !(1..=u16::MAX as usize).contains(&self.inflight) {
            return Err(Error::Options(
                "--inflight must be between 1 and 65535".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FillReport {
    pub target: String,
    pub torrents: usize,
    pub peers_per_torrent: usize,
    /// Announces the tracker answered (one per stored peer).
    pub peers_stored: u64,
    /// Announces sent again after a timeout.
    pub resent: u64,
    /// Error answers (action 3) or malformed answers.
    pub errors: u64,
    pub seconds: f64,
    pub announces_per_second: f64,
}

/// Info hash of torrent `t`: its number up front, so any tracker's
/// sharding spreads consecutive torrents.
pub fn info_hash(t: u32) -> [u8; 20] {
    let mut h = *b"\0\0\0\0shoal-fill-00000";
    h[..4].copy_from_slice(&t.wrapping_mul(0x9E37_79B9).to_be_bytes());
    h[16..20].copy_from_slice(&t.to_be_bytes());
    h
}

fn peer_id(t: u32, j: u32) -> [u8; 20] {
    let mut id = *b"-SF0001-000000000000";
    id[8..12].copy_from_slice(&t.to_be_bytes());
    id[12..16].copy_from_slice(&j.to_be_bytes());
    id
}

/// Most retries of one announce before the fill gives up.
const MAX_TRIES: u32 = 20;

struct Slot {
    peer: u64,
    /// Slot index in the low 16 bits, the slot's use count above: an
    /// answer to an earlier use of the slot (a resent announce answered
    /// twice) cannot be credited to the peer using it now.
    tid: u32,
    sent: Instant,
    tries: u32,
}

pub fn fill(o: &FillOptions) -> Result<FillReport, Error> {
    o.validate()?;
    let local: SocketAddr = if o.target.is_ipv6() {
        "[::]:0".parse().unwrap()
    } else {
        "0.0.0.0:0".parse().unwrap()
    };
    let io = |what: &'static str| move |e| Error::Io(what.into(), e);
    let socket = UdpSocket::bind(local).map_err(io("binding the fill socket"))?;
    socket
        .connect(o.target)
        .map_err(io("connecting the fill socket"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(io("setting a read timeout"))?;
    let mut connection_id = connect(&socket)?;
    let mut connected_at = Instant::now();
    let total = o.torrents as u64 * o.peers_per_torrent as u64;
    let seeders_per_torrent = (o.seeders * o.peers_per_torrent as f64).round() as u32;
    let template = AnnounceTemplate::new(0);
    let mut slots: Vec<Option<Slot>> = (0..o.inflight).map(|_| None).collect();
    let mut free: Vec<usize> = (0..o.inflight).rev().collect();
    let mut uses: Vec<u16> = vec![0; o.inflight];
    let (mut next, mut stored, mut resent, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let mut packet = [0u8; 128];
    let mut answer = [0u8; 2048];
    let started = Instant::now();

    let send = |tid: u32, peer: u64, connection_id: [u8; 8], packet: &mut [u8]| {
        let t = (peer / o.peers_per_torrent as u64) as u32;
        let j = (peer % o.peers_per_torrent as u64) as u32;
        let len = template.write(
            packet,
            &AnnounceFields {
                connection_id,
                tid,
                info_hash: &info_hash(t),
                peer_id: &peer_id(t, j),
                left: if j < seeders_per_torrent { 0 } else { 1 << 20 },
                key: peer as u32,
                port: 1024 + j as u16,
            },
        );
        // A full send buffer is a lost request: the timeout resends it.
        let _ = socket.send(&packet[..len]);
    };

    while stored < total {
        // BEP 15: a connection id is good for a minute at least.
        if connected_at.elapsed() > Duration::from_secs(50) {
            connection_id = connect(&socket)?;
            connected_at = Instant::now();
        }
        while next < total {
            let Some(slot) = free.pop() else { break };
            uses[slot] = uses[slot].wrapping_add(1);
            let tid = (uses[slot] as u32) << 16 | slot as u32;
            send(tid, next, connection_id, &mut packet);
            slots[slot] = Some(Slot {
                peer: next,
                tid,
                sent: Instant::now(),
                tries: 1,
            });
            next += 1;
        }
        match socket.recv(&mut answer) {
            Ok(n) => {
                let Some((action, tid)) = response_header(&answer[..n]) else {
                    errors += 1;
                    continue;
                };
                let slot = (tid & 0xFFFF) as usize;
                if slots.get(slot).and_then(|s| s.as_ref()).map(|s| s.tid) != Some(tid) {
                    continue; // a late answer to a resent or earlier announce
                }
                match action {
                    ACTION_ANNOUNCE if n >= 20 => {
                        slots[slot] = None;
                        free.push(slot);
                        stored += 1;
                    }
                    ACTION_ERROR => {
                        // Most likely an expired connection id: reconnect;
                        // the timeout resends the announce.
                        errors += 1;
                        connection_id = connect(&socket)?;
                        connected_at = Instant::now();
                    }
                    _ => errors += 1,
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(Error::Io("receiving".into(), e)),
        }
        let now = Instant::now();
        for s in slots.iter_mut() {
            let Some(s) = s else { continue };
            if now.duration_since(s.sent) < o.timeout {
                continue;
            }
            if s.tries >= MAX_TRIES {
                return Err(Error::Options(format!(
                    "announce {} unanswered after {MAX_TRIES} tries: is the tracker up?",
                    s.peer
                )));
            }
            s.tries += 1;
            s.sent = now;
            resent += 1;
            send(s.tid, s.peer, connection_id, &mut packet);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(FillReport {
        target: o.target.to_string(),
        torrents: o.torrents,
        peers_per_torrent: o.peers_per_torrent,
        peers_stored: stored,
        resent,
        errors,
        seconds,
        announces_per_second: stored as f64 / seconds.max(1e-9),
    })
}

/// A connection id from the tracker (retried for a few seconds).
fn connect(socket: &UdpSocket) -> Result<[u8; 8], Error> {
    let mut packet = [0u8; 16];
    let mut answer = [0u8; 64];
    let until = Instant::now() + Duration::from_secs(5);
    let tid = 0x00C0_FFEE;
    while Instant::now() < until {
        let len = write_connect(&mut packet, tid);
        let _ = socket.send(&packet[..len]);
        let wait = Instant::now() + Duration::from_millis(200);
        while Instant::now() < wait {
            let Ok(n) = socket.recv(&mut answer) else {
                continue;
            };
            if n >= 16 && response_header(&answer[..n]) == Some((ACTION_CONNECT, tid)) {
                let mut id = [0u8; 8];
                id.copy_from_slice(&answer[8..16]);
                return Ok(id);
            }
        }
    }
    Err(Error::Options(
        "the tracker did not answer a connect within 5s".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_peer_is_distinct() {
        let mut seen = std::collections::HashSet::new();
        for t in 0..50 {
            for j in 0..20 {
                assert!(seen.insert((info_hash(t), peer_id(t, j))));
            }
        }
        assert_ne!(info_hash(1)[..4], info_hash(2)[..4]);
    }

    #[test]
    fn limits_are_checked() {
        let mut o = FillOptions::new("127.0.0.1:1".parse().unwrap());
        assert!(o.validate().is_ok());
        o.peers_per_torrent = 70_000;
        assert!(o.validate().is_err());
    }
}
