//! The HTTP request path of a shard: keep-alive connections, routes,
//! announces and scrapes. A TCP connection cannot be steered by infohash,
//! so requests are parsed where the connection landed and forwarded to the
//! owner when needed; the owner answers with the encoded body.

use super::answer::{http_scrape_body, write_refusal, HttpPeers};
use super::full_scrape::{self, Gate};
use super::mesh::{Forward, HttpAnnounceJob, HttpReply, ScrapeReplyTo};
use super::Shard;
use crate::bittorrent::{Client, Counts, InfoHash, Protocol};
use crate::config::{Checked, HttpConfig};
use crate::metrics::counters::{Action, Family, Outcome};
use crate::middleware::{Refusal, RefusalKind, RequestContext, RequestKind};
use crate::net::poller::Poller;
use crate::net::stream::{Deadline, Listener, Stream, Transport};
use crate::net::tls::TlsStream;
use crate::protocol::http::bencode;
use crate::protocol::http::client_ip::{client_ip, normalize, Cidr};
use crate::protocol::http::head::{head_end, parse_head, HeadError};
use crate::protocol::http::query;
use crate::protocol::http::route::{Route, Routes};
use crate::tracker::{AfterAnnounce, Dual, Origin, Rejection, ScrapeRequest};
use socket2::Socket;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A shard's HTTP state.
pub(crate) struct HttpSide {
    /// Readiness of the listeners and connections (see `net::poller`).
    pub poller: Rc<Poller>,
    pub listeners: Vec<Listener>,
    /// `http.tls.listen`'s listeners: the same requests, over TLS.
    pub tls_listeners: Vec<Listener>,
    /// The certificate new TLS connections get; replaced on a reload
    /// (connections keep the one they started with).
    pub(super) tls: RefCell<Option<Arc<rustls::ServerConfig>>>,
    routes: Routes,
    trusted: Vec<Cidr>,
    real_ip_header: Option<String>,
    max_connections: usize,
    max_request_size: usize,
    idle_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
    connections: Cell<usize>,
    /// Connections waiting for a request head (idle between requests, or
    /// with a head still arriving), oldest first: at `max_connections` the
    /// oldest is closed to admit a new one, so idle or slowloris
    /// connections cannot keep new clients out until they time out.
    waiting: RefCell<BTreeMap<u64, Weak<Stream>>>,
    next_waiting: Cell<u64>,
    /// Sampled peers of the announce being answered, reused.
    pub(super) scratch: RefCell<HttpPeers>,
    /// Who may scrape everything (`None`: nobody).
    full_scrape: Option<Gate>,
}

impl HttpSide {
    pub fn new(
        config: &HttpConfig,
        checked: &Checked,
        poller: Rc<Poller>,
        listeners: Vec<Listener>,
        tls_listeners: Vec<Listener>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        Self {
            poller,
            listeners,
            tls_listeners,
            tls: RefCell::new(tls),
            routes: checked.routes.clone(),
            trusted: checked.trusted_proxies.clone(),
            real_ip_header: (!config.real_ip_header.is_empty())
                .then(|| config.real_ip_header.clone()),
            max_connections: config.max_connections,
            max_request_size: config.max_request_size.0 as usize,
            idle_timeout: config.idle_timeout,
            read_timeout: config.read_timeout,
            write_timeout: config.write_timeout,
            connections: Cell::new(0),
            waiting: RefCell::default(),
            next_waiting: Cell::new(0),
            scratch: RefCell::default(),
            full_scrape: Gate::new(&config.full_scrape, &checked.full_scrape_trusted),
        }
    }

    /// Closes the connection that has waited longest for a request head;
    /// false if none is waiting (every connection is being answered).
    fn evict_longest_waiting(&self) -> bool {
        loop {
            let Some((_, stream)) = self.waiting.borrow_mut().pop_first() else {
                return false;
            };
            // A stream already dropped has left the map through its guard;
            // an upgrade failing here is only a guard not yet run.
            if let Some(stream) = stream.upgrade() {
                let _ = stream.shutdown();
                return true;
            }
        }
    }
}

/// A connection's place in `HttpSide::waiting` while it waits for a head.
struct Waiting<'a> {
    side: &'a HttpSide,
    key: u64,
}

impl<'a> Waiting<'a> {
    fn new(side: &'a HttpSide, stream: &Rc<Stream>) -> Self {
        let key = side.next_waiting.get();
        side.next_waiting.set(key + 1);
        side.waiting.borrow_mut().insert(key, Rc::downgrade(stream));
        Waiting { side, key }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.side.waiting.borrow_mut().remove(&self.key);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Ok,
    BadRequest,
    Forbidden,
    NotFound,
    TooLarge,
    MethodNotAllowed,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::Forbidden => "403 Forbidden",
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

/// Accepts connections on one listener (of `http.tls.listen` when
/// `secure`) until the shard stops.
pub(crate) async fn serve_listener(shard: Rc<Shard>, listener: usize, secure: bool) {
    let listeners = if secure {
        &shard.http.tls_listeners
    } else {
        &shard.http.listeners
    };
    loop {
        // Accepting never waits while connections are queued (nor while an
        // error repeats): let the shard's other work in when it is due.
        glommio::yield_if_needed().await;
        let (socket, peer) = match listeners[listener].accept().await {
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
        let tls = if secure {
            // Always there with TLS listeners (loaded before the start);
            // never serve a TLS port in the clear.
            let Some(config) = http.tls.borrow().clone() else {
                continue;
            };
            Some(config)
        } else {
            None
        };
        // At the cap, the connection that has waited longest for a head
        // makes room (its task ends at once); only when every connection
        // is busy being answered is the new one dropped.
        if http.connections.get() >= http.max_connections {
            if !http.evict_longest_waiting() {
                shard.counters.http_connection(false);
                continue; // dropped: closed at once
            }
            shard.counters.http_evicted();
        }
        shard.counters.http_connection(true);
        http.connections.set(http.connections.get() + 1);
        glommio::spawn_local(serve_connection(shard.clone(), socket, peer, tls)).detach();
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

/// Serves one connection, over TLS when `tls` is given: the handshake
/// must finish within `http.read_timeout`, else the connection is dropped
/// and counted.
async fn serve_connection(
    shard: Rc<Shard>,
    socket: Socket,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let _slot = ConnectionSlot(shard.clone());
    let http = &shard.http;
    let peer = normalize(peer.ip());
    let _ = socket.set_nodelay(true);
    let Ok(stream) = Stream::new(socket, &http.poller).map(Rc::new) else {
        return;
    };
    match tls {
        None => serve_requests(&shard, &*stream, &stream, peer).await,
        Some(config) => {
            let until = Instant::now() + http.read_timeout;
            // A handshake still to finish waits like a request head: at
            // the cap it may be closed to admit a new connection.
            let waiting = Waiting::new(http, &stream);
            let handshake = TlsStream::accept(stream.clone(), config, until).await;
            drop(waiting);
            match handshake {
                Ok(tls) => serve_requests(&shard, &tls, &stream, peer).await,
                Err(e) => {
                    shard.counters.tls_handshake_failed();
                    tracing::debug!(shard = shard.id, %peer, error = %e, "TLS handshake failed");
                }
            }
        }
    }
}

/// The requests of one keep-alive connection, whatever carries them
/// (`socket` is the connection under it, for the table of waiting ones).
async fn serve_requests<T: Transport>(
    shard: &Rc<Shard>,
    stream: &T,
    socket: &Rc<Stream>,
    peer: IpAddr,
) {
    let http = &shard.http;
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
        // Registered only once a read must wait: a pipelined head already
        // in the buffer costs no map update.
        let mut waiting = None;
        while head_end(&buf[..filled], scanned).is_none() {
            scanned = filled;
            if filled == buf.len() {
                shard.http_refused(peer);
                refuse(
                    stream,
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
            waiting.get_or_insert_with(|| Waiting::new(http, socket));
            match stream.read(&mut buf[filled..], wait).await {
                Ok(0) | Err(_) => return,
                Ok(n) => filled += n,
            }
        }
        drop(waiting);
        let head = match parse_head(&buf[..filled], http.real_ip_header.as_deref()) {
            Ok(Some(head)) => head,
            Ok(None) | Err(HeadError::Malformed(_)) | Err(HeadError::BodyNotAccepted) => {
                shard.http_refused(peer);
                refuse(
                    stream,
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
                stream,
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
        // Set (to whether JSON was asked) when the answer is a full scrape.
        let mut full_scrape = None;
        let (action, status) = match http.routes.match_path(head.path) {
            Route::Announce { passkey } => {
                let status = shard
                    .http_announce(head.query, passkey, client, &mut body, &mut after)
                    .await;
                (Action::Announce, status)
            }
            Route::Scrape { passkey } => match query::parse_full_scrape(head.query) {
                Some(full) if http.full_scrape.is_some() => {
                    let status = shard.check_full_scrape(&full, client, &mut body);
                    if status == Status::Ok {
                        full_scrape = Some(full.json);
                    }
                    (Action::Scrape, status)
                }
                _ => {
                    let status = shard
                        .http_scrape(head.query, passkey, client, &mut body)
                        .await;
                    (Action::Scrape, status)
                }
            },
            Route::NotFound => match shard.control(head.path, head.query) {
                Some(answer) => {
                    body.extend_from_slice(answer.as_bytes());
                    (Action::Invalid, Status::Ok)
                }
                None => {
                    bencode::failure(&mut body, "not found");
                    (Action::Invalid, Status::NotFound)
                }
            },
        };
        let outcome = if body.starts_with(FAILURE_PREFIX) {
            Outcome::Error
        } else {
            Outcome::Ok
        };
        shard
            .counters
            .served(Protocol::Http, action, Family::of(client), outcome);
        let sent = match full_scrape {
            Some(json) => {
                full_scrape::stream(
                    shard,
                    stream,
                    json,
                    keep_alive,
                    http.write_timeout,
                    &mut out,
                    &mut body,
                )
                .await
            }
            None => {
                respond(
                    stream,
                    &mut out,
                    status,
                    &body,
                    keep_alive,
                    http.write_timeout,
                )
                .await
            }
        };
        if sent.is_err() {
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
    /// Private mode's control endpoint, `/<site_password>/update?...`:
    /// the change goes to the database thread, which hands it to every
    /// shard. Answers as Ocelot does ("success" whenever the request was
    /// understood). `None`: not the control path.
    fn control(&self, path: &[u8], query: &[u8]) -> Option<&'static str> {
        let link = self.common.private.as_ref()?;
        let password = self.common.config.private.site_password.as_bytes();
        let rest = path.strip_prefix(b"/")?.strip_prefix(password)?;
        if rest != b"/update" {
            return None;
        }
        Some(match crate::private::control::parse(query) {
            Ok(Some(change)) => {
                if link.control(change) {
                    "success"
                } else {
                    "busy: control queue full"
                }
            }
            Ok(None) => "success",
            Err(why) => {
                tracing::warn!("private mode: control request refused: {why}");
                "failure"
            }
        })
    }

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
async fn refuse<T: Transport>(
    stream: &T,
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
    let _ = stream.shutdown_write(write_timeout).await;
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
async fn respond<T: Transport>(
    stream: &T,
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

/// A hook's refusal as an HTTP answer: 403 for a ban, else a failure
/// reason (with BEP 31 `retry in` when it says when) and 200.
fn http_refusal(body: &mut Vec<u8>, refusal: &Refusal) -> Status {
    write_refusal(body, refusal);
    match refusal.kind {
        RefusalKind::Forbidden => Status::Forbidden,
        _ => Status::Ok,
    }
}

impl Shard {
    /// The request hooks' verdict on an HTTP sender: `Some(status)` with
    /// the refusal written to `body`, or `None` to go on.
    fn check_http_request(
        &self,
        source: IpAddr,
        kind: RequestKind,
        body: &mut Vec<u8>,
    ) -> Option<Status> {
        let mut tracker = self.tracker.borrow_mut();
        if !tracker.checks_requests() {
            return None;
        }
        let request = RequestContext {
            protocol: Protocol::Http,
            source,
            kind,
            now: self.coarse_clock.get().mono,
        };
        let refusal = tracker.check_request(&request).err()?;
        Some(http_refusal(body, &refusal))
    }

    /// An announce from a connection on this shard: answered here when
    /// this shard owns the infohash, else by the owner.
    async fn http_announce(
        &self,
        query: &[u8],
        passkey: Option<&[u8]>,
        source: IpAddr,
        body: &mut Vec<u8>,
        after: &mut Vec<AfterAnnounce>,
    ) -> Status {
        if let Some(status) = self.check_http_request(source, RequestKind::Announce, body) {
            return status;
        }
        let parsed = match query::parse_announce(query) {
            Ok(p) => p,
            Err(e) => {
                bencode::failure(body, &e.to_string());
                return Status::BadRequest;
            }
        };
        let mut announce = parsed.announce;
        if let Some(passkey) = passkey {
            announce.passkey = Some(passkey.into());
        }
        if self.tracker.borrow().wants_params() {
            announce.query = Some(query.into());
        }
        let mut job = HttpAnnounceJob {
            origin: Origin {
                protocol: Protocol::Http,
                source,
                claimed: parsed.ip,
                dual: Dual {
                    ipv4: parsed.ipv4,
                    ipv6: parsed.ipv6,
                },
            },
            announce,
            compact: parsed.compact,
            no_peer_id: parsed.no_peer_id,
        };
        let owner = self.common.owner.of(&job.announce.info_hash);
        if owner == self.id {
            self.answer_http_announce(&mut job, self.coarse_clock.get().mono, body, after);
            return Status::Ok;
        }
        let id = self.mesh.http_waiters.register();
        self.forward(
            owner,
            Forward::HttpAnnounce {
                origin: self.id as u16,
                id,
                job: Box::new(job),
            },
        );
        self.mesh.flush_notify.notify();
        match self.mesh.http_waiters.wait(id).await {
            HttpReply::Body(b) => body.extend_from_slice(&b),
            HttpReply::Scrape(_) | HttpReply::Slice(_) => bencode::failure(body, "internal error"),
        }
        Status::Ok
    }

    /// Whether a full scrape may go ahead (`Status::Ok`), else the refusal
    /// written to `body`: a request hook's, or 403 for a client without
    /// the token or a trusted address.
    fn check_full_scrape(
        &self,
        full: &query::FullScrapeQuery,
        client: IpAddr,
        body: &mut Vec<u8>,
    ) -> Status {
        if let Some(status) = self.check_http_request(client, RequestKind::Scrape, body) {
            return status;
        }
        let allowed = self
            .http
            .full_scrape
            .as_ref()
            .is_some_and(|gate| gate.allows(client, full.token.as_deref()));
        if allowed {
            Status::Ok
        } else {
            bencode::failure(body, "full scrape not allowed");
            Status::Forbidden
        }
    }

    async fn http_scrape(
        &self,
        query: &[u8],
        passkey: Option<&[u8]>,
        client_ip: IpAddr,
        body: &mut Vec<u8>,
    ) -> Status {
        if let Some(status) = self.check_http_request(client_ip, RequestKind::Scrape, body) {
            return status;
        }
        let mut hashes: Vec<InfoHash> = Vec::new();
        if let Err(e) = query::parse_scrape(
            query,
            self.tracker.borrow().settings().max_scrape,
            &mut hashes,
        ) {
            bencode::failure(body, &e.to_string());
            return Status::BadRequest;
        }
        let request = ScrapeRequest {
            protocol: Protocol::Http,
            client: Client {
                ip: client_ip,
                port: 0,
            },
            info_hashes: &hashes,
            passkey,
        };
        let checked = self.tracker.borrow_mut().check_scrape(&request);
        match checked {
            Ok(()) => {}
            Err(Rejection::BadRequest(reason)) => {
                bencode::failure(body, reason);
                return Status::BadRequest;
            }
            Err(Rejection::Refused(refusal)) => return http_refusal(body, &refusal),
        }
        let waiter = Cell::new(None);
        let counts = match self.gather_scrape(&hashes, None, || {
            let id = self.mesh.http_waiters.register();
            waiter.set(Some(id));
            ScrapeReplyTo::Http { waiter: id }
        }) {
            Some(counts) => counts,
            None => {
                self.mesh.flush_notify.notify();
                let id = waiter.get().expect("a gather registers its waiter");
                match self.mesh.http_waiters.wait(id).await {
                    HttpReply::Scrape(counts) => counts,
                    _ => vec![Counts::default(); hashes.len()],
                }
            }
        };
        http_scrape_body(body, &hashes, &counts);
        let mut tracker = self.tracker.borrow_mut();
        if tracker.wants_after_scrape() {
            tracker.after_scrape(&request, &counts);
        }
        Status::Ok
    }
}
