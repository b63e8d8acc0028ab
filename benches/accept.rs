//! Accepting connections: every shard accepting through SO_REUSEPORT versus
//! one acceptor shard handing sockets to their owners, measured in the same
//! run (rounds interleaved).
//!
//! `cargo bench --bench accept`
//!
//! Client threads (std sockets) connect, complete the Noise handshake with a
//! 2-shard node, and close, as fast as they can. Reported: handshakes
//! accepted per second for each mode, and the share of links that had to be
//! handed to another shard.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use shardwire::handshake::{HandshakeConfig, Identity, Initiator, NodeId};
use shardwire::node::{ListenShards, Metric, Node, Shards};
use shardwire::wire::{FrameDecoder, write_frame};

fn handshake(addr: SocketAddr, server: NodeId, me: &Identity) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let Ok((init, m1)) = Initiator::start(me, server, 0, 0, &HandshakeConfig::default(), now) else { return false };
    let mut out = BytesMut::new();
    write_frame(&mut out, &m1);
    if s.write_all(&out).is_err() {
        return false;
    }
    let mut dec = FrameDecoder::new(256);
    let mut buf = BytesMut::new();
    loop {
        if let Ok(Some(f)) = dec.decode(&mut buf) {
            return init.read_reply(&f, now).is_ok();
        }
        let mut chunk = [0u8; 256];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// CPU seconds used so far by the node's shard threads (named `shardwire-N`).
fn shard_cpu_secs() -> f64 {
    // SAFETY: sysconf takes no pointers.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("shardwire-") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3; utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = [11, 12].iter().filter_map(|&i| f.get(i)?.parse::<f64>().ok()).sum();
        total += ticks / tick;
    }
    total
}

/// (handshakes/s, share handed over, handshakes per shard-CPU-second).
fn round(mode: &ListenShards, secs: f64) -> (f64, f64, f64) {
    let node = Node::builder()
        .identity(Identity::generate())
        .listen("127.0.0.1:0".parse().unwrap())
        .shards(Shards::Count(2))
        .configure(|c| c.listen_shards = mode.clone())
        .start()
        .unwrap();
    let (addr, id) = (node.listen_addr().unwrap(), node.node_id());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                // Many client identities, as a connection storm would have.
                let ids: Vec<Identity> = (0..64).map(|_| Identity::generate()).collect();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    if handshake(addr, id, &ids[i % ids.len()]) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let t = Instant::now();
    let (n0, cpu0) = (done.load(Ordering::Relaxed), shard_cpu_secs());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let n = done.load(Ordering::Relaxed) - n0;
    let cpu = shard_cpu_secs() - cpu0;
    let elapsed = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let handed = node.metric(Metric::cross_shard_batches) as f64;
    let ok = node.metric(Metric::handshakes_ok).max(1) as f64;
    node.shutdown(Duration::from_secs(1));
    (n as f64 / elapsed, handed / ok, n as f64 / cpu.max(0.01))
}

fn main() {
    let modes =
        [("all shards (SO_REUSEPORT)", ListenShards::All), ("one acceptor, hand-over", ListenShards::Only(vec![0]))];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(), Vec::new()];
    let mut handed: Vec<Vec<f64>> = vec![Vec::new(), Vec::new()];
    let mut per_cpu: Vec<Vec<f64>> = vec![Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (i, (_, m)) in modes.iter().enumerate() {
            let (r, h, c) = round(m, 2.0);
            rates[i].push(r);
            handed[i].push(h);
            per_cpu[i].push(c);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    for (i, (name, _)) in modes.iter().enumerate() {
        let h: f64 = handed[i].iter().sum::<f64>() / handed[i].len() as f64;
        println!(
            "accept {name}: median {:.0} handshakes/s (rounds {:?}), {:.0} per shard-CPU-second, handed over ~{:.0}%",
            median(&rates[i]),
            rates[i].iter().map(|x| x.round()).collect::<Vec<_>>(),
            median(&per_cpu[i]),
            h * 100.0
        );
    }
}
