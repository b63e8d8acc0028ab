//! Waking a shard: a single-waiter notification between tasks of one shard,
//! and a cross-thread inbox (bounded crossbeam queue + eventfd) for the
//! node handle.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};

use crossbeam_channel::{Receiver, Sender};

/// Wakes one waiting task of the same shard (not thread-safe; not needed).
#[derive(Default)]
pub(crate) struct Notify {
    flag: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    /// Sets the flag and wakes the waiter, if any.
    pub fn notify(&self) {
        self.flag.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Waits until notified (returns at once if already notified), clearing the flag.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.flag.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// An eventfd a parked shard waits on; writers signal it only when the
/// shard said it is about to sleep.
pub(crate) struct EventWake {
    fd: RawFd,
    sleeping: AtomicBool,
}

impl EventWake {
    pub fn new() -> std::io::Result<EventWake> {
        // SAFETY: eventfd takes no pointers; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(EventWake { fd, sleeping: AtomicBool::new(false) })
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The shard is about to wait: the next signal must write the eventfd.
    pub fn set_sleeping(&self, s: bool) {
        self.sleeping.store(s, Ordering::SeqCst);
    }

    /// Wakes the shard if it sleeps (or is about to).
    pub fn signal(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our own eventfd; an
            // eventfd write only fails if the counter would overflow, which
            // a wake-up flag can never reach.
            unsafe { libc::write(self.fd, (&one as *const u64).cast(), 8) };
        }
    }
}

impl Drop for EventWake {
    fn drop(&mut self) {
        // SAFETY: we own this fd and close it once.
        unsafe { libc::close(self.fd) };
    }
}

/// The handle's way into one shard.
pub(crate) struct Inbox<T> {
    tx: Sender<T>,
    wake: Arc<EventWake>,
}

impl<T> Clone for Inbox<T> {
    fn clone(&self) -> Self {
        Inbox { tx: self.tx.clone(), wake: self.wake.clone() }
    }
}

impl<T> Inbox<T> {
    pub fn new(capacity: usize) -> std::io::Result<(Inbox<T>, Receiver<T>, Arc<EventWake>)> {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let wake = Arc::new(EventWake::new()?);
        Ok((Inbox { tx, wake: wake.clone() }, rx, wake))
    }

    /// Queues `item` and wakes the shard; hands the item back when full.
    pub fn send(&self, item: T) -> Result<(), T> {
        self.tx.try_send(item).map_err(|e| e.into_inner())?;
        self.wake.signal();
        Ok(())
    }
}
