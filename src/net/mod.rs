//! Sockets: creating the SO_REUSEPORT groups, batched datagram I/O, and
//! TCP connections driven by an epoll set.

pub mod mmsg;
pub mod poller;
pub mod stream;
pub mod tcp;
pub mod udp;
