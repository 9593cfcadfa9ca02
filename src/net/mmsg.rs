//! Batched datagram I/O with recvmmsg/sendmmsg: one system call moves up
//! to a whole batch. The header arrays point into buffers owned by the
//! same struct, allocated once; the pointers are set afresh right before
//! each call, so they are valid and derived from the latest borrow.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Room for any request or answer we handle (a full 74-hash scrape is
/// 1496 bytes); longer datagrams arrive truncated and are dropped.
pub const SLOT: usize = 2048;

struct Batch {
    data: Box<[u8]>,
    lens: Box<[usize]>,
    addrs: Box<[libc::sockaddr_storage]>,
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
}

impl Batch {
    fn new(size: usize) -> Self {
        Self {
            data: vec![0u8; size * SLOT].into_boxed_slice(),
            lens: vec![SLOT; size].into_boxed_slice(),
            // SAFETY: sockaddr_storage is plain data; all-zero is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; size].into_boxed_slice(),
            iovecs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                size
            ]
            .into_boxed_slice(),
            // SAFETY: mmsghdr is plain data; all-zero is valid.
            headers: vec![unsafe { std::mem::zeroed() }; size].into_boxed_slice(),
        }
    }

    fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Points the first `count` headers at their buffers, from fresh
    /// borrows just before the system call, so no pointer outlives a
    /// later borrow of the same memory. `name_lens` gives each address
    /// length (sending) or none (receiving: room for any).
    fn prepare(&mut self, count: usize, name_lens: Option<&[u32]>) {
        let data = self.data.as_mut_ptr();
        let addrs = self.addrs.as_mut_ptr();
        let iovecs = self.iovecs.as_mut_ptr();
        for i in 0..count {
            // SAFETY: i < count <= capacity, so every offset stays inside
            // its boxed slice (data holds capacity * SLOT bytes).
            unsafe {
                let iov = iovecs.add(i);
                (*iov).iov_base = data.add(i * SLOT).cast();
                (*iov).iov_len = self.lens[i];
                let h = &mut self.headers[i].msg_hdr;
                h.msg_name = addrs.add(i).cast();
                h.msg_namelen = name_lens
                    .map_or(std::mem::size_of::<libc::sockaddr_storage>() as u32, |l| {
                        l[i]
                    });
                h.msg_iov = iov;
                h.msg_iovlen = 1;
                h.msg_flags = 0;
            }
        }
    }
}

/// Incoming datagrams, filled by one `recvmmsg`.
pub struct RecvBatch {
    batch: Batch,
    received: usize,
}

impl RecvBatch {
    pub fn new(size: usize) -> Self {
        Self {
            batch: Batch::new(size),
            received: 0,
        }
    }

    /// Reads what is queued, without waiting. `Ok(0)`: nothing queued.
    pub fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        let b = &mut self.batch;
        b.prepare(b.capacity(), None);
        // SAFETY: `prepare` pointed every header at buffers and addresses
        // owned by `b`, which outlives the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                b.headers.as_mut_ptr(),
                b.capacity() as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.received = 0;
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Datagram `i` of the last read: its source and bytes, or `None` when
    /// it was truncated or came from an unknown family.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let b = &self.batch;
        let h = &b.headers[i];
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = h.msg_len as usize;
        let addr = from_storage(&b.addrs[i])?;
        Some((addr, &b.data[i * SLOT..i * SLOT + len]))
    }

    pub fn len(&self) -> usize {
        self.received
    }

    pub fn is_empty(&self) -> bool {
        self.received == 0
    }
}

/// Outgoing datagrams, written by `sendmmsg`.
pub struct SendBatch {
    batch: Batch,
    queued: usize,
    name_lens: Box<[u32]>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub sent: usize,
    pub dropped: usize,
}

impl SendBatch {
    pub fn new(size: usize) -> Self {
        Self {
            batch: Batch::new(size),
            queued: 0,
            name_lens: vec![0; size].into_boxed_slice(),
        }
    }

    pub fn is_full(&self) -> bool {
        self.queued == self.batch.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// The next free slot to encode an answer into; `push` commits it.
    pub fn slot(&mut self) -> &mut [u8] {
        let at = self.queued * SLOT;
        &mut self.batch.data[at..at + SLOT]
    }

    pub fn push(&mut self, len: usize, to: SocketAddr) {
        debug_assert!(!self.is_full() && len <= SLOT);
        let i = self.queued;
        let b = &mut self.batch;
        b.lens[i] = len;
        self.name_lens[i] = to_storage(to, &mut b.addrs[i]);
        self.queued += 1;
    }

    /// Sends everything queued. A full socket buffer gets a few more
    /// tries; what still does not fit is dropped (UDP may lose packets,
    /// and blocking a core on one socket would stall all its clients).
    pub fn flush(&mut self, fd: RawFd) -> Sent {
        let mut result = Sent::default();
        let b = &mut self.batch;
        b.prepare(self.queued, Some(&self.name_lens));
        let mut from = 0;
        let mut retries = 0;
        while from < self.queued {
            // SAFETY: headers[from..queued] describe buffers and addresses
            // owned by `b`, which outlives the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    b.headers[from..].as_mut_ptr(),
                    (self.queued - from) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                from += n as usize;
                result.sent += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock if retries < 3 => retries += 1,
                _ => {
                    // Unsendable (e.g. unreachable address): skip that one.
                    from += 1;
                    result.dropped += 1;
                    if e.kind() == io::ErrorKind::WouldBlock {
                        result.dropped += self.queued - from;
                        break;
                    }
                }
            }
        }
        self.queued = 0;
        result
    }
}

fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sa: &libc::sockaddr_in = unsafe { &*(storage as *const _ as *const _) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
                u16::from_be(sa.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sa: &libc::sockaddr_in6 = unsafe { &*(storage as *const _ as *const _) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sa.sin6_addr.s6_addr),
                u16::from_be(sa.sin6_port),
                sa.sin6_flowinfo,
                sa.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn to_storage(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> u32 {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in.
            let sa: &mut libc::sockaddr_in = unsafe { &mut *(storage as *mut _ as *mut _) };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = a.port().to_be();
            sa.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>() as u32
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in6.
            let sa: &mut libc::sockaddr_in6 = unsafe { &mut *(storage as *mut _ as *mut _) };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_port = a.port().to_be();
            sa.sin6_addr.s6_addr = a.ip().octets();
            sa.sin6_flowinfo = a.flowinfo();
            sa.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn batches_round_trip_over_loopback() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let server = UdpSocket::bind(local).unwrap();
            let client = UdpSocket::bind(local).unwrap();
            let target = server.local_addr().unwrap();
            for i in 0..5u8 {
                client.send_to(&[i; 10], target).unwrap();
            }
            client.send_to(&vec![9u8; SLOT + 10], target).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
            let mut recv = RecvBatch::new(8);
            assert_eq!(recv.receive(server.as_raw_fd()).unwrap(), 6);
            let mut send = SendBatch::new(8);
            for i in 0..5 {
                let (from, bytes) = recv.get(i).unwrap();
                assert_eq!(from, client.local_addr().unwrap());
                assert_eq!(bytes, &[i as u8; 10]);
                let slot = send.slot();
                slot[..3].copy_from_slice(&[i as u8, 1, 2]);
                send.push(3, from);
            }
            assert!(recv.get(5).is_none(), "a truncated datagram is refused");
            assert_eq!(
                send.flush(server.as_raw_fd()),
                Sent {
                    sent: 5,
                    dropped: 0
                }
            );
            let mut buf = [0u8; 16];
            for i in 0..5u8 {
                let n = client.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], &[i, 1, 2]);
            }
            assert_eq!(recv.receive(server.as_raw_fd()).unwrap(), 0);
        }
    }
}
