//! The engine end to end over real loopback sockets: shards, links, cross-
//! shard routing, cuts, restarts, permanence, refusals, many links.
//! Every wait is bounded.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::*;
use shardwire::handshake::{Identity, NodeId, Refusal, VersionRange};
use shardwire::node::{Engine, ListenShards, Metric, NodeEvent, NodeHandle, SendOptions, ShardCtx};
use shardwire::proxy::{EngineId, EngineMsg, MsgId, NotQueued, Outcome, Permanence};

const T: Duration = Duration::from_secs(30);

fn two_nodes_exchange_a_message() {
    let a = node(2);
    let b = node(2);
    a.add_peer(b.node_id(), b.listen_addr().unwrap(), Permanence::Ephemeral);
    let id = a.send(b.node_id(), app(), app(), msg(7, 10), SendOptions::default().notify()).unwrap();
    let got = collect(&b, T, |ev| !received(ev).is_empty());
    assert_eq!(received(&got), vec![7]);
    let out = collect(&a, T, |ev| !outcomes(ev).is_empty());
    assert_eq!(outcomes(&out), vec![(id, Outcome::Delivered)]);
    let ra = a.shutdown(Duration::from_secs(2));
    let rb = b.shutdown(Duration::from_secs(2));
    assert_eq!((ra.totals.sent, ra.totals.delivered), (1, 1));
    assert_eq!(rb.totals.received, 1);
    assert_eq!(rb.engines["handle"].received, 1);
}

/// Forwards each message to the `app` engine of the node whose index the
/// message's key names (key / 1_000_000), as itself; counts failures.
struct Forward {
    peers: Arc<RwLock<Vec<NodeId>>>,
    failures: Arc<AtomicU64>,
}

impl Engine for Forward {
    fn on_message(&mut self, ctx: &ShardCtx, _from: NodeId, m: EngineMsg) {
        let dest = self.peers.read().unwrap()[(key(&m.msg) / 1_000_000) as usize];
        if ctx.send(dest, app(), m.msg, SendOptions::default().notify()).is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_outcome(&mut self, _ctx: &ShardCtx, _id: MsgId, outcome: Outcome, _r: Option<Box<EngineMsg>>) {
        if outcome != Outcome::Delivered {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn three_nodes_all_pairs_with_cross_shard_paths() {
    // Owner shards (of 2): A on 0, B and C on 1. Only shard 0 accepts, so
    // links from B or C are handed to shard 1 on arrival; a Forward engine
    // on B relaying A's messages to C runs on shard 0 and sends through
    // shard 1 (and the same on C for B).
    let peers = Arc::new(RwLock::new(Vec::new()));
    let failures = Arc::new(AtomicU64::new(0));
    let ids = [identity_on(0), identity_on(1), identity_on(1)];
    let nodes: Vec<NodeHandle> = ids
        .iter()
        .map(|id| {
            let (p, f) = (peers.clone(), failures.clone());
            builder(2)
                .identity(id.clone())
                .configure(|c| c.listen_shards = ListenShards::Only(vec![0]))
                .engine("fwd", move |_| Forward { peers: p.clone(), failures: f.clone() })
                .start()
                .unwrap()
        })
        .collect();
    *peers.write().unwrap() = nodes.iter().map(|n| n.node_id()).collect();
    for x in &nodes {
        for y in &nodes {
            if x.node_id() != y.node_id() {
                x.add_peer(y.node_id(), y.listen_addr().unwrap(), Permanence::Ephemeral);
            }
        }
    }
    // Dial in a fixed direction first: B→C and C→A land on a non-owner shard.
    for (from, to) in [(1, 2), (2, 0), (0, 1)] {
        nodes[from].send(nodes[to].node_id(), app(), app(), msg(999_999, 1), SendOptions::default()).unwrap();
        assert_eq!(received(&collect(&nodes[to], T, |e| !received(e).is_empty())), vec![999_999]);
    }
    // All pairs, directly and through each third node's Forward engine.
    const N: u64 = 200;
    let mut expect: Vec<Vec<u64>> = vec![Vec::new(); 3];
    let mut sent: Vec<HashSet<MsgId>> = vec![HashSet::new(); 3];
    for (x, nx) in nodes.iter().enumerate() {
        for y in 0..3 {
            if x == y {
                continue;
            }
            let via = 3 - x - y;
            for i in 0..N {
                let direct = y as u64 * 1_000_000 + (x as u64 * 10 + 1) * 1000 + i;
                let id = nx
                    .send(nodes[y].node_id(), app(), app(), msg(direct, 64), SendOptions::default().notify())
                    .unwrap();
                sent[x].insert(id);
                expect[y].push(direct);
                let relayed = y as u64 * 1_000_000 + (x as u64 * 10 + 2) * 1000 + i;
                let fwd = EngineId::named("fwd");
                let id = nx
                    .send(nodes[via].node_id(), app(), fwd, msg(relayed, 64), SendOptions::default().notify())
                    .unwrap();
                sent[x].insert(id);
                expect[y].push(relayed);
            }
        }
    }
    // One pass per node over its events: messages it received and outcomes
    // of what it sent arrive interleaved on the same queue.
    for (y, n) in nodes.iter().enumerate() {
        let want = expect[y].len();
        let ev = collect(n, T, |e| received(e).len() >= want && outcomes(e).len() >= sent[y].len());
        let got = received(&ev);
        let mut got_sorted = got.clone();
        got_sorted.sort_unstable();
        let mut want_sorted = expect[y].clone();
        want_sorted.sort_unstable();
        assert_eq!(got_sorted, want_sorted, "node {y} received each message exactly once");
        // Per (sender, path) the order is the send order.
        for path in [11, 12, 21, 22, 31, 32] {
            let seq: Vec<u64> = got.iter().copied().filter(|k| (k % 1_000_000) / 1000 == path).collect();
            assert!(seq.windows(2).all(|w| w[0] < w[1]), "order on path {path} at node {y}");
        }
        let o = outcomes(&ev);
        assert_eq!(o.len(), sent[y].len(), "node {y}: one outcome per message sent");
        assert!(o.iter().all(|(id, oc)| sent[y].contains(id) && *oc == Outcome::Delivered), "{o:?}");
    }
    assert!(wait_until(T, || failures.load(Ordering::Relaxed) == 0));
    // Both ends crossed shards: sockets were handed to their owner shard,
    // and Forward engines sent through another shard.
    assert!(nodes[0].metric(Metric::cross_shard_batches) > 0, "C's link handed to A's shard 1... or relays");
    for n in &nodes[1..] {
        assert!(n.metric(Metric::cross_shard_batches) > 0, "relays and handovers cross shards");
    }
    for n in &nodes {
        n.shutdown(Duration::from_secs(2));
    }
}

fn permanent_link_through_resets_delivers_exactly_once_in_order() {
    let b = node(2);
    let a = node(2);
    let proxy = FaultProxy::start(b.listen_addr().unwrap(), 4_000, 40_000);
    a.add_peer(b.node_id(), proxy.addr, Permanence::Permanent);
    const N: u64 = 3000;
    let mut ids = HashSet::new();
    for i in 0..N {
        let opts = SendOptions::expiring_in(Duration::from_secs(60)).notify();
        ids.insert(a.send(b.node_id(), app(), app(), msg(i, 100), opts).unwrap());
    }
    let got = received(&collect(&b, Duration::from_secs(60), |e| received(e).len() >= N as usize));
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "every message exactly once, in order");
    let out = outcomes(&collect(&a, Duration::from_secs(60), |e| outcomes(e).len() >= N as usize));
    assert_eq!(out.len(), N as usize);
    assert!(out.iter().all(|(id, o)| ids.contains(id) && *o == Outcome::Delivered));
    let cuts = proxy.cuts.load(Ordering::Relaxed);
    assert!(cuts >= 3, "the proxy really cut the link mid-stream ({cuts} cuts)");
    assert!(a.metric(Metric::resends) > 0, "messages in flight at a cut were sent again");

    // An outage longer than the expiry: reported expired, never delivered.
    proxy.set_down(true);
    assert!(wait_until(T, || a.metric(Metric::links_up) == 0), "the outage took the link down");
    let mut short = HashSet::new();
    for i in 0..50 {
        let opts = SendOptions::expiring_in(Duration::from_millis(300)).notify();
        short.insert(a.send(b.node_id(), app(), app(), msg(100_000 + i, 10), opts).unwrap());
    }
    let out = outcomes(&collect(&a, T, |e| outcomes(e).len() >= 50));
    assert_eq!(out.len(), 50);
    assert!(out.iter().all(|(id, o)| short.contains(id) && *o == Outcome::Expired), "{out:?}");
    proxy.set_down(false);
    let id = a.send(b.node_id(), app(), app(), msg(200_000, 10), SendOptions::default().notify()).unwrap();
    let got = received(&collect(&b, T, |e| received(e).contains(&200_000)));
    assert_eq!(got, vec![200_000], "the expired messages never arrive");
    assert!(outcomes(&collect(&a, T, |e| !outcomes(e).is_empty())).contains(&(id, Outcome::Delivered)));
    a.shutdown(Duration::from_secs(2));
    b.shutdown(Duration::from_secs(2));
}

fn permanent_link_comes_back_after_the_peer_restarts() {
    let b_id = Identity::generate();
    let b = builder(2).identity(b_id.clone()).start().unwrap();
    let addr = b.listen_addr().unwrap();
    let a = node(2);
    a.add_peer(b.node_id(), addr, Permanence::Permanent);
    assert!(
        collect(&a, T, |e| e.iter().any(|x| matches!(x, NodeEvent::LinkUp(_))))
            .iter()
            .any(|x| matches!(x, NodeEvent::LinkUp(_)))
    );
    b.shutdown(Duration::from_secs(1));
    assert!(
        collect(&a, T, |e| e.iter().any(|x| matches!(x, NodeEvent::LinkDown(_))))
            .iter()
            .any(|x| matches!(x, NodeEvent::LinkDown(_)))
    );
    // Sent while the peer is down: queued, delivered once it is back.
    let id = a.send(b_id.node_id(), app(), app(), msg(42, 10), SendOptions::default().notify()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let b2 = builder(2).identity(b_id).listen(addr).start().unwrap();
    assert_eq!(received(&collect(&b2, T, |e| !received(e).is_empty())), vec![42]);
    assert!(outcomes(&collect(&a, T, |e| !outcomes(e).is_empty())).contains(&(id, Outcome::Delivered)));
    a.shutdown(Duration::from_secs(1));
    b2.shutdown(Duration::from_secs(1));
}

fn ephemeral_links_close_when_idle_and_are_not_reestablished() {
    let b = node(1);
    let a = builder(1).configure(|c| c.proxy.idle_timeout_ms = 300).start().unwrap();
    a.add_peer(b.node_id(), b.listen_addr().unwrap(), Permanence::Ephemeral);
    a.send(b.node_id(), app(), app(), msg(1, 1), SendOptions::default()).unwrap();
    let ev = collect(&a, T, |e| e.iter().any(|x| matches!(x, NodeEvent::LinkDown(_))));
    assert!(ev.iter().any(|x| matches!(x, NodeEvent::LinkUp(_))));
    assert!(ev.iter().any(|x| matches!(x, NodeEvent::LinkDown(_))), "idle ephemeral link closed");
    let dials = a.metric(Metric::handshakes_ok);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(a.metric(Metric::handshakes_ok), dials, "not re-established by itself");
    assert_eq!(a.metric(Metric::links_up), 0);

    // Lost (not idle): still not re-established.
    let b2 = node(1);
    let proxy = FaultProxy::start(b2.listen_addr().unwrap(), 1_000_000, 1_000_000);
    a.add_peer(b2.node_id(), proxy.addr, Permanence::Ephemeral);
    a.send(b2.node_id(), app(), app(), msg(2, 1), SendOptions::default()).unwrap();
    assert_eq!(received(&collect(&b2, T, |e| !received(e).is_empty())), vec![2]);
    let before = a.metric(Metric::handshakes_ok);
    drop(proxy); // connections reset
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(a.metric(Metric::handshakes_ok), before, "an ephemeral link is not redialed after loss");
    for n in [a, b, b2] {
        n.shutdown(Duration::from_secs(1));
    }
}

fn set_permanence_at_run_time() {
    let b = node(1);
    let a = node(1);
    a.add_peer(b.node_id(), b.listen_addr().unwrap(), Permanence::Ephemeral);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(a.metric(Metric::links_up), 0, "ephemeral: no link until needed");
    a.set_permanence(b.node_id(), Permanence::Permanent);
    assert!(wait_until(T, || a.metric(Metric::links_up) == 1), "permanent: connects at once");
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

/// The first dial failure `a` reports for `to`.
fn first_dial_error(a: &NodeHandle, to: NodeId) -> Option<shardwire::node::DialError> {
    // Waits for `to`'s own failure: another peer's redials keep failing too.
    let is_to = |x: &NodeEvent| matches!(x, NodeEvent::DialFailed { node, .. } if *node == to);
    collect(a, T, |e| e.iter().any(is_to)).into_iter().find_map(|x| match x {
        NodeEvent::DialFailed { node, error } if node == to => Some(error),
        _ => None,
    })
}

fn dial_failures_say_what_the_socket_said() {
    use shardwire::node::DialError;
    let a = node(1);
    // Nothing listening: the OS's own reason.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let nobody = Identity::generate().node_id();
    a.add_peer(nobody, closed, Permanence::Permanent);
    assert_eq!(first_dial_error(&a, nobody), Some(DialError::Io(std::io::ErrorKind::ConnectionRefused)));
    // A listener that closes every connection at once: said as such.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let closer = std::thread::spawn(move || {
        if let Ok((s, _)) = l.accept() {
            drop(s);
        }
    });
    let mute = Identity::generate().node_id();
    a.add_peer(mute, addr, Permanence::Permanent);
    let e = first_dial_error(&a, mute);
    // A close that beats the request's write may surface as a reset.
    assert!(matches!(e, Some(DialError::Closed | DialError::Io(std::io::ErrorKind::ConnectionReset))), "{e:?}");
    // Unblocks the accept if no dial ever reached it (the join is bounded).
    let _ = std::net::TcpStream::connect(addr);
    closer.join().unwrap();
    a.shutdown(Duration::from_secs(1));
}

fn first_outcome(n: &NodeHandle) -> Outcome {
    outcomes(&collect(n, T, |e| !outcomes(e).is_empty())).first().map(|x| x.1).expect("an outcome")
}

fn refusals_end_to_end() {
    // Denied by an allow-list.
    let other = Identity::generate();
    let b = builder(2).allow(other.node_id()).start().unwrap();
    let a = node(2);
    a.add_peer(b.node_id(), b.listen_addr().unwrap(), Permanence::Ephemeral);
    a.send(b.node_id(), app(), app(), msg(1, 1), SendOptions::default()).unwrap();
    assert_eq!(first_outcome(&a), Outcome::Undeliverable(Refusal::Denied));
    assert!(b.metric(Metric::handshakes_refused_denied) >= 1);
    // Do not hammer: the next send is refused at once.
    a.send(b.node_id(), app(), app(), msg(2, 1), SendOptions::default()).unwrap();
    assert_eq!(first_outcome(&a), Outcome::NotQueued(NotQueued::Refused(Refusal::Denied)));

    // Incompatible versions.
    let c = builder(1).configure(|c| c.handshake.versions = VersionRange { min: 2, max: 3 }).start().unwrap();
    a.add_peer(c.node_id(), c.listen_addr().unwrap(), Permanence::Ephemeral);
    a.send(c.node_id(), app(), app(), msg(3, 1), SendOptions::default()).unwrap();
    assert_eq!(first_outcome(&a), Outcome::Undeliverable(Refusal::Incompatible));
    assert!(c.metric(Metric::handshakes_refused_incompatible) >= 1);

    // Over capacity: retried with backoff until the message expires.
    let d = builder(1).configure(|c| c.max_links = 0).start().unwrap();
    a.add_peer(d.node_id(), d.listen_addr().unwrap(), Permanence::Ephemeral);
    a.send(d.node_id(), app(), app(), msg(4, 1), SendOptions::expiring_in(Duration::from_millis(600))).unwrap();
    assert_eq!(first_outcome(&a), Outcome::Expired);
    assert!(d.metric(Metric::handshakes_refused_over_capacity) >= 2, "retried, refused each time before any DH");
    for n in [a, b, c, d] {
        n.shutdown(Duration::from_secs(1));
    }
}

fn unknown_engine_is_refused_back_to_the_sender() {
    let b = node(1);
    let a = node(1);
    a.add_peer(b.node_id(), b.listen_addr().unwrap(), Permanence::Ephemeral);
    a.send(b.node_id(), app(), EngineId::named("nobody"), msg(1, 1), SendOptions::default()).unwrap();
    assert_eq!(first_outcome(&a), Outcome::Refused(shardwire::proxy::RefuseReason::UnknownEngine));
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

fn a_thousand_concurrent_links_to_one_node() {
    let server = node(2);
    let addr = server.listen_addr().unwrap();
    let mut clients = Vec::new();
    for _ in 0..1000 {
        clients.push(RawClient::connect(addr, server.node_id()).expect("handshake"));
    }
    assert!(wait_until(T, || server.metric(Metric::links_up) == 1000), "links up: {}", server.metric(Metric::links_up));
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(app(), msg(i as u64, 16)).unwrap();
    }
    let mut got = received(&collect(&server, T, |e| received(e).len() >= 1000));
    got.sort_unstable();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    drop(clients);
    assert!(wait_until(T, || server.metric(Metric::links_up) == 0));
    server.shutdown(Duration::from_secs(1));
}

fn metrics_and_graceful_shutdown_report() {
    let b = node(2);
    let a = node(2);
    a.add_peer(b.node_id(), b.listen_addr().unwrap(), Permanence::Ephemeral);
    for i in 0..100 {
        a.send(b.node_id(), app(), app(), msg(i, 32), SendOptions::default()).unwrap();
    }
    assert_eq!(received(&collect(&b, T, |e| received(e).len() >= 100)).len(), 100);
    let text = a.prometheus();
    assert!(
        text.contains("# TYPE shardwire_messages_out_total counter")
            || text.contains("# TYPE shardwire_messages_out counter")
    );
    assert!(wait_until(T, || a.metric(Metric::delivered) == 100));
    assert_eq!(a.metric(Metric::messages_sent), 100);
    assert!(a.metric(Metric::bytes_out) > 100 * 32);
    assert_eq!(b.metric(Metric::messages_in), 100);

    // A peer that never comes back: queued messages are reported at shutdown.
    let gone = Identity::generate().node_id();
    a.add_peer(gone, "127.0.0.1:9".parse().unwrap(), Permanence::Permanent);
    let mut ids = HashSet::new();
    for i in 0..5 {
        ids.insert(a.send(gone, app(), app(), msg(i, 1), SendOptions::default()).unwrap());
    }
    std::thread::sleep(Duration::from_millis(100));
    let report = a.shutdown(Duration::from_millis(300));
    let undelivered: HashMap<MsgId, Outcome> =
        report.undelivered.iter().filter(|(n, _, _)| *n == gone).map(|(_, id, o)| (*id, *o)).collect();
    assert_eq!(undelivered.keys().copied().collect::<HashSet<_>>(), ids);
    assert!(undelivered.values().all(|o| *o == Outcome::Expired), "never sent: expired at shutdown");
    assert_eq!((report.totals.sent, report.totals.delivered), (105, 100));
    assert!(a.send(b.node_id(), app(), app(), msg(1, 1), SendOptions::default()).is_err(), "no sends after shutdown");
    b.shutdown(Duration::from_secs(1));
}

fn simultaneous_dials_settle_on_one_link() {
    for round in 0..3 {
        let (ia, ib) = (Identity::generate(), Identity::generate());
        let a = builder(2).identity(ia.clone()).start().unwrap();
        let b = builder(2).identity(ib.clone()).start().unwrap();
        // Both permanent towards each other at the same moment: both dial.
        a.add_peer(ib.node_id(), b.listen_addr().unwrap(), Permanence::Permanent);
        b.add_peer(ia.node_id(), a.listen_addr().unwrap(), Permanence::Permanent);
        assert!(wait_until(T, || a.metric(Metric::links_up) == 1 && b.metric(Metric::links_up) == 1), "round {round}");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!((a.metric(Metric::links_up), b.metric(Metric::links_up)), (1, 1), "exactly one link survives");
        let id = a.send(ib.node_id(), app(), app(), msg(1, 1), SendOptions::default().notify()).unwrap();
        b.send(ia.node_id(), app(), app(), msg(2, 1), SendOptions::default()).unwrap();
        assert_eq!(received(&collect(&b, T, |e| !received(e).is_empty())), vec![1]);
        let ev = collect(&a, T, |e| !received(e).is_empty() && !outcomes(e).is_empty());
        assert_eq!(received(&ev), vec![2]);
        assert_eq!(outcomes(&ev), vec![(id, Outcome::Delivered)]);
        a.shutdown(Duration::from_secs(1));
        b.shutdown(Duration::from_secs(1));
    }
}

fn adverts_are_exchanged_when_one_side_is_behind() {
    let a = node(1);
    let b = node(2);
    a.add_peer(b.node_id(), b.listen_addr().unwrap(), Permanence::Ephemeral);
    a.send(b.node_id(), app(), app(), msg(1, 1), SendOptions::default()).unwrap();
    let ea = collect(&a, T, |e| e.iter().any(|x| matches!(x, NodeEvent::Advert(_))));
    let eb = collect(&b, T, |e| e.iter().any(|x| matches!(x, NodeEvent::Advert(_))));
    let advert_of = |ev: &[NodeEvent]| {
        ev.iter().find_map(|x| match x {
            NodeEvent::Advert(ad) => Some(ad.clone()),
            _ => None,
        })
    };
    let of_b = advert_of(&ea).expect("A learns B's advert");
    assert_eq!(of_b.id, b.node_id());
    assert_eq!(of_b.tcp_addr(), b.listen_addr());
    let of_a = advert_of(&eb).expect("B learns A's advert");
    assert_eq!(of_a.id, a.node_id());
    assert_eq!(a.adverts().get(&b.node_id()), Some(&of_b), "kept in A's address book");
    assert_eq!(b.adverts().get(&a.node_id()), Some(&of_a));
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

on_both_io_paths!(
    two_nodes_exchange_a_message,
    three_nodes_all_pairs_with_cross_shard_paths,
    permanent_link_through_resets_delivers_exactly_once_in_order,
    permanent_link_comes_back_after_the_peer_restarts,
    ephemeral_links_close_when_idle_and_are_not_reestablished,
    set_permanence_at_run_time,
    refusals_end_to_end,
    unknown_engine_is_refused_back_to_the_sender,
    a_thousand_concurrent_links_to_one_node,
    metrics_and_graceful_shutdown_report,
    simultaneous_dials_settle_on_one_link,
    adverts_are_exchanged_when_one_side_is_behind,
    dial_failures_say_what_the_socket_said,
);

/// A shard count past the machine's limit is refused before any shard
/// thread starts: 100,000 shards would exhaust memory.
#[test]
fn too_many_shards_is_a_typed_error() {
    use shardwire::node::{Node, Shards, StartError};
    let max = Shards::max();
    assert!(max >= 16);
    let r = Node::builder().identity(Identity::generate()).shards(Shards::Count(100_000)).start();
    match r {
        Err(StartError::TooManyShards { asked, max: m }) => assert_eq!((asked, m), (100_000, max)),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a node with 100,000 shards started"),
    }
}
