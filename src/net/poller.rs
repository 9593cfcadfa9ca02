//! Readiness of a shard's TCP sockets through one edge-triggered epoll set.
//!
//! Why not glommio's own streams: they arm one io_uring poll per socket per
//! read. Each such poll that fires costs a task-work notification (on this
//! VM an inter-processor interrupt) on *both* sides of a loopback
//! connection, and that made a glommio HTTP responder half as fast as nginx
//! with the same syscalls. Here sockets are registered once; one
//! `epoll_wait` per pass of the executor collects every ready socket, and
//! only an idle shard parks, with a single io_uring poll on the epoll
//! descriptor itself.
//!
//! Single-threaded by design (`Rc`, `Cell`): a shard's sockets are served
//! by its own executor only.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

/// Ready sockets taken from the kernel per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 256;
/// Empty passes before the shard parks: a few cheap `epoll_wait`s spare a
/// sleep and a wake-up when requests come back to back.
const IDLE_PASSES: u32 = 3;
/// The longest a parked shard sleeps before it looks again anyway.
const PARK_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a shard naps when it cannot park.
const PARK_FALLBACK: std::time::Duration = std::time::Duration::from_millis(1);

/// Edge-triggered readiness for a shard's sockets.
pub struct Poller {
    epoll: OwnedFd,
    slots: RefCell<Slots>,
    events: RefCell<Vec<libc::epoll_event>>,
    /// Passes of the driver (`epoll_wait` calls), for tests.
    passes: Cell<u64>,
    /// The time of the last [`Poller::expire`]: deadlines counted from it
    /// cost no clock read per request, and are at most a tick short.
    coarse_now: Cell<Instant>,
}

#[derive(Default)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

#[derive(Default)]
struct Slot {
    /// Tells a slot's registrations apart, so an event for a closed
    /// socket can never wake the socket that reused its slot.
    generation: u32,
    /// The peer closed or the socket failed. Never cleared: the end of
    /// file (or the error) may have come with the last data, and a drained
    /// socket must still read it rather than wait for an edge that already
    /// came.
    closed: bool,
    read: Side,
    write: Side,
}

/// One direction of a slot: at most one task waits on it.
#[derive(Default)]
struct Side {
    ready: bool,
    waker: Option<Waker>,
    /// When the waiter gives up; checked by [`Poller::expire`].
    deadline: Option<Instant>,
    expired: bool,
}

impl Side {
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// What a wait ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Ready,
    TimedOut,
}

impl Poller {
    /// A new, empty epoll set.
    pub fn new() -> io::Result<Rc<Self>> {
        // SAFETY: epoll_create1 takes no pointers; a valid result is a new
        // descriptor that nothing else owns.
        let epoll = unsafe { cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC)) }?;
        // SAFETY: `epoll` was just created and is owned here alone.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        Ok(Rc::new(Self {
            epoll,
            slots: RefCell::default(),
            events: RefCell::new(vec![
                libc::epoll_event { events: 0, u64: 0 };
                EVENTS_PER_WAIT
            ]),
            passes: Cell::new(0),
            coarse_now: Cell::new(Instant::now()),
        }))
    }

    /// Watches `fd` (non-blocking) for reading and writing until the
    /// returned registration is dropped. It starts out readable and
    /// writable: a new socket is tried before anything is awaited.
    pub fn register(self: &Rc<Self>, fd: RawFd) -> io::Result<Registration> {
        let (index, generation) = {
            let mut s = self.slots.borrow_mut();
            let index = match s.free.pop() {
                Some(i) => i,
                None => {
                    s.slots.push(Slot::default());
                    (s.slots.len() - 1) as u32
                }
            };
            let slot = &mut s.slots[index as usize];
            slot.generation = slot.generation.wrapping_add(1);
            slot.read.ready = true;
            slot.write.ready = true;
            (index, slot.generation)
        };
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token(index, generation),
        };
        // SAFETY: `event` is a live local the kernel only reads.
        let added = unsafe {
            cvt(libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd,
                &mut event,
            ))
        };
        if let Err(e) = added {
            self.release(index);
            return Err(e);
        }
        Ok(Registration {
            poller: self.clone(),
            index,
        })
    }

    /// Takes what is ready from the kernel without waiting and wakes the
    /// tasks waiting on it. Returns how many sockets had news.
    pub fn poll_now(&self) -> usize {
        self.passes.set(self.passes.get() + 1);
        let mut events = self.events.borrow_mut();
        // SAFETY: the kernel writes at most `events.len()` entries into the
        // buffer, which lives for the call.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                0,
            )
        };
        if n <= 0 {
            return 0; // EINTR or nothing: the next pass asks again
        }
        let mut slots = self.slots.borrow_mut();
        for event in &events[..n as usize] {
            let (index, generation) = untoken(event.u64);
            let Some(slot) = slots.slots.get_mut(index as usize) else {
                continue;
            };
            if slot.generation != generation {
                continue;
            }
            let bits = event.events as libc::c_int;
            if bits & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) != 0 {
                slot.closed = true;
            }
            if bits & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) != 0 {
                slot.read.ready = true;
                slot.read.wake();
            }
            if bits & (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) != 0 {
                slot.write.ready = true;
                slot.write.wake();
            }
        }
        n as usize
    }

    /// How many times the set was asked for news so far.
    pub fn passes(&self) -> u64 {
        self.passes.get()
    }

    /// Wakes, with [`Wait::TimedOut`], every waiter whose deadline is past.
    /// Called from the shard's housekeeping tick, so deadlines are as
    /// precise as that tick.
    pub fn expire(&self, now: Instant) {
        self.coarse_now.set(now);
        for slot in &mut self.slots.borrow_mut().slots {
            for side in [&mut slot.read, &mut slot.write] {
                if side.deadline.is_some_and(|d| d <= now) {
                    side.deadline = None;
                    side.expired = true;
                    side.wake();
                }
            }
        }
    }

    fn release(&self, index: u32) {
        let mut s = self.slots.borrow_mut();
        let slot = &mut s.slots[index as usize];
        let generation = slot.generation;
        *slot = Slot {
            generation,
            ..Slot::default()
        };
        s.free.push(index);
    }

    /// Sleeps until the epoll set has something (an epoll descriptor is
    /// readable while events wait in it), or for [`PARK_RECHECK`] at most:
    /// a lost completion must not leave the shard's sockets unserved.
    async fn park(&self) {
        futures_lite::future::or(readable(&self.epoll), glommio::timer::sleep(PARK_RECHECK)).await;
    }
}

/// Keeps a shard's registered sockets moving: one `epoll_wait` per pass of
/// the executor while there is traffic, parked while there is none. Runs
/// for the life of the shard.
pub async fn drive(poller: Rc<Poller>) {
    let mut idle = 0;
    loop {
        if poller.poll_now() > 0 {
            idle = 0;
        } else {
            idle += 1;
            if idle >= IDLE_PASSES {
                poller.park().await;
                idle = 0;
                continue;
            }
        }
        // Let the woken tasks run before the next look.
        futures_lite::future::yield_now().await;
    }
}

fn token(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn untoken(token: u64) -> (u32, u32) {
    (token as u32, (token >> 32) as u32)
}

/// One socket's place in a [`Poller`]. Dropping it forgets the socket;
/// closing the descriptor removes it from the epoll set (the shard never
/// duplicates these descriptors, so the close is the last reference).
pub struct Registration {
    poller: Rc<Poller>,
    index: u32,
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

impl Registration {
    /// The poller's clock, as of its last expiry sweep.
    pub fn coarse_now(&self) -> Instant {
        self.poller.coarse_now.get()
    }

    /// Whether a read may find something: data, or (once the peer closed
    /// or the socket failed) the end of file or the error.
    pub fn is_readable(&self) -> bool {
        self.with(|s| s.read.ready || s.closed)
    }

    pub fn is_writable(&self) -> bool {
        self.with(|s| s.write.ready || s.closed)
    }

    /// Records that the socket has been read dry: the next read waits for
    /// an edge (unless the peer has closed).
    pub fn clear_readable(&self) {
        self.with(|s| s.read.ready = false);
    }

    pub fn clear_writable(&self) {
        self.with(|s| s.write.ready = false);
    }

    /// Waits until the socket is readable (or closed, or in error), or
    /// until `deadline`.
    pub async fn readable(&self, deadline: Option<Instant>) -> Wait {
        self.wait(Direction::Read, deadline).await
    }

    /// Waits until the socket has room to write, or until `deadline`.
    pub async fn writable(&self, deadline: Option<Instant>) -> Wait {
        self.wait(Direction::Write, deadline).await
    }

    async fn wait(&self, direction: Direction, deadline: Option<Instant>) -> Wait {
        // A deadline already behind the sweep's clock ends the wait at once
        // (a trickling client must not slip between sweeps).
        if deadline.is_some_and(|d| d <= self.coarse_now()) {
            return Wait::TimedOut;
        }
        self.side(direction, |side, _| {
            side.expired = false;
            side.deadline = deadline;
        });
        let outcome = poll_fn(|cx| {
            self.side(direction, |side, closed| {
                if side.ready || closed {
                    return Poll::Ready(Wait::Ready);
                }
                if side.expired {
                    return Poll::Ready(Wait::TimedOut);
                }
                match &side.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => side.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            })
        })
        .await;
        self.side(direction, |side, _| {
            side.deadline = None;
            side.expired = false;
        });
        outcome
    }

    fn with<T>(&self, f: impl FnOnce(&mut Slot) -> T) -> T {
        f(&mut self.poller.slots.borrow_mut().slots[self.index as usize])
    }

    /// One direction of the slot, and whether the socket is closed.
    fn side<T>(&self, direction: Direction, f: impl FnOnce(&mut Side, bool) -> T) -> T {
        self.with(|s| {
            let closed = s.closed;
            match direction {
                Direction::Read => f(&mut s.read, closed),
                Direction::Write => f(&mut s.write, closed),
            }
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.poller.release(self.index);
    }
}

/// Waits until `fd` (any pollable descriptor) is readable, through the
/// executor's io_uring. glommio has no public "poll this descriptor", but
/// a glommio stream arms exactly that (an io_uring POLL_ADD for POLLIN)
/// when it is built, and its first read waits for that poll. On a
/// descriptor that is not a socket the read's recv then fails (ENOTSOCK):
/// that failure is the wake-up. The test
/// `an_idle_driver_parks_instead_of_spinning` guards this against glommio
/// changing under us.
async fn readable(fd: &OwnedFd) {
    use futures_lite::AsyncReadExt;
    let Ok(watched) = fd.try_clone() else {
        // Out of descriptors: look again shortly rather than spin.
        glommio::timer::sleep(PARK_FALLBACK).await;
        return;
    };
    // SAFETY: `watched` is a descriptor of our own, handed over whole;
    // the stream closes it when dropped.
    let mut stream = unsafe {
        glommio::net::TcpStream::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(watched))
    };
    let _ = stream.read(&mut [0u8; 1]).await;
}

/// A libc result: -1 means errno.
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}
