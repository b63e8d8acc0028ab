//! Helpers for end-to-end tests over real loopback sockets. Every wait is
//! bounded in time.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use shardwire::handshake::Identity;
use shardwire::node::{Node, NodeBuilder, NodeEvent, NodeHandle, Shards};
use shardwire::proxy::{EngineId, MsgId, Outcome};
use shardwire::wire::{Message, MessageType, Value, WireConfig, encode_message};

/// The external engine name test nodes receive messages on.
pub const APP: &str = "app";

pub fn app() -> EngineId {
    EngineId::named(APP)
}

/// A node listening on an ephemeral loopback port with an external "app" engine.
pub fn builder(shards: usize) -> NodeBuilder {
    Node::builder()
        .identity(Identity::generate())
        .listen("127.0.0.1:0".parse().unwrap())
        .shards(Shards::Count(shards))
        .external_engine(APP)
        .configure(|c| {
            c.proxy.backoff_min_ms = 10;
            c.proxy.backoff_max_ms = 500;
        })
}

pub fn node(shards: usize) -> NodeHandle {
    builder(shards).start().expect("node starts")
}

/// A message carrying `n` (as a Long) plus `pad` bytes.
pub fn msg(n: u64, pad: usize) -> Message {
    let cfg = WireConfig::default();
    let v = Value::Vector(vec![Value::Long(n as i64), Value::blob(vec![0x5a; pad])]);
    Message::decode(encode_message(MessageType::Other(0x80), &v, &cfg).unwrap(), &cfg).unwrap()
}

/// The number carried by a [`msg`].
pub fn key(m: &Message) -> u64 {
    m.element(0).and_then(|c| c.as_long()).unwrap_or(-1) as u64
}

/// Collects events until `done` says so or `timeout` passes.
pub fn collect(node: &NodeHandle, timeout: Duration, mut done: impl FnMut(&[NodeEvent]) -> bool) -> Vec<NodeEvent> {
    let end = Instant::now() + timeout;
    let mut got = Vec::new();
    while !done(&got) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Ok(ev) = node.events().recv_timeout(left.min(Duration::from_millis(50))) {
            got.push(ev);
        }
    }
    got
}

/// Outcomes among `events`.
pub fn outcomes(events: &[NodeEvent]) -> Vec<(MsgId, Outcome)> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Outcome { id, outcome, .. } => Some((*id, *outcome)),
            _ => None,
        })
        .collect()
}

/// Keys of messages received among `events`.
pub fn received(events: &[NodeEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Message { msg, .. } => Some(key(&msg.msg)),
            _ => None,
        })
        .collect()
}

/// Waits until `f` holds (polling), up to `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}
