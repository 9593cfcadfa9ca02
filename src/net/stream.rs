//! Non-blocking TCP listeners and connections driven by a shard's
//! [`Poller`]: direct system calls while the kernel has data or room, a
//! wait on the epoll set only when it has not.

use super::poller::{Poller, Registration, Wait};
use socket2::{SockAddr, Socket};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a read may wait for data.
#[derive(Clone, Copy, Debug)]
pub enum Deadline {
    /// From when the wait starts (read only if it must wait).
    After(Duration),
    At(Instant),
}

impl Deadline {
    fn at(self) -> Instant {
        match self {
            Deadline::After(d) => Instant::now() + d,
            Deadline::At(t) => t,
        }
    }
}

/// A listening socket registered with a poller.
pub struct Listener {
    socket: Socket,
    registration: Registration,
}

impl Listener {
    /// Takes a bound, listening socket.
    pub fn new(socket: Socket, poller: &Rc<Poller>) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let registration = poller.register(socket.as_raw_fd())?;
        Ok(Self {
            socket,
            registration,
        })
    }

    /// The next connection, non-blocking, with its peer's address.
    pub async fn accept(&self) -> io::Result<(Socket, SocketAddr)> {
        loop {
            if self.registration.is_readable() {
                match accept(&self.socket) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.registration.clear_readable();
                    }
                    other => return other,
                }
            }
            self.registration.readable(None).await;
        }
    }
}

fn accept(listener: &Socket) -> io::Result<(Socket, SocketAddr)> {
    // SAFETY: accept4 writes at most `len` bytes of address into the
    // storage socket2 provides and sets `len` to the size it used.
    let (fd, addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            let fd = libc::accept4(
                listener.as_raw_fd(),
                storage.cast(),
                len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            );
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(fd)
            }
        })
    }?;
    // SAFETY: accept4 returned a new descriptor nothing else owns.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    let addr = addr.as_socket().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "accepted a non-IP connection")
    })?;
    Ok((socket, addr))
}

/// A connected, non-blocking socket registered with a poller. Reads and
/// writes are awaited by one task at a time.
pub struct Stream {
    socket: Socket,
    registration: Registration,
}

impl Stream {
    pub fn new(socket: Socket, poller: &Rc<Poller>) -> io::Result<Self> {
        let registration = poller.register(socket.as_raw_fd())?;
        Ok(Self {
            socket,
            registration,
        })
    }

    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Reads what is there, waiting for data until `deadline` (then
    /// `TimedOut`). 0 means the peer closed.
    pub async fn read(&self, buf: &mut [u8], deadline: Deadline) -> io::Result<usize> {
        let mut until = None;
        loop {
            if self.registration.is_readable() {
                // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
                let n = unsafe {
                    libc::recv(
                        self.socket.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n >= 0 {
                    // A short read drained the socket: the next read waits
                    // for an edge instead of asking the kernel in vain.
                    if (n as usize) < buf.len() {
                        self.registration.clear_readable();
                    }
                    return Ok(n as usize);
                }
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => self.registration.clear_readable(),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
            let until = *until.get_or_insert_with(|| deadline.at());
            if self.registration.readable(Some(until)).await == Wait::TimedOut {
                return Err(io::ErrorKind::TimedOut.into());
            }
        }
    }

    /// Writes all of `bytes`, waiting for room at most `timeout` (from the
    /// first wait) when the socket's send buffer is full.
    pub async fn write_all(&self, mut bytes: &[u8], timeout: Duration) -> io::Result<()> {
        let mut until = None;
        while !bytes.is_empty() {
            if self.registration.is_writable() {
                // SAFETY: send reads at most `bytes.len()` bytes of `bytes`.
                let n = unsafe {
                    libc::send(
                        self.socket.as_raw_fd(),
                        bytes.as_ptr().cast(),
                        bytes.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if n >= 0 {
                    bytes = &bytes[n as usize..];
                    continue;
                }
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => self.registration.clear_writable(),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
            let until = *until.get_or_insert_with(|| Instant::now() + timeout);
            if self.registration.writable(Some(until)).await == Wait::TimedOut {
                return Err(io::ErrorKind::TimedOut.into());
            }
        }
        Ok(())
    }

    /// No more writes: the peer reads end-of-file after what was sent.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.socket.shutdown(std::net::Shutdown::Write)
    }
}
