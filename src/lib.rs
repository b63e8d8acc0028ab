//! shardwire: a node-to-node networking engine for validator nodes.
//!
//! # Layout
//!
//! Dependencies point one way, down:
//!
//! - [`node`]: the public API: Node builder, handles, engines, metrics.
//! - `shard`: glommio executors, sockets, cross-shard mesh (the only IO).
//! - [`rpc`]: request/response sessions, deadlines, streams (pure).
//! - [`peer`]: CAD015 peer messages: cell store, partial messages (pure).
//! - [`proxy`]: one state machine per remote node: queues, seqs, acks (pure).
//! - [`handshake`]: identities, Noise IK handshake, AES-256-GCM records (pure).
//! - [`wire`]: VLQ, CAD3 cells, multi-cell messages, stream frames (pure).
//!
//! The pure layers do no IO and read no clocks; the shard layer is the only
//! one that touches sockets. See `docs/protocol.md` for the bytes on the wire.
#![warn(missing_docs)]

pub mod handshake;
pub mod node;
pub mod peer;
pub mod proxy;
pub mod rpc;
mod shard;
pub mod stage_trace;
pub mod wire;

#[doc(hidden)]
pub mod fuzzing;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
