//! Shards: one glommio executor per shard, each owning the node proxies of
//! the NodeIds that hash to it, their links and sockets, and one instance
//! of every engine. This is the only module that does IO.
//!
//! Inside a shard everything is single-threaded (`Rc`, `RefCell`): tasks
//! for accepting, dialing, reading and writing each link, timers, the
//! cross-shard mesh and the handle's inbox all share one [`Shard`]. The
//! proxies are pure state machines; the shard is a pump around them:
//!
//! - bytes read from a link → [`Link`] (decrypt) → frames →
//!   [`NodeProxy::handle_frame`] → deliveries to engines (after the proxy is
//!   done, so engines may send from their callbacks);
//! - a proxy that wants to transmit wakes its link's writer, which asks it
//!   for frames, seals them into records and writes them in one go;
//! - proxy events (dial, close, outcomes, link up/down, adverts) are acted on
//!   by [`Shard::drive`] after every interaction;
//! - proxy timers go into a heap served by one timer task.
//!
//! Between shards: one bounded queue into each shard carries batches (sends
//! to a node another shard owns, outcomes for an engine on another shard,
//! accepted sockets whose handshake named a node another shard owns).
//! From outside threads: a bounded queue of commands per shard. Both are
//! crossbeam queues woken the same way: an eventfd the shard awaits when
//! idle (read by the shard's ring on the ring path, by glommio otherwise),
//! and a look every 16 polls of the ring driver while it spins (glommio's
//! own channels are woken only by its reactor, which a spinning shard runs
//! every 5 ms: a cross-shard hop took 2.5 ms on average). A third queue
//! carries wake-ups of the shard's tasks from other threads (the answer to
//! a cross-shard call; anything an engine task or RPC handler awaits that
//! another thread completes), for the same reason (`wake::poll_routed`,
//! `wake::routed`).

mod conn;
mod peer;
mod rpc;
mod uring;
mod wake;

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::Receiver;
use glommio::LocalExecutorBuilder;
use glommio::net::TcpListener;

use crate::handshake::{Established, Identity, Link, LinkError, NodeId, ReplayGuard};
use crate::node::{
    Engine, EngineCounts, EngineFactory, HandleInner, IoMode, Metric, NodeConfig, NodeEvent, NodeHandle, PeerSendError,
    Placement, SendError, SendOptions, ShardInfo, ShardMetrics, ShutdownReport, StartError, shard_of,
};
use crate::proxy::{
    self, Address, Deliver, DialFailure, EngineId, EngineMsg, FrameSink, LinkDecision, LinkId, LinkInfo, MsgId,
    NodeAdvert, NodeProxy, NotQueued, Outcome, Outgoing, Permanence, ProxyEvent, ProxyStats, RefuseReason,
    TransportPrefs,
};
use crate::stage_trace::{Stage, mark};
use crate::wire::{Message, MessageType, Value, ValueId, encode_partial};

use peer::PeerState;
pub(crate) use peer::{PeerCallCmd, call_via_inbox as peer_call_via_inbox};
pub use peer::{PeerError, PeerHandler, PeerRequest, PeerResult, PendingResult, Rejection, ResultReply};
use rpc::RpcState;
pub(crate) use rpc::{CallCmd, Either as CallHandle, call_via_inbox};
pub use rpc::{PendingCall, Request, Responder, ResponseStream, Service, ServiceFn, StreamError, service_fn};
use wake::EventWake;
pub(crate) use wake::Notify;

/// Maps on the per-message path: foldhash (seeded per process; far cheaper
/// than SipHash on 32-byte NodeIds).
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::quality::RandomState>;
pub(crate) type FastSet<K> = HashSet<K, foldhash::quality::RandomState>;

/// Engine index meaning "the node handle" in routing tags and counts.
const HANDLE: usize = u32::MAX as usize;
const NEVER: u64 = u64::MAX;
/// Most cross-shard items waiting for one destination before sends fail,
/// both those a shard still holds for it and those in its queue.
const MESH_PENDING_MAX: usize = 65_536;

fn origin_of(shard: usize, engine: usize) -> u64 {
    ((shard as u64) << 32) | (engine as u64 & 0xffff_ffff)
}

fn split_origin(origin: u64) -> (usize, usize) {
    ((origin >> 32) as usize, (origin & 0xffff_ffff) as usize)
}

/// Wall-clock milliseconds (handshake timestamps only).
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A command from the node handle.
pub(crate) enum Command {
    Send {
        to: NodeId,
        id: MsgId,
        msg: EngineMsg,
        prefs: TransportPrefs,
        expiry_ms: u64,
        notify: bool,
        /// Branch cells of the message's value for the owner's cell store
        /// (peer messages; empty otherwise).
        cells: Cells,
    },
    Peer {
        id: NodeId,
        addr: Address,
        permanence: Permanence,
    },
    Permanence {
        id: NodeId,
        permanence: Permanence,
    },
    Shutdown {
        deadline_ms: u64,
    },
    /// An RPC call for a server node this shard owns.
    Call(Box<CallCmd>),
    /// A stream consumer took items or went away.
    RpcPoke,
    /// A QUERY / TRANSACT / STATUS for a node this shard owns.
    PeerCall(Box<PeerCallCmd>),
}

pub(crate) type Inbox = wake::Inbox<Command>;

/// Branch cells by value ID.
pub(crate) type Cells = Vec<(crate::wire::ValueId, Bytes)>;

/// Work that crosses shards.
// Send is by far the most frequent variant: boxing it would add an
// allocation per cross-shard message to save space in rare ones.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Cross {
    Send { to: NodeId, out: Outgoing, cells: Cells },
    Outcome { origin: u64, id: MsgId, outcome: Outcome, returned: Option<Box<EngineMsg>> },
    Adopt { fd: RawFd, est: Box<Established>, leftover: Bytes },
    Call(Box<CallCmd>),
    PeerCall(Box<PeerCallCmd>),
}

type Batch = Vec<Cross>;

/// State shared by every shard of a node.
pub(crate) struct NodeShared {
    /// A shard could not create its ring and uses glommio's streams.
    pub fell_back: std::sync::atomic::AtomicBool,
    pub replay: Mutex<ReplayGuard>,
    pub pending_handshakes: AtomicUsize,
    pub links: AtomicUsize,
    pub adverts: Arc<RwLock<HashMap<NodeId, NodeAdvert>>>,
    pub our_advert: (u64, Bytes),
    pub epoch_ms: u64,
    pub events: wake::BoundedSender<NodeEvent>,
    pub next_dial_seed: AtomicU64,
    pub inboxes: Vec<Inbox>,
    /// Each shard's queue of batches from the other shards.
    pub mesh_in: Vec<wake::Inbox<Batch>>,
    /// Items in those batches, per receiving shard: at most
    /// `MESH_PENDING_MAX`, or one batch into an empty queue.
    pub mesh_items: Vec<AtomicUsize>,
    pub rpc_client_calls: Arc<crate::rpc::Budget>,
    pub rpc_sessions: Arc<crate::rpc::Budget>,
    pub rpc_calls: Arc<crate::rpc::Budget>,
    pub tx_seen: Mutex<crate::peer::RecentIds>,
    pub beliefs_seen: Mutex<crate::peer::RecentIds>,
}

impl NodeShared {
    pub fn inboxes(&self) -> &[Inbox] {
        &self.inboxes
    }
}

/// What a shard reports when it stops.
pub(crate) struct ShardReport {
    counts: Vec<(String, EngineCounts)>,
    undelivered: Vec<(NodeId, MsgId, Outcome)>,
}

impl ShardReport {
    pub(crate) fn merge_into(self, r: &mut ShutdownReport) {
        for (name, c) in self.counts {
            r.totals.add(&c);
            r.engines.entry(name).or_default().add(&c);
        }
        r.undelivered.extend(self.undelivered);
    }
}

struct Entry {
    px: NodeProxy,
    seen: ProxyStats,
    scheduled: u64,
}

struct Slot {
    remote: NodeId,
    link: Link,
    wake: Rc<Notify>,
    closing: bool,
}

enum Work {
    Deliver { engine: usize, from: NodeId, msg: EngineMsg },
    Outcome { engine: usize, id: MsgId, outcome: Outcome, returned: Option<Box<EngineMsg>> },
    Link { node: NodeId, up: bool },
    Rpc { from: NodeId, sender: EngineId, msg: Message },
    Peer { from: NodeId, sender: EngineId, msg: Message },
}

struct EngineSlot {
    id: EngineId,
    engine: RefCell<Box<dyn Engine>>,
}

/// One shard's state. See the module docs.
pub(crate) struct Shard {
    index: usize,
    count: usize,
    me: NodeId,
    identity: Identity,
    cfg: Arc<NodeConfig>,
    shared: Arc<NodeShared>,
    proxies: RefCell<FastMap<NodeId, Entry>>,
    links: RefCell<FastMap<LinkId, Slot>>,
    next_link: Cell<u64>,
    next_msg: Cell<u64>,
    engines: Vec<EngineSlot>,
    engine_index: FastMap<EngineId, usize>,
    external: FastSet<EngineId>,
    counts: RefCell<Vec<EngineCounts>>,
    handle_counts: RefCell<EngineCounts>,
    work: RefCell<VecDeque<Work>>,
    dispatching: Cell<bool>,
    overflow: RefCell<VecDeque<NodeEvent>>,
    mesh_out: RefCell<Vec<Vec<Cross>>>,
    mesh_wake: Notify,
    timers: RefCell<BinaryHeap<Reverse<(u64, NodeId)>>>,
    timer_wake: Notify,
    metrics: Arc<ShardMetrics>,
    stopping: Cell<bool>,
    undelivered: RefCell<Vec<(NodeId, MsgId, Outcome)>>,
    done: Notify,
    frames: RefCell<Vec<Bytes>>,
    /// The listening socket, shut down explicitly on shutdown so no new
    /// connection can queue on it (with SO_REUSEPORT a lingering listener
    /// would take connections meant for a restarted node).
    listen_fd: Cell<Option<RawFd>>,
    /// The shard's own io_uring ring (`None`: glommio's streams).
    ring: Option<Rc<uring::Ring>>,
    /// The queues from other threads, served by the inbox task: the
    /// handle's commands, the other shards' batches and (ring path)
    /// wake-ups of this shard's tasks. The ring driver also looks at them
    /// while it spins (their eventfd is read only when the shard waits)
    /// and pokes the task.
    inbox: Receiver<Command>,
    mesh_in: Receiver<Batch>,
    cross_wakes: Receiver<std::task::Waker>,
    inbox_poke: Notify,
    rpc: RpcState,
    peer: PeerState,
}

/// What engines see of their shard: send as this engine, read the clock,
/// run tasks. Cloning it is cheap (for tasks an engine spawns); it never
/// leaves its shard's thread.
#[derive(Clone)]
pub struct ShardCtx {
    shard: Rc<Shard>,
    engine: usize,
}

impl ShardCtx {
    /// This node.
    pub fn node_id(&self) -> NodeId {
        self.shard.me
    }

    /// This shard's index.
    pub fn shard(&self) -> usize {
        self.shard.index
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shard.count
    }

    /// Milliseconds on the node's monotonic clock.
    pub fn now_ms(&self) -> u64 {
        self.shard.now()
    }

    /// Sends `msg` to engine `target` on node `to`, as this engine.
    pub fn send(&self, to: NodeId, target: EngineId, msg: Message, opts: SendOptions) -> Result<MsgId, SendError> {
        let sender = self.shard.engines[self.engine].id;
        let m = EngineMsg { sender, target, mailbox: opts.mailbox, msg };
        self.shard.send_from(self.engine, to, m, opts, Vec::new())
    }

    /// Sends a peer message (BELIEF, or any type) of `value` to `$peer` on
    /// node `to`, leaving out the branch cells `omit` selects (the peer
    /// holds them; it asks for any it lacks with MISSING_DATA, which this
    /// node answers from its cell store).
    pub fn send_peer(
        &self,
        to: NodeId,
        ty: MessageType,
        value: &Value,
        omit: impl Fn(&ValueId) -> bool,
        opts: SendOptions,
    ) -> Result<MsgId, PeerSendError> {
        let (msg, cells) = encode_partial(ty, value, &self.shard.cfg.wire, omit)?;
        let m = EngineMsg { sender: crate::peer::PEER_ENGINE, target: crate::peer::PEER_ENGINE, mailbox: None, msg };
        Ok(self.shard.send_from(self.engine, to, m, opts, cells)?)
    }

    /// Sends a QUERY of `query` to node `to`; the RESULT comes back.
    pub fn query(&self, to: NodeId, query: Value, deadline: Duration) -> PendingResult {
        self.peer_request(to, MessageType::Query, Some(query), deadline)
    }

    /// Sends a TRANSACT of `tx` to node `to`.
    pub fn transact(&self, to: NodeId, tx: Value, deadline: Duration) -> PendingResult {
        self.peer_request(to, MessageType::Transact, Some(tx), deadline)
    }

    /// Sends a STATUS request to node `to`.
    pub fn status(&self, to: NodeId, deadline: Duration) -> PendingResult {
        self.peer_request(to, MessageType::Status, None, deadline)
    }

    fn peer_request(&self, to: NodeId, ty: MessageType, body: Option<Value>, deadline: Duration) -> PendingResult {
        let deadline_ms = self.shard.now() + deadline.as_millis() as u64;
        self.shard.peer_call_local(|reply| PeerCallCmd { to, ty, body, deadline_ms, reply })
    }

    /// Sends `msg` back to the engine that sent `to_msg` from node `from`.
    pub fn reply(&self, from: NodeId, to_msg: &EngineMsg, msg: Message, opts: SendOptions) -> Result<MsgId, SendError> {
        self.send(from, to_msg.sender, msg, opts)
    }

    /// Whether a usable link to `node` exists right now (only meaningful on
    /// the shard that owns `node`).
    pub fn is_linked(&self, node: NodeId) -> bool {
        self.shard.proxies.borrow().get(&node).is_some_and(|e| e.px.link().is_some())
    }

    /// Runs `fut` on this shard. Start an engine's tasks here rather than
    /// with `glommio::spawn_local`: the ring driver sleeps in its ring only
    /// when none of the tasks started here can run, so a task started
    /// behind its back may wait up to `ring_sleep` (5 ms) once woken; and a
    /// task started here that is woken from another thread (a channel fed
    /// by a worker pool, say) is woken through the shard's inbox within
    /// microseconds, where glommio would notice it only at its next reactor
    /// pass (up to 5 ms on a spinning shard).
    pub fn spawn(&self, fut: impl std::future::Future<Output = ()> + 'static) {
        uring::spawn(wake::routed(fut));
    }

    /// Sleeps for `d` without blocking the shard. On the ring path the
    /// shard's driver wakes it (within microseconds while the shard is busy;
    /// glommio's own timers would fire only every 5 ms then).
    pub async fn sleep(&self, d: Duration) {
        self.shard.sleep(d).await
    }

    /// Lets the shard's other tasks run. It does not let glommio poll
    /// sockets and timers (that happens when the task queues are idle or the
    /// preemption timer fires): to wait, [`ShardCtx::sleep`] instead.
    pub async fn yield_now(&self) {
        futures_lite::future::yield_now().await;
    }

    /// Whether the node is shutting down (tasks an engine spawned should end).
    pub fn is_stopping(&self) -> bool {
        self.shard.stopping.get()
    }

    /// Calls `method` of `service` on node `to`; fails with
    /// [`RpcError::DeadlineExceeded`](crate::rpc::RpcError) if no answer
    /// comes within `deadline`. The request leaves at once; await the
    /// result.
    pub fn call(&self, to: NodeId, service: &str, method: u32, payload: Bytes, deadline: Duration) -> PendingCall {
        let deadline_ms = self.shard.now() + deadline.as_millis() as u64;
        let cmd =
            |reply| CallCmd { to, service: service.to_string(), method, payload, deadline_ms, window: None, reply };
        self.shard.rpc_call_local(to, cmd, None).unary()
    }

    /// As [`ShardCtx::call`], for a method that answers with a stream.
    pub fn call_streaming(
        &self,
        to: NodeId,
        service: &str,
        method: u32,
        payload: Bytes,
        deadline: Duration,
    ) -> ResponseStream {
        let deadline_ms = self.shard.now() + deadline.as_millis() as u64;
        let window = Some(self.shard.cfg.rpc.stream_window);
        let cmd = |reply| CallCmd { to, service: service.to_string(), method, payload, deadline_ms, window, reply };
        self.shard.rpc_call_local(to, cmd, window).stream()
    }
}

/// Writes proxy frames into a link's records.
struct Sink<'a> {
    link: &'a mut Link,
    out: &'a mut BytesMut,
    failed: bool,
    data_frames: u64,
}

impl FrameSink for Sink<'_> {
    fn frame(&mut self, parts: &[&[u8]]) {
        if parts.first().and_then(|p| p.first()) == Some(&proxy::frames::DATA) {
            self.data_frames += 1;
        }
        if self.link.send_frame_parts(parts, self.out).is_err() {
            self.failed = true;
        }
    }
}

/// Routes received messages to engines (or refuses them) while a proxy
/// handles frames; engines run afterwards, from the work queue.
struct Router<'a> {
    shard: &'a Shard,
}

/// Most frames [`Shard::on_bytes`] hands to the proxy before running the
/// engines on them.
const FRAME_BATCH: usize = 64;

impl Deliver for Router<'_> {
    fn deliver(&mut self, from: NodeId, msg: EngineMsg, _prefs: TransportPrefs) -> Result<(), RefuseReason> {
        let s = self.shard;
        if s.stopping.get() {
            return Err(RefuseReason::ShuttingDown);
        }
        if msg.target == crate::rpc::RPC_ENGINE {
            s.work.borrow_mut().push_back(Work::Rpc { from, sender: msg.sender, msg: msg.msg });
            return Ok(());
        }
        if msg.target == crate::peer::PEER_ENGINE {
            s.work.borrow_mut().push_back(Work::Peer { from, sender: msg.sender, msg: msg.msg });
            return Ok(());
        }
        if let Some(&engine) = s.engine_index.get(&msg.target) {
            s.counts.borrow_mut()[engine].received += 1;
            s.work.borrow_mut().push_back(Work::Deliver { engine, from, msg });
            return Ok(());
        }
        if s.external.contains(&msg.target) {
            // The handle's queue is bounded: a full queue refuses (temporary).
            s.shared.events.try_send(NodeEvent::Message { from, msg }).map_err(|_| RefuseReason::Busy)?;
            s.handle_counts.borrow_mut().received += 1;
            return Ok(());
        }
        Err(RefuseReason::UnknownEngine)
    }
}

impl Shard {
    /// Sleeps for `d`: served by the ring driver on the ring path (glommio's
    /// timers would fire only every 5 ms while it spins), by glommio's
    /// timers otherwise.
    async fn sleep(&self, d: Duration) {
        match &self.ring {
            Some(r) => r.sleep_until(Instant::now() + d).await,
            None => glommio::timer::sleep(d).await,
        }
    }

    fn now(&self) -> u64 {
        crate::node::mono_ms() - self.shared.epoch_ms
    }

    fn proxy_config(&self) -> proxy::ProxyConfig {
        self.cfg.proxy
    }

    /// The entry for `id`, created (ephemeral) if needed.
    fn entry<'a>(&self, map: &'a mut FastMap<NodeId, Entry>, id: NodeId) -> &'a mut Entry {
        map.entry(id).or_insert_with(|| {
            let seed = self.shared.next_dial_seed.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
            let mut px = NodeProxy::new(id, self.me, Permanence::Ephemeral, self.proxy_config(), seed);
            px.set_our_advert(self.shared.our_advert.0, self.shared.our_advert.1.clone());
            if let Some(p) = self.cfg.peers.iter().find(|p| p.id == id) {
                px.set_address(Address::Tcp(p.addr));
            } else if let Some(a) = self.shared.adverts.read().ok().and_then(|m| m.get(&id).and_then(|a| a.tcp_addr()))
            {
                px.set_advertised_address(Address::Tcp(a));
            }
            Entry { px, seen: ProxyStats::default(), scheduled: NEVER }
        })
    }

    fn new_msg_id(&self) -> MsgId {
        let n = self.next_msg.get();
        self.next_msg.set(n + 1);
        MsgId((n << 16) | self.index as u64)
    }

    /// A send from engine `engine` on this shard.
    fn send_from(
        self: &Rc<Self>,
        engine: usize,
        to: NodeId,
        msg: EngineMsg,
        opts: SendOptions,
        cells: Cells,
    ) -> Result<MsgId, SendError> {
        if self.stopping.get() {
            return Err(SendError::ShuttingDown(Box::new(msg)));
        }
        if to == self.me {
            return Err(SendError::ToSelf(Box::new(msg)));
        }
        let id = self.new_msg_id();
        let expiry = opts.expiry.unwrap_or(self.cfg.default_expiry);
        // One clock read per send (the proxy's `now` below is the same).
        let now = self.now();
        let out = Outgoing::new(
            id,
            origin_of(self.index, engine),
            msg,
            opts.prefs,
            now + expiry.as_millis() as u64,
            opts.notify_delivered,
        );
        let owner = shard_of(&to, self.count);
        if owner == self.index {
            self.keep_cells(cells);
            self.local_send(to, out, now).map_err(|e| match e {
                proxy::SendError::Full(o) => SendError::Full(Box::new(o.msg)),
                proxy::SendError::Refused(r, o) => SendError::Refused(r, Box::new(o.msg)),
                proxy::SendError::ShuttingDown(o) => SendError::ShuttingDown(Box::new(o.msg)),
            })?;
        } else {
            if self.mesh_out.borrow()[owner].len() >= MESH_PENDING_MAX {
                return Err(SendError::Full(Box::new(out.msg)));
            }
            self.mesh_push(owner, Cross::Send { to, out, cells });
        }
        self.counts.borrow_mut()[engine].sent += 1;
        mark(Stage::Queued);
        Ok(id)
    }

    /// Keeps the cells of a peer message this node sends, so that it can
    /// answer MISSING_DATA for the ones it left out.
    fn keep_cells(&self, cells: Cells) {
        if cells.is_empty() {
            return;
        }
        let mut store = self.peer.store.borrow_mut();
        for (id, c) in cells {
            store.insert(id, c);
        }
    }

    fn local_send(self: &Rc<Self>, to: NodeId, out: Outgoing, now: u64) -> Result<(), proxy::SendError> {
        // The common case in one map lookup: queued, no event to act on;
        // wake the writer, re-arm the timer if it moved earlier.
        let (r, slow, wake, timeout) = {
            let mut ps = self.proxies.borrow_mut();
            let e = self.entry(&mut ps, to);
            let r = e.px.send(out, now);
            let slow = e.px.has_events();
            let wake = if !slow && e.px.wants_transmit() { e.px.link() } else { None };
            let timeout = match e.px.poll_timeout() {
                Some(t) if !slow && t < e.scheduled => {
                    e.scheduled = t;
                    Some(t)
                }
                _ => None,
            };
            (r, slow, wake, timeout)
        };
        if slow {
            self.drive_with(to, false);
            return r;
        }
        self.wake_and_arm(to, wake, timeout);
        r
    }

    /// A send that reached its owner shard from elsewhere (handle or shard):
    /// a refusal to queue becomes an outcome.
    fn accept_send(self: &Rc<Self>, to: NodeId, out: Outgoing, cells: Cells) {
        self.keep_cells(cells);
        if let Err(e) = self.local_send(to, out, self.now()) {
            let (reason, o) = match e {
                proxy::SendError::Full(o) => (NotQueued::QueueFull, o),
                proxy::SendError::Refused(r, o) => (NotQueued::Refused(r), o),
                proxy::SendError::ShuttingDown(o) => (NotQueued::ShuttingDown, o),
            };
            self.route_outcome(to, o.origin, o.id, Outcome::NotQueued(reason), true, Some(Box::new(o.msg)));
        }
    }

    /// Acts on everything proxy `id` asked for, then re-arms its timer and
    /// wakes its link's writer if it has frames to send.
    fn drive(self: &Rc<Self>, id: NodeId) {
        self.drive_with(id, true);
    }

    /// As [`Shard::drive`]; `stats: false` skips bringing the metrics up to
    /// date (the per-message send path; the next full drive catches up).
    fn drive_with(self: &Rc<Self>, id: NodeId, stats: bool) {
        loop {
            let ev = {
                let mut ps = self.proxies.borrow_mut();
                match ps.get_mut(&id) {
                    Some(e) => e.px.poll_event(),
                    None => return,
                }
            };
            let Some(ev) = ev else { break };
            self.on_proxy_event(id, ev);
        }
        let (wake, timeout) = {
            let mut ps = self.proxies.borrow_mut();
            let Some(e) = ps.get_mut(&id) else { return };
            if stats {
                self.sync_stats(e);
            }
            let wake = if e.px.wants_transmit() { e.px.link() } else { None };
            let t = e.px.poll_timeout();
            let timeout = match t {
                Some(t) if t < e.scheduled => {
                    e.scheduled = t;
                    Some(t)
                }
                _ => None,
            };
            (wake, timeout)
        };
        self.wake_and_arm(id, wake, timeout);
    }

    /// Wakes link `wake`'s writer, if any, and arms proxy `id`'s timer for
    /// `timeout`, if it moved earlier.
    fn wake_and_arm(&self, id: NodeId, wake: Option<LinkId>, timeout: Option<u64>) {
        if let Some(l) = wake {
            if let Some(s) = self.links.borrow().get(&l) {
                s.wake.notify();
            }
        }
        if let Some(t) = timeout {
            self.timers.borrow_mut().push(Reverse((t, id)));
            self.timer_wake.notify();
        }
    }

    /// Adds what a proxy counted since last time to the shard's metrics.
    fn sync_stats(&self, e: &mut Entry) {
        let st = *e.px.stats();
        if st == e.seen {
            return;
        }
        let m = &self.metrics;
        m.add(Metric::messages_sent, st.sent - e.seen.sent);
        m.add(Metric::delivered, st.delivered - e.seen.delivered);
        m.add(Metric::expired, st.expired - e.seen.expired);
        m.add(Metric::refused, st.refused - e.seen.refused);
        m.add(Metric::unresolved, st.unresolved - e.seen.unresolved);
        m.add(Metric::resends, st.resends - e.seen.resends);
        m.add(Metric::messages_in, st.received - e.seen.received);
        m.add(Metric::duplicates, st.duplicates - e.seen.duplicates);
        m.add(Metric::refused_in, st.refused_in - e.seen.refused_in);
        let depth_change = (st.sent as i64 - e.seen.sent as i64)
            - ((st.delivered + st.expired + st.refused + st.unresolved) as i64
                - (e.seen.delivered + e.seen.expired + e.seen.refused + e.seen.unresolved) as i64);
        m.set(Metric::queue_depth, (m.get(Metric::queue_depth) as i64 + depth_change).max(0) as u64);
        e.seen = st;
    }

    fn on_proxy_event(self: &Rc<Self>, id: NodeId, ev: ProxyEvent) {
        match ev {
            ProxyEvent::Dial => self.spawn_dial(id),
            ProxyEvent::Close(l) => {
                if let Some(s) = self.links.borrow_mut().get_mut(&l) {
                    s.closing = true;
                    s.wake.notify();
                }
            }
            ProxyEvent::Delivered { origin, count } => self.count_delivered(origin, count),
            ProxyEvent::Outcome { id: mid, origin, outcome, notify, returned } => {
                self.route_outcome(id, origin, mid, outcome, notify, returned);
            }
            ProxyEvent::LinkUp(_) => {
                self.push_event(NodeEvent::LinkUp(id));
                self.work.borrow_mut().push_back(Work::Link { node: id, up: true });
            }
            ProxyEvent::LinkDown(_) => {
                self.push_event(NodeEvent::LinkDown(id));
                self.work.borrow_mut().push_back(Work::Link { node: id, up: false });
            }
            ProxyEvent::PeerRestarted => {
                self.push_event(NodeEvent::PeerRestarted(id));
                self.rpc_peer_restarted(id);
            }
            ProxyEvent::Advert(a) => {
                if let Ok(mut m) = self.shared.adverts.write() {
                    m.insert(id, a.clone());
                }
                self.push_event(NodeEvent::Advert(a));
            }
        }
    }

    /// Counts deliveries nobody asked to hear about.
    fn count_delivered(&self, origin: u64, count: u64) {
        if crate::rpc::Tag::from_origin(origin).is_some() {
            return;
        }
        let (_, engine) = split_origin(origin);
        if engine == HANDLE {
            self.handle_counts.borrow_mut().delivered += count;
        } else {
            let mut counts = self.counts.borrow_mut();
            let last = counts.len() - 1;
            counts[engine.min(last)].delivered += count;
        }
    }

    /// Counts an outcome and sends it where it is wanted.
    fn route_outcome(
        self: &Rc<Self>,
        remote: NodeId,
        origin: u64,
        id: MsgId,
        outcome: Outcome,
        notify: bool,
        returned: Option<Box<EngineMsg>>,
    ) {
        if let Some(tag) = crate::rpc::Tag::from_origin(origin) {
            if outcome != Outcome::Delivered {
                self.rpc_undelivered(remote, tag, outcome);
                self.rpc_flush();
            }
            return;
        }
        let (shard, engine) = split_origin(origin);
        {
            let mut counts = self.counts.borrow_mut();
            let mut hc = self.handle_counts.borrow_mut();
            let last = counts.len() - 1;
            let c = if engine == HANDLE { &mut *hc } else { &mut counts[engine.min(last)] };
            match outcome {
                Outcome::Delivered => c.delivered += 1,
                Outcome::Expired => c.expired += 1,
                Outcome::Unresolved(_) => c.unresolved += 1,
                Outcome::Refused(_) | Outcome::Undeliverable(_) | Outcome::NotQueued(_) => c.refused += 1,
            }
        }
        if outcome != Outcome::Delivered && self.stopping.get() {
            self.undelivered.borrow_mut().push((remote, id, outcome));
        }
        if outcome == Outcome::Delivered && !notify {
            return;
        }
        if engine == HANDLE {
            self.push_event(NodeEvent::Outcome { id, outcome, returned });
        } else if shard == self.index {
            self.work.borrow_mut().push_back(Work::Outcome { engine, id, outcome, returned });
        } else {
            self.mesh_push(shard, Cross::Outcome { origin, id, outcome, returned });
        }
    }

    /// Queues an event for the handle; never drops it.
    fn push_event(&self, ev: NodeEvent) {
        let mut q = self.overflow.borrow_mut();
        if !q.is_empty() {
            q.push_back(ev);
            return;
        }
        if let Err(ev) = self.shared.events.try_send(ev) {
            q.push_back(ev);
        }
    }

    fn flush_overflow(&self) {
        let mut q = self.overflow.borrow_mut();
        while let Some(ev) = q.pop_front() {
            if let Err(ev) = self.shared.events.try_send(ev) {
                q.push_front(ev);
                break;
            }
        }
    }

    /// Runs engine callbacks queued by the proxies (never re-entrantly).
    fn dispatch(self: &Rc<Self>) {
        if self.dispatching.replace(true) {
            return;
        }
        loop {
            let w = self.work.borrow_mut().pop_front();
            let Some(w) = w else { break };
            match w {
                Work::Deliver { engine, from, msg } => {
                    let ctx = ShardCtx { shard: self.clone(), engine };
                    mark(Stage::Delivered);
                    self.engines[engine].engine.borrow_mut().on_message(&ctx, from, msg);
                }
                Work::Outcome { engine, id, outcome, returned } => {
                    if let Some(slot) = self.engines.get(engine) {
                        let ctx = ShardCtx { shard: self.clone(), engine };
                        slot.engine.borrow_mut().on_outcome(&ctx, id, outcome, returned);
                    }
                }
                Work::Link { node, up } => {
                    for (i, slot) in self.engines.iter().enumerate() {
                        let ctx = ShardCtx { shard: self.clone(), engine: i };
                        slot.engine.borrow_mut().on_link(&ctx, node, up);
                    }
                }
                Work::Rpc { from, sender, msg } => self.rpc_on_message(from, sender, msg),
                Work::Peer { from, sender, msg } => self.peer_on_message(from, sender, msg),
            }
        }
        self.dispatching.set(false);
        self.flush_overflow();
    }

    fn mesh_push(&self, to: usize, c: Cross) {
        self.mesh_out.borrow_mut()[to].push(c);
        self.mesh_wake.notify();
    }

    fn handle_cross(self: &Rc<Self>, c: Cross) {
        match c {
            Cross::Send { to, out, cells } => self.accept_send(to, out, cells),
            Cross::Outcome { origin, id, outcome, returned } => {
                let (_, engine) = split_origin(origin);
                self.work.borrow_mut().push_back(Work::Outcome { engine, id, outcome, returned });
            }
            Cross::Adopt { fd, est, leftover } => {
                // SAFETY: `fd` is a connected TCP socket handed to us by the
                // shard that accepted it; nothing else owns it.
                let sock = unsafe { conn::Sock::from_raw_fd(self, fd) };
                self.adopt(sock, *est, leftover);
            }
            Cross::Call(c) => self.rpc_call(*c),
            Cross::PeerCall(c) => self.peer_call(*c),
        }
    }

    fn command(self: &Rc<Self>, cmd: Command) {
        match cmd {
            Command::Send { to, id, msg, prefs, expiry_ms, notify, cells } => {
                self.handle_counts.borrow_mut().sent += 1;
                let out = Outgoing::new(id, origin_of(self.index, HANDLE), msg, prefs, expiry_ms, notify);
                if self.stopping.get() {
                    self.route_outcome(
                        to,
                        out.origin,
                        id,
                        Outcome::NotQueued(NotQueued::ShuttingDown),
                        true,
                        Some(Box::new(out.msg)),
                    );
                    return;
                }
                self.accept_send(to, out, cells);
            }
            Command::Peer { id, addr, permanence } => {
                let now = self.now();
                {
                    let mut ps = self.proxies.borrow_mut();
                    let e = self.entry(&mut ps, id);
                    e.px.set_address(addr);
                    e.px.set_permanence(permanence, now);
                }
                self.drive(id);
            }
            Command::Permanence { id, permanence } => {
                let now = self.now();
                {
                    let mut ps = self.proxies.borrow_mut();
                    self.entry(&mut ps, id).px.set_permanence(permanence, now);
                }
                self.drive(id);
            }
            Command::Shutdown { deadline_ms } => {
                if !self.stopping.replace(true) {
                    uring::spawn(self.clone().shutdown(deadline_ms));
                }
            }
            Command::Call(c) => self.rpc_call(*c),
            Command::RpcPoke => self.rpc_poll_streams(),
            Command::PeerCall(c) => self.peer_call(*c),
        }
    }

    fn spawn_dial(self: &Rc<Self>, id: NodeId) {
        let addr = {
            let ps = self.proxies.borrow();
            ps.get(&id).and_then(|e| match e.px.address() {
                Some(Address::Tcp(a)) => Some(*a),
                _ => None,
            })
        };
        let Some(addr) = addr else {
            self.dial_failed(id, DialFailure::NoAddress, crate::node::DialError::NoAddress);
            return;
        };
        let shard = self.clone();
        uring::spawn(async move {
            match conn::dial(&shard, id, addr).await {
                Ok((stream, est, leftover)) => shard.adopt(stream, *est, leftover),
                Err((failure, error)) => shard.dial_failed(id, failure, error),
            }
            shard.dispatch();
        });
    }

    fn dial_failed(self: &Rc<Self>, id: NodeId, why: DialFailure, error: crate::node::DialError) {
        self.push_event(NodeEvent::DialFailed { node: id, error });
        let now = self.now();
        if matches!(why, DialFailure::Refused(_)) {
            self.metrics.add(Metric::dials_refused, 1);
        } else {
            self.metrics.add(Metric::handshakes_failed, 1);
        }
        if let Some(e) = self.proxies.borrow_mut().get_mut(&id) {
            e.px.handle_dial_failed(why, now);
        }
        self.drive(id);
    }

    /// Takes ownership of an established link (dialed here, accepted here,
    /// or handed over by the shard that accepted it).
    fn adopt(self: &Rc<Self>, stream: conn::Sock, est: Established, leftover: Bytes) {
        if self.stopping.get() {
            return;
        }
        let remote = est.remote;
        let link_id = LinkId(self.next_link.get());
        self.next_link.set(link_id.0 + 1);
        let info = LinkInfo {
            initiator: if est.initiator { self.me } else { remote },
            remote_advert_ver: est.remote_advert_ver,
            remote_knows_our_advert_ver: est.remote_knows_our_advert_ver,
        };
        let now = self.now();
        let decision = {
            let mut ps = self.proxies.borrow_mut();
            self.entry(&mut ps, remote).px.handle_link_up(link_id, info, now)
        };
        self.metrics.add(Metric::handshakes_ok, 1);
        if decision == LinkDecision::Reject {
            drop(stream);
            self.drive(remote);
            return;
        }
        let wake = Rc::new(Notify::default());
        self.links.borrow_mut().insert(link_id, Slot { remote, link: est.link, wake: wake.clone(), closing: false });
        self.shared.links.fetch_add(1, Ordering::Relaxed);
        self.metrics.add(Metric::links_up, 1);
        let shard = self.clone();
        conn::spawn_link(shard, link_id, stream, leftover, wake);
        self.drive(remote);
    }

    /// Bytes arrived on a link: `feed` hands them to the link, which decrypts
    /// whole records; then frames go to the proxy and engines run, at most
    /// [`FRAME_BATCH`] frames at a time (a received buffer can hold
    /// thousands of small messages: handled and run in small batches, their
    /// frames and work items stay in cache).
    fn on_bytes(
        self: &Rc<Self>,
        link_id: LinkId,
        feed: impl FnOnce(&mut Link) -> Result<(), LinkError>,
    ) -> Result<(), ()> {
        let now = self.now();
        let mut frames = self.frames.take();
        let mut feed = Some(feed);
        let mut remote = None;
        let mut result = Ok(());
        loop {
            let (more, r) = {
                let mut links = self.links.borrow_mut();
                // Gone: an engine closed it while running (or it never was).
                let Some(slot) = links.get_mut(&link_id) else {
                    if remote.is_none() {
                        result = Err(());
                    }
                    break;
                };
                remote = Some(slot.remote);
                if let Some(feed) = feed.take() {
                    if feed(&mut slot.link).is_err() {
                        result = Err(());
                    }
                }
                while result.is_ok() && frames.len() < FRAME_BATCH {
                    match slot.link.poll_frame() {
                        Ok(Some(f)) => frames.push(f),
                        Ok(None) => break,
                        Err(_) => result = Err(()),
                    }
                }
                if result.is_err() {
                    self.metrics.add(Metric::protocol_errors, 1);
                    break;
                }
                (frames.len() == FRAME_BATCH, slot.remote)
            };
            {
                let mut ps = self.proxies.borrow_mut();
                if let Some(e) = ps.get_mut(&r) {
                    let mut router = Router { shard: self };
                    for f in frames.drain(..) {
                        if e.px.handle_frame(link_id, f, now, &mut router).is_err() {
                            self.metrics.add(Metric::protocol_errors, 1);
                            result = Err(());
                            break;
                        }
                    }
                }
            }
            frames.clear();
            mark(Stage::Handled);
            if result.is_err() || !more {
                break;
            }
            self.dispatch();
        }
        frames.clear();
        *self.frames.borrow_mut() = frames;
        if let Some(r) = remote {
            self.drive(r);
        }
        self.dispatch();
        result
    }

    /// Fills `out` with the link's next records. Returns (closing, gone).
    fn fill(self: &Rc<Self>, link_id: LinkId, out: &mut BytesMut) -> (bool, bool) {
        let now = self.now();
        let remote = {
            let mut links = self.links.borrow_mut();
            let Some(slot) = links.get_mut(&link_id) else { return (false, true) };
            let mut ps = self.proxies.borrow_mut();
            if let Some(e) = ps.get_mut(&slot.remote) {
                let mut sink = Sink { link: &mut slot.link, out, failed: false, data_frames: 0 };
                while e.px.poll_transmit(link_id, &mut sink, now) && sink.out.len() < 4 << 20 {}
                let data = sink.data_frames;
                let failed = sink.failed;
                let _ = slot.link.flush(out);
                self.metrics.add(Metric::messages_out, data);
                if failed {
                    slot.closing = true;
                }
            }
            slot.remote
        };
        self.drive(remote);
        let links = self.links.borrow();
        match links.get(&link_id) {
            Some(s) => (s.closing, false),
            None => (false, true),
        }
    }

    /// A link's connection ended.
    fn link_closed(self: &Rc<Self>, link_id: LinkId) {
        let Some(slot) = self.links.borrow_mut().remove(&link_id) else { return };
        self.shared.links.fetch_sub(1, Ordering::Relaxed);
        self.metrics.set(Metric::links_up, self.metrics.get(Metric::links_up).saturating_sub(1));
        slot.wake.notify();
        let now = self.now();
        if let Some(e) = self.proxies.borrow_mut().get_mut(&slot.remote) {
            e.px.handle_link_down(link_id, now);
        }
        self.drive(slot.remote);
        self.dispatch();
    }

    async fn timer_task(self: Rc<Self>) {
        loop {
            let now = self.now();
            let mut due = Vec::new();
            {
                let mut heap = self.timers.borrow_mut();
                while let Some(&Reverse((t, id))) = heap.peek() {
                    if t > now {
                        break;
                    }
                    heap.pop();
                    due.push((t, id));
                }
            }
            for (t, id) in due {
                let fire = {
                    let mut ps = self.proxies.borrow_mut();
                    match ps.get_mut(&id) {
                        Some(e) if e.scheduled == t => {
                            e.scheduled = NEVER;
                            e.px.handle_timeout(now);
                            true
                        }
                        _ => false,
                    }
                };
                if fire {
                    self.drive(id);
                }
            }
            self.dispatch();
            let next = self.timers.borrow().peek().map(|r| r.0.0);
            let wait = next.map_or(100, |t| t.saturating_sub(self.now())).clamp(1, 100);
            futures_lite::future::or(self.sleep(Duration::from_millis(wait)), self.timer_wake.wait()).await;
        }
    }

    async fn mesh_task(self: Rc<Self>) {
        loop {
            self.mesh_wake.wait().await;
            loop {
                let mut blocked = false;
                for to in 0..self.count {
                    let batch = std::mem::take(&mut self.mesh_out.borrow_mut()[to]);
                    if batch.is_empty() {
                        continue;
                    }
                    // Items, not only batches, are bounded: a batch carries
                    // everything pending, and 4,096 of them unbounded took
                    // this machine's memory when one shard flooded another.
                    // The place is taken before the check, so shards sending
                    // to the same one at once cannot all pass it.
                    let (items, n) = (&self.shared.mesh_items[to], batch.len());
                    let queued = items.fetch_add(n, Ordering::AcqRel);
                    let sent = if queued > 0 && queued + n > MESH_PENDING_MAX {
                        items.fetch_sub(n, Ordering::AcqRel);
                        Err(crossbeam_channel::TrySendError::Full(batch))
                    } else {
                        self.shared.mesh_in[to].send_or(batch).inspect_err(|_| {
                            items.fetch_sub(n, Ordering::AcqRel);
                        })
                    };
                    match sent {
                        Ok(()) => self.metrics.add(Metric::cross_shard_batches, 1),
                        Err(crossbeam_channel::TrySendError::Full(batch)) => {
                            let mut q = self.mesh_out.borrow_mut();
                            let later = std::mem::replace(&mut q[to], batch);
                            q[to].extend(later);
                            blocked = true;
                        }
                        // That shard is gone (the node is shutting down).
                        Err(crossbeam_channel::TrySendError::Disconnected(_)) => {}
                    }
                }
                if !blocked {
                    break;
                }
                self.sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Whether any queue from other threads holds something.
    fn has_inbound(&self) -> bool {
        !self.inbox.is_empty() || !self.mesh_in.is_empty() || !self.cross_wakes.is_empty()
    }

    /// Serves the shard's queues from other threads: batches from the
    /// other shards, commands from the handle, and wake-ups of its tasks.
    async fn inbox_task(self: Rc<Self>, wake: Arc<EventWake>) {
        // glommio path: glommio reads the eventfd. Ring path: the ring does
        // (`wake_reader`), so that a driver sleeping in its ring wakes too.
        let efd = self.ring.is_none().then(|| wake::EventfdRead::new(wake.fd()));
        let (rx, mesh) = (&self.inbox, &self.mesh_in);
        loop {
            let mut routed = 0;
            for w in self.cross_wakes.try_iter() {
                w.wake();
                routed += 1;
            }
            if routed > 0 {
                self.metrics.add(Metric::routed_wakes, routed);
            }
            let mut n = 0;
            loop {
                if let Ok(batch) = mesh.try_recv() {
                    let items = batch.len();
                    for c in batch {
                        self.handle_cross(c);
                    }
                    self.shared.mesh_items[self.index].fetch_sub(items, Ordering::AcqRel);
                    self.dispatch();
                } else if let Ok(cmd) = rx.try_recv() {
                    self.command(cmd);
                } else {
                    break;
                }
                n += 1;
                if n % 1024 == 0 {
                    self.dispatch();
                    futures_lite::future::yield_now().await;
                }
            }
            self.dispatch();
            wake.set_sleeping(true);
            if self.has_inbound() {
                wake.set_sleeping(false);
                continue;
            }
            // The eventfd (glommio, when the shard is idle) or a poke from
            // the ring driver (when it spins and glommio's reactor waits,
            // or when the ring's read of the eventfd completed).
            match &efd {
                Some(efd) => {
                    efd.wait_or(self.inbox_poke.wait()).await;
                }
                None => self.inbox_poke.wait().await,
            }
            wake.set_sleeping(false);
        }
    }

    async fn shutdown(self: Rc<Self>, deadline_ms: u64) {
        if let Some(fd) = self.listen_fd.take() {
            // SAFETY: shutting down (not closing) our own listening socket;
            // the accept loop then fails and drops (closes) the listener.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
        let ids: Vec<NodeId> = self.proxies.borrow().keys().copied().collect();
        let now = self.now();
        for id in &ids {
            if let Some(e) = self.proxies.borrow_mut().get_mut(id) {
                e.px.shutdown(now);
            }
            self.drive(*id);
        }
        self.dispatch();
        // Let queued messages drain (and GOODBYEs go out) until the deadline.
        while self.now() < deadline_ms {
            let busy = self.proxies.borrow().values().any(|e| e.px.pending() > 0);
            if !busy {
                break;
            }
            self.sleep(Duration::from_millis(5)).await;
        }
        for id in &ids {
            if let Some(e) = self.proxies.borrow_mut().get_mut(id) {
                e.px.abandon();
            }
            self.drive(*id);
        }
        // Calls still waiting for answers end now.
        self.rpc.client.borrow_mut().shutdown();
        self.peer_shutdown();
        self.rpc_flush();
        self.dispatch();
        // Close every link (GOODBYE already sent where the proxy got to it).
        for s in self.links.borrow_mut().values_mut() {
            s.closing = true;
            s.wake.notify();
        }
        for _ in 0..20 {
            self.flush_overflow();
            if self.links.borrow().is_empty() && self.overflow.borrow().is_empty() {
                break;
            }
            self.sleep(Duration::from_millis(10)).await;
        }
        self.done.notify();
    }

    /// Copies the ring's counters into the shard's metrics.
    fn sync_ring_metrics(&self) {
        if let Some(r) = &self.ring {
            let st = r.stats();
            self.metrics.set(Metric::ring_enters, st.enters);
            self.metrics.set(Metric::ring_completions, st.completions);
            self.metrics.set(Metric::ring_parks, st.parks);
            self.metrics.set(Metric::ring_sleeps, st.ring_sleeps);
            self.metrics.set(Metric::ring_ops_in_flight, st.ops_in_flight);
            self.metrics.set(Metric::ring_send_bytes_held, st.send_bytes_held);
            self.metrics.set(Metric::ring_buffers_reused, st.buffers_reused);
        }
    }

    fn report(&self) -> ShardReport {
        let mut counts: Vec<(String, EngineCounts)> = self
            .engines
            .iter()
            .zip(self.counts.borrow().iter())
            .map(|(e, c)| (e.id.as_str().into_owned(), *c))
            .collect();
        counts.push(("handle".to_string(), *self.handle_counts.borrow()));
        ShardReport { counts, undelivered: self.undelivered.take() }
    }
}

/// Everything a shard thread starts with.
struct ShardInit {
    index: usize,
    count: usize,
    identity: Identity,
    cfg: Arc<NodeConfig>,
    shared: Arc<NodeShared>,
    listener: Option<RawFd>,
    mesh: Receiver<Batch>,
    inbox: Receiver<Command>,
    cross_wakes: (wake::Inbox<std::task::Waker>, Receiver<std::task::Waker>),
    wake: Arc<EventWake>,
    io: IoMode,
    engines: Vec<(EngineId, EngineFactory)>,
    external: Vec<EngineId>,
    services: Vec<(String, crate::node::ServiceFactory)>,
    peer_handler: Option<crate::node::PeerHandlerFactory>,
    metrics: Arc<ShardMetrics>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
}

async fn run(init: ShardInit) -> ShardReport {
    let info = ShardInfo { index: init.index, count: init.count, node_id: init.identity.node_id() };
    // The shard's own ring, unless the node uses glommio's streams or the
    // kernel refuses it here (then this shard falls back, and says so).
    let ring = match init.io {
        IoMode::Uring => match uring::Ring::new(ring_config(&init.cfg)) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(
                    shard = init.index,
                    "io_uring ring refused ({e}); this shard uses glommio's TCP streams"
                );
                init.shared.fell_back.store(true, Ordering::Relaxed);
                None
            }
        },
        IoMode::Glommio => None,
    };
    let (cross_wakes_in, cross_wakes) = init.cross_wakes;
    if ring.is_some() {
        wake::route_cross_wakes(cross_wakes_in);
    }
    let engines: Vec<EngineSlot> =
        init.engines.iter().map(|(id, f)| EngineSlot { id: *id, engine: RefCell::new(f(&info)) }).collect();
    let engine_index = engines.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
    let n_engines = engines.len();
    let services: HashMap<String, Rc<dyn Service>> =
        init.services.iter().map(|(name, f)| (name.clone(), f(&info))).collect();
    let rpc = RpcState::new(
        crate::rpc::ClientTable::new(init.cfg.rpc.clone(), init.cfg.wire, init.shared.rpc_client_calls.clone()),
        crate::rpc::ServerTable::new(
            init.cfg.rpc.clone(),
            init.cfg.wire,
            init.shared.rpc_sessions.clone(),
            init.shared.rpc_calls.clone(),
        ),
        services,
    );
    let shard = Rc::new(Shard {
        index: init.index,
        count: init.count,
        me: init.identity.node_id(),
        identity: init.identity,
        cfg: init.cfg.clone(),
        shared: init.shared.clone(),
        proxies: RefCell::new(FastMap::default()),
        links: RefCell::new(FastMap::default()),
        next_link: Cell::new(1),
        next_msg: Cell::new(1),
        engines,
        engine_index,
        external: init.external.iter().copied().collect(),
        counts: RefCell::new(vec![EngineCounts::default(); n_engines.max(1)]),
        handle_counts: RefCell::new(EngineCounts::default()),
        work: RefCell::new(VecDeque::new()),
        dispatching: Cell::new(false),
        overflow: RefCell::new(VecDeque::new()),
        mesh_out: RefCell::new((0..init.count).map(|_| Vec::new()).collect()),
        mesh_wake: Notify::default(),
        timers: RefCell::new(BinaryHeap::new()),
        timer_wake: Notify::default(),
        metrics: init.metrics,
        stopping: Cell::new(false),
        undelivered: RefCell::new(Vec::new()),
        done: Notify::default(),
        frames: RefCell::new(Vec::new()),
        listen_fd: Cell::new(init.listener),
        ring: ring.clone(),
        inbox: init.inbox,
        mesh_in: init.mesh,
        cross_wakes,
        inbox_poke: Notify::default(),
        rpc,
        peer: PeerState::new(
            init.peer_handler.as_ref().map_or_else(|| Rc::new(peer::NoHandler) as Rc<dyn PeerHandler>, |f| f(&info)),
            &init.cfg,
        ),
    });
    uring::spawn(shard.clone().mesh_task());
    uring::spawn(shard.clone().timer_task());
    uring::spawn(shard.clone().rpc_timer_task());
    uring::spawn(shard.clone().peer_timer_task());
    if let Some(ring) = &ring {
        uring::spawn(wake_reader(Rc::downgrade(&shard), ring.clone(), init.wake.clone()));
    }
    uring::spawn(shard.clone().inbox_task(init.wake));
    if let Some(ring) = &ring {
        let weak = Rc::downgrade(&shard);
        glommio::spawn_local(ring.clone().drive(move || {
            let Some(s) = weak.upgrade() else { return false };
            s.sync_ring_metrics();
            let poke = s.has_inbound();
            if poke {
                s.inbox_poke.notify();
            }
            poke
        }))
        .detach();
    }
    if let Some(fd) = init.listener {
        match &ring {
            Some(r) => {
                // SAFETY: a listening socket created for this shard in `start`.
                let listener = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
                uring::spawn(conn::ring_accept_loop(shard.clone(), r.clone(), listener));
            }
            None => {
                // SAFETY: a listening socket created for this shard in `start`.
                let listener = unsafe { TcpListener::from_raw_fd(fd) };
                uring::spawn(conn::accept_loop(shard.clone(), listener));
            }
        }
    }
    // Configured peers this shard owns.
    let now = shard.now();
    for p in init.cfg.peers.iter().filter(|p| shard_of(&p.id, init.count) == init.index) {
        {
            let mut ps = shard.proxies.borrow_mut();
            let e = shard.entry(&mut ps, p.id);
            e.px.set_address(Address::Tcp(p.addr));
            e.px.set_permanence(p.permanence, now);
        }
        shard.drive(p.id);
    }
    // Engines may start tasks now.
    for (i, slot) in shard.engines.iter().enumerate() {
        let ctx = ShardCtx { shard: shard.clone(), engine: i };
        slot.engine.borrow_mut().on_start(&ctx);
    }
    shard.dispatch();
    let _ = init.ready.send(Ok(()));
    shard.done.wait().await;
    shard.report()
}

fn bind_listeners(addr: SocketAddr, n: usize) -> std::io::Result<(SocketAddr, Vec<RawFd>)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut actual = addr;
    let mut fds = Vec::with_capacity(n);
    for i in 0..n {
        let s = Socket::new(Domain::for_address(actual), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_port(true)?;
        s.set_reuse_address(true)?;
        s.bind(&actual.into())?;
        s.listen(1024)?;
        if i == 0 {
            actual = s.local_addr()?.as_socket().unwrap_or(addr);
        }
        fds.push(s.into_raw_fd());
    }
    Ok((actual, fds))
}

/// Ring path: keeps a read of the inbox's eventfd in the shard's ring and
/// pokes the inbox task when it completes. Other threads signal that
/// eventfd when they queue commands or cross-shard batches for a shard
/// that waits, and a read in the ring ends the driver's sleep in the ring
/// as well as its park through glommio.
async fn wake_reader(shard: std::rc::Weak<Shard>, ring: Rc<uring::Ring>, wake: Arc<EventWake>) {
    let mut warned = false;
    loop {
        let res = ring.read_eventfd(wake.fd()).await;
        let Some(s) = shard.upgrade() else { return };
        match res {
            Ok(()) => s.inbox_poke.notify(),
            Err(e) => {
                // Not seen in practice; the driver's tick still looks at
                // the queues while it polls. Do not spin on the error.
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!("shard {}: reading the inbox eventfd failed: {e}", s.index);
                }
                s.inbox_poke.notify();
                s.sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

fn ring_config(cfg: &NodeConfig) -> uring::RingConfig {
    uring::RingConfig {
        entries: cfg.ring_entries,
        buffers: cfg.ring_buffers,
        buffer_size: cfg.ring_buffer_size,
        spin: cfg.ring_spin,
        sleep: cfg.ring_sleep,
    }
}

pub(crate) fn start(
    identity: Identity,
    cfg: NodeConfig,
    engines: Vec<(EngineId, EngineFactory)>,
    external: Vec<EngineId>,
    services: Vec<(String, crate::node::ServiceFactory)>,
    peer_handler: Option<crate::node::PeerHandlerFactory>,
) -> Result<NodeHandle, StartError> {
    let n = cfg.shards.resolve();
    // The handle's (and stream consumers') ways into each shard.
    let mut inboxes = Vec::with_capacity(n);
    let mut inbox_ends = Vec::with_capacity(n);
    let mut mesh_ins = Vec::with_capacity(n);
    for i in 0..n {
        let (inbox, rx, wake) =
            Inbox::new(cfg.inbox_capacity).map_err(|e| StartError::Shard { shard: i, reason: e.to_string() })?;
        // Batches from the other shards: a second queue, woken the same way.
        let (mesh_in, mesh_rx) = inbox.sibling(cfg.mesh_capacity);
        // Wake-ups of the shard's tasks from other threads (ring path).
        let cross_wakes = inbox.sibling(wake::CROSS_WAKES_MAX);
        inboxes.push(inbox);
        mesh_ins.push(mesh_in);
        inbox_ends.push((rx, mesh_rx, cross_wakes, wake));
    }
    let accepting: Vec<usize> = match &cfg.listen_shards {
        crate::node::ListenShards::All => (0..n).collect(),
        crate::node::ListenShards::Only(v) => {
            let mut v: Vec<usize> = v.iter().copied().filter(|&i| i < n).collect();
            v.dedup();
            if v.is_empty() { vec![0] } else { v }
        }
    };
    let (listen, mut listener_fds) = match cfg.listen {
        Some(addr) => {
            let (a, fds) =
                bind_listeners(addr, accepting.len()).map_err(|source| StartError::Listen { addr, source })?;
            let mut per_shard: Vec<Option<RawFd>> = vec![None; n];
            for (&i, fd) in accepting.iter().zip(fds) {
                per_shard[i] = Some(fd);
            }
            (Some(a), per_shard)
        }
        None => (None, vec![None; n]),
    };
    let epoch_ms = crate::node::mono_ms();
    // The IO path: a probe ring here tells whether this kernel allows every
    // ring feature the shards use; if not, the node uses glommio's streams.
    let io = match cfg.io {
        IoMode::Uring => match uring::Ring::probe(ring_config(&cfg)) {
            Ok(()) => IoMode::Uring,
            Err(e) => {
                tracing::warn!("io_uring ring refused ({e}): falling back to glommio's TCP streams");
                IoMode::Glommio
            }
        },
        IoMode::Glommio => IoMode::Glommio,
    };
    let (events_tx, events_rx) = wake::bounded_lazy(cfg.event_capacity);
    let created = wall_ms();
    let advert = NodeAdvert {
        id: identity.node_id(),
        addrs: listen.into_iter().map(Address::Tcp).collect(),
        version: created,
        created_ms: created,
        sig: Bytes::new(),
    };
    let mut cfg = cfg;
    // A fresh incarnation per process start (never 0).
    cfg.proxy.incarnation = (created << 16) ^ u64::from(std::process::id()) | 1;
    cfg.proxy.wire = cfg.wire;
    let shared = Arc::new(NodeShared {
        fell_back: std::sync::atomic::AtomicBool::new(false),
        replay: Mutex::new(ReplayGuard::new(cfg.handshake.max_clock_skew_ms, cfg.replay_cache)),
        pending_handshakes: AtomicUsize::new(0),
        links: AtomicUsize::new(0),
        adverts: Arc::new(RwLock::new(HashMap::new())),
        our_advert: (advert.version, advert.encode(&cfg.wire)),
        epoch_ms,
        events: events_tx,
        next_dial_seed: AtomicU64::new(created),
        inboxes: inboxes.clone(),
        mesh_in: mesh_ins,
        mesh_items: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        rpc_client_calls: Arc::new(crate::rpc::Budget::new(cfg.rpc.max_client_calls)),
        rpc_sessions: Arc::new(crate::rpc::Budget::new(cfg.rpc.max_sessions)),
        rpc_calls: Arc::new(crate::rpc::Budget::new(cfg.rpc.max_calls)),
        tx_seen: Mutex::new(crate::peer::RecentIds::new(cfg.peer_msgs.tx_dedup)),
        beliefs_seen: Mutex::new(crate::peer::RecentIds::new(cfg.peer_msgs.belief_dedup)),
    });
    let cfg = Arc::new(cfg);
    let mut threads = Vec::with_capacity(n);
    let mut metrics = Vec::with_capacity(n);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    for (i, (inbox_rx, mesh, cross_wakes, wake)) in inbox_ends.into_iter().enumerate() {
        let m = Arc::new(ShardMetrics::default());
        metrics.push(m.clone());
        let init = ShardInit {
            index: i,
            count: n,
            identity: identity.clone(),
            cfg: cfg.clone(),
            shared: shared.clone(),
            listener: listener_fds[i].take(),
            mesh,
            inbox: inbox_rx,
            cross_wakes,
            wake,
            io,
            engines: engines.clone(),
            external: external.clone(),
            services: services.clone(),
            peer_handler: peer_handler.clone(),
            metrics: m,
            ready: ready_tx.clone(),
        };
        let placement = match &cfg.placement {
            Placement::Unbound => glommio::Placement::Unbound,
            Placement::PinnedPerCore => glommio::Placement::Fixed(i % cpus),
            Placement::Cpus(v) if !v.is_empty() => glommio::Placement::Fixed(v[i % v.len()]),
            Placement::Cpus(_) => glommio::Placement::Unbound,
        };
        let builder = LocalExecutorBuilder::new(placement).name(&format!("shardwire-{i}")).io_memory(1 << 20);
        let builder = match io {
            // The ring driver does the spinning; glommio's reactor (timers,
            // channels, the inbox's eventfd) runs at least every 5 ms while it
            // does. 5 ms, not glommio's 100 ms default, keeps timers and
            // cross-shard batches timely; not 1 ms, because each reactor pass
            // stalls the driver for ~45 us (docs/performance.md).
            IoMode::Uring => builder.preempt_timer(Duration::from_millis(5)),
            IoMode::Glommio => builder.spin_before_park(cfg.spin_before_park),
        };
        let handle = builder
            .spawn(move || uring::counted(run(init)))
            .map_err(|e| StartError::Shard { shard: i, reason: e.to_string() })?;
        threads.push(handle);
    }
    drop(ready_tx);
    for i in 0..n {
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(StartError::Shard { shard: i, reason }),
            Err(_) => return Err(StartError::Shard { shard: i, reason: "did not start within 30 s".into() }),
        }
    }
    Ok(NodeHandle {
        inner: Arc::new(HandleInner {
            node_id: identity.node_id(),
            listen,
            shards: n,
            inboxes,
            events: events_rx,
            metrics,
            next_id: AtomicU64::new(1),
            threads: Mutex::new(threads),
            adverts: shared.adverts.clone(),
            stopped: std::sync::atomic::AtomicBool::new(false),
            default_expiry: cfg.default_expiry,
            epoch_ms,
            shutdown_timeout: cfg.shutdown_timeout,
            rpc_window: cfg.rpc.stream_window,
            wire: cfg.wire,
            io,
            shared: shared.clone(),
        }),
    })
}
