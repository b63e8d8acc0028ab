//! Wire codec throughput: decode + validate + hash, beside the cost of
//! hashing the same bytes alone, measured in the same run.
//!
//! `cargo bench --bench wire` (results and discussion: docs/performance.md).
//!
//! - `small/*`: 1,000 distinct QUERY messages with a ~64-byte payload;
//!   `decode` = `Message::decode` + the top cell's value ID; `hash_only` =
//!   hashing each payload once (what any content-addressed scheme pays).
//! - `genesis/*`: the 179 KB Convex genesis state (727 cells), with SHA3-256
//!   as Convex encodes it and re-encoded under BLAKE3; `decode` =
//!   `MultiCell::decode` (which hashes every branch cell) + the top value ID;
//!   `hash_only` = hashing every cell once.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use shardwire::wire::{
    HashAlg, Message, MessageType, MultiCell, Value, WireConfig, encode, encode_message, payload, to_value,
};

fn small_messages(c: &mut Criterion) {
    let cfg = WireConfig::default();
    let msgs: Vec<Bytes> = (0..1000u64)
        .map(|i| encode_message(MessageType::Query, &payload::query(i, Value::blob(vec![i as u8; 56])), &cfg).unwrap())
        .collect();
    let payload_len = msgs[0].len() - 1;
    let mut g = c.benchmark_group("small");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    // A receive path owns each frame it decodes, so handing over ownership
    // (the clone) happens in the untimed setup; decoded messages are returned
    // so that dropping them is not timed either.
    g.bench_function(format!("decode_{payload_len}B_blake3"), |b| {
        b.iter_batched(
            || msgs.clone(),
            |owned| {
                owned
                    .into_iter()
                    .map(|m| {
                        let msg = Message::decode(m, &cfg).unwrap();
                        black_box(msg.payload().top_id(cfg.hash));
                        msg
                    })
                    .collect::<Vec<_>>()
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function(format!("hash_only_{payload_len}B_blake3"), |b| {
        b.iter(|| {
            for m in &msgs {
                black_box(HashAlg::Blake3.hash(&m[1..]));
            }
        })
    });
    g.finish();
}

/// Byte ranges of every cell (top and branches) of a decoded multi-cell.
fn cells_of(mc: &MultiCell) -> Vec<Bytes> {
    let mut v = vec![mc.top().encoding().clone()];
    v.extend(mc.branches().map(|(_, c)| c.encoding().clone()));
    v
}

fn genesis(c: &mut Criterion) {
    let raw = Bytes::from(std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/genesis.cad3")).unwrap());
    let sha3 = WireConfig::convex();
    let mc = MultiCell::decode(raw.clone(), &sha3).unwrap();
    // The same tree re-encoded with BLAKE3 value IDs (Index subtrees pass
    // through as opaque cells, so it is slightly smaller and partial).
    let b3 = WireConfig { hash: HashAlg::Blake3, ..sha3 };
    let b3_bytes = encode(&to_value(&mc).unwrap(), &b3).unwrap().to_bytes();
    let b3_mc = MultiCell::decode(b3_bytes.clone(), &b3).unwrap();

    let mut g = c.benchmark_group("genesis");
    for (name, bytes, cfg, cells) in
        [("sha3", raw.clone(), sha3, cells_of(&mc)), ("blake3", b3_bytes.clone(), b3, cells_of(&b3_mc))]
    {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(format!("decode_{name}_{}cells", cells.len()), |b| {
            b.iter(|| {
                let mc = MultiCell::decode(bytes.clone(), &cfg).unwrap();
                black_box(mc.top_id(cfg.hash));
            })
        });
        g.bench_function(format!("hash_only_{name}_{}cells", cells.len()), |b| {
            b.iter(|| {
                for cell in &cells {
                    black_box(cfg.hash.hash(cell));
                }
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = small_messages, genesis }
criterion_main!(benches);
