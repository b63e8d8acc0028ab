//! RPC end to end over real loopback links (bounded in time).

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardwire::handshake::Identity;
use shardwire::node::{Metric, NodeBuilder, NodeEvent, NodeHandle, service_fn};
use shardwire::proxy::Permanence;
use shardwire::rpc::{RPC_ENGINE, RejectReason, RpcError, RpcMsg, RpcRequest, Status};
use shardwire::wire::WireConfig;

const ECHO: u32 = 1;
const COUNT: u32 = 2;
const DELAY: u32 = 3;
const SLOW: u32 = 4;
const HOLD: u32 = 5;

/// What the test service lets a test observe and steer.
#[derive(Default)]
struct Probe {
    /// Handlers started.
    runs: AtomicU64,
    /// Handlers dropped before they finished (stopped by the shard).
    stopped: AtomicU64,
    /// Stream items sent.
    produced: AtomicU64,
    /// HOLD handlers wait for this.
    release: AtomicBool,
    /// Most handlers running at once, and now.
    running: AtomicU64,
    max_running: AtomicU64,
}

/// Sets `stopped` if dropped before `done`.
struct Guard(Arc<Probe>, Cell<bool>);
impl Drop for Guard {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
        if !self.1.get() {
            self.0.stopped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn payload_u64(b: &[u8]) -> u64 {
    std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Methods: ECHO echoes; COUNT streams `n` items; DELAY echoes after `n %
/// 50` ms; SLOW sleeps 5 s; HOLD waits for `probe.release`, then echoes.
fn with_echo(b: NodeBuilder, name: &str, probe: Arc<Probe>) -> NodeBuilder {
    b.rpc_service(name, move |_| {
        let probe = probe.clone();
        service_fn(move |req, mut out| {
            let probe = probe.clone();
            async move {
                probe.runs.fetch_add(1, Ordering::Relaxed);
                let r = probe.running.fetch_add(1, Ordering::Relaxed) + 1;
                probe.max_running.fetch_max(r, Ordering::Relaxed);
                let guard = Guard(probe.clone(), Cell::new(false));
                match req.method {
                    ECHO => out.reply(req.payload),
                    COUNT => {
                        for i in 0..payload_u64(&req.payload) {
                            if out.send(Bytes::from(vec![(i % 251) as u8; 1024])).await.is_err() {
                                return; // cancelled: the guard records it
                            }
                            probe.produced.fetch_add(1, Ordering::Relaxed);
                        }
                        out.finish();
                    }
                    DELAY => {
                        glommio::timer::sleep(Duration::from_millis(payload_u64(&req.payload) % 50)).await;
                        out.reply(req.payload);
                    }
                    SLOW => {
                        glommio::timer::sleep(Duration::from_secs(5)).await;
                        out.reply(req.payload);
                    }
                    HOLD => {
                        while !probe.release.load(Ordering::Relaxed) {
                            glommio::timer::sleep(Duration::from_millis(2)).await;
                        }
                        out.reply(req.payload);
                    }
                    _ => out.error(Status::NOT_IMPLEMENTED, Bytes::new()),
                }
                guard.1.set(true);
            }
        })
    })
}

fn server_with(shards: usize, probe: Arc<Probe>, edit: impl FnOnce(NodeBuilder) -> NodeBuilder) -> NodeHandle {
    edit(with_echo(common::builder(shards), "echo", probe)).start().unwrap()
}

fn client_of(s: &NodeHandle, shards: usize) -> NodeHandle {
    let c = common::node(shards);
    c.add_peer(s.node_id(), s.listen_addr().unwrap(), Permanence::Ephemeral);
    c
}

const SEC: Duration = Duration::from_secs(1);

fn no_leaks(c: &NodeHandle, s: &NodeHandle) {
    let ok = common::wait_until(Duration::from_secs(10), || {
        c.metric(Metric::rpc_calls_in_flight) == 0 && s.metric(Metric::rpc_server_running) == 0
    });
    assert!(
        ok,
        "leak: client in flight {}, server running {}",
        c.metric(Metric::rpc_calls_in_flight),
        s.metric(Metric::rpc_server_running)
    );
}

fn unary_and_streamed_calls() {
    let probe = Arc::new(Probe::default());
    let s = server_with(2, probe.clone(), |b| b);
    let c = client_of(&s, 2);
    let r = c.call(s.node_id(), "echo", ECHO, Bytes::from_static(b"hello"), 10 * SEC).wait();
    assert_eq!(r.unwrap(), Bytes::from_static(b"hello"));
    let r = c.call(s.node_id(), "echo", 99, Bytes::new(), 10 * SEC).wait();
    assert!(matches!(r, Err(RpcError::Status { status: Status::NOT_IMPLEMENTED, .. })), "{r:?}");
    let mut st = c.call_streaming(s.node_id(), "echo", COUNT, Bytes::from_static(b"100"), 10 * SEC);
    let mut n = 0u64;
    while let Some(item) = st.next_blocking() {
        let item = item.unwrap();
        assert_eq!(item.len(), 1024);
        assert_eq!(item[0], (n % 251) as u8, "items arrive in order");
        n += 1;
    }
    assert_eq!(n, 100);
    no_leaks(&c, &s);
    c.shutdown(SEC);
    s.shutdown(SEC);
}

fn ten_thousand_concurrent_calls_on_one_link_matched_out_of_order() {
    let probe = Arc::new(Probe::default());
    let s = server_with(1, probe.clone(), |b| b);
    let c = client_of(&s, 1);
    // All 10,000 leave before any answer is looked at; each sleeps a
    // different time on the server, so answers come back out of order.
    let calls: Vec<_> = (0..10_000u64)
        .map(|i| {
            let n = i * 7919;
            (n, c.call(s.node_id(), "echo", DELAY, Bytes::from(n.to_string()), 60 * SEC))
        })
        .collect();
    for (n, call) in calls {
        let got = call.wait().unwrap_or_else(|e| panic!("call {n}: {e}"));
        assert_eq!(payload_u64(&got), n, "each answer matches its request");
    }
    assert_eq!(probe.runs.load(Ordering::Relaxed), 10_000);
    let max = probe.max_running.load(Ordering::Relaxed);
    assert!(max >= 1000, "calls ran concurrently on the server (max {max} at once)");
    no_leaks(&c, &s);
    c.shutdown(SEC);
    s.shutdown(SEC);
}

/// A node that dials but does not listen (so a server cannot dial back).
fn dial_only(shards: usize) -> NodeHandle {
    common::bare_builder(shards)
        .external_engine(common::APP)
        .configure(|c| c.proxy.backoff_max_ms = 200)
        .start()
        .unwrap()
}

/// Waits for the next RPC message delivered to the external engine.
fn next_rpc(n: &NodeHandle) -> RpcMsg {
    let evs = common::collect(n, 10 * SEC, |e| e.iter().any(|e| matches!(e, NodeEvent::Message { .. })));
    for e in evs {
        if let NodeEvent::Message { msg, .. } = e {
            return RpcMsg::decode(&msg.msg).expect("an RPC message");
        }
    }
    panic!("no RPC message arrived");
}

fn deadline_passed_before_the_server_starts_the_call() {
    // A request whose time was up when it was sent (deadline 0 on the
    // wire), spoken raw through an external engine.
    let probe = Arc::new(Probe::default());
    let s = server_with(2, probe.clone(), |b| b);
    let c = client_of(&s, 2);
    let cfg = WireConfig::default();
    let send = |m: RpcMsg| {
        c.send(s.node_id(), common::app(), RPC_ENGINE, m.encode(&cfg).unwrap(), Default::default()).unwrap();
    };
    send(RpcMsg::Session { session: 9, service: "echo".into(), versions: vec![1] });
    assert_eq!(next_rpc(&c), RpcMsg::SessionReply { session: 9, result: Ok(1) });
    let req = |rid, deadline_ms| {
        RpcMsg::Request(RpcRequest {
            session: 9,
            request_id: rid,
            method: ECHO,
            flags: 0,
            deadline_ms,
            credit: 0,
            payload: Bytes::from_static(b"x"),
        })
    };
    send(req(1, 0));
    match next_rpc(&c) {
        RpcMsg::Response(r) => {
            assert_eq!((r.request_id, Status(r.status)), (1, Status::DEADLINE_EXCEEDED));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(probe.runs.load(Ordering::Relaxed), 0, "the handler never ran");
    assert_eq!(s.metric(Metric::rpc_server_refused), 1);
    // The same session still serves a request with time left.
    send(req(2, 5000));
    match next_rpc(&c) {
        RpcMsg::Response(r) => assert_eq!((r.request_id, r.status, &r.payload[..]), (2, 0, &b"x"[..])),
        other => panic!("{other:?}"),
    }
    // A client-side call whose deadline is already over never leaves.
    let r = c.call(s.node_id(), "echo", ECHO, Bytes::new(), Duration::ZERO).wait();
    assert_eq!(r, Err(RpcError::DeadlineExceeded { reported_by_server: false }));
    no_leaks(&c, &s);
    c.shutdown(SEC);
    s.shutdown(SEC);
}

fn deadline_passes_while_the_server_works() {
    let probe = Arc::new(Probe::default());
    let s = server_with(2, probe.clone(), |b| b);
    let c = client_of(&s, 2);
    let t = Instant::now();
    let r = c.call(s.node_id(), "echo", SLOW, Bytes::new(), Duration::from_millis(300)).wait();
    assert!(matches!(r, Err(RpcError::DeadlineExceeded { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "failed at the deadline, not after the work");
    // The server stopped the handler at its deadline.
    let ok = common::wait_until(5 * SEC, || probe.stopped.load(Ordering::Relaxed) == 1);
    assert!(
        ok,
        "stopped {} runs {} deadline {} cancelled {} running {}",
        probe.stopped.load(Ordering::Relaxed),
        probe.runs.load(Ordering::Relaxed),
        s.metric(Metric::rpc_server_deadline),
        s.metric(Metric::rpc_server_cancelled),
        s.metric(Metric::rpc_server_running)
    );
    // Stopped by its own deadline timer or by the client's cancel at the
    // client's deadline, whichever came first: once.
    let stops = || s.metric(Metric::rpc_server_deadline) + s.metric(Metric::rpc_server_cancelled);
    assert!(common::wait_until(5 * SEC, || stops() == 1));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(stops(), 1);
    no_leaks(&c, &s);
    c.shutdown(SEC);
    s.shutdown(SEC);
}

fn response_lost_in_an_outage() {
    let probe = Arc::new(Probe::default());
    let s = server_with(1, probe.clone(), |b| b);
    let fault = common::FaultProxy::start(s.listen_addr().unwrap(), usize::MAX / 2, usize::MAX / 2);
    let c = dial_only(1);
    c.add_peer(s.node_id(), fault.addr, Permanence::Ephemeral);
    // The link is up before the call whose deadline matters: dialling and
    // the handshake on a loaded machine must not use up its 1.5 s (else the
    // server's deadline can pass, and be reported, before the outage).
    let up = c.call(s.node_id(), "echo", ECHO, Bytes::from_static(b"up"), 10 * SEC).wait();
    assert_eq!(up, Ok(Bytes::from_static(b"up")));
    let call = c.call(s.node_id(), "echo", HOLD, Bytes::from_static(b"lost"), Duration::from_millis(1500));
    assert!(common::wait_until(10 * SEC, || probe.runs.load(Ordering::Relaxed) == 2));
    // The link goes down with the call running; then, once the server has
    // seen it go, the handler answers. (Released at once, the handler could
    // answer before the server's shard read the reset: its response was
    // then written into the dead link, in flight with an unknown fate until
    // a link that never comes back; a full run on a slowed machine did so.)
    fault.set_down(true);
    assert!(common::wait_until(10 * SEC, || s.metric(Metric::links_up) == 0), "the server saw the cut");
    probe.release.store(true, Ordering::Relaxed);
    let r = call.wait();
    assert_eq!(r, Err(RpcError::DeadlineExceeded { reported_by_server: false }));
    // The server's answer could not be delivered before it expired.
    assert!(
        common::wait_until(10 * SEC, || s.metric(Metric::rpc_responses_undelivered) == 1),
        "server saw its response undelivered"
    );
    no_leaks(&c, &s);
    c.shutdown(SEC);
    s.shutdown(SEC);
}

fn session_rejections_and_per_peer_limits() {
    let probe = Arc::new(Probe::default());
    let s = server_with(2, probe.clone(), |b| {
        with_echo(b, "echo2", Arc::new(Probe::default())).configure(|c| {
            c.rpc.max_sessions_per_peer = 1;
            c.rpc.max_sessions = 3;
            c.rpc.max_calls_per_peer = 2;
        })
    });
    let c1 = client_of(&s, 2);
    let call = |c: &NodeHandle, svc: &str, m: u32| c.call(s.node_id(), svc, m, Bytes::from_static(b"1"), 10 * SEC);

    // Protocol (service) not supported.
    let r = call(&c1, "nope", ECHO).wait();
    assert_eq!(r, Err(RpcError::Rejected(RejectReason::ProtocolNotSupported)));
    assert!(!r.unwrap_err().is_retryable());
    // Unsupported version.
    let old = common::builder(1).configure(|cfg| cfg.rpc.versions = vec![7]).start().unwrap();
    old.add_peer(s.node_id(), s.listen_addr().unwrap(), Permanence::Ephemeral);
    assert_eq!(call(&old, "echo", ECHO).wait(), Err(RpcError::Rejected(RejectReason::UnsupportedVersion)));

    // Per-peer session limit: c1 has "echo"; "echo2" is one too many for c1...
    assert!(call(&c1, "echo", ECHO).wait().is_ok());
    let r = call(&c1, "echo2", ECHO).wait();
    assert_eq!(r, Err(RpcError::Rejected(RejectReason::NoClientSessionsAvailable)));
    assert!(r.unwrap_err().is_retryable());
    // ...while another peer is still served.
    let c2 = client_of(&s, 1);
    assert!(call(&c2, "echo2", ECHO).wait().is_ok());
    // Node-wide session limit (3): c1 and c2 hold one each, old none; c3 gets the last.
    let c3 = client_of(&s, 1);
    assert!(call(&c3, "echo", ECHO).wait().is_ok());
    let c4 = client_of(&s, 1);
    assert_eq!(call(&c4, "echo", ECHO).wait(), Err(RpcError::Rejected(RejectReason::NoServerSessionsAvailable)));

    // Per-peer call limit (2 running): the third is refused at once as busy,
    // while c2 is still served.
    let held: Vec<_> = (0..2).map(|_| call(&c1, "echo", HOLD)).collect();
    assert!(common::wait_until(10 * SEC, || probe.running.load(Ordering::Relaxed) == 2));
    let t = Instant::now();
    let r = call(&c1, "echo", ECHO).wait();
    assert_eq!(r, Err(RpcError::ServerBusy));
    assert!(r.unwrap_err().is_retryable() && t.elapsed() < 5 * SEC, "a rejection, not a hang");
    assert!(call(&c2, "echo2", ECHO).wait().is_ok());
    probe.release.store(true, Ordering::Relaxed);
    for h in held {
        assert!(h.wait().is_ok());
    }
    for n in [&c1, &c2, &c3, &c4, &old] {
        no_leaks(n, &s);
        n.shutdown(SEC);
    }
    s.shutdown(SEC);
}

fn client_side_call_limit() {
    let probe = Arc::new(Probe::default());
    let s = server_with(1, probe.clone(), |b| b);
    let c = common::builder(1).configure(|cfg| cfg.rpc.max_client_calls_per_peer = 3).start().unwrap();
    c.add_peer(s.node_id(), s.listen_addr().unwrap(), Permanence::Ephemeral);
    let held: Vec<_> = (0..3).map(|_| c.call(s.node_id(), "echo", HOLD, Bytes::new(), 10 * SEC)).collect();
    let r = c.call(s.node_id(), "echo", ECHO, Bytes::new(), 10 * SEC).wait();
    assert_eq!(r, Err(RpcError::ClientBusy));
    probe.release.store(true, Ordering::Relaxed);
    for h in held {
        assert!(h.wait().is_ok());
    }
    assert!(c.call(s.node_id(), "echo", ECHO, Bytes::new(), 10 * SEC).wait().is_ok());
    no_leaks(&c, &s);
    c.shutdown(SEC);
    s.shutdown(SEC);
}

fn slow_stream_consumer_bounds_the_producer_and_cancel_stops_it() {
    let probe = Arc::new(Probe::default());
    let s = server_with(2, probe.clone(), |b| b);
    let c = client_of(&s, 2);
    let window = 16u64;
    let mut st = c.call_streaming(s.node_id(), "echo", COUNT, Bytes::from_static(b"1000000"), 60 * SEC);
    let mut taken = 0u64;
    for _ in 0..40 {
        st.next_blocking().unwrap().unwrap();
        taken += 1;
        std::thread::sleep(Duration::from_millis(5));
        let produced = probe.produced.load(Ordering::Relaxed);
        assert!(produced <= taken + window, "producer ran ahead: {produced} produced, {taken} taken");
    }
    // Nothing more is produced while nobody takes.
    std::thread::sleep(Duration::from_millis(300));
    let produced = probe.produced.load(Ordering::Relaxed);
    assert!(produced <= taken + window, "{produced} produced, {taken} taken");
    // Dropping the stream cancels the call; the server stops producing.
    drop(st);
    assert!(common::wait_until(10 * SEC, || probe.stopped.load(Ordering::Relaxed) == 1), "producer stopped");
    let after = probe.produced.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(probe.produced.load(Ordering::Relaxed), after);
    assert!(common::wait_until(10 * SEC, || s.metric(Metric::rpc_server_cancelled) == 1));
    no_leaks(&c, &s);
    c.shutdown(SEC);
    s.shutdown(SEC);
}

fn calls_from_an_engine_on_another_shard_and_streams_awaited_on_shards() {
    use shardwire::node::{Engine, ShardCtx};
    use shardwire::proxy::EngineMsg;
    let probe = Arc::new(Probe::default());
    let s = server_with(2, probe, |b| b);
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, String)>();
    let server_id = s.node_id();
    // On a "go" message, every shard's engine calls the server (only one of
    // them owns the link) and reports what it got.
    struct Caller {
        server: shardwire::handshake::NodeId,
        tx: crossbeam_channel::Sender<(usize, String)>,
    }
    impl Engine for Caller {
        fn on_message(&mut self, ctx: &ShardCtx, _from: shardwire::handshake::NodeId, _m: EngineMsg) {
            let (server, tx, shard) = (self.server, self.tx.clone(), ctx.shard());
            let call = ctx.call(server, "echo", ECHO, Bytes::from(format!("from {shard}")), 10 * SEC);
            let mut st = ctx.call_streaming(server, "echo", COUNT, Bytes::from_static(b"50"), 10 * SEC);
            ctx.spawn(async move {
                let r = call.await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_else(|e| e.to_string());
                let mut n = 0;
                while let Some(Ok(_)) = st.next().await {
                    n += 1;
                }
                let _ = tx.send((shard, format!("{r}; {n} items")));
            });
        }
    }
    let c = common::builder(2).engine("caller", move |_| Caller { server: server_id, tx: tx.clone() }).start().unwrap();
    c.add_peer(s.node_id(), s.listen_addr().unwrap(), Permanence::Ephemeral);
    // Wake the engine on both shards: messages from two helper nodes that
    // hash to different shards.
    let mut seen = std::collections::HashSet::new();
    let mut helpers = Vec::new();
    while seen.len() < 2 && helpers.len() < 64 {
        let h = common::node(1);
        let shard = shardwire::node::shard_of(&h.node_id(), 2);
        if seen.insert(shard) {
            h.add_peer(c.node_id(), c.listen_addr().unwrap(), Permanence::Ephemeral);
            let caller = shardwire::proxy::EngineId::named("caller");
            h.send(c.node_id(), common::app(), caller, common::msg(1, 0), Default::default()).unwrap();
        }
        helpers.push(h);
    }
    let mut got: Vec<(usize, String)> = (0..2).map(|_| rx.recv_timeout(20 * SEC).unwrap()).collect();
    got.sort();
    assert_eq!(got, vec![(0, "from 0; 50 items".to_string()), (1, "from 1; 50 items".to_string())]);
    for h in helpers {
        h.shutdown(Duration::from_millis(100));
    }
    c.shutdown(SEC);
    s.shutdown(SEC);
}

fn server_restart_fails_calls_in_flight_as_peer_restarted() {
    let probe = Arc::new(Probe::default());
    let id = Identity::generate();
    let s = with_echo(common::builder(1).identity(id.clone()), "echo", probe.clone()).start().unwrap();
    let addr = s.listen_addr().unwrap();
    let c = common::node(1);
    c.add_peer(s.node_id(), addr, Permanence::Permanent);
    let call = c.call(s.node_id(), "echo", HOLD, Bytes::new(), 30 * SEC);
    assert!(common::wait_until(10 * SEC, || probe.runs.load(Ordering::Relaxed) == 1));
    s.shutdown(Duration::from_millis(100));
    let probe2 = Arc::new(Probe::default());
    let s2 = with_echo(common::builder(1).identity(id).listen(addr), "echo", probe2.clone()).start().unwrap();
    let t = Instant::now();
    assert_eq!(call.wait(), Err(RpcError::PeerRestarted));
    assert!(t.elapsed() < 20 * SEC);
    // New calls open a new session with the new process.
    let r = c.call(s2.node_id(), "echo", ECHO, Bytes::from_static(b"again"), 10 * SEC).wait();
    assert_eq!(r.unwrap(), Bytes::from_static(b"again"));
    let _ = Rc::new(());
    c.shutdown(SEC);
    s2.shutdown(SEC);
}

on_both_io_paths!(
    unary_and_streamed_calls,
    ten_thousand_concurrent_calls_on_one_link_matched_out_of_order,
    deadline_passed_before_the_server_starts_the_call,
    deadline_passes_while_the_server_works,
    response_lost_in_an_outage,
    session_rejections_and_per_peer_limits,
    client_side_call_limit,
    slow_stream_consumer_bounds_the_producer_and_cancel_stops_it,
    calls_from_an_engine_on_another_shard_and_streams_awaited_on_shards,
    server_restart_fails_calls_in_flight_as_peer_restarted,
);
