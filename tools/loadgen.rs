//! `shardwire loadgen`: offered load against one or more nodes, with
//! coordinated-omission-corrected latency (open loop) or as fast as the
//! target takes (closed loop).
//!
//! Load is generated inside the client nodes' shards by an engine (no
//! thread hop per message): each (client node, target) pair is one
//! generator on the shard that owns the target's link. Open loop (`--rate`)
//! schedules each message at its intended time and measures latency from
//! that time, as wrk2 does, so a stall shows up as the latency it caused;
//! closed loop (`--max`) keeps a window of messages in flight and measures
//! from the actual send.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{ArgGroup, Args, ValueEnum};
use shardwire::handshake::{Identity, NodeId};
use shardwire::node::{
    DialError, Engine, Node, NodeEvent, NodeHandle, SendError, SendOptions, ShardCtx, Shards, shard_of,
};
use shardwire::proxy::{EngineId, EngineMsg, MsgId, NotQueued, Outcome, Permanence};
use shardwire::wire::{Message, MessageType, Value, WireConfig, encode_message};

use crate::measure::{self, Stats};
use crate::node::{Peer, parse_peer};
use crate::{EXIT_BAD_INPUT, services};

#[derive(Args)]
#[command(group(ArgGroup::new("pace").required(true).args(["rate", "max"])))]
pub struct LoadgenArgs {
    /// A node to load: NODEID@ADDR (repeatable; load is spread evenly).
    #[arg(long = "target", value_parser = parse_peer, required = true)]
    pub targets: Vec<Peer>,
    /// Key file for the first connection (others get fresh identities).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Payload size per message, e.g. 64, 1K, 64KiB.
    #[arg(long, value_parser = crate::units::parse_size)]
    pub size: usize,
    /// How long to generate load, e.g. 10s, 2m.
    #[arg(long, value_parser = crate::units::parse_positive_duration)]
    pub duration: Duration,
    /// Client connections: each is a client node with its own identity and
    /// its own link to every target (at most 64).
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Shards (threads) of each client node.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Open loop: this many messages per second in total, e.g. 10000, 50k.
    #[arg(long, value_parser = crate::units::parse_rate)]
    pub rate: Option<f64>,
    /// Closed loop: as fast as the target takes (`--window` in flight per
    /// connection and target).
    #[arg(long)]
    pub max: bool,
    /// Messages in flight per connection and target with `--max` (at most
    /// 65,536, what a peer's queue holds).
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// send: one-way engine messages to a `sink` node; rpc: unary calls to
    /// `rpc-echo`; query: QUERY -> RESULT to `rpc-echo`.
    #[arg(long, value_enum, default_value = "send")]
    pub mode: Mode,
    /// Expiry of each sent message (send mode) or call deadline.
    #[arg(long, default_value = "30s", value_parser = crate::units::parse_positive_duration)]
    pub expiry: Duration,
    /// How long to wait for the links to come up.
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_positive_duration)]
    pub connect_timeout: Duration,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Write the latency histogram (HdrHistogram percentile text) here.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    #[command(flatten)]
    pub io: crate::node::IoArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Send,
    Rpc,
    Query,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Send => "send",
            Mode::Rpc => "rpc",
            Mode::Query => "query",
        }
    }
}

/// What every generator shares.
struct Shared {
    stats: Stats,
    /// Set once every link is up: generation starts at `t0`.
    go: AtomicBool,
    t0: std::sync::OnceLock<Instant>,
    stop: AtomicBool,
    /// Pairs whose link is up.
    linked: AtomicUsize,
    /// Messages accepted and not yet resolved.
    in_flight: AtomicU64,
}

#[derive(Clone)]
struct Plan {
    mode: Mode,
    targets: Vec<NodeId>,
    payload: Bytes,
    msg: Message,
    query: Value,
    /// Seconds between messages per generator (open loop), or None.
    interval: Option<f64>,
    window: usize,
    expiry: Duration,
}

/// Send mode: intended send time and target of each message in flight.
type Pending = Rc<RefCell<HashMap<MsgId, (Instant, NodeId)>>>;

/// The load engine: one per shard of each client node.
struct Load {
    plan: Rc<Plan>,
    shared: Arc<Shared>,
    pending: Pending,
}

const SINK: EngineId = EngineId::named("sink");

fn outcome_reason(o: &Outcome) -> &'static str {
    match o {
        Outcome::Delivered => "delivered",
        Outcome::Expired => "expired",
        Outcome::Refused(_) | Outcome::Undeliverable(_) | Outcome::NotQueued(NotQueued::Refused(_)) => "refused",
        Outcome::Unresolved(_) => "link_lost",
        Outcome::NotQueued(NotQueued::QueueFull) => "queue_full",
        Outcome::NotQueued(_) => "shutting_down",
    }
}

impl Load {
    /// Sends one message (or starts one call) to `to`, timed from `t`.
    fn fire(ctx: &ShardCtx, plan: &Rc<Plan>, shared: &Arc<Shared>, pending: &Pending, to: NodeId, t: Instant) {
        match plan.mode {
            Mode::Send => {
                let opts = SendOptions::expiring_in(plan.expiry).notify();
                match ctx.send(to, SINK, plan.msg.clone(), opts) {
                    Ok(id) => {
                        shared.stats.sent.fetch_add(1, Ordering::Relaxed);
                        shared.in_flight.fetch_add(1, Ordering::Relaxed);
                        pending.borrow_mut().insert(id, (t, to));
                    }
                    Err(SendError::Full(_)) => shared.stats.error("queue_full"),
                    Err(_) => shared.stats.error("refused"),
                }
            }
            Mode::Rpc | Mode::Query => {
                shared.stats.sent.fetch_add(1, Ordering::Relaxed);
                shared.in_flight.fetch_add(1, Ordering::Relaxed);
                let (shared, size) = (shared.clone(), plan.payload.len() as u64);
                let closed = plan.interval.is_none();
                let again = (ctx.clone(), plan.clone(), pending.clone());
                if plan.mode == Mode::Rpc {
                    let call =
                        ctx.call(to, services::RPC_ECHO, services::METHOD_ECHO, plan.payload.clone(), plan.expiry);
                    ctx.spawn(async move {
                        match call.await {
                            Ok(_) => shared.stats.ack(t.elapsed(), size),
                            Err(e) => shared.stats.error(e.reason()),
                        }
                        Self::done(&shared, closed, again, to);
                    });
                } else {
                    let call = ctx.query(to, plan.query.clone(), plan.expiry);
                    ctx.spawn(async move {
                        match call.await {
                            Ok(r) if r.error().is_none() => shared.stats.ack(t.elapsed(), size),
                            Ok(r) => shared.stats.error(if r.error().as_deref() == Some("LOAD") {
                                "load"
                            } else {
                                "result_error"
                            }),
                            Err(e) => shared.stats.error(match e {
                                shardwire::node::PeerError::Timeout => "deadline",
                                shardwire::node::PeerError::Busy => "queue_full",
                                _ => "link_lost",
                            }),
                        }
                        Self::done(&shared, closed, again, to);
                    });
                }
            }
        }
    }

    /// One message resolved; closed loop sends the next.
    fn done(shared: &Arc<Shared>, closed: bool, again: (ShardCtx, Rc<Plan>, Pending), to: NodeId) {
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        if closed && !shared.stop.load(Ordering::Relaxed) && !again.0.is_stopping() {
            Self::fire(&again.0, &again.1, shared, &again.2, to, Instant::now());
        }
    }

    /// The generator of one target, on the shard owning its link.
    async fn generate(ctx: ShardCtx, plan: Rc<Plan>, shared: Arc<Shared>, pending: Pending, to: NodeId) {
        while !shared.go.load(Ordering::Acquire) {
            if shared.stop.load(Ordering::Relaxed) || ctx.is_stopping() {
                return;
            }
            ctx.sleep(Duration::from_millis(1)).await;
        }
        let t0 = *shared.t0.get().unwrap_or(&Instant::now());
        let Some(interval) = plan.interval else {
            // Closed loop: fill the window; each answer sends the next.
            for _ in 0..plan.window {
                Self::fire(&ctx, &plan, &shared, &pending, to, Instant::now());
            }
            return;
        };
        let mut i: u64 = 0;
        while !shared.stop.load(Ordering::Relaxed) && !ctx.is_stopping() {
            let now = Instant::now();
            let mut burst = 0;
            loop {
                let intended = t0 + Duration::from_secs_f64(interval * i as f64);
                if intended > now || burst == 4096 {
                    break;
                }
                Self::fire(&ctx, &plan, &shared, &pending, to, intended);
                i += 1;
                burst += 1;
            }
            // Sleep (never spin with yield_now: glommio polls sockets and
            // timers only when its task queues are idle or its preemption
            // timer fires). Messages due meanwhile go out in one burst,
            // timed from their intended send times.
            let next = t0 + Duration::from_secs_f64(interval * i as f64);
            let wait = next.saturating_duration_since(Instant::now()).max(Duration::from_micros(50));
            ctx.sleep(wait).await;
        }
    }
}

impl Engine for Load {
    fn on_start(&mut self, ctx: &ShardCtx) {
        for &to in &self.plan.targets {
            if shard_of(&to, ctx.shards()) == ctx.shard() {
                let f = Self::generate(ctx.clone(), self.plan.clone(), self.shared.clone(), self.pending.clone(), to);
                ctx.spawn(f);
            }
        }
    }

    fn on_message(&mut self, _ctx: &ShardCtx, _from: NodeId, _msg: EngineMsg) {}

    fn on_outcome(&mut self, ctx: &ShardCtx, id: MsgId, outcome: Outcome, _returned: Option<Box<EngineMsg>>) {
        let Some((t, to)) = self.pending.borrow_mut().remove(&id) else { return };
        let s = &self.shared;
        match outcome {
            Outcome::Delivered => s.stats.ack(t.elapsed(), self.plan.payload.len() as u64),
            o => s.stats.error(outcome_reason(&o)),
        }
        s.in_flight.fetch_sub(1, Ordering::Relaxed);
        // Closed loop: the next message to the same target.
        if self.plan.interval.is_none() && !s.stop.load(Ordering::Relaxed) && !ctx.is_stopping() {
            Self::fire(ctx, &self.plan, s, &self.pending, to, Instant::now());
        }
    }

    fn on_link(&mut self, _ctx: &ShardCtx, node: NodeId, up: bool) {
        if up && self.plan.targets.contains(&node) {
            self.shared.linked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The largest `--window`: a node queues at most this many messages per
/// peer by default (`ProxyConfig::queue_max_msgs`), and every call in
/// flight is a task, so a mistyped window would only fill memory.
const MAX_WINDOW: usize = 65_536;

pub fn run(args: LoadgenArgs) -> ExitCode {
    if args.connections == 0
        || args.connections > 64
        || args.shards == 0
        || args.window == 0
        || args.window > MAX_WINDOW
    {
        eprintln!("error: --connections must be 1 to 64, --window 1 to {MAX_WINDOW}, --shards at least 1");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    if args.size > 4 << 20 {
        eprintln!("error: --size at most 4MiB");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    if args.rate.is_some_and(|r| r <= 0.0) {
        eprintln!("error: --rate must be positive");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let first = match args.key.as_deref().map(crate::node::load_key).transpose() {
        Ok(first) => first,
        Err(code) => return code,
    };
    let cfg = WireConfig::default();
    let payload = measure::payload(args.size);
    let msg = match encode_message(MessageType::Other(0x80), &Value::Blob(payload.clone()), &cfg)
        .map_err(|e| e.to_string())
        .and_then(|b| Message::decode(b, &cfg).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: cannot build a {}-byte message: {e}", args.size);
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let units = (args.connections * args.targets.len()) as f64;
    let plan = Plan {
        mode: args.mode,
        targets: args.targets.iter().map(|t| t.id).collect(),
        payload: payload.clone(),
        msg,
        query: Value::Blob(payload),
        interval: args.rate.map(|r| units / r),
        window: args.window,
        expiry: args.expiry,
    };
    let shared = Arc::new(Shared {
        stats: Stats::default(),
        go: AtomicBool::new(false),
        t0: std::sync::OnceLock::new(),
        stop: AtomicBool::new(false),
        linked: AtomicUsize::new(0),
        in_flight: AtomicU64::new(0),
    });

    // The client nodes.
    let mut nodes: Vec<NodeHandle> = Vec::new();
    let mut first = first;
    for _ in 0..args.connections {
        let (plan, shared) = (plan.clone(), shared.clone());
        let mut b = Node::builder()
            .identity(first.take().unwrap_or_else(Identity::generate))
            .shards(Shards::Count(args.shards))
            .configure(|c| {
                c.default_expiry = args.expiry;
                args.io.apply(c);
            })
            .engine("loadgen", move |_| Load {
                plan: Rc::new(plan.clone()),
                shared: shared.clone(),
                pending: Rc::new(RefCell::new(HashMap::new())),
            });
        for t in &args.targets {
            b = b.peer(t.id, t.addr, Permanence::Permanent);
        }
        match b.start() {
            Ok(n) => nodes.push(n),
            Err(e) => {
                eprintln!("error: cannot start a client node: {e}");
                return crate::node::start_failure(&e);
            }
        }
    }
    let stop_all = |nodes: &[NodeHandle]| {
        for n in nodes {
            n.shutdown(Duration::from_secs(2));
        }
    };

    // Wait for every link; a handshake that cannot succeed ends the tool.
    let want = args.connections * args.targets.len();
    let deadline = Instant::now() + args.connect_timeout;
    let mut over_capacity = 0u64;
    let mut last_error: Option<DialError> = None;
    while shared.linked.load(Ordering::Relaxed) < want {
        for n in &nodes {
            while let Ok(ev) = n.events().try_recv() {
                if let NodeEvent::DialFailed { node, error } = ev {
                    if error.is_fatal() {
                        let addr = args.targets.iter().find(|t| t.id == node).map(|t| t.addr.to_string());
                        eprintln!("error: cannot connect to {node}@{}: {error}", addr.unwrap_or_default());
                        stop_all(&nodes);
                        return ExitCode::from(1);
                    }
                    if error == DialError::OverCapacity {
                        over_capacity += 1;
                        shared.stats.error("over_capacity");
                    }
                    last_error = Some(error);
                }
            }
        }
        if Instant::now() > deadline {
            let why = last_error.map_or("no answer".to_string(), |e| e.to_string());
            eprintln!(
                "error: only {} of {want} links came up within {:?} ({why})",
                shared.linked.load(Ordering::Relaxed),
                args.connect_timeout
            );
            stop_all(&nodes);
            return ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Drain events from here on in the background (bounded queues).
    let t0 = Instant::now();
    let _ = shared.t0.set(t0);
    shared.go.store(true, Ordering::Release);

    let mut last = (0, 0);
    let mut tick = t0;
    let end = t0 + args.duration;
    while Instant::now() < end {
        let next = (tick + Duration::from_secs(1)).min(end);
        while Instant::now() < next {
            for n in &nodes {
                while n.events().try_recv().is_ok() {}
            }
            measure::sleep_until((Instant::now() + Duration::from_millis(20)).min(next));
        }
        let now = Instant::now();
        measure::progress(now - t0, now - tick, &shared.stats, &mut last);
        tick = now;
    }
    shared.stop.store(true, Ordering::Relaxed);
    let gen_secs = t0.elapsed().as_secs_f64();
    // Let what is in flight resolve (bounded by the expiry).
    let drain_end = Instant::now() + args.expiry.min(Duration::from_secs(30));
    while shared.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drain_end {
        for n in &nodes {
            while n.events().try_recv().is_ok() {}
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    stop_all(&nodes);

    let s = &shared.stats;
    let (sent, acked) = (s.sent.load(Ordering::Relaxed), s.acked.load(Ordering::Relaxed));
    let errors = s.errors();
    let failed: u64 =
        errors.iter().filter(|(k, _)| **k != "queue_full" && **k != "over_capacity").map(|(_, v)| v).sum();
    let lost = sent.saturating_sub(acked + failed);
    let h = s.total();
    let bytes = s.bytes.load(Ordering::Relaxed);
    if let Some(p) = &args.hgrm {
        if let Err(e) = measure::write_hgrm(p, &h) {
            eprintln!("error: cannot write {}: {e}", p.display());
        }
    }
    let errors_json: serde_json::Map<String, serde_json::Value> =
        errors.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
    let mut errors_json = errors_json;
    if lost > 0 {
        errors_json.insert("lost_without_reason".into(), serde_json::json!(lost));
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "mode": args.mode.name(), "targets": args.targets.len(), "connections": args.connections,
                "size": args.size, "duration_s": (gen_secs * 1000.0).round() / 1000.0,
                "rate": args.rate, "sent": sent, "acked": acked, "errors": errors_json,
                "msgs_per_s": (acked as f64 / gen_secs).round(),
                "bytes_per_s": (bytes as f64 / gen_secs).round(),
                "latency_us": measure::latency_json(&h),
            })
        );
    } else {
        let pace = args.rate.map_or("closed loop (--max)".to_string(), |r| format!("open loop at {r:.0} msgs/s"));
        println!(
            "{} to {} target(s), {} connection(s), {} B messages, {pace}, {gen_secs:.2} s",
            args.mode.name(),
            args.targets.len(),
            args.connections,
            args.size
        );
        println!(
            "  sent {sent}, acknowledged {acked}: {:.0} msgs/s, {:.2} MB/s",
            acked as f64 / gen_secs,
            bytes as f64 / gen_secs / 1e6
        );
        measure::print_latency_table(&h);
        if errors.is_empty() && lost == 0 {
            println!("  errors: none");
        } else {
            println!("  errors: {}", serde_json::Value::Object(errors_json.clone()));
        }
        if over_capacity > 0 {
            println!("  the target refused {over_capacity} dial(s) as over capacity (retried with backoff)");
        }
    }
    if lost > 0 {
        eprintln!("error: {lost} message(s) lost without a reason");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
