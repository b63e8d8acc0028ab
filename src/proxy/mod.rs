//! Node proxies: one [`NodeProxy`] per remote NodeId, a sans-IO state machine
//! that owns the connection state, the outgoing queue, the delivery
//! sequence numbers and the remote's advert. Its shard feeds it events and
//! carries out what it asks for; it never touches a socket or a clock.
//!
//! ```text
//!                      send() / permanent / connect()
//!          ┌──────┐ ───────────────────────────────▶ ┌─────────┐
//!          │ Idle │                                  │ Dialing │── dial failed ──┐
//!          └──────┘ ◀── loss, nothing pending ──┐    └─────────┘                 ▼
//!             ▲  ▲         (ephemeral)          │         │ link up        ┌─────────┐
//!             │  └── idle timeout (ephemeral) ──┤         ▼                │ Backoff │
//!             │                                 │    ┌─────────┐  loss     └─────────┘
//!             └── link up from the remote ──────┴───▶│   Up    │──────────────▲   │ timer
//!                 (in any state)                     └─────────┘ (permanent │   ▼
//!                                                                or pending)│ Dialing
//! ```
//!
//! Up has two sub-steps: each side's first frame is HELLO, and DATA flows
//! only after the peer's HELLO has been processed (it resynchronises the
//! sequence numbers, see below).
//!
//! # No silent loss
//!
//! Each message accepted by [`NodeProxy::send`] ends with exactly one
//! [`Outcome`], and is delivered to the remote engine at most once:
//!
//! - Messages get a delivery `seq` (per pair of process incarnations, from 1)
//!   when first sent. The receiver delivers a DATA frame only if its seq is
//!   above every seq it delivered before (duplicates from resends are
//!   dropped), so delivery is exactly-once and in order.
//! - The receiver acknowledges cumulatively (ACK: "everything below n is
//!   handled", plus the refused ones and why).
//! - A message sent but not acknowledged when its link dies has an unknown
//!   fate. It is never declared expired on a guess: on the next link each
//!   side's HELLO carries the next seq it expects, which says exactly which
//!   of those messages were delivered; the rest are resent (or, if their
//!   expiry passed meanwhile, reported expired — provably undelivered).
//! - A queued message whose expiry passes before it is sent is reported
//!   [`Outcome::Expired`].
//! - If the remote process restarted (its incarnation changed), messages it
//!   had not acknowledged may or may not have been delivered to the old
//!   process: they are reported [`Outcome::Unresolved`], never silently.
//!
//! Timers are data: [`Timer`] names them, a fixed table holds deadlines,
//! [`NodeProxy::poll_timeout`] returns the earliest.

pub mod advert;
pub mod frames;

#[cfg(test)]
mod sim;

use std::collections::VecDeque;

use bytes::Bytes;

use crate::handshake::{NodeId, Refusal};
use crate::wire::WireConfig;
pub use advert::{Address, AdvertError, NodeAdvert};
use frames::Frame;
pub use frames::{EngineId, EngineMsg, FrameError, FrameSink, GoodbyeReason, MailboxId, RefuseReason, TransportPrefs};

/// Whether a link to a node is kept up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permanence {
    /// Connected on first send or when the remote dials in; closed when idle;
    /// not re-established after loss unless messages are waiting.
    Ephemeral,
    /// Connected at start and re-established after any loss, forever, with
    /// exponential backoff and jitter.
    Permanent,
}

/// Identifies a sent message to its sender (unique per node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId(pub u64);

/// Identifies a link (one connection) within a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// The final answer for a sent message. Exactly one per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The remote engine received it.
    Delivered,
    /// Its expiry passed while it was provably undelivered; it never will be.
    Expired,
    /// The remote node refused it (and did not deliver it).
    Refused(RefuseReason),
    /// No link could be made to carry it: the remote refused the connection
    /// (denied, incompatible). Not delivered.
    Undeliverable(Refusal),
    /// Its fate is unknown and cannot be learnt: it was in flight when the
    /// remote process restarted, or when this node shut down.
    Unresolved(Unresolved),
    /// It was never queued (reported when a send crossed threads or shards
    /// before the queue could say no). Not delivered.
    NotQueued(NotQueued),
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotQueued {
    /// The node proxy's queue was full.
    QueueFull,
    /// The remote refused our connection recently.
    Refused(Refusal),
    /// The node was shutting down.
    ShuttingDown,
}

impl Outcome {
    /// Lower-case name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Expired => "expired",
            Outcome::Refused(_) => "refused",
            Outcome::Undeliverable(_) => "undeliverable",
            Outcome::Unresolved(_) => "unresolved",
            Outcome::NotQueued(_) => "not_queued",
        }
    }
}

/// Why a message's fate is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unresolved {
    /// It was in flight when the remote process restarted.
    PeerRestarted,
    /// It was in flight, unacknowledged, when this node shut down.
    Shutdown,
    /// The link died with its acknowledgement lost and the receiver no
    /// longer remembers whether it refused it (more than 65,536 refusals
    /// since). Delivered or refused, not known which.
    AckLost,
}

/// A message waiting in a proxy.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Its ID (assigned by the node).
    pub id: MsgId,
    /// Opaque routing tag for the outcome (which engine, which shard).
    pub origin: u64,
    /// The message.
    pub msg: EngineMsg,
    /// Transport preferences.
    pub prefs: TransportPrefs,
    /// Give up sending after this time (proxy clock, ms).
    pub expiry_ms: u64,
    /// Report [`Outcome::Delivered`] to the sender too (failures always are).
    pub notify_delivered: bool,
    /// Delivery seq once first sent (0: not yet).
    seq: u64,
}

impl Outgoing {
    /// A message to queue.
    pub fn new(id: MsgId, origin: u64, msg: EngineMsg, prefs: TransportPrefs, expiry_ms: u64, notify: bool) -> Self {
        Outgoing { id, origin, msg, prefs, expiry_ms, notify_delivered: notify, seq: 0 }
    }

    fn bytes(&self) -> usize {
        self.msg.msg.bytes().len() + 64
    }
}

/// Why [`NodeProxy::send`] handed a message back.
#[derive(Debug, Clone)]
pub enum SendError {
    /// The queue is at its message or byte limit: try later.
    Full(Box<Outgoing>),
    /// The remote refused our connection recently (denied / incompatible).
    Refused(Refusal, Box<Outgoing>),
    /// This node is shutting down.
    ShuttingDown(Box<Outgoing>),
}

/// Limits and timings (ms) of a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyConfig {
    /// This process's incarnation (random per start; never 0).
    pub incarnation: u64,
    /// Most messages queued or in flight (default 65,536). Unacknowledged
    /// messages count, so this is also a stream's window: at 64 bytes it
    /// is ~6.5 MB on the wire, about what loopback's socket buffers hold,
    /// and a one-peer stream of small messages can be window-bound
    /// (docs/performance.md section 4).
    pub queue_max_msgs: usize,
    /// Most bytes queued or in flight.
    pub queue_max_bytes: usize,
    /// First reconnect delay.
    pub backoff_min_ms: u64,
    /// Largest reconnect delay (also the retry delay after a hard refusal).
    pub backoff_max_ms: u64,
    /// An ephemeral link with nothing to do closes after this.
    pub idle_timeout_ms: u64,
    /// Send a PING after this long without receiving anything.
    pub keepalive_ms: u64,
    /// Declare the link dead after this long without receiving anything.
    pub dead_after_ms: u64,
    /// Most DATA frames one [`NodeProxy::poll_transmit`] call writes.
    pub transmit_batch: usize,
    /// Codec settings for received messages.
    pub wire: WireConfig,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            incarnation: 1,
            queue_max_msgs: 65_536,
            queue_max_bytes: 64 << 20,
            backoff_min_ms: 20,
            backoff_max_ms: 30_000,
            idle_timeout_ms: 60_000,
            keepalive_ms: 5_000,
            dead_after_ms: 20_000,
            transmit_batch: 1024,
            wire: WireConfig::default(),
        }
    }
}

/// What a link's handshake established, as the proxy needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    /// The node that dialed this link.
    pub initiator: NodeId,
    /// The remote's own NodeAdvert version.
    pub remote_advert_ver: u64,
    /// The version of our advert the remote knows.
    pub remote_knows_our_advert_ver: u64,
}

/// Whether a new link is kept (simultaneous dials keep exactly one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkDecision {
    /// Use it.
    Accept,
    /// Another link wins; close this one.
    Reject,
}

/// Why a dial did not produce a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialFailure {
    /// TCP or handshake failure, timeout, or an over-capacity refusal: retry with backoff.
    Transient,
    /// The remote refused for good (denied / incompatible): do not hammer.
    Refused(Refusal),
    /// No address is known for the remote.
    NoAddress,
}

/// What the proxy asks its shard to do, or reports.
#[derive(Debug, Clone)]
pub enum ProxyEvent {
    /// Connect to the remote (at [`NodeProxy::address`]).
    Dial,
    /// Close this link (its last frames have been handed to transmit).
    Close(LinkId),
    /// Messages delivered whose senders did not ask to hear about it
    /// (`notify` false), counted for their routing tag. Consecutive ones
    /// with the same tag are merged.
    Delivered {
        /// Their routing tag.
        origin: u64,
        /// How many.
        count: u64,
    },
    /// A message's final answer, for the engine that sent it: every
    /// failure, and deliveries the sender asked to hear about (`notify`).
    Outcome {
        /// The message.
        id: MsgId,
        /// Its routing tag.
        origin: u64,
        /// The answer.
        outcome: Outcome,
        /// Whether the sender asked for delivery notifications.
        notify: bool,
        /// The message itself when it was not delivered.
        returned: Option<Box<EngineMsg>>,
    },
    /// A link became usable (HELLO received).
    LinkUp(LinkId),
    /// The remote's HELLO names a new process incarnation: the process we
    /// knew restarted (state kept for it, such as RPC sessions, is gone).
    PeerRestarted,
    /// The current link went away.
    LinkDown(LinkId),
    /// A newer advert of the remote was accepted.
    Advert(NodeAdvert),
}

/// Where received messages go: the shard's engine registry.
pub trait Deliver {
    /// Hands a message to its target engine, or says why not.
    fn deliver(&mut self, from: NodeId, msg: EngineMsg, prefs: TransportPrefs) -> Result<(), RefuseReason>;
}

/// Counters a proxy keeps (read by the shard's metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Messages accepted by `send`.
    pub sent: u64,
    /// Delivered (acknowledged) messages.
    pub delivered: u64,
    /// Expired messages.
    pub expired: u64,
    /// Refused (by the remote) or undeliverable messages.
    pub refused: u64,
    /// Messages whose fate could not be learnt.
    pub unresolved: u64,
    /// DATA frames sent again after a link loss.
    pub resends: u64,
    /// Messages received and delivered to local engines.
    pub received: u64,
    /// Duplicate DATA frames dropped.
    pub duplicates: u64,
    /// DATA frames received that local engines refused.
    pub refused_in: u64,
}

/// The proxy's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Backoff over: dial again.
    Redial = 0,
    /// Nothing received for a while: send a PING.
    Keepalive = 1,
    /// Nothing received for too long: the link is dead.
    Dead = 2,
    /// An ephemeral link with nothing to do: close it.
    Idle = 3,
    /// The earliest queued expiry.
    Expiry = 4,
}

const TIMERS: usize = 5;
const NEVER: u64 = u64::MAX;
/// Refusal records a receiver keeps for resynchronisation.
const REFUSAL_LOG: usize = 65_536;

#[derive(Debug)]
enum ConnState {
    Idle,
    Dialing,
    Backoff,
    Up(Up),
}

#[derive(Debug)]
struct Up {
    link: LinkId,
    initiator: NodeId,
    hello_sent: bool,
    hello_received: bool,
    last_rx: u64,
    last_active: u64,
    ping_sent: bool,
    pong_due: Option<u64>,
    goodbye: Option<GoodbyeReason>,
    closed: bool,
}

/// The state machine for one remote node. See the module docs.
#[derive(Debug)]
pub struct NodeProxy {
    remote: NodeId,
    me: NodeId,
    cfg: ProxyConfig,
    permanence: Permanence,
    address: Option<Address>,
    /// Set by configuration: adverts do not override it.
    address_pinned: bool,
    state: ConnState,
    failures: u32,
    hard_refusal: Option<Refusal>,
    shutting_down: bool,
    timers: [u64; TIMERS],
    rng: u64,
    // Sending.
    tx_peer_inc: u64,
    next_seq: u64,
    /// Every message held, oldest first: the first `sent` are in flight
    /// (in seq order), the rest queued. Sending one moves the cursor, not
    /// the message.
    msgs: VecDeque<Outgoing>,
    sent: usize,
    queued_bytes: usize,
    // Receiving.
    rx_peer_inc: u64,
    rx_next: u64,
    ack_due: bool,
    refused_unacked: Vec<(u64, RefuseReason)>,
    refusal_log: VecDeque<(u64, RefuseReason)>,
    refusal_floor: u64,
    // Adverts.
    our_advert: Option<(u64, Bytes)>,
    advert_due: bool,
    peer_advert: Option<NodeAdvert>,
    events: VecDeque<ProxyEvent>,
    stats: ProxyStats,
}

impl NodeProxy {
    /// A proxy for `remote`. `seed` seeds the backoff jitter.
    pub fn new(remote: NodeId, me: NodeId, permanence: Permanence, cfg: ProxyConfig, seed: u64) -> Self {
        NodeProxy {
            remote,
            me,
            cfg,
            permanence,
            address: None,
            address_pinned: false,
            state: ConnState::Idle,
            failures: 0,
            hard_refusal: None,
            shutting_down: false,
            timers: [NEVER; TIMERS],
            rng: seed | 1,
            tx_peer_inc: 0,
            next_seq: 1,
            msgs: VecDeque::new(),
            sent: 0,
            queued_bytes: 0,
            rx_peer_inc: 0,
            rx_next: 1,
            ack_due: false,
            refused_unacked: Vec::new(),
            refusal_log: VecDeque::new(),
            refusal_floor: 0,
            our_advert: None,
            advert_due: false,
            peer_advert: None,
            events: VecDeque::new(),
            stats: ProxyStats::default(),
        }
    }

    // ---- getters ----

    /// The remote node.
    pub fn remote(&self) -> NodeId {
        self.remote
    }

    /// Where to dial it.
    pub fn address(&self) -> Option<&Address> {
        self.address.as_ref()
    }

    /// Its current permanence.
    pub fn permanence(&self) -> Permanence {
        self.permanence
    }

    /// The current usable link, if any.
    pub fn link(&self) -> Option<LinkId> {
        match &self.state {
            ConnState::Up(u) => Some(u.link),
            _ => None,
        }
    }

    /// True while a dial is outstanding.
    pub fn is_dialing(&self) -> bool {
        matches!(self.state, ConnState::Dialing)
    }

    /// Messages queued plus in flight.
    pub fn pending(&self) -> usize {
        self.msgs.len()
    }

    /// Messages sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.sent
    }

    /// Takes the oldest in-flight message.
    fn pop_in_flight(&mut self) -> Option<Outgoing> {
        if self.sent == 0 {
            return None;
        }
        self.sent -= 1;
        self.msgs.pop_front()
    }

    /// The seq of the oldest in-flight message.
    fn first_in_flight(&self) -> Option<u64> {
        if self.sent == 0 { None } else { self.msgs.front().map(|m| m.seq) }
    }

    /// Counters.
    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }

    /// The remote's advert, if one was accepted.
    pub fn peer_advert(&self) -> Option<&NodeAdvert> {
        self.peer_advert.as_ref()
    }

    /// True when the proxy holds nothing and no link: it may be dropped.
    pub fn is_quiescent(&self) -> bool {
        matches!(self.state, ConnState::Idle) && self.pending() == 0 && self.events.is_empty()
    }

    // ---- commands ----

    /// Sets the address to dial, from configuration: it wins over any
    /// address the remote advertises (it may be a proxy, NAT or tunnel).
    pub fn set_address(&mut self, addr: Address) {
        self.address = Some(addr);
        self.address_pinned = true;
    }

    /// Sets an address learnt from the remote's advert (configuration, if
    /// any, still wins).
    pub fn set_advertised_address(&mut self, addr: Address) {
        if !self.address_pinned {
            self.address = Some(addr);
        }
    }

    /// Sets our own advert (version and encoding) to push to the remote
    /// when it is behind.
    pub fn set_our_advert(&mut self, version: u64, encoded: Bytes) {
        self.our_advert = Some((version, encoded));
    }

    /// Queues a message. Returns it if the queue is full, the remote refused
    /// us recently, or the node is shutting down.
    pub fn send(&mut self, out: Outgoing, now: u64) -> Result<(), SendError> {
        if self.shutting_down {
            return Err(SendError::ShuttingDown(Box::new(out)));
        }
        if let Some(r) = self.hard_refusal {
            if self.link().is_none() {
                return Err(SendError::Refused(r, Box::new(out)));
            }
        }
        let b = out.bytes();
        if self.pending() >= self.cfg.queue_max_msgs || self.queued_bytes + b > self.cfg.queue_max_bytes {
            return Err(SendError::Full(Box::new(out)));
        }
        self.queued_bytes += b;
        self.timers[Timer::Expiry as usize] = self.timers[Timer::Expiry as usize].min(out.expiry_ms);
        self.msgs.push_back(out);
        self.stats.sent += 1;
        self.touch(now);
        self.want_link(now);
        Ok(())
    }

    /// Asks for a link now (a permanent proxy at start, or `connect`).
    pub fn connect(&mut self, now: u64) {
        self.want_link_anyway(now);
    }

    /// Switches permanence at run time.
    pub fn set_permanence(&mut self, p: Permanence, now: u64) {
        self.permanence = p;
        if p == Permanence::Permanent {
            self.want_link_anyway(now);
        } else {
            self.arm_idle(now);
        }
    }

    /// Stops accepting sends; closes the link with GOODBYE once everything
    /// queued is acknowledged (or at [`NodeProxy::abandon`]).
    pub fn shutdown(&mut self, now: u64) {
        self.shutting_down = true;
        self.permanence = Permanence::Ephemeral;
        self.maybe_goodbye(now);
    }

    /// Gives up: every message still held gets its outcome (queued ones
    /// expire, in-flight ones are unresolved). For the end of a shutdown.
    pub fn abandon(&mut self) {
        while let Some(m) = self.pop_in_flight() {
            self.finish(m, Outcome::Unresolved(Unresolved::Shutdown));
        }
        while let Some(m) = self.msgs.pop_front() {
            let o = if m.seq != 0 { Outcome::Unresolved(Unresolved::Shutdown) } else { Outcome::Expired };
            self.finish(m, o);
        }
        self.timers = [NEVER; TIMERS];
    }

    // ---- events ----

    /// A link to the remote finished its handshake (dialed by us or by it).
    pub fn handle_link_up(&mut self, link: LinkId, info: LinkInfo, now: u64) -> LinkDecision {
        if let ConnState::Up(cur) = &self.state {
            // Simultaneous dials: the link dialed by the lower NodeId wins on
            // both sides; between two links dialed by the same node, the newer.
            let new_wins = info.initiator <= cur.initiator;
            if !new_wins {
                return LinkDecision::Reject;
            }
            let old = cur.link;
            self.events.push_back(ProxyEvent::Close(old));
            self.events.push_back(ProxyEvent::LinkDown(old));
        }
        self.hard_refusal = None;
        self.timers[Timer::Redial as usize] = NEVER;
        self.state = ConnState::Up(Up {
            link,
            initiator: info.initiator,
            hello_sent: false,
            hello_received: false,
            last_rx: now,
            last_active: now,
            ping_sent: false,
            pong_due: None,
            goodbye: None,
            closed: false,
        });
        if let Some((v, _)) = &self.our_advert {
            self.advert_due = info.remote_knows_our_advert_ver < *v;
        }
        // ACKs sent on the old link may never have been read: the first ACK
        // on a new link carries every refusal still remembered, so the peer
        // can resolve whatever it holds in flight.
        self.refused_unacked = self.refusal_log.iter().copied().collect();
        self.ack_due = true;
        self.timers[Timer::Keepalive as usize] = now + self.cfg.keepalive_ms;
        self.timers[Timer::Dead as usize] = now + self.cfg.dead_after_ms;
        self.arm_idle(now);
        LinkDecision::Accept
    }

    /// A link closed (EOF, error, or after a Close the proxy asked for).
    pub fn handle_link_down(&mut self, link: LinkId, now: u64) {
        let ConnState::Up(cur) = &self.state else { return };
        if cur.link != link {
            return;
        }
        self.events.push_back(ProxyEvent::LinkDown(link));
        self.state = ConnState::Idle;
        for t in [Timer::Keepalive, Timer::Dead, Timer::Idle] {
            self.timers[t as usize] = NEVER;
        }
        // In-flight messages stay in flight: the next HELLO resolves them.
        self.after_loss(now);
    }

    /// A dial did not produce a link.
    pub fn handle_dial_failed(&mut self, why: DialFailure, now: u64) {
        if !matches!(self.state, ConnState::Dialing) {
            return;
        }
        self.state = ConnState::Idle;
        match why {
            DialFailure::Refused(r) => {
                self.hard_refusal = Some(r);
                // Do not hammer: queued messages cannot go anywhere now.
                let queued = self.msgs.split_off(self.sent);
                for m in queued {
                    if m.seq != 0 {
                        // Sent before on an earlier link: its fate is still
                        // open (these lead the queue, in seq order).
                        self.msgs.push_back(m);
                        self.sent += 1;
                    } else {
                        self.finish(m, Outcome::Undeliverable(r));
                    }
                }
                self.failures = self.failures.saturating_add(1);
                // Redial only after the longest backoff, and only for a
                // permanent link or for messages whose fate the next link
                // must settle (protocol.md 10.5).
                if (self.permanence == Permanence::Permanent || !self.msgs.is_empty()) && !self.shutting_down {
                    self.timers[Timer::Redial as usize] = now + self.cfg.backoff_max_ms;
                    self.state = ConnState::Backoff;
                }
            }
            DialFailure::Transient | DialFailure::NoAddress => {
                self.failures = self.failures.saturating_add(1);
                self.after_loss(now);
            }
        }
    }

    /// One frame received on `link`. An error means the peer broke the link
    /// protocol: the shard closes the link (and calls `handle_link_down`).
    pub fn handle_frame(
        &mut self,
        link: LinkId,
        frame: Bytes,
        now: u64,
        deliver: &mut dyn Deliver,
    ) -> Result<(), FrameError> {
        let ConnState::Up(up) = &mut self.state else { return Ok(()) };
        if up.link != link {
            return Ok(()); // a frame from a link we already replaced
        }
        up.last_rx = now;
        up.ping_sent = false;
        self.timers[Timer::Keepalive as usize] = now + self.cfg.keepalive_ms;
        self.timers[Timer::Dead as usize] = now + self.cfg.dead_after_ms;
        let f = Frame::decode(frame)?;
        let hello_received = up.hello_received;
        if !hello_received && !matches!(f, Frame::Hello { .. }) {
            return Err(FrameError::OutOfOrder("link", "first frame must be HELLO"));
        }
        match f {
            Frame::Hello { incarnation, rx_incarnation, rx_next, refusal_floor } => {
                if hello_received {
                    return Err(FrameError::OutOfOrder("HELLO", "second HELLO"));
                }
                if incarnation == 0 {
                    return Err(FrameError::Invalid("HELLO", "incarnation 0"));
                }
                self.on_hello(incarnation, rx_incarnation, rx_next, refusal_floor, now)?;
            }
            Frame::Data { seq, prefs, sender, target, mailbox, message } => {
                self.touch(now);
                self.ack_due = true;
                if seq < self.rx_next {
                    self.stats.duplicates += 1;
                    return Ok(());
                }
                self.rx_next = seq + 1;
                let r = match frames::decode_message(message, &self.cfg.wire) {
                    Ok(msg) => deliver.deliver(self.remote, EngineMsg { sender, target, mailbox, msg }, prefs),
                    Err(_) => Err(RefuseReason::Malformed),
                };
                match r {
                    Ok(()) => self.stats.received += 1,
                    Err(reason) => {
                        self.stats.refused_in += 1;
                        self.refused_unacked.push((seq, reason));
                        if self.refusal_log.len() == REFUSAL_LOG {
                            if let Some((s, _)) = self.refusal_log.pop_front() {
                                self.refusal_floor = s + 1;
                            }
                        }
                        self.refusal_log.push_back((seq, reason));
                    }
                }
            }
            Frame::Ack { rx_next, refused } => {
                if rx_next > self.next_seq {
                    return Err(FrameError::Invalid("ACK", "acknowledges a seq never sent"));
                }
                self.resolve_below(rx_next, &refused);
                self.touch(now);
                self.maybe_goodbye(now);
            }
            Frame::Advert(bytes) => match NodeAdvert::decode_from(self.remote, bytes, &self.cfg.wire) {
                Ok(a) if self.peer_advert.as_ref().is_none_or(|old| a.version > old.version) => {
                    if !self.address_pinned {
                        if let Some(addr) = a.addrs.iter().find(|a| matches!(a, Address::Tcp(_))) {
                            self.address = Some(addr.clone());
                        }
                    }
                    self.peer_advert = Some(a.clone());
                    self.events.push_back(ProxyEvent::Advert(a));
                }
                Ok(_) => {}
                Err(_) => return Err(FrameError::Invalid("ADVERT", "not an advert of this link's node")),
            },
            Frame::Goodbye(_) => {
                // The remote is closing: it will not send more. Our side of
                // the link ends when the connection does.
            }
            Frame::Ping(n) => {
                if let ConnState::Up(up) = &mut self.state {
                    up.pong_due = Some(n);
                }
            }
            Frame::Pong(_) => {}
        }
        Ok(())
    }

    /// Runs every timer that is due.
    pub fn handle_timeout(&mut self, now: u64) {
        for t in [Timer::Dead, Timer::Keepalive, Timer::Idle, Timer::Redial, Timer::Expiry] {
            if self.timers[t as usize] > now {
                continue;
            }
            self.timers[t as usize] = NEVER;
            match t {
                Timer::Redial => {
                    if matches!(self.state, ConnState::Backoff) {
                        self.state = ConnState::Idle;
                        if self.permanence == Permanence::Permanent || self.pending() > 0 {
                            self.dial();
                        }
                    }
                }
                Timer::Keepalive => {
                    if let ConnState::Up(up) = &mut self.state {
                        up.ping_sent = true;
                    }
                }
                Timer::Dead => {
                    if let ConnState::Up(up) = &self.state {
                        let link = up.link;
                        self.events.push_back(ProxyEvent::Close(link));
                        self.handle_link_down(link, now);
                    }
                }
                Timer::Idle => self.on_idle(now),
                Timer::Expiry => self.expire(now),
            }
        }
    }

    // ---- outputs ----

    /// Writes the frames due on `link` into `sink`: HELLO first, then
    /// acknowledgements, control frames and up to `transmit_batch` DATA
    /// frames. Returns true if more DATA is waiting (call again).
    pub fn poll_transmit(&mut self, link: LinkId, sink: &mut dyn FrameSink, now: u64) -> bool {
        let ConnState::Up(up) = &mut self.state else { return false };
        if up.link != link || up.closed {
            return false;
        }
        if !up.hello_sent {
            up.hello_sent = true;
            let rx_inc = self.rx_peer_inc;
            frames::hello(sink, self.cfg.incarnation, rx_inc, self.rx_next, self.refusal_floor);
        }
        if let Some(n) = up.pong_due.take() {
            frames::ping(sink, true, n);
        }
        if up.ping_sent {
            up.ping_sent = false;
            frames::ping(sink, false, now);
        }
        let hello_received = up.hello_received;
        if self.ack_due {
            self.ack_due = false;
            frames::ack(sink, self.rx_next, &self.refused_unacked);
            self.refused_unacked.clear();
        }
        if self.advert_due {
            if let Some((_, enc)) = &self.our_advert {
                frames::advert(sink, enc);
            }
            self.advert_due = false;
        }
        let mut more = false;
        if hello_received {
            let mut n = 0;
            while let Some(m) = self.msgs.get_mut(self.sent) {
                if n == self.cfg.transmit_batch {
                    more = true;
                    break;
                }
                if m.seq == 0 {
                    m.seq = self.next_seq;
                    self.next_seq += 1;
                } else {
                    self.stats.resends += 1;
                }
                frames::data(sink, m.seq, m.prefs, &m.msg);
                self.sent += 1;
                n += 1;
            }
            if n > 0 {
                self.touch(now);
            }
        }
        if let ConnState::Up(up) = &mut self.state {
            if let Some(r) = up.goodbye.take() {
                frames::goodbye(sink, r);
                up.closed = true;
                self.events.push_back(ProxyEvent::Close(up.link));
            }
        }
        more
    }

    /// True if [`NodeProxy::poll_transmit`] has something to write now.
    pub fn wants_transmit(&self) -> bool {
        let ConnState::Up(up) = &self.state else { return false };
        if up.closed {
            return false;
        }
        !up.hello_sent
            || up.pong_due.is_some()
            || up.ping_sent
            || up.goodbye.is_some()
            || self.ack_due
            || self.advert_due
            || (up.hello_received && self.msgs.len() > self.sent)
    }

    /// The next thing the shard should act on.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event for the shard (what to do, or what happened).
    pub fn poll_event(&mut self) -> Option<ProxyEvent> {
        self.events.pop_front()
    }

    /// When [`NodeProxy::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<u64> {
        let t = self.timers.iter().copied().min().unwrap_or(NEVER);
        (t != NEVER).then_some(t)
    }

    // ---- internals ----

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: jitter only, deterministic per seed.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn touch(&mut self, now: u64) {
        if let ConnState::Up(up) = &mut self.state {
            up.last_active = now;
        }
        self.arm_idle(now);
    }

    fn arm_idle(&mut self, now: u64) {
        let idle_applies = self.permanence == Permanence::Ephemeral && matches!(self.state, ConnState::Up(_));
        self.timers[Timer::Idle as usize] = if idle_applies { now + self.cfg.idle_timeout_ms } else { NEVER };
    }

    fn dial(&mut self) {
        self.state = ConnState::Dialing;
        self.events.push_back(ProxyEvent::Dial);
    }

    /// Called when something needs a link.
    fn want_link(&mut self, _now: u64) {
        if matches!(self.state, ConnState::Idle) && self.hard_refusal.is_none() {
            self.dial();
        }
    }

    fn want_link_anyway(&mut self, now: u64) {
        if matches!(self.state, ConnState::Idle) {
            self.hard_refusal = None;
            self.want_link(now);
        }
    }

    /// After a loss or failed dial: back off and redial if the link is
    /// permanent or messages wait; otherwise rest.
    fn after_loss(&mut self, now: u64) {
        let want = (self.permanence == Permanence::Permanent || self.pending() > 0) && !self.shutting_down;
        if !want {
            self.state = ConnState::Idle;
            return;
        }
        let exp = self.failures.min(20);
        let base = self.cfg.backoff_min_ms.saturating_mul(1 << exp).min(self.cfg.backoff_max_ms);
        // Equal jitter: half fixed, half random.
        let jitter = if base > 1 { self.next_rand() % (base / 2 + 1) } else { 0 };
        self.state = ConnState::Backoff;
        self.timers[Timer::Redial as usize] = now + base / 2 + jitter;
    }

    fn on_hello(&mut self, inc: u64, rx_inc: u64, rx_next: u64, floor: u64, now: u64) -> Result<(), FrameError> {
        // Receiving side: a new incarnation of the remote numbers from 1.
        if inc != self.rx_peer_inc {
            if self.rx_peer_inc != 0 {
                self.events.push_back(ProxyEvent::PeerRestarted);
            }
            self.rx_peer_inc = inc;
            self.rx_next = 1;
            self.refusal_log.clear();
            self.refusal_floor = 0;
        }
        // Sending side.
        if self.tx_peer_inc != 0 && self.tx_peer_inc != inc {
            // The remote restarted: what it had not acknowledged may or may
            // not have reached the old process.
            while let Some(m) = self.pop_in_flight() {
                self.finish(m, Outcome::Unresolved(Unresolved::PeerRestarted));
            }
            for m in self.msgs.iter_mut() {
                m.seq = 0;
            }
            self.next_seq = 1;
        }
        self.tx_peer_inc = inc;
        let known = if rx_inc == self.cfg.incarnation { rx_next } else { 1 };
        if known > self.next_seq {
            return Err(FrameError::Invalid("HELLO", "acknowledges a seq never sent"));
        }
        // In flight below `known`: the peer handled them. Whether it refused
        // any is in the ACK it sends right after its HELLO — unless it has
        // forgotten (below its refusal floor): those stay unknown.
        while self.first_in_flight().is_some_and(|seq| seq < known.min(floor)) {
            if let Some(m) = self.pop_in_flight() {
                self.finish(m, Outcome::Unresolved(Unresolved::AckLost));
            }
        }
        // The rest in flight never arrived: back to the front of the queue.
        while self.sent > 0 && self.msgs[self.sent - 1].seq >= known {
            self.sent -= 1;
        }
        if let ConnState::Up(up) = &mut self.state {
            up.hello_received = true;
        }
        // Our answer to a HELLO is always an ACK with every refusal we still
        // remember from this incarnation of the peer.
        self.refused_unacked = self.refusal_log.iter().copied().collect();
        self.ack_due = true;
        self.failures = 0;
        if let ConnState::Up(up) = &self.state {
            self.events.push_back(ProxyEvent::LinkUp(up.link));
        }
        self.expire(now);
        self.maybe_goodbye(now);
        Ok(())
    }

    /// Resolves in-flight messages below `rx_next`: refused if listed
    /// (`refused` is in ascending seq order), otherwise delivered.
    fn resolve_below(&mut self, rx_next: u64, refused: &[(u64, RefuseReason)]) {
        let mut ri = refused.iter().peekable();
        while self.first_in_flight().is_some_and(|seq| seq < rx_next) {
            let Some(m) = self.pop_in_flight() else { break };
            while ri.peek().is_some_and(|(s, _)| *s < m.seq) {
                ri.next();
            }
            let outcome = match ri.peek() {
                Some((s, r)) if *s == m.seq => Outcome::Refused(*r),
                _ => Outcome::Delivered,
            };
            self.finish(m, outcome);
        }
    }

    fn finish(&mut self, m: Outgoing, outcome: Outcome) {
        self.queued_bytes = self.queued_bytes.saturating_sub(m.bytes());
        match outcome {
            Outcome::Delivered => self.stats.delivered += 1,
            Outcome::Expired => self.stats.expired += 1,
            Outcome::Refused(_) | Outcome::Undeliverable(_) | Outcome::NotQueued(_) => self.stats.refused += 1,
            Outcome::Unresolved(_) => self.stats.unresolved += 1,
        }
        let notify = m.notify_delivered;
        if outcome == Outcome::Delivered && !notify {
            // Nobody waits for this one: count it with its neighbours.
            if let Some(ProxyEvent::Delivered { origin, count }) = self.events.back_mut() {
                if *origin == m.origin {
                    *count += 1;
                    return;
                }
            }
            self.events.push_back(ProxyEvent::Delivered { origin: m.origin, count: 1 });
            return;
        }
        let returned = (outcome != Outcome::Delivered).then(|| Box::new(m.msg));
        self.events.push_back(ProxyEvent::Outcome { id: m.id, origin: m.origin, outcome, notify, returned });
    }

    /// Expires queued messages (never in-flight ones) whose time has come.
    fn expire(&mut self, now: u64) {
        let mut next = NEVER;
        let mut due = false;
        for m in self.msgs.range(self.sent..) {
            if m.expiry_ms <= now {
                due = true;
            } else {
                next = next.min(m.expiry_ms);
            }
        }
        if due {
            let queued = self.msgs.split_off(self.sent);
            for m in queued {
                if m.expiry_ms <= now {
                    self.finish(m, Outcome::Expired);
                } else {
                    self.msgs.push_back(m);
                }
            }
        }
        self.timers[Timer::Expiry as usize] = next;
        self.maybe_goodbye(now);
    }

    fn on_idle(&mut self, now: u64) {
        let ConnState::Up(up) = &mut self.state else { return };
        if self.permanence != Permanence::Ephemeral {
            return;
        }
        if self.msgs.is_empty() && now >= up.last_active + self.cfg.idle_timeout_ms {
            up.goodbye = Some(GoodbyeReason::Idle);
        } else {
            self.timers[Timer::Idle as usize] = up.last_active.max(now) + self.cfg.idle_timeout_ms;
        }
    }

    fn maybe_goodbye(&mut self, _now: u64) {
        if !self.shutting_down || self.pending() > 0 {
            return;
        }
        if let ConnState::Up(up) = &mut self.state {
            if up.goodbye.is_none() && !up.closed {
                up.goodbye = Some(GoodbyeReason::Shutdown);
            }
        }
    }

    /// The node that dialed the current link (tests, metrics).
    pub fn link_initiator(&self) -> Option<NodeId> {
        match &self.state {
            ConnState::Up(u) => Some(u.initiator),
            _ => None,
        }
    }

    /// Our own NodeId.
    pub fn me(&self) -> NodeId {
        self.me
    }
}
