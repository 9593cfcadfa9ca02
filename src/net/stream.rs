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
    /// From when the wait starts, by the poller's coarse clock (so up to
    /// one housekeeping tick early, and no clock read per request).
    After(Duration),
    At(Instant),
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

    /// Reads what is there, waiting for data until `deadline` (then
    /// `TimedOut`). 0 means the peer closed.
    pub async fn read(&self, buf: &mut [u8], deadline: Deadline) -> io::Result<usize> {
        let mut until = None;
        loop {
            match self.try_read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            let until = *until.get_or_insert_with(|| self.resolve(deadline));
            self.wait_readable(until).await?;
        }
    }

    /// One read without waiting: `WouldBlock` when nothing is there (and
    /// then the next [`Stream::wait_readable`] waits for an edge).
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.registration.is_readable() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        loop {
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
                io::ErrorKind::WouldBlock => {
                    self.registration.clear_readable();
                    return Err(e);
                }
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
    }

    /// One write without waiting: how much the kernel took, or
    /// `WouldBlock` when its buffer is full.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        if !self.registration.is_writable() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        loop {
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
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => {
                    self.registration.clear_writable();
                    return Err(e);
                }
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
    }

    /// Waits for data (or the end of file) until `until`, else `TimedOut`.
    pub async fn wait_readable(&self, until: Instant) -> io::Result<()> {
        match self.registration.readable(Some(until)).await {
            Wait::Ready => Ok(()),
            Wait::TimedOut => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    /// Waits for room to write until `until`, else `TimedOut`.
    pub async fn wait_writable(&self, until: Instant) -> io::Result<()> {
        match self.registration.writable(Some(until)).await {
            Wait::Ready => Ok(()),
            Wait::TimedOut => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    /// Writes all of `bytes`, waiting for room at most `timeout` from the
    /// first wait (by the coarse clock, as [`Deadline::After`]) when the
    /// socket's send buffer is full.
    pub async fn write_all(&self, mut bytes: &[u8], timeout: Duration) -> io::Result<()> {
        let mut until = None;
        while !bytes.is_empty() {
            match self.try_write(bytes) {
                Ok(n) => {
                    bytes = &bytes[n..];
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let until = *until.get_or_insert_with(|| self.resolve(Deadline::After(timeout)));
            self.wait_writable(until).await?;
        }
        Ok(())
    }

    /// When a wait that starts now gives up.
    pub fn resolve(&self, deadline: Deadline) -> Instant {
        match deadline {
            Deadline::After(d) => self.registration.coarse_now() + d,
            Deadline::At(t) => t,
        }
    }

    /// No more writes: the peer reads end-of-file after what was sent.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.socket.shutdown(std::net::Shutdown::Write)
    }

    /// Ends the connection from outside its task: the task's pending read
    /// wakes and returns 0, as if the peer had closed.
    pub fn shutdown(&self) -> io::Result<()> {
        self.socket.shutdown(std::net::Shutdown::Both)
    }
}

/// A connection the HTTP code reads requests from and writes answers to:
/// a plain [`Stream`], or TLS over one (`net::tls::TlsStream`). Generic,
/// not `dyn`: the plain path stays as it was.
// A shard's tasks never move between threads, so no `Send` bound is
// wanted on these futures.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// As [`Stream::read`]: what is there, 0 at the end, `TimedOut`.
    async fn read(&self, buf: &mut [u8], deadline: Deadline) -> io::Result<usize>;
    /// As [`Stream::write_all`].
    async fn write_all(&self, bytes: &[u8], timeout: Duration) -> io::Result<()>;
    /// No more writes (TLS says so first, within `timeout`).
    async fn shutdown_write(&self, timeout: Duration) -> io::Result<()>;
}

impl Transport for Stream {
    async fn read(&self, buf: &mut [u8], deadline: Deadline) -> io::Result<usize> {
        Stream::read(self, buf, deadline).await
    }

    async fn write_all(&self, bytes: &[u8], timeout: Duration) -> io::Result<()> {
        Stream::write_all(self, bytes, timeout).await
    }

    async fn shutdown_write(&self, _timeout: Duration) -> io::Result<()> {
        Stream::shutdown_write(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::poller::{drive, Poller};
    use glommio::{LocalExecutorBuilder, Placement};
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;
    use std::thread;

    /// Runs `test` on a glommio executor with a poller being driven and a
    /// listener on loopback, whose address it gets; at most 20 s.
    fn with_listener<F, Fut>(test: F)
    where
        F: FnOnce(Rc<Poller>, Listener, SocketAddr) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(64 << 10)
            .spawn(move || async move {
                let poller = Poller::new().unwrap();
                let socket = crate::net::tcp::bind_group("127.0.0.1:0".parse().unwrap(), 1)
                    .unwrap()
                    .pop()
                    .unwrap();
                let addr = socket.local_addr().unwrap().as_socket().unwrap();
                let listener = Listener::new(socket, &poller).unwrap();
                let driver = glommio::spawn_local(drive(poller.clone()));
                // A lost wake-up must fail the test, not hang it.
                glommio::timer::timeout(Duration::from_secs(20), async {
                    test(poller, listener, addr).await;
                    Ok(())
                })
                .await
                .expect("the test hung");
                driver.cancel().await;
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_read_waits_for_data_sent_after_the_shard_parked() {
        with_listener(|poller, listener, addr| async move {
            let client = thread::spawn(move || {
                let mut c = StdStream::connect(addr).unwrap();
                // Long enough for the driver to run out of idle passes
                // and park.
                thread::sleep(Duration::from_millis(150));
                c.write_all(b"first").unwrap();
                let mut echo = [0u8; 5];
                c.read_exact(&mut echo).unwrap();
                thread::sleep(Duration::from_millis(150));
                c.write_all(b"second").unwrap();
                c
            });
            let (socket, peer) = listener.accept().await.unwrap();
            assert!(peer.ip().is_loopback());
            let stream = Stream::new(socket, &poller).unwrap();
            let mut buf = [0u8; 64];
            let n = stream
                .read(&mut buf, Deadline::After(Duration::from_secs(5)))
                .await
                .unwrap();
            assert_eq!(&buf[..n], b"first");
            stream
                .write_all(&buf[..n], Duration::from_secs(5))
                .await
                .unwrap();
            let n = stream
                .read(&mut buf, Deadline::After(Duration::from_secs(5)))
                .await
                .unwrap();
            assert_eq!(&buf[..n], b"second");
            let c = client.join().unwrap();
            drop(c);
            // The peer closed: end of file.
            let n = stream
                .read(&mut buf, Deadline::After(Duration::from_secs(5)))
                .await
                .unwrap();
            assert_eq!(n, 0);
        });
    }

    #[test]
    fn data_and_end_of_file_in_one_edge_are_both_read() {
        with_listener(|poller, listener, addr| async move {
            let client = thread::spawn(move || {
                let mut c = StdStream::connect(addr).unwrap();
                c.write_all(b"last words").unwrap();
                c.shutdown(std::net::Shutdown::Write).unwrap();
                c
            });
            let c = client.join().unwrap();
            // Both arrived before the server looks: one edge for both.
            let (socket, _) = listener.accept().await.unwrap();
            let stream = Stream::new(socket, &poller).unwrap();
            glommio::timer::sleep(Duration::from_millis(20)).await;
            let mut buf = [0u8; 64];
            let forever = Deadline::After(Duration::from_secs(3600));
            let n = stream.read(&mut buf, forever).await.unwrap();
            assert_eq!(&buf[..n], b"last words");
            // A short read, yet the end of file must not wait for an edge.
            assert_eq!(stream.read(&mut buf, forever).await.unwrap(), 0);
            drop(c);
        });
    }

    #[test]
    fn a_wait_past_its_deadline_times_out_at_the_next_sweep() {
        with_listener(|poller, listener, addr| async move {
            let client = thread::spawn(move || {
                let c = StdStream::connect(addr).unwrap();
                thread::sleep(Duration::from_millis(400));
                c
            });
            let (socket, _) = listener.accept().await.unwrap();
            let stream = Rc::new(Stream::new(socket, &poller).unwrap());
            let reader = stream.clone();
            let done = Rc::new(std::cell::Cell::new(false));
            let finished = done.clone();
            let read = glommio::spawn_local(async move {
                let mut buf = [0u8; 8];
                let r = reader
                    .read(
                        &mut buf,
                        Deadline::At(Instant::now() + Duration::from_millis(50)),
                    )
                    .await;
                finished.set(true);
                r
            });
            // Before the deadline a sweep leaves the wait alone.
            poller.expire(Instant::now());
            glommio::timer::sleep(Duration::from_millis(100)).await;
            assert!(!done.get(), "a wait ended without a sweep");
            poller.expire(Instant::now());
            let err = read.await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            client.join().unwrap();
        });
    }

    #[test]
    fn a_write_to_a_full_socket_waits_for_room_then_finishes() {
        with_listener(|poller, listener, addr| async move {
            const TOTAL: usize = 8 << 20;
            let client = thread::spawn(move || {
                let mut c = StdStream::connect(addr).unwrap();
                // Let the writer fill both socket buffers first.
                thread::sleep(Duration::from_millis(200));
                let mut got = 0;
                let mut buf = vec![0u8; 1 << 16];
                while got < TOTAL {
                    let n = c.read(&mut buf).unwrap();
                    assert!(n > 0, "closed after {got} bytes");
                    assert!(buf[..n].iter().all(|&b| b == 7));
                    got += n;
                }
                got
            });
            let (socket, _) = listener.accept().await.unwrap();
            let stream = Stream::new(socket, &poller).unwrap();
            let data = vec![7u8; TOTAL];
            stream
                .write_all(&data, Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(client.join().unwrap(), TOTAL);
        });
    }

    #[test]
    fn a_write_nobody_reads_times_out() {
        with_listener(|poller, listener, addr| async move {
            let (stop, stopped) = std::sync::mpsc::channel::<()>();
            let client = thread::spawn(move || {
                let c = StdStream::connect(addr).unwrap();
                let _ = stopped.recv();
                c
            });
            let (socket, _) = listener.accept().await.unwrap();
            let stream = Rc::new(Stream::new(socket, &poller).unwrap());
            let writer = stream.clone();
            let done = Rc::new(std::cell::Cell::new(false));
            let finished = done.clone();
            let write = glommio::spawn_local(async move {
                let r = writer
                    .write_all(&vec![1u8; 64 << 20], Duration::from_millis(50))
                    .await;
                finished.set(true);
                r
            });
            glommio::timer::sleep(Duration::from_millis(200)).await;
            assert!(!done.get(), "a blocked write ended without a sweep");
            poller.expire(Instant::now());
            assert_eq!(write.await.unwrap_err().kind(), io::ErrorKind::TimedOut);
            stop.send(()).unwrap();
            client.join().unwrap();
        });
    }

    #[test]
    fn an_idle_driver_parks_instead_of_spinning() {
        with_listener(|poller, listener, addr| async move {
            // Idle: after a few empty passes the driver must sleep.
            glommio::timer::sleep(Duration::from_millis(50)).await;
            let before = poller.passes();
            glommio::timer::sleep(Duration::from_millis(200)).await;
            let idle = poller.passes() - before;
            // A spinning driver makes hundreds of thousands of passes here.
            assert!(idle < 20, "{idle} passes while idle");
            // And a parked driver still wakes for a new connection.
            let client = thread::spawn(move || StdStream::connect(addr).unwrap());
            let (_, peer) = listener.accept().await.unwrap();
            assert!(peer.ip().is_loopback());
            client.join().unwrap();
        });
    }
}
