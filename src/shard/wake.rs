//! Waking a shard: a single-waiter notification between tasks of one shard,
//! and a cross-thread inbox (bounded crossbeam queue + eventfd) for the
//! node handle.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::os::fd::{FromRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};

use crossbeam_channel::{Receiver, Sender, TrySendError};

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

/// Waits on an eventfd through glommio without ever dropping a read that
/// is in flight. glommio cancels a dropped read only later; if the read
/// completes first it consumes the count, and a signaller that writes only
/// once per sleep (the handle's inbox, the kernel's one eventfd signal per
/// batch of deferred ring completions) has then woken nobody: the next wait
/// sleeps for good. So a read that loses the race stays armed for the next
/// wait instead.
pub(crate) struct EventfdRead {
    fd: RawFd,
    /// glommio's view of a dup of `fd`, made on the first wait.
    file: RefCell<Option<Rc<glommio::io::BufferedFile>>>,
    pending: RefCell<Option<Pin<Box<dyn Future<Output = ()>>>>>,
}

impl EventfdRead {
    /// Reads `fd` (borrowed: the reads go through a dup of it).
    pub fn new(fd: RawFd) -> EventfdRead {
        EventfdRead { fd, file: RefCell::new(None), pending: RefCell::new(None) }
    }

    /// Waits until the eventfd is signalled (true) or `other` completes (false).
    pub async fn wait_or(&self, other: impl Future<Output = ()>) -> bool {
        let mut read = self.pending.borrow_mut().take().unwrap_or_else(|| {
            let file = self
                .file
                .borrow_mut()
                .get_or_insert_with(|| {
                    // SAFETY: a dup of the eventfd, owned by the file from now on.
                    Rc::new(unsafe { glommio::io::BufferedFile::from_raw_fd(libc::dup(self.fd)) })
                })
                .clone();
            Box::pin(async move {
                let _ = file.read_at(0, 8).await;
            })
        });
        let signalled = futures_lite::future::or(
            async {
                (&mut read).await;
                true
            },
            async {
                other.await;
                false
            },
        )
        .await;
        if !signalled {
            *self.pending.borrow_mut() = Some(read);
        }
        signalled
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

/// A bounded queue whose memory follows what it holds: crossbeam's array
/// channel allocates and touches every slot up front (65,536 commands were
/// 16 MiB per shard at rest, three quarters of an idle node's memory); its
/// list channel allocates small blocks as items arrive and frees them as
/// they leave. The bound is checked against the length before each send,
/// so senders racing on other threads may pass it by at most one item each.
pub(crate) struct BoundedSender<T> {
    tx: Sender<T>,
    cap: usize,
}

impl<T> Clone for BoundedSender<T> {
    fn clone(&self) -> Self {
        BoundedSender { tx: self.tx.clone(), cap: self.cap }
    }
}

impl<T> BoundedSender<T> {
    /// Queues `item`; hands it back when the queue is full (or nobody
    /// receives any more).
    pub fn try_send(&self, item: T) -> Result<(), T> {
        self.send_or(item).map_err(|e| e.into_inner())
    }

    /// As [`BoundedSender::try_send`], telling a full queue from one whose
    /// receiver is gone.
    pub fn send_or(&self, item: T) -> Result<(), TrySendError<T>> {
        if self.tx.len() >= self.cap {
            return Err(TrySendError::Full(item));
        }
        self.tx.send(item).map_err(|e| TrySendError::Disconnected(e.into_inner()))
    }
}

/// A queue of at most `cap` items that holds memory only for the items in it.
pub(crate) fn bounded_lazy<T>(cap: usize) -> (BoundedSender<T>, Receiver<T>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    (BoundedSender { tx, cap }, rx)
}

/// The handle's way into one shard.
pub(crate) struct Inbox<T> {
    tx: BoundedSender<T>,
    wake: Arc<EventWake>,
}

impl<T> Clone for Inbox<T> {
    fn clone(&self) -> Self {
        Inbox { tx: self.tx.clone(), wake: self.wake.clone() }
    }
}

impl<T> Inbox<T> {
    pub fn new(capacity: usize) -> std::io::Result<(Inbox<T>, Receiver<T>, Arc<EventWake>)> {
        let (tx, rx) = bounded_lazy(capacity);
        let wake = Arc::new(EventWake::new()?);
        Ok((Inbox { tx, wake: wake.clone() }, rx, wake))
    }

    /// Queues `item` and wakes the shard; hands the item back when full.
    pub fn send(&self, item: T) -> Result<(), T> {
        self.send_or(item).map_err(|e| e.into_inner())
    }

    /// As [`Inbox::send`], telling a full queue from a shard that is gone.
    pub fn send_or(&self, item: T) -> Result<(), TrySendError<T>> {
        self.tx.send_or(item)?;
        self.wake.signal();
        Ok(())
    }

    /// A second queue into the same shard, of at most `capacity` items,
    /// woken through the same eventfd (one wait covers both).
    pub fn sibling<U>(&self, capacity: usize) -> (Inbox<U>, Receiver<U>) {
        let (tx, rx) = bounded_lazy(capacity);
        (Inbox { tx, wake: self.wake.clone() }, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound holds (a full queue hands the item back), a received item
    /// frees its place, and nothing is lost or reordered.
    #[test]
    fn lazy_bounded_queue_keeps_its_bound() {
        let (tx, rx) = bounded_lazy::<u32>(3);
        for i in 0..3 {
            assert_eq!(tx.try_send(i), Ok(()));
        }
        assert_eq!(tx.try_send(3), Err(3), "full at 3");
        assert_eq!(rx.try_recv(), Ok(0));
        assert_eq!(tx.try_send(4), Ok(()), "a place came free");
        assert_eq!(tx.try_send(5), Err(5));
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![1, 2, 4]);
        drop(rx);
        assert_eq!(tx.try_send(6), Err(6), "nobody receives");
    }

    /// An inbox refuses past its capacity and signals the shard's eventfd
    /// only while the shard says it sleeps.
    #[test]
    fn inbox_refuses_when_full_and_wakes_a_sleeping_shard() {
        let (inbox, rx, wake) = Inbox::<u8>::new(2).unwrap();
        wake.set_sleeping(true);
        assert_eq!(inbox.send(1), Ok(()));
        assert_eq!(inbox.send(2), Ok(()));
        assert_eq!(inbox.send(3), Err(3));
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into a live u64 from our own eventfd.
        let n = unsafe { libc::read(wake.fd(), (&mut count as *mut u64).cast(), 8) };
        assert_eq!((n, count), (8, 1), "one signal for the sleeping shard");
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![1, 2]);
    }
}
