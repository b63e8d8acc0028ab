//! The services `shardwire node --service` can run: the `echo` and `sink`
//! engines, and `rpc-echo` (an RPC service plus a peer-message handler).

use bytes::Bytes;
use shardwire::handshake::NodeId;
use shardwire::node::{
    Engine, PeerHandler, PeerRequest, Request, Responder, ResultReply, SendOptions, Service, ShardCtx,
};
use shardwire::proxy::EngineMsg;
use shardwire::rpc::Status;
use shardwire::wire::Value;
use std::future::Future;
use std::pin::Pin;

/// Returns every message to the engine that sent it.
pub struct Echo;

impl Engine for Echo {
    fn on_message(&mut self, ctx: &ShardCtx, from: NodeId, msg: EngineMsg) {
        let reply = msg.msg.clone();
        // A full queue drops the echo; the sender sees no reply, not a loss of
        // its own message (which was delivered).
        let _ = ctx.reply(from, &msg, reply, SendOptions::default());
    }
}

/// Counts and discards (the node counts what each engine received).
pub struct Sink;

impl Engine for Sink {
    fn on_message(&mut self, _ctx: &ShardCtx, _from: NodeId, _msg: EngineMsg) {}
}

/// The RPC service name `rpc-echo` registers.
pub const RPC_ECHO: &str = "echo";
/// Method 1: answer with the request's payload.
pub const METHOD_ECHO: u32 = 1;
/// Method 2: payload = 4-byte big-endian count N ‖ data; answers with a
/// stream of N items, each the data.
pub const METHOD_STREAM: u32 = 2;

/// The payload of a STREAM request.
pub fn stream_request(count: u32, data: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(4 + data.len());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(data);
    Bytes::from(b)
}

/// The `echo` RPC service.
pub struct RpcEcho;

impl Service for RpcEcho {
    fn handle(&self, req: Request, mut out: Responder) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move {
            match req.method {
                METHOD_ECHO => out.reply(req.payload),
                METHOD_STREAM if req.payload.len() >= 4 => {
                    if !req.streaming {
                        out.error(Status::BAD_REQUEST, Bytes::from_static(b"STREAM needs a streamed call"));
                        return;
                    }
                    let n = u32::from_be_bytes([req.payload[0], req.payload[1], req.payload[2], req.payload[3]]);
                    let data = req.payload.slice(4..);
                    for _ in 0..n {
                        if out.send(data.clone()).await.is_err() {
                            return; // cancelled
                        }
                    }
                    out.finish();
                }
                METHOD_STREAM => out.error(Status::BAD_REQUEST, Bytes::from_static(b"STREAM payload: count(4) data")),
                _ => out.error(Status::NOT_IMPLEMENTED, Bytes::new()),
            }
        })
    }
}

/// Answers QUERY with the query value itself and STATUS with `[:ok shard]`.
pub struct EchoPeer {
    pub shard: usize,
}

impl PeerHandler for EchoPeer {
    fn query(&self, req: PeerRequest, reply: ResultReply) {
        match req.body() {
            Some(c) => reply.ok(Value::Cell(c)),
            None => reply.ok(Value::Nil),
        }
    }

    fn status(&self, _req: PeerRequest, reply: ResultReply) {
        reply.ok(Value::Vector(vec![Value::keyword("ok"), Value::Long(self.shard as i64)]));
    }
}
