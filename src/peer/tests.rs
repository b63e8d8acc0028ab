//! The pure peer parts: store, assembler, limits.

use bytes::Bytes;

use super::*;
use crate::wire::{Cell, Message, MessageType, Value, ValueId, WireConfig, encode_partial};

const A: NodeId = NodeId([1; 32]);

/// A belief-like value: a vector of `n` blobs of 300 bytes (each a branch
/// cell), nested one level deeper for the last half (for `n` >= 10 the
/// nested vector is itself a branch cell).
fn value(n: usize, salt: u8) -> Value {
    let blob = |i: usize| Value::blob(vec![salt ^ i as u8; 300]);
    let inner: Vec<Value> = (n / 2..n).map(blob).collect();
    let mut outer: Vec<Value> = (0..n / 2).map(blob).collect();
    outer.push(Value::Vector(inner));
    Value::Vector(outer)
}

#[test]
fn store_evicts_least_recently_used_by_bytes() {
    let cell = |i: u8| Bytes::from(vec![i; 200]);
    let id = |i: u8| ValueId([i; 32]);
    let per = 200 + store::ENTRY_OVERHEAD;
    let mut s = CellStore::new(3 * per);
    for i in 0..3 {
        s.insert(id(i), cell(i));
    }
    assert_eq!((s.len(), s.bytes()), (3, 3 * per));
    assert!(s.get(&id(0)).is_some(), "touch 0: 1 is now the oldest");
    s.insert(id(3), cell(3));
    assert!(!s.contains(&id(1)) && s.contains(&id(0)) && s.contains(&id(3)));
    s.insert(id(9), Bytes::from(vec![0; 4 * per]));
    assert!(!s.contains(&id(9)), "a cell larger than the store is not kept");
    assert_eq!(s.len(), 3);
}

#[test]
fn partial_message_completes_through_two_rounds_of_missing_data() {
    let cfg = WireConfig::default();
    let v = value(12, 7);
    // Leave out everything: the receiver must fetch the outer branches,
    // then (inside the nested vector) the inner ones.
    let (partial, cells) = encode_partial(MessageType::Belief, &v, &cfg, |_| true).unwrap();
    assert!(partial.payload().is_partial());
    let whole = crate::wire::encode_message(MessageType::Belief, &v, &cfg).unwrap();

    let mut store = CellStore::new(1 << 20);
    let mut asm = Assembler::new(cfg, 8, 1 << 20, 1000);
    let sender = EngineId::named("$peer");
    asm.add(0, A, sender, partial, &mut store);
    let mut rounds = 0;
    let mut delivered = None;
    // Play the sender: answer each MISSING_DATA from `cells`.
    for _ in 0..10 {
        let out: Vec<Assembled> = asm.drain().collect();
        if out.is_empty() {
            break;
        }
        for o in out {
            match o {
                Assembled::Request { to, id, ids, .. } => {
                    assert_eq!(to, A);
                    assert!(ids.len() <= assemble::REQUEST_CHUNK);
                    rounds += 1;
                    let answer: Vec<Option<Cell>> = ids
                        .iter()
                        .map(|want| {
                            cells.iter().find(|(i, _)| i == want).map(|(_, b)| Cell::decode(b.clone(), &cfg).unwrap())
                        })
                        .collect();
                    assert!(asm.on_data(1, A, id, answer, &mut store));
                }
                Assembled::Ready { msg, .. } => delivered = Some(msg),
                Assembled::Failed { why, .. } => panic!("{why}"),
            }
        }
    }
    let msg = delivered.expect("completed");
    assert!(!msg.payload().is_partial());
    assert_eq!(rounds, 2, "outer cells, then the cells inside the nested vector");
    assert_eq!(msg.payload().top_id(cfg.hash), Message::decode(whole, &cfg).unwrap().payload().top_id(cfg.hash));
    assert_eq!(asm.waiting(), 0);
    // The same value again completes from the store at once, without requests.
    let (partial, _) = encode_partial(MessageType::Belief, &v, &cfg, |_| true).unwrap();
    asm.add(2, A, sender, partial, &mut store);
    let out: Vec<Assembled> = asm.drain().collect();
    assert!(matches!(&out[..], [Assembled::Ready { .. }]), "{out:?}");
}

#[test]
fn absent_cells_timeouts_and_limits_drop_partial_messages() {
    let cfg = WireConfig::default();
    let sender = EngineId::named("$peer");
    let mut store = CellStore::new(1 << 20);
    let mut asm = Assembler::new(cfg, 1, 1 << 20, 1000);
    let (p1, _) = encode_partial(MessageType::Belief, &value(4, 1), &cfg, |_| true).unwrap();
    asm.add(0, A, sender, p1.clone(), &mut store);
    let Some(Assembled::Request { id, ids, .. }) = asm.drain().next() else { panic!() };
    // Too many waiting: the next one is refused at once.
    let (p2, _) = encode_partial(MessageType::Belief, &value(4, 2), &cfg, |_| true).unwrap();
    asm.add(0, A, sender, p2, &mut store);
    assert!(matches!(asm.drain().next(), Some(Assembled::Failed { why: Incomplete::Busy, ty: 9, .. })));
    // The sender lacks one cell.
    let none: Vec<Option<Cell>> = ids.iter().map(|_| None).collect();
    assert!(asm.on_data(1, A, id, none, &mut store));
    assert!(matches!(asm.drain().next(), Some(Assembled::Failed { why: Incomplete::Absent, .. })));
    // An answer to nothing we asked, or from another node, is not ours.
    assert!(!asm.on_data(1, A, id, Vec::new(), &mut store));
    // Nobody answers: dropped at the deadline.
    asm.add(10, A, sender, p1, &mut store);
    asm.drain().for_each(drop);
    assert_eq!(asm.poll_timeout(), Some(1010));
    asm.on_timeout(1009);
    assert_eq!(asm.drain().count(), 0);
    asm.on_timeout(1010);
    assert!(matches!(asm.drain().next(), Some(Assembled::Failed { why: Incomplete::Timeout, .. })));
    // A cell whose hash does not match what was asked counts as absent.
    let mut asm = Assembler::new(cfg, 4, 1 << 20, 1000);
    let (p3, cells) = encode_partial(MessageType::Belief, &value(2, 3), &cfg, |_| true).unwrap();
    asm.add(0, A, sender, p3, &mut store);
    let Some(Assembled::Request { id, ids, .. }) = asm.drain().next() else { panic!() };
    let wrong: Vec<Option<Cell>> = ids
        .iter()
        .map(|want| cells.iter().find(|(i, _)| i != want).map(|(_, b)| Cell::decode(b.clone(), &cfg).unwrap()))
        .collect();
    asm.on_data(1, A, id, wrong, &mut store);
    assert!(matches!(asm.drain().next(), Some(Assembled::Failed { why: Incomplete::Absent, .. })));
}

#[test]
fn whole_messages_pass_straight_through() {
    let cfg = WireConfig::default();
    let mut store = CellStore::new(1 << 20);
    let mut asm = Assembler::new(cfg, 4, 1 << 20, 1000);
    let (m, _) = encode_partial(MessageType::Belief, &value(4, 1), &cfg, |_| false).unwrap();
    assert!(!m.payload().is_partial());
    asm.add(0, A, PEER_ENGINE, m, &mut store);
    assert!(matches!(asm.drain().next(), Some(Assembled::Ready { .. })));
}

#[test]
fn encode_partial_leaves_out_what_hangs_below_an_omitted_cell() {
    let cfg = WireConfig::default();
    let v = value(12, 9);
    let (full, cells) = encode_partial(MessageType::Belief, &v, &cfg, |_| false).unwrap();
    assert_eq!(full.payload().branch_count(), cells.len());
    // Omit only the nested vector's cell: its children go with it.
    let top = full.payload().top();
    let nested = top.refs().into_iter().find(|id| full.payload().branch(id).is_some_and(|c| c.tag() == 0x80));
    let nested = nested.expect("the nested vector is a branch");
    let (p, _) = encode_partial(MessageType::Belief, &v, &cfg, |id| *id == nested).unwrap();
    assert_eq!(p.payload().missing(), &[nested]);
    assert_eq!(p.payload().branch_count(), 6, "the six outer blobs");
}

#[test]
fn recent_ids_forget_the_oldest() {
    let mut r = RecentIds::new(2);
    let id = |i: u8| ValueId([i; 32]);
    assert!(r.insert(id(1)) && r.insert(id(2)));
    assert!(!r.insert(id(1)));
    assert!(r.insert(id(3)));
    assert!(!r.contains(&id(1)) && r.contains(&id(2)) && r.contains(&id(3)));
    assert_eq!(r.len(), 2);
}

#[test]
fn token_bucket_keeps_a_reserve_for_trusted_peers() {
    let mut b = TokenBucket::new(10, 10, 4);
    let untrusted = (0..20).filter(|_| b.admit(0, false)).count();
    assert_eq!(untrusted, 6, "untrusted stop at the reserve");
    let trusted = (0..20).filter(|_| b.admit(0, true)).count();
    assert_eq!(trusted, 4, "the reserve serves trusted peers");
    assert!(!b.admit(0, true));
    assert!(b.admit(100, true), "refills at 10/s: one token after 100 ms");
    assert!(!b.admit(100, true));
}
