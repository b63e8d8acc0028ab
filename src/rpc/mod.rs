//! Request/response RPC over node links (pure: no IO, no clocks).
//!
//! The design is Tari's comms RPC, improved: a client opens a **session**
//! with a peer's service by proposing the RPC versions it speaks; the
//! server accepts one or rejects with a typed reason. Calls on a session
//! carry a `request_id`, a method, flags, a **deadline** in milliseconds and
//! a payload; many are in flight at once and answers are matched by
//! `request_id` in any order. A method may answer with a **stream** of
//! responses ended by one with the FIN flag; streams are flow-controlled by
//! credit the client grants as its consumer takes items, and the client can
//! cancel. `docs/protocol.md` section 11 gives the bytes.
//!
//! RPC messages ride the node proxy's reliable links as engine messages to
//! and from the reserved engine `$rpc`, so they are delivered exactly once,
//! in order, or reported as not delivered — which fails the call at once
//! instead of at its deadline.
//!
//! This module holds the state machines: [`ClientTable`] (sessions and
//! calls in flight, per remote node, with deadlines as data) and
//! [`ServerTable`] (sessions and running calls, limits). The shard layer
//! runs service handlers and moves the messages.

mod client;
pub mod msg;
mod server;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

pub use client::{ClientStats, ClientTable, Completion};
pub use msg::{ControlKind, RejectReason, RpcDecodeError, RpcMsg, RpcRequest, RpcResponse};
pub use server::{RequestDecision, ServerStats, ServerTable};

use crate::handshake::NodeId;
use crate::proxy::{EngineId, Outcome};
use crate::wire::Message;

/// The engine name RPC messages are addressed to and sent from.
pub const RPC_ENGINE: EngineId = EngineId::named("$rpc");

/// The RPC protocol versions this implementation speaks.
pub const VERSIONS: &[u32] = &[1];

/// A response status: 0 is success; 1–255 are defined here; 256 and up
/// belong to services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Status(pub u32);

impl Status {
    /// Success.
    pub const OK: Status = Status(0);
    /// The request was malformed for this method.
    pub const BAD_REQUEST: Status = Status(1);
    /// The service has no such method, or it does not stream.
    pub const NOT_IMPLEMENTED: Status = Status(2);
    /// The deadline passed before the server finished (or started).
    pub const DEADLINE_EXCEEDED: Status = Status(3);
    /// The server is at a call limit: try again later.
    pub const BUSY: Status = Status(4);
    /// The handler failed or dropped the call without answering.
    pub const INTERNAL: Status = Status(5);
    /// The call was cancelled.
    pub const CANCELLED: Status = Status(6);
    /// The server does not know the session (it was closed): the client
    /// opens a new one and tries again.
    pub const NO_SESSION: Status = Status(7);

    /// A service-defined status (`code` + 256).
    pub const fn app(code: u32) -> Status {
        Status(256 + code)
    }

    /// Lower-case name for logs and tool output.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "ok",
            1 => "bad_request",
            2 => "not_implemented",
            3 => "deadline_exceeded",
            4 => "busy",
            5 => "internal",
            6 => "cancelled",
            7 => "no_session",
            256.. => "application",
            _ => "unknown",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// Why a call failed, as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The server refused the session.
    #[error("session rejected: {0}")]
    Rejected(RejectReason),
    /// The deadline passed: the client's own timer, or the server said so.
    #[error("deadline exceeded{}", if *.reported_by_server { " (reported by the server)" } else { "" })]
    DeadlineExceeded {
        /// Whether the server's DEADLINE_EXCEEDED answer arrived first.
        reported_by_server: bool,
    },
    /// The server answered with an error status.
    #[error("server returned {status}")]
    Status {
        /// The status.
        status: Status,
        /// Its details (service-defined bytes).
        details: Bytes,
    },
    /// The server is at a call limit (status BUSY): retry later.
    #[error("server busy")]
    ServerBusy,
    /// This node is at its own limit of calls in flight: retry later.
    #[error("too many calls in flight here")]
    ClientBusy,
    /// The request (or session proposal) was not delivered.
    #[error("request not delivered: {}", .0.name())]
    Undelivered(Outcome),
    /// The server's process restarted while the call was in flight.
    #[error("the server restarted during the call")]
    PeerRestarted,
    /// The caller cancelled the call.
    #[error("cancelled")]
    Cancelled,
    /// The payload is larger than the configured maximum.
    #[error("payload of {len} bytes exceeds the maximum {max}")]
    PayloadTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// This node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// Calls to this node itself are not supported.
    #[error("cannot call this node itself")]
    ToSelf,
    /// The server broke the RPC protocol for this call.
    #[error("protocol violation by the server: {0}")]
    Protocol(&'static str),
}

impl RpcError {
    /// Worth retrying as is, later.
    pub fn is_retryable(&self) -> bool {
        match self {
            RpcError::Rejected(r) => r.is_retryable(),
            RpcError::ServerBusy | RpcError::ClientBusy | RpcError::PeerRestarted => true,
            RpcError::Undelivered(o) => !matches!(o, Outcome::Undeliverable(_)),
            _ => false,
        }
    }

    /// Short reason name for counters (`loadgen` groups errors by it).
    pub fn reason(&self) -> &'static str {
        match self {
            RpcError::Rejected(_) => "rejected",
            RpcError::DeadlineExceeded { .. } => "deadline",
            RpcError::Status { .. } => "status",
            RpcError::ServerBusy => "server_busy",
            RpcError::ClientBusy => "client_busy",
            RpcError::Undelivered(Outcome::Expired) => "expired",
            RpcError::Undelivered(Outcome::Unresolved(_)) => "link_lost",
            RpcError::Undelivered(_) => "refused",
            RpcError::PeerRestarted => "link_lost",
            RpcError::Cancelled => "cancelled",
            RpcError::PayloadTooLarge { .. } => "too_large",
            RpcError::ShuttingDown => "shutting_down",
            RpcError::ToSelf => "to_self",
            RpcError::Protocol(_) => "protocol",
        }
    }
}

/// RPC limits and timings, with documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcConfig {
    /// Versions this node speaks, in order of preference (default `[1]`).
    pub versions: Vec<u32>,
    /// Server sessions open at once, node-wide (default 4,096).
    pub max_sessions: usize,
    /// Server sessions open at once for one client node (default 64).
    pub max_sessions_per_peer: usize,
    /// Server calls running at once, node-wide (default 65,536).
    pub max_calls: usize,
    /// Server calls running at once for one client node (default 16,384).
    pub max_calls_per_peer: usize,
    /// Client calls in flight at once, node-wide (default 65,536).
    pub max_client_calls: usize,
    /// Client calls in flight at once to one server node (default 16,384).
    pub max_client_calls_per_peer: usize,
    /// Responses a stream may have in flight before the client grants more
    /// (default 16; the client grants more as its consumer takes items).
    pub stream_window: u32,
    /// Largest request or response payload (default 4 MiB).
    pub max_payload: usize,
    /// A client closes a session unused for this long (default 30 s).
    pub client_idle_ms: u64,
    /// A server closes a session without calls for this long (default 120 s).
    pub server_idle_ms: u64,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            versions: VERSIONS.to_vec(),
            max_sessions: 4096,
            max_sessions_per_peer: 64,
            max_calls: 65_536,
            max_calls_per_peer: 16_384,
            max_client_calls: 65_536,
            max_client_calls_per_peer: 16_384,
            stream_window: 16,
            max_payload: 4 << 20,
            client_idle_ms: 30_000,
            server_idle_ms: 120_000,
        }
    }
}

/// A node-wide count with a ceiling, shared by the shards.
#[derive(Debug, Default)]
pub struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    /// A budget of `max`.
    pub fn new(max: usize) -> Self {
        Budget { used: AtomicUsize::new(0), max }
    }

    /// Takes one unit if any is left.
    pub fn try_take(&self) -> bool {
        self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| (u < self.max).then_some(u + 1)).is_ok()
    }

    /// Returns one unit.
    pub fn give(&self) {
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_sub(1));
    }

    /// Units in use.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// What an RPC message sent through a proxy is, so that a failed delivery
/// reaches the right state (packed into the message's routing tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// A client's session proposal.
    Session(u32),
    /// A client's request.
    Request(u32),
    /// A server's response to this request ID.
    Response(u32),
    /// A peer request (QUERY / TRANSACT / STATUS) with this message ID.
    Peer(u32),
    /// Anything else (replies, controls): failures need no action.
    Other,
}

const TAG_BIT: u64 = 1 << 63;

impl Tag {
    /// The routing tag (high bit set: never a shard/engine origin).
    pub fn to_origin(self) -> u64 {
        let (k, v) = match self {
            Tag::Session(s) => (1, s),
            Tag::Request(r) => (2, r),
            Tag::Response(r) => (3, r),
            Tag::Other => (4, 0),
            Tag::Peer(i) => (5, i),
        };
        TAG_BIT | (k << 32) | u64::from(v)
    }

    /// The tag of an RPC routing tag, or `None` for other origins.
    pub fn from_origin(o: u64) -> Option<Tag> {
        if o & TAG_BIT == 0 {
            return None;
        }
        let v = o as u32;
        Some(match (o >> 32) & 0xff {
            1 => Tag::Session(v),
            2 => Tag::Request(v),
            3 => Tag::Response(v),
            5 => Tag::Peer(v),
            _ => Tag::Other,
        })
    }
}

/// A message for the shard to send through the proxy of `to`.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The remote node.
    pub to: NodeId,
    /// The engine it is for there: `$rpc` for requests; for a server's
    /// messages, the engine that proposed the session.
    pub target: EngineId,
    /// The encoded RPC message.
    pub msg: Message,
    /// What it is (for failed deliveries).
    pub tag: Tag,
    /// Proxy expiry (ms, node clock).
    pub expiry_ms: u64,
}
