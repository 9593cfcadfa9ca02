//! HTTP worker loop: non-blocking keep-alive TCP connections under one
//! edge-triggered epoll, each pipelining up to `inflight` requests (the
//! server must answer in order, as HTTP/1.1 requires). Buffers are per
//! connection and reused; nothing is allocated per request.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;

use socket2::{Domain, Protocol, Socket, Type};

use crate::http::{check_response, parse_head, Checked, RequestBuilder, MAX_BODY, MAX_HEAD};
use crate::stats::{ErrorKind, WorkerStats};
use crate::worker::{errno, Phase, WorkerCtx};
use crate::workload::{mix64, MixSampler, RequestKind, Rng, Workload};
use crate::Error;

const TIMEOUT_SCAN_NS: u64 = 10_000_000;
const PUBLISH_NS: u64 = 1_000_000;
/// Pause before reconnecting after a failed or refused connect, so a dead
/// server is not hammered.
const RECONNECT_BACKOFF_NS: u64 = 100_000_000;
const READ_CHUNK: usize = 64 * 1024;
const MAX_EVENTS: usize = 256;

struct Pending {
    kind: RequestKind,
    sent_ns: u64,
    scrape_n: u16,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// No socket; (re)connect at this time.
    Closed(u64),
    Connecting(u64),
    Open,
}

struct Conn {
    socket: Option<Socket>,
    state: State,
    wbuf: Vec<u8>,
    wpos: usize,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    pending: VecDeque<Pending>,
    /// The server announced it closes after the answer just read.
    closing: bool,
    /// Already in the list of connections to top up.
    queued: bool,
}

struct Http<'a> {
    ctx: &'a WorkerCtx,
    workload: &'a Workload,
    builder: RequestBuilder,
    mix: MixSampler,
    rng: Rng,
    epoll: RawFd,
    conns: Vec<Conn>,
    /// Connections with free window slots to top up (closed loop).
    kick: Vec<usize>,
    stats: WorkerStats,
    interval: usize,
    now: u64,
}

impl Drop for Http<'_> {
    fn drop(&mut self) {
        // SAFETY: the epoll fd is ours and closed exactly once.
        unsafe { libc::close(self.epoll) };
    }
}

pub fn run(ctx: WorkerCtx) -> Result<WorkerStats, Error> {
    let opts = &ctx.opts;
    let mut phase = Phase::new(&ctx);
    // SAFETY: plain syscall; the result is checked.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return Err(Error::Io(
            "epoll_create1".into(),
            io::Error::last_os_error(),
        ));
    }
    let mut h = Http {
        ctx: &ctx,
        workload: &ctx.workload,
        builder: RequestBuilder::new(
            opts.target,
            &opts.announce_path,
            &opts.scrape_path,
            opts.numwant,
        ),
        mix: MixSampler::new(opts.mix, false),
        rng: Rng::new(mix64(
            opts.seed ^ (ctx.index as u64 + 1).wrapping_mul(0x51_7cc1_b727),
        )),
        epoll,
        conns: (0..opts.sockets)
            .map(|_| Conn {
                socket: None,
                state: State::Closed(0),
                wbuf: Vec::with_capacity(4096),
                wpos: 0,
                rbuf: vec![0u8; READ_CHUNK],
                rstart: 0,
                rend: 0,
                pending: VecDeque::with_capacity(opts.inflight),
                closing: false,
                queued: false,
            })
            .collect(),
        kick: Vec::with_capacity(opts.sockets),
        stats: phase.stats(),
        interval: usize::MAX,
        now: 0,
    };

    let timeout_ns = opts.timeout.as_nanos() as u64;
    let workers = opts.worker_count() as f64;
    let rate_per_ns = opts.rate.map(|r| r / workers / 1e9);
    let burst = rate_per_ns.map_or(0.0, |r| (r * 5e6).max(opts.sockets as f64));
    let mut tokens = 0.0f64;
    let mut last_tick = 0u64;
    let mut cursor = 0usize;
    let mut last_scan = 0u64;
    let mut last_publish = 0u64;
    // SAFETY: epoll_event is plain C data.
    let mut events: Vec<libc::epoll_event> = vec![unsafe { std::mem::zeroed() }; MAX_EVENTS];
    let live = ctx.live();

    loop {
        h.now = phase.now_ns();
        if h.now >= phase.end_ns || ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        phase.check_warmup(h.now, &mut h.stats);
        h.interval = phase.interval(h.now);

        // (Re)connect what is due.
        for i in 0..h.conns.len() {
            if let State::Closed(at) = h.conns[i].state {
                if at <= h.now {
                    h.connect(i);
                }
            }
        }

        if let Some(r) = rate_per_ns {
            tokens += (h.now - last_tick) as f64 * r;
            last_tick = h.now;
            if tokens > burst {
                h.stats.skipped += (tokens - burst) as u64;
                tokens = burst;
            }
        }

        let wait_ms = match rate_per_ns {
            Some(_) if tokens >= 1.0 => 0,
            _ => 1,
        };
        // SAFETY: events has MAX_EVENTS entries.
        let n =
            unsafe { libc::epoll_wait(h.epoll, events.as_mut_ptr(), MAX_EVENTS as i32, wait_ms) };
        if n > 0 {
            h.now = phase.now_ns();
            h.interval = phase.interval(h.now);
            for ev in &events[..n as usize] {
                let (idx, flags) = (ev.u64 as usize, ev.events);
                h.on_event(idx, flags);
            }
        }

        match rate_per_ns {
            None => {
                while let Some(i) = h.kick.pop() {
                    h.conns[i].queued = false;
                    while h.can_send(i) {
                        h.push_request(i);
                    }
                    h.flush(i);
                }
            }
            Some(_) => {
                h.kick.iter().for_each(|&i| h.conns[i].queued = false);
                h.kick.clear();
                // Hand out whole tokens round-robin to connections with room.
                let mut idle_round = 0;
                while tokens >= 1.0 && idle_round < h.conns.len() {
                    let i = cursor;
                    cursor = (cursor + 1) % h.conns.len();
                    if h.can_send(i) {
                        h.push_request(i);
                        h.flush(i);
                        tokens -= 1.0;
                        idle_round = 0;
                    } else {
                        idle_round += 1;
                    }
                }
            }
        }

        if h.now.saturating_sub(last_scan) >= TIMEOUT_SCAN_NS {
            last_scan = h.now;
            h.expire(timeout_ns);
        }
        if h.now.saturating_sub(last_publish) >= PUBLISH_NS {
            last_publish = h.now;
            live.publish(&phase.base, &h.stats);
        }
    }

    h.stats.outstanding_at_end = h.conns.iter().map(|c| c.pending.len() as u64).sum();
    live.publish(&phase.base, &h.stats);
    Ok(std::mem::replace(&mut h.stats, WorkerStats::new(0)))
}

impl Http<'_> {
    fn can_send(&self, i: usize) -> bool {
        let c = &self.conns[i];
        c.state == State::Open && !c.closing && c.pending.len() < self.ctx.opts.inflight
    }

    fn queue(&mut self, i: usize) {
        if !self.conns[i].queued {
            self.conns[i].queued = true;
            self.kick.push(i);
        }
    }

    fn connect(&mut self, i: usize) {
        let target = self.ctx.opts.target;
        let domain = if target.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let socket = match Socket::new(domain, Type::STREAM, Some(Protocol::TCP)) {
            Ok(s) => s,
            Err(_) => return self.connect_failed(i),
        };
        if socket.set_nonblocking(true).is_err() || socket.set_nodelay(true).is_err() {
            return self.connect_failed(i);
        }
        let state = match socket.connect(&target.into()) {
            Ok(()) => State::Open,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => State::Connecting(self.now),
            Err(_) => return self.connect_failed(i),
        };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: i as u64,
        };
        // SAFETY: valid epoll fd, valid socket fd, ev outlives the call.
        if unsafe { libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_ADD, socket.as_raw_fd(), &mut ev) }
            != 0
        {
            return self.connect_failed(i);
        }
        let c = &mut self.conns[i];
        c.socket = Some(socket);
        c.state = state;
        c.closing = false;
        if state == State::Open {
            self.queue(i);
        }
    }

    fn connect_failed(&mut self, i: usize) {
        self.stats.error(ErrorKind::Connection);
        self.close(i, RECONNECT_BACKOFF_NS);
    }

    /// Drops the connection; requests still pending on it are errors
    /// (unless already counted, e.g. as timeouts, by the caller).
    fn close(&mut self, i: usize, backoff_ns: u64) {
        let c = &mut self.conns[i];
        for p in c.pending.drain(..) {
            if c.closing {
                // Pipelined past the server's `Connection: close`: HTTP
                // says to send these again, which the new connection
                // does. Not an error, and not sent after all.
                self.stats.unsent(p.kind);
            } else {
                self.stats.error(ErrorKind::Connection);
            }
        }
        if let Some(s) = c.socket.take() {
            // SAFETY: valid fds; a failure only means it was not registered.
            unsafe {
                libc::epoll_ctl(
                    self.epoll,
                    libc::EPOLL_CTL_DEL,
                    s.as_raw_fd(),
                    std::ptr::null_mut(),
                );
            }
        }
        c.wbuf.clear();
        c.wpos = 0;
        c.rstart = 0;
        c.rend = 0;
        c.closing = false;
        c.state = State::Closed(self.now + backoff_ns);
    }

    fn on_event(&mut self, i: usize, flags: u32) {
        let Some(c) = self.conns.get(i) else { return };
        let err = flags & (libc::EPOLLERR as u32) != 0;
        if let State::Connecting(_) = c.state {
            if flags & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 == 0 {
                return;
            }
            let ok = c
                .socket
                .as_ref()
                .is_some_and(|s| matches!(s.take_error(), Ok(None)))
                && !err;
            if !ok {
                return self.connect_failed(i);
            }
            self.conns[i].state = State::Open;
            self.queue(i);
        }
        if self.conns[i].state != State::Open {
            return;
        }
        if flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0
        {
            self.read(i);
        }
        if self.conns[i].state == State::Open && flags & libc::EPOLLOUT as u32 != 0 {
            self.flush(i);
        }
    }

    /// Reads until the socket is drained, checking complete responses.
    fn read(&mut self, i: usize) {
        loop {
            let c = &mut self.conns[i];
            let Some(fd) = c.socket.as_ref().map(|s| s.as_raw_fd()) else {
                return;
            };
            // Keep room to read into: move leftovers to the front, grow only
            // for responses larger than the buffer.
            if c.rstart > 0 && (c.rstart == c.rend || c.rbuf.len() - c.rend < READ_CHUNK / 4) {
                c.rbuf.copy_within(c.rstart..c.rend, 0);
                c.rend -= c.rstart;
                c.rstart = 0;
            }
            if c.rbuf.len() - c.rend < READ_CHUNK / 4 {
                let want = (c.rbuf.len() * 2).min(MAX_HEAD + MAX_BODY + READ_CHUNK);
                if want <= c.rbuf.len() {
                    self.stats.error(ErrorKind::HttpFraming);
                    return self.close(i, 0);
                }
                c.rbuf.resize(want, 0);
            }
            let spare = &mut c.rbuf[c.rend..];
            // SAFETY: reading into our own buffer's spare part.
            let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
            if n > 0 {
                c.rend += n as usize;
                if !self.parse(i) {
                    return;
                }
            } else if n == 0 {
                // Orderly close: fine when idle, an error with answers due.
                return self.close(i, 0);
            } else {
                match errno() {
                    libc::EAGAIN | libc::EINTR => return,
                    libc::ECONNRESET | libc::EPIPE => {
                        self.stats.error(ErrorKind::Connection);
                        return self.close(i, 0);
                    }
                    _ => {
                        self.stats.error(ErrorKind::Socket);
                        return self.close(i, RECONNECT_BACKOFF_NS);
                    }
                }
            }
        }
    }

    /// Consumes complete responses; false if the connection was closed.
    fn parse(&mut self, i: usize) -> bool {
        let numwant = self.ctx.opts.numwant;
        let mut freed = false;
        loop {
            let c = &mut self.conns[i];
            let avail = &c.rbuf[c.rstart..c.rend];
            if avail.is_empty() {
                break;
            }
            let head = match parse_head(avail) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    // The stream cannot be resynchronised.
                    self.stats.error(e);
                    self.close(i, 0);
                    return false;
                }
            };
            let total = head.head_len + head.content_length;
            if avail.len() < total {
                break;
            }
            let Some(p) = c.pending.pop_front() else {
                self.stats.error(ErrorKind::UnknownTransaction);
                self.close(i, 0);
                return false;
            };
            freed = true;
            let body = &avail[head.head_len..total];
            let latency = self.now.saturating_sub(p.sent_ns);
            match check_response(p.kind, head.status, body, numwant, usize::from(p.scrape_n)) {
                Ok(Checked::Announce { peers }) => {
                    self.stats.peers_received += peers as u64;
                    self.stats.ok(p.kind, latency, self.interval);
                }
                Ok(Checked::Scrape { .. }) => self.stats.ok(p.kind, latency, self.interval),
                Err(e) => self.stats.error(e),
            }
            c.rstart += total;
            if head.close {
                c.closing = true;
                self.close(i, 0);
                return false;
            }
        }
        if freed {
            self.queue(i);
        }
        true
    }

    /// Appends one request to the connection's write buffer.
    fn push_request(&mut self, i: usize) {
        let kind = self.mix.sample(&mut self.rng);
        let w = self.workload;
        let c = &mut self.conns[i];
        let mut scrape_n = 0;
        match kind {
            RequestKind::Scrape => {
                let n = self.ctx.opts.scrape_size;
                let rng = &mut self.rng;
                self.builder
                    .scrape(&mut c.wbuf, (0..n).map(|_| w.info_hash(rng)));
                scrape_n = n as u16;
            }
            _ => {
                let peer = w.peer(&mut self.rng);
                let left = w.left(&mut self.rng);
                self.builder
                    .announce(&mut c.wbuf, w.info_hash(&mut self.rng), &peer, left);
            }
        }
        c.pending.push_back(Pending {
            kind,
            sent_ns: self.now,
            scrape_n,
        });
        self.stats.sent(kind);
    }

    /// Writes as much of the write buffer as the socket takes.
    fn flush(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let Some(fd) = c.socket.as_ref().map(|s| s.as_raw_fd()) else {
            return;
        };
        while c.wpos < c.wbuf.len() {
            let rest = &c.wbuf[c.wpos..];
            // SAFETY: writing from our own buffer.
            let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
            if n >= 0 {
                c.wpos += n as usize;
                continue;
            }
            match errno() {
                // The EPOLLOUT edge will bring us back.
                libc::EAGAIN => return,
                libc::EINTR => continue,
                e => {
                    let kind = if e == libc::ECONNRESET || e == libc::EPIPE {
                        ErrorKind::Connection
                    } else {
                        ErrorKind::Socket
                    };
                    self.stats.error(kind);
                    return self.close(i, 0);
                }
            }
        }
        c.wbuf.clear();
        c.wpos = 0;
    }

    /// Requests unanswered past the timeout, and connects that hang: the
    /// connection is dropped and everything pending on it is a timeout.
    fn expire(&mut self, timeout_ns: u64) {
        for i in 0..self.conns.len() {
            let c = &mut self.conns[i];
            let stuck = match c.state {
                State::Connecting(since) => self.now.saturating_sub(since) > timeout_ns,
                State::Open => c
                    .pending
                    .front()
                    .is_some_and(|p| self.now.saturating_sub(p.sent_ns) > timeout_ns),
                State::Closed(_) => false,
            };
            if stuck {
                self.stats.timeouts += c.pending.len().max(1) as u64;
                c.pending.clear();
                self.close(i, 0);
            }
        }
    }
}
