//! From the tracker core's decisions to bytes on the wire, for both
//! protocols: the core samples peers straight into the answer (the UDP
//! datagram, or HTTP's peer lists), then the header is written around it.
//! Used by the shard's own request paths and by the owner of a forwarded
//! request alike.

use super::mesh::HttpAnnounceJob;
use super::Shard;
use crate::bittorrent::{Announce, Counts, InfoHash, PeerId, Protocol};
use crate::metrics::counters::{Action, Family, Outcome};
use crate::middleware::{Refusal, RefusalKind};
use crate::protocol::http::bencode::{self, AnnounceHead, DictPeer, ScrapeFile};
use crate::protocol::udp::{self, ScrapeCounts, Writer};
use crate::storage::{PeerSink, V4Addr, V6Addr};
use crate::tracker::{AfterAnnounce, Origin, Rejection, Room};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

/// Writes sampled peers of the announcer's family into the datagram.
struct UdpPeers<'a> {
    w: Writer<'a>,
}

impl PeerSink for UdpPeers<'_> {
    fn v4(&mut self, addrs: &[V4Addr], _: &[PeerId]) {
        self.w.put(addrs.as_flattened());
    }
    fn v6(&mut self, addrs: &[V6Addr], _: &[PeerId]) {
        self.w.put(addrs.as_flattened());
    }
}

pub(super) fn write_udp_scrape(slot: &mut [u8], transaction_id: u32, counts: &[Counts]) -> usize {
    let mut w = Writer::new(slot);
    udp::write_scrape_header(&mut w, transaction_id);
    for c in counts {
        udp::write_scrape_entry(
            &mut w,
            ScrapeCounts {
                seeders: c.seeders,
                completed: c.downloaded,
                leechers: c.leechers,
            },
        );
    }
    w.len()
}

pub(super) fn write_udp_error(slot: &mut [u8], transaction_id: u32, message: &str) -> usize {
    // Keep error answers small whatever a hook says: no amplification.
    let message = &message[..message.floor_char_boundary(200)];
    let mut w = Writer::new(slot);
    udp::write_error(&mut w, transaction_id, message);
    w.len()
}

/// Sampled peers in wire format (and their ids for dictionary answers).
#[derive(Default)]
pub(super) struct HttpPeers {
    v4: Vec<u8>,
    v6: Vec<u8>,
    ids4: Vec<[u8; 20]>,
    ids6: Vec<[u8; 20]>,
    with_ids: bool,
}

impl HttpPeers {
    fn reset(&mut self, with_ids: bool) {
        self.v4.clear();
        self.v6.clear();
        self.ids4.clear();
        self.ids6.clear();
        self.with_ids = with_ids;
    }

    fn dict_peers(&self, no_peer_id: bool) -> impl Iterator<Item = DictPeer<'_>> {
        let v4 = self
            .v4
            .chunks_exact(6)
            .enumerate()
            .map(move |(i, a)| DictPeer {
                ip: IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
                port: u16::from_be_bytes([a[4], a[5]]),
                peer_id: (!no_peer_id).then(|| &self.ids4[i]),
            });
        let v6 = self.v6.chunks_exact(18).enumerate().map(move |(i, a)| {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            DictPeer {
                ip: IpAddr::V6(Ipv6Addr::from(ip)),
                port: u16::from_be_bytes([a[16], a[17]]),
                peer_id: (!no_peer_id).then(|| &self.ids6[i]),
            }
        });
        v4.chain(v6)
    }
}

impl PeerSink for HttpPeers {
    fn v4(&mut self, addrs: &[V4Addr], peer_ids: &[PeerId]) {
        self.v4.extend_from_slice(addrs.as_flattened());
        if self.with_ids {
            self.ids4.extend_from_slice(peer_ids);
        }
    }
    fn v6(&mut self, addrs: &[V6Addr], peer_ids: &[PeerId]) {
        self.v6.extend_from_slice(addrs.as_flattened());
        if self.with_ids {
            self.ids6.extend_from_slice(peer_ids);
        }
    }
}

/// An HTTP scrape's body from its counts, files sorted by infohash.
pub(super) fn http_scrape_body(body: &mut Vec<u8>, hashes: &[InfoHash], counts: &[Counts]) {
    let mut files: Vec<(InfoHash, ScrapeFile)> = hashes
        .iter()
        .zip(counts)
        .map(|(h, c)| {
            (
                *h,
                ScrapeFile {
                    complete: c.seeders,
                    downloaded: c.downloaded,
                    downloaders: c.downloaders,
                    incomplete: c.leechers,
                },
            )
        })
        .collect();
    files.sort_unstable_by_key(|f| f.0);
    bencode::scrape(body, &files);
}

/// A hook's refusal as a bencoded failure, with BEP 31 `retry in`
/// (minutes, rounded up) when the hook said when to come back.
pub(super) fn write_refusal(body: &mut Vec<u8>, refusal: &Refusal) {
    match refusal.kind {
        RefusalKind::RetryIn { seconds } => {
            bencode::failure_retry_in(body, &refusal.reason, seconds.div_ceil(60))
        }
        _ => bencode::failure(body, &refusal.reason),
    }
}

impl Shard {
    /// Counts a UDP answer written now, and notes its latency when
    /// histograms are on (recorded by `settle_latency` after the send).
    #[inline]
    pub(super) fn udp_answered(
        &self,
        action: Action,
        from: SocketAddr,
        o: Outcome,
        received: Instant,
    ) {
        self.counters
            .response(Protocol::Udp, action, Family::of(from.ip()), o);
        if let Some(latency) = &self.latency {
            latency.mark(Protocol::Udp, action, received);
        }
    }

    /// Records the latency of the answers just sent.
    pub(super) fn settle_latency(&self) {
        if let Some(latency) = &self.latency {
            latency.settle();
        }
    }

    /// Answers a UDP announce for an infohash this shard owns into `slot`;
    /// returns the answer's length.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn answer_udp_announce(
        &self,
        from: SocketAddr,
        transaction_id: u32,
        announce: &mut Announce,
        now: u32,
        received: Instant,
        slot: &mut [u8],
        after: &mut Vec<AfterAnnounce>,
    ) -> usize {
        let origin = Origin {
            protocol: Protocol::Udp,
            source: from.ip(),
            claimed: None,
            dual: Default::default(),
        };
        let (head, body) = slot.split_at_mut(udp::ANNOUNCE_RESPONSE_HEADER_LEN);
        let mut peers = UdpPeers {
            w: Writer::new(body),
        };
        let room = Room::udp(from.is_ipv6());
        let answer = self
            .tracker
            .borrow_mut()
            .announce(origin, announce, room, now, &mut peers, after);
        match answer {
            Ok(answer) => {
                let peers_len = peers.w.len();
                udp::write_announce_header(
                    &mut Writer::new(head),
                    transaction_id,
                    answer.interval,
                    answer.counts.leechers,
                    answer.counts.seeders,
                );
                self.udp_answered(Action::Announce, from, Outcome::Ok, received);
                udp::ANNOUNCE_RESPONSE_HEADER_LEN + peers_len
            }
            Err(rejection) => {
                self.udp_answered(Action::Announce, from, Outcome::Error, received);
                write_udp_error(slot, transaction_id, rejection.reason())
            }
        }
    }

    /// Answers an HTTP announce for an infohash this shard owns into `body`.
    pub(super) fn answer_http_announce(
        &self,
        job: &mut HttpAnnounceJob,
        now: u32,
        body: &mut Vec<u8>,
        after: &mut Vec<AfterAnnounce>,
    ) {
        let mut peers = self.http.scratch.borrow_mut();
        peers.reset(!job.compact && !job.no_peer_id);
        let answer = self.tracker.borrow_mut().announce(
            job.origin,
            &mut job.announce,
            Room::HTTP,
            now,
            &mut *peers,
            after,
        );
        let answer = match answer {
            Ok(answer) => answer,
            Err(Rejection::BadRequest(reason)) => return bencode::failure(body, reason),
            Err(Rejection::Refused(refusal)) => return write_refusal(body, &refusal),
        };
        let head = AnnounceHead {
            complete: answer.counts.seeders,
            incomplete: answer.counts.leechers,
            interval: answer.interval,
            min_interval: answer.min_interval,
            external_ip: Some(answer.client.ip),
        };
        if job.compact {
            bencode::announce_compact(body, &head, &peers.v4, &peers.v6);
        } else {
            bencode::announce_dict(body, &head, peers.dict_peers(job.no_peer_id));
        }
    }
}
