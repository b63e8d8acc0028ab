//! Cross-module tests of the wire layer: one known-bad input per decode
//! error variant (checked exhaustively), and property tests that round-trip
//! values and messages and throw corrupted bytes at the decoders.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::wire::error::DecodeErrorKind as K;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn blob_cell(n: usize, fill: u8) -> Vec<u8> {
    let mut v = vec![cell::tag::BLOB];
    vlq::write_len(&mut v, n);
    v.extend(std::iter::repeat_n(fill, n));
    v
}

fn refs_vector(ids: &[ValueId]) -> Vec<u8> {
    let mut v = vec![cell::tag::VECTOR, ids.len() as u8];
    for id in ids {
        v.push(cell::tag::REF);
        v.extend_from_slice(&id.0);
    }
    v
}

fn multi(top: &[u8], branches: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    multicell::write_multicell(&mut out, top, branches.iter().copied());
    out
}

/// Which decoder an input goes to.
enum Via {
    Cell,
    Multi(WireConfig),
    Message,
    Frame(usize),
}

fn run(via: &Via, input: &[u8]) -> Result<(), DecodeError> {
    let b = Bytes::copy_from_slice(input);
    match via {
        Via::Cell => Cell::decode(b, &WireConfig::default()).map(drop),
        Via::Multi(cfg) => MultiCell::decode(b, cfg).map(drop),
        Via::Message => Message::decode(b, &WireConfig::default()).map(drop),
        Via::Frame(max) => {
            let mut d = FrameDecoder::new(*max);
            let mut buf = BytesMut::from(input);
            d.decode(&mut buf).map(drop)
        }
    }
}

/// The variant's name; the match is exhaustive so a new variant fails to
/// compile here until it gets a known-bad input below.
fn name(k: &K) -> &'static str {
    match k {
        K::Truncated => "Truncated",
        K::VlqLeadingZero => "VlqLeadingZero",
        K::VlqOverflow => "VlqOverflow",
        K::IllegalTag(_) => "IllegalTag",
        K::RefNotAllowed => "RefNotAllowed",
        K::NonMinimalInteger => "NonMinimalInteger",
        K::BigIntLength(_) => "BigIntLength",
        K::NonMinimalChar => "NonMinimalChar",
        K::CharOutOfRange(_) => "CharOutOfRange",
        K::NameLength(_) => "NameLength",
        K::InlineTooLarge => "InlineTooLarge",
        K::NilChild => "NilChild",
        K::TreeChild => "TreeChild",
        K::KeyOrder => "KeyOrder",
        K::TreeShift(_) => "TreeShift",
        K::TreeChildren(_) => "TreeChildren",
        K::IndexEntryMarker(_) => "IndexEntryMarker",
        K::IndexDepth(_) => "IndexDepth",
        K::SyntaxMeta => "SyntaxMeta",
        K::CellTooLarge { .. } => "CellTooLarge",
        K::TrailingBytes => "TrailingBytes",
        K::BranchLengthMismatch { .. } => "BranchLengthMismatch",
        K::EmbeddedBranch { .. } => "EmbeddedBranch",
        K::NilBranch => "NilBranch",
        K::DuplicateBranch => "DuplicateBranch",
        K::UnreferencedBranch => "UnreferencedBranch",
        K::TooManyBranches { .. } => "TooManyBranches",
        K::EmptyMessage => "EmptyMessage",
        K::BadPayload { .. } => "BadPayload",
        K::FrameTooLarge { .. } => "FrameTooLarge",
        K::EmptyFrame => "EmptyFrame",
    }
}

const ALL_VARIANTS: usize = 31;

#[test]
fn every_decode_error_variant_has_a_known_bad_input() {
    let b3 = HashAlg::Blake3;
    let big = blob_cell(300, 9);
    let big_id = b3.hash(&big);
    let big2 = blob_cell(200, 8);
    let top1 = refs_vector(&[big_id]);
    let two_keys = |a: &[u8], b: &[u8]| {
        // Order two Long keys by BLAKE3 value ID, then write them reversed.
        let (ia, ib) = (b3.hash(a), b3.hash(b));
        let (lo, hi) = if ia < ib { (a, b) } else { (b, a) };
        let mut m = vec![cell::tag::SET, 2];
        m.extend_from_slice(hi);
        m.extend_from_slice(lo);
        m
    };
    let bad_order = two_keys(&h("11 01"), &h("11 02"));
    let mut wrong_len = top1.clone();
    vlq::write_len(&mut wrong_len, big.len() + 1);
    wrong_len.extend_from_slice(&big);
    wrong_len.push(0);
    let mut inline_big = h("80 01 31 81 0b");
    inline_big.extend([7u8; 139]);
    let mut blob_tree_bad = h("31 a0 01");
    blob_tree_bad.push(cell::tag::REF);
    blob_tree_bad.extend([1u8; 32]);
    blob_tree_bad.extend(h("31 02 aa bb")); // last child must be 1 byte long
    let mut ref_top = vec![cell::tag::REF];
    ref_top.extend([0u8; 32]);
    let small = blob_cell(10, 1);
    let small_top = refs_vector(&[b3.hash(&small)]);
    let nil_top = refs_vector(&[b3.hash(&[0])]);

    let cases: Vec<(Via, Vec<u8>, K, usize)> = vec![
        (Via::Cell, h("12 01"), K::Truncated, 1),
        (Via::Cell, h("31 80 01"), K::VlqLeadingZero, 1),
        (Via::Cell, h("e0 ff ff ff ff ff ff ff ff ff 7f"), K::VlqOverflow, 1),
        (Via::Cell, h("01"), K::IllegalTag(0x01), 0),
        (Via::Cell, h("80 01 85"), K::IllegalTag(0x85), 2),
        (Via::Cell, ref_top, K::RefNotAllowed, 0),
        (Via::Cell, h("11 00"), K::NonMinimalInteger, 0),
        (Via::Cell, h("19 08 01 02 03 04 05 06 07 08"), K::BigIntLength(8), 0),
        (Via::Cell, h("3d 00 41"), K::NonMinimalChar, 0),
        (Via::Cell, h("3e 11 00 00"), K::CharOutOfRange(0x110000), 0),
        (Via::Cell, h("33 00"), K::NameLength(0), 0),
        (Via::Cell, inline_big, K::InlineTooLarge, 2),
        (Via::Cell, h("a0 01 00"), K::NilChild, 2),
        (Via::Cell, blob_tree_bad, K::TreeChild, 36),
        (Via::Cell, bad_order, K::KeyOrder, 0),
        (Via::Cell, h("82 10 40 00 03"), K::TreeShift(0x40), 0),
        (Via::Cell, h("83 10 00 00 01 11 01"), K::TreeChildren(1), 0),
        (Via::Cell, h("84 02 20"), K::IndexEntryMarker(0x20), 2),
        (Via::Cell, h("84 02 00 40 00 03"), K::IndexDepth(0x40), 0),
        (Via::Cell, h("88 00 11 05"), K::SyntaxMeta, 2),
        (
            Via::Multi(WireConfig { max_cell: 100, ..WireConfig::default() }),
            big.clone(),
            K::CellTooLarge { max: 100 },
            0,
        ),
        (Via::Cell, h("00 00"), K::TrailingBytes, 1),
        (
            Via::Multi(WireConfig::default()),
            wrong_len,
            K::BranchLengthMismatch { declared: 304, parsed: 303 },
            top1.len(),
        ),
        (
            Via::Multi(WireConfig::default()),
            multi(&small_top, &[&small]),
            K::EmbeddedBranch { len: 12 },
            small_top.len() + 1,
        ),
        (Via::Multi(WireConfig::default()), multi(&nil_top, &[&[0]]), K::NilBranch, nil_top.len() + 1),
        (
            Via::Multi(WireConfig::default()),
            multi(&top1, &[&big, &big]),
            K::DuplicateBranch,
            top1.len() + 2 + big.len(),
        ),
        (
            Via::Multi(WireConfig::default()),
            multi(&top1, &[&big, &big2]),
            K::UnreferencedBranch,
            top1.len() + 2 + big.len(),
        ),
        (
            Via::Multi(WireConfig { max_branches: 1, ..WireConfig::default() }),
            multi(&top1, &[&big, &big2]),
            K::TooManyBranches { max: 1 },
            top1.len() + 2 + big.len(),
        ),
        (Via::Message, vec![], K::EmptyMessage, 0),
        (Via::Message, h("06 10"), K::BadPayload { ty: "QUERY", reason: PayloadError::WrongTopCell("a Vector") }, 1),
        (Via::Frame(10), h("0b"), K::FrameTooLarge { len: 11, max: 10 }, 0),
        (Via::Frame(10), h("00"), K::EmptyFrame, 0),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (via, input, want, offset) in &cases {
        let got = run(via, input).expect_err(&format!("{} should be rejected", name(want)));
        assert_eq!(&got.kind, want, "input {}", hex::encode(input));
        assert_eq!(got.offset, *offset, "offset for {}", name(want));
        seen.insert(name(want));
    }
    assert_eq!(seen.len(), ALL_VARIANTS, "every variant needs a case: have {seen:?}");
}

#[test]
fn tree_children_must_be_what_their_parent_requires() {
    let cfg = WireConfig::default();
    // Found by the fuzzer: a 40-element vector whose 32-element prefix (a
    // vector tree) has a Long where a 16-element vector belongs.
    let found = h("8028 1120 1121 1122 1123 1124 1125 1126 1127 8020 8010 1011 0100 0000 0011 1511 \
                   1611 1711 1811 1d11 1a11 1b11 1c11 1d11 1e11 1f");
    let e = MultiCell::decode(Bytes::from(found), &cfg).unwrap_err();
    assert_eq!((e.kind, e.offset), (K::TreeChild, 49), "the Long at byte 49 is where a vector belongs");
    // A prefix of the wrong count, inline.
    let mut v = h("80 11 11 01 80 03 10 10 10");
    assert_eq!(MultiCell::decode(Bytes::from(v.clone()), &cfg).unwrap_err().kind, K::TreeChild);
    // The same check through a carried branch: a 17-element vector whose
    // prefix Ref points at a 15-element vector.
    let mut fifteen = vec![cell::tag::VECTOR, 15];
    for _ in 0..15 {
        fifteen.extend(blob_cell(8, 1));
    }
    let id = HashAlg::Blake3.hash(&fifteen);
    v = h("80 11 11 01 20");
    v.extend_from_slice(&id.0);
    let top_len = v.len();
    vlq::write_len(&mut v, fifteen.len());
    v.extend_from_slice(&fifteen);
    let e = MultiCell::decode(Bytes::from(v.clone()), &cfg).unwrap_err();
    assert_eq!((e.kind, e.offset), (K::TreeChild, 4));
    // Without the branch the same top cell is a valid partial encoding.
    assert_eq!(MultiCell::decode(Bytes::from(v[..top_len].to_vec()), &cfg).unwrap().missing(), &[id]);
}

#[test]
fn hash_tree_children_are_non_empty_and_add_up() {
    let cfg = WireConfig::default();
    // Found by the fuzzer: Syntax metadata claiming a 268M-entry map tree
    // whose children are an empty map and a one-entry map.
    let found = h("88 82 00 82 ff ff ff 00 01 00 88 82 00 82 01 00 82 00");
    let e = MultiCell::decode(Bytes::from(found), &cfg).unwrap_err();
    assert_eq!((e.kind, e.offset), (K::TreeChild, 11), "the empty child map");
    // Counts that do not add up (two inline leaves of 1 under a node of 16).
    let e = MultiCell::decode(Bytes::from(h("83 10 00 00 03 83 01 11 01 83 01 11 02")), &cfg).unwrap_err();
    assert_eq!((e.kind, e.offset), (K::TreeChild, 0));
}

#[test]
fn seed_message_shapes() {
    let cfg = WireConfig::default();
    let ok = |ty: MessageType, v: Value| -> Message {
        let b = encode_message(ty, &v, &cfg).unwrap();
        Message::decode(b, &cfg).unwrap()
    };
    assert_eq!(ok(MessageType::Query, payload::query(7, Value::keyword("x"))).id(), Some(7));
    assert_eq!(ok(MessageType::Transact, payload::transact(8, Value::Long(1))).id(), Some(8));
    assert_eq!(ok(MessageType::Status, payload::status(9)).id(), Some(9));
    let r = ok(MessageType::Result, payload::result(10, Value::Nil, Some("LOAD"), Value::Nil));
    assert_eq!(r.id(), Some(10));
    // 130 IDs: too many for one request.
    let ids: Vec<ValueId> = (0..130u8).map(|i| ValueId([i; 32])).collect();
    let m = ok(MessageType::MissingData, payload::missing_data(11, &ids[..100]));
    assert_eq!(m.missing_request().unwrap(), ids[..100].to_vec());
    let too_many = encode_message(MessageType::MissingData, &payload::missing_data(12, &ids), &cfg).unwrap();
    assert_eq!(
        Message::decode(too_many, &cfg).unwrap_err().kind,
        K::BadPayload { ty: "MISSING_DATA", reason: PayloadError::BadHashList }
    );
    let d = ok(MessageType::Data, payload::data(13, vec![Value::Nil, Value::blob(vec![1u8; 500])]));
    assert_eq!(d.id(), Some(13));
    assert_eq!(d.payload().branch_count(), 1);
    // Unknown types are carried, not rejected.
    let other = ok(MessageType::Other(0x99), Value::Long(5));
    assert_eq!(other.ty(), MessageType::Other(0x99));
    // Bad shapes name their rule.
    let bad = |ty, v: Value| Message::decode(encode_message(ty, &v, &cfg).unwrap(), &cfg).unwrap_err().kind;
    assert_eq!(
        bad(MessageType::Status, Value::Vector(vec![Value::Long(-1)])),
        K::BadPayload { ty: "STATUS", reason: PayloadError::BadId }
    );
    assert_eq!(
        bad(MessageType::Query, Value::Vector(vec![Value::Long(1)])),
        K::BadPayload { ty: "QUERY", reason: PayloadError::WrongCount }
    );
    assert_eq!(
        bad(
            MessageType::Result,
            Value::Record(0xdd, vec![Value::Long(1), Value::Nil, Value::Long(3), Value::Nil, Value::Nil])
        ),
        K::BadPayload { ty: "RESULT", reason: PayloadError::BadErrorCode }
    );
}

/// Arbitrary values that can stand as a top cell (anything but a Ref).
pub(crate) fn arb_top() -> impl Strategy<Value = Value> {
    arb_value().prop_filter("a Ref cannot be the top cell", |v| !matches!(v, Value::Ref(_)))
}

/// Arbitrary values covering every encodable family, including trees.
pub(crate) fn arb_value() -> impl Strategy<Value = Value> {
    let name = proptest::collection::vec(any::<u8>(), 1..=128).prop_map(Bytes::from);
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        (2u8..=15).prop_map(Value::ByteFlag),
        any::<i64>().prop_map(Value::Long),
        any::<u64>().prop_map(Value::Double),
        prop_oneof![0u32..=0xff, 0x100u32..=0xffff, 0x10000u32..=0x10ffff].prop_map(Value::Char),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|v| Value::Blob(v.into())),
        // Rarely, a blob or string large enough to become a tree.
        (4097usize..20_000, any::<u8>()).prop_map(|(n, b)| Value::Blob(vec![b; n].into())),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(|v| Value::String(v.into())),
        name.clone().prop_map(Value::Symbol),
        name.prop_map(Value::Keyword),
        (0u64..=vlq::MAX_VALUE, 0xe0u8..=0xef).prop_map(|(x, t)| Value::Extension(t, x)),
        proptest::collection::vec(any::<u8>(), 9..40).prop_filter_map("minimal BigInt", |mut v| {
            v[0] = v[0].clamp(1, 0x7f);
            Some(Value::BigInt(v.into()))
        }),
        any::<[u8; 32]>().prop_map(|b| Value::Ref(ValueId(b))),
    ];
    leaf.prop_recursive(4, 400, 40, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..40).prop_map(Value::Vector),
            proptest::collection::vec(inner.clone(), 0..20).prop_map(Value::List),
            (0xd0u8..=0xdf, proptest::collection::vec(inner.clone(), 0..20)).prop_map(|(t, v)| Value::Record(t, v)),
            proptest::collection::vec((any::<i64>(), inner.clone()), 0..40).prop_map(|kv| {
                let mut seen = std::collections::HashSet::new();
                Value::Map(kv.into_iter().filter(|(k, _)| seen.insert(*k)).map(|(k, v)| (Value::Long(k), v)).collect())
            }),
            proptest::collection::vec(any::<u32>(), 0..40).prop_map(|ks| {
                let set: std::collections::BTreeSet<_> = ks.into_iter().collect();
                Value::Set(set.into_iter().map(|k| Value::Long(i64::from(k))).collect())
            }),
            (inner.clone(), proptest::collection::vec((any::<u16>(), inner.clone()), 0..3)).prop_map(|(d, m)| {
                let mut seen = std::collections::HashSet::new();
                let meta =
                    m.into_iter().filter(|(k, _)| seen.insert(*k)).map(|(k, v)| (Value::Long(k.into()), v)).collect();
                Value::Syntax(Box::new(d), meta)
            }),
            (any::<bool>(), any::<[u8; 32]>(), inner.clone()).prop_map(|(k, key, v)| Value::Signed(
                k.then_some(key),
                Box::new([7u8; 64]),
                Box::new(v)
            )),
            (0xa0u8..=0xaf, proptest::collection::btree_map(0u8..63, inner.clone(), 0..6))
                .prop_map(|(t, m)| { Value::Sparse(t, m.into_iter().filter(|(_, v)| *v != Value::Nil).collect()) }),
            (0xc0u8..=0xcf, inner.clone(), inner).prop_map(|(t, c, v)| Value::Coded(t, Box::new(c), Box::new(v))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// encode → decode → value → encode gives the same bytes, and every
    /// branch cell is found again by value ID.
    #[test]
    fn values_round_trip(v in arb_top(), sha3 in any::<bool>()) {
        let cfg = WireConfig { hash: if sha3 { HashAlg::Sha3_256 } else { HashAlg::Blake3 }, ..WireConfig::default() };
        let enc = encode(&v, &cfg).unwrap();
        let bytes = enc.to_bytes();
        let mc = MultiCell::decode(bytes.clone(), &cfg).unwrap();
        prop_assert_eq!(mc.branch_count(), enc.branches.len());
        prop_assert_eq!(mc.top_id(cfg.hash), enc.top_id(cfg.hash));
        let back = to_value(&mc).unwrap();
        prop_assert_eq!(encode(&back, &cfg).unwrap().to_bytes(), bytes);
        // Maps and sets come back in key-hash order; everything else as built.
        let dbg = format!("{v:?}");
        if !(dbg.contains("Map(") || dbg.contains("Set(") || dbg.contains("Syntax(")) {
            prop_assert_eq!(back, v);
        }
    }

    /// A message round-trips through frames, fed in arbitrary pieces.
    #[test]
    fn messages_through_frames(v in arb_top(), ty in any::<u8>(), cuts in proptest::collection::vec(1usize..64, 1..20)) {
        let cfg = WireConfig::default();
        let ty = MessageType::from_byte(ty);
        // Known types have fixed shapes; wrap the value accordingly.
        let payload_v = match ty {
            MessageType::Query => payload::query(1, v),
            MessageType::Transact => payload::transact(2, v),
            MessageType::Status => payload::status(3),
            MessageType::Result => payload::result(4, v, None, Value::Nil),
            MessageType::MissingData => payload::missing_data(5, &[ValueId([1; 32])]),
            MessageType::Data => payload::data(6, vec![v]),
            _ => v,
        };
        let msg = encode_message(ty, &payload_v, &cfg).unwrap();
        let mut wire = BytesMut::new();
        write_frame(&mut wire, &msg);
        write_frame(&mut wire, &msg);
        let wire = wire.freeze();
        let mut d = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < wire.len() {
            let n = cuts[i % cuts.len()].min(wire.len() - at);
            buf.extend_from_slice(&wire[at..at + n]);
            at += n;
            i += 1;
            while let Some(f) = d.decode(&mut buf).unwrap() {
                got.push(Message::decode(f.freeze(), &cfg).unwrap());
            }
        }
        prop_assert_eq!(got.len(), 2);
        prop_assert_eq!(got[0].ty(), ty);
        prop_assert_eq!(got[1].payload().bytes(), got[0].payload().bytes());
        prop_assert_eq!(&got[0].payload().bytes()[..], &msg[1..]);
    }

    /// Corrupted encodings never panic: each decoder returns a value or a typed error.
    #[test]
    fn corruption_never_panics(v in arb_top(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let cfg = WireConfig::default();
        let mut b = encode(&v, &cfg).unwrap().to_bytes().to_vec();
        for (at, x) in flips {
            let i = at % b.len();
            b[i] ^= x;
        }
        let cut = cut % (b.len() + 1);
        for input in [&b[..], &b[..cut]] {
            let _ = MultiCell::decode(Bytes::copy_from_slice(input), &cfg);
            let _ = Cell::decode(Bytes::copy_from_slice(input), &cfg);
            let _ = Message::decode(Bytes::copy_from_slice(input), &cfg);
            if let Ok(mc) = MultiCell::decode(Bytes::copy_from_slice(input), &cfg) {
                let _ = to_value(&mc);
            }
        }
    }
}
