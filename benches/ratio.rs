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
//! - records: seal + open with RustCrypto (A) vs aws-lc (B), per size.

mod common;

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use shardwire::handshake::record::insecure_fixed_key_pair_for_testing;
use shardwire::handshake::{AeadBackend, Decision, HandshakeConfig, Identity, Initiator, ReplayGuard, Responder};
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
