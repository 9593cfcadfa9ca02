//! UDP worker loop: several connected non-blocking sockets, each with a
//! window of `inflight` request slots. Requests go out with `sendmmsg` and
//! answers come in with `recvmmsg`, up to [`BATCH`] per call, so the
//! per-packet cost is kernel work only; requests are patched templates in
//! preallocated buffers, nothing is allocated per request.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use socket2::{Domain, Protocol, Socket, Type};

use crate::options::{CONNECTION_ID_LIFETIME, MAX_UDP_SCRAPE};
use crate::stats::{ErrorKind, WorkerStats};
use crate::udp::{
    check_response, put_scrape_hash, response_header, write_connect, write_scrape_header,
    AnnounceFields, AnnounceTemplate, Checked, Expect, TidCodec,
};
use crate::worker::{errno, Phase, WorkerCtx};
use crate::workload::{mix64, MixSampler, RequestKind, Rng, Workload};
use crate::Error;

/// Datagrams per sendmmsg/recvmmsg call.
const BATCH: usize = 64;
/// Receive buffer per datagram: larger answers are flagged MSG_TRUNC and
/// counted as bad length (BEP 15 answers stay below 1500 bytes).
const RECV_STRIDE: usize = 2048;
const SEND_STRIDE: usize = 16 + 20 * MAX_UDP_SCRAPE;
/// How often outstanding requests are checked for timeouts.
const TIMEOUT_SCAN_NS: u64 = 10_000_000;
/// How often the progress counters are published.
const PUBLISH_NS: u64 = 1_000_000;
/// Empty passes over all sockets before sleeping in ppoll.
const SPIN_PASSES: u32 = 32;

#[derive(Clone, Copy)]
struct Slot {
    sent_ns: u64,
    tid: u32,
    /// Id of the last request in this slot that timed out, to tell a late
    /// answer from an invented one.
    expired_tid: Option<u32>,
    kind: RequestKind,
    scrape_n: u8,
    out: bool,
    /// The connect this socket waits on for a (new) connection id.
    forced_connect: bool,
}

struct Sock {
    socket: Socket,
    codec: TidCodec,
    slots: Vec<Slot>,
    free: Vec<u16>,
    generation: u16,
    connection_id: Option<[u8; 8]>,
    connected_ns: u64,
    connect_pending: bool,
}

impl Sock {
    fn new(socket: Socket, salt: u32, inflight: usize, generation: u16) -> Self {
        let idle = Slot {
            sent_ns: 0,
            tid: 0,
            expired_tid: None,
            kind: RequestKind::Connect,
            scrape_n: 0,
            out: false,
            forced_connect: false,
        };
        Sock {
            socket,
            codec: TidCodec::new(salt),
            slots: vec![idle; inflight],
            // Reversed so slots are used from 0 up: easier to read in traces.
            free: (0..inflight as u16).rev().collect(),
            generation,
            connection_id: None,
            connected_ns: 0,
            connect_pending: false,
        }
    }

    /// Takes a free slot for a request of `kind` sent at `now`; its id.
    fn take_slot(
        &mut self,
        kind: RequestKind,
        scrape_n: u8,
        forced: bool,
        now: u64,
    ) -> Option<(u16, u32)> {
        let idx = self.free.pop()?;
        self.generation = self.generation.wrapping_add(1);
        let tid = self.codec.encode(idx, self.generation);
        let slot = &mut self.slots[idx as usize];
        *slot = Slot {
            sent_ns: now,
            tid,
            expired_tid: slot.expired_tid,
            kind,
            scrape_n,
            out: true,
            forced_connect: forced,
        };
        if forced {
            self.connect_pending = true;
        }
        Some((idx, tid))
    }

    fn outstanding(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// recvmmsg arrays over one contiguous buffer. The pointers are set right
/// before each call, so nothing self-referential outlives a call.
struct RecvBatch {
    buf: Vec<u8>,
    stride: usize,
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    fn new(stride: usize) -> Self {
        RecvBatch {
            buf: vec![0u8; stride * BATCH],
            stride,
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            // SAFETY: mmsghdr is plain C data for which all-zero is valid.
            msgs: vec![unsafe { std::mem::zeroed() }; BATCH],
        }
    }

    fn datagram(&self, i: usize) -> (&[u8], bool) {
        let len = self.msgs[i].msg_len as usize;
        let trunc = self.msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        (
            &self.buf[i * self.stride..i * self.stride + len.min(self.stride)],
            trunc,
        )
    }

    /// Points the first `n` messages at their buffers.
    fn prepare(&mut self, n: usize) {
        let base = self.buf.as_mut_ptr();
        for i in 0..n {
            // SAFETY: i < BATCH, so the offset stays inside `buf`.
            self.iov[i].iov_base = unsafe { base.add(i * self.stride) }.cast();
            self.iov[i].iov_len = self.stride;
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = std::ptr::null_mut();
            h.msg_namelen = 0;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
    }
}

/// `setsockopt`/cmsg option of UDP GSO (linux/udp.h; not in every libc).
const UDP_SEGMENT: libc::c_int = 103;

/// One sendmmsg worth of requests. With GSO, announces (all 98 bytes) are
/// laid back to back and go as a single UDP_SEGMENT message: the kernel
/// runs its send path once for all of them and splits them into ordinary
/// datagrams, so the server sees the same packets for a fraction of our
/// CPU. Connects and scrapes (and announces without GSO) are one message
/// each.
struct SendBatch {
    gso: bool,
    /// Bytes of each announce (all the same: one GSO segment size).
    alen: usize,
    abuf: Vec<u8>,
    aslots: [u16; BATCH],
    na: usize,
    obuf: Vec<u8>,
    olens: [usize; BATCH],
    oslots: [u16; BATCH],
    okinds: [RequestKind; BATCH],
    no: usize,
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    /// Room for one cmsghdr + u16, 8-byte aligned.
    cmsg: [u64; 4],
}

impl SendBatch {
    fn new(gso: bool, alen: usize) -> Self {
        SendBatch {
            gso,
            alen,
            abuf: vec![0u8; BATCH * alen],
            aslots: [0; BATCH],
            na: 0,
            obuf: vec![0u8; BATCH * SEND_STRIDE],
            olens: [0; BATCH],
            oslots: [0; BATCH],
            okinds: [RequestKind::Connect; BATCH],
            no: 0,
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH + 1
            ],
            // SAFETY: mmsghdr is plain C data for which all-zero is valid.
            msgs: vec![unsafe { std::mem::zeroed() }; BATCH + 1],
            cmsg: [0; 4],
        }
    }

    fn len(&self) -> usize {
        self.na + self.no
    }

    fn clear(&mut self) {
        self.na = 0;
        self.no = 0;
    }

    fn grouped(&self, kind: RequestKind) -> bool {
        self.gso && kind == RequestKind::Announce
    }

    /// Where the next request of `kind` is to be written.
    fn buf(&mut self, kind: RequestKind) -> &mut [u8] {
        if self.grouped(kind) {
            &mut self.abuf[self.na * self.alen..(self.na + 1) * self.alen]
        } else {
            &mut self.obuf[self.no * SEND_STRIDE..(self.no + 1) * SEND_STRIDE]
        }
    }

    fn commit(&mut self, kind: RequestKind, slot: u16, len: usize) {
        if self.grouped(kind) {
            self.aslots[self.na] = slot;
            self.na += 1;
        } else {
            self.oslots[self.no] = slot;
            self.okinds[self.no] = kind;
            self.olens[self.no] = len;
            self.no += 1;
        }
    }

    /// Sends everything; returns how many grouped announces and how many
    /// other requests the kernel took, or the errno.
    fn send(&mut self, fd: libc::c_int) -> Result<(usize, usize), i32> {
        let mut m = 0;
        if self.na > 0 {
            self.iov[0] = libc::iovec {
                iov_base: self.abuf.as_mut_ptr().cast(),
                iov_len: self.na * self.alen,
            };
            let h = &mut self.msgs[0].msg_hdr;
            *h = msghdr(&mut self.iov[0]);
            if self.na > 1 {
                // SAFETY: cmsg is large and aligned enough for one header
                // with a u16 payload (CMSG_SPACE(2) = 24 bytes).
                unsafe {
                    h.msg_control = self.cmsg.as_mut_ptr().cast();
                    h.msg_controllen = libc::CMSG_SPACE(2) as _;
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), self.alen as u16);
                }
            }
            m = 1;
        }
        let base = self.obuf.as_mut_ptr();
        for j in 0..self.no {
            // SAFETY: j < BATCH, so the offset stays inside obuf.
            self.iov[m + j] = libc::iovec {
                iov_base: unsafe { base.add(j * SEND_STRIDE) }.cast(),
                iov_len: self.olens[j],
            };
            self.msgs[m + j].msg_hdr = msghdr(&mut self.iov[m + j]);
        }
        // SAFETY: msgs, iov, cmsg and the buffers live across the call.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                (m + self.no) as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            return Err(errno());
        }
        let r = r as usize;
        Ok(if m == 1 {
            (if r >= 1 { self.na } else { 0 }, r.saturating_sub(1))
        } else {
            (0, r)
        })
    }
}

fn msghdr(iov: &mut libc::iovec) -> libc::msghdr {
    // SAFETY: msghdr is plain C data for which all-zero is valid.
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_iov = iov;
    h.msg_iovlen = 1;
    h
}

/// Constant inputs of the response checks.
struct Consts {
    numwant: u32,
    ipv6: bool,
}

pub fn run(ctx: WorkerCtx) -> Result<WorkerStats, Error> {
    let opts = &ctx.opts;
    let mut phase = Phase::new(&ctx);
    let mut stats = phase.stats();
    let workload: &Workload = &ctx.workload;
    let mut rng = Rng::new(mix64(
        opts.seed ^ (ctx.index as u64 + 1).wrapping_mul(0x9e37_79b9),
    ));
    let mix = MixSampler::new(opts.mix, true);
    let template = AnnounceTemplate::with_url_data(opts.numwant, opts.url_data.as_bytes());
    let consts = Consts {
        numwant: opts.numwant,
        ipv6: opts.target.is_ipv6(),
    };
    let scrape_n = opts.scrape_size.min(MAX_UDP_SCRAPE);
    let timeout_ns = opts.timeout.as_nanos() as u64;
    let lifetime_ns = CONNECTION_ID_LIFETIME.as_nanos() as u64;

    let mut socks = Vec::with_capacity(opts.sockets);
    for _ in 0..opts.sockets {
        let domain = if opts.target.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let target = opts.target;
        let ctx_err =
            |what: &'static str| move |e| Error::Io(format!("udp socket to {target}: {what}"), e);
        let socket =
            Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(ctx_err("create"))?;
        socket
            .set_nonblocking(true)
            .map_err(ctx_err("nonblocking"))?;
        // Room for a full window of answers; the kernel caps it at rmem_max.
        let _ = socket.set_recv_buffer_size(4 << 20);
        // Connected: the kernel reuses the route, and only the target's
        // datagrams reach us.
        socket
            .connect(&opts.target.into())
            .map_err(ctx_err("connect"))?;
        let salt = rng.next_u64() as u32;
        let generation = rng.next_u64() as u16;
        socks.push(Sock::new(socket, salt, opts.inflight, generation));
    }
    let mut pollfds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();

    let mut sendb = SendBatch::new(opts.gso, template.size());
    let mut recvb = RecvBatch::new(RECV_STRIDE);

    // Open loop: per-worker share of the rate, in requests per ns.
    let workers = opts.worker_count() as f64;
    let rate_per_ns = opts.rate.map(|r| r / workers / 1e9);
    let burst = rate_per_ns.map_or(0.0, |r| (r * 5e6).max((BATCH * opts.sockets) as f64));
    let mut tokens = 0.0f64;
    let mut last_tick = 0u64;

    let mut last_scan = 0u64;
    let mut last_publish = 0u64;
    let mut idle_passes = 0u32;
    let live = ctx.live();

    loop {
        let mut now = phase.now_ns();
        if now >= phase.end_ns || ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        phase.check_warmup(now, &mut stats);
        if let Some(r) = rate_per_ns {
            tokens += (now - last_tick) as f64 * r;
            last_tick = now;
            if tokens > burst {
                stats.skipped += (tokens - burst) as u64;
                tokens = burst;
            }
        }

        let mut progress = false;
        for sock in socks.iter_mut() {
            if sock.outstanding() > 0 {
                recvb.prepare(BATCH);
                let fd = sock.socket.as_raw_fd();
                // SAFETY: msgs/iov point into recvb.buf, valid for the call.
                let n = unsafe {
                    libc::recvmmsg(
                        fd,
                        recvb.msgs.as_mut_ptr(),
                        BATCH as u32,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if n > 0 {
                    progress = true;
                    now = phase.now_ns();
                    let interval = phase.interval(now);
                    for i in 0..n as usize {
                        let (dgram, trunc) = recvb.datagram(i);
                        handle(sock, &mut stats, &consts, dgram, trunc, now, interval);
                    }
                } else if n < 0 {
                    socket_error(&mut stats, errno());
                }
            }

            // Fill free slots.
            let budget = match rate_per_ns {
                Some(_) => (tokens as usize).min(BATCH),
                None => BATCH,
            };
            sendb.clear();
            while sendb.len() < budget {
                if sock.free.is_empty() {
                    break;
                }
                let need_connect = match sock.connection_id {
                    None => true,
                    Some(_) => now.saturating_sub(sock.connected_ns) >= lifetime_ns,
                };
                let (kind, forced) = if need_connect && !sock.connect_pending {
                    (RequestKind::Connect, true)
                } else if sock.connection_id.is_none() {
                    // Waiting for a connection id: nothing else can go out.
                    break;
                } else {
                    (mix.sample(&mut rng), false)
                };
                let n = if kind == RequestKind::Scrape {
                    scrape_n as u8
                } else {
                    0
                };
                let Some((idx, tid)) = sock.take_slot(kind, n, forced, now) else {
                    break;
                };
                let connection_id = sock.connection_id.unwrap_or_default();
                let buf = sendb.buf(kind);
                let len = match kind {
                    RequestKind::Connect => write_connect(buf, tid),
                    RequestKind::Announce => {
                        let peer = workload.peer(&mut rng);
                        let f = AnnounceFields {
                            connection_id,
                            tid,
                            info_hash: workload.info_hash(&mut rng),
                            peer_id: &peer.peer_id,
                            left: workload.left(&mut rng),
                            key: peer.key,
                            port: peer.port,
                        };
                        template.write(buf, &f)
                    }
                    RequestKind::Scrape => {
                        let h = write_scrape_header(buf, connection_id, tid);
                        for j in 0..scrape_n {
                            put_scrape_hash(buf, j, workload.info_hash(&mut rng));
                        }
                        h + 20 * scrape_n
                    }
                };
                sendb.commit(kind, idx, len);
            }
            if sendb.len() > 0 {
                let (a_sent, o_sent) = match sendb.send(sock.socket.as_raw_fd()) {
                    Ok(r) => r,
                    Err(e) => {
                        if sendb.na > 1
                            && matches!(
                                e,
                                libc::EINVAL | libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP
                            )
                        {
                            // No UDP GSO here (old kernel, odd route): send
                            // announces one by one from now on.
                            sendb.gso = false;
                        } else if e != libc::EAGAIN && e != libc::ENOBUFS {
                            socket_error(&mut stats, e);
                        }
                        (0, 0)
                    }
                };
                for _ in 0..a_sent {
                    stats.sent(RequestKind::Announce);
                }
                for &k in &sendb.okinds[..o_sent] {
                    stats.sent(k);
                }
                // Whatever the kernel did not take goes back to the pool.
                for &idx in sendb.aslots[a_sent..sendb.na]
                    .iter()
                    .chain(&sendb.oslots[o_sent..sendb.no])
                {
                    let slot = &mut sock.slots[idx as usize];
                    slot.out = false;
                    if slot.forced_connect {
                        sock.connect_pending = false;
                    }
                    sock.free.push(idx);
                }
                let sent = a_sent + o_sent;
                if sent > 0 {
                    progress = true;
                    tokens -= sent as f64;
                }
            }
        }

        if now.saturating_sub(last_scan) >= TIMEOUT_SCAN_NS {
            last_scan = now;
            for sock in socks.iter_mut() {
                expire(sock, &mut stats, now, timeout_ns);
            }
        }
        if now.saturating_sub(last_publish) >= PUBLISH_NS {
            last_publish = now;
            live.publish(&phase.base, &stats);
        }

        if progress {
            idle_passes = 0;
        } else {
            idle_passes += 1;
            if idle_passes >= SPIN_PASSES {
                // Nothing moves: sleep until an answer arrives, the next
                // open-loop token is due, or 1 ms (timeouts, end of run).
                let mut wait_ns = 1_000_000u64;
                if let Some(r) = rate_per_ns {
                    let due = ((1.0 - tokens).max(0.0) / r) as u64;
                    wait_ns = wait_ns.min(due);
                }
                if wait_ns > 20_000 {
                    wait(&mut pollfds, wait_ns);
                }
            }
        }
    }

    stats.outstanding_at_end = socks.iter().map(|s| s.outstanding() as u64).sum();
    live.publish(&phase.base, &stats);
    Ok(stats)
}

/// Matches one datagram to its slot, frees the slot and checks it.
#[inline]
fn handle(
    sock: &mut Sock,
    stats: &mut WorkerStats,
    c: &Consts,
    dgram: &[u8],
    trunc: bool,
    now: u64,
    interval: usize,
) {
    let Some((_, tid)) = response_header(dgram) else {
        stats.error(ErrorKind::Truncated);
        return;
    };
    let idx = sock.codec.slot(tid);
    let Some(slot) = sock.slots.get_mut(idx) else {
        stats.error(ErrorKind::UnknownTransaction);
        return;
    };
    if !slot.out || slot.tid != tid {
        if slot.expired_tid == Some(tid) {
            slot.expired_tid = None;
            stats.late += 1;
        } else {
            stats.error(ErrorKind::UnknownTransaction);
        }
        return;
    }
    slot.out = false;
    let slot = *slot;
    sock.free.push(idx as u16);
    if slot.forced_connect {
        sock.connect_pending = false;
    }
    if trunc {
        stats.error(ErrorKind::BadLength);
        return;
    }
    let expect = Expect {
        kind: slot.kind,
        scrape_n: usize::from(slot.scrape_n),
        numwant: c.numwant,
        ipv6: c.ipv6,
    };
    let latency = now.saturating_sub(slot.sent_ns);
    match check_response(dgram, &expect) {
        Ok(Checked::Connect { connection_id }) => {
            // Whatever 8 bytes the server hands out are used from now on.
            sock.connection_id = Some(connection_id);
            sock.connected_ns = now;
            stats.ok(slot.kind, latency, interval);
        }
        Ok(Checked::Announce { peers }) => {
            stats.peers_received += peers as u64;
            stats.ok(slot.kind, latency, interval);
        }
        Ok(Checked::Scrape) => stats.ok(slot.kind, latency, interval),
        Err(ErrorKind::ErrorAction) => {
            stats.error(ErrorKind::ErrorAction);
            // Most likely an expired or unknown connection id: get a new one.
            if slot.kind != RequestKind::Connect {
                sock.connection_id = None;
            }
        }
        Err(e) => stats.error(e),
    }
}

/// Frees the slots of requests unanswered for longer than the timeout.
fn expire(sock: &mut Sock, stats: &mut WorkerStats, now: u64, timeout_ns: u64) {
    for (i, slot) in sock.slots.iter_mut().enumerate() {
        if slot.out && now.saturating_sub(slot.sent_ns) > timeout_ns {
            slot.out = false;
            slot.expired_tid = Some(slot.tid);
            stats.timeouts += 1;
            if slot.forced_connect {
                sock.connect_pending = false;
            }
            sock.free.push(i as u16);
        }
    }
}

fn socket_error(stats: &mut WorkerStats, e: i32) {
    match e {
        libc::EAGAIN | libc::EINTR => {}
        // An ICMP port unreachable reported on the connected socket.
        libc::ECONNREFUSED => stats.error(ErrorKind::Connection),
        _ => stats.error(ErrorKind::Socket),
    }
}

fn wait(pollfds: &mut [libc::pollfd], ns: u64) {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: pollfds is a valid array of its length; ts outlives the call.
    unsafe {
        libc::ppoll(
            pollfds.as_mut_ptr(),
            pollfds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock() -> Sock {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        Sock::new(socket, 0x5eed_1234, 4, 100)
    }

    fn announce_reply(tid: u32, peers: usize) -> Vec<u8> {
        let mut r = vec![0, 0, 0, 1];
        r.extend_from_slice(&tid.to_be_bytes());
        r.resize(20 + 6 * peers, 0);
        r
    }

    const C: Consts = Consts {
        numwant: 50,
        ipv6: false,
    };

    #[test]
    fn matches_answers_to_outstanding_requests_only() {
        let mut s = sock();
        let mut stats = WorkerStats::new(1);
        let (_, tid) = s.take_slot(RequestKind::Announce, 0, false, 1_000).unwrap();
        assert_eq!(s.outstanding(), 1);

        // Wrong transaction id: an error, and the request stays outstanding.
        handle(
            &mut s,
            &mut stats,
            &C,
            &announce_reply(tid ^ 0x0001_0000, 2),
            false,
            5_000,
            0,
        );
        assert_eq!(stats.errors[ErrorKind::UnknownTransaction as usize], 1);
        assert_eq!((stats.responses, s.outstanding()), (0, 1));

        handle(
            &mut s,
            &mut stats,
            &C,
            &announce_reply(tid, 2),
            false,
            5_000,
            0,
        );
        assert_eq!(
            (stats.responses, stats.peers_received, s.outstanding()),
            (1, 2, 0)
        );

        // The same answer again has nothing left to match.
        handle(
            &mut s,
            &mut stats,
            &C,
            &announce_reply(tid, 2),
            false,
            6_000,
            0,
        );
        assert_eq!(stats.errors[ErrorKind::UnknownTransaction as usize], 2);
        // Too short to carry a transaction id at all.
        handle(&mut s, &mut stats, &C, &[0, 0, 0], false, 6_000, 0);
        assert_eq!(stats.errors[ErrorKind::Truncated as usize], 1);
        // Cut by the receive buffer.
        let (_, tid) = s.take_slot(RequestKind::Announce, 0, false, 7_000).unwrap();
        handle(
            &mut s,
            &mut stats,
            &C,
            &announce_reply(tid, 2),
            true,
            8_000,
            0,
        );
        assert_eq!(stats.errors[ErrorKind::BadLength as usize], 1);
    }

    #[test]
    fn timeouts_free_slots_and_late_answers_are_not_errors() {
        let mut s = sock();
        let mut stats = WorkerStats::new(1);
        let (_, tid) = s.take_slot(RequestKind::Announce, 0, false, 0).unwrap();
        expire(&mut s, &mut stats, 500, 1_000);
        assert_eq!((stats.timeouts, s.outstanding()), (0, 1));
        expire(&mut s, &mut stats, 1_001, 1_000);
        assert_eq!((stats.timeouts, s.outstanding()), (1, 0));
        handle(
            &mut s,
            &mut stats,
            &C,
            &announce_reply(tid, 1),
            false,
            2_000,
            0,
        );
        assert_eq!(
            (stats.late, stats.error_total(), stats.responses),
            (1, 0, 0)
        );
    }

    #[test]
    fn connection_ids_are_taken_from_replies_and_dropped_on_errors() {
        let mut s = sock();
        let mut stats = WorkerStats::new(1);
        let (_, tid) = s.take_slot(RequestKind::Connect, 0, true, 0).unwrap();
        assert!(s.connect_pending);
        let mut reply = vec![0, 0, 0, 0];
        reply.extend_from_slice(&tid.to_be_bytes());
        reply.extend_from_slice(&[9, 8, 7, 6, 5, 4, 3, 2]);
        handle(&mut s, &mut stats, &C, &reply, false, 10, 0);
        assert_eq!(s.connection_id, Some([9, 8, 7, 6, 5, 4, 3, 2]));
        assert!(!s.connect_pending);
        assert_eq!(stats.by_kind[RequestKind::Connect as usize], 1);

        let (_, tid) = s.take_slot(RequestKind::Scrape, 3, false, 20).unwrap();
        let mut err = vec![0, 0, 0, 3];
        err.extend_from_slice(&tid.to_be_bytes());
        err.extend_from_slice(b"bad connection id");
        handle(&mut s, &mut stats, &C, &err, false, 30, 0);
        assert_eq!(stats.errors[ErrorKind::ErrorAction as usize], 1);
        assert_eq!(s.connection_id, None, "an error reply forces a new connect");
    }
}
