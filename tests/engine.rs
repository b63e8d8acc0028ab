//! The engine end to end over loopback: nodes, shards, links, delivery.

mod common;

use std::time::Duration;

use common::*;
use shardwire::node::SendOptions;
use shardwire::proxy::{Outcome, Permanence};

#[test]
fn two_nodes_exchange_a_message() {
    let a = node(2);
    let b = node(2);
    a.add_peer(b.node_id(), b.listen_addr().unwrap(), Permanence::Ephemeral);
    let id = a.send(b.node_id(), app(), app(), msg(7, 10), SendOptions::default().notify()).unwrap();
    let got = collect(&b, Duration::from_secs(10), |ev| !received(ev).is_empty());
    assert_eq!(received(&got), vec![7]);
    let out = collect(&a, Duration::from_secs(10), |ev| !outcomes(ev).is_empty());
    assert_eq!(outcomes(&out), vec![(id, Outcome::Delivered)]);
    let ra = a.shutdown(Duration::from_secs(2));
    let rb = b.shutdown(Duration::from_secs(2));
    assert_eq!((ra.sent, ra.delivered), (1, 1));
    assert_eq!(rb.received, 1);
}
