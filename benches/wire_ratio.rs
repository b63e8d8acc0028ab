//! Decode cost as a ratio to hashing alone, measured interleaved.
//!
//! `cargo bench --bench wire_ratio`
//!
//! This machine is shared and its speed swings by 2x between minutes, so two
//! criterion benchmarks run one after the other can disagree wildly. Here
//! every round times decode (A) and hash-only (B) back to back on the same
//! input, and the report gives the median of the per-round ratios A/B next
//! to the median times. Workloads are those of `benches/wire.rs`.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
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
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful either way.
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
