//! The HTTP request path of a shard: keep-alive connections, routes,
//! announces and scrapes. A TCP connection cannot be steered by infohash,
//! so requests are parsed where the connection landed and forwarded to the
//! owner when needed; the owner answers with the encoded body.

use super::forward::ScrapeReplyTo;
use super::mesh::{Forward, HttpAnnounceJob};
use super::udp::AfterAnnounce;
use super::{Clock, Shard};
use crate::config::HttpConfig;
use crate::metrics::counters::{Action, Family, Outcome};
use crate::middleware::{AnnounceContext, Protocol, ScrapeContext};
use crate::net::poller::Poller;
use crate::net::stream::{Deadline, Listener, Stream};
use crate::protocol::http::bencode::{self, AnnounceHead, DictPeer, ScrapeFile};
use crate::protocol::http::client_ip::{client_ip, normalize, Cidr};
use crate::protocol::http::head::{head_end, parse_head, HeadError};
use crate::protocol::http::query;
use crate::protocol::http::route::{Route, Routes};
use crate::request::{Client, InfoHash};
use crate::swarm::peer_list::PeerMeta;
use crate::swarm::{Counts, PeerSink, V4Addr, V6Addr, Want};
use socket2::Socket;
use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A reply from another shard to a request this shard forwarded.
pub(crate) enum HttpReply {
    Body(Vec<u8>),
    Scrape(Vec<Counts>),
}

/// A shard's HTTP state.
pub(crate) struct HttpSide {
    /// Readiness of the listeners and connections (see `net::poller`).
    pub poller: Rc<Poller>,
    pub listeners: Vec<Listener>,
    routes: Routes,
    trusted: Vec<Cidr>,
    real_ip_header: Option<String>,
    allow_ip_spoofing: bool,
    max_connections: usize,
    max_request_size: usize,
    idle_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
    connections: Cell<usize>,
    /// Sampled peers of the announce being answered, reused.
    scratch: RefCell<HttpPeers>,
}

impl HttpSide {
    pub fn new(
        config: &HttpConfig,
        trusted: Vec<Cidr>,
        poller: Rc<Poller>,
        listeners: Vec<Listener>,
    ) -> Self {
        Self {
            poller,
            listeners,
            routes: Routes::new(&config.announce_routes, &config.scrape_routes)
                .expect("routes were validated with the config"),
            trusted,
            real_ip_header: (!config.real_ip_header.is_empty())
                .then(|| config.real_ip_header.clone()),
            allow_ip_spoofing: config.allow_ip_spoofing,
            max_connections: config.max_connections,
            max_request_size: config.max_request_size.0 as usize,
            idle_timeout: config.idle_timeout,
            read_timeout: config.read_timeout,
            write_timeout: config.write_timeout,
            connections: Cell::new(0),
            scratch: RefCell::default(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Ok,
    BadRequest,
    NotFound,
    TooLarge,
    MethodNotAllowed,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::TooLarge => "431 Request Header Fields Too Large",
            Status::MethodNotAllowed => "405 Method Not Allowed",
        }
    }
}

/// Per-connection answer buffers: what they start with, and the size past
/// which they are given back after an answer.
const SMALL_BUFFER: usize = 512;
const BIG_BUFFER: usize = 4096;

/// Accepts connections on one listener until the shard stops.
pub(crate) async fn serve_listener(shard: Rc<Shard>, listener: usize) {
    loop {
        // Accepting never waits while connections are queued (nor while an
        // error repeats): let the shard's other work in when it is due.
        glommio::yield_if_needed().await;
        let (socket, peer) = match shard.http.listeners[listener].accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or memory: back off instead of
                // spinning. Anything else (a connection aborted before it
                // was accepted) concerns that connection only.
                let starved = e.raw_os_error().is_some_and(|code| {
                    matches!(
                        code,
                        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
                    )
                });
                if starved {
                    tracing::warn!(shard = shard.id, error = %e, "accept failed; backing off");
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                } else {
                    tracing::debug!(shard = shard.id, error = %e, "accept failed");
                }
                continue;
            }
        };
        let http = &shard.http;
        if http.connections.get() >= http.max_connections {
            shard.counters.http_connection(false);
            continue; // dropped: closed at once
        }
        shard.counters.http_connection(true);
        http.connections.set(http.connections.get() + 1);
        glommio::spawn_local(serve_connection(shard.clone(), socket, peer)).detach();
    }
}

/// Gives the connection's place back however its task ends.
struct ConnectionSlot(Rc<Shard>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let c = &self.0.http.connections;
        c.set(c.get() - 1);
    }
}

async fn serve_connection(shard: Rc<Shard>, socket: Socket, peer: SocketAddr) {
    let _slot = ConnectionSlot(shard.clone());
    let http = &shard.http;
    let peer = normalize(peer.ip());
    let _ = socket.set_nodelay(true);
    let Ok(stream) = Stream::new(socket, &http.poller) else {
        return;
    };
    let mut buf = vec![0u8; http.max_request_size];
    let mut filled = 0;
    let mut out: Vec<u8> = Vec::with_capacity(SMALL_BUFFER);
    let mut body: Vec<u8> = Vec::with_capacity(SMALL_BUFFER);
    let mut after = Vec::new();
    loop {
        // A client that pipelines without pause never makes this task
        // wait: let the other connections in when the shard is due.
        glommio::yield_if_needed().await;
        // Read until a whole head is buffered.
        let mut scanned = 0;
        // The whole head must arrive within the read timeout, however
        // slowly it trickles; between requests the idle timeout applies.
        let mut deadline = None;
        while head_end(&buf[..filled], scanned).is_none() {
            scanned = filled;
            if filled == buf.len() {
                shard.http_refused(peer);
                refuse(
                    &stream,
                    &mut out,
                    Status::TooLarge,
                    b"d14:failure reason17:request too largee",
                    http.write_timeout,
                )
                .await;
                return;
            }
            let wait = if filled == 0 {
                Deadline::After(http.idle_timeout)
            } else {
                Deadline::At(*deadline.get_or_insert_with(|| Instant::now() + http.read_timeout))
            };
            match stream.read(&mut buf[filled..], wait).await {
                Ok(0) | Err(_) => return,
                Ok(n) => filled += n,
            }
        }
        let head = match parse_head(&buf[..filled], http.real_ip_header.as_deref()) {
            Ok(Some(head)) => head,
            Ok(None) | Err(HeadError::Malformed(_)) | Err(HeadError::BodyNotAccepted) => {
                shard.http_refused(peer);
                refuse(
                    &stream,
                    &mut out,
                    Status::BadRequest,
                    b"d14:failure reason15:malformed HTTPe",
                    http.write_timeout,
                )
                .await;
                return;
            }
        };
        if head.method != "GET" {
            shard.http_refused(peer);
            refuse(
                &stream,
                &mut out,
                Status::MethodNotAllowed,
                b"d14:failure reason18:only GET is servede",
                http.write_timeout,
            )
            .await;
            return;
        }
        let keep_alive = head.keep_alive;
        let consumed = head.len;
        let client = if http.real_ip_header.is_some() {
            client_ip(peer, head.real_ip, &http.trusted)
        } else {
            peer
        };
        body.clear();
        let started = shard.latency.as_ref().map(|_| Instant::now());
        let (action, status) = match http.routes.match_path(head.path) {
            Route::Announce { passkey } => {
                let (status, a) = shard
                    .http_announce(head.query, passkey, client, &mut body)
                    .await;
                after.extend(a);
                (Action::Announce, status)
            }
            Route::Scrape { passkey } => {
                let status = shard
                    .http_scrape(head.query, passkey, client, &mut body)
                    .await;
                (Action::Scrape, status)
            }
            Route::NotFound => {
                bencode::failure(&mut body, "not found");
                (Action::Invalid, Status::NotFound)
            }
        };
        let outcome = if body.starts_with(FAILURE_PREFIX) {
            Outcome::Error
        } else {
            Outcome::Ok
        };
        shard
            .counters
            .served(Protocol::Http, action, Family::of(client), outcome);
        if respond(
            &stream,
            &mut out,
            status,
            &body,
            keep_alive,
            http.write_timeout,
        )
        .await
        .is_err()
        {
            return;
        }
        if let (Some(latency), Some(started)) = (&shard.latency, started) {
            latency.record(Protocol::Http, action, started.elapsed());
        }
        shard.run_after_hooks(&mut after);
        if !keep_alive {
            return;
        }
        // A large answer (dictionary form, many peers) must not pin its
        // buffers' size for the life of a keep-alive connection.
        for b in [&mut out, &mut body] {
            if b.capacity() > BIG_BUFFER {
                b.shrink_to(SMALL_BUFFER);
            }
        }
        // Keep what a pipelining client already sent.
        buf.copy_within(consumed..filled, 0);
        filled -= consumed;
    }
}

/// How every failure answer starts (its only key sorts first).
const FAILURE_PREFIX: &[u8] = b"d14:failure reason";

impl Shard {
    /// Counts a request refused before routing (malformed, too large,
    /// not GET): answered with an error, then the connection closes.
    fn http_refused(&self, peer: IpAddr) {
        self.counters.served(
            Protocol::Http,
            Action::Invalid,
            Family::of(peer),
            Outcome::Error,
        );
    }
}

/// Answers an error and closes gracefully: the write side is shut and
/// what the client still sends is read (briefly, boundedly) before the
/// close, so the kernel does not reset the connection over unread bytes
/// and throw the answer away.
async fn refuse(
    stream: &Stream,
    out: &mut Vec<u8>,
    status: Status,
    body: &[u8],
    write_timeout: Duration,
) {
    if respond(stream, out, status, body, false, write_timeout)
        .await
        .is_err()
    {
        return;
    }
    let _ = stream.shutdown_write();
    let until = Deadline::At(Instant::now() + LINGER);
    let mut sink = [0u8; 1024];
    for _ in 0..LINGER_READS {
        match stream.read(&mut sink, until).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// How long, and how many reads, a refused connection is drained for.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_READS: usize = 64;

/// One write per response: head and body together.
async fn respond(
    stream: &Stream,
    out: &mut Vec<u8>,
    status: Status,
    body: &[u8],
    keep_alive: bool,
    timeout: Duration,
) -> std::io::Result<()> {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.line().as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(if keep_alive {
        b"\r\nConnection: keep-alive\r\n\r\n".as_slice()
    } else {
        b"\r\nConnection: close\r\n\r\n".as_slice()
    });
    out.extend_from_slice(body);
    stream.write_all(out, timeout).await
}

/// Sampled peers in wire format (and their ids for dictionary answers).
#[derive(Default)]
pub(crate) struct HttpPeers {
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
    fn v4(&mut self, addrs: &[V4Addr], meta: &[PeerMeta]) {
        self.v4.extend_from_slice(addrs.as_flattened());
        if self.with_ids {
            self.ids4.extend(meta.iter().map(|m| m.peer_id));
        }
    }
    fn v6(&mut self, addrs: &[V6Addr], meta: &[PeerMeta]) {
        self.v6.extend_from_slice(addrs.as_flattened());
        if self.with_ids {
            self.ids6.extend(meta.iter().map(|m| m.peer_id));
        }
    }
}

impl Shard {
    /// An announce from a connection on this shard: answered here when
    /// this shard owns the infohash, else by the owner.
    async fn http_announce(
        &self,
        query: &[u8],
        passkey: Option<&[u8]>,
        client_ip: IpAddr,
        body: &mut Vec<u8>,
    ) -> (Status, Option<AfterAnnounce>) {
        let parsed = match query::parse_announce(query) {
            Ok(p) => p,
            Err(e) => {
                bencode::failure(body, &e.to_string());
                return (Status::BadRequest, None);
            }
        };
        let mut announce = parsed.announce;
        if let Some(passkey) = passkey {
            announce.passkey = Some(passkey.into());
        }
        let ip = match parsed.ip {
            Some(ip) if self.http.allow_ip_spoofing => normalize(ip),
            _ => client_ip,
        };
        let job = HttpAnnounceJob {
            client: Client {
                ip,
                port: announce.port,
            },
            announce,
            compact: parsed.compact,
            no_peer_id: parsed.no_peer_id,
        };
        let owner = self.common.owner.of(&job.announce.info_hash);
        if owner == self.id {
            let after = self.http_announce_here(job, self.coarse_clock.get(), body);
            return (Status::Ok, after);
        }
        let id = self.http_waiters.register();
        self.forward(
            owner,
            Forward::HttpAnnounce {
                origin: self.id as u16,
                id,
                job: Box::new(job),
            },
        );
        self.flush_notify.notify();
        match self.http_waiters.wait(id).await {
            HttpReply::Body(b) => body.extend_from_slice(&b),
            HttpReply::Scrape(_) => bencode::failure(body, "internal error"),
        }
        (Status::Ok, None)
    }

    /// Answers an announce for an infohash this shard owns into `body`.
    pub(crate) fn http_announce_here(
        &self,
        mut job: HttpAnnounceJob,
        clock: Clock,
        body: &mut Vec<u8>,
    ) -> Option<AfterAnnounce> {
        let s = &self.settings;
        let info_hash = job.announce.info_hash;
        let mut ctx = AnnounceContext {
            protocol: Protocol::Http,
            client: job.client,
            shard: self.id,
            announce: &mut job.announce,
            interval: s.interval,
            min_interval: s.min_interval,
        };
        let mut hooks = self.hooks.borrow_mut();
        if let Err(refusal) = hooks.before_announce(&mut ctx) {
            bencode::failure(body, &refusal.0);
            return None;
        }
        let (interval, min_interval, client_ip) = (ctx.interval, ctx.min_interval, ctx.client.ip);
        job.announce.info_hash = info_hash;
        job.client = Client {
            ip: client_ip,
            port: job.announce.port,
        };
        let want = job
            .announce
            .numwant
            .unwrap_or(s.default_numwant)
            .min(s.max_numwant) as usize;
        let mut peers = self.http.scratch.borrow_mut();
        peers.reset(!job.compact && !job.no_peer_id);
        let counts = self.swarms.borrow_mut().announce(
            &job.announce,
            job.client,
            clock.mono.saturating_add(s.peer_lifetime),
            Want { v4: want, v6: want },
            &mut self.rng.borrow_mut(),
            &mut *peers,
        );
        let head = AnnounceHead {
            complete: counts.seeders,
            incomplete: counts.leechers,
            interval,
            min_interval,
            external_ip: Some(job.client.ip),
        };
        if job.compact {
            bencode::announce_compact(body, &head, &peers.v4, &peers.v6);
        } else {
            bencode::announce_dict(body, &head, peers.dict_peers(job.no_peer_id));
        }
        hooks.wants_after_announce().then_some(AfterAnnounce {
            announce: job.announce,
            client: job.client,
            counts,
        })
    }

    async fn http_scrape(
        &self,
        query: &[u8],
        passkey: Option<&[u8]>,
        client_ip: IpAddr,
        body: &mut Vec<u8>,
    ) -> Status {
        let mut hashes: Vec<InfoHash> = Vec::new();
        if let Err(e) = query::parse_scrape(query, self.settings.max_scrape, &mut hashes) {
            bencode::failure(body, &e.to_string());
            return Status::BadRequest;
        }
        if hashes.is_empty() {
            bencode::failure(
                body,
                "name at least one info_hash (full scrapes are not served)",
            );
            return Status::BadRequest;
        }
        let ctx = ScrapeContext {
            protocol: Protocol::Http,
            client: Client {
                ip: client_ip,
                port: 0,
            },
            shard: self.id,
            info_hashes: &hashes,
            passkey,
        };
        if let Err(refusal) = self.hooks.borrow_mut().before_scrape(&ctx) {
            bencode::failure(body, &refusal.0);
            return Status::Ok;
        }
        let waiter = Cell::new(None);
        let counts = match self.gather_scrape(&hashes, || {
            let id = self.http_waiters.register();
            waiter.set(Some(id));
            ScrapeReplyTo::Http { waiter: id }
        }) {
            Some(counts) => counts,
            None => {
                self.flush_notify.notify();
                let id = waiter.get().expect("a gather registers its waiter");
                match self.http_waiters.wait(id).await {
                    HttpReply::Scrape(counts) => counts,
                    HttpReply::Body(_) => vec![Counts::default(); hashes.len()],
                }
            }
        };
        let mut files: Vec<(InfoHash, ScrapeFile)> = hashes
            .iter()
            .zip(&counts)
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
        Status::Ok
    }
}

/// Sends what the shard's tasks queued for other shards: after a
/// notification, once the other ready tasks had their turn (so requests
/// from many connections share one batch), and again shortly while a
/// saturated peer's channel is full.
pub(crate) async fn flusher(shard: Rc<Shard>) {
    loop {
        shard.flush_notify.notified().await;
        futures_lite::future::yield_now().await;
        if shard.try_flush() {
            // A channel was full: let the peer drain it before retrying.
            glommio::timer::sleep(RETRY_FULL_CHANNEL).await;
        }
    }
}

/// How long the flusher waits before retrying a full channel.
const RETRY_FULL_CHANNEL: Duration = Duration::from_micros(200);
