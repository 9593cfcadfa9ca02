//! The UDP request path of a shard: batched reads, parse, the tracker
//! core, batched writes, post-hooks. Requests for another shard's
//! infohashes travel over the mesh; the owner answers them itself.

use super::answer::{write_udp_error, write_udp_scrape};
use super::mesh::{Forward, ScrapeReplyTo};
use super::{Clock, Shard};
use crate::bittorrent::{Client, InfoHash, Protocol};
use crate::metrics::counters::{Action, Family, Outcome, UdpDrop};
use crate::middleware::params::url_data_path;
use crate::middleware::{Refusal, RefusalKind, RequestContext, RequestKind};
use crate::net::mmsg::{RecvBatch, SendBatch, Sent};
use crate::protocol::http::route::Route;
use crate::protocol::udp::{self, ParseError, Request, Writer};
use crate::tracker::{AfterAnnounce, ScrapeRequest};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

/// One of the shard's sockets, one per `udp.listen` address.
pub(super) struct Endpoint {
    socket: glommio::net::UdpSocket,
    fd: RawFd,
}

impl Endpoint {
    fn new(socket: socket2::Socket) -> Self {
        let fd = socket.into_raw_fd();
        // SAFETY: `fd` is an open UDP socket whose ownership we just took
        // from `socket`; glommio's socket now owns and closes it.
        let socket = unsafe { glommio::net::UdpSocket::from_raw_fd(fd) };
        Self { socket, fd }
    }
}

/// A shard's UDP state.
pub(super) struct UdpSide {
    pub endpoints: Vec<Endpoint>,
    batch_size: usize,
    /// UDP answers the mesh tasks send, one batch per socket, shared by
    /// them (borrowed only between awaits).
    pub mesh_send: RefCell<Vec<SendBatch>>,
}

impl UdpSide {
    pub fn new(sockets: Vec<socket2::Socket>, batch_size: usize) -> Self {
        let endpoints: Vec<Endpoint> = sockets.into_iter().map(Endpoint::new).collect();
        let mesh_send = endpoints
            .iter()
            .map(|_| SendBatch::new(batch_size))
            .collect();
        Self {
            endpoints,
            batch_size,
            mesh_send: RefCell::new(mesh_send),
        }
    }
}

/// Reads and answers datagrams on one socket until the shard stops.
pub(crate) async fn serve_socket(shard: Rc<Shard>, endpoint: usize) {
    let fd = shard.udp.endpoints[endpoint].fd;
    let mut incoming = RecvBatch::new(shard.udp.batch_size);
    let mut outgoing = SendBatch::new(shard.udp.batch_size);
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
                match shard.udp.endpoints[endpoint]
                    .socket
                    .peek_from(&mut probe)
                    .await
                {
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

impl Shard {
    /// Sends a batch of answers on socket `endpoint`.
    pub(crate) fn flush_udp(&self, endpoint: usize, batch: &mut SendBatch) {
        let sent: Sent = batch.flush(self.udp.endpoints[endpoint].fd);
        if sent.dropped > 0 {
            self.counters
                .udp_dropped(UdpDrop::SendFailed, sent.dropped as u64);
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
                // An unproven sender: any refusal is silence (an error
                // packet would be larger than the request).
                if self
                    .check_udp_request(from, RequestKind::Connect, clock.mono)
                    .is_err()
                {
                    self.counters.udp_dropped(UdpDrop::Refused, 1);
                    return None;
                }
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
                mut announce,
            }) => {
                if !ids.check(connection_id, ip, clock.unix) {
                    self.counters.udp_dropped(UdpDrop::BadConnectionId, 1);
                    return None;
                }
                if let Err(refusal) =
                    self.check_udp_request(from, RequestKind::Announce, clock.mono)
                {
                    return self.refuse_udp(
                        refusal,
                        Action::Announce,
                        from,
                        transaction_id,
                        clock,
                        slot,
                    );
                }
                self.take_udp_passkey(&mut announce);
                let owner = self.common.owner.of(&announce.info_hash);
                if owner != self.id {
                    if !self.mesh.may_queue_udp_forward(owner) {
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
                Some(self.answer_udp_announce(
                    from,
                    transaction_id,
                    &mut announce,
                    clock.mono,
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
                if let Err(refusal) = self.check_udp_request(from, RequestKind::Scrape, clock.mono)
                {
                    return self.refuse_udp(
                        refusal,
                        Action::Scrape,
                        from,
                        transaction_id,
                        clock,
                        slot,
                    );
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
                Some(write_udp_error(slot, transaction_id, message))
            }
        }
    }

    /// The request hooks' verdict on a sender (Ok when no hook checks).
    fn check_udp_request(
        &self,
        from: SocketAddr,
        kind: RequestKind,
        now: u32,
    ) -> Result<(), Refusal> {
        let mut tracker = self.tracker.borrow_mut();
        if !tracker.checks_requests() {
            return Ok(());
        }
        tracker.check_request(&RequestContext {
            protocol: Protocol::Udp,
            source: from.ip(),
            kind,
            now,
        })
    }

    /// Answers a refused request from a proven sender with an error
    /// packet, or nothing when the refusal says so.
    fn refuse_udp(
        &self,
        refusal: Refusal,
        action: Action,
        from: SocketAddr,
        transaction_id: u32,
        clock: Clock,
        slot: &mut [u8],
    ) -> Option<usize> {
        if refusal.kind == RefusalKind::Forbidden {
            self.counters.udp_dropped(UdpDrop::Refused, 1);
            return None;
        }
        self.counters
            .request(Protocol::Udp, action, Family::of(from.ip()));
        self.udp_answered(action, from, Outcome::Error, clock.now);
        Some(write_udp_error(slot, transaction_id, &refusal.reason))
    }

    /// BEP 41: URL data whose path matches an announce route with a
    /// `:passkey` segment (`/PASSKEY/announce`) gives the passkey, as the
    /// same path does over HTTP.
    fn take_udp_passkey(&self, announce: &mut crate::bittorrent::Announce) {
        if announce.url_data.is_empty() {
            return;
        }
        let path = url_data_path(&announce.url_data);
        if let Route::Announce {
            passkey: Some(passkey),
        } = self.common.checked.routes.match_path(path)
        {
            announce.passkey = Some(passkey.into());
        }
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
        let request = ScrapeRequest {
            protocol: Protocol::Udp,
            client: Client {
                ip: from.ip(),
                port: from.port(),
            },
            info_hashes: hashes,
            passkey: None,
        };
        if let Err(rejection) = self.tracker.borrow_mut().check_scrape(&request) {
            self.counters.request(Protocol::Udp, Action::Scrape, family);
            self.udp_answered(Action::Scrape, from, Outcome::Error, clock.now);
            return Some(write_udp_error(slot, transaction_id, rejection.reason()));
        }
        // A gather costs queue space on other shards: refused (dropped,
        // the client retries) while they are saturated.
        let owner = &self.common.owner;
        let mut remote = hashes
            .iter()
            .map(|h| owner.of(h))
            .filter(|&o| o != self.id)
            .peekable();
        if remote.peek().is_some() && !self.mesh.may_start_udp_gather(remote) {
            self.counters.udp_dropped(UdpDrop::OwnerSaturated, 1);
            return None;
        }
        self.counters.request(Protocol::Udp, Action::Scrape, family);
        let counts = self.gather_scrape(hashes, Some(request.client), || ScrapeReplyTo::Udp {
            endpoint,
            to: from,
            transaction_id,
            received: clock.now,
        })?;
        self.udp_answered(Action::Scrape, from, Outcome::Ok, clock.now);
        let len = write_udp_scrape(slot, transaction_id, &counts);
        let mut tracker = self.tracker.borrow_mut();
        if tracker.wants_after_scrape() {
            tracker.after_scrape(&request, &counts);
        }
        Some(len)
    }
}
