//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! same harnesses the fuzz targets run, so every CI run re-checks the inputs
//! the fuzzers found interesting.

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        harness(&data);
        n += 1;
    }
    assert!(n >= 5, "corpus for {target} has only {n} inputs");
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", shardwire::fuzzing::frame_decoder);
}

#[test]
fn multicell_corpus() {
    replay("multicell", shardwire::fuzzing::multicell);
}

#[test]
fn responder_msg1_corpus() {
    replay("responder_msg1", shardwire::fuzzing::responder_msg1);
}

#[test]
fn record_open_corpus() {
    replay("record_open", shardwire::fuzzing::record_open);
}

#[test]
fn link_frames_corpus() {
    replay("link_frames", shardwire::fuzzing::link_frames);
}

#[test]
fn rpc_peer_corpus() {
    replay("rpc_peer", shardwire::fuzzing::rpc_peer);
}

/// Writes the seed inputs of the link_frames and rpc_peer targets (run
/// once with `cargo test --test fuzz_corpus -- --ignored`; the files are
/// committed).
#[test]
#[ignore]
fn write_seed_corpus() {
    use bytes::Bytes;
    use shardwire::proxy::{EngineId, EngineMsg, GoodbyeReason, RefuseReason, TransportPrefs, frames};
    use shardwire::rpc::{ControlKind, RejectReason, RpcMsg, RpcRequest, RpcResponse};
    use shardwire::wire::{Message, MessageType, Value, WireConfig, encode_message, payload};
    let cfg = WireConfig::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let msg = |ty: MessageType, v: Value| Message::decode(encode_message(ty, &v, &cfg).unwrap(), &cfg).unwrap();
    // link_frames: sequences of length-prefixed frames.
    let seqs: Vec<Vec<Bytes>> = {
        let data = |seq| {
            let mut v: Vec<Bytes> = Vec::new();
            let m = EngineMsg {
                sender: EngineId::named("a"),
                target: EngineId::named("b"),
                mailbox: None,
                msg: msg(MessageType::Query, payload::query(seq, Value::Long(1))),
            };
            frames::data(&mut v, seq, TransportPrefs::default(), &m);
            v.remove(0)
        };
        let one = |f: &dyn Fn(&mut Vec<Bytes>)| {
            let mut v = Vec::new();
            f(&mut v);
            v.remove(0)
        };
        let hello = one(&|v| frames::hello(v, 5, 0, 1, 0));
        vec![
            vec![hello.clone()],
            vec![hello.clone(), data(1), data(2), data(3)],
            vec![hello.clone(), data(2)],
            vec![hello.clone(), one(&|v| frames::ack(v, 1, &[]))],
            vec![hello.clone(), one(&|v| frames::ack(v, 3, &[(1, RefuseReason::Busy)]))],
            vec![hello.clone(), one(&|v| frames::ping(v, false, 9)), one(&|v| frames::ping(v, true, 9))],
            vec![hello.clone(), one(&|v| frames::goodbye(v, GoodbyeReason::Shutdown))],
            vec![data(1)],
            vec![hello, data(1), data(1)],
        ]
    };
    std::fs::create_dir_all(dir.join("link_frames")).unwrap();
    for (i, s) in seqs.iter().enumerate() {
        let mut out = Vec::new();
        for f in s {
            out.extend_from_slice(&(f.len() as u16).to_be_bytes());
            out.extend_from_slice(f);
        }
        std::fs::write(dir.join("link_frames").join(format!("seed-{i}")), out).unwrap();
    }
    // rpc_peer: RPC messages and peer messages.
    let rpcs = [
        RpcMsg::Session { session: 1, service: "echo".into(), versions: vec![1, 2] },
        RpcMsg::SessionReply { session: 1, result: Ok(1) },
        RpcMsg::SessionReply { session: 1, result: Err(RejectReason::NoClientSessionsAvailable) },
        RpcMsg::Request(RpcRequest {
            session: 1,
            request_id: 7,
            method: 2,
            flags: 1,
            deadline_ms: 500,
            credit: 16,
            payload: Bytes::from(vec![9; 300]),
        }),
        RpcMsg::Response(RpcResponse { session: 1, request_id: 7, status: 0, flags: 1, payload: Bytes::new() }),
        RpcMsg::Control { session: 1, request_id: 7, kind: ControlKind::Credit, n: 8 },
    ];
    std::fs::create_dir_all(dir.join("rpc_peer")).unwrap();
    for (i, r) in rpcs.iter().enumerate() {
        std::fs::write(dir.join("rpc_peer").join(format!("rpc-{i}")), r.encode(&cfg).unwrap().bytes()).unwrap();
    }
    let ids = [shardwire::wire::ValueId([3; 32]), shardwire::wire::ValueId([4; 32])];
    let peers = [
        msg(MessageType::MissingData, payload::missing_data(3, &ids)),
        msg(MessageType::Data, payload::data(3, vec![Value::blob(vec![1; 200]), Value::Nil])),
        msg(MessageType::Result, payload::result(3, Value::Long(1), Some("LOAD"), Value::Nil)),
    ];
    for (i, m) in peers.iter().enumerate() {
        std::fs::write(dir.join("rpc_peer").join(format!("peer-{i}")), m.bytes()).unwrap();
    }
}
