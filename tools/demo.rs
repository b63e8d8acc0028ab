//! `shardwire demo`: a small cluster in one process, a short mixed load, a
//! link cut on purpose, and a summary that shows nothing was lost.
//!
//! Three nodes with two shards each, fresh keys, loopback ports chosen by
//! the OS, permanent links between every pair. The link from A to B runs
//! through a TCP relay inside the demo, which resets it mid-stream and
//! refuses it for a second. Meanwhile every node sends one-way messages
//! and RPC calls to the other two, and A sends C a belief with every branch
//! cell left out, which C completes by asking A with MISSING_DATA.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use shardwire::handshake::{Identity, NodeId};
use shardwire::node::{
    Engine, Metric, Node, NodeEvent, NodeHandle, PeerHandler, SendError, SendOptions, ShardCtx, Shards, ShutdownReport,
    shard_of,
};
use shardwire::proxy::{EngineId, EngineMsg, MsgId, Outcome, Permanence};
use shardwire::wire::{Message, MessageType, Value, WireConfig, encode_message};

use crate::measure::{self, Stats};
use crate::services;

#[derive(Args)]
pub struct DemoArgs {
    /// How long the mixed load runs.
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_duration)]
    pub duration: Duration,
    /// One-way messages per second from each node to each other node.
    #[arg(long, default_value = "2000", value_parser = crate::units::parse_rate)]
    pub rate: f64,
    /// RPC calls per second from each node to each other node.
    #[arg(long, default_value = "500", value_parser = crate::units::parse_rate)]
    pub rpc_rate: f64,
    /// Where to write the latency plot.
    #[arg(long, default_value = "demo-latency.svg")]
    pub plot: PathBuf,
    #[command(flatten)]
    pub io: crate::node::IoArgs,
}

const NAMES: [&str; 3] = ["A", "B", "C"];
const SINK: EngineId = EngineId::named("sink");

/// Counters the whole demo shares.
#[derive(Default)]
struct Shared {
    messages: Stats,
    rpc: Stats,
    go: AtomicBool,
    stop: AtomicBool,
    in_flight: AtomicU64,
    beliefs: AtomicU64,
}

/// Generates the load of one node: open loop, timed from intended sends.
struct Driver {
    peers: Vec<NodeId>,
    rate: f64,
    rpc_rate: f64,
    msg: Message,
    rpc_payload: bytes::Bytes,
    shared: Arc<Shared>,
    pending: std::rc::Rc<std::cell::RefCell<std::collections::HashMap<MsgId, Instant>>>,
}

impl Engine for Driver {
    fn on_start(&mut self, ctx: &ShardCtx) {
        for &to in self.peers.iter().filter(|p| shard_of(p, ctx.shards()) == ctx.shard()) {
            let (ctx, shared, msg, pending) =
                (ctx.clone(), self.shared.clone(), self.msg.clone(), self.pending.clone());
            let (rate, rpc_rate, payload) = (self.rate, self.rpc_rate, self.rpc_payload.clone());
            ctx.clone().spawn(async move {
                while !shared.go.load(Ordering::Acquire) {
                    ctx.sleep(Duration::from_millis(1)).await;
                }
                let t0 = Instant::now();
                let (mut sent, mut calls) = (0u64, 0u64);
                while !shared.stop.load(Ordering::Relaxed) && !ctx.is_stopping() {
                    let elapsed = t0.elapsed().as_secs_f64();
                    while (sent as f64) < elapsed * rate {
                        let intended = t0 + Duration::from_secs_f64(sent as f64 / rate);
                        sent += 1;
                        match ctx.send(
                            to,
                            SINK,
                            msg.clone(),
                            SendOptions::expiring_in(Duration::from_secs(30)).notify(),
                        ) {
                            Ok(id) => {
                                shared.messages.sent.fetch_add(1, Ordering::Relaxed);
                                shared.in_flight.fetch_add(1, Ordering::Relaxed);
                                pending.borrow_mut().insert(id, intended);
                            }
                            Err(SendError::Full(_)) => shared.messages.error("queue_full"),
                            Err(_) => shared.messages.error("refused"),
                        }
                    }
                    while (calls as f64) < elapsed * rpc_rate {
                        let intended = t0 + Duration::from_secs_f64(calls as f64 / rpc_rate);
                        calls += 1;
                        shared.rpc.sent.fetch_add(1, Ordering::Relaxed);
                        shared.in_flight.fetch_add(1, Ordering::Relaxed);
                        let call = ctx.call(
                            to,
                            services::RPC_ECHO,
                            services::METHOD_ECHO,
                            payload.clone(),
                            Duration::from_secs(30),
                        );
                        let sh = shared.clone();
                        let size = payload.len() as u64;
                        ctx.spawn(async move {
                            match call.await {
                                Ok(_) => sh.rpc.ack(intended.elapsed(), size),
                                Err(e) => sh.rpc.error(e.reason()),
                            }
                            sh.in_flight.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                    ctx.sleep(Duration::from_micros(500)).await;
                }
            });
        }
    }

    fn on_message(&mut self, _ctx: &ShardCtx, _from: NodeId, _msg: EngineMsg) {}

    fn on_outcome(&mut self, _ctx: &ShardCtx, id: MsgId, outcome: Outcome, _returned: Option<Box<EngineMsg>>) {
        let Some(t) = self.pending.borrow_mut().remove(&id) else { return };
        match outcome {
            Outcome::Delivered => self.shared.messages.ack(t.elapsed(), self.msg.bytes().len() as u64),
            o => self.shared.messages.error(o.name()),
        }
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts beliefs delivered (and answers QUERY/STATUS as rpc-echo does).
struct Beliefs(Arc<Shared>, services::EchoPeer);

impl PeerHandler for Beliefs {
    fn query(&self, req: shardwire::node::PeerRequest, reply: shardwire::node::ResultReply) {
        self.1.query(req, reply);
    }
    fn belief(&self, _from: NodeId, _belief: Message) {
        self.0.beliefs.fetch_add(1, Ordering::Relaxed);
    }
}

/// A TCP relay that can cut its connections (reset) and refuse new ones.
struct Relay {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(target: SocketAddr) -> std::io::Result<Relay> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let (down, live, stop) =
            (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (d, lv, st) = (down.clone(), live.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                if d.load(Ordering::Relaxed) {
                    reset(&client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    reset(&client);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                    lv.lock().unwrap_or_else(|e| e.into_inner()).extend([a, b]);
                }
                for (from, to) in [(client.try_clone(), server.try_clone()), (Ok(server), Ok(client))] {
                    if let (Ok(from), Ok(to)) = (from, to) {
                        let st = st.clone();
                        std::thread::spawn(move || pump(from, to, st));
                    }
                }
            }
        });
        Ok(Relay { addr, down, live, stop })
    }

    /// Resets every connection and refuses new ones until `restore`.
    fn cut(&self) {
        self.down.store(true, Ordering::Relaxed);
        for s in self.live.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            reset(&s);
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn reset(s: &TcpStream) {
    // SO_LINGER 0 makes close send RST: a hard cut, as a failing network does.
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt with a linger struct we own, on an open socket.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
}

fn pump(mut from: TcpStream, mut to: TcpStream, stop: Arc<AtomicBool>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0u8; 64 << 10];
    while !stop.load(Ordering::Relaxed) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    reset(&from);
    reset(&to);
}

fn belief_value() -> Value {
    // A belief-sized value: 32 KiB in 32 blobs, the second half nested.
    let blob = |i: usize| Value::Blob(measure::payload(1024 + i));
    let mut outer: Vec<Value> = (0..16).map(blob).collect();
    outer.push(Value::Vector((16..32).map(blob).collect()));
    Value::Vector(outer)
}

pub fn run(args: DemoArgs) -> ExitCode {
    let t_start = Instant::now();
    let shared = Arc::new(Shared::default());
    let ids: Vec<Identity> = (0..3).map(|_| Identity::generate()).collect();
    // (The relays and the cut need the link between A and B to run through them.)
    let node_ids: Vec<NodeId> = ids.iter().map(|i| i.node_id()).collect();
    let cfg = WireConfig::default();
    let msg = match encode_message(MessageType::Other(0x80), &Value::Blob(measure::payload(256)), &cfg)
        .map_err(|e| e.to_string())
        .and_then(|b| Message::decode(b, &cfg).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };

    println!("shardwire demo: 3 nodes x 2 shards on loopback, {:?} of mixed load\n", args.duration);
    // Start the three nodes, then the relays between A and B (one each
    // way: whichever side dials, the link runs through a relay), then tell
    // every node where the others are.
    let start = |i: usize| -> Result<NodeHandle, String> {
        let others: Vec<NodeId> = node_ids.iter().copied().filter(|n| *n != node_ids[i]).collect();
        let (sh, m, payload) = (shared.clone(), msg.clone(), measure::payload(1024));
        let (rate, rpc_rate) = (args.rate, args.rpc_rate);
        let sh2 = shared.clone();
        Node::builder()
            .identity(ids[i].clone())
            .listen("127.0.0.1:0".parse().expect("a literal address"))
            .shards(Shards::Count(2))
            .configure(|c| {
                c.proxy.backoff_min_ms = 20;
                c.proxy.backoff_max_ms = 200;
                args.io.apply(c);
            })
            .engine("sink", |_| services::Sink)
            .rpc_service(services::RPC_ECHO, |_| services::RpcEcho)
            .peer_handler(move |info| Beliefs(sh2.clone(), services::EchoPeer { shard: info.index }))
            .engine("driver", move |_| Driver {
                peers: others.clone(),
                rate,
                rpc_rate,
                msg: m.clone(),
                rpc_payload: payload.clone(),
                shared: sh.clone(),
                pending: Default::default(),
            })
            .start()
            .map_err(|e| e.to_string())
    };
    let mut nodes = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        match start(i) {
            Ok(n) => nodes.push(n),
            Err(e) => {
                eprintln!("error: cannot start node {name}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let addr = |i: usize| nodes[i].listen_addr().expect("every node listens");
    let relays = match (Relay::start(addr(1)), Relay::start(addr(0))) {
        (Ok(to_b), Ok(to_a)) => [to_b, to_a],
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: cannot start the relay: {e}");
            return ExitCode::from(1);
        }
    };
    nodes[0].add_peer(node_ids[1], relays[0].addr, Permanence::Permanent);
    nodes[1].add_peer(node_ids[0], relays[1].addr, Permanence::Permanent);
    for (from, to) in [(0, 2), (1, 2), (2, 0), (2, 1)] {
        nodes[from].add_peer(node_ids[to], addr(to), Permanence::Permanent);
    }
    for (i, n) in nodes.iter().enumerate() {
        println!(
            "  node {}  {}  listening on {}",
            NAMES[i],
            n.node_id(),
            n.listen_addr().map(|a| a.to_string()).unwrap_or_default()
        );
    }
    println!(
        "  A and B reach each other through relays at {} and {} (the link the demo will cut)\n",
        relays[0].addr, relays[1].addr
    );

    // Every pair linked (each node counts its own links).
    let deadline = Instant::now() + Duration::from_secs(15);
    while nodes.iter().map(|n| n.metric(Metric::links_up)).sum::<u64>() < 6 {
        if Instant::now() > deadline {
            eprintln!("error: the links did not come up within 15 s");
            return ExitCode::from(1);
        }
        for n in &nodes {
            while n.events().try_recv().is_ok() {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "all 3 links up after {:.0} ms (socket path: {}); load starts\n",
        t_start.elapsed().as_secs_f64() * 1000.0,
        nodes[0].io_mode().name()
    );

    shared.go.store(true, Ordering::Release);
    let t0 = Instant::now();
    // The partial belief, after a second of load.
    let mut belief_sent = false;
    let cut_at = args.duration.mul_f64(0.4);
    let mut cut_state = 0; // 0 before, 1 cut, 2 relay restored
    let mut cut_t = t0;
    let (mut went_down, mut came_back) = (false, false);
    let mut last = (0, 0);
    let mut last_rpc = (0, 0);
    let mut tick = t0;
    let b_id = node_ids[1];
    while t0.elapsed() < args.duration {
        std::thread::sleep(Duration::from_millis(20));
        for (i, n) in nodes.iter().enumerate() {
            while let Ok(ev) = n.events().try_recv() {
                // Node A's view of its link to B after the cut.
                match ev {
                    NodeEvent::LinkDown(id) if i == 0 && id == b_id && cut_state >= 1 && !went_down => {
                        went_down = true;
                        println!(
                            "  {:>5.1}s  A sees its link to B go down; messages to B wait in its queue",
                            t0.elapsed().as_secs_f64()
                        );
                    }
                    NodeEvent::LinkUp(id) if i == 0 && id == b_id && went_down && !came_back => {
                        came_back = true;
                        let now = Instant::now();
                        println!(
                            "  {:>5.1}s  link A-B back up, {:.0} ms after the cut (redialed with backoff)",
                            now.duration_since(t0).as_secs_f64(),
                            now.duration_since(cut_t).as_secs_f64() * 1000.0
                        );
                    }
                    _ => {}
                }
            }
        }
        if !belief_sent && t0.elapsed() > Duration::from_secs(1) {
            belief_sent = true;
            let v = belief_value();
            match nodes[0].send_peer(node_ids[2], MessageType::Belief, &v, |_| true, SendOptions::default()) {
                Ok(_) => println!(
                    "  {:>5.1}s  A sends C a 32 KiB belief with all 33 branch cells left out",
                    t0.elapsed().as_secs_f64()
                ),
                Err(e) => eprintln!("  could not send the belief: {e}"),
            }
        }
        if cut_state == 0 && t0.elapsed() >= cut_at {
            for r in &relays {
                r.cut();
            }
            cut_state = 1;
            cut_t = Instant::now();
            println!(
                "  {:>5.1}s  relay cuts link A-B (connection reset) and refuses it for 1 s",
                t0.elapsed().as_secs_f64()
            );
        }
        if cut_state == 1 && cut_t.elapsed() >= Duration::from_secs(1) {
            for r in &relays {
                r.restore();
            }
            cut_state = 2;
        }
        if tick.elapsed() >= Duration::from_secs(1) {
            let now = Instant::now();
            eprint!("messages: ");
            measure::progress(now - t0, now - tick, &shared.messages, &mut last);
            eprint!("rpc:      ");
            measure::progress(now - t0, now - tick, &shared.rpc, &mut last_rpc);
            tick = now;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let load_secs = t0.elapsed().as_secs_f64();
    // Drain: what is in flight resolves (and a link still down comes back).
    let drain = Instant::now() + Duration::from_secs(15);
    while (shared.in_flight.load(Ordering::Relaxed) > 0 || (went_down && !came_back)) && Instant::now() < drain {
        for (i, n) in nodes.iter().enumerate() {
            while let Ok(ev) = n.events().try_recv() {
                if let NodeEvent::LinkUp(id) = ev {
                    if i == 0 && id == b_id && went_down && !came_back {
                        came_back = true;
                        println!(
                            "  {:>5.1}s  link A-B back up, {:.0} ms after the cut (redialed with backoff)",
                            t0.elapsed().as_secs_f64(),
                            cut_t.elapsed().as_secs_f64() * 1000.0
                        );
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let resends: u64 = nodes.iter().map(|n| n.metric(Metric::resends)).sum();
    let duplicates: u64 = nodes.iter().map(|n| n.metric(Metric::duplicates)).sum();
    let completed = nodes[2].metric(Metric::peer_partial_completed);
    let missing_answered = nodes[0].metric(Metric::peer_missing_data_in);
    let reports: Vec<ShutdownReport> = nodes.iter().map(|n| n.shutdown(Duration::from_secs(2))).collect();

    // Summary.
    let m = &shared.messages;
    let r = &shared.rpc;
    let (hm, hr) = (m.total(), r.total());
    let sent = m.sent.load(Ordering::Relaxed);
    let acked = m.acked.load(Ordering::Relaxed);
    let (rsent, racked) = (r.sent.load(Ordering::Relaxed), r.acked.load(Ordering::Relaxed));
    let sink_received: u64 = reports.iter().filter_map(|rep| rep.engines.get("sink")).map(|c| c.received).sum();
    println!("\nsummary ({load_secs:.1} s of load)\n");
    println!(
        "  {:<22} {:>9} {:>11} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "traffic", "sent", "delivered", "per s", "p50 us", "p90 us", "p99 us", "max us"
    );
    let row = |name: &str, s: u64, a: u64, h: &hdrhistogram::Histogram<u64>| {
        let q = |p: f64| if h.is_empty() { 0.0 } else { measure::us(h.value_at_quantile(p)) };
        println!(
            "  {:<22} {:>9} {:>11} {:>10.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0}",
            name,
            s,
            a,
            a as f64 / load_secs,
            q(0.5),
            q(0.9),
            q(0.99),
            if h.is_empty() { 0.0 } else { measure::us(h.max()) }
        );
    };
    row("one-way 256 B (acked)", sent, acked, &hm);
    row("RPC 1 KiB (answered)", rsent, racked, &hr);
    if went_down {
        // Latency runs from each message's intended send time, so the cut
        // shows: say where the tail comes from.
        println!("  (the p99 and max include messages and calls that waited out the cut of link A-B)");
    }
    println!();
    println!(
        "  link A-B cut once: {resends} messages resent on the new link, {duplicates} duplicates dropped by receivers"
    );
    println!(
        "  partial belief: completed at C through MISSING_DATA ({missing_answered} request(s) answered by A), delivered {} time(s)",
        shared.beliefs.load(Ordering::Relaxed)
    );
    let lost_msgs = sent.saturating_sub(acked + m.error_count());
    let lost_rpc = rsent.saturating_sub(racked + r.error_count());
    println!(
        "  sinks received {sink_received} of {acked} acknowledged messages; errors: messages {:?}, rpc {:?}",
        m.errors(),
        r.errors()
    );
    let undelivered: usize = reports.iter().map(|r| r.undelivered.len()).sum();
    let ok = lost_msgs == 0
        && lost_rpc == 0
        && sink_received == acked
        && acked == sent
        && racked == rsent
        && completed >= 1
        && shared.beliefs.load(Ordering::Relaxed) == 1
        && came_back;
    match measure::write_plot(
        &args.plot,
        "shardwire demo: latency by percentile",
        &[("one-way 256 B", &hm), ("RPC 1 KiB", &hr)],
    ) {
        Ok(()) => println!("  latency plot: {}", args.plot.display()),
        Err(e) => eprintln!("  could not write {}: {e}", args.plot.display()),
    }
    if ok && undelivered == 0 {
        println!(
            "\nnothing lost: every message delivered exactly once, every call answered ({:.1} s in all)",
            t_start.elapsed().as_secs_f64()
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "\nCHECK FAILED: lost messages {lost_msgs}, lost calls {lost_rpc}, undelivered at shutdown {undelivered}, link back up: {}",
            cut_state == 3
        );
        ExitCode::from(1)
    }
}
