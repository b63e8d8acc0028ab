//! Waking a shard: a single-waiter notification between tasks of one shard,
//! and a cross-thread inbox (bounded crossbeam queue + eventfd) for the
//! node handle.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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

/// A new eventfd, blocking on purpose: reads of it (glommio's, the ring's)
/// must wait, not fail.
pub(crate) fn eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor, owned from here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An eventfd a parked shard waits on; writers signal it only when the
/// shard said it is about to sleep.
pub(crate) struct EventWake {
    fd: OwnedFd,
    sleeping: AtomicBool,
}

impl EventWake {
    pub fn new() -> std::io::Result<EventWake> {
        Ok(EventWake { fd: eventfd()?, sleeping: AtomicBool::new(false) })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
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
            unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
        }
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

/// How many wake-ups from other threads a shard's queue holds; beyond
/// that a waker is woken through glommio's own path (slower, not lost).
pub(crate) const CROSS_WAKES_MAX: usize = 65_536;

thread_local! {
    /// The queue into the shard running on this thread for wake-ups that
    /// come from other threads (ring path; `None` elsewhere).
    static CROSS_WAKES: RefCell<Option<Inbox<Waker>>> = const { RefCell::new(None) };
}

/// Makes this (shard) thread's futures route wake-ups from other threads
/// through `queue` (see [`poll_routed`]).
pub(crate) fn route_cross_wakes(queue: Inbox<Waker>) {
    CROSS_WAKES.with(|q| *q.borrow_mut() = Some(queue));
}

/// A waker that, woken on another thread, queues the task's own waker for
/// its shard and signals the shard's eventfd. glommio handles a wake-up
/// from another thread only when its reactor runs: every 5 ms while the
/// ring driver spins, and after the driver's sleep in its ring.
struct CrossWake {
    waker: Waker,
    thread: std::thread::ThreadId,
    queue: Inbox<Waker>,
}

impl std::task::Wake for CrossWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if std::thread::current().id() == self.thread {
            self.waker.wake_by_ref();
        } else if let Err(w) = self.queue.send(self.waker.clone()) {
            w.wake();
        }
    }
}

thread_local! {
    /// Whether a [`routed`] task is polling its future on this thread: the
    /// waker it hands down routes already.
    static IN_ROUTED_TASK: Cell<bool> = const { Cell::new(false) };
}

/// Marks the polls of a [`routed`] task's future (undone on drop, also
/// when a poll panics).
struct InRoutedTask(bool);

impl InRoutedTask {
    fn enter() -> InRoutedTask {
        InRoutedTask(IN_ROUTED_TASK.replace(true))
    }
}

impl Drop for InRoutedTask {
    fn drop(&mut self) {
        IN_ROUTED_TASK.set(self.0);
    }
}

/// Polls `f` (a future whose wake-up may come from another shard's thread,
/// such as a cross-shard call's answer) with a waker that routes such a
/// wake-up through the shard's inbox; `slot` caches it for the task's
/// waker. Off a routed shard thread, or inside a [`routed`] task (whose
/// waker routes already), `f` gets the caller's context as is.
pub(crate) fn poll_routed<T>(
    slot: &mut Option<(Waker, Waker)>,
    cx: &mut std::task::Context<'_>,
    f: impl FnOnce(&mut std::task::Context<'_>) -> Poll<T>,
) -> Poll<T> {
    if IN_ROUTED_TASK.get() {
        return f(cx);
    }
    if let Some((task, routed)) = slot.as_ref()
        && task.will_wake(cx.waker())
    {
        return f(&mut std::task::Context::from_waker(routed));
    }
    let Some(queue) = CROSS_WAKES.with(|q| q.borrow().clone()) else {
        return f(cx);
    };
    let routed =
        Waker::from(Arc::new(CrossWake { waker: cx.waker().clone(), thread: std::thread::current().id(), queue }));
    *slot = Some((cx.waker().clone(), routed.clone()));
    f(&mut std::task::Context::from_waker(&routed))
}

/// `fut`, with every wake-up from another thread routed as
/// [`poll_routed`] routes it: for tasks that run application code (engine
/// tasks, RPC handlers), which may await anything another thread completes
/// (a channel from a worker pool, a lock, a timer thread). On a spinning
/// ring shard glommio would see such a wake-up only at its next reactor
/// pass, up to 5 ms later.
/// The library's futures polled inside such a task (`PendingCall`, ...)
/// hand its waker on as it is instead of wrapping it again.
pub(crate) async fn routed<T>(fut: impl Future<Output = T>) -> T {
    let mut fut = std::pin::pin!(fut);
    let mut slot = None;
    poll_fn(|cx| {
        poll_routed(&mut slot, cx, |cx| {
            let _inside = InRoutedTask::enter();
            fut.as_mut().poll(cx)
        })
    })
    .await
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

    /// A routed waker woken on another thread queues the task's waker for
    /// the shard and signals its eventfd; woken on the shard's own thread
    /// it wakes the task at once. The routed waker is made once per task
    /// waker.
    #[test]
    fn wakes_from_other_threads_go_through_the_shard_queue() {
        #[derive(Default)]
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let (queue, rx, wake) = Inbox::<Waker>::new(4).unwrap();
        let count = Arc::new(Count::default());
        let task = Waker::from(count.clone());
        let mut cx = std::task::Context::from_waker(&task);
        let mut slot = None;
        // Off a routed thread: the caller's waker as is.
        let w = poll_routed(&mut slot, &mut cx, |cx| Poll::<Waker>::Ready(cx.waker().clone()));
        assert!(matches!(w, Poll::Ready(ref w) if w.will_wake(&task)) && slot.is_none());
        route_cross_wakes(queue);
        let Poll::Ready(routed) = poll_routed(&mut slot, &mut cx, |cx| Poll::Ready(cx.waker().clone())) else {
            unreachable!()
        };
        assert!(!routed.will_wake(&task), "routed");
        let Poll::Ready(again) = poll_routed(&mut slot, &mut cx, |cx| Poll::Ready(cx.waker().clone())) else {
            unreachable!()
        };
        assert!(again.will_wake(&routed), "made once per task waker");
        wake.set_sleeping(true);
        std::thread::spawn(move || again.wake()).join().unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "not woken on the other thread");
        let mut n = 0u64;
        // SAFETY: reads 8 bytes into a live u64 from our own eventfd.
        let r = unsafe { libc::read(wake.fd(), (&mut n as *mut u64).cast(), 8) };
        assert_eq!((r, n), (8, 1), "the shard was signalled");
        let queued: Vec<Waker> = rx.try_iter().collect();
        assert_eq!(queued.len(), 1);
        assert!(queued[0].will_wake(&task), "the task's own waker was queued");
        routed.wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken at once on its own thread");
        CROSS_WAKES.with(|q| *q.borrow_mut() = None);
    }

    /// Inside a routed task, the library's futures hand the task's routed
    /// waker on as it is: one routed waker per task, none per future.
    #[test]
    fn futures_inside_a_routed_task_use_its_waker() {
        let (queue, rx, _wake) = Inbox::<Waker>::new(4).unwrap();
        let task = Waker::noop().clone();
        let mut cx = std::task::Context::from_waker(&task);
        route_cross_wakes(queue);
        let inner = Cell::new(false);
        let mut fut = std::pin::pin!(routed(poll_fn(|cx| {
            let mut slot = None;
            let seen = poll_routed(&mut slot, cx, |cx| Poll::<Waker>::Ready(cx.waker().clone()));
            inner.set(slot.is_some());
            seen
        })));
        let Poll::Ready(seen) = fut.as_mut().poll(&mut cx) else { unreachable!() };
        assert!(!seen.will_wake(&task), "the task's waker routes");
        assert!(!inner.get(), "the inner future made no routed waker of its own");
        std::thread::spawn(move || seen.wake()).join().unwrap();
        assert_eq!(rx.try_iter().count(), 1, "a wake-up from another thread reaches the queue once");
        assert!(!IN_ROUTED_TASK.get(), "the mark ends with the poll");
        CROSS_WAKES.with(|q| *q.borrow_mut() = None);
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
