//! Sockets: creating the SO_REUSEPORT groups and batched datagram I/O.

pub mod mmsg;
pub mod tcp;
pub mod udp;
