//! Costs as ratios to their baselines, measured interleaved.
//!
//! `cargo bench --bench ratio [-- wire|handshake]`
//!
//! This machine is shared and its speed swings by 2x between minutes, so two
//! criterion benchmarks run one after the other can disagree wildly. Here
//! every round times the measured work (A) and its baseline (B) back to back,
//! and the report gives the median of the per-round ratios A/B next to the
//! median times. Workloads are those of `benches/wire.rs` and
//! `benches/handshake.rs`:
//!
//! - wire: decode + validate + hash (A) vs hashing the same cells (B);
//! - handshake: a full IK handshake pair (A) vs its X25519 work alone (B);
//! - records: seal + open with RustCrypto (A) vs aws-lc (B), per size;
//! - pipeline: one-way messages through the pure layers in memory (A) —
//!   `NodeProxy::send`, DATA frames sealed into a `Link`'s records, opened
//!   by the peer's `Link`, decoded and delivered by its `NodeProxy`, and the
//!   ACKs back — vs what a tokio user writes by hand (B): a u32 length and
//!   one AES-256-GCM seal per message, then one open per message. No IO and
//!   no threads: the per-message CPU of the layers above the socket.

mod common;

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use shardwire::handshake::record::insecure_fixed_key_pair_for_testing;
use shardwire::handshake::{
    AeadBackend, Decision, HandshakeConfig, Identity, Initiator, Link, NodeId, ReplayGuard, Responder,
};
use shardwire::proxy::{
    Deliver, EngineId, EngineMsg, FrameSink, LinkId, LinkInfo, MsgId, NodeProxy, Outgoing, Permanence, ProxyConfig,
    RefuseReason, TransportPrefs,
};
use shardwire::wire::{
    HashAlg, Message, MessageType, MultiCell, Value, WireConfig, encode, encode_message, payload, to_value,
};

const ROUNDS: usize = 60;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `a` and `b` interleaved; returns (median a, median b, median a/b).
fn ab(mut a: impl FnMut() -> f64, mut b: impl FnMut() -> f64) -> (f64, f64, f64) {
    let (mut ta, mut tb, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let x = a();
        let y = b();
        ta.push(x);
        tb.push(y);
        r.push(x / y);
    }
    (median(ta), median(tb), median(r))
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument selects sections.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    if want("wire") {
        wire();
    }
    if want("handshake") {
        handshake();
        records();
    }
    if want("pipeline") {
        pipeline();
    }
}

fn wire() {
    let cfg = WireConfig::default();
    let msgs: Vec<Bytes> = (0..1000u64)
        .map(|i| encode_message(MessageType::Query, &payload::query(i, Value::blob(vec![i as u8; 56])), &cfg).unwrap())
        .collect();
    let (a, b, r) = ab(
        || {
            let owned = msgs.clone();
            let t = Instant::now();
            let out: Vec<Message> = owned
                .into_iter()
                .map(|m| {
                    let msg = Message::decode(m, &cfg).unwrap();
                    black_box(msg.payload().top_id(cfg.hash));
                    msg
                })
                .collect();
            let e = t.elapsed().as_secs_f64() / msgs.len() as f64;
            drop(out);
            e
        },
        || {
            let t = Instant::now();
            for m in &msgs {
                black_box(HashAlg::Blake3.hash(&m[1..]));
            }
            t.elapsed().as_secs_f64() / msgs.len() as f64
        },
    );
    println!(
        "small {}B QUERY, blake3: decode+validate+hash {:.0} ns/msg ({:.2} M msgs/s), hash only {:.0} ns, ratio {r:.2}",
        msgs[0].len() - 1,
        a * 1e9,
        1e-6 / a,
        b * 1e9
    );

    let raw = Bytes::from(std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/genesis.cad3")).unwrap());
    let sha3 = WireConfig::convex();
    let mc = MultiCell::decode(raw.clone(), &sha3).unwrap();
    let b3 = WireConfig { hash: HashAlg::Blake3, ..sha3 };
    let b3_bytes = encode(&to_value(&mc).unwrap(), &b3).unwrap().to_bytes();
    for (name, bytes, c) in [("sha3-256", raw, sha3), ("blake3", b3_bytes, b3)] {
        let m = MultiCell::decode(bytes.clone(), &c).unwrap();
        let cells: Vec<Bytes> = std::iter::once(m.top().encoding().clone())
            .chain(m.branches().map(|(_, x)| x.encoding().clone()))
            .collect();
        let (a, b, r) = ab(
            || {
                let t = Instant::now();
                let m = MultiCell::decode(bytes.clone(), &c).unwrap();
                black_box(m.top_id(c.hash));
                t.elapsed().as_secs_f64()
            },
            || {
                let t = Instant::now();
                for x in &cells {
                    black_box(c.hash.hash(x));
                }
                t.elapsed().as_secs_f64()
            },
        );
        let gbs = |t: f64| bytes.len() as f64 / t / 1e9;
        println!(
            "genesis {name} ({} bytes, {} cells): decode+validate+hash {:.0} us ({:.2} GB/s), hash only {:.0} us ({:.2} GB/s), ratio {r:.2}",
            bytes.len(),
            cells.len(),
            a * 1e6,
            gbs(a),
            b * 1e6,
            gbs(b)
        );
    }
}

fn handshake() {
    const NOW: u64 = 1_750_000_000_000;
    let (a, b) = (Identity::generate(), Identity::generate());
    let cfg = HandshakeConfig::default();
    let mut replay = ReplayGuard::new(cfg.max_clock_skew_ms, usize::MAX);
    let mut now = NOW;
    let mut work = common::X25519Work::new();
    const N: u32 = 20;
    let (ta, tb, ratio) = ab(
        || {
            let t = Instant::now();
            for _ in 0..N {
                now += 1;
                let (init, m1) = Initiator::start(&a, b.node_id(), 1, 1, &cfg, now).unwrap();
                let pending = Responder::new(&b, &cfg, now).read_request(&m1, now, &mut replay).unwrap();
                let (m2, _) =
                    pending.finish(Decision::Accept { own_advert_ver: 1, known_initiator_advert_ver: 1 }).unwrap();
                black_box(init.read_reply(&m2, now).unwrap());
            }
            t.elapsed().as_secs_f64() / f64::from(N)
        },
        || {
            let t = Instant::now();
            for _ in 0..N {
                work.run();
            }
            t.elapsed().as_secs_f64() / f64::from(N)
        },
    );
    println!(
        "handshake IK pair (both sides, one core): {:.0} us = {:.0} handshakes/s/core; X25519 work alone (2 keygen + 8 DH) {:.0} us; ratio {ratio:.2}",
        ta * 1e6,
        1.0 / ta,
        tb * 1e6
    );
}

fn records() {
    let backends = AeadBackend::available();
    for size in [64usize, 1024, 16 * 1024, 64 * 1024] {
        let plain = vec![0xa5u8; size];
        let plain = &plain;
        let reps = (1 << 22) / size.max(1024);
        let run = |backend: AeadBackend| {
            let (mut s, mut o) = insecure_fixed_key_pair_for_testing(backend, 1).unwrap();
            let mut out = BytesMut::with_capacity(size + 64);
            move || {
                let t = Instant::now();
                for _ in 0..reps {
                    out.clear();
                    out.reserve(size + 64);
                    s.seal(plain, &mut out).unwrap();
                    let hdr = shardwire::wire::vlq::decode(&out).unwrap().1;
                    let body = out.split_off(hdr);
                    black_box(o.open(body).unwrap());
                }
                t.elapsed().as_secs_f64() / reps as f64
            }
        };
        if backends.contains(&AeadBackend::RustCrypto) && backends.contains(&AeadBackend::AwsLc) {
            let (ta, tb, ratio) = ab(run(AeadBackend::RustCrypto), run(AeadBackend::AwsLc));
            let gbs = |t: f64| size as f64 / t / 1e9;
            println!(
                "records {size:>5} B seal+open: aws-lc {:.2} us ({:.2} GB/s of plaintext), rustcrypto {:.2} us ({:.2} GB/s); rustcrypto/aws-lc {ratio:.1}",
                tb * 1e6,
                gbs(tb),
                ta * 1e6,
                gbs(ta)
            );
        }
    }
}

/// Two proxies joined by a pair of links, all in memory.
struct Pipeline {
    a: NodeProxy,
    b: NodeProxy,
    link_a: Link,
    link_b: Link,
    wire_ab: BytesMut,
    wire_ba: BytesMut,
    delivered: Counted,
    next_id: u64,
}

/// Counts deliveries (the receiving engine's work is not measured).
struct Counted(u64);
impl Deliver for Counted {
    fn deliver(&mut self, _from: NodeId, msg: EngineMsg, _p: TransportPrefs) -> Result<(), RefuseReason> {
        black_box(&msg);
        self.0 += 1;
        Ok(())
    }
}

/// Frames written straight into a link's records.
struct IntoLink<'a>(&'a mut Link, &'a mut BytesMut);
impl FrameSink for IntoLink<'_> {
    fn frame(&mut self, parts: &[&[u8]]) {
        self.0.send_frame_parts(parts, self.1).unwrap();
    }
}

impl Pipeline {
    const LINK: LinkId = LinkId(1);

    fn new() -> Pipeline {
        let (ia, ib) = (NodeId([1; 32]), NodeId([2; 32]));
        let cfg = ProxyConfig::default();
        let mut a = NodeProxy::new(ib, ia, Permanence::Permanent, cfg, 1);
        let mut b = NodeProxy::new(ia, ib, Permanence::Permanent, cfg, 2);
        let info = LinkInfo { initiator: ia, remote_advert_ver: 0, remote_knows_our_advert_ver: 0 };
        a.handle_link_up(Self::LINK, info, 0);
        b.handle_link_up(Self::LINK, info, 0);
        let (link_a, link_b) = Link::insecure_fixed_key_pair_for_testing(AeadBackend::AwsLc, 16 << 20).unwrap();
        let mut p = Pipeline {
            a,
            b,
            link_a,
            link_b,
            wire_ab: BytesMut::new(),
            wire_ba: BytesMut::new(),
            delivered: Counted(0),
            next_id: 0,
        };
        // HELLOs both ways, so DATA flows from the first measured batch on.
        for _ in 0..3 {
            p.turn();
        }
        p
    }

    /// Everything each side has to send crosses once; returns messages delivered.
    fn turn(&mut self) -> u64 {
        let before = self.delivered.0;
        while self.a.poll_transmit(Self::LINK, &mut IntoLink(&mut self.link_a, &mut self.wire_ab), 0) {}
        self.link_a.flush(&mut self.wire_ab).unwrap();
        self.link_b.handle_recv(&mut self.wire_ab).unwrap();
        while let Some(f) = self.link_b.poll_frame().unwrap() {
            self.b.handle_frame(Self::LINK, f, 0, &mut self.delivered).unwrap();
        }
        while self.b.poll_transmit(Self::LINK, &mut IntoLink(&mut self.link_b, &mut self.wire_ba), 0) {}
        self.link_b.flush(&mut self.wire_ba).unwrap();
        self.link_a.handle_recv(&mut self.wire_ba).unwrap();
        while let Some(f) = self.link_a.poll_frame().unwrap() {
            self.a.handle_frame(Self::LINK, f, 0, &mut self.delivered).unwrap();
        }
        while self.a.poll_event().is_some() {}
        while self.b.poll_event().is_some() {}
        self.delivered.0 - before
    }

    fn send(&mut self, msg: &Message) {
        self.next_id += 1;
        const BLAST: EngineId = EngineId::named("blast");
        const SINK: EngineId = EngineId::named("sink");
        let em = EngineMsg { sender: BLAST, target: SINK, mailbox: None, msg: msg.clone() };
        let out = Outgoing::new(MsgId(self.next_id), 0, em, TransportPrefs::default(), u64::MAX, false);
        self.a.send(out, 0).unwrap();
    }
}

fn pipeline() {
    const BATCH: usize = 256;
    let sizes: Vec<usize> = match std::env::var("PIPELINE_SIZE") {
        Ok(s) => vec![s.parse().expect("PIPELINE_SIZE is a number of bytes")],
        Err(_) => vec![64, 1024],
    };
    for size in sizes {
        let cfg = WireConfig::default();
        let msg = Message::decode(
            encode_message(MessageType::Other(0x80), &Value::Blob(Bytes::from(vec![0x5a; size])), &cfg).unwrap(),
            &cfg,
        )
        .unwrap();
        let mut p = Pipeline::new();
        let reps = 40;
        let (mut sealer, mut opener) = insecure_fixed_key_pair_for_testing(AeadBackend::AwsLc, 3).unwrap();
        let plain = msg.bytes().clone();
        let mut wire = BytesMut::new();
        let (ta, tb, ratio) = ab(
            || {
                let t = Instant::now();
                for _ in 0..reps {
                    for _ in 0..BATCH {
                        p.send(&msg);
                    }
                    assert_eq!(p.turn(), BATCH as u64, "every message of the batch arrives in its turn");
                }
                t.elapsed().as_secs_f64() / (reps * BATCH) as f64
            },
            || {
                let t = Instant::now();
                for _ in 0..reps {
                    for _ in 0..BATCH {
                        // The record layer's seal is the same AES-256-GCM call a
                        // hand-written codec makes per message (u32 length + seal).
                        wire.extend_from_slice(&(plain.len() as u32).to_be_bytes());
                        sealer.seal(&plain, &mut wire).unwrap();
                    }
                    for _ in 0..BATCH {
                        let _len = wire.split_to(4);
                        let hdr = shardwire::wire::vlq::decode(&wire).unwrap();
                        let total = hdr.1 + hdr.0 as usize;
                        let mut rec = wire.split_to(total);
                        let body = rec.split_off(hdr.1);
                        black_box(opener.open(body).unwrap());
                    }
                }
                t.elapsed().as_secs_f64() / (reps * BATCH) as f64
            },
        );
        println!(
            "pipeline one-way {size:>4} B, batches of {BATCH}: shardwire layers {:.0} ns/msg ({:.2} M msgs/s per core), seal+open per message {:.0} ns/msg; ratio {ratio:.2}",
            ta * 1e9,
            1e-6 / ta,
            tb * 1e9
        );
    }
}
