//! Two single-thread async primitives for a shard's tasks: waiting for the
//! reply to a forwarded request, and waking the batch flusher.

use ahash::HashMap;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// Replies to forwarded requests, matched by request id.
pub struct Waiters<T> {
    next_id: Cell<u32>,
    slots: RefCell<HashMap<u32, Slot<T>>>,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Self {
            next_id: Cell::new(0),
            slots: RefCell::new(HashMap::default()),
        }
    }
}

impl<T> Waiters<T> {
    /// A new request id; `wait` on it, `complete` fills it.
    pub fn register(&self) -> u32 {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        self.slots.borrow_mut().insert(
            id,
            Slot {
                value: None,
                waker: None,
            },
        );
        id
    }

    /// Files a reply. A reply whose waiter left (client gone) is dropped.
    pub fn complete(&self, id: u32, value: T) {
        if let Some(slot) = self.slots.borrow_mut().get_mut(&id) {
            slot.value = Some(value);
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    pub fn wait(&self, id: u32) -> Wait<'_, T> {
        Wait { waiters: self, id }
    }

    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.slots.borrow().len()
    }
}

pub struct Wait<'a, T> {
    waiters: &'a Waiters<T>,
    id: u32,
}

impl<T> Future for Wait<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut slots = self.waiters.slots.borrow_mut();
        let Some(slot) = slots.get_mut(&self.id) else {
            // Only `poll` after completion removes the slot: not reached.
            return Poll::Pending;
        };
        match slot.value.take() {
            Some(value) => {
                slots.remove(&self.id);
                Poll::Ready(value)
            }
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Wait<'_, T> {
    fn drop(&mut self) {
        // Done, or abandoned (connection closed): forget the id either way.
        self.waiters.slots.borrow_mut().remove(&self.id);
    }
}

/// Wakes one task (the flusher) when there is work; repeated notifications
/// before it runs fold into one.
#[derive(Default)]
pub struct Notify {
    flagged: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        if !self.flagged.replace(true) {
            if let Some(w) = self.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    pub fn notified(&self) -> Notified<'_> {
        Notified { notify: self }
    }
}

pub struct Notified<'a> {
    notify: &'a Notify,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.flagged.replace(false) {
            Poll::Ready(())
        } else {
            *self.notify.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn reply_reaches_its_waiter() {
        let w: Waiters<u32> = Waiters::default();
        let a = w.register();
        let b = w.register();
        w.complete(b, 2);
        w.complete(a, 1);
        assert_eq!(future::block_on(w.wait(a)), 1);
        assert_eq!(future::block_on(w.wait(b)), 2);
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn abandoned_waits_leave_nothing_behind() {
        let w: Waiters<u32> = Waiters::default();
        let a = w.register();
        drop(w.wait(a));
        w.complete(a, 1); // late reply: dropped
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn notifications_fold() {
        let n = Notify::default();
        n.notify();
        n.notify();
        future::block_on(n.notified());
        assert!(future::block_on(future::poll_once(n.notified())).is_none());
    }
}
