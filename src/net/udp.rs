//! The UDP SO_REUSEPORT groups: one socket per shard per listen address,
//! bound in shard order from one thread, because the kernel numbers the
//! sockets of a group by the order they joined it, and the BPF program
//! answers with that number.

use crate::placement::owner::Owner;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

pub struct GroupOptions {
    pub kernel_steering: bool,
    pub recv_buffer: usize,
    pub send_buffer: usize,
}

/// Binds `shards` sockets to `addr` (resolving port 0 once, so all join
/// one group) and attaches the steering program when there are several.
pub fn bind_group(
    addr: SocketAddr,
    owner: &Owner,
    options: &GroupOptions,
) -> io::Result<Vec<Socket>> {
    let mut addr = addr;
    let mut sockets = Vec::with_capacity(owner.shards());
    for _ in 0..owner.shards() {
        let socket = bind_one(addr, options)?;
        if addr.port() == 0 {
            addr = socket
                .local_addr()?
                .as_socket()
                .expect("a bound UDP socket has an IP address");
        }
        sockets.push(socket);
    }
    if owner.shards() > 1 && options.kernel_steering {
        attach_program(&sockets[0], owner)?;
    }
    Ok(sockets)
}

fn bind_one(addr: SocketAddr, options: &GroupOptions) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // IPv4 goes to its own group; keeps both wildcard binds apart.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    set_buffer(&socket, Buffer::Recv, options.recv_buffer)?;
    set_buffer(&socket, Buffer::Send, options.send_buffer)?;
    // Blocking mode on purpose: batched reads pass MSG_DONTWAIT, and
    // io_uring only parks a receive on a socket without O_NONBLOCK.
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket)
}

#[derive(Clone, Copy)]
enum Buffer {
    Recv,
    Send,
}

/// Sets a socket buffer to the configured size. The plain option is capped
/// by net.core.rmem_max / wmem_max (often ~208KiB), so where the process
/// may (CAP_NET_ADMIN) the FORCE variant sets the real size; otherwise a
/// warning says what took effect and how to raise the cap.
fn set_buffer(socket: &Socket, which: Buffer, size: usize) -> io::Result<()> {
    let (force, name, sysctl) = match which {
        Buffer::Recv => (libc::SO_RCVBUFFORCE, "udp.recv_buffer", "net.core.rmem_max"),
        Buffer::Send => (libc::SO_SNDBUFFORCE, "udp.send_buffer", "net.core.wmem_max"),
    };
    let value = size.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt reads one c_int from a live local.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            force,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if forced {
        return Ok(());
    }
    let effective = match which {
        Buffer::Recv => {
            socket.set_recv_buffer_size(size)?;
            socket.recv_buffer_size()?
        }
        Buffer::Send => {
            socket.set_send_buffer_size(size)?;
            socket.send_buffer_size()?
        }
    };
    // The kernel reports twice what it grants (bookkeeping overhead).
    if effective / 2 < size {
        tracing::warn!(
            "{name}: asked for {size} bytes, the kernel granted {}; raise {sysctl} (sysctl -w {sysctl}={size}) or run with CAP_NET_ADMIN",
            effective / 2
        );
    }
    Ok(())
}

fn attach_program(socket: &Socket, owner: &Owner) -> io::Result<()> {
    let mut program = owner.reuseport_program();
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: fprog points at `program`, alive for the call; the kernel
    // copies the instructions before returning.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            &fprog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// The kernel delivers every announce and scrape to the socket the
    /// owner function names: the steering works on this kernel.
    #[test]
    fn kernel_steers_announces_to_their_owner() {
        for shards in [2usize, 3] {
            let owner = Owner::new(shards);
            let options = GroupOptions {
                kernel_steering: true,
                recv_buffer: 1 << 20,
                send_buffer: 1 << 20,
            };
            let group = bind_group("127.0.0.1:0".parse().unwrap(), &owner, &options).unwrap();
            let target = group[0].local_addr().unwrap().as_socket().unwrap();
            let sockets: Vec<UdpSocket> = group.into_iter().map(UdpSocket::from).collect();
            for s in &sockets {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            }
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut rng = fastrand::Rng::with_seed(5);
            for _ in 0..60 {
                let mut packet = [0u8; 98];
                packet[8..12].copy_from_slice(&rng.u32(1..=2).to_be_bytes());
                rng.fill(&mut packet[16..36]);
                let expected = owner.of(&packet[16..36].try_into().unwrap());
                client.send_to(&packet, target).unwrap();
                let mut buf = [0u8; 128];
                let (n, _) = sockets[expected].recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], &packet[..]);
            }
        }
    }
}
