//! The five RPC messages and their encoding (`docs/protocol.md`, section 11).
//!
//! Each is a wire [`Message`] whose type byte is in the RPC range
//! (`0x40..=0x44`) and whose payload is a Vector of fixed shape. Decoding
//! checks every field; nothing is allocated because a field says so.

use bytes::Bytes;

use crate::wire::{Child, Message, MessageType, MultiCell, Value, WireConfig, encode_message};

/// `RPC_SESSION`: the client proposes a session with a service.
pub const SESSION: u8 = 0x40;
/// `RPC_SESSION_REPLY`: the server accepts (with a version) or rejects.
pub const SESSION_REPLY: u8 = 0x41;
/// `RPC_REQUEST`: one call.
pub const REQUEST: u8 = 0x42;
/// `RPC_RESPONSE`: an answer, or one item of a streamed answer.
pub const RESPONSE: u8 = 0x43;
/// `RPC_CONTROL`: cancel a call, grant stream credit, close a session.
pub const CONTROL: u8 = 0x44;

/// Request flag: the client accepts a streamed answer.
pub const FLAG_STREAM: u64 = 1;
/// Response flag: the last response of the call.
pub const FLAG_FIN: u64 = 1;

/// Longest service name, in bytes.
pub const MAX_SERVICE_NAME: usize = 64;
/// Most versions one session proposal may list.
pub const MAX_VERSIONS: usize = 16;

/// Why a server refused a session (the Tari reasons, same codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// A reason this implementation does not know (code 0 or unassigned).
    #[error("session rejected (reason {0})")]
    Unknown(u64),
    /// No version the client proposed is supported.
    #[error("no common RPC version")]
    UnsupportedVersion,
    /// The server has no session left for anyone (node-wide limit).
    #[error("no server sessions available")]
    NoServerSessionsAvailable,
    /// The server has no session left for this client (per-peer limit).
    #[error("no sessions available for this client")]
    NoClientSessionsAvailable,
    /// The server has no such service.
    #[error("service not supported")]
    ProtocolNotSupported,
}

impl RejectReason {
    /// The wire code.
    pub fn code(self) -> u64 {
        match self {
            RejectReason::Unknown(c) => c,
            RejectReason::UnsupportedVersion => 1,
            RejectReason::NoServerSessionsAvailable => 2,
            RejectReason::NoClientSessionsAvailable => 3,
            RejectReason::ProtocolNotSupported => 4,
        }
    }

    /// From the wire code.
    pub fn from_code(c: u64) -> Self {
        match c {
            1 => RejectReason::UnsupportedVersion,
            2 => RejectReason::NoServerSessionsAvailable,
            3 => RejectReason::NoClientSessionsAvailable,
            4 => RejectReason::ProtocolNotSupported,
            other => RejectReason::Unknown(other),
        }
    }

    /// Worth trying again later (a limit, not a mismatch).
    pub fn is_retryable(self) -> bool {
        matches!(self, RejectReason::NoServerSessionsAvailable | RejectReason::NoClientSessionsAvailable)
    }
}

/// `RPC_CONTROL` kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    /// Client → server: stop working on this call; send nothing more.
    Cancel,
    /// Client → server: the stream may send `n` more responses.
    Credit,
    /// Client → server: the client closes its session (`request_id` and
    /// `n` are 0).
    CloseSession,
    /// Server → client: the server closed the session (idle); the client's
    /// next call opens a new one.
    SessionClosed,
}

impl ControlKind {
    fn code(self) -> u64 {
        match self {
            ControlKind::Cancel => 1,
            ControlKind::Credit => 2,
            ControlKind::CloseSession => 3,
            ControlKind::SessionClosed => 4,
        }
    }
}

/// A decoded RPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcMsg {
    /// `[session, service, [versions...]]`.
    Session {
        /// Client-chosen session ID (per client node).
        session: u32,
        /// The service's name.
        service: String,
        /// Versions the client speaks.
        versions: Vec<u32>,
    },
    /// `[session, version-or-nil, reason-or-nil]` (exactly one is nil).
    SessionReply {
        /// The session.
        session: u32,
        /// Accepted version, or the rejection.
        result: Result<u32, RejectReason>,
    },
    /// `[session, request_id, method, flags, deadline_ms, credit, payload]`.
    Request(RpcRequest),
    /// `[session, request_id, status, flags, payload]`.
    Response(RpcResponse),
    /// `[session, request_id, kind, n]`.
    Control {
        /// The session.
        session: u32,
        /// The call (0 for CloseSession).
        request_id: u32,
        /// What to do.
        kind: ControlKind,
        /// Credit granted (Credit only).
        n: u32,
    },
}

/// One call, as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcRequest {
    /// The session it belongs to.
    pub session: u32,
    /// Unique among the client's calls in flight on this session.
    pub request_id: u32,
    /// The method; its meaning is the service's.
    pub method: u32,
    /// [`FLAG_STREAM`]; other bits are 0 and ignored.
    pub flags: u64,
    /// Milliseconds the client will wait, counted from when it sent the
    /// request (0: do not start).
    pub deadline_ms: u64,
    /// For a streamed call, how many responses the server may send before
    /// it hears of more credit (0 for unary calls).
    pub credit: u32,
    /// The argument.
    pub payload: Bytes,
}

/// One answer, as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcResponse {
    /// The session.
    pub session: u32,
    /// The call answered.
    pub request_id: u32,
    /// 0 = OK; see [`super::Status`].
    pub status: u32,
    /// [`FLAG_FIN`] on the last response of the call.
    pub flags: u64,
    /// The answer (or the error's details).
    pub payload: Bytes,
}

/// Why bytes are not a valid RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcDecodeError {
    /// Not an RPC type byte.
    #[error("type byte {0:#04x} is not an RPC message")]
    NotRpc(u8),
    /// The payload is not a Vector of the right length.
    #[error("{0}: payload must be a Vector of {1} elements")]
    Shape(&'static str, usize),
    /// A field has the wrong type or range.
    #[error("{0}: bad field {1}")]
    Field(&'static str, &'static str),
}

fn long(v: u64) -> Value {
    Value::Long(v as i64)
}

impl RpcMsg {
    /// The message type byte.
    pub fn type_byte(&self) -> u8 {
        match self {
            RpcMsg::Session { .. } => SESSION,
            RpcMsg::SessionReply { .. } => SESSION_REPLY,
            RpcMsg::Request(_) => REQUEST,
            RpcMsg::Response(_) => RESPONSE,
            RpcMsg::Control { .. } => CONTROL,
        }
    }

    /// Encodes into a wire message. Fails only for a payload too large for
    /// the codec's limits (more branch cells than `cfg.max_branches`).
    pub fn encode(&self, cfg: &WireConfig) -> Result<Message, crate::wire::EncodeError> {
        let v = match self {
            RpcMsg::Session { session, service, versions } => Value::Vector(vec![
                long(u64::from(*session)),
                Value::string(service),
                Value::Vector(versions.iter().map(|&v| long(u64::from(v))).collect()),
            ]),
            RpcMsg::SessionReply { session, result } => {
                let (ver, why) = match result {
                    Ok(v) => (long(u64::from(*v)), Value::Nil),
                    Err(r) => (Value::Nil, long(r.code())),
                };
                Value::Vector(vec![long(u64::from(*session)), ver, why])
            }
            RpcMsg::Request(r) => Value::Vector(vec![
                long(u64::from(r.session)),
                long(u64::from(r.request_id)),
                long(u64::from(r.method)),
                long(r.flags),
                long(r.deadline_ms),
                long(u64::from(r.credit)),
                Value::Blob(r.payload.clone()),
            ]),
            RpcMsg::Response(r) => Value::Vector(vec![
                long(u64::from(r.session)),
                long(u64::from(r.request_id)),
                long(u64::from(r.status)),
                long(r.flags),
                Value::Blob(r.payload.clone()),
            ]),
            RpcMsg::Control { session, request_id, kind, n } => Value::Vector(vec![
                long(u64::from(*session)),
                long(u64::from(*request_id)),
                long(kind.code()),
                long(u64::from(*n)),
            ]),
        };
        let bytes = encode_message(MessageType::Other(self.type_byte()), &v, cfg)?;
        Message::decode(bytes, cfg).map_err(crate::wire::EncodeError::Limits)
    }

    /// Decodes an RPC message from a wire message.
    pub fn decode(m: &Message) -> Result<RpcMsg, RpcDecodeError> {
        let ty = m.ty().to_byte();
        let (name, n) = match ty {
            SESSION => ("RPC_SESSION", 3),
            SESSION_REPLY => ("RPC_SESSION_REPLY", 3),
            REQUEST => ("RPC_REQUEST", 7),
            RESPONSE => ("RPC_RESPONSE", 5),
            CONTROL => ("RPC_CONTROL", 4),
            other => return Err(RpcDecodeError::NotRpc(other)),
        };
        let mc = m.payload();
        let top = mc.top();
        let items = match top.seq_leaf() {
            Some((count, items)) if top.tag() == 0x80 && count == n as u64 && items.len() == n => items,
            _ => return Err(RpcDecodeError::Shape(name, n)),
        };
        let f = Fields { mc, items: &items, name };
        Ok(match ty {
            SESSION => {
                let service = f.bytes(1, "service", MAX_SERVICE_NAME, true)?;
                let service = String::from_utf8(service.to_vec()).map_err(|_| f.bad("service"))?;
                if service.is_empty() {
                    return Err(f.bad("service"));
                }
                let list = mc.resolve(&items[2]).ok_or(f.bad("versions"))?;
                let versions = match list.seq_leaf() {
                    Some((c, vs)) if list.tag() == 0x80 && (c as usize) == vs.len() && vs.len() <= MAX_VERSIONS => vs,
                    _ => return Err(f.bad("versions")),
                };
                let versions = versions
                    .iter()
                    .map(|c| {
                        mc.resolve(c)
                            .and_then(|c| c.as_long())
                            .and_then(|v| u32::try_from(v).ok())
                            .ok_or(f.bad("versions"))
                    })
                    .collect::<Result<Vec<u32>, _>>()?;
                RpcMsg::Session { session: f.u32(0, "session")?, service, versions }
            }
            SESSION_REPLY => {
                let session = f.u32(0, "session")?;
                let result = match (&items[1], &items[2]) {
                    (v, Child::Nil) => Ok(f.u32_of(v, "version")?),
                    (Child::Nil, r) => Err(RejectReason::from_code(f.u64_of(r, "reason")?)),
                    _ => return Err(f.bad("version/reason: exactly one must be nil")),
                };
                RpcMsg::SessionReply { session, result }
            }
            REQUEST => RpcMsg::Request(RpcRequest {
                session: f.u32(0, "session")?,
                request_id: f.u32(1, "request_id")?,
                method: f.u32(2, "method")?,
                flags: f.u64(3, "flags")?,
                deadline_ms: f.u64(4, "deadline")?,
                credit: f.u32(5, "credit")?,
                payload: f.bytes(6, "payload", usize::MAX, false)?,
            }),
            RESPONSE => RpcMsg::Response(RpcResponse {
                session: f.u32(0, "session")?,
                request_id: f.u32(1, "request_id")?,
                status: f.u32(2, "status")?,
                flags: f.u64(3, "flags")?,
                payload: f.bytes(4, "payload", usize::MAX, false)?,
            }),
            _ => {
                let kind = match f.u64(2, "kind")? {
                    1 => ControlKind::Cancel,
                    2 => ControlKind::Credit,
                    3 => ControlKind::CloseSession,
                    4 => ControlKind::SessionClosed,
                    _ => return Err(f.bad("kind")),
                };
                RpcMsg::Control {
                    session: f.u32(0, "session")?,
                    request_id: f.u32(1, "request_id")?,
                    kind,
                    n: f.u32(3, "n")?,
                }
            }
        })
    }
}

struct Fields<'a> {
    mc: &'a MultiCell,
    items: &'a [Child],
    name: &'static str,
}

impl Fields<'_> {
    fn bad(&self, field: &'static str) -> RpcDecodeError {
        RpcDecodeError::Field(self.name, field)
    }

    fn u64_of(&self, c: &Child, field: &'static str) -> Result<u64, RpcDecodeError> {
        self.mc.resolve(c).and_then(|c| c.as_long()).and_then(|v| u64::try_from(v).ok()).ok_or(self.bad(field))
    }

    fn u32_of(&self, c: &Child, field: &'static str) -> Result<u32, RpcDecodeError> {
        u32::try_from(self.u64_of(c, field)?).map_err(|_| self.bad(field))
    }

    fn u64(&self, i: usize, field: &'static str) -> Result<u64, RpcDecodeError> {
        self.u64_of(&self.items[i], field)
    }

    fn u32(&self, i: usize, field: &'static str) -> Result<u32, RpcDecodeError> {
        self.u32_of(&self.items[i], field)
    }

    fn bytes(&self, i: usize, field: &'static str, max: usize, string: bool) -> Result<Bytes, RpcDecodeError> {
        let c = self.mc.resolve(&self.items[i]).ok_or(self.bad(field))?;
        let want = if string { 0x30 } else { 0x31 };
        if c.tag() != want {
            return Err(self.bad(field));
        }
        let b = self.mc.blob(&self.items[i]).ok_or(self.bad(field))?;
        if b.len() > max {
            return Err(self.bad(field));
        }
        Ok(b)
    }
}
