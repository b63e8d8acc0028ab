//! Two in-memory endpoints: handshakes, refusals, replay, tampering with
//! every bit of every handshake message and of a record, truncation — each
//! asserting its exact error variant — and records both ways.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::connect::{MSG1_LEN, MSG2_LEN};
use super::record::{MAX_RECORD_PLAINTEXT, RecordError};
use super::*;

const NOW: u64 = 1_750_000_000_000;

struct Pair {
    a: Identity,
    b: Identity,
    cfg: HandshakeConfig,
    replay: ReplayGuard,
}

impl Pair {
    fn new() -> Pair {
        Pair {
            a: Identity::from_secret([1; 32]),
            b: Identity::from_secret([2; 32]),
            cfg: HandshakeConfig::default(),
            replay: ReplayGuard::new(120_000, 1024),
        }
    }

    fn msg1(&self) -> (Initiator, Vec<u8>) {
        Initiator::start(&self.a, self.b.node_id(), 3, 4, &self.cfg, NOW).unwrap()
    }

    fn respond(&mut self, msg1: &[u8], decision: Decision) -> Result<(Vec<u8>, Outcome), HandshakeError> {
        Responder::new(&self.b, &self.cfg, NOW).read_request(msg1, NOW + 5, &mut self.replay)?.finish(decision)
    }

    /// A full handshake: (initiator side, responder side).
    fn connect(&mut self) -> (Established, Established) {
        let (init, m1) = self.msg1();
        let (m2, out) = self.respond(&m1, accept()).unwrap();
        let Outcome::Established(resp) = out else { panic!("refused") };
        (init.read_reply(&m2, NOW + 10).unwrap(), *resp)
    }
}

fn accept() -> Decision {
    Decision::Accept { own_advert_ver: 7, known_initiator_advert_ver: 3 }
}

/// Moves every frame `from` sends to `to`; returns what `to` received.
fn pump(from: &mut Link, to: &mut Link, frames: &[&[u8]]) -> Vec<Bytes> {
    let mut wire = BytesMut::new();
    from.send_frames(frames.iter().copied(), &mut wire).unwrap();
    to.handle_recv(&mut wire).unwrap();
    assert!(wire.is_empty());
    let mut got = Vec::new();
    while let Some(f) = to.poll_frame().unwrap() {
        got.push(f);
    }
    got
}

#[test]
fn handshake_and_records_both_ways() {
    let mut p = Pair::new();
    let (mut a, mut b) = p.connect();
    assert_eq!((a.remote, b.remote), (p.b.node_id(), p.a.node_id()));
    assert_eq!((a.proto_ver, b.proto_ver), (1, 1));
    // Advert versions: each side learns the other's own and what it knows of us.
    assert_eq!((a.remote_advert_ver, a.remote_knows_our_advert_ver), (7, 3));
    assert_eq!((b.remote_advert_ver, b.remote_knows_our_advert_ver), (3, 4));
    assert!(a.initiator && !b.initiator);

    // Many small frames share one record.
    let small: Vec<Vec<u8>> = (0..1100u32).map(|i| i.to_be_bytes().repeat(16)).collect();
    let refs: Vec<&[u8]> = small.iter().map(|v| v.as_slice()).collect();
    assert_eq!(pump(&mut a.link, &mut b.link, &refs), small.iter().map(|v| Bytes::from(v.clone())).collect::<Vec<_>>());
    // Slow start: 1, 2, 4, 8, 16, 32 KiB records, then 64 KiB ones.
    assert_eq!(a.link.records_sent(), 7, "1100 x 65 bytes over records growing from 1 KiB");
    // A frame larger than a record spans several; the other way round too.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let got = pump(&mut b.link, &mut a.link, &[b"x", &big, b"y"]);
    assert_eq!(got.len(), 3);
    assert_eq!(&got[1][..], &big[..]);
    // 300,007 plaintext bytes: 1+2+4+8+16+32 KiB, then ceil(236,967 / 64 Ki) = 4 more.
    assert_eq!(b.link.records_sent(), 6 + 4, "slow start, then 64 KiB records");
    assert_eq!(a.link.records_received(), b.link.records_sent());
}

#[test]
fn frames_inside_one_record_are_views_not_copies() {
    let mut p = Pair::new();
    let (mut a, mut b) = p.connect();
    let mut wire = BytesMut::new();
    a.link.send_frames([&b"hello"[..], &[9u8; 1000][..]], &mut wire).unwrap();
    let (lo, hi) = (wire.as_ptr() as usize, wire.as_ptr() as usize + wire.len());
    b.link.handle_recv(&mut wire).unwrap();
    for _ in 0..2 {
        let f = b.link.poll_frame().unwrap().unwrap();
        let at = f.as_ptr() as usize;
        assert!(at >= lo && at + f.len() <= hi, "frame decrypted in place, handed out as a view");
    }
}

#[test]
fn records_arrive_in_any_pieces() {
    let mut p = Pair::new();
    let (mut a, mut b) = p.connect();
    let frames: Vec<Vec<u8>> = (0..50usize).map(|i| vec![i as u8; i * 997 % 70_000 + 1]).collect();
    let mut wire = BytesMut::new();
    a.link.send_frames(frames.iter().map(|f| f.as_slice()), &mut wire).unwrap();
    let wire = wire.freeze();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for chunk in wire.chunks(4093) {
        buf.extend_from_slice(chunk);
        b.link.handle_recv(&mut buf).unwrap();
        while let Some(f) = b.link.poll_frame().unwrap() {
            got.push(f.to_vec());
        }
    }
    assert_eq!(got, frames);
}

/// Separate received buffers: only the record that spans two of them is
/// copied; records wholly inside a buffer are decrypted where they lie.
#[test]
fn received_buffers_are_decrypted_in_place() {
    let (mut a, mut b) = Link::insecure_fixed_key_pair_for_testing(AeadBackend::default(), 1 << 20).unwrap();
    let group = |tag: u8| -> Vec<Vec<u8>> { (0..3).map(|i| vec![tag + i; 100]).collect() };
    let mut wire = BytesMut::new();
    let mut ends = Vec::new();
    for tag in [10u8, 20, 30] {
        for f in group(tag) {
            a.send_frame(&f, &mut wire).unwrap();
        }
        a.flush(&mut wire).unwrap();
        ends.push(wire.len());
    }
    // Buffer 1: record 1 and half of record 2; buffer 2: the rest of record
    // 2 and all of record 3.
    let cut = ends[0] + (ends[1] - ends[0]) / 2;
    let (one, two) = (BytesMut::from(&wire[..cut]), BytesMut::from(&wire[cut..]));
    let range = |b: &BytesMut| (b.as_ptr() as usize, b.as_ptr() as usize + b.len());
    let (r1, r2) = (range(&one), range(&two));
    let inside = |f: &Bytes, (lo, hi): (usize, usize)| f.as_ptr() as usize >= lo && f.as_ptr() as usize + f.len() <= hi;
    let mut pending = BytesMut::new();
    let mut got = Vec::new();
    let mut copied = 0;
    for buf in [one, two] {
        copied += b.handle_recv_buf(&mut pending, buf).unwrap();
        while let Some(f) = b.poll_frame().unwrap() {
            got.push(f);
        }
    }
    assert!(pending.is_empty());
    assert_eq!(copied, ends[1] - ends[0], "exactly record 2 was copied");
    let want: Vec<Vec<u8>> = [10u8, 20, 30].into_iter().flat_map(group).collect();
    assert_eq!(got.iter().map(|f| f.to_vec()).collect::<Vec<_>>(), want);
    for f in &got[..3] {
        assert!(inside(f, r1), "record 1 opened inside buffer 1");
    }
    for f in &got[3..6] {
        assert!(!inside(f, r1) && !inside(f, r2), "record 2 was assembled from both buffers");
    }
    for f in &got[6..] {
        assert!(inside(f, r2), "record 3 opened inside buffer 2, not copied behind record 2");
    }
}

#[test]
fn refusals_reach_the_initiator_typed() {
    for (decision, reason) in [
        (Decision::Refuse(Refusal::OverCapacity), Refusal::OverCapacity),
        (Decision::Refuse(Refusal::Denied), Refusal::Denied),
        (Decision::Refuse(Refusal::Incompatible), Refusal::Incompatible),
    ] {
        let mut p = Pair::new();
        let (init, m1) = p.msg1();
        let (m2, out) = p.respond(&m1, decision).unwrap();
        assert!(matches!(out, Outcome::Refused(r) if r == reason));
        let e = init.read_reply(&m2, NOW + 10).unwrap_err();
        assert_eq!(e, HandshakeError::Refused { reason, authenticated: true });
        assert_eq!(e.fault(), Fault::Refused);
        assert_eq!(reason.is_temporary(), reason == Refusal::OverCapacity);
    }
    // Over capacity before any DH: the early refusal.
    let p = Pair::new();
    let (init, _) = p.msg1();
    assert_eq!(
        init.read_reply(&early_refusal(), NOW + 10).unwrap_err(),
        HandshakeError::Refused { reason: Refusal::OverCapacity, authenticated: false }
    );
}

#[test]
fn incompatible_versions_are_refused_on_accept() {
    let mut p = Pair::new();
    p.cfg.versions = VersionRange { min: 2, max: 3 };
    let (init, m1) = p.msg1();
    p.cfg.versions = VersionRange { min: 4, max: 9 };
    let (m2, out) = p.respond(&m1, accept()).unwrap();
    assert!(matches!(out, Outcome::Refused(Refusal::Incompatible)));
    assert_eq!(
        init.read_reply(&m2, NOW + 10).unwrap_err(),
        HandshakeError::Refused { reason: Refusal::Incompatible, authenticated: true }
    );
    // Overlapping ranges pick the highest common version.
    let mut p = Pair::new();
    p.cfg.versions = VersionRange { min: 1, max: 5 };
    let (init, m1) = p.msg1();
    p.cfg.versions = VersionRange { min: 3, max: 9 };
    let (m2, _) = p.respond(&m1, accept()).unwrap();
    p.cfg.versions = VersionRange { min: 1, max: 5 };
    assert_eq!(init.read_reply(&m2, NOW + 10).unwrap().proto_ver, 5);
}

#[test]
fn version_table() {
    let r = |min, max| VersionRange { min, max };
    let table = [
        (r(1, 1), r(1, 1), Some(1)),
        (r(1, 5), r(3, 9), Some(5)),
        (r(3, 9), r(1, 5), Some(5)),
        (r(1, 9), r(4, 4), Some(4)),
        (r(2, 2), r(2, 7), Some(2)),
        (r(1, 2), r(3, 4), None),
        (r(5, 6), r(1, 4), None),
        (r(1, 1), r(2, 2), None),
    ];
    for (a, b, want) in table {
        assert_eq!(a.negotiate(b), want, "{a:?} {b:?}");
    }
}

#[test]
fn wrong_destination_and_key_mismatch() {
    let mut p = Pair::new();
    let c = Identity::from_secret([3; 32]);
    // Encrypted to B (so B can read it) but naming C as the destination.
    let (_, m1) = Initiator::start_crafted(&p.a, p.b.node_id(), p.a.node_id(), c.node_id(), &p.cfg, NOW);
    assert_eq!(
        p.respond(&m1, accept()).unwrap_err(),
        HandshakeError::WrongDestination { ours: p.b.node_id(), requested: c.node_id() }
    );
    // Proving key A while claiming to be C.
    let (_, m1) = Initiator::start_crafted(&p.a, p.b.node_id(), c.node_id(), p.b.node_id(), &p.cfg, NOW);
    assert_eq!(
        p.respond(&m1, accept()).unwrap_err(),
        HandshakeError::KeyMismatch { claimed: c.node_id(), proven: p.a.node_id() }
    );
    // Dialing B's address with C's NodeId: B cannot decrypt, and says so.
    let (init, m1) = Initiator::start(&p.a, c.node_id(), 0, 0, &p.cfg, NOW).unwrap();
    let e = p.respond(&m1, accept()).unwrap_err();
    assert_eq!(e, HandshakeError::AuthFailed);
    let reply = early_reply_for(&e).unwrap();
    assert_eq!(init.read_reply(&reply, NOW + 1).unwrap_err(), HandshakeError::Rejected(Rejection::CannotDecrypt));
}

#[test]
fn replay_stale_timeout_and_full_cache() {
    let mut p = Pair::new();
    let (_, m1) = p.msg1();
    p.respond(&m1, accept()).unwrap();
    assert_eq!(p.respond(&m1, accept()).unwrap_err(), HandshakeError::Replayed);
    // Still refused late in the clock window; forgotten once it can no longer pass it.
    let late = Responder::new(&p.b, &p.cfg, NOW + 110_000).read_request(&m1, NOW + 110_000, &mut p.replay);
    assert_eq!(late.unwrap_err(), HandshakeError::Replayed);
    let after = Responder::new(&p.b, &p.cfg, NOW + 250_000).read_request(&m1, NOW + 250_000, &mut p.replay);
    assert!(matches!(after.unwrap_err(), HandshakeError::Stale { .. }));
    assert!(p.replay.is_empty(), "expired entries are pruned");

    // A clock far off: refused before DH, with an early reply that says why.
    let (init, m1) = Initiator::start(&p.a, p.b.node_id(), 0, 0, &p.cfg, NOW - 600_000).unwrap();
    let e = p.respond(&m1, accept()).unwrap_err();
    assert_eq!(e, HandshakeError::Stale { timestamp_ms: NOW - 600_000, now_ms: NOW + 5 });
    assert_eq!(
        init.read_reply(&early_reply_for(&e).unwrap(), NOW - 600_000 + 10).unwrap_err(),
        HandshakeError::Rejected(Rejection::ClockSkew)
    );

    // Message 1 after the responder's deadline; message 2 after the initiator's.
    let (init, m1) = p.msg1();
    let r = Responder::new(&p.b, &p.cfg, NOW).read_request(&m1, NOW + p.cfg.timeout_ms + 1, &mut p.replay);
    assert_eq!(r.unwrap_err(), HandshakeError::Timeout);
    let (m2, _) = p.respond(&m1, accept()).unwrap();
    assert_eq!(init.read_reply(&m2, NOW + p.cfg.timeout_ms + 1).unwrap_err(), HandshakeError::Timeout);

    // A full replay cache fails closed.
    let mut p = Pair::new();
    p.replay = ReplayGuard::new(120_000, 1);
    let (_, m1) = p.msg1();
    p.respond(&m1, accept()).unwrap();
    let (_, m1b) = p.msg1();
    let e = p.respond(&m1b, accept()).unwrap_err();
    assert_eq!(e, HandshakeError::ReplayCacheFull);
    assert_eq!(early_reply_for(&e), Some(early_refusal()));
}

#[test]
fn every_flipped_bit_in_message_1() {
    let p = Pair::new();
    let (_, m1) = p.msg1();
    assert_eq!(m1.len(), MSG1_LEN);
    for byte in 0..m1.len() {
        for bit in 0..8 {
            let mut bad = m1.clone();
            bad[byte] ^= 1 << bit;
            let mut replay = ReplayGuard::new(120_000, 16);
            let e = Responder::new(&p.b, &p.cfg, NOW).read_request(&bad, NOW, &mut replay).unwrap_err();
            let min = u16::from_be_bytes([bad[1], bad[2]]);
            let max = u16::from_be_bytes([bad[3], bad[4]]);
            let ts = u64::from_be_bytes(bad[5..13].try_into().unwrap());
            let want = match byte {
                0 => HandshakeError::Malformed("not a connect request"),
                1..=4 if min == 0 || min > max => HandshakeError::BadVersionRange { min, max },
                5..=12 if ts.abs_diff(NOW) > 120_000 => HandshakeError::Stale { timestamp_ms: ts, now_ms: NOW },
                // The header is in the prologue; everything else is keys or ciphertext.
                _ => HandshakeError::AuthFailed,
            };
            assert_eq!(e, want, "byte {byte} bit {bit}");
        }
    }
}

#[test]
fn every_flipped_bit_in_message_2() {
    // Each attempt consumes the initiator, and ephemeral keys are random, so
    // every flip runs a whole exchange of its own.
    for byte in 0..MSG2_LEN {
        for bit in 0..8 {
            let mut p = Pair::new();
            let (init, m1) = p.msg1();
            let (mut m2, _) = p.respond(&m1, accept()).unwrap();
            assert_eq!(m2.len(), MSG2_LEN);
            m2[byte] ^= 1 << bit;
            let e = init.read_reply(&m2, NOW + 10).unwrap_err();
            let want = match (byte, m2[0]) {
                (0, 0x03) => HandshakeError::Malformed("unknown early reply"),
                (0, _) => HandshakeError::Malformed("not a connect reply"),
                _ => HandshakeError::AuthFailed,
            };
            assert_eq!(e, want, "byte {byte} bit {bit}");
        }
    }
}

#[test]
fn truncated_handshake_messages() {
    let mut p = Pair::new();
    let (_, m1) = p.msg1();
    for n in 1..MSG1_LEN {
        let mut replay = ReplayGuard::new(120_000, 16);
        let e = Responder::new(&p.b, &p.cfg, NOW).read_request(&m1[..n], NOW, &mut replay).unwrap_err();
        assert_eq!(e, HandshakeError::Malformed("request length"), "len {n}");
    }
    assert_eq!(
        Responder::new(&p.b, &p.cfg, NOW).read_request(&[], NOW, &mut p.replay).unwrap_err(),
        HandshakeError::Malformed("not a connect request")
    );
    for n in 1..MSG2_LEN {
        let mut p = Pair::new();
        let (init, m1) = p.msg1();
        let (m2, _) = p.respond(&m1, accept()).unwrap();
        assert_eq!(init.read_reply(&m2[..n], NOW).unwrap_err(), HandshakeError::Malformed("reply length"), "len {n}");
    }
}

/// One sealed record frame holding `plaintext` as a single frame.
fn one_record(link: &mut Link, plaintext: &[u8]) -> BytesMut {
    let mut wire = BytesMut::new();
    link.send_frames([plaintext], &mut wire).unwrap();
    wire
}

#[test]
fn every_flipped_bit_in_a_record() {
    let (mut a, _) = Link::insecure_fixed_key_pair_for_testing(AeadBackend::default(), 1 << 20).unwrap();
    let record = one_record(&mut a, b"a record carrying one frame");
    let hdr = 1; // a short record's VLQ length is one byte
    for byte in 0..record.len() {
        for bit in 0..8 {
            let (mut a2, mut b2) = Link::insecure_fixed_key_pair_for_testing(AeadBackend::default(), 1 << 20).unwrap();
            let mut wire = one_record(&mut a2, b"a record carrying one frame");
            assert_eq!(wire, record, "fixed keys give identical records");
            wire[byte] ^= 1 << bit;
            let seq = u64::from_be_bytes(wire[hdr..hdr + 8].try_into().unwrap());
            let r = b2.handle_recv(&mut wire);
            if byte < hdr {
                // A different length: the frame is incomplete, or too short to be a record.
                match r {
                    Ok(()) => assert!(b2.poll_frame().unwrap().is_none(), "no plaintext from a damaged length"),
                    Err(LinkError::Record(RecordError::BadTag { seq: 0 } | RecordError::TooShort { .. })) => {}
                    Err(e) => panic!("byte {byte} bit {bit}: {e:?}"),
                }
                continue;
            }
            let want = match byte - hdr {
                0..=7 => RecordError::Skipped { seq, expected: 0 },
                _ => RecordError::BadTag { seq: 0 },
            };
            assert_eq!(r, Err(LinkError::Record(want)), "byte {byte} bit {bit}");
            // Failed for good: nothing after it is accepted.
            let mut next = one_record(&mut a2, b"next");
            assert_eq!(b2.handle_recv(&mut next), Err(LinkError::Record(want)));
            assert!(b2.poll_frame().is_err());
        }
    }
}

#[test]
fn truncated_record_bodies() {
    let (mut a, _) = Link::insecure_fixed_key_pair_for_testing(AeadBackend::default(), 1 << 20).unwrap();
    let wire = one_record(&mut a, b"some plaintext");
    // Cut the body and fix up the one-byte length prefix to match.
    for n in 0..wire.len() - 1 {
        let (_, mut b) = Link::insecure_fixed_key_pair_for_testing(AeadBackend::default(), 1 << 20).unwrap();
        let mut cut = BytesMut::new();
        cut.extend_from_slice(&[n as u8]);
        cut.extend_from_slice(&wire[1..1 + n]);
        let r = b.handle_recv(&mut cut);
        let want = match n {
            0 => LinkError::RecordFrame(crate::wire::DecodeError {
                offset: 0,
                kind: crate::wire::DecodeErrorKind::EmptyFrame,
            }),
            1..=23 => LinkError::Record(RecordError::TooShort { len: n }),
            _ => LinkError::Record(RecordError::BadTag { seq: 0 }),
        };
        assert_eq!(r, Err(want), "body of {n} bytes");
    }
}

#[test]
fn replayed_skipped_and_reordered_records() {
    let mut p = Pair::new();
    let (mut a, mut b) = p.connect();
    let r0 = one_record(&mut a.link, b"zero");
    let r1 = one_record(&mut a.link, b"one");
    let r2 = one_record(&mut a.link, b"two");
    b.link.handle_recv(&mut r0.clone()).unwrap();
    assert_eq!(&b.link.poll_frame().unwrap().unwrap()[..], b"zero");
    // Replay of record 0.
    assert_eq!(
        b.link.handle_recv(&mut r0.clone()),
        Err(LinkError::Record(RecordError::Replayed { seq: 0, expected: 1 }))
    );
    // On a fresh pair: skipping record 1 (or receiving 2 before 1).
    let (mut a, mut b) = Pair::new().connect();
    let _ = (one_record(&mut a.link, b"zero"), one_record(&mut a.link, b"one"));
    let mut r2b = one_record(&mut a.link, b"two");
    assert_eq!(b.link.handle_recv(&mut r2b), Err(LinkError::Record(RecordError::Skipped { seq: 2, expected: 0 })));
    let _ = (r1, r2);
}

#[test]
fn oversized_plaintext_frame_is_rejected_before_buffering() {
    let mut p = Pair::new();
    p.cfg.max_frame = 1000;
    let (mut a, mut b) = p.connect();
    let mut wire = BytesMut::new();
    a.link.send_frames([&vec![0u8; 5000][..]], &mut wire).unwrap();
    b.link.handle_recv(&mut wire).unwrap();
    assert!(
        matches!(b.link.poll_frame(), Err(LinkError::Frame(e)) if matches!(e.kind, crate::wire::DecodeErrorKind::FrameTooLarge { len: 5000, max: 1000 }))
    );
}

#[test]
fn backends_talk_to_each_other() {
    let all = AeadBackend::available();
    for &x in &all {
        for &y in &all {
            let mut p = Pair::new();
            p.cfg.aead = x;
            let (init, m1) = p.msg1();
            p.cfg.aead = y;
            let (m2, out) = p.respond(&m1, accept()).unwrap();
            let Outcome::Established(mut b) = out else { panic!() };
            let mut a = init.read_reply(&m2, NOW + 1).unwrap();
            let big = vec![5u8; MAX_RECORD_PLAINTEXT * 2 + 17];
            assert_eq!(pump(&mut a.link, &mut b.link, &[&big]), vec![Bytes::from(big.clone())], "{x:?} -> {y:?}");
            assert_eq!(pump(&mut b.link, &mut a.link, &[b"back"]), vec![Bytes::from_static(b"back")]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any sequence of frames, sent in any batching and read in any pieces,
    /// arrives whole and in order — read into one growing buffer (the
    /// glommio path) or as separate received buffers (the ring path).
    #[test]
    fn frames_round_trip(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100_000), 1..12),
        flush_every in 1usize..5,
        piece in 1usize..70_000,
    ) {
        let frames: Vec<Vec<u8>> = frames.into_iter().filter(|f| !f.is_empty()).collect();
        // Fixed keys: both receivers open the same bytes.
        let fixed = || Link::insecure_fixed_key_pair_for_testing(AeadBackend::default(), 1 << 20).unwrap();
        let ((mut a, mut b), (_, mut b2)) = (fixed(), fixed());
        let mut wire = BytesMut::new();
        for (i, f) in frames.iter().enumerate() {
            a.send_frame(f, &mut wire).unwrap();
            if i % flush_every == 0 {
                a.flush(&mut wire).unwrap();
            }
        }
        a.flush(&mut wire).unwrap();
        let wire = wire.freeze();
        let (mut buf, mut pending) = (BytesMut::new(), BytesMut::new());
        let (mut got, mut got2) = (Vec::new(), Vec::new());
        for chunk in wire.chunks(piece) {
            buf.extend_from_slice(chunk);
            b.handle_recv(&mut buf).unwrap();
            while let Some(f) = b.poll_frame().unwrap() {
                got.push(f.to_vec());
            }
            b2.handle_recv_buf(&mut pending, BytesMut::from(chunk)).unwrap();
            while let Some(f) = b2.poll_frame().unwrap() {
                got2.push(f.to_vec());
            }
        }
        prop_assert!(pending.is_empty());
        prop_assert_eq!(&got, &frames);
        prop_assert_eq!(&got2, &frames);
    }
}
