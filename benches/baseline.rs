//! shardwire against baselines on the same loopback work, in the same run.
//!
//! `cargo bench --bench baseline [-- oneway|pingpong]`
//!
//! One link, sender and receiver pinned to different cores (CPU 0 and 1):
//!
//! - one-way 64 B, 1 KiB, 64 KiB messages, as fast as the receiver takes
//!   them (msgs/s and GB/s of payload, measured at the receiver after a
//!   warm-up);
//! - ping-pong with 64 B messages (p50 / p99 round trip), with both sides
//!   sleeping between messages and with both busy-polling.
//!
//! Baselines: blocking `std::net` with u32 length framing and no encryption
//! (the floor on this machine); raw glommio TCP with minimal framing (this
//! runtime's own floor); tokio + tokio-util's `LengthDelimitedCodec` with
//! each message sealed by AES-256-GCM from aws-lc-rs (what a user would
//! otherwise write). Each figure is also printed as a ratio to the
//! baselines, since this shared VM's absolute speed drifts.
//!
//! Modes for profiling and A/B runs (`benches/ab.py`): `-- profile-SIZE`
//! (shardwire one-way at SIZE beside tokio+AEAD), `-- profile-pingpong`
//! (spinning ping-pong beside busy-polling std), `-- profile-parked`
//! (ping-pong with shards that sleep when idle, in their ring and through
//! glommio, beside sleeping std), `-- profile-cross` (send to
//! delivered and one-way rate from a peer's owner shard and from another
//! shard of a two-shard node; RPC round trips the same way; an engine task
//! woken from a thread outside the node; that one alone:
//! `-- profile-foreign`), `-- profile-stages` (with `--features
//! stage-trace`: a ping-pong side's time, stage by stage).

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;

const CPU_A: usize = 0;
const CPU_B: usize = 1;
const WARM: Duration = Duration::from_millis(300);
const RUN: Duration = Duration::from_millis(1500);
const PINGS: usize = 20_000;
const PING_WARM: usize = 2_000;

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn payload(size: usize) -> Bytes {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size);
    Bytes::from(v)
}

#[derive(Clone, Copy)]
struct OneWay {
    msgs: f64,
    gbps: f64,
    /// shardwire ring path: the share of received bytes copied to join
    /// records that spanned provided buffers.
    joined: Option<f64>,
}

#[derive(Clone, Copy)]
struct PingPong {
    p50: f64,
    p99: f64,
}

/// Counts at the receiver; the main thread samples them.
#[derive(Default)]
struct Counter {
    msgs: AtomicU64,
    bytes: AtomicU64,
    stop: AtomicBool,
}

/// Samples `c` after the warm-up and after the run, then stops the senders.
fn measure(c: &Counter) -> OneWay {
    std::thread::sleep(WARM);
    let (m0, b0, t0) = (c.msgs.load(Ordering::Relaxed), c.bytes.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(RUN);
    let (m1, b1, t1) = (c.msgs.load(Ordering::Relaxed), c.bytes.load(Ordering::Relaxed), Instant::now());
    c.stop.store(true, Ordering::Relaxed);
    let s = (t1 - t0).as_secs_f64();
    OneWay { msgs: (m1 - m0) as f64 / s, gbps: (b1 - b0) as f64 / s / 1e9, joined: None }
}

fn percentiles(h: &Histogram<u64>) -> PingPong {
    PingPong { p50: h.value_at_quantile(0.5) as f64 / 1000.0, p99: h.value_at_quantile(0.99) as f64 / 1000.0 }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap()
}

// ---------------------------------------------------------------- std

fn std_oneway(size: usize) -> OneWay {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let c = Arc::new(Counter::default());
    let rc = c.clone();
    let rx = std::thread::spawn(move || {
        pin(CPU_B);
        let (s, _) = l.accept().unwrap();
        let mut r = BufReader::with_capacity(256 << 10, s);
        let mut body = vec![0u8; size];
        let mut len = [0u8; 4];
        while r.read_exact(&mut len).is_ok() {
            let n = u32::from_be_bytes(len) as usize;
            if r.read_exact(&mut body[..n]).is_err() {
                break;
            }
            rc.msgs.fetch_add(1, Ordering::Relaxed);
            rc.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    let sc = c.clone();
    let tx = std::thread::spawn(move || {
        pin(CPU_A);
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut w = BufWriter::with_capacity(256 << 10, s);
        let p = payload(size);
        while !sc.stop.load(Ordering::Relaxed) {
            for _ in 0..64 {
                w.write_all(&(size as u32).to_be_bytes()).unwrap();
                w.write_all(&p).unwrap();
            }
        }
        let _ = w.flush();
    });
    let r = measure(&c);
    tx.join().unwrap();
    rx.join().unwrap();
    r
}

fn std_pingpong(busy: bool) -> PingPong {
    std_pingpong_timing_sends(busy, false).0
}

/// The same, and with `time_sends` the median time of the client's send
/// call (the kernel's send, including the loopback delivery to the peer).
fn std_pingpong_timing_sends(busy: bool, time_sends: bool) -> (PingPong, f64) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let read_full = move |s: &mut TcpStream, buf: &mut [u8]| -> bool {
        let mut got = 0;
        while got < buf.len() {
            match s.read(&mut buf[got..]) {
                Ok(0) => return false,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(_) => return false,
            }
        }
        true
    };
    let srv = std::thread::spawn(move || {
        pin(CPU_B);
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        s.set_nonblocking(busy).unwrap();
        let mut buf = [0u8; 68];
        while read_full(&mut s, &mut buf) {
            if s.write_all(&buf).is_err() {
                break;
            }
        }
    });
    pin(CPU_A);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_nonblocking(busy).unwrap();
    let mut msg = [0u8; 68];
    msg[..4].copy_from_slice(&64u32.to_be_bytes());
    let mut buf = [0u8; 68];
    let mut h = hist();
    let mut sends = hist();
    for i in 0..PINGS + PING_WARM {
        let t = Instant::now();
        s.write_all(&msg).unwrap();
        if time_sends && i >= PING_WARM {
            sends.saturating_record(t.elapsed().as_nanos() as u64);
        }
        assert!(read_full(&mut s, &mut buf));
        if i >= PING_WARM {
            h.saturating_record(t.elapsed().as_nanos() as u64);
        }
    }
    drop(s);
    srv.join().unwrap();
    unpin();
    (percentiles(&h), percentiles(&sends).p50)
}

fn unpin() {
    // SAFETY: as in `pin`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in 0..std::thread::available_parallelism().map_or(1, |n| n.get()) {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

// ---------------------------------------------------------------- glommio

fn glommio_oneway(size: usize) -> OneWay {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::{LocalExecutorBuilder, Placement};
    let c = Arc::new(Counter::default());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let rc = c.clone();
    let rx = LocalExecutorBuilder::new(Placement::Fixed(CPU_B))
        .spawn(move || async move {
            let l = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            addr_tx.send(l.local_addr().unwrap()).unwrap();
            let mut s = l.accept().await.unwrap();
            let mut buf = BytesMut::with_capacity(512 << 10);
            let mut chunk = vec![0u8; 256 << 10];
            loop {
                let n = match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                let (mut m, mut b) = (0, 0);
                while buf.len() >= 4 {
                    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                    if buf.len() < 4 + len {
                        break;
                    }
                    let _ = buf.split_to(4 + len);
                    m += 1;
                    b += len as u64;
                }
                rc.msgs.fetch_add(m, Ordering::Relaxed);
                rc.bytes.fetch_add(b, Ordering::Relaxed);
            }
        })
        .unwrap();
    let addr = addr_rx.recv().unwrap();
    let sc = c.clone();
    let tx = LocalExecutorBuilder::new(Placement::Fixed(CPU_A))
        .spawn(move || async move {
            let mut s = glommio::net::TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let p = payload(size);
            let mut out = BytesMut::with_capacity(256 << 10);
            while !sc.stop.load(Ordering::Relaxed) {
                while out.len() < 256 << 10 {
                    out.extend_from_slice(&(size as u32).to_be_bytes());
                    out.extend_from_slice(&p);
                }
                if s.write_all(&out).await.is_err() {
                    break;
                }
                out.clear();
            }
        })
        .unwrap();
    let r = measure(&c);
    tx.join().unwrap();
    rx.join().unwrap();
    r
}

fn glommio_pingpong(spin: bool) -> PingPong {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::{LocalExecutorBuilder, Placement};
    let spin_d = if spin { Duration::from_secs(5) } else { Duration::ZERO };
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let srv = LocalExecutorBuilder::new(Placement::Fixed(CPU_B))
        .spin_before_park(spin_d)
        .spawn(move || async move {
            let l = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            addr_tx.send(l.local_addr().unwrap()).unwrap();
            let mut s = l.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = [0u8; 68];
            while s.read_exact(&mut buf).await.is_ok() {
                if s.write_all(&buf).await.is_err() {
                    break;
                }
            }
        })
        .unwrap();
    let addr = addr_rx.recv().unwrap();
    let cli = LocalExecutorBuilder::new(Placement::Fixed(CPU_A))
        .spin_before_park(spin_d)
        .spawn(move || async move {
            let mut s = glommio::net::TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut msg = [0u8; 68];
            msg[..4].copy_from_slice(&64u32.to_be_bytes());
            let mut buf = [0u8; 68];
            let mut h = hist();
            for i in 0..PINGS + PING_WARM {
                let t = Instant::now();
                s.write_all(&msg).await.unwrap();
                s.read_exact(&mut buf).await.unwrap();
                if i >= PING_WARM {
                    h.saturating_record(t.elapsed().as_nanos() as u64);
                }
            }
            h
        })
        .unwrap();
    let h = cli.join().unwrap();
    srv.join().unwrap();
    percentiles(&h)
}

// ---------------------------------------------------------------- tokio + AEAD

fn aead_key() -> aws_lc_rs::aead::LessSafeKey {
    use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap())
}

fn nonce(n: u64) -> aws_lc_rs::aead::Nonce {
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_be_bytes());
    aws_lc_rs::aead::Nonce::assume_unique_for_key(b)
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn tokio_oneway(size: usize) -> OneWay {
    use futures_util::{SinkExt, StreamExt};
    use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
    let c = Arc::new(Counter::default());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let rc = c.clone();
    let rx = std::thread::spawn(move || {
        pin(CPU_B);
        tokio_rt().block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            let (s, _) = l.accept().await.unwrap();
            let codec = LengthDelimitedCodec::builder().max_frame_length(1 << 20).new_codec();
            let mut r = FramedRead::with_capacity(s, codec, 256 << 10);
            let key = aead_key();
            let mut n = 0u64;
            while let Some(Ok(mut frame)) = r.next().await {
                let plain =
                    key.open_in_place(nonce(n), aws_lc_rs::aead::Aad::empty(), &mut frame).expect("authentic").len();
                n += 1;
                rc.msgs.fetch_add(1, Ordering::Relaxed);
                rc.bytes.fetch_add(plain as u64, Ordering::Relaxed);
            }
        });
    });
    let sc = c.clone();
    let tx = std::thread::spawn(move || {
        pin(CPU_A);
        tokio_rt().block_on(async move {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let codec = LengthDelimitedCodec::builder().max_frame_length(1 << 20).new_codec();
            let mut w = FramedWrite::new(s, codec);
            let key = aead_key();
            let p = payload(size);
            let mut n = 0u64;
            while !sc.stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    let mut m = BytesMut::with_capacity(size + 16);
                    m.extend_from_slice(&p);
                    key.seal_in_place_append_tag(nonce(n), aws_lc_rs::aead::Aad::empty(), &mut m).unwrap();
                    n += 1;
                    if w.feed(m.freeze()).await.is_err() {
                        return;
                    }
                }
            }
            let _ = SinkExt::<Bytes>::flush(&mut w).await;
        });
    });
    let r = measure(&c);
    tx.join().unwrap();
    rx.join().unwrap();
    r
}

fn tokio_pingpong() -> PingPong {
    use futures_util::{SinkExt, StreamExt};
    use tokio_util::codec::{Framed, LengthDelimitedCodec};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let srv = std::thread::spawn(move || {
        pin(CPU_B);
        tokio_rt().block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            let (s, _) = l.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut f = Framed::new(s, LengthDelimitedCodec::new());
            let key = aead_key();
            let mut n = 0u64;
            while let Some(Ok(mut m)) = f.next().await {
                key.open_in_place(nonce(n), aws_lc_rs::aead::Aad::empty(), &mut m).unwrap();
                m.truncate(m.len() - 16);
                key.seal_in_place_append_tag(nonce(n), aws_lc_rs::aead::Aad::empty(), &mut m).unwrap();
                n += 1;
                if f.send(m.freeze()).await.is_err() {
                    break;
                }
            }
        });
    });
    let h = std::thread::spawn(move || {
        pin(CPU_A);
        tokio_rt().block_on(async move {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut f = Framed::new(s, LengthDelimitedCodec::new());
            let key = aead_key();
            let p = payload(64);
            let mut h = hist();
            for i in 0..PINGS + PING_WARM {
                let t = Instant::now();
                let mut m = BytesMut::from(&p[..]);
                key.seal_in_place_append_tag(nonce(i as u64), aws_lc_rs::aead::Aad::empty(), &mut m).unwrap();
                f.send(m.freeze()).await.unwrap();
                let mut r = f.next().await.unwrap().unwrap();
                key.open_in_place(nonce(i as u64), aws_lc_rs::aead::Aad::empty(), &mut r).unwrap();
                if i >= PING_WARM {
                    h.saturating_record(t.elapsed().as_nanos() as u64);
                }
            }
            h
        })
    })
    .join()
    .unwrap();
    srv.join().unwrap();
    percentiles(&h)
}

// ---------------------------------------------------------------- shardwire

mod sw {
    use super::*;
    use shardwire::handshake::{Identity, NodeId};
    use shardwire::node::{Engine, Metric, Node, NodeHandle, Placement, SendError, SendOptions, ShardCtx, Shards};
    use shardwire::proxy::{EngineId, EngineMsg, MsgId, Outcome, Permanence};
    use shardwire::wire::{Message, MessageType, Value, WireConfig, encode_message};

    pub fn message(size: usize) -> Message {
        let cfg = WireConfig::default();
        let m = encode_message(MessageType::Other(0x80), &Value::Blob(payload(size)), &cfg).unwrap();
        Message::decode(m, &cfg).unwrap()
    }

    /// The ring driver's default sleep in its ring.
    const RING_SLEEP: Duration = Duration::from_millis(5);

    /// How an idle ping-pong node waits for the next message.
    #[derive(Clone, Copy, PartialEq)]
    pub enum Idle {
        /// Polls all the time.
        Spin,
        /// Sleeps at once: inside its ring first (ring path).
        Sleep,
        /// Parks through glommio at once (`ring_sleep` zero).
        Park,
    }

    /// The per-byte work a receiving shard cannot skip for a 64 KiB
    /// message, each timed alone on this core (`-- budget`): opening one
    /// AES-256-GCM record of 64 KiB, decoding the message (which hashes its
    /// sixteen 4 KiB blob leaves and the tree cell with BLAKE3, as the
    /// format requires), and one copy of 64 KiB (the kernel's copy into the
    /// receive buffer costs about as much). Returns microseconds for each
    /// and, for scale, BLAKE3 of 64 KiB in one piece.
    pub fn budget() -> [f64; 4] {
        const N: usize = 2_000;
        let size = 64 << 10;
        let cfg = WireConfig::default();
        let wire = encode_message(MessageType::Other(0x80), &Value::Blob(payload(size)), &cfg).unwrap();
        let key = aead_key();
        let mut sealed = wire.to_vec();
        let tag = key.seal_in_place_separate_tag(nonce(1), aws_lc_rs::aead::Aad::empty(), &mut sealed).unwrap();
        sealed.extend_from_slice(tag.as_ref());
        let plain = payload(size);
        let mut dst = vec![0u8; size];
        let per = |f: &mut dyn FnMut()| {
            let t = Instant::now();
            for _ in 0..N {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / N as f64
        };
        let mut rounds: Vec<[f64; 4]> = Vec::new();
        for _ in 0..5 {
            let open = per(&mut || {
                let mut b = sealed.clone();
                let r = key.open_in_place(nonce(1), aws_lc_rs::aead::Aad::empty(), &mut b).unwrap();
                std::hint::black_box(r.len());
            });
            let decode = per(&mut || {
                let m = Message::decode(wire.clone(), &cfg).unwrap();
                std::hint::black_box(m);
            });
            let copy = per(&mut || {
                dst.copy_from_slice(&plain);
                std::hint::black_box(&dst);
            });
            let hash = per(&mut || {
                std::hint::black_box(blake3::hash(&plain));
            });
            rounds.push([open, decode, copy, hash]);
        }
        let mut out = [0.0; 4];
        for (i, o) in out.iter_mut().enumerate() {
            let mut v: Vec<f64> = rounds.iter().map(|r| r[i]).collect();
            v.sort_by(f64::total_cmp);
            *o = v[v.len() / 2];
        }
        out
    }

    /// A one-shard node pinned to `cpu` on socket path `io`; `spin` is how
    /// long it polls before sleeping (the executor's spin on the glommio
    /// path, the ring driver's on the ring path), `ring_sleep` how long
    /// the ring driver may then sleep in its ring.
    fn node(
        cpu: usize,
        io: IoMode,
        (spin, ring_sleep): (Duration, Duration),
        b: impl FnOnce(shardwire::node::NodeBuilder) -> shardwire::node::NodeBuilder,
    ) -> NodeHandle {
        let n = b(Node::builder()
            .identity(Identity::generate())
            .listen("127.0.0.1:0".parse().unwrap())
            .shards(Shards::Count(1))
            .configure(|c| {
                c.placement = Placement::Cpus(vec![cpu]);
                c.io = io;
                c.spin_before_park = spin;
                c.ring_spin = spin;
                c.ring_sleep = ring_sleep;
                // For A/B runs of the receive buffer size (`-- profile-SIZE`).
                if let Some(n) = std::env::var("SHARDWIRE_RING_BUFFER_SIZE").ok().and_then(|v| v.parse().ok()) {
                    c.ring_buffer_size = n;
                }
            }))
        .start()
        .unwrap();
        assert_eq!(n.io_mode(), io, "the kernel gave the ring this bench asked for");
        n
    }

    struct Sink(Arc<Counter>, u64);
    impl Engine for Sink {
        fn on_message(&mut self, _ctx: &ShardCtx, _from: NodeId, _m: EngineMsg) {
            self.0.msgs.fetch_add(1, Ordering::Relaxed);
            self.0.bytes.fetch_add(self.1, Ordering::Relaxed);
        }
    }

    /// Sends as fast as the proxy queue takes messages.
    struct Blast {
        to: NodeId,
        msg: Message,
        stop: Arc<Counter>,
    }
    impl Engine for Blast {
        fn on_link(&mut self, ctx: &ShardCtx, node: NodeId, up: bool) {
            if node != self.to || !up {
                return;
            }
            ctx.spawn(blast(ctx.clone(), self.to, self.msg.clone(), self.stop.clone()));
        }
        fn on_message(&mut self, _: &ShardCtx, _: NodeId, _: EngineMsg) {}
    }

    /// Sends `msg` to `to`'s sink until the queue is full, sleeps 20 µs,
    /// and again, until told to stop.
    async fn blast(ctx: ShardCtx, to: NodeId, msg: Message, stop: Arc<Counter>) {
        let sink = EngineId::named("sink");
        while !stop.stop.load(Ordering::Relaxed) && !ctx.is_stopping() {
            loop {
                match ctx.send(to, sink, msg.clone(), SendOptions::default()) {
                    Ok(_) => {}
                    Err(SendError::Full(_)) => break,
                    Err(_) => return,
                }
            }
            ctx.sleep(Duration::from_micros(20)).await;
        }
    }

    pub fn oneway(size: usize, io: IoMode) -> OneWay {
        // The ring path keeps its default spin (50 us) under load; the
        // glommio path its default (none).
        let spin = if io == IoMode::Uring { Duration::from_micros(50) } else { Duration::ZERO };
        let spin = (spin, RING_SLEEP);
        let c = Arc::new(Counter::default());
        let rc = c.clone();
        let r = node(CPU_B, io, spin, |b| b.engine("sink", move |_| Sink(rc.clone(), size as u64)));
        let (to, addr, msg, sc) = (r.node_id(), r.listen_addr().unwrap(), message(size), c.clone());
        let s = node(CPU_A, io, spin, |b| {
            b.peer(to, addr, Permanence::Permanent).engine("blast", move |_| Blast {
                to,
                msg: msg.clone(),
                stop: sc.clone(),
            })
        });
        while c.msgs.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut res = measure(&c);
        if io == IoMode::Uring {
            res.joined = Some(r.metric(Metric::ring_bytes_joined) as f64 / r.metric(Metric::bytes_in).max(1) as f64);
        }
        if res.gbps < 0.01 {
            // Not a slow run (every size moves 0.1 GB/s or more) but a stuck
            // one: say so rather than print a rate.
            eprintln!(
                "shardwire {io:?} one-way {size} B STALLED: sender sent {} and saw {} acknowledged; receiver got {}",
                s.metric(Metric::messages_sent),
                s.metric(Metric::delivered),
                r.metric(Metric::messages_in)
            );
        }
        s.shutdown(Duration::from_millis(200));
        r.shutdown(Duration::from_millis(200));
        res
    }

    struct Echo;
    impl Engine for Echo {
        fn on_message(&mut self, ctx: &ShardCtx, from: NodeId, m: EngineMsg) {
            let _ = ctx.reply(from, &m, m.msg.clone(), SendOptions::default());
        }
    }

    struct Pinger {
        to: NodeId,
        msg: Message,
        t: Instant,
        n: usize,
        h: Histogram<u64>,
        done: std::sync::mpsc::Sender<Histogram<u64>>,
    }
    impl Engine for Pinger {
        fn on_link(&mut self, ctx: &ShardCtx, node: NodeId, up: bool) {
            if node == self.to && up && self.n == 0 {
                self.t = Instant::now();
                let _ = ctx.send(self.to, EngineId::named("echo"), self.msg.clone(), SendOptions::default());
            }
        }
        fn on_message(&mut self, ctx: &ShardCtx, _from: NodeId, _m: EngineMsg) {
            if self.n >= PING_WARM {
                self.h.saturating_record(self.t.elapsed().as_nanos() as u64);
            }
            self.n += 1;
            if self.n == PINGS + PING_WARM {
                let _ = self.done.send(self.h.clone());
                return;
            }
            self.t = Instant::now();
            let _ = ctx.send(self.to, EngineId::named("echo"), self.msg.clone(), SendOptions::default());
        }
    }

    /// Sends one message at a time from shard `from` of a two-shard node to
    /// a peer owned by shard 1 and times each until its delivery outcome:
    /// `from` 0 crosses shards twice per message (the send and its outcome).
    struct Prober {
        from: usize,
        to: NodeId,
        msg: Message,
        done_flag: std::rc::Rc<std::cell::Cell<bool>>,
        out: std::sync::mpsc::Sender<Histogram<u64>>,
    }
    impl Engine for Prober {
        fn on_start(&mut self, ctx: &ShardCtx) {
            if ctx.shard() != self.from {
                return;
            }
            let (c, to, msg, flag) = (ctx.clone(), self.to, self.msg.clone(), self.done_flag.clone());
            ctx.spawn(probe_rounds(ctx.clone(), self.out.clone(), async move |i| {
                flag.set(false);
                let t = Instant::now();
                if let Err(e) = c.send(to, EngineId::named("sink"), msg.clone(), SendOptions::default().notify()) {
                    return Err(format!("probe send failed: {e}"));
                }
                while !flag.get() {
                    if c.is_stopping() || t.elapsed() > Duration::from_secs(5) {
                        return Err(format!("probe {i}: no outcome within 5 s"));
                    }
                    c.yield_now().await;
                }
                Ok(())
            }));
        }
        fn on_message(&mut self, _: &ShardCtx, _: NodeId, _: EngineMsg) {}
        fn on_outcome(&mut self, _: &ShardCtx, _: MsgId, _: Outcome, _: Option<Box<EngineMsg>>) {
            self.done_flag.set(true);
        }
    }

    /// Sends as fast as the shard takes them from shard `from` of a
    /// two-shard node to a peer owned by shard 1.
    struct ShardBlast {
        from: usize,
        to: NodeId,
        msg: Message,
        stop: Arc<Counter>,
    }
    impl Engine for ShardBlast {
        fn on_start(&mut self, ctx: &ShardCtx) {
            if ctx.shard() != self.from {
                return;
            }
            ctx.spawn(blast(ctx.clone(), self.to, self.msg.clone(), self.stop.clone()));
        }
        fn on_message(&mut self, _: &ShardCtx, _: NodeId, _: EngineMsg) {}
    }

    /// Calls `echo` on the peer from shard `from`, one call at a time, and
    /// records each call's round trip.
    struct CallProber {
        from: usize,
        to: NodeId,
        out: std::sync::mpsc::Sender<Histogram<u64>>,
    }
    impl Engine for CallProber {
        fn on_start(&mut self, ctx: &ShardCtx) {
            if ctx.shard() != self.from {
                return;
            }
            let (c, to, payload) = (ctx.clone(), self.to, Bytes::from(vec![7u8; 64]));
            ctx.spawn(probe_rounds(ctx.clone(), self.out.clone(), async move |i| {
                c.call(to, "echo", 1, payload.clone(), Duration::from_secs(5))
                    .await
                    .map(drop)
                    .map_err(|e| format!("probe call {i} failed: {e}"))
            }));
        }
        fn on_message(&mut self, _: &ShardCtx, _: NodeId, _: EngineMsg) {}
    }

    /// Times `round` (one round trip, or an error that ends the probe)
    /// after the link had time to come up (warm-up rounds wait in the
    /// owner shard's queue until it does), and sends the histogram.
    async fn probe_rounds(
        c: ShardCtx,
        out: std::sync::mpsc::Sender<Histogram<u64>>,
        mut round: impl AsyncFnMut(usize) -> Result<(), String>,
    ) {
        c.sleep(Duration::from_millis(300)).await;
        let mut h = hist();
        for i in 0..(PINGS / 4 + PING_WARM) {
            let t = Instant::now();
            if let Err(e) = round(i).await {
                eprintln!("{e}");
                return;
            }
            if i >= PING_WARM {
                h.saturating_record(t.elapsed().as_nanos() as u64);
            }
        }
        let _ = out.send(h);
    }

    /// Runs the probe engine `prober` makes (for the peer, sending its
    /// histogram on the sender it is given) on a two-shard node whose
    /// driver polls for `spin`, and returns the percentiles.
    fn probe<E: Engine>(
        prober: impl Fn(NodeId, std::sync::mpsc::Sender<Histogram<u64>>) -> E + Send + Sync + 'static,
        spin: Duration,
    ) -> PingPong {
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let (a, b) =
            two_shard_pair(move |to| prober(to, tx.lock().unwrap().clone()), Arc::new(Counter::default()), spin);
        let h = rx.recv_timeout(Duration::from_secs(120)).expect("probe finished");
        a.shutdown(Duration::from_millis(200));
        b.shutdown(Duration::from_millis(200));
        percentiles(&h)
    }

    /// Round trips of RPC calls from shard `from` of a two-shard node
    /// whose driver polls for `spin` (`-- profile-cross`).
    pub fn cross_call(from: usize, spin: Duration) -> PingPong {
        probe(move |to, out| CallProber { from, to, out }, spin)
    }

    /// Awaits, in a task started with `ShardCtx::spawn`, a oneshot that a
    /// thread outside the node completes, one at a time.
    struct ForeignProber {
        to_thread: std::sync::mpsc::Sender<Option<futures_channel::oneshot::Sender<()>>>,
        out: std::sync::mpsc::Sender<Histogram<u64>>,
    }
    impl Engine for ForeignProber {
        fn on_start(&mut self, ctx: &ShardCtx) {
            let to_thread = self.to_thread.clone();
            ctx.spawn(probe_rounds(ctx.clone(), self.out.clone(), async move |i| {
                let (tx, rx) = futures_channel::oneshot::channel();
                to_thread.send(Some(tx)).map_err(|_| format!("probe {i}: the completing thread is gone"))?;
                rx.await.map_err(|_| format!("probe {i}: oneshot dropped"))
            }));
        }
        fn on_message(&mut self, _: &ShardCtx, _: NodeId, _: EngineMsg) {}
    }

    /// How long an engine task on a spinning one-shard node (CPU A) waits
    /// for a wake-up from a thread outside the node (blocked on a channel
    /// on CPU B, where nothing else runs): hand-over to that thread, its
    /// wake-up, and the wake-up of the task (`-- profile-cross`).
    pub fn foreign_wake() -> PingPong {
        let (to_thread, jobs) = std::sync::mpsc::channel::<Option<futures_channel::oneshot::Sender<()>>>();
        let completer = std::thread::spawn(move || {
            pin(CPU_B);
            while let Ok(Some(tx)) = jobs.recv() {
                let _ = tx.send(());
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let slot = std::sync::Mutex::new((to_thread.clone(), tx));
        let n = node(CPU_A, IoMode::Uring, (Duration::from_secs(5), RING_SLEEP), |b| {
            b.engine("prober", move |_| {
                let g = slot.lock().unwrap();
                ForeignProber { to_thread: g.0.clone(), out: g.1.clone() }
            })
        });
        let h = rx.recv_timeout(Duration::from_secs(120)).expect("probe finished");
        n.shutdown(Duration::from_millis(200));
        let _ = to_thread.send(None);
        let _ = completer.join();
        percentiles(&h)
    }

    /// A peer node owned by shard 1 of a two-shard node (whose driver
    /// polls for `spin`), and that node. The peer has an `echo` RPC
    /// service and a `sink` engine.
    fn two_shard_pair<E: Engine>(
        a_engine: impl Fn(NodeId) -> E + Send + Sync + 'static,
        sink: Arc<Counter>,
        spin: Duration,
    ) -> (NodeHandle, NodeHandle) {
        let key = loop {
            let k = Identity::generate();
            if shardwire::node::shard_of(&k.node_id(), 2) == 1 {
                break k;
            }
        };
        let b = Node::builder()
            .identity(key)
            .listen("127.0.0.1:0".parse().unwrap())
            .shards(Shards::Count(1))
            .configure(|c| c.placement = Placement::Cpus(vec![CPU_B]))
            .engine("sink", move |_| Sink(sink.clone(), 64))
            .rpc_service("echo", |_| shardwire::node::service_fn(|req, out| async move { out.reply(req.payload) }))
            .start()
            .unwrap();
        let (to, addr) = (b.node_id(), b.listen_addr().unwrap());
        let a = Node::builder()
            .identity(Identity::generate())
            .shards(Shards::Count(2))
            .configure(|c| {
                c.placement = Placement::Cpus(vec![CPU_A, CPU_B]);
                c.ring_spin = spin;
            })
            .peer(to, addr, Permanence::Permanent)
            .engine("prober", move |_| a_engine(to))
            .start()
            .unwrap();
        (a, b)
    }

    /// One-way 64 B messages per second from shard `from` (`-- profile-cross`).
    pub fn cross_rate(from: usize) -> f64 {
        let c = Arc::new(Counter::default());
        let (stop, msg) = (c.clone(), message(64));
        let (a, b) = two_shard_pair(
            move |to| ShardBlast { from, to, msg: msg.clone(), stop: stop.clone() },
            c.clone(),
            Duration::from_secs(5),
        );
        while c.msgs.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = measure(&c);
        a.shutdown(Duration::from_millis(200));
        b.shutdown(Duration::from_millis(200));
        r.msgs
    }

    /// Send-to-delivered latency from the peer's owner shard and from the
    /// other shard of a two-shard spinning node (`-- profile-cross`).
    pub fn cross(from: usize) -> PingPong {
        let msg = message(64);
        probe(
            move |to, out| Prober { from, to, msg: msg.clone(), done_flag: Default::default(), out },
            Duration::from_secs(5),
        )
    }

    pub fn pingpong(idle: Idle, io: IoMode) -> PingPong {
        let d = match idle {
            Idle::Spin => (Duration::from_secs(5), RING_SLEEP),
            Idle::Sleep => (Duration::ZERO, RING_SLEEP),
            Idle::Park => (Duration::ZERO, Duration::ZERO),
        };
        let e = node(CPU_B, io, d, |b| b.engine("echo", |_| Echo));
        let (to, addr, msg) = (e.node_id(), e.listen_addr().unwrap(), message(64));
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let p = node(CPU_A, io, d, |b| {
            b.peer(to, addr, Permanence::Permanent).engine("pinger", move |_| Pinger {
                to,
                msg: msg.clone(),
                t: Instant::now(),
                n: 0,
                h: hist(),
                done: tx.lock().unwrap().clone(),
            })
        });
        let h = rx.recv_timeout(Duration::from_secs(120)).expect("ping-pong finished");
        p.shutdown(Duration::from_millis(200));
        e.shutdown(Duration::from_millis(200));
        percentiles(&h)
    }
}

use shardwire::node::IoMode;

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_default();
    // `-- profile-pingpong`: shardwire ring-path spinning ping-pong (for
    // perf), each run beside busy-polling std sockets for the ratio.
    if filter == "profile-pingpong" {
        for _ in 0..3 {
            let s = std_pingpong(true);
            let p = sw::pingpong(sw::Idle::Spin, IoMode::Uring);
            println!(
                "shardwire uring spinning ping-pong: p50 {:.1} us, p99 {:.1} us; std busy-poll p50 {:.1} us: ratio {:.2}",
                p.p50,
                p.p99,
                s.p50,
                p.p50 / s.p50
            );
        }
        return;
    }
    // `-- profile-stages` (built with `--features stage-trace`): one side's
    // share of a ring-path ping-pong round trip, stage by stage, with
    // spinning and with sleeping shards.
    if filter == "profile-stages" {
        stages::run();
        return;
    }
    // `-- profile-parked`: shardwire ring-path ping-pong with shards that
    // sleep when idle, in their ring and through glommio, each beside
    // sleeping std sockets.
    if filter == "profile-parked" {
        for _ in 0..3 {
            let s = std_pingpong(false);
            let r = sw::pingpong(sw::Idle::Sleep, IoMode::Uring);
            let g = sw::pingpong(sw::Idle::Park, IoMode::Uring);
            println!(
                "shardwire uring sleeping ping-pong: in the ring p50 {:.1} us ({:.2}x), through glommio p50 {:.1} us ({:.2}x); \
                 std sleeping p50 {:.1} us",
                r.p50,
                r.p50 / s.p50,
                g.p50,
                g.p50 / s.p50,
                s.p50
            );
        }
        return;
    }
    // `-- budget`: what one receiving core must spend per 64 KiB message,
    // against the 64 KiB goal (0.85x std, measured beside it).
    if filter == "budget" {
        let std_rate = std_oneway(64 << 10).gbps;
        let [open, decode, copy, hash] = sw::budget();
        let total = open + decode + copy;
        println!(
            "64 KiB per message on one core: AES-GCM open {open:.1} us, decode with BLAKE3 of the leaves {decode:.1} us \
             (BLAKE3 of 64 KiB in one piece: {hash:.1} us), one copy {copy:.1} us; sum {total:.1} us = at most {:.2} GB/s \
             received; goal 0.85 x std {std_rate:.2} GB/s = {:.2} GB/s",
            (64 << 10) as f64 / total / 1e3,
            0.85 * std_rate
        );
        return;
    }
    // `-- profile-cross`: send-to-delivered latency from the peer's owner
    // shard and from another shard (two cross-shard hops per message), and
    // the same for RPC calls (the answer wakes the caller from the owner
    // shard's thread).
    if filter == "profile-cross" {
        for _ in 0..2 {
            let own = sw::cross(1);
            let other = sw::cross(0);
            let (own_rate, other_rate) = (sw::cross_rate(1), sw::cross_rate(0));
            println!(
                "send to delivered, spinning: owner shard p50 {:.1} us p99 {:.1} us; other shard p50 {:.1} us p99 {:.1} us; \
                 one-way 64 B: owner shard {:.2} M/s, other shard {:.2} M/s",
                own.p50,
                own.p99,
                other.p50,
                other.p99,
                own_rate / 1e6,
                other_rate / 1e6
            );
            let f = sw::foreign_wake();
            println!(
                "engine task woken from a thread outside the node, spinning shard: p50 {:.1} us p99 {:.1} us",
                f.p50, f.p99
            );
            for (name, spin) in [("spinning", Duration::from_secs(5)), ("sleeping", Duration::ZERO)] {
                let (own, other) = (sw::cross_call(1, spin), sw::cross_call(0, spin));
                println!(
                    "RPC call round trip, {name}: owner shard p50 {:.1} us p99 {:.1} us; other shard p50 {:.1} us p99 {:.1} us",
                    own.p50, own.p99, other.p50, other.p99
                );
            }
        }
        return;
    }
    // `-- profile-foreign`: only the engine task woken from outside, three times.
    if filter == "profile-foreign" {
        for _ in 0..3 {
            let f = sw::foreign_wake();
            println!("engine task woken from a thread outside the node: p50 {:.1} us p99 {:.1} us", f.p50, f.p99);
        }
        return;
    }
    // `-- profile-SIZE`: only shardwire one-way at SIZE, a few times (for perf).
    if let Some(size) = filter.strip_prefix("profile-").and_then(|s| s.parse::<usize>().ok()) {
        let io =
            if std::env::var("SHARDWIRE_IO").as_deref() == Ok("glommio") { IoMode::Glommio } else { IoMode::Uring };
        for _ in 0..4 {
            let w = sw::oneway(size, io);
            let t = tokio_oneway(size);
            let joined = w.joined.map(|j| format!(" ({:.0}% of bytes joined across buffers)", j * 100.0));
            println!(
                "shardwire one-way {size} B: {:.2} M/s {:.2} GB/s{}; tokio+AEAD {:.2} M/s: ratio {:.2}",
                w.msgs / 1e6,
                w.gbps,
                joined.unwrap_or_default(),
                t.msgs / 1e6,
                w.msgs / t.msgs
            );
        }
        return;
    }
    println!("load average at start: {}", load());
    if filter.is_empty() || "oneway".contains(&filter) {
        println!("\none-way (receiver-side rate after {WARM:?} warm-up, over {RUN:?})");
        println!(
            "{:<8} {:>22} {:>22} {:>22} {:>22} {:>22}",
            "size", "std (no crypto)", "glommio raw", "tokio+AEAD", "shardwire glommio", "shardwire uring"
        );
        for size in [64, 1024, 64 << 10] {
            let s = std_oneway(size);
            let g = glommio_oneway(size);
            let t = tokio_oneway(size);
            let wg = sw::oneway(size, IoMode::Glommio);
            let wu = sw::oneway(size, IoMode::Uring);
            let cell = |o: OneWay| format!("{:>8.2} M/s {:>6.2} GB/s", o.msgs / 1e6, o.gbps);
            println!("{:<8} {:>22} {:>22} {:>22} {:>22} {:>22}", size, cell(s), cell(g), cell(t), cell(wg), cell(wu));
            for (name, w) in [("glommio", wg), ("uring", wu)] {
                let joined = w.joined.map(|j| format!("; {:.0}% of bytes joined across buffers", j * 100.0));
                println!(
                    "{:<8} shardwire {name:<7} / std {:.2}x   / glommio raw {:.2}x   / tokio+AEAD {:.2}x (msgs/s){}",
                    "",
                    w.msgs / s.msgs,
                    w.msgs / g.msgs,
                    w.msgs / t.msgs,
                    joined.unwrap_or_default()
                );
            }
        }
    }
    if filter.is_empty() || "pingpong".contains(&filter) {
        println!("\nping-pong 64 B, {PINGS} round trips after {PING_WARM} warm-up (us)");
        let std_sleep = std_pingpong(false);
        let std_busy = std_pingpong(true);
        let g_park = glommio_pingpong(false);
        let g_spin = glommio_pingpong(true);
        let t = tokio_pingpong();
        let wg_park = sw::pingpong(sw::Idle::Park, IoMode::Glommio);
        let wg_spin = sw::pingpong(sw::Idle::Spin, IoMode::Glommio);
        let wu_park = sw::pingpong(sw::Idle::Sleep, IoMode::Uring);
        let wu_glommio_park = sw::pingpong(sw::Idle::Park, IoMode::Uring);
        let wu_spin = sw::pingpong(sw::Idle::Spin, IoMode::Uring);
        for (name, p) in [
            ("std, sleeping", std_sleep),
            ("std, busy-poll", std_busy),
            ("glommio raw, parked", g_park),
            ("glommio raw, spinning", g_spin),
            ("tokio+AEAD", t),
            ("shardwire glommio, parked", wg_park),
            ("shardwire glommio, spinning", wg_spin),
            ("shardwire uring, sleeping", wu_park),
            ("shardwire uring, glommio park", wu_glommio_park),
            ("shardwire uring, spinning", wu_spin),
        ] {
            println!("{name:<28} p50 {:>8.1}   p99 {:>8.1}", p.p50, p.p99);
        }
        for (name, park, spin) in [("glommio", wg_park, wg_spin), ("uring", wu_park, wu_spin)] {
            println!(
                "shardwire {name:<7} spinning / std busy-poll: p50 {:.2}x, p99 {:.2}x;  parked / std sleeping: p50 {:.2}x",
                spin.p50 / std_busy.p50,
                spin.p99 / std_busy.p99,
                park.p50 / std_sleep.p50
            );
        }
        println!(
            "shardwire uring parking through glommio at once (ring_sleep 0) / std sleeping: p50 {:.2}x",
            wu_glommio_park.p50 / std_sleep.p50
        );
    }
    println!("\nload average at end: {}", load());
}

/// `-- profile-stages`: splits one side's share of a ping-pong round trip
/// into the stages `shardwire::stage_trace` marks, as medians over the
/// measured messages of each shard thread.
#[cfg(feature = "stage-trace")]
mod stages {
    use shardwire::node::IoMode;
    use shardwire::stage_trace;
    use std::time::Duration;

    const STEP: [&str; 11] = [
        "enter: the receive runs (kernel; sleeping: and the wait)",
        "reap, wake the reader, switch to it",
        "decrypt the record, split frames",
        "decode frames and message, proxy, queue work",
        "drive the proxy, dispatch to the engine",
        "engine: send the answer (queue on the proxy)",
        "wake the writer, switch to it",
        "ACK + DATA frames, seal the record",
        "hand the send to the ring",
        "driver turn until it enters",
        "enter: the send runs (kernel, incl. loopback delivery)",
    ];

    fn median(mut v: Vec<Duration>) -> f64 {
        v.sort();
        v.get(v.len() / 2).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    }

    /// One line of the table: a label, then a figure per shard thread.
    fn line(label: &str, figures: impl Iterator<Item = f64>) {
        print!("  {label:<56}");
        for f in figures {
            print!(" {f:>14.2}");
        }
        println!();
    }

    /// What one shard thread's trace gives.
    struct Side {
        thread: String,
        passages: usize,
        steps: Vec<f64>,
        total: f64,
        dropped: u64,
    }

    /// Two rounds with spinning shards (beside busy-polling std sockets),
    /// then two with shards that sleep in their rings (beside sleeping std
    /// sockets: there the first step includes the wait for the message).
    pub fn run() {
        for (round, spin) in [true, true, false, false].into_iter().enumerate() {
            let (s, std_send) = super::std_pingpong_timing_sends(spin, true);
            let idle = if spin { super::sw::Idle::Spin } else { super::sw::Idle::Sleep };
            let p = super::sw::pingpong(idle, IoMode::Uring);
            // The shard threads hand their marks over as they exit.
            std::thread::sleep(Duration::from_millis(300));
            let traces = stage_trace::take();
            let (how, std_how) = if spin { ("spinning", "busy-poll") } else { ("sleeping", "sleeping") };
            println!(
                "round {round}: shardwire {how} p50 {:.1} us (p99 {:.1}), std {std_how} p50 {:.1} us \
                 (its send call {std_send:.2} us): ratio {:.2}",
                p.p50,
                p.p99,
                s.p50,
                p.p50 / s.p50
            );
            let mut sides = Vec::new();
            for t in traces.iter().filter(|t| t.thread.starts_with("shardwire-")) {
                let all = stage_trace::passages(&t.marks);
                // The first tenth warms up.
                let r = &all[all.len() / 10..];
                if r.len() < 1000 {
                    continue;
                }
                let steps = (0..STEP.len()).map(|k| median(r.iter().map(|x| x[k + 1] - x[k]).collect())).collect();
                let total = median(r.iter().map(|x| x[x.len() - 1] - x[0]).collect());
                sides.push(Side { thread: t.thread.clone(), passages: r.len(), steps, total, dropped: t.dropped });
            }
            print!("  {:<56}", "median per message, us");
            for s in &sides {
                print!(" {:>14}", format!("{} ({})", s.thread, s.passages));
            }
            println!();
            for (k, step) in STEP.iter().enumerate() {
                line(step, sides.iter().map(|s| s.steps[k]));
            }
            line("one side, enter to enter", sides.iter().map(|s| s.total));
            line("of it in user space (steps 2-10)", sides.iter().map(|s| s.steps[1..10].iter().sum()));
            if sides.iter().any(|s| s.dropped > 0) {
                println!("  (some marks were dropped: the per-thread buffer was full)");
            }
        }
    }
}

#[cfg(not(feature = "stage-trace"))]
mod stages {
    pub fn run() {
        eprintln!(
            "profile-stages needs the marks: cargo bench --bench baseline --features stage-trace -- profile-stages"
        );
        std::process::exit(2);
    }
}
