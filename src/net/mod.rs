//! Sockets: creating the SO_REUSEPORT groups, batched datagram I/O, and
//! TCP connections driven by an epoll set; telling systemd how we are
//! (notify.rs).

pub mod mmsg;
pub mod notify;
pub mod poller;
pub mod stream;
pub mod tcp;
pub mod udp;
