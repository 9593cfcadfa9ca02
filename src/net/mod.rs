//! Sockets: creating the SO_REUSEPORT groups, batched datagram I/O, and
//! TCP connections driven by an epoll set, TLS over them (tls.rs); telling systemd how we are
//! (notify.rs).

pub mod mmsg;
pub mod notify;
pub mod poller;
pub mod stream;
pub mod tcp;
pub mod tls;
pub mod udp;
