//! The shard's own io_uring ring: completion-based socket IO for links,
//! driven by a glommio task that polls the ring's memory.
//!
//! One ring per shard, created on the shard's thread with `SINGLE_ISSUER |
//! DEFER_TASKRUN | TASKRUN_FLAG` and never shared. Operations are pushed as
//! SQEs by the tasks that need them; the driver task submits everything
//! pushed since its last tick in one `io_uring_enter`, which also runs the
//! deferred completions, then wakes the tasks whose operations completed.
//! It enters the kernel only when something is to be submitted, the kernel
//! flagged deferred work (`IORING_SQ_TASKRUN`) or an overflowed completion
//! queue, or every 1,024 idle polls as a safety net.
//!
//! Receiving: one multishot receive per socket, into a ring of provided
//! buffers the shard owns. A completed buffer is taken out of its slot and
//! handed to the link's frame decoder as it is (no copy), and the slot is
//! refilled with fresh memory at once; running out (`ENOBUFS`) ends the
//! multishot receive, which the link re-arms once the driver has refilled.
//! Sending: an operation owns its bytes until its completion arrives, even
//! if the future that asked for it is dropped.
//!
//! Idle behaviour: after the last completion the driver keeps polling for
//! `spin` (default 50 µs), yielding to other tasks between polls; then, if
//! no other task of the shard can run, it sleeps inside the ring (waits in
//! `io_uring_enter` for a completion) for up to `sleep` (default 5 ms),
//! which the kernel ends as directly as it wakes a blocked `recv`; then it
//! parks on an eventfd registered with the ring (awaited through glommio),
//! so an idle shard sleeps and glommio's timers and reactor run. A task
//! that pushes an operation while the driver is parked wakes it; other
//! threads reach the shard through its inbox eventfd, which an operation
//! of this ring reads.
//!
//! Sleeps (`ShardCtx::sleep` and the shard's own timers) are the driver's
//! too: glommio's timers fire only when its reactor runs, every 5 ms while
//! the driver spins, so the driver keeps the shard's sleeps in a heap it
//! checks every 16 polls, and a park lasts at most until the earliest one
//! (one glommio timer, precise while the executor is idle).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::wake::{EventfdRead, Notify};
use crate::stage_trace::{Stage, mark};

const GETEVENTS: u32 = 1;
/// user_data of cancel requests (their completions are ignored).
const CANCEL: u64 = u64::MAX;
/// The provided-buffer group of every shard's ring (groups are per ring).
const BGID: u16 = 0;

/// Ring settings (from the node configuration).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingConfig {
    pub entries: u32,
    pub buffers: u16,
    pub buffer_size: usize,
    pub spin: Duration,
    /// After `spin`, how long the driver may sleep inside its own ring
    /// before it parks through glommio.
    pub sleep: Duration,
}

thread_local! {
    /// Polls of the shard's tasks (those started with [`spawn`]): the
    /// driver sleeps inside its ring only after it was polled twice in a
    /// row with no other task polled in between, that is, when it is the
    /// only task of the shard that can run.
    static TASK_POLLS: Cell<u64> = const { Cell::new(0) };
}

/// Runs `fut` as a task of the calling shard, counted for the driver (see
/// [`Ring::drive`]). Every task of a shard other than the driver starts
/// here.
pub(crate) fn spawn(fut: impl Future<Output = ()> + 'static) {
    spawn_task(fut).detach();
}

/// As [`spawn`], keeping the task's handle.
pub(crate) fn spawn_task<T: 'static>(fut: impl Future<Output = T> + 'static) -> glommio::Task<T> {
    glommio::spawn_local(counted(fut))
}

/// `fut`, its polls counted for the driver (also for an executor's main
/// future).
pub(crate) async fn counted<T>(fut: impl Future<Output = T>) -> T {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        TASK_POLLS.with(|p| p.set(p.get().wrapping_add(1)));
        fut.as_mut().poll(cx)
    })
    .await
}

fn task_polls() -> u64 {
    TASK_POLLS.with(Cell::get)
}

/// One completion, as a waiting task sees it.
pub(crate) struct Completion {
    pub res: i32,
    /// The provided buffer it filled (`res` bytes), for buffer-select receives.
    pub buf: Option<BytesMut>,
}

/// What an operation keeps alive until its last completion.
enum Keep {
    None,
    Send(Bytes),
    Addr(#[allow(dead_code)] Box<(libc::sockaddr_storage, libc::socklen_t)>),
    Buf(Vec<u8>),
}

/// An operation in flight (or a multishot one still running).
pub(crate) struct Op {
    results: RefCell<VecDeque<Completion>>,
    waker: RefCell<Option<Waker>>,
    /// The last completion arrived (no more will).
    done: Cell<bool>,
    keep: RefCell<Keep>,
    slot: Cell<usize>,
}

impl Op {
    fn new(keep: Keep) -> Rc<Op> {
        Rc::new(Op {
            results: RefCell::new(VecDeque::new()),
            waker: RefCell::new(None),
            done: Cell::new(false),
            keep: RefCell::new(keep),
            slot: Cell::new(usize::MAX),
        })
    }

    /// The next completion, waiting for it.
    pub fn next(self: &Rc<Self>) -> impl Future<Output = Option<Completion>> + '_ {
        std::future::poll_fn(move |cx| {
            if let Some(c) = self.results.borrow_mut().pop_front() {
                return Poll::Ready(Some(c));
            }
            if self.done.get() {
                return Poll::Ready(None);
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
    }
}

/// The provided-buffer ring: `n` entries the kernel picks receive buffers
/// from; each slot's memory is a `BytesMut` the shard owns until a
/// completion hands it to a link.
///
/// A slot is refilled at once, with memory a link has finished with if
/// there is some: each buffer handed out is watched through an empty
/// handle on its allocation (`lent`), and once the link's frames and every
/// message cut from them are dropped, that handle is the last reference
/// and the memory goes back into the ring instead of being freed and a new
/// buffer allocated (a 16 KiB `free` + `malloc` per receive showed as a
/// fifth of the receive path's time in a ping-pong profile).
struct BufRing {
    entries: *mut types::BufRingEntry,
    map_len: usize,
    mask: u16,
    tail: u16,
    slots: Vec<Option<BytesMut>>,
    size: usize,
    /// Handles on buffers handed out, oldest first; at most `n / 4` (one
    /// for a ring of fewer than 8), so memory kept for reuse stays within a
    /// quarter of the ring's own.
    lent: VecDeque<BytesMut>,
    reused: u64,
}

impl BufRing {
    fn new(n: u16, size: usize) -> io::Result<BufRing> {
        let map_len = (usize::from(n) * std::mem::size_of::<types::BufRingEntry>()).max(4096);
        // SAFETY: an anonymous private mapping; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(BufRing {
            entries: p.cast(),
            map_len,
            mask: n - 1,
            tail: 0,
            slots: (0..n).map(|_| None).collect(),
            size,
            lent: VecDeque::new(),
            reused: 0,
        })
    }

    /// Gives slot `bid` fresh memory and publishes it to the kernel.
    fn refill(&mut self, bid: u16) {
        let mut b = self.reclaim().unwrap_or_else(|| BytesMut::with_capacity(self.size));
        let addr = b.as_mut_ptr() as u64;
        self.slots[usize::from(bid)] = Some(b);
        // SAFETY: `tail & mask` indexes the mapped entry array; the kernel
        // reads entries only up to the tail we publish below.
        unsafe {
            let e = &mut *self.entries.add(usize::from(self.tail & self.mask));
            e.set_addr(addr);
            e.set_len(self.size as u32);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field overlays the first entry's reserved field
        // (io_uring_buf_ring); it is written with release ordering so the
        // kernel sees the entries first.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Takes the buffer the kernel filled with `len` bytes.
    fn take(&mut self, bid: u16, len: usize) -> Option<BytesMut> {
        let mut b = self.slots.get_mut(usize::from(bid))?.take()?;
        // SAFETY: the kernel wrote `len` (<= capacity) bytes into it.
        unsafe { b.set_len(len.min(b.capacity())) };
        // Refilled from buffers lent earlier: this one is still in use.
        self.refill(bid);
        // An empty view of the buffer's end: it shares the allocation, so
        // it can tell when it is the last reference.
        let watch = b.split_off(b.capacity());
        if self.lent.len() >= (self.slots.len() / 4).max(1) {
            self.lent.pop_front();
        }
        self.lent.push_back(watch);
        Some(b)
    }

    /// A lent buffer whose every other reference is gone, its whole
    /// capacity usable again. Looks at the two oldest: buffers come back
    /// roughly in the order they went out, and one a link keeps goes to
    /// the back of the line rather than block the others.
    fn reclaim(&mut self) -> Option<BytesMut> {
        for _ in 0..2 {
            let mut b = self.lent.pop_front()?;
            // Never allocates: succeeds only when this handle is the
            // buffer's last reference, and then spans all of it.
            if b.try_reclaim(self.size) {
                self.reused += 1;
                return Some(b);
            }
            self.lent.push_back(b);
        }
        None
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping (the ring that used it is gone).
        unsafe { libc::munmap(self.entries.cast(), self.map_len) };
    }
}

/// A sleep the driver serves (see [`Ring::sleep_until`]).
struct Timer {
    waker: RefCell<Option<Waker>>,
    fired: Cell<bool>,
    cancelled: Cell<bool>,
}

/// A sleep on the ring path (from [`Ring::sleep_until`]).
pub(crate) struct Sleep {
    ring: Rc<Ring>,
    /// Armed in the driver's heap on the first poll that has to wait.
    timer: Option<Rc<Timer>>,
    at: Instant,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.timer.as_ref().is_some_and(|t| t.fired.get()) || Instant::now() >= self.at {
            return Poll::Ready(());
        }
        if let Some(t) = &self.timer {
            *t.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let timer = Rc::new(Timer {
            waker: RefCell::new(Some(cx.waker().clone())),
            fired: Cell::new(false),
            cancelled: Cell::new(false),
        });
        let ring = &self.ring;
        let seq = ring.timer_seq.get();
        ring.timer_seq.set(seq + 1);
        ring.timers.borrow_mut().push(Armed { at: self.at, seq, timer: timer.clone() });
        // A parked driver waits for the earliest sleep it knew of.
        if ring.parked.get() {
            ring.wake.notify();
        }
        self.timer = Some(timer);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(t) = &self.timer {
            if !t.fired.get() {
                t.cancelled.set(true);
                t.waker.borrow_mut().take();
                self.ring.note_cancelled();
            }
        }
    }
}

/// A timer in the driver's heap, earliest first (then in arming order).
struct Armed {
    at: Instant,
    seq: u64,
    timer: Rc<Timer>,
}

impl PartialEq for Armed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Armed {}

impl PartialOrd for Armed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Armed {
    /// Reversed: `BinaryHeap` pops the greatest, and the earliest is due first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Counters of one ring.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RingStats {
    pub enters: u64,
    pub completions: u64,
    pub parks: u64,
    /// Sleeps inside the ring (before parking through glommio).
    pub ring_sleeps: u64,
    /// Operations the kernel still holds (gauge).
    pub ops_in_flight: u64,
    /// Bytes owned by send operations still in the kernel's hands (gauge).
    pub send_bytes_held: u64,
    /// Receive buffers refilled with memory a link had finished with.
    pub buffers_reused: u64,
}

/// A shard's ring and its operations.
pub(crate) struct Ring {
    // Field order: the ring is dropped before the buffer memory it uses.
    ring: RefCell<IoUring>,
    bufs: RefCell<BufRing>,
    ops: RefCell<Vec<Option<Rc<Op>>>>,
    free: RefCell<Vec<usize>>,
    /// Registered with the ring; the parked driver waits on it through
    /// `parker` (held here to close it with the ring).
    _eventfd: OwnedFd,
    parked: Cell<bool>,
    /// The parked driver's wait on `eventfd` (never drops a read in flight).
    parker: EventfdRead,
    wake: Notify,
    spin: Duration,
    /// How long the driver may sleep inside the ring (zero when the kernel
    /// lacks `IORING_FEAT_EXT_ARG`, the wait with a timeout).
    sleep: Duration,
    stats: Cell<RingStats>,
    /// Sleeps of the shard (its engines' and its own timers'), served by
    /// the driver: glommio's own timers fire only when its reactor runs,
    /// every 5 ms (the preempt timer) while the driver spins.
    timers: RefCell<std::collections::BinaryHeap<Armed>>,
    timer_seq: Cell<u64>,
    /// Entries of sleeps dropped before they fired, still in `timers`.
    timers_cancelled: Cell<usize>,
}

impl Ring {
    /// Creates the ring on the calling (shard) thread.
    pub fn new(cfg: RingConfig) -> io::Result<Rc<Ring>> {
        if !cfg.buffers.is_power_of_two() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "ring buffers must be a power of two"));
        }
        let mut ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(cfg.entries.saturating_mul(4))
            .build(cfg.entries)?;
        let mut bufs = BufRing::new(cfg.buffers, cfg.buffer_size)?;
        // SAFETY: the entry array stays mapped for the ring's lifetime (the
        // ring is dropped first: field order).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(bufs.entries as u64, cfg.buffers, BGID, 0)?;
        }
        for bid in 0..cfg.buffers {
            bufs.refill(bid);
        }
        let eventfd = super::wake::eventfd()?;
        let efd = eventfd.as_raw_fd();
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        // Off while the driver polls; `park` turns it on.
        ring.completion().disable_eventfd();
        let sleep = if ring.params().is_feature_ext_arg() { cfg.sleep } else { Duration::ZERO };
        Ok(Rc::new(Ring {
            ring: RefCell::new(ring),
            bufs: RefCell::new(bufs),
            ops: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            _eventfd: eventfd,
            parked: Cell::new(false),
            parker: EventfdRead::new(efd),
            wake: Notify::default(),
            spin: cfg.spin,
            sleep,
            stats: Cell::new(RingStats::default()),
            timers: RefCell::new(std::collections::BinaryHeap::new()),
            timer_seq: Cell::new(0),
            timers_cancelled: Cell::new(0),
        }))
    }

    /// Whether this kernel gives a ring with every feature the shard uses.
    ///
    /// The probe ring lives on a thread of its own: tearing a ring down
    /// queues kernel task work on the thread that made it, which interrupts
    /// that thread's next blocking call with a timeout (`EINTR`). The
    /// caller's thread (a validator's, a test's) must not see that. One
    /// provided buffer is enough to test the features (the kernel-side
    /// buffer ring is a page either way); each shard's own ring has them all.
    pub fn probe(cfg: RingConfig) -> io::Result<()> {
        let cfg = RingConfig { buffers: 1, ..cfg };
        std::thread::Builder::new()
            .name("shardwire-ring-probe".into())
            .spawn(move || Ring::new(cfg).map(drop))?
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("ring probe thread panicked")))
    }

    pub fn stats(&self) -> RingStats {
        let mut s = self.stats.get();
        s.ops_in_flight = (self.ops.borrow().len() - self.free.borrow().len()) as u64;
        s.buffers_reused = self.bufs.borrow().reused;
        s
    }

    fn bump(&self, f: impl FnOnce(&mut RingStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// Queues `sqe` for `op` (submitted at the driver's next tick).
    fn push(&self, sqe: squeue::Entry, op: &Rc<Op>) {
        let slot = {
            let mut ops = self.ops.borrow_mut();
            match self.free.borrow_mut().pop() {
                Some(i) => {
                    ops[i] = Some(op.clone());
                    i
                }
                None => {
                    ops.push(Some(op.clone()));
                    ops.len() - 1
                }
            }
        };
        op.slot.set(slot);
        self.push_raw(sqe.user_data(slot as u64));
    }

    fn push_raw(&self, sqe: squeue::Entry) {
        let mut ring = self.ring.borrow_mut();
        loop {
            // SAFETY: every buffer an SQE points to is owned by its Op
            // (`keep`) or by the buffer ring until the last completion.
            if unsafe { ring.submission().push(&sqe) }.is_ok() {
                break;
            }
            // Full: hand what is queued to the kernel now.
            drop(ring);
            self.enter();
            ring = self.ring.borrow_mut();
        }
        drop(ring);
        if self.parked.get() {
            self.wake.notify();
        }
    }

    /// Asks the kernel to cancel `op`, single-shot or multishot (its last
    /// completion still arrives).
    pub fn cancel(&self, op: &Op) {
        if !op.done.get() && op.slot.get() != usize::MAX {
            self.push_raw(opcode::AsyncCancel::new(op.slot.get() as u64).build().user_data(CANCEL));
        }
    }

    /// Submits what is queued and runs deferred completions.
    fn enter(&self) {
        let to_submit = self.ring.borrow_mut().submission().len() as u32;
        let ring = self.ring.borrow();
        mark(Stage::Enter);
        // SAFETY: plain io_uring_enter without an argument struct.
        let _ = unsafe { ring.submitter().enter::<libc::sigset_t>(to_submit, 0, GETEVENTS, None) };
        drop(ring);
        mark(Stage::Entered);
        self.bump(|s| s.enters += 1);
    }

    /// Moves completions to their operations and wakes their tasks.
    fn reap(&self) -> usize {
        let mut n = 0;
        loop {
            let cqe = {
                let mut ring = self.ring.borrow_mut();
                ring.completion().next()
            };
            let Some(cqe) = cqe else { break };
            n += 1;
            let ud = cqe.user_data();
            if ud == CANCEL {
                continue;
            }
            let slot = ud as usize;
            let Some(op) = self.ops.borrow().get(slot).and_then(|o| o.clone()) else { continue };
            let flags = cqe.flags();
            let buf = cqueue::buffer_select(flags)
                .and_then(|bid| self.bufs.borrow_mut().take(bid, usize::try_from(cqe.result()).unwrap_or(0)));
            op.results.borrow_mut().push_back(Completion { res: cqe.result(), buf });
            if !cqueue::more(flags) {
                op.done.set(true);
                if let Keep::Send(b) = &*op.keep.borrow() {
                    self.bump(|s| s.send_bytes_held -= b.len() as u64);
                }
                self.ops.borrow_mut()[slot] = None;
                self.free.borrow_mut().push(slot);
            }
            if let Some(w) = op.waker.borrow_mut().take() {
                w.wake();
            }
        }
        if n > 0 {
            self.bump(|s| s.completions += n as u64);
        }
        n
    }

    fn sq_flags(&self) -> (usize, bool, bool) {
        let mut ring = self.ring.borrow_mut();
        let sq = ring.submission();
        (sq.len(), sq.taskrun(), sq.cq_overflow())
    }

    /// The driver: runs until the shard stops (the executor drops it).
    ///
    /// Idle, it goes through three stages: it polls for `spin` after the
    /// last work; then, for up to `sleep` more, it sleeps inside the ring
    /// (`io_uring_enter` waiting for one completion, bounded by the
    /// earliest armed sleep), which the kernel ends as directly as it wakes
    /// a thread blocked in `recv`, but only while no other task of the
    /// shard can run; then it parks through glommio, so glommio's reactor
    /// (its timers, wake-ups from other threads) runs at least every
    /// `sleep` (as it does every 5 ms while the driver spins).
    ///
    /// `on_tick` runs every 16 polls and before sleeping; it says whether
    /// it woke a task.
    pub async fn drive(self: Rc<Self>, mut on_tick: impl FnMut() -> bool) {
        let mut polls: u32 = 0;
        // The clock is read only every 32 idle polls (a clock read costs as
        // much as a look at the ring here): `active` says work was seen
        // since, and the spin is timed from that read.
        let mut last = Instant::now();
        let mut active = false;
        let mut idle: u32 = 0;
        // Driver polls in a row with no other task polled in between.
        let (mut seen, mut quiet) = (task_polls(), 0u32);
        loop {
            polls = polls.wrapping_add(1);
            let now_polls = task_polls();
            if now_polls == seen {
                quiet = quiet.saturating_add(1);
            } else {
                (seen, quiet) = (now_polls, 0);
            }
            let mut n = self.reap();
            let (sq, taskrun, overflow) = self.sq_flags();
            if sq > 0 || taskrun || overflow || polls % 1024 == 0 {
                self.enter();
                n += self.reap();
            }
            if polls % 16 == 0 {
                let poked = on_tick();
                let fired = self.fire_timers() > 0;
                if fired {
                    active = true;
                }
                if poked || fired {
                    // What the tick woke runs before the driver may sleep.
                    quiet = 0;
                }
            }
            if n > 0 || sq > 0 {
                active = true;
                idle = 0;
                futures_lite::future::yield_now().await;
                continue;
            }
            idle = idle.wrapping_add(1);
            if !self.spin.is_zero() && idle % 32 != 0 {
                futures_lite::future::yield_now().await;
                continue;
            }
            let now = Instant::now();
            if active {
                last = now;
                active = false;
            }
            let since = now.duration_since(last);
            if since < self.spin {
                futures_lite::future::yield_now().await;
                continue;
            }
            if since < self.spin + self.sleep {
                // Two quiet polls: every task woken before the first one
                // has run since (the task queue is first in, first out),
                // and so has any the reactor woke in between.
                if quiet < 2 {
                    // Whatever the tick wakes (the inbox) runs first.
                    on_tick();
                    futures_lite::future::yield_now().await;
                    continue;
                }
                self.sleep_in_ring(last + self.spin + self.sleep);
                if self.fire_timers() > 0 {
                    active = true;
                }
                quiet = 0;
                continue;
            }
            // The tick's work (metrics, inbox) is current before sleeping.
            on_tick();
            self.park().await;
            last = Instant::now();
            idle = 0;
        }
    }

    /// Blocks the shard's thread in the ring until a completion arrives,
    /// `until` or the earliest armed sleep, whichever comes first. Only
    /// for a driver that is the shard's one runnable task: nothing else
    /// on this thread can push work meanwhile, and other threads reach
    /// the shard through its inbox eventfd, read by an operation of this
    /// ring.
    fn sleep_in_ring(&self, until: Instant) {
        let until = self.timers.borrow().peek().map_or(until, |a| a.at.min(until));
        let wait = until.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return;
        }
        let ts = types::Timespec::from(wait);
        let args = types::SubmitArgs::new().timespec(&ts);
        mark(Stage::Enter);
        // A timeout (ETIME) or an interruption just ends the sleep.
        let _ = self.ring.borrow().submitter().submit_with_args(1, &args);
        mark(Stage::Entered);
        self.bump(|s| {
            s.enters += 1;
            s.ring_sleeps += 1;
        });
    }

    /// Sleeps until the ring has work, a task pushes an operation or the
    /// earliest armed sleep is due.
    async fn park(&self) {
        if self.fire_timers() > 0 {
            return;
        }
        self.parked.set(true);
        self.bump(|s| s.parks += 1);
        // The kernel signals the eventfd only while the driver sleeps (a
        // signal per completion costs the sending side's softirq time).
        self.set_eventfd(true);
        // Work that arrived before the eventfd read below is armed is in
        // the ring: look once more. A stale count only makes the read return
        // at once (it drains the count) and the driver look again.
        self.enter();
        let (sq, taskrun, _) = self.sq_flags();
        if self.reap() > 0 || sq > 0 || taskrun {
            self.set_eventfd(false);
            self.parked.set(false);
            return;
        }
        let next = self.timers.borrow().peek().map(|a| a.at);
        let due = async {
            match next {
                // glommio's reactor keeps this one precise: it runs when the
                // executor is idle, as it is while the driver sleeps.
                Some(at) => glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await,
                None => std::future::pending().await,
            }
        };
        self.parker.wait_or(futures_lite::future::or(self.wake.wait(), due)).await;
        self.set_eventfd(false);
        self.parked.set(false);
        self.fire_timers();
    }

    /// Wakes the sleeps that are due; returns how many.
    fn fire_timers(&self) -> usize {
        let mut timers = self.timers.borrow_mut();
        if timers.is_empty() {
            return 0;
        }
        let now = Instant::now();
        let mut n = 0;
        while timers.peek().is_some_and(|a| a.at <= now) {
            let Some(a) = timers.pop() else { break };
            if a.timer.cancelled.get() {
                self.timers_cancelled.set(self.timers_cancelled.get().saturating_sub(1));
                continue;
            }
            a.timer.fired.set(true);
            if let Some(w) = a.timer.waker.borrow_mut().take() {
                w.wake();
                n += 1;
            }
        }
        n
    }

    /// Sleeps until `at`, woken by the driver: within a few microseconds
    /// while it spins, through glommio's timer while it is parked.
    pub fn sleep_until(self: &Rc<Self>, at: Instant) -> Sleep {
        Sleep { ring: self.clone(), timer: None, at }
    }

    /// A sleep was dropped before it fired: its entry is dead weight until
    /// its time comes, so the heap is swept once they are half of it (an
    /// engine racing long sleeps against other events would otherwise
    /// grow it without bound).
    fn note_cancelled(&self) {
        let n = self.timers_cancelled.get() + 1;
        let mut timers = self.timers.borrow_mut();
        if n > 64 && n > timers.len() / 2 {
            timers.retain(|a| !a.timer.cancelled.get());
            self.timers_cancelled.set(0);
        } else {
            self.timers_cancelled.set(n);
        }
    }

    fn set_eventfd(&self, on: bool) {
        let mut ring = self.ring.borrow_mut();
        let cq = ring.completion();
        if on { cq.enable_eventfd() } else { cq.disable_eventfd() }
    }

    // ---- operations ----

    /// Sends `data` on `fd`; the bytes stay owned by the operation until
    /// the kernel is done with them. Returns how many were sent.
    pub async fn send(self: &Rc<Self>, fd: RawFd, data: Bytes) -> io::Result<usize> {
        let sqe = opcode::Send::new(types::Fd(fd), data.as_ptr(), data.len() as u32).flags(libc::MSG_NOSIGNAL).build();
        self.bump(|s| s.send_bytes_held += data.len() as u64);
        // Moving `data` moves the handle, not the bytes the SQE points to.
        let op = Op::new(Keep::Send(data));
        self.push(sqe, &op);
        mark(Stage::SendPushed);
        self.result(op).await.map(|r| r as usize)
    }

    /// Receives at most `max` bytes from `fd` into memory the operation owns.
    pub async fn recv(self: &Rc<Self>, fd: RawFd, max: usize) -> io::Result<BytesMut> {
        let mut v = vec![0u8; max];
        let sqe = opcode::Recv::new(types::Fd(fd), v.as_mut_ptr(), max as u32).build();
        let op = Op::new(Keep::Buf(v));
        self.push(sqe, &op);
        let n = self.result(op.clone()).await? as usize;
        let Keep::Buf(mut v) = std::mem::replace(&mut *op.keep.borrow_mut(), Keep::None) else {
            return Err(io::Error::other("receive buffer missing"));
        };
        v.truncate(n);
        Ok(BytesMut::from(&v[..]))
    }

    /// Connects `fd` to `addr`.
    pub async fn connect(self: &Rc<Self>, fd: RawFd, addr: SocketAddr) -> io::Result<()> {
        let sa = socket2::SockAddr::from(addr);
        let mut storage: Box<(libc::sockaddr_storage, libc::socklen_t)> =
            // SAFETY: sockaddr_storage is plain data; zero is a valid value.
            Box::new((unsafe { std::mem::zeroed() }, sa.len()));
        // SAFETY: copies `sa.len()` bytes of the address into storage big
        // enough for any socket address.
        unsafe {
            std::ptr::copy_nonoverlapping(
                sa.as_ptr().cast::<u8>(),
                (&mut storage.0 as *mut libc::sockaddr_storage).cast::<u8>(),
                sa.len() as usize,
            )
        };
        let sqe = opcode::Connect::new(types::Fd(fd), (&storage.0 as *const libc::sockaddr_storage).cast(), storage.1)
            .build();
        let op = Op::new(Keep::Addr(storage));
        self.push(sqe, &op);
        self.result(op).await.map(drop)
    }

    /// Waits until the eventfd `fd` is signalled, consuming its count.
    pub async fn read_eventfd(self: &Rc<Self>, fd: RawFd) -> io::Result<()> {
        let mut v = vec![0u8; 8];
        let sqe = opcode::Read::new(types::Fd(fd), v.as_mut_ptr(), 8).build();
        let op = Op::new(Keep::Buf(v));
        self.push(sqe, &op);
        self.result(op).await.map(drop)
    }

    /// Starts a multishot receive on `fd` into the provided buffers.
    pub fn recv_multi(self: &Rc<Self>, fd: RawFd) -> Rc<Op> {
        let op = Op::new(Keep::None);
        self.push(opcode::RecvMulti::new(types::Fd(fd), BGID).build(), &op);
        op
    }

    /// Starts a multishot accept on the listening socket `fd`.
    pub fn accept_multi(self: &Rc<Self>, fd: RawFd) -> Rc<Op> {
        let op = Op::new(Keep::None);
        self.push(opcode::AcceptMulti::new(types::Fd(fd)).flags(libc::SOCK_CLOEXEC).build(), &op);
        op
    }

    /// Waits for a single-shot operation's result; cancels it if dropped.
    fn result(self: &Rc<Self>, op: Rc<Op>) -> ResultFuture {
        ResultFuture { ring: self.clone(), op }
    }
}

/// A single-shot operation's result. Dropping it early cancels the
/// operation; its buffers stay alive until the kernel lets go.
struct ResultFuture {
    ring: Rc<Ring>,
    op: Rc<Op>,
}

impl Future for ResultFuture {
    type Output = io::Result<i32>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(c) = self.op.results.borrow_mut().pop_front() {
            return Poll::Ready(if c.res < 0 { Err(io::Error::from_raw_os_error(-c.res)) } else { Ok(c.res) });
        }
        *self.op.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ResultFuture {
    fn drop(&mut self) {
        if !self.op.done.get() {
            self.ring.cancel(&self.op);
        }
    }
}

/// A TCP socket whose IO goes through the shard's ring.
pub(crate) struct RingSocket {
    pub ring: Rc<Ring>,
    pub fd: OwnedFd,
}

impl RingSocket {
    /// A new non-blocking TCP socket for `addr`'s family, connected through the ring.
    pub async fn connect(ring: &Rc<Ring>, addr: SocketAddr) -> io::Result<RingSocket> {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM.nonblocking().cloexec(),
            Some(socket2::Protocol::TCP),
        )?;
        let _ = s.set_nodelay(true);
        let fd: OwnedFd = s.into();
        ring.connect(fd.as_raw_fd(), addr).await?;
        Ok(RingSocket { ring: ring.clone(), fd })
    }

    /// Shuts both directions down (the descriptor stays open until dropped,
    /// so operations still in flight on it complete).
    pub fn shutdown(&self) {
        // SAFETY: shutdown(2) on a descriptor this socket owns.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR) };
    }

    /// Reads some bytes (handshake use).
    pub async fn read(&self, max: usize) -> io::Result<BytesMut> {
        self.ring.recv(self.fd.as_raw_fd(), max).await
    }

    /// Writes all of `data`.
    pub async fn write_all(&self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.ring.send(self.fd.as_raw_fd(), data.clone()).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let _ = data.split_to(n.min(data.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a glommio executor with a ring and its driver (spinning
    /// for `spin`, then sleeping in the ring for 5 ms, then parking).
    fn with_ring<F: Future<Output = ()> + 'static>(spin: Duration, f: impl FnOnce(Rc<Ring>) -> F + Send + 'static) {
        with_ring_sleep(spin, Duration::from_millis(5), f)
    }

    fn with_ring_sleep<F: Future<Output = ()> + 'static>(
        spin: Duration,
        sleep: Duration,
        f: impl FnOnce(Rc<Ring>) -> F + Send + 'static,
    ) {
        glommio::LocalExecutorBuilder::default()
            .preempt_timer(Duration::from_millis(5))
            .spawn(move || {
                counted(async move {
                    let cfg = RingConfig { entries: 64, buffers: 8, buffer_size: 4096, spin, sleep };
                    let ring = Ring::new(cfg).expect("ring");
                    glommio::spawn_local(ring.clone().drive(|| false)).detach();
                    f(ring).await;
                })
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// Sleeps end in deadline order and never before their deadline, with
    /// the driver spinning and with it parked.
    #[test]
    fn sleeps_wake_in_order_and_never_early() {
        for spin in [Duration::from_secs(5), Duration::ZERO] {
            with_ring(spin, move |ring| async move {
                let order = Rc::new(RefCell::new(Vec::new()));
                let start = Instant::now();
                let mut tasks = Vec::new();
                for ms in [3u64, 1, 2] {
                    let (ring, order) = (ring.clone(), order.clone());
                    tasks.push(spawn_task(async move {
                        ring.sleep_until(start + Duration::from_millis(ms)).await;
                        assert!(start.elapsed() >= Duration::from_millis(ms), "woke before its deadline");
                        order.borrow_mut().push(ms);
                    }));
                }
                for t in tasks {
                    t.await;
                }
                assert_eq!(*order.borrow(), vec![1, 2, 3], "spin {spin:?}");
            });
        }
    }

    /// Sleeps dropped before they fire do not pile up in the driver's heap.
    #[test]
    fn dropped_sleeps_are_swept() {
        with_ring(Duration::from_secs(5), |ring| async move {
            let far = Instant::now() + Duration::from_secs(60);
            for _ in 0..10_000 {
                let mut s = ring.sleep_until(far);
                assert!(futures_lite::future::poll_once(&mut s).await.is_none(), "not due yet");
            }
            let left = ring.timers.borrow().len();
            assert!(left <= 200, "{left} dead entries kept");
            // One still armed fires as usual.
            ring.sleep_until(Instant::now() + Duration::from_millis(1)).await;
        });
    }

    /// A driver sleeping in its ring (for up to 3 s here) is woken by
    /// a completion: data from another thread, and a signal of an eventfd
    /// the ring reads (the inbox's way in).
    #[test]
    fn a_sleep_in_the_ring_ends_with_a_completion() {
        with_ring_sleep(Duration::ZERO, Duration::from_secs(3), |ring| async move {
            let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
            let t = Instant::now();
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                std::io::Write::write_all(&mut b, b"ping").unwrap();
            });
            let got = ring.recv(a.as_raw_fd(), 16).await.unwrap();
            assert_eq!(&got[..], b"ping");
            writer.join().unwrap();
            let wake = std::sync::Arc::new(super::super::wake::EventWake::new().unwrap());
            wake.set_sleeping(true);
            let signaller = std::thread::spawn({
                let wake = wake.clone();
                move || {
                    std::thread::sleep(Duration::from_millis(50));
                    wake.signal();
                }
            });
            ring.read_eventfd(wake.fd()).await.unwrap();
            signaller.join().unwrap();
            let st = ring.stats();
            assert!(st.ring_sleeps >= 2, "slept in the ring: {st:?}");
            assert_eq!(st.parks, 0, "never parked through glommio");
            // Two waits of 50 ms, far from the 3 s a sleep could last (the
            // executor ends after the driver's last one).
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        });
    }

    /// A task woken by another task runs before the driver sleeps in its
    /// ring (the driver sleeps only when it is the one runnable task).
    #[test]
    fn the_driver_does_not_sleep_over_runnable_tasks() {
        with_ring_sleep(Duration::ZERO, Duration::from_secs(3), |ring| async move {
            let t = Instant::now();
            for _ in 0..20 {
                let note = Rc::new(Notify::default());
                let woken = spawn_task({
                    let note = note.clone();
                    async move { note.wait().await }
                });
                let r = ring.clone();
                spawn_task(async move {
                    // A sleep of the ring, then a wake of another task.
                    r.sleep_until(Instant::now() + Duration::from_millis(2)).await;
                    note.notify();
                })
                .await;
                woken.await;
            }
            assert!(ring.stats().ring_sleeps > 0);
            // Twenty turns of 2 ms, not 3 s each.
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        });
    }

    /// Sleeps the driver fires itself wake their tasks before it sleeps in
    /// its ring again (it does not sleep over a task it just woke).
    #[test]
    fn short_sleeps_stay_prompt_while_the_driver_sleeps_in_its_ring() {
        with_ring_sleep(Duration::ZERO, Duration::from_secs(1), |ring| async move {
            let t = Instant::now();
            let r = ring.clone();
            spawn_task(async move {
                // Deadlines that fall due on every kind of driver poll.
                for i in 0..1000u64 {
                    r.sleep_until(Instant::now() + Duration::from_micros(i % 16)).await;
                }
            })
            .await;
            assert!(ring.stats().ring_sleeps > 0);
            // A thousand sleeps of at most 15 µs, not a 1 s sleep of the ring.
            assert!(t.elapsed() < Duration::from_millis(900), "{:?}", t.elapsed());
        });
    }

    /// After its spin, an idle driver sleeps in its ring in every idle
    /// stretch, rather than polling on until `ring_sleep` runs out.
    #[test]
    fn an_idle_driver_sleeps_in_its_ring_after_the_spin() {
        with_ring_sleep(Duration::from_micros(50), Duration::from_secs(1), |ring| async move {
            let r = ring.clone();
            spawn_task(async move {
                for _ in 0..100 {
                    r.sleep_until(Instant::now() + Duration::from_millis(1)).await;
                }
            })
            .await;
            // A driver that polled on instead would count none. A stretch in
            // which the thread was descheduled past the 1 ms (other tests
            // spinning on both CPUs) ends without a sleep: 99 of 100 were
            // seen in a full run, so at least half must sleep.
            let st = ring.stats();
            assert!(st.ring_sleeps >= 50, "a sleep in the ring per idle stretch: {st:?}");
        });
    }
}
