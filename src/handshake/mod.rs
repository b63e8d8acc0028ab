//! Secure links: node identities, the Noise IK connect handshake, and
//! AES-256-GCM records (docs/protocol.md sections 8 and 9).
//!
//! Sans-IO: states are values consumed by each step, time is passed in,
//! bytes go in and out of caller buffers. No sockets, no clock reads, no
//! glommio. The only IO is reading and writing key files ([`Identity`]).
//!
//! Layout: [`identity`] (NodeId, key files) → [`connect`] (Initiator,
//! Responder, ReplayGuard) → [`link`] (frames over records) → [`record`]
//! (seq, seal, open) → [`aead`] (two backends, identical bytes).

pub mod aead;
pub mod connect;
pub mod identity;
pub mod link;
pub mod record;

#[cfg(test)]
mod tests;

pub use aead::AeadBackend;
pub use connect::{
    ConnectRequest, Decision, Established, Fault, HandshakeConfig, HandshakeError, Initiator, Outcome, PendingAccept,
    Refusal, Rejection, ReplayGuard, Responder, VersionRange, early_refusal, early_reply_for,
};
pub use identity::{Identity, KeyFileError, NodeId};
pub use link::{Link, LinkError};
pub use record::RecordError;
