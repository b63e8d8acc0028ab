//! The RPC tables and codec without sockets: a client table and a server
//! table exchange messages directly, with virtual time.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::msg::{self, ControlKind, RejectReason, RpcMsg, RpcRequest, RpcResponse};
use super::*;
use crate::handshake::NodeId;
use crate::proxy::EngineId;
use crate::wire::{Message, MessageType, Value, WireConfig, encode_message};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Item(Bytes),
    Done(Result<Bytes, RpcError>),
}

/// Records what a call received; `open` false plays a consumer that left.
#[derive(Clone)]
struct Rec {
    log: Rc<RefCell<Vec<Ev>>>,
    open: bool,
}

impl Rec {
    fn new() -> Rec {
        Rec { log: Rc::default(), open: true }
    }
    fn events(&self) -> Vec<Ev> {
        self.log.borrow().clone()
    }
}

impl Completion for Rec {
    fn item(&mut self, payload: Bytes) -> bool {
        self.log.borrow_mut().push(Ev::Item(payload));
        self.open
    }
    fn finish(self, result: Result<Bytes, RpcError>) {
        self.log.borrow_mut().push(Ev::Done(result));
    }
}

const A: NodeId = NodeId([1; 32]);
const B: NodeId = NodeId([2; 32]);

fn client(cfg: RpcConfig) -> ClientTable<Rec> {
    let budget = Arc::new(Budget::new(cfg.max_client_calls));
    ClientTable::new(cfg, WireConfig::default(), budget)
}

fn server(cfg: RpcConfig) -> ServerTable {
    let s = Arc::new(Budget::new(cfg.max_sessions));
    let c = Arc::new(Budget::new(cfg.max_calls));
    ServerTable::new(cfg, WireConfig::default(), s, c)
}

/// Everything the client queued, decoded (and the routing tags).
fn sent(c: &mut ClientTable<Rec>) -> Vec<(Tag, RpcMsg)> {
    std::iter::from_fn(|| c.poll_outbound()).map(|o| (o.tag, RpcMsg::decode(&o.msg).unwrap())).collect()
}

fn served(s: &mut ServerTable) -> Vec<(EngineId, RpcMsg)> {
    s.drain_outbound().map(|o| (o.target, RpcMsg::decode(&o.msg).unwrap())).collect::<Vec<_>>()
}

/// Opens a session for "svc" through a first call (answered OK).
fn open_session(c: &mut ClientTable<Rec>, s: &mut ServerTable, now: u64) -> u32 {
    let rec = Rec::new();
    c.call(now, B, "svc", 1, Bytes::from_static(b"hi"), now + 1000, None, rec.clone()).unwrap();
    let out = sent(c);
    let RpcMsg::Session { session, service, versions } = &out[0].1 else { panic!("{out:?}") };
    assert_eq!((service.as_str(), versions.as_slice()), ("svc", &[1u32][..]));
    s.on_session(now, A, RPC_ENGINE, *session, service, versions, true).unwrap();
    for (_, m) in served(s) {
        c.on_message(now, B, m);
    }
    let out = sent(c);
    let RpcMsg::Request(r) = &out[0].1 else { panic!("{out:?}") };
    assert_eq!(r.deadline_ms, 1000);
    assert!(matches!(s.on_request(now, A, r), RequestDecision::Start { .. }));
    let resp = RpcResponse {
        session: r.session,
        request_id: r.request_id,
        status: 0,
        flags: msg::FLAG_FIN,
        payload: r.payload.clone(),
    };
    assert!(s.finish(A, r.session, r.request_id));
    c.on_message(now, B, RpcMsg::Response(resp));
    assert_eq!(rec.events(), vec![Ev::Done(Ok(Bytes::from_static(b"hi")))]);
    *session
}

#[test]
fn session_then_many_calls_answered_out_of_order() {
    let (mut c, mut s) = (client(RpcConfig::default()), server(RpcConfig::default()));
    let sid = open_session(&mut c, &mut s, 0);
    let recs: Vec<Rec> = (0..100).map(|_| Rec::new()).collect();
    for (i, r) in recs.iter().enumerate() {
        c.call(1, B, "svc", 7, Bytes::from(vec![i as u8]), 5000, None, r.clone()).unwrap();
    }
    let reqs: Vec<RpcRequest> = sent(&mut c)
        .into_iter()
        .map(|(_, m)| match m {
            RpcMsg::Request(r) => r,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(reqs.len(), 100, "the open session is reused: no new proposal");
    assert!(reqs.iter().all(|r| r.session == sid));
    for r in reqs.iter().rev() {
        let resp = RpcResponse {
            session: sid,
            request_id: r.request_id,
            status: 0,
            flags: msg::FLAG_FIN,
            payload: r.payload.clone(),
        };
        c.on_message(2, B, RpcMsg::Response(resp));
    }
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.events(), vec![Ev::Done(Ok(Bytes::from(vec![i as u8])))]);
    }
    assert_eq!(c.stats().in_flight, 0);
}

#[test]
fn each_rejection_reason_fails_the_waiting_calls() {
    for reason in [
        RejectReason::UnsupportedVersion,
        RejectReason::NoServerSessionsAvailable,
        RejectReason::NoClientSessionsAvailable,
        RejectReason::ProtocolNotSupported,
        RejectReason::Unknown(99),
    ] {
        let mut c = client(RpcConfig::default());
        let (r1, r2) = (Rec::new(), Rec::new());
        c.call(0, B, "svc", 1, Bytes::new(), 1000, None, r1.clone()).unwrap();
        c.call(0, B, "svc", 1, Bytes::new(), 1000, None, r2.clone()).unwrap();
        let out = sent(&mut c);
        assert_eq!(out.len(), 1, "one proposal for both calls");
        c.on_message(1, B, RpcMsg::SessionReply { session: 1, result: Err(reason) });
        for r in [&r1, &r2] {
            assert_eq!(r.events(), vec![Ev::Done(Err(RpcError::Rejected(reason)))]);
        }
        assert_eq!(c.stats().sessions, 0, "a rejected session is forgotten: the next call proposes again");
        assert_eq!(c.stats().in_flight, 0);
    }
}

#[test]
fn server_decides_sessions_by_service_version_and_limits() {
    let cfg = RpcConfig { versions: vec![1, 2, 3], max_sessions_per_peer: 2, max_sessions: 3, ..Default::default() };
    let mut s = server(cfg);
    let e = RPC_ENGINE;
    assert_eq!(s.on_session(0, A, e, 1, "svc", &[2, 9], true), Ok(2));
    assert_eq!(s.on_session(0, A, e, 2, "svc", &[1, 3], true), Ok(3), "highest common version");
    assert_eq!(s.on_session(0, A, e, 2, "svc", &[1, 3], true), Ok(3), "a repeated proposal gets the same answer");
    assert_eq!(s.on_session(0, A, e, 3, "svc", &[1], true), Err(RejectReason::NoClientSessionsAvailable));
    assert_eq!(s.on_session(0, B, e, 1, "svc", &[7], true), Err(RejectReason::UnsupportedVersion));
    assert_eq!(s.on_session(0, B, e, 1, "nope", &[1], false), Err(RejectReason::ProtocolNotSupported));
    assert_eq!(s.on_session(0, B, e, 1, "svc", &[1], true), Ok(1));
    let c = NodeId([3; 32]);
    assert_eq!(s.on_session(0, c, e, 1, "svc", &[1], true), Err(RejectReason::NoServerSessionsAvailable));
    // Closing one frees a node-wide slot.
    assert!(s.on_close(A, 1).is_empty());
    assert_eq!(s.on_session(0, c, e, 1, "svc", &[1], true), Ok(1));
    assert_eq!(s.stats().sessions_rejected, 4);
    assert_eq!(s.stats().sessions, 3);
}

#[test]
fn server_requests_start_or_get_an_immediate_status() {
    let cfg = RpcConfig { max_calls_per_peer: 2, max_calls: 3, ..Default::default() };
    let mut s = server(cfg);
    s.on_session(0, A, RPC_ENGINE, 1, "svc", &[1], true).unwrap();
    s.on_session(0, B, RPC_ENGINE, 1, "svc", &[1], true).unwrap();
    served(&mut s);
    let req = |sid, rid, deadline_ms| RpcRequest {
        session: sid,
        request_id: rid,
        method: 1,
        flags: 0,
        deadline_ms,
        credit: 0,
        payload: Bytes::new(),
    };
    assert!(matches!(s.on_request(10, A, &req(1, 1, 50)), RequestDecision::Start { deadline_ms: 60, .. }));
    assert_eq!(s.on_request(10, A, &req(1, 1, 50)), RequestDecision::Ignore, "duplicate of a running call");
    assert_eq!(s.on_request(10, A, &req(1, 2, 0)), RequestDecision::Reply(Status::DEADLINE_EXCEEDED));
    assert_eq!(s.on_request(10, A, &req(9, 3, 50)), RequestDecision::Reply(Status::NO_SESSION));
    assert!(matches!(s.on_request(10, A, &req(1, 4, 50)), RequestDecision::Start { .. }));
    assert_eq!(s.on_request(10, A, &req(1, 5, 50)), RequestDecision::Reply(Status::BUSY), "per-peer limit");
    assert!(matches!(s.on_request(10, B, &req(1, 1, 50)), RequestDecision::Start { .. }), "another peer served");
    assert_eq!(s.on_request(10, B, &req(1, 2, 50)), RequestDecision::Reply(Status::BUSY), "node-wide limit");
    let answers = served(&mut s);
    let statuses: Vec<u32> = answers
        .iter()
        .map(|(_, m)| match m {
            RpcMsg::Response(r) => {
                assert_eq!(r.flags, msg::FLAG_FIN);
                r.status
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(statuses, vec![3, 7, 4, 4]);
    assert!(s.finish(A, 1, 1));
    assert!(!s.finish(A, 1, 1), "finished once");
    assert!(matches!(s.on_request(11, B, &req(1, 2, 50)), RequestDecision::Start { .. }), "slot freed");
    assert_eq!(s.drop_peer(A), vec![(1, 4)]);
    assert_eq!(s.stats().running, 2);
}

#[test]
fn server_answers_go_to_the_engine_that_opened_the_session() {
    let mut s = server(RpcConfig::default());
    let app = EngineId::named("app");
    s.on_session(0, A, app, 4, "svc", &[1], true).unwrap();
    let out = served(&mut s);
    assert_eq!(out, vec![(app, RpcMsg::SessionReply { session: 4, result: Ok(1) })]);
    let r = RpcResponse { session: 4, request_id: 1, status: 0, flags: msg::FLAG_FIN, payload: Bytes::new() };
    assert_eq!(s.response(A, r, 100).unwrap().target, app);
}

#[test]
fn idle_sessions_close_on_both_sides() {
    let cfg = RpcConfig { client_idle_ms: 100, server_idle_ms: 500, ..Default::default() };
    let (mut c, mut s) = (client(cfg.clone()), server(cfg));
    let sid = open_session(&mut c, &mut s, 0);
    c.on_timeout(50);
    assert!(sent(&mut c).is_empty());
    c.on_timeout(1500);
    let out = sent(&mut c);
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].1, RpcMsg::Control { session, kind: ControlKind::CloseSession, .. } if session == sid));
    assert_eq!(c.stats().sessions, 0);
    // The server closes sessions nobody closed, and says so.
    let mut s2 = server(RpcConfig { server_idle_ms: 500, ..Default::default() });
    s2.on_session(0, A, RPC_ENGINE, 3, "svc", &[1], true).unwrap();
    served(&mut s2);
    s2.close_idle(400);
    assert!(served(&mut s2).is_empty());
    s2.close_idle(600);
    let out = served(&mut s2);
    assert!(matches!(out[0].1, RpcMsg::Control { session: 3, kind: ControlKind::SessionClosed, .. }));
    assert_eq!(s2.stats().sessions, 0);
}

#[test]
fn forgotten_session_is_reopened_and_the_call_sent_again_once() {
    let (mut c, mut s) = (client(RpcConfig::default()), server(RpcConfig::default()));
    let sid = open_session(&mut c, &mut s, 0);
    let rec = Rec::new();
    c.call(1, B, "svc", 1, Bytes::from_static(b"again"), 5000, None, rec.clone()).unwrap();
    let RpcMsg::Request(r) = sent(&mut c).remove(0).1 else { panic!() };
    let no = |r: &RpcRequest| RpcResponse {
        session: r.session,
        request_id: r.request_id,
        status: Status::NO_SESSION.0,
        flags: msg::FLAG_FIN,
        payload: Bytes::new(),
    };
    c.on_message(2, B, RpcMsg::Response(no(&r)));
    assert!(rec.events().is_empty(), "not failed: retried");
    let out = sent(&mut c);
    let RpcMsg::Session { session: new_sid, .. } = out[0].1 else { panic!("{out:?}") };
    assert_ne!(new_sid, sid);
    c.on_message(3, B, RpcMsg::SessionReply { session: new_sid, result: Ok(1) });
    let RpcMsg::Request(r2) = sent(&mut c).remove(0).1 else { panic!() };
    assert_eq!((r2.session, r2.request_id, &r2.payload[..]), (new_sid, r.request_id, &b"again"[..]));
    // A second NO_SESSION fails the call.
    c.on_message(4, B, RpcMsg::Response(no(&r2)));
    assert!(matches!(&rec.events()[..], [Ev::Done(Err(RpcError::Status { status: Status::NO_SESSION, .. }))]));
}

#[test]
fn client_deadline_fails_the_call_and_cancels_remotely() {
    let (mut c, mut s) = (client(RpcConfig::default()), server(RpcConfig::default()));
    let sid = open_session(&mut c, &mut s, 0);
    let rec = Rec::new();
    c.call(100, B, "svc", 1, Bytes::new(), 300, None, rec.clone()).unwrap();
    let RpcMsg::Request(r) = sent(&mut c).remove(0).1 else { panic!() };
    assert_eq!(r.deadline_ms, 200, "the time left travels");
    assert_eq!(c.poll_timeout(), Some(300));
    c.on_timeout(299);
    assert!(rec.events().is_empty());
    c.on_timeout(300);
    assert_eq!(rec.events(), vec![Ev::Done(Err(RpcError::DeadlineExceeded { reported_by_server: false }))]);
    let out = sent(&mut c);
    assert!(matches!(out[0].1, RpcMsg::Control { session, request_id, kind: ControlKind::Cancel, .. }
        if session == sid && request_id == r.request_id));
    // A late answer is ignored.
    let late =
        RpcResponse { session: sid, request_id: r.request_id, status: 0, flags: msg::FLAG_FIN, payload: Bytes::new() };
    c.on_message(301, B, RpcMsg::Response(late));
    assert_eq!(rec.events().len(), 1);
    assert_eq!(c.stats().in_flight, 0);
    assert_eq!(c.stats().deadline, 1);
}

#[test]
fn undelivered_requests_and_restarts_fail_calls_at_once() {
    use crate::proxy::{Outcome, RefuseReason, Unresolved};
    let (mut c, mut s) = (client(RpcConfig::default()), server(RpcConfig::default()));
    open_session(&mut c, &mut s, 0);
    let recs: Vec<Rec> = (0..3).map(|_| Rec::new()).collect();
    for r in &recs {
        c.call(1, B, "svc", 1, Bytes::new(), 9000, None, r.clone()).unwrap();
    }
    let tags: Vec<Tag> = sent(&mut c).into_iter().map(|(t, _)| t).collect();
    c.on_undelivered(2, B, tags[0], Outcome::Refused(RefuseReason::Busy));
    c.on_undelivered(2, B, tags[1], Outcome::Expired);
    assert_eq!(recs[0].events(), vec![Ev::Done(Err(RpcError::Undelivered(Outcome::Refused(RefuseReason::Busy))))]);
    assert_eq!(recs[1].events(), vec![Ev::Done(Err(RpcError::DeadlineExceeded { reported_by_server: false }))]);
    c.on_peer_restarted(3, B);
    assert_eq!(recs[2].events(), vec![Ev::Done(Err(RpcError::PeerRestarted))]);
    assert_eq!(c.stats().sessions, 0, "sessions with the old process are gone");
    // A session proposal that is not delivered fails the calls waiting on it.
    let rec = Rec::new();
    c.call(4, B, "svc", 1, Bytes::new(), 9000, None, rec.clone()).unwrap();
    let (tag, _) = sent(&mut c).remove(0);
    assert!(matches!(tag, Tag::Session(_)));
    let o = Outcome::Unresolved(Unresolved::AckLost);
    c.on_undelivered(5, B, tag, o);
    assert_eq!(rec.events(), vec![Ev::Done(Err(RpcError::Undelivered(o)))]);
    assert_eq!(c.stats().in_flight, 0);
}

#[test]
fn stream_credit_cancel_and_protocol_violations() {
    let cfg = RpcConfig { stream_window: 4, ..Default::default() };
    let (mut c, mut s) = (client(cfg.clone()), server(cfg));
    let sid = open_session(&mut c, &mut s, 0);
    let rec = Rec::new();
    let rid = c.call(1, B, "svc", 2, Bytes::new(), 9000, Some(4), rec.clone()).unwrap();
    let RpcMsg::Request(r) = sent(&mut c).remove(0).1 else { panic!() };
    assert_eq!((r.flags, r.credit), (msg::FLAG_STREAM, 4));
    let item = |n: u8, fin: bool| {
        RpcMsg::Response(RpcResponse {
            session: sid,
            request_id: rid,
            status: 0,
            flags: if fin { msg::FLAG_FIN } else { 0 },
            payload: Bytes::from(vec![n]),
        })
    };
    for n in 0..4 {
        c.on_message(2, B, item(n, false));
    }
    // Taking one item grants nothing yet; two (half the window) grant two.
    c.consumed(3, B, rid, 1);
    assert!(sent(&mut c).is_empty());
    c.consumed(3, B, rid, 1);
    let out = sent(&mut c);
    assert!(matches!(out[0].1, RpcMsg::Control { kind: ControlKind::Credit, n: 2, .. }));
    c.on_message(4, B, item(4, false));
    c.on_message(4, B, item(5, false));
    // A FIN with a payload is the last item.
    c.on_message(5, B, item(6, true));
    let ev = rec.events();
    assert_eq!(ev.len(), 8);
    assert_eq!(ev[6], Ev::Item(Bytes::from(vec![6])));
    assert_eq!(ev[7], Ev::Done(Ok(Bytes::new())));

    // Beyond the credit: a protocol error, and the server is told to stop.
    let rec = Rec::new();
    let rid = c.call(6, B, "svc", 2, Bytes::new(), 9000, Some(4), rec.clone()).unwrap();
    sent(&mut c);
    for n in 0..5 {
        let m = RpcMsg::Response(RpcResponse {
            session: sid,
            request_id: rid,
            status: 0,
            flags: 0,
            payload: Bytes::from(vec![n]),
        });
        c.on_message(7, B, m);
    }
    assert_eq!(rec.events().last(), Some(&Ev::Done(Err(RpcError::Protocol("stream sent beyond its credit")))));
    assert!(sent(&mut c).iter().any(|(_, m)| matches!(m, RpcMsg::Control { kind: ControlKind::Cancel, .. })));

    // A consumer that left: the next item cancels the call.
    let mut gone = Rec::new();
    gone.open = false;
    let rid = c.call(8, B, "svc", 2, Bytes::new(), 9000, Some(4), gone.clone()).unwrap();
    sent(&mut c);
    let m = RpcMsg::Response(RpcResponse { session: sid, request_id: rid, status: 0, flags: 0, payload: Bytes::new() });
    c.on_message(9, B, m);
    assert_eq!(gone.events().last(), Some(&Ev::Done(Err(RpcError::Cancelled))));
    assert!(sent(&mut c).iter().any(|(_, m)| matches!(m, RpcMsg::Control { kind: ControlKind::Cancel, .. })));

    // A streamed answer to a unary call is a protocol error.
    let rec = Rec::new();
    let rid = c.call(10, B, "svc", 1, Bytes::new(), 9000, None, rec.clone()).unwrap();
    sent(&mut c);
    let m = RpcMsg::Response(RpcResponse { session: sid, request_id: rid, status: 0, flags: 0, payload: Bytes::new() });
    c.on_message(11, B, m);
    assert_eq!(rec.events(), vec![Ev::Done(Err(RpcError::Protocol("streamed answer to a unary call")))]);
    assert_eq!(c.stats().in_flight, 0);
}

#[test]
fn local_limits_payload_and_past_deadlines_fail_at_once() {
    let cfg = RpcConfig { max_client_calls_per_peer: 1, max_payload: 10, ..Default::default() };
    let mut c = client(cfg);
    let r = Rec::new();
    assert_eq!(c.call(5, B, "svc", 1, Bytes::new(), 5, None, r.clone()), None);
    assert_eq!(r.events(), vec![Ev::Done(Err(RpcError::DeadlineExceeded { reported_by_server: false }))]);
    let r = Rec::new();
    assert_eq!(c.call(5, B, "svc", 1, Bytes::from(vec![0; 11]), 50, None, r.clone()), None);
    assert_eq!(r.events(), vec![Ev::Done(Err(RpcError::PayloadTooLarge { len: 11, max: 10 }))]);
    assert!(c.call(5, B, "svc", 1, Bytes::new(), 50, None, Rec::new()).is_some());
    let r = Rec::new();
    assert_eq!(c.call(5, B, "svc", 1, Bytes::new(), 50, None, r.clone()), None);
    assert_eq!(r.events(), vec![Ev::Done(Err(RpcError::ClientBusy))]);
    // The node-wide budget is shared.
    let budget = Arc::new(Budget::new(1));
    let mut c1: ClientTable<Rec> = ClientTable::new(RpcConfig::default(), WireConfig::default(), budget.clone());
    let mut c2: ClientTable<Rec> = ClientTable::new(RpcConfig::default(), WireConfig::default(), budget);
    assert!(c1.call(0, A, "svc", 1, Bytes::new(), 50, None, Rec::new()).is_some());
    let r = Rec::new();
    assert_eq!(c2.call(0, B, "svc", 1, Bytes::new(), 50, None, r.clone()), None);
    assert_eq!(r.events(), vec![Ev::Done(Err(RpcError::ClientBusy))]);
}

#[test]
fn tags_round_trip_and_never_look_like_engine_origins() {
    for t in [Tag::Session(0), Tag::Session(u32::MAX), Tag::Request(7), Tag::Response(9), Tag::Other] {
        assert_eq!(Tag::from_origin(t.to_origin()), Some(t));
    }
    // Shard/engine origins: shard index in the high half, below 2^31.
    assert_eq!(Tag::from_origin((5u64 << 32) | 0xffff_ffff), None);
}

fn rpc_msg() -> impl Strategy<Value = RpcMsg> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..9000).prop_map(Bytes::from);
    prop_oneof![
        (any::<u32>(), "[a-z]{1,64}", proptest::collection::vec(any::<u32>(), 0..16))
            .prop_map(|(session, service, versions)| RpcMsg::Session { session, service, versions }),
        (any::<u32>(), any::<u32>(), 0u64..6).prop_map(|(session, v, r)| RpcMsg::SessionReply {
            session,
            result: if r == 0 { Ok(v) } else { Err(RejectReason::from_code(r)) }
        }),
        (any::<u32>(), any::<u32>(), any::<u32>(), 0u64..4, any::<u32>(), any::<u32>(), bytes.clone()).prop_map(
            |(session, request_id, method, flags, d, credit, payload)| RpcMsg::Request(RpcRequest {
                session,
                request_id,
                method,
                flags,
                deadline_ms: u64::from(d),
                credit,
                payload
            })
        ),
        (any::<u32>(), any::<u32>(), any::<u32>(), 0u64..4, bytes).prop_map(
            |(session, request_id, status, flags, payload)| RpcMsg::Response(RpcResponse {
                session,
                request_id,
                status,
                flags,
                payload
            })
        ),
        (any::<u32>(), any::<u32>(), 0usize..4, any::<u32>()).prop_map(|(session, request_id, k, n)| RpcMsg::Control {
            session,
            request_id,
            kind: [ControlKind::Cancel, ControlKind::Credit, ControlKind::CloseSession, ControlKind::SessionClosed][k],
            n
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn codec_round_trips(m in rpc_msg()) {
        let cfg = WireConfig::default();
        let wire = m.encode(&cfg).unwrap();
        prop_assert_eq!(wire.ty().to_byte(), m.type_byte());
        let again = Message::decode(wire.bytes().clone(), &cfg).unwrap();
        prop_assert_eq!(RpcMsg::decode(&again).unwrap(), m);
    }

    #[test]
    fn decoder_never_panics_on_other_shapes(ty in 0x40u8..=0x44, items in proptest::collection::vec(0u8..5, 0..9)) {
        let cfg = WireConfig::default();
        let v = Value::Vector(items.iter().map(|k| match k {
            0 => Value::Nil,
            1 => Value::Long(-1),
            2 => Value::Long(i64::MAX),
            3 => Value::string("x"),
            _ => Value::blob(vec![1, 2, 3]),
        }).collect());
        let m = Message::decode(encode_message(MessageType::Other(ty), &v, &cfg).unwrap(), &cfg).unwrap();
        let _ = RpcMsg::decode(&m);
    }
}

#[test]
fn decoder_rejects_bad_fields_with_their_names() {
    let cfg = WireConfig::default();
    let dec = |ty: u8, v: Value| {
        let m = Message::decode(encode_message(MessageType::Other(ty), &v, &cfg).unwrap(), &cfg).unwrap();
        RpcMsg::decode(&m)
    };
    let l = |n: i64| Value::Long(n);
    assert_eq!(dec(0x45, Value::Nil), Err(RpcDecodeError::NotRpc(0x45)));
    assert_eq!(dec(msg::SESSION, Value::Vector(vec![l(1)])), Err(RpcDecodeError::Shape("RPC_SESSION", 3)));
    assert_eq!(
        dec(msg::SESSION, Value::Vector(vec![l(1), Value::string(""), Value::Vector(vec![])])),
        Err(RpcDecodeError::Field("RPC_SESSION", "service"))
    );
    assert_eq!(
        dec(msg::SESSION, Value::Vector(vec![l(-1), Value::string("s"), Value::Vector(vec![])])),
        Err(RpcDecodeError::Field("RPC_SESSION", "session"))
    );
    assert_eq!(
        dec(msg::SESSION_REPLY, Value::Vector(vec![l(1), l(1), l(2)])),
        Err(RpcDecodeError::Field("RPC_SESSION_REPLY", "version/reason: exactly one must be nil"))
    );
    let req = |payload: Value| Value::Vector(vec![l(1), l(2), l(3), l(0), l(100), l(0), payload]);
    assert_eq!(dec(msg::REQUEST, req(Value::string("text"))), Err(RpcDecodeError::Field("RPC_REQUEST", "payload")));
    assert_eq!(
        dec(msg::REQUEST, Value::Vector(vec![l(1), l(1 << 40), l(3), l(0), l(100), l(0), Value::blob(vec![])])),
        Err(RpcDecodeError::Field("RPC_REQUEST", "request_id"))
    );
    assert_eq!(
        dec(msg::CONTROL, Value::Vector(vec![l(1), l(1), l(9), l(0)])),
        Err(RpcDecodeError::Field("RPC_CONTROL", "kind"))
    );
    // A partial request (its payload branch left out) is not a request.
    let big = Value::blob(vec![7; 500]);
    let enc = crate::wire::encode(&req(big), &cfg).unwrap();
    let mut partial = vec![msg::REQUEST];
    partial.extend_from_slice(&enc.top);
    let m = Message::decode(Bytes::from(partial), &cfg).unwrap();
    assert_eq!(RpcMsg::decode(&m), Err(RpcDecodeError::Field("RPC_REQUEST", "payload")));
}
