//! Cross-shard traffic under a flood: an engine on one shard sending as fast
//! as it can to a peer that another shard owns must meet backpressure
//! (`SendError::Full`) while the node's memory stays bounded. Before the
//! cross-shard queues bounded items (not only batches), this flood grew the
//! process by gigabytes a second until the OOM killer ended it.
//!
//! A test binary of its own: it watches the process's resident memory, which
//! tests running beside it would disturb.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use shardwire::handshake::NodeId;
use shardwire::node::{Engine, SendError, SendOptions, ShardCtx};
use shardwire::proxy::{EngineId, EngineMsg, Permanence};

/// The process's resident memory in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[derive(Default)]
struct Tally {
    accepted: AtomicU64,
    full: AtomicU64,
    received: AtomicU64,
    stop: AtomicBool,
}

/// Floods `to` from shard 0 until told to stop.
struct Flood {
    to: NodeId,
    tally: Arc<Tally>,
}

impl Engine for Flood {
    fn on_start(&mut self, ctx: &ShardCtx) {
        if ctx.shard() != 0 {
            return;
        }
        let (c, to, t) = (ctx.clone(), self.to, self.tally.clone());
        ctx.spawn(async move {
            let m = msg(1, 64);
            while !t.stop.load(Ordering::Relaxed) && !c.is_stopping() {
                for _ in 0..256 {
                    match c.send(to, EngineId::named("sink"), m.clone(), SendOptions::default()) {
                        Ok(_) => t.accepted.fetch_add(1, Ordering::Relaxed),
                        Err(SendError::Full(_)) => t.full.fetch_add(1, Ordering::Relaxed),
                        Err(_) => return,
                    };
                }
                c.yield_now().await;
            }
        });
    }

    fn on_message(&mut self, _: &ShardCtx, _: NodeId, _: EngineMsg) {}
}

struct Sink(Arc<Tally>);

impl Engine for Sink {
    fn on_message(&mut self, _: &ShardCtx, _: NodeId, _: EngineMsg) {
        self.0.received.fetch_add(1, Ordering::Relaxed);
    }
}

/// One flood at a time: both IO-path variants run in this one process and
/// would see each other's memory.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn a_flood_across_shards_meets_backpressure_and_memory_stays_bounded() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tally = Arc::new(Tally::default());
    // B is owned by A's shard 1; the flood runs on A's shard 0.
    let t = tally.clone();
    let b = bare_builder(1)
        .identity(identity_on(1))
        .listen("127.0.0.1:0".parse().unwrap())
        .engine("sink", move |_| Sink(t.clone()))
        .start()
        .unwrap();
    let (to, addr, t) = (b.node_id(), b.listen_addr().unwrap(), tally.clone());
    let before = rss_kib();
    let a = bare_builder(2)
        .peer(to, addr, Permanence::Permanent)
        .engine("flood", move |_| Flood { to, tally: t.clone() })
        .start()
        .unwrap();
    assert_eq!(a.io_mode(), io_path());
    // Two seconds of flood, watching memory; stop at once if it runs away.
    let (end, mut grew) = (Instant::now() + Duration::from_secs(2), 0);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        grew = grew.max(rss_kib().saturating_sub(before));
        if grew > 2 << 20 {
            break;
        }
    }
    tally.stop.store(true, Ordering::Relaxed);
    let (accepted, full) = (tally.accepted.load(Ordering::Relaxed), tally.full.load(Ordering::Relaxed));
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
    // Bounded queues on the way: 65,536 messages held for the other shard,
    // 65,536 in its queue, 65,536 in the peer's proxy queue, each ~1 KiB of
    // memory at most with its bookkeeping: well under 1 GiB.
    assert!(grew < 1 << 20, "memory grew by {grew} KiB during the flood ({accepted} sends accepted)");
    assert!(full > 0, "the flooding engine never saw backpressure ({accepted} sends accepted)");
    assert!(tally.received.load(Ordering::Relaxed) > 0, "nothing reached the peer");
}

on_both_io_paths!(a_flood_across_shards_meets_backpressure_and_memory_stays_bounded);
