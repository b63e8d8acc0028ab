//! `shardwire latency`: ping-pong round trips against a node running the
//! `echo` engine, reported as HDR-histogram percentiles, an `.hgrm` file
//! and an SVG plot.
//!
//! Without `--rate` one ping is in flight at a time (each reply triggers
//! the next). With `--rate R` pings leave at their intended times whatever
//! the replies do, and each round trip is measured from its intended send
//! time (coordinated-omission corrected).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use shardwire::handshake::{Identity, NodeId};
use shardwire::node::{Engine, Node, NodeEvent, SendOptions, ShardCtx, Shards};
use shardwire::proxy::{EngineId, EngineMsg, Permanence};
use shardwire::wire::{Message, MessageType, Value, WireConfig, encode_message};

use crate::EXIT_BAD_INPUT;
use crate::measure::{self, Stats};
use crate::node::{Peer, parse_peer};

#[derive(Args)]
pub struct LatencyArgs {
    /// The node to ping (it must run `--service echo`): NODEID@ADDR.
    #[arg(long, value_parser = parse_peer)]
    pub target: Peer,
    /// Key file; without it a fresh identity is made.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Payload bytes per ping.
    #[arg(long, default_value = "64", value_parser = crate::units::parse_size)]
    pub size: usize,
    /// Round trips to measure (default 10000 unless --duration is given).
    #[arg(long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Measure for this long instead of a count.
    #[arg(long, value_parser = crate::units::parse_positive_duration)]
    pub duration: Option<Duration>,
    /// Pings per second, sent on schedule (open loop); without it, one at a time.
    #[arg(long, value_parser = crate::units::parse_rate)]
    pub rate: Option<f64>,
    /// Round trips before measuring (not recorded).
    #[arg(long, default_value_t = 200)]
    pub warmup: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG latency-by-percentile plot here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write HdrHistogram's percentile distribution text here.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// glommio path: busy-poll this long before the client shard parks,
    /// e.g. 50us (0: park at once). The ring path spins per --ring-spin.
    #[arg(long, default_value = "0s", value_parser = crate::units::parse_duration)]
    pub spin: Duration,
    #[command(flatten)]
    pub io: crate::node::IoArgs,
}

const ECHO: EngineId = EngineId::named("echo");

struct Shared {
    stats: Stats,
    /// Round trips completed (warm-up included), and how many to make.
    done: AtomicU64,
    limit: u64,
    /// Stop sending.
    stop: AtomicBool,
    linked: AtomicBool,
}

struct Ping {
    target: NodeId,
    msg_of: Rc<dyn Fn(u64) -> Message>,
    rate: Option<f64>,
    warmup: u64,
    size: u64,
    shared: Arc<Shared>,
    /// Send time (intended, with a rate) by sequence number.
    sent: Rc<RefCell<HashMap<u64, Instant>>>,
    next_seq: Rc<std::cell::Cell<u64>>,
}

impl Ping {
    fn send(&self, ctx: &ShardCtx, t: Instant) {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        self.sent.borrow_mut().insert(seq, t);
        if ctx.send(self.target, ECHO, (self.msg_of)(seq), SendOptions::expiring_in(Duration::from_secs(10))).is_err() {
            self.sent.borrow_mut().remove(&seq);
            self.shared.stats.error("queue_full");
        }
    }
}

impl Engine for Ping {
    fn on_link(&mut self, ctx: &ShardCtx, node: NodeId, up: bool) {
        if node != self.target || !up || self.shared.linked.swap(true, Ordering::Relaxed) {
            return;
        }
        match self.rate {
            None => self.send(ctx, Instant::now()),
            Some(rate) => {
                // Open loop: a task sends on schedule.
                let me = Ping {
                    target: self.target,
                    msg_of: self.msg_of.clone(),
                    rate: self.rate,
                    warmup: self.warmup,
                    size: self.size,
                    shared: self.shared.clone(),
                    sent: self.sent.clone(),
                    next_seq: self.next_seq.clone(),
                };
                let ctx2 = ctx.clone();
                ctx.spawn(async move {
                    let t0 = Instant::now();
                    let mut i = 0u64;
                    while !me.shared.stop.load(Ordering::Relaxed) && !ctx2.is_stopping() {
                        let now = Instant::now();
                        loop {
                            let at = t0 + Duration::from_secs_f64(i as f64 / rate);
                            if at > now {
                                break;
                            }
                            me.send(&ctx2, at);
                            i += 1;
                        }
                        let next = t0 + Duration::from_secs_f64(i as f64 / rate);
                        ctx2.sleep(next.saturating_duration_since(Instant::now()).max(Duration::from_micros(20))).await;
                    }
                });
            }
        }
    }

    fn on_message(&mut self, ctx: &ShardCtx, _from: NodeId, msg: EngineMsg) {
        let now = Instant::now();
        let Some(seq) = msg.msg.element(0).and_then(|c| c.as_long()) else { return };
        let Some(t) = self.sent.borrow_mut().remove(&(seq as u64)) else { return };
        let n = self.shared.done.fetch_add(1, Ordering::Relaxed);
        if n >= self.shared.limit {
            self.shared.stop.store(true, Ordering::Relaxed);
            return;
        }
        if n + 1 == self.shared.limit {
            self.shared.stop.store(true, Ordering::Relaxed);
        }
        if n >= self.warmup {
            self.shared.stats.sent.fetch_add(1, Ordering::Relaxed);
            self.shared.stats.ack(now - t, self.size);
        }
        if self.rate.is_none() && !self.shared.stop.load(Ordering::Relaxed) {
            self.send(ctx, Instant::now());
        }
    }
}

pub fn run(args: LatencyArgs) -> ExitCode {
    if args.rate.is_some_and(|r| r <= 0.0) {
        eprintln!("error: --rate must be positive");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    if args.size > 4 << 20 {
        eprintln!("error: --size at most 4MiB");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let identity = match args.key.as_deref().map(crate::node::load_key).transpose() {
        Ok(i) => i.unwrap_or_else(Identity::generate),
        Err(code) => return code,
    };
    let count = if args.duration.is_some() { u64::MAX } else { args.count.unwrap_or(10_000) };
    let shared = Arc::new(Shared {
        stats: Stats::default(),
        done: AtomicU64::new(0),
        limit: count.saturating_add(args.warmup),
        stop: AtomicBool::new(false),
        linked: AtomicBool::new(false),
    });
    let (target, rate, warmup, size, sh) = (args.target.id, args.rate, args.warmup, args.size, shared.clone());
    let node = Node::builder()
        .identity(identity)
        .shards(Shards::Count(1))
        .peer(target, args.target.addr, Permanence::Permanent)
        .configure(|c| {
            c.spin_before_park = args.spin;
            args.io.apply(c);
        })
        .engine("latency", move |_| {
            let pad = measure::payload(size);
            let cfg = WireConfig::default();
            let msg_of = move |seq: u64| {
                let v = Value::Vector(vec![Value::Long(seq as i64), Value::Blob(pad.clone())]);
                let b = encode_message(MessageType::Other(0x80), &v, &cfg).expect("a ping encodes");
                Message::decode(b, &cfg).expect("a ping decodes")
            };
            Ping {
                target,
                msg_of: Rc::new(msg_of),
                rate,
                warmup,
                size: size as u64,
                shared: sh.clone(),
                sent: Rc::default(),
                next_seq: Rc::new(std::cell::Cell::new(1)),
            }
        })
        .start();
    let node = match node {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    // Connect, stopping at once on a handshake that cannot succeed.
    let deadline = Instant::now() + Duration::from_secs(10);
    // The last retried dial failure says why no link came up.
    let mut last_error = None;
    while !shared.linked.load(Ordering::Relaxed) {
        while let Ok(ev) = node.events().try_recv() {
            if let NodeEvent::DialFailed { error, .. } = ev {
                if error.is_fatal() {
                    eprintln!("error: cannot connect to {}@{}: {error}", args.target.id, args.target.addr);
                    node.shutdown(Duration::from_millis(200));
                    return ExitCode::from(1);
                }
                last_error = Some(error);
            }
        }
        if Instant::now() > deadline {
            let why = last_error.map_or("no answer".to_string(), |e| e.to_string());
            eprintln!("error: no link to {}@{} within 10 s ({why})", args.target.id, args.target.addr);
            node.shutdown(Duration::from_millis(200));
            return ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let t0 = Instant::now();
    let end = args.duration.map(|d| t0 + d);
    let mut last = (0, 0);
    let mut tick = t0;
    // No reply for 5 s while pinging one at a time: the echo node is not answering.
    let mut last_done = (0u64, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(10));
        while node.events().try_recv().is_ok() {}
        let done = shared.done.load(Ordering::Relaxed);
        if done >= count.saturating_add(warmup) || end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
        if done != last_done.0 {
            last_done = (done, Instant::now());
        } else if last_done.1.elapsed() > Duration::from_secs(5) {
            eprintln!("error: no reply for 5 s: does the target run `--service echo`?");
            node.shutdown(Duration::from_millis(200));
            return ExitCode::from(1);
        }
        if tick.elapsed() >= Duration::from_secs(1) {
            let now = Instant::now();
            measure::progress(now - t0, now - tick, &shared.stats, &mut last);
            tick = now;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    node.shutdown(Duration::from_millis(500));
    let h = shared.stats.total();
    if let Some(p) = &args.hgrm {
        if let Err(e) = measure::write_hgrm(p, &h) {
            eprintln!("error: cannot write {}: {e}", p.display());
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    }
    if let Some(p) = &args.plot {
        let title = format!("shardwire ping-pong, {} B", args.size);
        if let Err(e) = measure::write_plot(p, &title, &[("round trip", &h)]) {
            eprintln!("error: cannot write {}: {e}", p.display());
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"size": args.size, "count": h.len(), "rate": args.rate,
                "latency_us": measure::latency_json(&h)})
        );
    } else {
        let pace = args.rate.map_or("one at a time".to_string(), |r| format!("{r:.0} pings/s on schedule"));
        println!("ping-pong with {}, {} B, {pace}: {} round trips", args.target.id.short(), args.size, h.len());
        measure::print_latency_table(&h);
    }
    ExitCode::SUCCESS
}
