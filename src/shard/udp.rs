//! The UDP request path of a shard: batched reads, parse, pre-hooks,
//! swarm, batched writes, post-hooks. Requests for another shard's
//! infohashes travel over the mesh; the owner answers them itself.

use super::forward::ScrapeReplyTo;
use super::mesh::Forward;
use super::{Clock, Shard};
use crate::metrics::counters::{Action, Family, Outcome, UdpDrop};
use crate::middleware::{AnnounceContext, Protocol, ScrapeContext};
use crate::net::mmsg::{RecvBatch, SendBatch, Sent};
use crate::protocol::udp::{self, ParseError, Request, ScrapeCounts, Writer};
use crate::request::{Announce, Client, InfoHash};
use crate::swarm::peer_list::PeerMeta;
use crate::swarm::{Counts, PeerSink, V4Addr, V6Addr, Want};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One of the shard's sockets, one per `udp.listen` address.
pub(crate) struct Endpoint {
    socket: glommio::net::UdpSocket,
    fd: RawFd,
}

impl Endpoint {
    pub fn new(socket: socket2::Socket) -> Self {
        let fd = socket.into_raw_fd();
        // SAFETY: `fd` is an open UDP socket whose ownership we just took
        // from `socket`; glommio's socket now owns and closes it.
        let socket = unsafe { glommio::net::UdpSocket::from_raw_fd(fd) };
        Self { socket, fd }
    }
}

/// A post-hook's view of an announce whose answer is on its way.
pub(crate) struct AfterAnnounce {
    pub announce: Announce,
    pub client: Client,
    pub counts: Counts,
}

/// Reads and answers datagrams on one socket until the shard stops.
pub(crate) async fn serve_socket(shard: Rc<Shard>, endpoint: usize) {
    let fd = shard.udp[endpoint].fd;
    let mut incoming = RecvBatch::new(shard.settings.batch_size);
    let mut outgoing = SendBatch::new(shard.settings.batch_size);
    let mut after = Vec::new();
    loop {
        let received = match incoming.receive(fd) {
            Ok(n) => n,
            Err(e) if is_fatal(&e) => {
                // The socket is gone or broken: a shard without it would
                // silently lose its share of the traffic.
                shard
                    .common
                    .fail(format!("shard {}: UDP socket failed: {e}", shard.id));
                return;
            }
            Err(e) => {
                // Transient (e.g. ENOMEM, ENOBUFS): back off and go on.
                tracing::warn!(shard = shard.id, error = %e, "UDP receive failed; retrying");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if received == 0 {
            // Empty: park on io_uring until a datagram is queued. (recvmsg
            // with MSG_PEEK: a plain recv is refused on an unconnected
            // socket.)
            // Bounded, so a lost completion cannot leave the socket unread.
            let mut probe = [0u8; 1];
            let wait = async {
                match shard.udp[endpoint].socket.peek_from(&mut probe).await {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(shard = shard.id, error = %e, "waiting for UDP data failed");
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                }
            };
            futures_lite::future::or(wait, glommio::timer::sleep(PARK_RECHECK)).await;
            continue;
        }
        shard.counters.udp_datagrams(received as u64);
        let clock = shard.clock();
        for i in 0..received {
            let Some((from, packet)) = incoming.get(i) else {
                shard.counters.udp_dropped(UdpDrop::Malformed, 1);
                continue;
            };
            let slot = outgoing.slot();
            if let Some(len) =
                shard.handle_datagram(endpoint, from, packet, clock, slot, &mut after)
            {
                outgoing.push(len, from);
            }
        }
        shard.flush_udp(endpoint, &mut outgoing);
        shard.settle_latency();
        shard.run_after_hooks(&mut after);
        let _ = shard.try_flush();
        glommio::yield_if_needed().await;
    }
}

/// The longest an idle socket waits before it is read again anyway.
const PARK_RECHECK: Duration = Duration::from_millis(100);

/// Errors after which a socket will never work again.
fn is_fatal(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::ENOTSOCK | libc::EINVAL | libc::EFAULT)
    )
}

pub(crate) fn write_scrape(slot: &mut [u8], transaction_id: u32, counts: &[Counts]) -> usize {
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

fn write_error(slot: &mut [u8], transaction_id: u32, message: &str) -> usize {
    // Keep error answers small whatever a hook says: no amplification.
    let message = &message[..message.floor_char_boundary(200)];
    let mut w = Writer::new(slot);
    udp::write_error(&mut w, transaction_id, message);
    w.len()
}

/// Writes sampled peers of the announcer's family into the answer.
struct UdpPeers<'a> {
    w: Writer<'a>,
}

impl PeerSink for UdpPeers<'_> {
    fn v4(&mut self, addrs: &[V4Addr], _: &[PeerMeta]) {
        self.w.put(addrs.as_flattened());
    }
    fn v6(&mut self, addrs: &[V6Addr], _: &[PeerMeta]) {
        self.w.put(addrs.as_flattened());
    }
}

impl Shard {
    /// Post-hooks of the announces whose answers just left.
    pub(crate) fn run_after_hooks(&self, after: &mut Vec<AfterAnnounce>) {
        if after.is_empty() {
            return;
        }
        let mut hooks = self.hooks.borrow_mut();
        for a in after.drain(..) {
            hooks.after_announce(&a.announce, a.client, a.counts);
        }
    }

    /// Sends a batch of answers on socket `endpoint`.
    pub(crate) fn flush_udp(&self, endpoint: usize, batch: &mut SendBatch) {
        let sent: Sent = batch.flush(self.udp[endpoint].fd);
        if sent.dropped > 0 {
            self.counters
                .udp_dropped(UdpDrop::SendFailed, sent.dropped as u64);
        }
    }

    /// Counts a UDP answer written now, and notes its latency when
    /// histograms are on (recorded by `settle_latency` after the send).
    #[inline]
    pub(crate) fn udp_answered(
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
    pub(crate) fn settle_latency(&self) {
        if let Some(latency) = &self.latency {
            latency.settle();
        }
    }

    /// One datagram; returns the length of the answer written to `slot`,
    /// or `None` when there is nothing to send now.
    fn handle_datagram(
        &self,
        endpoint: usize,
        from: SocketAddr,
        packet: &[u8],
        clock: Clock,
        slot: &mut [u8],
        after: &mut Vec<AfterAnnounce>,
    ) -> Option<usize> {
        let ids = &self.common.connection_ids;
        let ip = from.ip();
        let family = Family::of(ip);
        match udp::parse(packet) {
            Ok(Request::Connect { transaction_id }) => {
                let mut w = Writer::new(slot);
                udp::write_connect(&mut w, transaction_id, ids.make(ip, clock.unix));
                self.counters
                    .request(Protocol::Udp, Action::Connect, family);
                self.udp_answered(Action::Connect, from, Outcome::Ok, clock.now);
                Some(w.len())
            }
            Ok(Request::Announce {
                connection_id,
                transaction_id,
                announce,
            }) => {
                if !ids.check(connection_id, ip, clock.unix) {
                    self.counters.udp_dropped(UdpDrop::BadConnectionId, 1);
                    return None;
                }
                let owner = self.common.owner.of(&announce.info_hash);
                if owner != self.id {
                    if !self.may_queue_udp_forward(owner) {
                        self.counters.udp_dropped(UdpDrop::OwnerSaturated, 1);
                        return None;
                    }
                    self.counters
                        .request(Protocol::Udp, Action::Announce, family);
                    self.forward(
                        owner,
                        Forward::UdpAnnounce {
                            endpoint: endpoint as u16,
                            from,
                            transaction_id,
                            received: clock.now,
                            announce: Box::new(announce),
                        },
                    );
                    return None;
                }
                self.counters
                    .request(Protocol::Udp, Action::Announce, family);
                Some(self.announce(
                    from,
                    transaction_id,
                    announce,
                    clock,
                    clock.now,
                    slot,
                    after,
                ))
            }
            Ok(Request::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            }) => {
                if !ids.check(connection_id, ip, clock.unix) {
                    self.counters.udp_dropped(UdpDrop::BadConnectionId, 1);
                    return None;
                }
                let (hashes, _) = info_hashes.as_chunks::<20>();
                self.scrape(endpoint, from, transaction_id, hashes, clock, slot)
            }
            Err(ParseError::Drop) => {
                self.counters.udp_dropped(UdpDrop::Malformed, 1);
                None
            }
            Err(ParseError::Invalid {
                connection_id,
                transaction_id,
                message,
            }) => {
                // Only a sender that proved its address gets an answer.
                if !ids.check(connection_id, ip, clock.unix) {
                    self.counters.udp_dropped(UdpDrop::BadConnectionId, 1);
                    return None;
                }
                self.counters
                    .request(Protocol::Udp, Action::Invalid, family);
                self.udp_answered(Action::Invalid, from, Outcome::Error, clock.now);
                Some(write_error(slot, transaction_id, message))
            }
        }
    }

    /// An announce for an infohash this shard owns.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn announce(
        &self,
        from: SocketAddr,
        transaction_id: u32,
        mut announce: Announce,
        clock: Clock,
        received: Instant,
        slot: &mut [u8],
        after: &mut Vec<AfterAnnounce>,
    ) -> usize {
        let s = &self.settings;
        let info_hash = announce.info_hash;
        let client = Client {
            ip: from.ip(),
            port: announce.port,
        };
        let mut ctx = AnnounceContext {
            protocol: Protocol::Udp,
            client,
            shard: self.id,
            announce: &mut announce,
            interval: s.interval,
            min_interval: s.min_interval,
        };
        let mut hooks = self.hooks.borrow_mut();
        if let Err(refusal) = hooks.before_announce(&mut ctx) {
            self.udp_answered(Action::Announce, from, Outcome::Error, received);
            return write_error(slot, transaction_id, &refusal.0);
        }
        let (interval, client_ip) = (ctx.interval, ctx.client.ip);
        announce.info_hash = info_hash;
        let client = Client {
            ip: client_ip,
            port: announce.port,
        };
        let ipv6 = from.is_ipv6();
        let want = (announce
            .numwant
            .unwrap_or(s.default_numwant)
            .min(s.max_numwant) as usize)
            .min(udp::max_peers(ipv6));
        let want = if ipv6 {
            Want { v4: 0, v6: want }
        } else {
            Want { v4: want, v6: 0 }
        };
        let (head, body) = slot.split_at_mut(udp::ANNOUNCE_RESPONSE_HEADER_LEN);
        let mut peers = UdpPeers {
            w: Writer::new(body),
        };
        let counts = self.swarms.borrow_mut().announce(
            &announce,
            client,
            clock.mono.saturating_add(s.peer_lifetime),
            want,
            &mut self.rng.borrow_mut(),
            &mut peers,
        );
        let peers_len = peers.w.len();
        udp::write_announce_header(
            &mut Writer::new(head),
            transaction_id,
            interval,
            counts.leechers,
            counts.seeders,
        );
        if hooks.wants_after_announce() {
            after.push(AfterAnnounce {
                announce,
                client,
                counts,
            });
        }
        self.udp_answered(Action::Announce, from, Outcome::Ok, received);
        udp::ANNOUNCE_RESPONSE_HEADER_LEN + peers_len
    }

    /// A scrape: answered now when this shard owns every infohash, else
    /// fanned out to the owners and answered when they all replied.
    fn scrape(
        &self,
        endpoint: usize,
        from: SocketAddr,
        transaction_id: u32,
        hashes: &[InfoHash],
        clock: Clock,
        slot: &mut [u8],
    ) -> Option<usize> {
        let family = Family::of(from.ip());
        let refuse = |slot: &mut [u8], message: &str| {
            self.counters.request(Protocol::Udp, Action::Scrape, family);
            self.udp_answered(Action::Scrape, from, Outcome::Error, clock.now);
            Some(write_error(slot, transaction_id, message))
        };
        if hashes.len() > self.settings.max_scrape {
            return refuse(slot, "too many info hashes in one scrape");
        }
        let ctx = ScrapeContext {
            protocol: Protocol::Udp,
            client: Client {
                ip: from.ip(),
                port: from.port(),
            },
            shard: self.id,
            info_hashes: hashes,
            passkey: None,
        };
        if let Err(refusal) = self.hooks.borrow_mut().before_scrape(&ctx) {
            return refuse(slot, &refusal.0);
        }
        // A gather costs queue space on other shards: refused (dropped,
        // the client retries) while they are saturated.
        let owner = &self.common.owner;
        let mut remote = hashes
            .iter()
            .map(|h| owner.of(h))
            .filter(|&o| o != self.id)
            .peekable();
        if remote.peek().is_some() && !self.may_start_udp_gather(remote) {
            self.counters.udp_dropped(UdpDrop::OwnerSaturated, 1);
            return None;
        }
        self.counters.request(Protocol::Udp, Action::Scrape, family);
        let counts = self.gather_scrape(hashes, || ScrapeReplyTo::Udp {
            endpoint,
            to: from,
            transaction_id,
            received: clock.now,
        })?;
        self.udp_answered(Action::Scrape, from, Outcome::Ok, clock.now);
        Some(write_scrape(slot, transaction_id, &counts))
    }
}
