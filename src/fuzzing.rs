//! Harnesses shared by the fuzz targets under `fuzz/` and by an ordinary test
//! that replays the committed corpus (`tests/fuzz_corpus.rs`): one property
//! harness, run both ways (as s2n-quic does).
//!
//! Each harness takes arbitrary bytes, must never panic, and checks the
//! invariants the decoders promise.

use bytes::{Bytes, BytesMut};

use crate::wire::{self, FrameDecoder, Message, MultiCell, WireConfig};

/// Feeds `data` to a [`FrameDecoder`] in pieces whose sizes come from the
/// first byte, decoding every complete frame as a message.
pub fn frame_decoder(data: &[u8]) {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 32) + 1;
    let max = 4096;
    let mut d = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut framed = 0usize;
    for chunk in rest.chunks(step) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            match d.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(!frame.is_empty() && frame.len() <= max, "frame length outside limits");
                    framed += frame.len();
                    let _ = Message::decode(frame.freeze(), &WireConfig::default());
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // Consumed plus buffered is exactly what was fed.
        assert_eq!(d.consumed() as usize + buf.len(), fed);
        assert!(framed <= fed);
        // A pending frame never asks for more than the limit allows.
        assert!(d.wanted(&buf) <= max + wire::vlq::MAX_LEN);
    }
}

/// Decodes `data` as a multi-cell encoding under both hash choices and checks
/// what a successful decode promises.
pub fn multicell(data: &[u8]) {
    for cfg in [WireConfig::default(), WireConfig::convex()] {
        let Ok(mc) = MultiCell::decode(Bytes::copy_from_slice(data), &cfg) else {
            continue;
        };
        let (lo, hi) = mc.cell_size_range();
        assert!(lo >= 1 && hi <= cfg.max_cell);
        for (id, cell) in mc.branches() {
            assert_eq!(cell.value_id(cfg.hash), id, "branch indexed under its own hash");
            assert!(cell.len() > wire::cell::MAX_EMBEDDED_LEN);
        }
        for id in mc.missing() {
            assert!(mc.branch(id).is_none(), "a missing ref is not carried");
        }
        // Reading the value is bounded and, when it succeeds, re-encodes to
        // the same top cell — unless an opaque cell stands in for part of it,
        // or the encoding holds a Map/Set tree node: how a hash tree
        // partitions its entries (and, across branches, its counts) are
        // structural rules the decoder does not check (docs/protocol.md 3.3).
        let hash_tree = std::iter::once(mc.top()).chain(mc.branches().map(|(_, c)| c)).any(|c| holds_hash_tree(&c));
        if let Ok(v) = wire::to_value(&mc) {
            if let Ok(enc) = wire::encode(&v, &cfg) {
                if !hash_tree && !has_opaque(&v) {
                    assert_eq!(&enc.top, mc.top().encoding(), "canonical input re-encodes identically");
                }
            }
        }
    }
}

/// Whether a cell or any cell embedded in it is a Map/Set tree node.
fn holds_hash_tree(c: &wire::Cell) -> bool {
    let tree = matches!(c.tag(), 0x82 | 0x83)
        && wire::vlq::decode(&c.encoding()[1..]).is_ok_and(|(n, _)| n > wire::cell::MAX_HASH_LEAF);
    tree || c.children().iter().any(|k| matches!(k, wire::Child::Inline(ic) if holds_hash_tree(ic)))
}

/// Whether a value holds an opaque cell (whose branches are not re-emitted).
fn has_opaque(v: &wire::Value) -> bool {
    use wire::Value as V;
    match v {
        V::Cell(_) => true,
        V::Map(e) => e.iter().any(|(k, x)| has_opaque(k) || has_opaque(x)),
        V::Set(e) | V::Vector(e) | V::List(e) | V::Record(_, e) => e.iter().any(has_opaque),
        V::Syntax(d, m) => has_opaque(d) || m.iter().any(|(k, x)| has_opaque(k) || has_opaque(x)),
        V::Signed(_, _, x) => has_opaque(x),
        V::Sparse(_, f) => f.iter().any(|(_, x)| has_opaque(x)),
        V::Coded(_, a, b) => has_opaque(a) || has_opaque(b),
        _ => false,
    }
}

/// The fixed clock the handshake harness runs at (seed inputs carry it).
pub const FUZZ_NOW_MS: u64 = 1_750_000_000_000;

/// The responder identity the handshake harness answers as.
pub fn fuzz_responder() -> crate::handshake::Identity {
    crate::handshake::Identity::from_secret([2; 32])
}

/// Feeds `data` to a responder as message 1 and, if it authenticates,
/// answers it: never panics; a success yields a reply of the fixed length.
pub fn responder_msg1(data: &[u8]) {
    use crate::handshake::{Decision, HandshakeConfig, ReplayGuard, Responder, connect, early_reply_for};
    let cfg = HandshakeConfig::default();
    let mut replay = ReplayGuard::new(cfg.max_clock_skew_ms, 64);
    let me = fuzz_responder();
    match Responder::new(&me, &cfg, FUZZ_NOW_MS).read_request(data, FUZZ_NOW_MS, &mut replay) {
        Ok(pending) => {
            assert_eq!(pending.request().dst_node_id, me.node_id());
            let decision = Decision::Accept { own_advert_ver: 1, known_initiator_advert_ver: 0 };
            if let Ok((msg2, _)) = pending.finish(decision) {
                assert_eq!(msg2.len(), connect::MSG2_LEN);
            }
            // The same bytes again are a replay, refused before any DH.
            let again = Responder::new(&me, &cfg, FUZZ_NOW_MS).read_request(data, FUZZ_NOW_MS, &mut replay);
            assert!(matches!(again, Err(crate::handshake::HandshakeError::Replayed)));
        }
        Err(e) => {
            let _ = early_reply_for(&e);
        }
    }
}

/// Feeds `data` (in pieces sized by its first byte) to the receiving end of
/// a fixed-key link: never panics; once it fails it stays failed. A second
/// link gets the same pieces as separate received buffers (the ring path's
/// way) and must hand out the same frames and fail at the same piece.
pub fn record_open(data: &[u8]) {
    use crate::handshake::{AeadBackend, Link};
    let Some((&step, rest)) = data.split_first() else { return };
    let fixed = || Link::insecure_fixed_key_pair_for_testing(AeadBackend::default(), 1 << 16);
    let (Ok((_, mut rx)), Ok((_, mut rx2))) = (fixed(), fixed()) else { return };
    let (mut buf, mut pending) = (BytesMut::new(), BytesMut::new());
    let mut failed = false;
    for chunk in rest.chunks(usize::from(step) * 16 + 1) {
        buf.extend_from_slice(chunk);
        let r = rx.handle_recv(&mut buf);
        let r2 = rx2.handle_recv_buf(&mut pending, BytesMut::from(chunk));
        assert_eq!(r.is_ok(), r2.is_ok(), "both ways of reading agree on the records");
        assert!(!(failed && r.is_ok()), "a failed link accepted more records");
        failed |= r.is_err();
        loop {
            let (f, f2) = (rx.poll_frame(), rx2.poll_frame());
            assert_eq!(f, f2, "both ways of reading hand out the same frames");
            match f {
                Ok(Some(f)) => assert!(!f.is_empty() && f.len() <= 1 << 16),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
    }
}

/// Splits `data` into link frames (each a 2-byte big-endian length, then
/// that many bytes) and feeds them to a node proxy whose link is up, as
/// frames received from the peer: never panics; after a frame error the
/// link is done.
pub fn link_frames(data: &[u8]) {
    use crate::handshake::NodeId;
    use crate::proxy::{Deliver, EngineMsg, LinkId, LinkInfo, NodeProxy, Permanence, ProxyConfig, RefuseReason};
    use crate::proxy::{TransportPrefs, frames::Frame};
    struct Take(u32);
    impl Deliver for Take {
        fn deliver(&mut self, _from: NodeId, _m: EngineMsg, _p: TransportPrefs) -> Result<(), RefuseReason> {
            // Refuse every third message, so refusal logs fill too.
            self.0 += 1;
            if self.0 % 3 == 0 { Err(RefuseReason::Busy) } else { Ok(()) }
        }
    }
    let (me, remote) = (NodeId([1; 32]), NodeId([2; 32]));
    let mut px = NodeProxy::new(remote, me, Permanence::Ephemeral, ProxyConfig::default(), 7);
    let link = LinkId(1);
    let info = LinkInfo { initiator: remote, remote_advert_ver: 0, remote_knows_our_advert_ver: 0 };
    px.handle_link_up(link, info, 0);
    let mut deliver = Take(0);
    let mut rest = data;
    let mut now = 0;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let frame = Bytes::copy_from_slice(&rest[2..2 + n]);
        rest = &rest[2 + n..];
        now += 3;
        let decoded = Frame::decode(frame.clone());
        let r = px.handle_frame(link, frame, now, &mut deliver);
        if decoded.is_err() {
            assert!(r.is_err(), "a frame that does not decode is not accepted");
        }
        while px.poll_event().is_some() {}
        let mut out: Vec<Bytes> = Vec::new();
        while px.poll_transmit(link, &mut out, now) && out.len() < 10_000 {}
        if r.is_err() {
            return;
        }
    }
}

/// Decodes `data` as a message and, by type, as an RPC message, a DATA
/// answer or a MISSING_DATA request: never panics; an RPC message that
/// decodes encodes back to one that decodes the same.
pub fn rpc_peer(data: &[u8]) {
    let cfg = WireConfig::default();
    let Ok(m) = Message::decode(Bytes::copy_from_slice(data), &cfg) else { return };
    if let Ok(r) = crate::rpc::RpcMsg::decode(&m) {
        let again = r.encode(&cfg).expect("a decoded RPC message encodes");
        assert_eq!(crate::rpc::RpcMsg::decode(&again).as_ref(), Ok(&r), "RPC round trip");
    }
    if let Some((_, cells)) = crate::peer::assemble::data_cells(&m) {
        assert!(cells.len() <= 16);
    }
    if let Some(ids) = m.missing_request() {
        assert!(!ids.is_empty() && ids.len() <= wire::message::MAX_MISSING_PER_REQUEST);
    }
}
