//! RPC end to end over real loopback links (bounded in time).

mod common;

use std::time::Duration;

use bytes::Bytes;
use shardwire::node::{NodeHandle, service_fn};
use shardwire::proxy::Permanence;
use shardwire::rpc::RpcError;

const ECHO: u32 = 1;
const COUNT: u32 = 2;

/// A node serving "echo": method 1 echoes; method 2 streams `n` items
/// (`n` = payload as a decimal string) numbered from 0.
fn server(shards: usize) -> NodeHandle {
    common::builder(shards)
        .rpc_service("echo", |_| {
            service_fn(|req, mut out| async move {
                match req.method {
                    ECHO => out.reply(req.payload),
                    COUNT => {
                        let n: u32 = std::str::from_utf8(&req.payload).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                        for i in 0..n {
                            if out.send(Bytes::from(i.to_string())).await.is_err() {
                                return;
                            }
                        }
                        out.finish();
                    }
                    _ => out.error(shardwire::rpc::Status::NOT_IMPLEMENTED, Bytes::new()),
                }
            })
        })
        .start()
        .unwrap()
}

fn pair(shards: usize) -> (NodeHandle, NodeHandle) {
    let s = server(shards);
    let c = common::node(shards);
    c.add_peer(s.node_id(), s.listen_addr().unwrap(), Permanence::Ephemeral);
    (s, c)
}

#[test]
fn unary_and_streamed_calls() {
    let (s, c) = pair(2);
    let r = c.call(s.node_id(), "echo", ECHO, Bytes::from_static(b"hello"), Duration::from_secs(10)).wait();
    assert_eq!(r.unwrap(), Bytes::from_static(b"hello"));
    // Unknown method: the service's status.
    let r = c.call(s.node_id(), "echo", 99, Bytes::new(), Duration::from_secs(10)).wait();
    assert!(matches!(r, Err(RpcError::Status { status, .. }) if status == shardwire::rpc::Status::NOT_IMPLEMENTED));
    // A stream of 100 items, in order, then the end.
    let mut st = c.call_streaming(s.node_id(), "echo", COUNT, Bytes::from_static(b"100"), Duration::from_secs(10));
    let mut got = Vec::new();
    while let Some(item) = st.next_blocking() {
        got.push(String::from_utf8(item.unwrap().to_vec()).unwrap());
    }
    assert_eq!(got, (0..100).map(|i| i.to_string()).collect::<Vec<_>>());
    c.shutdown(Duration::from_millis(200));
    s.shutdown(Duration::from_millis(200));
}
