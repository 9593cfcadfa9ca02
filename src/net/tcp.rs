//! The HTTP listeners: one per shard per address in one SO_REUSEPORT
//! group, so the kernel spreads new connections over the shards.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;

const BACKLOG: i32 = 1024;

/// Binds `shards` listeners to `addr`, resolving port 0 once.
pub fn bind_group(addr: SocketAddr, shards: usize) -> io::Result<Vec<Socket>> {
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(shards);
    for _ in 0..shards {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&SockAddr::from(addr))?;
        socket.listen(BACKLOG)?;
        if addr.port() == 0 {
            addr = socket
                .local_addr()?
                .as_socket()
                .expect("a bound TCP socket has an IP address");
        }
        listeners.push(socket);
    }
    Ok(listeners)
}
