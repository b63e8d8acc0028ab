//! The peer message types of CAD015 (pure parts): a content-addressed
//! cell store, completion of partial messages through MISSING_DATA and
//! DATA, duplicate suppression and belief rate limiting.
//!
//! The shard layer runs the protocol around them: QUERY, TRANSACT and
//! STATUS are answered with a RESULT that references their message ID
//! (an error keyword inside RESULT for failures, `:LOAD` when shedding
//! load); TRANSACT passes the application's validation hook and is refused
//! as `:DUPLICATE` when its hash was accepted before; BELIEF goes to the
//! application's merge handler once per value ID, within a rate; a
//! partial message is held until its cells arrive. Peer messages are
//! addressed to the reserved engine `$peer`. See `docs/protocol.md`
//! section 12.

pub mod assemble;
pub mod limits;
pub mod store;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

pub use assemble::{Assembled, Assembler, Incomplete};
pub use limits::{RecentIds, TokenBucket};
pub use store::CellStore;

use crate::handshake::NodeId;
use crate::proxy::EngineId;

/// The engine name peer messages are addressed to and sent from.
pub const PEER_ENGINE: EngineId = EngineId::named("$peer");

/// RESULT error keywords used by shardwire (without the leading colon).
pub mod codes {
    /// Temporary failure due to load: try again later (CAD015).
    pub const LOAD: &str = "LOAD";
    /// This node has no handler for the message type.
    pub const UNSUPPORTED: &str = "UNSUPPORTED";
    /// A TRANSACT whose transaction was accepted before.
    pub const DUPLICATE: &str = "DUPLICATE";
    /// The transaction failed validation (the default code of a rejection).
    pub const INVALID: &str = "INVALID";
    /// The handler dropped the request without answering.
    pub const NO_ANSWER: &str = "NO_ANSWER";
    /// The request's payload is not of the documented shape.
    pub const FORMAT: &str = "FORMAT";
}

/// Limits and timings of the peer message types, with documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMsgConfig {
    /// Bytes of cells each shard's store keeps (default 64 MiB).
    pub store_bytes: usize,
    /// How long a partial message waits for its cells (default 5 s).
    pub partial_timeout_ms: u64,
    /// Partial messages waiting at once per shard (default 256).
    pub max_partial: usize,
    /// Largest completed message, in bytes (default 16 MiB).
    pub max_partial_bytes: usize,
    /// QUERY / STATUS / TRANSACT handlers running at once per shard
    /// (default 1,024); beyond it requests are answered `:LOAD`.
    pub max_pending_requests: usize,
    /// Accepted transaction hashes remembered node-wide (default 65,536).
    pub tx_dedup: usize,
    /// Belief value IDs remembered node-wide (default 4,096).
    pub belief_dedup: usize,
    /// Beliefs merged per second per shard (default 1,000), burst (200),
    /// and the part of the burst kept for trusted peers (50).
    pub belief_rate: u32,
    /// See `belief_rate`.
    pub belief_burst: u32,
    /// See `belief_rate`.
    pub belief_trusted_reserve: u32,
    /// Peers whose beliefs are served first.
    pub trusted: HashSet<NodeId>,
}

impl Default for PeerMsgConfig {
    fn default() -> Self {
        PeerMsgConfig {
            store_bytes: 64 << 20,
            partial_timeout_ms: 5000,
            max_partial: 256,
            max_partial_bytes: 16 << 20,
            max_pending_requests: 1024,
            tx_dedup: 65_536,
            belief_dedup: 4096,
            belief_rate: 1000,
            belief_burst: 200,
            belief_trusted_reserve: 50,
            trusted: HashSet::new(),
        }
    }
}
