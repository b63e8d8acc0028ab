//! CAD015 peer messages end to end over real loopback links (bounded).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use shardwire::handshake::NodeId;
use shardwire::node::{
    Metric, NodeBuilder, NodeHandle, PeerError, PeerHandler, PeerRequest, Rejection, ResultReply, SendOptions,
};
use shardwire::peer::{Incomplete, PEER_ENGINE, codes};
use shardwire::proxy::Permanence;
use shardwire::wire::{MessageType, Value, ValueId, WireConfig, encode_partial};

const SEC: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq)]
enum Got {
    Belief(NodeId, ValueId),
    Incomplete(NodeId, MessageType, Incomplete),
}

/// Answers QUERY with the query itself, STATUS with `:ok`; rejects
/// transactions that are negative Longs; HOLD queries (the keyword) wait
/// for `release` before answering.
struct Handler {
    tx: Sender<Got>,
    release: Arc<AtomicBool>,
}

impl PeerHandler for Handler {
    fn query(&self, req: PeerRequest, reply: ResultReply) {
        let body = req.body().unwrap();
        if body.as_keyword() == Some(b"HOLD") {
            let release = self.release.clone();
            glommio::spawn_local(async move {
                while !release.load(Ordering::Relaxed) {
                    glommio::timer::sleep(Duration::from_millis(2)).await;
                }
                reply.ok(Value::keyword("released"));
            })
            .detach();
            return;
        }
        reply.ok(Value::Cell(body));
    }

    fn status(&self, _req: PeerRequest, reply: ResultReply) {
        reply.ok(Value::keyword("ok"));
    }

    fn validate_transaction(&self, req: &PeerRequest) -> Result<(), Rejection> {
        match req.body().and_then(|c| c.as_long()) {
            Some(n) if n < 0 => Err(Rejection::new("SIGNATURE", "bad signature")),
            _ => Ok(()),
        }
    }

    fn transact(&self, req: PeerRequest, reply: ResultReply) {
        reply.ok(Value::Cell(req.body().unwrap()));
    }

    fn belief(&self, from: NodeId, belief: shardwire::wire::Message) {
        let _ = self.tx.send(Got::Belief(from, belief.payload().top_id(WireConfig::default().hash)));
    }

    fn incomplete(&self, from: NodeId, ty: MessageType, why: Incomplete) {
        let _ = self.tx.send(Got::Incomplete(from, ty, why));
    }
}

struct Server {
    node: NodeHandle,
    got: Receiver<Got>,
    release: Arc<AtomicBool>,
}

fn server(shards: usize, edit: impl FnOnce(NodeBuilder) -> NodeBuilder) -> Server {
    let (tx, got) = crossbeam_channel::unbounded();
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let node = edit(common::builder(shards))
        .peer_handler(move |_| Handler { tx: tx.clone(), release: r.clone() })
        .start()
        .unwrap();
    Server { node, got, release }
}

fn client_of(s: &NodeHandle) -> NodeHandle {
    let c = common::node(1);
    c.add_peer(s.node_id(), s.listen_addr().unwrap(), Permanence::Ephemeral);
    c
}

/// A belief-sized value: 40 blobs of 1 KiB, the second half nested (so
/// completing it takes two rounds of MISSING_DATA).
fn belief(salt: u8) -> Value {
    let blob = |i: usize| Value::blob(vec![salt.wrapping_add(i as u8); 1024]);
    let mut outer: Vec<Value> = (0..20).map(blob).collect();
    outer.push(Value::Vector((20..40).map(blob).collect()));
    Value::Vector(outer)
}

fn top_id(v: &Value) -> ValueId {
    let cfg = WireConfig::default();
    encode_partial(MessageType::Belief, v, &cfg, |_| false).unwrap().0.payload().top_id(cfg.hash)
}

fn next(got: &Receiver<Got>) -> Got {
    got.recv_timeout(20 * SEC).expect("an event from the peer handler")
}

fn query_status_transact_get_results() {
    let s = server(2, |b| b);
    let c = client_of(&s.node);
    let r = c.query(s.node.node_id(), Value::Long(42), 10 * SEC).wait().unwrap();
    assert_eq!((r.error(), r.value().and_then(|v| v.as_long())), (None, Some(42)));
    let r = c.status(s.node.node_id(), 10 * SEC).wait().unwrap();
    assert_eq!(r.value().unwrap().as_keyword(), Some(&b"ok"[..]));
    // A valid transaction is accepted once, then refused as a duplicate —
    // also when it comes from another node (node-wide).
    let r = c.transact(s.node.node_id(), Value::Long(7), 10 * SEC).wait().unwrap();
    assert_eq!((r.error(), r.value().unwrap().as_long()), (None, Some(7)));
    let r = c.transact(s.node.node_id(), Value::Long(7), 10 * SEC).wait().unwrap();
    assert_eq!(r.error().as_deref(), Some(codes::DUPLICATE));
    let c2 = client_of(&s.node);
    let r = c2.transact(s.node.node_id(), Value::Long(7), 10 * SEC).wait().unwrap();
    assert_eq!(r.error().as_deref(), Some(codes::DUPLICATE));
    // The validation hook rejects, with its own code; a rejected
    // transaction is not remembered.
    let r = c.transact(s.node.node_id(), Value::Long(-1), 10 * SEC).wait().unwrap();
    assert_eq!(r.error().as_deref(), Some("SIGNATURE"));
    assert_eq!(s.node.metric(Metric::peer_tx_duplicate), 2);
    assert_eq!(s.node.metric(Metric::peer_tx_rejected), 1);
    // A node without a handler still answers.
    let bare = common::node(1);
    let r = c.query(bare.node_id(), Value::Nil, 10 * SEC);
    c.add_peer(bare.node_id(), bare.listen_addr().unwrap(), Permanence::Ephemeral);
    let _ = r.wait(); // may have raced the address: ask again with it known
    let r = c.query(bare.node_id(), Value::Nil, 10 * SEC).wait().unwrap();
    assert_eq!(r.error().as_deref(), Some(codes::UNSUPPORTED));
    for n in [&c, &c2, &bare, &s.node] {
        n.shutdown(SEC);
    }
}

fn load_is_shed_with_a_result_never_silence() {
    let s = server(1, |b| b.configure(|c| c.peer_msgs.max_pending_requests = 2));
    let c = client_of(&s.node);
    let held: Vec<_> = (0..2).map(|_| c.query(s.node.node_id(), Value::keyword("HOLD"), 10 * SEC)).collect();
    assert!(common::wait_until(10 * SEC, || s.node.metric(Metric::peer_requests_in) == 2));
    let r = c.query(s.node.node_id(), Value::Long(1), 10 * SEC).wait().unwrap();
    assert_eq!(r.error().as_deref(), Some(codes::LOAD));
    assert_eq!(s.node.metric(Metric::peer_load_shed), 1);
    s.release.store(true, Ordering::Relaxed);
    for h in held {
        assert_eq!(h.wait().unwrap().value().unwrap().as_keyword(), Some(&b"released"[..]));
    }
    // Capacity is back.
    assert!(c.query(s.node.node_id(), Value::Long(1), 10 * SEC).wait().unwrap().error().is_none());
    c.shutdown(SEC);
    s.node.shutdown(SEC);
}

fn partial_belief_is_completed_through_missing_data_and_delivered_once() {
    let s = server(2, |b| b);
    let c = client_of(&s.node);
    let v = belief(1);
    // Everything but the top cell is left out: the server has none of it.
    c.send_peer(s.node.node_id(), MessageType::Belief, &v, |_| true, SendOptions::default()).unwrap();
    assert_eq!(next(&s.got), Got::Belief(c.node_id(), top_id(&v)));
    assert!(s.node.metric(Metric::peer_partial_completed) == 1);
    assert!(c.metric(Metric::peer_missing_data_in) >= 2, "two rounds: outer cells, then nested ones");
    // The same belief again (whole this time) is not delivered twice.
    c.send_peer(s.node.node_id(), MessageType::Belief, &v, |_| false, SendOptions::default()).unwrap();
    assert!(common::wait_until(10 * SEC, || s.node.metric(Metric::peer_beliefs_duplicate) == 1));
    assert!(s.got.try_recv().is_err());
    // A new belief sharing most cells with the old one, sent leaving out
    // exactly the old one's cells: the server's store completes it without
    // asking.
    let cfg = WireConfig::default();
    let (_, old_cells) = encode_partial(MessageType::Belief, &v, &cfg, |_| false).unwrap();
    let known: std::collections::HashSet<ValueId> = old_cells.iter().map(|(id, _)| *id).collect();
    let mut v2 = belief(1);
    if let Value::Vector(items) = &mut v2 {
        items[0] = Value::blob(vec![0xee; 1024]);
    }
    let asked = c.metric(Metric::peer_missing_data_in);
    let omit = |id: &ValueId| known.contains(id);
    c.send_peer(s.node.node_id(), MessageType::Belief, &v2, omit, SendOptions::default()).unwrap();
    assert_eq!(next(&s.got), Got::Belief(c.node_id(), top_id(&v2)));
    assert_eq!(c.metric(Metric::peer_missing_data_in), asked, "completed from the server's store");
    c.shutdown(SEC);
    s.node.shutdown(SEC);
}

fn missing_cells_that_never_come_or_are_absent_drop_the_message_with_an_error() {
    let s = server(1, |b| b.configure(|c| c.peer_msgs.partial_timeout_ms = 300));
    let c = client_of(&s.node);
    let cfg = WireConfig::default();
    // Sent by an external engine that never answers MISSING_DATA.
    let (partial, _) = encode_partial(MessageType::Belief, &belief(2), &cfg, |_| true).unwrap();
    c.send(s.node.node_id(), common::app(), PEER_ENGINE, partial, SendOptions::default()).unwrap();
    assert_eq!(next(&s.got), Got::Incomplete(c.node_id(), MessageType::Belief, Incomplete::Timeout));
    // Sent as `$peer` but without keeping the cells: the sender answers
    // that it does not hold them.
    let (partial, _) = encode_partial(MessageType::Belief, &belief(3), &cfg, |_| true).unwrap();
    c.send(s.node.node_id(), PEER_ENGINE, PEER_ENGINE, partial, SendOptions::default()).unwrap();
    assert_eq!(next(&s.got), Got::Incomplete(c.node_id(), MessageType::Belief, Incomplete::Absent));
    assert_eq!(s.node.metric(Metric::peer_partial_failed), 2);
    assert_eq!(s.node.metric(Metric::peer_beliefs_in), 0);
    c.shutdown(SEC);
    s.node.shutdown(SEC);
}

fn belief_rate_drops_and_counts_serving_trusted_peers_first() {
    let trusted = common::node(1);
    let t_id = trusted.node_id();
    // No refill to speak of: a burst of 4, of which 2 are kept for trusted peers.
    let s = server(1, move |b| {
        b.trusted(t_id).configure(|c| {
            c.peer_msgs.belief_rate = 0;
            c.peer_msgs.belief_burst = 4;
            c.peer_msgs.belief_trusted_reserve = 2;
        })
    });
    let untrusted = client_of(&s.node);
    trusted.add_peer(s.node.node_id(), s.node.listen_addr().unwrap(), Permanence::Ephemeral);
    let send = |n: &NodeHandle, salt: u8| {
        let v = Value::Vector(vec![Value::Long(i64::from(salt))]);
        n.send_peer(s.node.node_id(), MessageType::Belief, &v, |_| false, SendOptions::default()).unwrap();
    };
    for i in 0..5 {
        send(&untrusted, i);
    }
    assert!(common::wait_until(10 * SEC, || s.node.metric(Metric::peer_beliefs_dropped) == 3));
    assert_eq!(s.node.metric(Metric::peer_beliefs_in), 2, "untrusted stop at the reserve");
    for i in 10..13 {
        send(&trusted, i);
    }
    assert!(common::wait_until(10 * SEC, || s.node.metric(Metric::peer_beliefs_dropped) == 4));
    assert_eq!(s.node.metric(Metric::peer_beliefs_in), 4, "the reserve served the trusted peer");
    let from: Vec<NodeId> = (0..4)
        .map(|_| match next(&s.got) {
            Got::Belief(f, _) => f,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(from.iter().filter(|f| **f == t_id).count(), 2);
    for n in [&untrusted, &trusted, &s.node] {
        n.shutdown(SEC);
    }
}

fn requests_time_out_or_fail_typed() {
    let s = server(1, |b| b);
    let c = client_of(&s.node);
    // No answer within the deadline (held query): Timeout.
    let r = c.query(s.node.node_id(), Value::keyword("HOLD"), Duration::from_millis(200)).wait();
    assert_eq!(r.unwrap_err(), PeerError::Timeout);
    let r = c.query(c.node_id(), Value::Nil, SEC).wait();
    assert_eq!(r.unwrap_err(), PeerError::ToSelf);
    s.release.store(true, Ordering::Relaxed);
    c.shutdown(SEC);
    s.node.shutdown(SEC);
}

on_both_io_paths!(
    query_status_transact_get_results,
    load_is_shed_with_a_result_never_silence,
    partial_belief_is_completed_through_missing_data_and_delivered_once,
    missing_cells_that_never_come_or_are_absent_drop_the_message_with_an_error,
    belief_rate_drops_and_counts_serving_trusted_peers_first,
    requests_time_out_or_fail_typed,
);
