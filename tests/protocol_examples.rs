//! The worked examples of docs/protocol.md, asserted byte for byte, so the
//! document other teams implement from cannot drift from the code.

use bytes::{Bytes, BytesMut};
use shardwire::wire::{
    Cell, DecodeErrorKind, FrameDecoder, HashAlg, Message, MessageType, MultiCell, Value, ValueId, WireConfig, encode,
    encode_message, payload, vlq, write_frame,
};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn enc(v: &Value) -> String {
    hex::encode(encode(v, &WireConfig::default()).unwrap().to_bytes())
}

#[test]
fn section_2_vlq_table() {
    for (v, bytes) in [
        (0u64, "00"),
        (127, "7f"),
        (128, "8100"),
        (255, "817f"),
        (16383, "ff7f"),
        (16384, "818000"),
        (1 << 32, "9080808000"),
        (vlq::MAX_VALUE, "ffffffffffffffff7f"),
    ] {
        assert_eq!(hex::encode(vlq::to_vec(v).unwrap()), bytes);
    }
}

#[test]
fn section_3_and_7_cells() {
    assert_eq!(enc(&Value::Long(0)), "10");
    assert_eq!(enc(&Value::Long(1)), "1101");
    assert_eq!(enc(&Value::Long(-1)), "11ff");
    assert_eq!(enc(&Value::Long(128)), "120080");
    assert_eq!(enc(&Value::blob(vec![])), "3100");
    assert_eq!(enc(&Value::string("Hi")), "30024869");
    assert_eq!(enc(&Value::Vector(vec![Value::Long(1)])), "80011101");
    assert_eq!(
        enc(&Value::Vector(vec![Value::Long(101), Value::string("Hello"), Value::Set(vec![])])),
        "80031165300548656c6c6f8300"
    );
    assert_eq!(enc(&Value::keyword("x")), "330178");
    assert_eq!(enc(&Value::Bool(false)), "b0");
    assert_eq!(enc(&Value::Bool(true)), "b1");
    assert_eq!(enc(&Value::Syntax(Box::new(Value::Long(1)), vec![])), "88110100");
    let cfg = WireConfig::default();
    let bad = |s: &str| Cell::decode(Bytes::from(h(s)), &cfg).unwrap_err().kind;
    assert_eq!(bad("11 00"), DecodeErrorKind::NonMinimalInteger);
    assert_eq!(bad("10 ff"), DecodeErrorKind::TrailingBytes);
    assert_eq!(bad("ff"), DecodeErrorKind::IllegalTag(0xff));
    // 3.4 value IDs
    assert_eq!(
        HashAlg::Sha3_256.hash(&[0]).to_hex(),
        "5d53469f20fef4f8eab52b88044ede69c77a6a68a60728609fc4a65ff531e7d0"
    );
}

#[test]
fn section_7_messages_and_frames() {
    let cfg = WireConfig::default();
    let status = encode_message(MessageType::Status, &payload::status(9), &cfg).unwrap();
    assert_eq!(hex::encode(&status), "0c80011109");
    let mut frame = BytesMut::new();
    write_frame(&mut frame, &status);
    assert_eq!(hex::encode(&frame), "050c80011109");
    let body = FrameDecoder::new(100).decode(&mut frame).unwrap().unwrap();
    assert_eq!(Message::decode(body.freeze(), &cfg).unwrap().id(), Some(9));

    let query = encode_message(MessageType::Query, &payload::query(7, Value::keyword("x")), &cfg).unwrap();
    assert_eq!(hex::encode(&query), "0680021107330178");

    let result =
        encode_message(MessageType::Result, &payload::result(10, Value::Nil, Some("LOAD"), Value::Nil), &cfg).unwrap();
    assert_eq!(hex::encode(&result), "08dd05110a0033044c4f41440000");

    let id = ValueId([0xab; 32]);
    let missing = encode_message(MessageType::MissingData, &payload::missing_data(3, &[id]), &cfg).unwrap();
    assert_eq!(hex::encode(&missing), format!("0580021103 3120{}", id.to_hex()).replace(' ', ""));
}

#[test]
fn section_7_multicell() {
    let cfg = WireConfig::default();
    let mut b = h("31 81 48");
    b.extend([1u8; 200]);
    assert_eq!(b.len(), 203);
    let id = cfg.hash.hash(&b);
    let mut top = h("80 01 20");
    top.extend_from_slice(&id.0);
    let mut full = top.clone();
    full.extend(h("81 4b"));
    full.extend_from_slice(&b);
    assert_eq!(encode(&Value::Vector(vec![Value::blob(vec![1u8; 200])]), &cfg).unwrap().to_bytes(), full);
    let partial = MultiCell::decode(Bytes::from(top), &cfg).unwrap();
    assert_eq!(partial.missing(), &[id]);
}

#[test]
fn section_11_rpc_example() {
    use shardwire::rpc::{RpcMsg, RpcRequest, RpcResponse};
    let cfg = WireConfig::default();
    let session = RpcMsg::Session { session: 1, service: "echo".into(), versions: vec![1] };
    assert_eq!(hex::encode(session.encode(&cfg).unwrap().bytes()), "40800311013004656368 6f80011101".replace(' ', ""));
    let req = RpcMsg::Request(RpcRequest {
        session: 1,
        request_id: 7,
        method: 1,
        flags: 0,
        deadline_ms: 500,
        credit: 0,
        payload: Bytes::from_static(b"hi"),
    });
    assert_eq!(
        hex::encode(req.encode(&cfg).unwrap().bytes()),
        "42800711011107110110 1201f410310268 69".replace(' ', "")
    );
    let resp = RpcMsg::Response(RpcResponse {
        session: 1,
        request_id: 7,
        status: 0,
        flags: 1,
        payload: Bytes::from_static(b"hi"),
    });
    assert_eq!(hex::encode(resp.encode(&cfg).unwrap().bytes()), "4380051101110710110131026869");
}
