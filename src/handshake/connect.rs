//! The connect handshake: Noise `IK` (X25519, AES-GCM, SHA-256, through
//! `snow`) carrying the node proxy's ConnectRequest in message 1 and its
//! ConnectReply in message 2. One round trip from TCP connect to a usable
//! [`Link`].
//!
//! ```text
//! initiator                                   responder
//!   Initiator::start ── msg1 (01, versions, ts, Noise e,es,s,ss + request) ─▶
//!                                               Responder::read_request
//!                                                 (pre-DH: framing, version
//!                                                  range, clock window, replay,
//!                                                  deadline; then DH)
//!                                               PendingAccept::finish(decision)
//!   Initiator::read_reply ◀─ msg2 (02, Noise e,ee,se + reply) ──────────────
//!   or                    ◀─ refusal (03 01: over capacity, before any DH) ─
//! ```
//!
//! States are values consumed by each step. Pure: the caller passes the
//! time in; no sockets, no clocks. Byte layouts: docs/protocol.md section 8.

use std::collections::{HashSet, VecDeque};

use snow::params::NoiseParams;
use zerocopy::byteorder::network_endian::{U16, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};
use zeroize::Zeroizing;

use super::aead::{AeadBackend, BackendUnavailable, RecordKey};
use super::identity::{Identity, NodeId};
use super::link::Link;
use super::record::{Opener, Sealer};

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_IK_25519_AESGCM_SHA256";
/// The prologue starts with this, then the 13-byte request header.
pub const PROLOGUE_PREFIX: &[u8] = b"shardwire/handshake/1";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Message 1's first byte.
pub const KIND_REQUEST: u8 = 0x01;
/// Message 2's first byte.
pub const KIND_REPLY: u8 = 0x02;
/// First byte of a refusal sent before any key agreement.
pub const KIND_EARLY_REFUSAL: u8 = 0x03;

/// Message 1's cleartext header. It is also part of the Noise prologue, so
/// tampering with it makes the handshake fail.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RequestHeader {
    kind: u8,
    proto_ver_min: U16,
    proto_ver_max: U16,
    timestamp_ms: U64,
}

/// Message 1's encrypted payload.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RequestPayload {
    src_node_id: [u8; 32],
    dst_node_id: [u8; 32],
    src_node_advert_ver: U64,
    dst_node_advert_ver: U64,
}

/// Message 2's encrypted payload.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct ReplyPayload {
    status: u8,
    proto_ver: U16,
    responder_advert_ver: U64,
    initiator_advert_ver: U64,
    responder_ver_min: U16,
    responder_ver_max: U16,
}

const HEADER_LEN: usize = std::mem::size_of::<RequestHeader>();
const REQUEST_LEN: usize = std::mem::size_of::<RequestPayload>();
const REPLY_LEN: usize = std::mem::size_of::<ReplyPayload>();
const DH_LEN: usize = 32;
const TAG: usize = 16;
/// Message 1: header (13) ‖ e (32) ‖ encrypted s (48) ‖ encrypted request (96) = 189 bytes.
pub const MSG1_LEN: usize = HEADER_LEN + DH_LEN + (DH_LEN + TAG) + (REQUEST_LEN + TAG);
/// Message 2: kind (1) ‖ e (32) ‖ encrypted reply (39) = 72 bytes.
pub const MSG2_LEN: usize = 1 + DH_LEN + REPLY_LEN + TAG;
/// An early refusal: kind (1) ‖ reason (1).
pub const EARLY_REFUSAL_LEN: usize = 2;
/// The largest handshake frame body either side accepts.
pub const MAX_HANDSHAKE_FRAME: usize = 256;

/// An inclusive range of protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    /// Lowest supported version (at least 1).
    pub min: u16,
    /// Highest supported version.
    pub max: u16,
}

impl VersionRange {
    /// A single version.
    pub const fn single(v: u16) -> Self {
        VersionRange { min: v, max: v }
    }

    /// The highest version both ranges contain, if any.
    pub fn negotiate(self, other: VersionRange) -> Option<u16> {
        let hi = self.max.min(other.max);
        (hi >= self.min.max(other.min)).then_some(hi)
    }
}

/// Why a responder refuses a connection (node proxy: ConnectReplyError).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Too busy right now: a temporary failure; retry later with backoff.
    OverCapacity,
    /// No protocol version in common: do not retry until one side upgrades.
    Incompatible,
    /// Refused by local policy (e.g. not on an allow-list): do not retry.
    Denied,
}

impl Refusal {
    /// Whether retrying later can succeed.
    pub fn is_temporary(self) -> bool {
        matches!(self, Refusal::OverCapacity)
    }

    fn code(self) -> u8 {
        match self {
            Refusal::OverCapacity => 1,
            Refusal::Incompatible => 2,
            Refusal::Denied => 3,
        }
    }

    fn from_code(c: u8) -> Option<Refusal> {
        match c {
            1 => Some(Refusal::OverCapacity),
            2 => Some(Refusal::Incompatible),
            3 => Some(Refusal::Denied),
            _ => None,
        }
    }

    /// Lower-case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::OverCapacity => "over_capacity",
            Refusal::Incompatible => "incompatible",
            Refusal::Denied => "denied",
        }
    }
}

/// Why a responder rejected a request it could not authenticate (sent as
/// an early reply, before or instead of key agreement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejection {
    /// Message 1 did not decrypt: the dialer used another node's NodeId for
    /// this address, or the message was altered.
    #[error("it could not decrypt it: the NodeId dialed is not this node's, or the request was altered")]
    CannotDecrypt,
    /// The request's timestamp was outside the responder's clock window.
    #[error("the request's timestamp is outside its clock window: check both clocks (NTP)")]
    ClockSkew,
}

/// Whose fault a handshake failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The peer sent bytes that break the protocol (or an attacker did).
    Peer,
    /// The peer refused the connection.
    Refused,
    /// This side: a limit, a timeout, a missing backend.
    Local,
}

/// Why a handshake did not produce a link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// A handshake message has the wrong length or kind byte.
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
    /// The request's version range is empty or starts at 0.
    #[error("bad version range {min}..={max}")]
    BadVersionRange {
        /// Claimed minimum.
        min: u16,
        /// Claimed maximum.
        max: u16,
    },
    /// The request's timestamp is outside the responder's clock window.
    #[error("request timestamp {timestamp_ms} ms is outside the clock window around {now_ms} ms")]
    Stale {
        /// The request's timestamp.
        timestamp_ms: u64,
        /// The responder's clock.
        now_ms: u64,
    },
    /// This message 1 was already accepted once (its ephemeral key was seen).
    #[error("replayed handshake request")]
    Replayed,
    /// The handshake did not complete before its deadline.
    #[error("handshake timed out")]
    Timeout,
    /// A Noise message failed to decrypt: altered, or made for another key.
    #[error("handshake message failed authentication")]
    AuthFailed,
    /// The request was meant for another node.
    #[error("request is for node {requested}, not this node {ours}")]
    WrongDestination {
        /// This node.
        ours: NodeId,
        /// The node the request names.
        requested: NodeId,
    },
    /// The request's `src_node_id` is not the key the handshake proved.
    #[error("request claims to be {claimed} but proved key {proven}")]
    KeyMismatch {
        /// The NodeId in the request.
        claimed: NodeId,
        /// The static key Noise authenticated.
        proven: NodeId,
    },
    /// The responder chose a version outside the initiator's range.
    #[error("responder chose version {0}, which this node did not offer")]
    VersionNotOffered(u16),
    /// The remote refused. `authenticated` is false for an early refusal,
    /// which anyone on the path could have sent (only OverCapacity is sent
    /// that way).
    #[error("connection refused: {} ({})", reason.name(), if *authenticated { "authenticated" } else { "unauthenticated" })]
    Refused {
        /// Why.
        reason: Refusal,
        /// Whether the refusal came inside the authenticated message 2.
        authenticated: bool,
    },
    /// The responder could not use our request and said so before any
    /// authentication (so anyone on the path could have sent this).
    #[error("the remote rejected the request: {0}")]
    Rejected(Rejection),
    /// The replay cache is full: refuse new handshakes until entries expire.
    #[error("replay cache full")]
    ReplayCacheFull,
    /// The configured AEAD backend is not compiled in.
    #[error(transparent)]
    Backend(#[from] BackendUnavailable),
    /// `snow` rejected an operation for a reason other than authentication.
    #[error("noise: {0}")]
    Noise(String),
}

impl HandshakeError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        use HandshakeError as E;
        match self {
            E::Malformed(_)
            | E::BadVersionRange { .. }
            | E::Stale { .. }
            | E::Replayed
            | E::AuthFailed
            | E::WrongDestination { .. }
            | E::KeyMismatch { .. }
            | E::VersionNotOffered(_) => Fault::Peer,
            E::Refused { .. } | E::Rejected(_) => Fault::Refused,
            E::Timeout | E::ReplayCacheFull | E::Backend(_) | E::Noise(_) => Fault::Local,
        }
    }
}

/// Handshake settings (both roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeConfig {
    /// Versions this node speaks.
    pub versions: VersionRange,
    /// Largest accepted difference between a request's timestamp and the
    /// responder's clock (default 120 s).
    pub max_clock_skew_ms: u64,
    /// Time from TCP connect to a finished handshake (default 5 s).
    pub timeout_ms: u64,
    /// AEAD backend for records.
    pub aead: AeadBackend,
    /// Largest plaintext frame a link accepts (default 8 MiB).
    pub max_frame: usize,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        HandshakeConfig {
            versions: VersionRange::single(PROTOCOL_VERSION),
            max_clock_skew_ms: 120_000,
            timeout_ms: 5_000,
            aead: AeadBackend::default(),
            max_frame: 8 << 20,
        }
    }
}

/// The node proxy's ConnectRequest, as message 1 carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Lowest version the initiator speaks.
    pub proto_ver_min: u16,
    /// Highest version the initiator speaks.
    pub proto_ver_max: u16,
    /// The initiator.
    pub src_node_id: NodeId,
    /// The node it meant to reach.
    pub dst_node_id: NodeId,
    /// The initiator's own latest NodeAdvert version.
    pub src_node_advert_ver: u64,
    /// The latest NodeAdvert version of the responder the initiator knows.
    pub dst_node_advert_ver: u64,
    /// Initiator's clock, ms since the Unix epoch (replay protection).
    pub timestamp_ms: u64,
}

/// A finished handshake: the link plus what the two sides agreed on.
#[derive(Debug)]
pub struct Established {
    /// The secure link.
    pub link: Link,
    /// The other node.
    pub remote: NodeId,
    /// The negotiated protocol version.
    pub proto_ver: u16,
    /// The remote's own latest NodeAdvert version.
    pub remote_advert_ver: u64,
    /// The version of *our* NodeAdvert the remote knows.
    pub remote_knows_our_advert_ver: u64,
    /// True on the side that dialed.
    pub initiator: bool,
}

fn params() -> NoiseParams {
    // The constant is a valid Noise protocol name.
    NOISE_PARAMS.parse().unwrap_or_else(|_| unreachable!("valid noise params"))
}

fn prologue(header: &[u8]) -> Vec<u8> {
    let mut p = PROLOGUE_PREFIX.to_vec();
    p.extend_from_slice(header);
    p
}

fn noise_err(e: snow::Error) -> HandshakeError {
    match e {
        snow::Error::Decrypt => HandshakeError::AuthFailed,
        other => HandshakeError::Noise(other.to_string()),
    }
}

/// Turns a finished Noise state into the link's two record keys.
fn link_from(mut hs: snow::HandshakeState, initiator: bool, cfg: &HandshakeConfig) -> Result<Link, HandshakeError> {
    // k1: initiator -> responder, k2: responder -> initiator (Noise Split()).
    let (k1, k2) = hs.dangerously_get_raw_split();
    let (k1, k2) = (Zeroizing::new(k1), Zeroizing::new(k2));
    let (send, recv) = if initiator { (&k1, &k2) } else { (&k2, &k1) };
    Ok(Link::new(
        Sealer::new(RecordKey::new(cfg.aead, send)?),
        Opener::new(RecordKey::new(cfg.aead, recv)?),
        cfg.max_frame,
    ))
}

/// The dialing side.
pub struct Initiator {
    hs: snow::HandshakeState,
    request: ConnectRequest,
    cfg: HandshakeConfig,
    deadline_ms: u64,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator").field("request", &self.request).finish_non_exhaustive()
    }
}

impl Initiator {
    /// Starts a handshake with `remote`; returns the state and message 1.
    pub fn start(
        identity: &Identity,
        remote: NodeId,
        own_advert_ver: u64,
        known_remote_advert_ver: u64,
        cfg: &HandshakeConfig,
        now_ms: u64,
    ) -> Result<(Initiator, Vec<u8>), HandshakeError> {
        let ids = (remote, identity.node_id(), remote);
        Self::start_inner(identity, ids, own_advert_ver, known_remote_advert_ver, cfg, now_ms)
    }

    /// Test hook: message 1 encrypted to `noise_remote` but whose payload
    /// claims `src` and names `dst` (what a buggy or hostile peer could send).
    #[cfg(test)]
    pub(crate) fn start_crafted(
        identity: &Identity,
        noise_remote: NodeId,
        src: NodeId,
        dst: NodeId,
        cfg: &HandshakeConfig,
        now_ms: u64,
    ) -> (Initiator, Vec<u8>) {
        Self::start_inner(identity, (noise_remote, src, dst), 0, 0, cfg, now_ms).unwrap()
    }

    fn start_inner(
        identity: &Identity,
        (remote, src, dst): (NodeId, NodeId, NodeId),
        own_advert_ver: u64,
        known_remote_advert_ver: u64,
        cfg: &HandshakeConfig,
        now_ms: u64,
    ) -> Result<(Initiator, Vec<u8>), HandshakeError> {
        let header = RequestHeader {
            kind: KIND_REQUEST,
            proto_ver_min: cfg.versions.min.into(),
            proto_ver_max: cfg.versions.max.into(),
            timestamp_ms: now_ms.into(),
        };
        let prologue = prologue(header.as_bytes());
        let mut hs = snow::Builder::new(params())
            .local_private_key(identity.secret())
            .and_then(|b| b.remote_public_key(remote.as_bytes()))
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| b.build_initiator())
            .map_err(noise_err)?;
        let payload = RequestPayload {
            src_node_id: src.0,
            dst_node_id: dst.0,
            src_node_advert_ver: own_advert_ver.into(),
            dst_node_advert_ver: known_remote_advert_ver.into(),
        };
        let mut msg = vec![0u8; MSG1_LEN];
        msg[..HEADER_LEN].copy_from_slice(header.as_bytes());
        let n = hs.write_message(payload.as_bytes(), &mut msg[HEADER_LEN..]).map_err(noise_err)?;
        debug_assert_eq!(HEADER_LEN + n, MSG1_LEN);
        let request = ConnectRequest {
            proto_ver_min: cfg.versions.min,
            proto_ver_max: cfg.versions.max,
            src_node_id: identity.node_id(),
            dst_node_id: remote,
            src_node_advert_ver: own_advert_ver,
            dst_node_advert_ver: known_remote_advert_ver,
            timestamp_ms: now_ms,
        };
        Ok((Initiator { hs, request, cfg: *cfg, deadline_ms: now_ms.saturating_add(cfg.timeout_ms) }, msg))
    }

    /// The request this initiator sent.
    pub fn request(&self) -> &ConnectRequest {
        &self.request
    }

    /// When the reply must have arrived.
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    /// Reads message 2 (or an early refusal) and finishes the handshake.
    pub fn read_reply(mut self, msg: &[u8], now_ms: u64) -> Result<Established, HandshakeError> {
        if now_ms > self.deadline_ms {
            return Err(HandshakeError::Timeout);
        }
        match msg.first() {
            Some(&KIND_EARLY_REFUSAL) => {
                return Err(match msg {
                    [_, EARLY_OVER_CAPACITY] => {
                        HandshakeError::Refused { reason: Refusal::OverCapacity, authenticated: false }
                    }
                    [_, EARLY_CANNOT_DECRYPT] => HandshakeError::Rejected(Rejection::CannotDecrypt),
                    [_, EARLY_CLOCK_SKEW] => HandshakeError::Rejected(Rejection::ClockSkew),
                    _ => HandshakeError::Malformed("unknown early reply"),
                });
            }
            Some(&KIND_REPLY) if msg.len() == MSG2_LEN => {}
            Some(&KIND_REPLY) => return Err(HandshakeError::Malformed("reply length")),
            _ => return Err(HandshakeError::Malformed("not a connect reply")),
        }
        let mut payload = [0u8; REPLY_LEN + TAG];
        let n = self.hs.read_message(&msg[1..], &mut payload).map_err(noise_err)?;
        let reply =
            ReplyPayload::read_from_bytes(&payload[..n]).map_err(|_| HandshakeError::Malformed("reply payload"))?;
        match reply.status {
            0 => {}
            code => {
                let reason = Refusal::from_code(code).ok_or(HandshakeError::Malformed("unknown reply status"))?;
                return Err(HandshakeError::Refused { reason, authenticated: true });
            }
        }
        let v = reply.proto_ver.get();
        if v < self.cfg.versions.min || v > self.cfg.versions.max {
            return Err(HandshakeError::VersionNotOffered(v));
        }
        let remote = self.request.dst_node_id;
        Ok(Established {
            link: link_from(self.hs, true, &self.cfg)?,
            remote,
            proto_ver: v,
            remote_advert_ver: reply.responder_advert_ver.get(),
            remote_knows_our_advert_ver: reply.initiator_advert_ver.get(),
            initiator: true,
        })
    }
}

/// Early reply codes (after `03`).
const EARLY_OVER_CAPACITY: u8 = 1;
const EARLY_CANNOT_DECRYPT: u8 = 4;
const EARLY_CLOCK_SKEW: u8 = 5;

/// The early refusal for a node over capacity (sent before any key
/// agreement, so not authenticated).
pub fn early_refusal() -> [u8; EARLY_REFUSAL_LEN] {
    [KIND_EARLY_REFUSAL, EARLY_OVER_CAPACITY]
}

/// The early reply a responder sends when [`Responder::read_request`] fails
/// with `err`, or `None` when it should just close the connection (replays,
/// malformed messages, timeouts: nothing useful to tell).
pub fn early_reply_for(err: &HandshakeError) -> Option<[u8; EARLY_REFUSAL_LEN]> {
    match err {
        HandshakeError::ReplayCacheFull => Some(early_refusal()),
        HandshakeError::AuthFailed => Some([KIND_EARLY_REFUSAL, EARLY_CANNOT_DECRYPT]),
        HandshakeError::Stale { .. } => Some([KIND_EARLY_REFUSAL, EARLY_CLOCK_SKEW]),
        _ => None,
    }
}

/// Message-1 ephemeral keys already accepted, so that a replayed message 1
/// is refused before any Diffie-Hellman work. An entry lives as long as its
/// message could still pass the clock-window check (twice the skew).
///
/// Shared by every shard of a node (the shard layer wraps it in a lock): a
/// replay may arrive on any shard.
#[derive(Debug)]
pub struct ReplayGuard {
    seen: HashSet<[u8; 32]>,
    order: VecDeque<(u64, [u8; 32])>,
    capacity: usize,
    keep_ms: u64,
}

impl ReplayGuard {
    /// A guard for a clock window of `max_clock_skew_ms`, holding at most
    /// `capacity` entries. When full it fails closed: new handshakes are
    /// refused (OverCapacity) until entries expire.
    pub fn new(max_clock_skew_ms: u64, capacity: usize) -> Self {
        ReplayGuard { seen: HashSet::new(), order: VecDeque::new(), capacity, keep_ms: 2 * max_clock_skew_ms }
    }

    fn prune(&mut self, now_ms: u64) {
        while let Some(&(expires, e)) = self.order.front() {
            if expires > now_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&e);
        }
    }

    /// Entries currently held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no entries are held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn insert(&mut self, e: [u8; 32], now_ms: u64) {
        if self.seen.insert(e) {
            self.order.push_back((now_ms.saturating_add(self.keep_ms), e));
        }
    }
}

/// The accepting side, from TCP accept until message 1 arrives.
#[derive(Debug)]
pub struct Responder {
    identity: Identity,
    cfg: HandshakeConfig,
    deadline_ms: u64,
}

impl Responder {
    /// A responder for a connection accepted at `now_ms`.
    pub fn new(identity: &Identity, cfg: &HandshakeConfig, now_ms: u64) -> Self {
        Responder { identity: identity.clone(), cfg: *cfg, deadline_ms: now_ms.saturating_add(cfg.timeout_ms) }
    }

    /// When message 1 must have arrived.
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    /// Checks message 1 — first everything that needs no cryptography
    /// (deadline, framing, version range, clock window, replay cache), then
    /// the Noise message itself — and returns the authenticated request.
    pub fn read_request(
        self,
        msg: &[u8],
        now_ms: u64,
        replay: &mut ReplayGuard,
    ) -> Result<PendingAccept, HandshakeError> {
        replay.prune(now_ms);
        if now_ms > self.deadline_ms {
            return Err(HandshakeError::Timeout);
        }
        if msg.first() != Some(&KIND_REQUEST) {
            return Err(HandshakeError::Malformed("not a connect request"));
        }
        if msg.len() != MSG1_LEN {
            return Err(HandshakeError::Malformed("request length"));
        }
        let (header, rest) =
            RequestHeader::ref_from_prefix(msg).map_err(|_| HandshakeError::Malformed("request header"))?;
        let (min, max) = (header.proto_ver_min.get(), header.proto_ver_max.get());
        if min == 0 || min > max {
            return Err(HandshakeError::BadVersionRange { min, max });
        }
        let ts = header.timestamp_ms.get();
        if ts.abs_diff(now_ms) > self.cfg.max_clock_skew_ms {
            return Err(HandshakeError::Stale { timestamp_ms: ts, now_ms });
        }
        let mut e = [0u8; 32];
        e.copy_from_slice(&rest[..32]);
        if replay.seen.contains(&e) {
            return Err(HandshakeError::Replayed);
        }
        if replay.len() >= replay.capacity {
            return Err(HandshakeError::ReplayCacheFull);
        }
        // Diffie-Hellman work starts here.
        let prologue = prologue(header.as_bytes());
        let mut hs = snow::Builder::new(params())
            .local_private_key(self.identity.secret())
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| b.build_responder())
            .map_err(noise_err)?;
        let mut payload = [0u8; REQUEST_LEN + TAG];
        let n = hs.read_message(rest, &mut payload).map_err(noise_err)?;
        let req =
            RequestPayload::read_from_bytes(&payload[..n]).map_err(|_| HandshakeError::Malformed("request payload"))?;
        let ours = self.identity.node_id();
        if req.dst_node_id != ours.0 {
            return Err(HandshakeError::WrongDestination { ours, requested: NodeId(req.dst_node_id) });
        }
        let mut proven = [0u8; 32];
        proven.copy_from_slice(hs.get_remote_static().ok_or(HandshakeError::Noise("no remote static key".into()))?);
        if req.src_node_id != proven {
            return Err(HandshakeError::KeyMismatch { claimed: NodeId(req.src_node_id), proven: NodeId(proven) });
        }
        replay.insert(e, now_ms);
        let request = ConnectRequest {
            proto_ver_min: min,
            proto_ver_max: max,
            src_node_id: NodeId(proven),
            dst_node_id: ours,
            src_node_advert_ver: req.src_node_advert_ver.get(),
            dst_node_advert_ver: req.dst_node_advert_ver.get(),
            timestamp_ms: ts,
        };
        Ok(PendingAccept { hs, request, cfg: self.cfg })
    }
}

/// What the responder decides about an authenticated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Accept, telling the initiator our advert version and the version of
    /// its advert we know.
    Accept {
        /// Our own latest NodeAdvert version.
        own_advert_ver: u64,
        /// The initiator's NodeAdvert version we hold.
        known_initiator_advert_ver: u64,
    },
    /// Refuse, authenticated.
    Refuse(Refusal),
}

/// The outcome of answering message 1.
#[derive(Debug)]
pub enum Outcome {
    /// The link is up.
    Established(Box<Established>),
    /// The initiator was refused (message 2 says why).
    Refused(Refusal),
}

/// An authenticated request awaiting the responder's decision.
pub struct PendingAccept {
    hs: snow::HandshakeState,
    request: ConnectRequest,
    cfg: HandshakeConfig,
}

impl std::fmt::Debug for PendingAccept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAccept").field("request", &self.request).finish_non_exhaustive()
    }
}

impl PendingAccept {
    /// The authenticated request.
    pub fn request(&self) -> &ConnectRequest {
        &self.request
    }

    /// The version both sides would use, if they share one.
    pub fn negotiated_version(&self) -> Option<u16> {
        self.cfg.versions.negotiate(VersionRange { min: self.request.proto_ver_min, max: self.request.proto_ver_max })
    }

    /// Writes message 2. Accepting without a common version refuses as
    /// Incompatible instead.
    pub fn finish(mut self, decision: Decision) -> Result<(Vec<u8>, Outcome), HandshakeError> {
        let version = self.negotiated_version();
        let (reply, outcome_refusal) = match (decision, version) {
            (Decision::Accept { own_advert_ver, known_initiator_advert_ver }, Some(v)) => {
                (self.reply(0, v, own_advert_ver, known_initiator_advert_ver), None)
            }
            (Decision::Accept { .. }, None) => {
                (self.reply(Refusal::Incompatible.code(), 0, 0, 0), Some(Refusal::Incompatible))
            }
            (Decision::Refuse(r), _) => (self.reply(r.code(), 0, 0, 0), Some(r)),
        };
        let mut msg = vec![0u8; MSG2_LEN];
        msg[0] = KIND_REPLY;
        let n = self.hs.write_message(reply.as_bytes(), &mut msg[1..]).map_err(noise_err)?;
        debug_assert_eq!(1 + n, MSG2_LEN);
        if let Some(r) = outcome_refusal {
            return Ok((msg, Outcome::Refused(r)));
        }
        let req = self.request;
        let link = link_from(self.hs, false, &self.cfg)?;
        Ok((
            msg,
            Outcome::Established(Box::new(Established {
                link,
                remote: req.src_node_id,
                proto_ver: reply.proto_ver.get(),
                remote_advert_ver: req.src_node_advert_ver,
                remote_knows_our_advert_ver: req.dst_node_advert_ver,
                initiator: false,
            })),
        ))
    }

    fn reply(&self, status: u8, proto_ver: u16, own: u64, known: u64) -> ReplyPayload {
        ReplyPayload {
            status,
            proto_ver: proto_ver.into(),
            responder_advert_ver: own.into(),
            initiator_advert_ver: known.into(),
            responder_ver_min: self.cfg.versions.min.into(),
            responder_ver_max: self.cfg.versions.max.into(),
        }
    }
}
