//! Handshake and record costs, each beside its baseline in the same run.
//!
//! `cargo bench --bench handshake` (results: docs/performance.md).
//!
//! - `handshake/ik_pair`: one complete handshake, initiator and responder
//!   on this one core (msg1, responder checks and reply, initiator finish,
//!   both record keys). `handshake/x25519_only`: the X25519 work a handshake
//!   pair contains — 2 key generations and 8 Diffie-Hellman operations —
//!   through the same implementation snow uses, and nothing else.
//! - `records/<backend>/<size>`: seal one record of `size` plaintext bytes
//!   and open it again (throughput = plaintext bytes).

mod common;

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use shardwire::handshake::record::insecure_fixed_key_pair_for_testing;
use shardwire::handshake::{
    AeadBackend, Decision, HandshakeConfig, Identity, Initiator, Outcome, ReplayGuard, Responder,
};

const NOW: u64 = 1_750_000_000_000;

fn handshakes(c: &mut Criterion) {
    let a = Identity::generate();
    let b = Identity::generate();
    let cfg = HandshakeConfig::default();
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ik_pair", |bench| {
        // A large guard so the replay cache never fills during the run.
        let mut replay = ReplayGuard::new(cfg.max_clock_skew_ms, usize::MAX);
        let mut now = NOW;
        bench.iter(|| {
            now += 1;
            let (init, m1) = Initiator::start(&a, b.node_id(), 1, 1, &cfg, now).unwrap();
            let pending = Responder::new(&b, &cfg, now).read_request(&m1, now, &mut replay).unwrap();
            let (m2, out) =
                pending.finish(Decision::Accept { own_advert_ver: 1, known_initiator_advert_ver: 1 }).unwrap();
            let est = init.read_reply(&m2, now).unwrap();
            assert!(matches!(out, Outcome::Established(_)));
            black_box(est);
        })
    });
    g.bench_function("x25519_only", |bench| {
        let mut work = common::X25519Work::new();
        bench.iter(|| work.run())
    });
    g.finish();
}

fn records(c: &mut Criterion) {
    let mut g = c.benchmark_group("records");
    for backend in AeadBackend::available() {
        for size in [64usize, 1024, 16 * 1024, 64 * 1024] {
            let (mut sealer, mut opener) = insecure_fixed_key_pair_for_testing(backend, 1).unwrap();
            let plain = vec![0xa5u8; size];
            let mut out = BytesMut::with_capacity(size + 64);
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(format!("{}/{size}", backend.name()), |bench| {
                bench.iter_batched_ref(
                    || (),
                    |_| {
                        out.clear();
                        sealer.seal(&plain, &mut out).unwrap();
                        // Skip the frame's VLQ length (1 to 3 bytes) and open the body.
                        let hdr = shardwire::wire::vlq::decode(&out).unwrap().1;
                        let body = out.split_off(hdr);
                        black_box(opener.open(body).unwrap());
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = handshakes, records }
criterion_main!(benches);
