//! The public API: build and start a [`Node`], register engines, send
//! messages, receive events, read metrics, shut down.
//!
//! ```no_run
//! use std::time::Duration;
//! use shardwire::handshake::Identity;
//! use shardwire::node::{Node, SendOptions, Shards};
//! use shardwire::proxy::EngineId;
//!
//! let node = Node::builder()
//!     .identity(Identity::generate())
//!     .listen("127.0.0.1:0".parse().unwrap())
//!     .shards(Shards::Count(2))
//!     .external_engine("app")
//!     .start()
//!     .unwrap();
//! println!("{} listens on {:?}", node.node_id(), node.listen_addr());
//! node.shutdown(Duration::from_secs(1));
//! ```
//!
//! Engines run on shards (one instance per shard, created by a factory):
//! an incoming message is delivered to the target engine on the shard that
//! owns the sender's link. Threads outside the shards use the
//! [`NodeHandle`] (`Send + Sync + Clone`) and its event queue.

pub mod config;
pub mod metrics;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crossbeam_channel::Receiver;

pub use config::{IoMode, ListenShards, NodeConfig, PeerConfig, Placement, RING_BUFFER_SIZES, Shards};
pub use metrics::{Metric, ShardMetrics};

use crate::handshake::{Identity, NodeId};
use crate::proxy::{Address, EngineId, EngineMsg, MailboxId, MsgId, NodeAdvert, Outcome, Permanence, TransportPrefs};
use crate::shard;
pub use crate::shard::{
    PeerError, PeerHandler, PeerRequest, PeerResult, PendingCall, PendingResult, Rejection, Request, Responder,
    ResponseStream, ResultReply, Service, ServiceFn, ShardCtx, StreamError, service_fn,
};
use crate::wire::{EncodeError, Message, MessageType, Value, ValueId, encode_partial};

/// Milliseconds on the system's coarse monotonic clock (4 ms resolution on
/// a 250 Hz kernel; a few nanoseconds to read, where the precise clock
/// costs tens). Every node time (expiries, timers, deadlines) is in these
/// milliseconds, counted from the node's start.
pub(crate) fn mono_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec we own; CLOCK_MONOTONIC_COARSE exists on
    // every Linux glommio runs on.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// The shard that owns the node proxy for `id` among `shards`: a stable
/// function of the NodeId (the first 8 bytes of the key, which is uniform).
pub fn shard_of(id: &NodeId, shards: usize) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    (u64::from_le_bytes(b) % shards.max(1) as u64) as usize
}

/// How to send one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendOptions {
    /// Give up if not delivered within this long (default: the node's
    /// `default_expiry`, 30 s).
    pub expiry: Option<Duration>,
    /// Transport preferences (TCP honours all).
    pub prefs: TransportPrefs,
    /// Mailbox inside the target engine.
    pub mailbox: Option<MailboxId>,
    /// Also report successful delivery (failures are always reported).
    pub notify_delivered: bool,
}

impl SendOptions {
    /// Expire after `d`.
    pub fn expiring_in(d: Duration) -> Self {
        SendOptions { expiry: Some(d), ..Self::default() }
    }

    /// Also report [`Outcome::Delivered`].
    pub fn notify(mut self) -> Self {
        self.notify_delivered = true;
        self
    }
}

/// Why a send was not accepted at all (the message is handed back).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A bounded queue on the way is full: retry later.
    #[error("queue full")]
    Full(Box<EngineMsg>),
    /// The remote refused our connection recently (denied / incompatible).
    #[error("the remote refused the connection: {}", .0.name())]
    Refused(crate::handshake::Refusal, Box<EngineMsg>),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown(Box<EngineMsg>),
    /// The target is this node itself.
    #[error("cannot send to this node itself")]
    ToSelf(Box<EngineMsg>),
}

impl SendError {
    /// The message, handed back.
    pub fn into_msg(self) -> EngineMsg {
        match self {
            SendError::Full(m) | SendError::Refused(_, m) | SendError::ShuttingDown(m) | SendError::ToSelf(m) => *m,
        }
    }
}

/// Why a peer message was not sent.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PeerSendError {
    /// The value could not be encoded.
    #[error("cannot encode the value: {0}")]
    Encode(#[from] EncodeError),
    /// The send was not accepted.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Why a dial to a node failed (reported as [`NodeEvent::DialFailed`];
/// the proxy retries with backoff unless the remote refused for good).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The node at that address has another key: the NodeId is wrong (or
    /// the request was altered on the way). Unauthenticated, so retried.
    #[error("the node at that address is not the NodeId dialed (it could not decrypt the request)")]
    WrongNodeId,
    /// The remote's allow-list does not include this node.
    #[error("the remote refused: denied")]
    Denied,
    /// No common protocol version.
    #[error("the remote refused: incompatible versions")]
    Incompatible,
    /// The remote is at a limit: retried with backoff.
    #[error("the remote refused: over capacity")]
    OverCapacity,
    /// The clocks differ by more than the allowed skew.
    #[error("the remote rejected the request's timestamp: check both clocks (NTP)")]
    ClockSkew,
    /// No answer within the handshake timeout.
    #[error("handshake timed out")]
    Timeout,
    /// TCP connect or IO failed, with the kind the OS gave (nothing
    /// listening: `ConnectionRefused`; reset: `ConnectionReset`; ...).
    #[error("connection failed: {0}")]
    Io(std::io::ErrorKind),
    /// The remote closed the connection before the handshake finished.
    #[error("the remote closed the connection during the handshake")]
    Closed,
    /// No address is known for the node.
    #[error("no address known for the node")]
    NoAddress,
    /// The handshake failed otherwise.
    #[error("handshake failed: {0}")]
    Handshake(String),
}

impl DialError {
    /// Whether retrying cannot help (the tools stop on these).
    pub fn is_fatal(&self) -> bool {
        matches!(self, DialError::WrongNodeId | DialError::Denied | DialError::Incompatible | DialError::ClockSkew)
    }
}

/// What threads outside the shards receive.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// A message for an external engine.
    Message {
        /// The sending node.
        from: NodeId,
        /// The message.
        msg: EngineMsg,
    },
    /// The final answer for a message sent through the handle.
    Outcome {
        /// Its ID (as `send` returned).
        id: MsgId,
        /// The answer.
        outcome: Outcome,
        /// The message, when not delivered.
        returned: Option<Box<EngineMsg>>,
    },
    /// A link to a node came up.
    LinkUp(NodeId),
    /// A link to a node went down.
    LinkDown(NodeId),
    /// A newer advert of a node was accepted.
    Advert(NodeAdvert),
    /// A node's process restarted (its link came back with a new
    /// incarnation): what was in flight to it is reported unresolved, and
    /// RPC sessions with it are gone.
    PeerRestarted(NodeId),
    /// A dial to a node failed (the link is retried as its permanence says).
    DialFailed {
        /// The node dialed.
        node: NodeId,
        /// Why.
        error: DialError,
    },
}

/// An application component running on every shard.
///
/// Callbacks run on the shard's thread and must not block. They receive a
/// [`ShardCtx`] to send messages as this engine.
pub trait Engine: 'static {
    /// The shard started (called once, before any message): spawn tasks
    /// here with [`ShardCtx::spawn`].
    fn on_start(&mut self, ctx: &ShardCtx) {
        let _ = ctx;
    }

    /// A message arrived for this engine.
    fn on_message(&mut self, ctx: &ShardCtx, from: NodeId, msg: EngineMsg);

    /// The final answer for a message this engine sent (failures always;
    /// deliveries when the send asked for them).
    fn on_outcome(&mut self, ctx: &ShardCtx, id: MsgId, outcome: Outcome, returned: Option<Box<EngineMsg>>) {
        let _ = (ctx, id, outcome, returned);
    }

    /// A link to `node` came up or went down.
    fn on_link(&mut self, ctx: &ShardCtx, node: NodeId, up: bool) {
        let _ = (ctx, node, up);
    }
}

/// Creates an engine instance for one shard.
pub type EngineFactory = Arc<dyn Fn(&ShardInfo) -> Box<dyn Engine> + Send + Sync>;

/// Creates the peer-message handler for one shard.
pub type PeerHandlerFactory = Arc<dyn Fn(&ShardInfo) -> Rc<dyn PeerHandler> + Send + Sync>;

/// Creates a service instance for one shard.
pub type ServiceFactory = Arc<dyn Fn(&ShardInfo) -> Rc<dyn Service> + Send + Sync>;

/// What an engine factory knows about the shard it builds for.
#[derive(Debug, Clone, Copy)]
pub struct ShardInfo {
    /// This shard's index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
    /// This node.
    pub node_id: NodeId,
}

/// Builds a [`Node`].
pub struct NodeBuilder {
    identity: Option<Identity>,
    cfg: NodeConfig,
    engines: Vec<(EngineId, EngineFactory)>,
    external: Vec<EngineId>,
    services: Vec<(String, ServiceFactory)>,
    peer_handler: Option<PeerHandlerFactory>,
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// No identity was given.
    #[error("a node needs an identity (NodeBuilder::identity)")]
    NoIdentity,
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A shard executor could not start (glommio needs io_uring and at least
    /// 512 KiB of locked memory: `ulimit -l`).
    #[error("cannot start shard {shard}: {reason}")]
    Shard {
        /// Which shard.
        shard: usize,
        /// Why.
        reason: String,
    },
    /// Two engines share a name.
    #[error("engine {0} registered twice")]
    DuplicateEngine(EngineId),
    /// Engine names starting with `$` belong to the library.
    #[error("engine name {0} is reserved (names starting with '$' belong to shardwire)")]
    ReservedEngine(EngineId),
    /// A service name is empty, too long (64 bytes) or registered twice.
    #[error("bad or duplicate service name {0:?}")]
    BadService(String),
    /// A configuration value is out of range.
    #[error("bad configuration: {0}")]
    Config(&'static str),
    /// More shards than [`Shards::max`] allows on this machine.
    #[error("cannot run {asked} shards: at most {max} on this machine (four per CPU, at least 16)")]
    TooManyShards {
        /// The count asked for.
        asked: usize,
        /// The most allowed here.
        max: usize,
    },
}

/// Entry point: `Node::builder()`.
pub struct Node;

impl Node {
    /// A builder with default configuration.
    pub fn builder() -> NodeBuilder {
        NodeBuilder {
            identity: None,
            cfg: NodeConfig::default(),
            engines: Vec::new(),
            external: Vec::new(),
            services: Vec::new(),
            peer_handler: None,
        }
    }
}

impl NodeBuilder {
    /// The node's static keypair.
    pub fn identity(mut self, id: Identity) -> Self {
        self.identity = Some(id);
        self
    }

    /// Where to listen.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.cfg.listen = Some(addr);
        self
    }

    /// How many shards.
    pub fn shards(mut self, s: Shards) -> Self {
        self.cfg.shards = s;
        self
    }

    /// A peer known at start.
    pub fn peer(mut self, id: NodeId, addr: SocketAddr, permanence: Permanence) -> Self {
        self.cfg.peers.push(PeerConfig { id, addr, permanence });
        self
    }

    /// Only these NodeIds may connect (repeatable).
    pub fn allow(mut self, id: NodeId) -> Self {
        self.cfg.allow.get_or_insert_with(Default::default).insert(id);
        self
    }

    /// Replaces the whole configuration (identity and engines are kept).
    pub fn config(mut self, cfg: NodeConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// Edits the configuration in place.
    pub fn configure(mut self, f: impl FnOnce(&mut NodeConfig)) -> Self {
        f(&mut self.cfg);
        self
    }

    /// Registers an engine: `factory` runs once per shard.
    pub fn engine<E: Engine>(
        mut self,
        name: &'static str,
        factory: impl Fn(&ShardInfo) -> E + Send + Sync + 'static,
    ) -> Self {
        let f: EngineFactory = Arc::new(move |info| Box::new(factory(info)));
        self.engines.push((EngineId::named(name), f));
        self
    }

    /// Messages for engine `name` go to the handle's event queue.
    pub fn external_engine(mut self, name: &'static str) -> Self {
        self.external.push(EngineId::named(name));
        self
    }

    /// Registers an RPC service: `factory` runs once per shard. Calls from
    /// a node are handled on the shard that owns that node's link.
    pub fn rpc_service<S: Service>(
        mut self,
        name: &str,
        factory: impl Fn(&ShardInfo) -> S + Send + Sync + 'static,
    ) -> Self {
        let f: ServiceFactory = Arc::new(move |info| Rc::new(factory(info)));
        self.services.push((name.to_string(), f));
        self
    }

    /// Registers the handler of the CAD015 peer messages (QUERY, TRANSACT,
    /// STATUS, BELIEF): `factory` runs once per shard. Without one, the
    /// node answers requests with `:UNSUPPORTED` and ignores beliefs.
    pub fn peer_handler<H: PeerHandler>(mut self, factory: impl Fn(&ShardInfo) -> H + Send + Sync + 'static) -> Self {
        self.peer_handler = Some(Arc::new(move |info| Rc::new(factory(info))));
        self
    }

    /// A peer whose beliefs are served first under load (repeatable).
    pub fn trusted(mut self, id: NodeId) -> Self {
        self.cfg.peer_msgs.trusted.insert(id);
        self
    }

    /// Starts the shards; returns once every shard listens and runs.
    pub fn start(self) -> Result<NodeHandle, StartError> {
        let identity = self.identity.ok_or(StartError::NoIdentity)?;
        let (asked, max) = (self.cfg.shards.resolve(), Shards::max());
        if asked > max {
            return Err(StartError::TooManyShards { asked, max });
        }
        if !self.cfg.ring_buffers.is_power_of_two() {
            return Err(StartError::Config("ring_buffers must be a power of two"));
        }
        if !config::RING_BUFFER_SIZES.contains(&self.cfg.ring_buffer_size) {
            return Err(StartError::Config("ring_buffer_size must be 512 bytes .. 1 MiB"));
        }
        let mut names = std::collections::HashSet::new();
        for id in self.engines.iter().map(|(n, _)| n).chain(self.external.iter()) {
            if id.is_reserved() {
                return Err(StartError::ReservedEngine(*id));
            }
            if !names.insert(*id) {
                return Err(StartError::DuplicateEngine(*id));
            }
        }
        let mut services = std::collections::HashSet::new();
        for (name, _) in &self.services {
            if name.is_empty() || name.len() > crate::rpc::msg::MAX_SERVICE_NAME || !services.insert(name.clone()) {
                return Err(StartError::BadService(name.clone()));
            }
        }
        shard::start(identity, self.cfg, self.engines, self.external, self.services, self.peer_handler)
    }
}

/// Totals of a shutdown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// The counters summed over every engine and the handle: messages
    /// received from peers and delivered to local engines, accepted for
    /// sending, and of those delivered, expired, refused or undeliverable,
    /// and of unknown fate.
    pub totals: EngineCounts,
    /// Messages that were not delivered when the node stopped: (remote, id, outcome).
    pub undelivered: Vec<(NodeId, MsgId, Outcome)>,
    /// The same counters per engine name (`handle` for sends through the handle).
    pub engines: HashMap<String, EngineCounts>,
}

/// Per-engine message counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounts {
    /// Delivered to this engine.
    pub received: u64,
    /// Sent by this engine.
    pub sent: u64,
    /// Its messages delivered.
    pub delivered: u64,
    /// Its messages expired.
    pub expired: u64,
    /// Its messages refused / undeliverable / not queued.
    pub refused: u64,
    /// Its messages with unknown fate.
    pub unresolved: u64,
}

impl EngineCounts {
    pub(crate) fn add(&mut self, o: &EngineCounts) {
        self.received += o.received;
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.expired += o.expired;
        self.refused += o.refused;
        self.unresolved += o.unresolved;
    }
}

/// The thread-safe handle to a running node.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) inner: Arc<HandleInner>,
}

pub(crate) struct HandleInner {
    pub node_id: NodeId,
    pub listen: Option<SocketAddr>,
    pub shards: usize,
    pub inboxes: Vec<shard::Inbox>,
    pub events: Receiver<NodeEvent>,
    pub metrics: Vec<Arc<ShardMetrics>>,
    pub next_id: AtomicU64,
    pub threads: Mutex<Vec<glommio::ExecutorJoinHandle<shard::ShardReport>>>,
    pub adverts: Arc<RwLock<HashMap<NodeId, NodeAdvert>>>,
    pub stopped: AtomicBool,
    pub default_expiry: Duration,
    pub epoch_ms: u64,
    pub shutdown_timeout: Duration,
    pub rpc_window: u32,
    pub wire: crate::wire::WireConfig,
    pub io: IoMode,
    pub shared: Arc<crate::shard::NodeShared>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle").field("node_id", &self.inner.node_id).field("shards", &self.inner.shards).finish()
    }
}

/// The high bit marks message IDs issued by the handle.
const HANDLE_ID_BIT: u64 = 1 << 63;

impl NodeHandle {
    /// This node's NodeId.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// Where it listens (the actual port when 0 was asked for).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.inner.listen
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.inner.shards
    }

    /// The socket path the shards actually use: [`IoMode::Glommio`] if the
    /// kernel refused the ring (on any shard) or it was configured.
    pub fn io_mode(&self) -> IoMode {
        if self.inner.shared.fell_back.load(Ordering::Relaxed) { IoMode::Glommio } else { self.inner.io }
    }

    /// Sends `msg` to engine `target` on node `to`, as engine `sender`
    /// (replies come back to that name, so make it an external engine to
    /// receive them). Returns at once; the outcome arrives as an event.
    pub fn send(
        &self,
        to: NodeId,
        sender: EngineId,
        target: EngineId,
        msg: Message,
        opts: SendOptions,
    ) -> Result<MsgId, SendError> {
        self.send_with_cells(to, sender, target, msg, opts, Vec::new())
    }

    fn send_with_cells(
        &self,
        to: NodeId,
        sender: EngineId,
        target: EngineId,
        msg: Message,
        opts: SendOptions,
        cells: shard::Cells,
    ) -> Result<MsgId, SendError> {
        let engine_msg = EngineMsg { sender, target, mailbox: opts.mailbox, msg };
        if self.inner.stopped.load(Ordering::Relaxed) {
            return Err(SendError::ShuttingDown(Box::new(engine_msg)));
        }
        if to == self.inner.node_id {
            return Err(SendError::ToSelf(Box::new(engine_msg)));
        }
        let id = MsgId(HANDLE_ID_BIT | self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let expiry = opts.expiry.unwrap_or(self.inner.default_expiry);
        let expiry_ms = self.now_ms() + expiry.as_millis() as u64;
        let cmd = shard::Command::Send {
            to,
            id,
            msg: engine_msg,
            prefs: opts.prefs,
            expiry_ms,
            notify: opts.notify_delivered,
            cells,
        };
        let owner = shard_of(&to, self.inner.shards);
        match self.inner.inboxes[owner].send(cmd) {
            Ok(()) => Ok(id),
            Err(shard::Command::Send { msg, .. }) => Err(SendError::Full(Box::new(msg))),
            Err(_) => unreachable!("the inbox hands back the command it refused"),
        }
    }

    /// Calls `method` of `service` on node `to`, failing at `deadline`.
    /// Returns at once; `.wait()` for the answer on this thread, or await it.
    pub fn call(
        &self,
        to: NodeId,
        service: &str,
        method: u32,
        payload: bytes::Bytes,
        deadline: Duration,
    ) -> PendingCall {
        self.start_call(to, service, method, payload, deadline, None).unary()
    }

    /// As [`NodeHandle::call`], for a method that answers with a stream.
    pub fn call_streaming(
        &self,
        to: NodeId,
        service: &str,
        method: u32,
        payload: bytes::Bytes,
        deadline: Duration,
    ) -> ResponseStream {
        let window = Some(self.inner.rpc_window);
        self.start_call(to, service, method, payload, deadline, window).stream()
    }

    fn start_call(
        &self,
        to: NodeId,
        service: &str,
        method: u32,
        payload: bytes::Bytes,
        deadline: Duration,
        window: Option<u32>,
    ) -> shard::CallHandle {
        let deadline_ms = self.now_ms() + deadline.as_millis() as u64;
        let inbox = &self.inner.inboxes[shard_of(&to, self.inner.shards)];
        let cmd =
            |reply| shard::CallCmd { to, service: service.to_string(), method, payload, deadline_ms, window, reply };
        shard::call_via_inbox(inbox, cmd, window)
    }

    /// Sends a peer message (BELIEF, or any type) of `value` from `$peer`
    /// to `$peer` on node `to`, leaving out the branch cells `omit` selects
    /// (see [`ShardCtx::send_peer`]).
    pub fn send_peer(
        &self,
        to: NodeId,
        ty: MessageType,
        value: &Value,
        omit: impl Fn(&ValueId) -> bool,
        opts: SendOptions,
    ) -> Result<MsgId, PeerSendError> {
        let (msg, cells) = encode_partial(ty, value, &self.inner.wire, omit)?;
        let peer = crate::peer::PEER_ENGINE;
        Ok(self.send_with_cells(to, peer, peer, msg, opts, cells)?)
    }

    /// Sends a QUERY of `query` to node `to`; `.wait()` for the RESULT.
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
        let deadline_ms = self.now_ms() + deadline.as_millis() as u64;
        let inbox = &self.inner.inboxes[shard_of(&to, self.inner.shards)];
        shard::peer_call_via_inbox(inbox, |reply| shard::PeerCallCmd { to, ty, body, deadline_ms, reply })
    }

    /// The event queue (bounded; drain it).
    pub fn events(&self) -> &Receiver<NodeEvent> {
        &self.inner.events
    }

    /// Adds (or updates) a peer's address and permanence.
    pub fn add_peer(&self, id: NodeId, addr: SocketAddr, permanence: Permanence) {
        let owner = shard_of(&id, self.inner.shards);
        let _ = self.inner.inboxes[owner].send(shard::Command::Peer { id, addr: Address::Tcp(addr), permanence });
    }

    /// Switches a node's link between permanent and ephemeral.
    pub fn set_permanence(&self, id: NodeId, permanence: Permanence) {
        let owner = shard_of(&id, self.inner.shards);
        let _ = self.inner.inboxes[owner].send(shard::Command::Permanence { id, permanence });
    }

    /// The latest accepted advert of every known node.
    pub fn adverts(&self) -> HashMap<NodeId, NodeAdvert> {
        self.inner.adverts.read().map(|m| m.clone()).unwrap_or_default()
    }

    /// Per-shard metrics.
    pub fn metrics(&self) -> &[Arc<ShardMetrics>] {
        &self.inner.metrics
    }

    /// One metric summed over shards.
    pub fn metric(&self, m: Metric) -> u64 {
        self.inner.metrics.iter().map(|s| s.get(m)).sum()
    }

    /// Metrics in the Prometheus text format.
    pub fn prometheus(&self) -> String {
        metrics::prometheus(&self.inner.metrics)
    }

    /// Milliseconds on the node's monotonic clock.
    pub fn now_ms(&self) -> u64 {
        mono_ms() - self.inner.epoch_ms
    }

    /// Graceful shutdown: stop accepting sends and connections, let queued
    /// messages drain until `timeout`, say GOODBYE on every link, then
    /// report what could not be delivered. Idempotent: later calls return
    /// an empty report.
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        if self.inner.stopped.swap(true, Ordering::SeqCst) {
            return ShutdownReport::default();
        }
        let deadline_ms = self.now_ms() + timeout.as_millis() as u64;
        for inbox in &self.inner.inboxes {
            let _ = inbox.send(shard::Command::Shutdown { deadline_ms });
        }
        let threads = std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let mut report = ShutdownReport::default();
        for t in threads {
            if let Ok(r) = t.join() {
                r.merge_into(&mut report);
            }
        }
        report
    }
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        // The last handle is gone: stop the shards so their threads exit.
        if !self.stopped.swap(true, Ordering::SeqCst) {
            let deadline_ms = mono_ms() - self.epoch_ms + self.shutdown_timeout.as_millis() as u64;
            for inbox in &self.inboxes {
                let _ = inbox.send(shard::Command::Shutdown { deadline_ms });
            }
            let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
            for t in threads {
                let _ = t.join();
            }
        }
    }
}
