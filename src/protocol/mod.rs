//! Wire formats, pure: bytes in, typed requests out, and back. No sockets.

pub mod connection_id;
pub mod http;
pub mod udp;
