//! `shardwire rpc`: one RPC call to a node, its result or typed error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use shardwire::handshake::Identity;
use shardwire::node::{DialError, Node, NodeEvent, Shards};
use shardwire::proxy::Permanence;
use shardwire::rpc::RpcError;

use crate::node::{Peer, parse_peer};
use crate::{EXIT_BAD_INPUT, services};

#[derive(Args)]
pub struct RpcArgs {
    /// The node to call: NODEID@ADDR.
    #[arg(long, value_parser = parse_peer)]
    pub target: Peer,
    /// Key file; without it a fresh identity is made.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The service.
    #[arg(long, default_value = services::RPC_ECHO)]
    pub service: String,
    /// The method: echo (1), stream (2), or a number.
    #[arg(long, default_value = "echo", value_parser = parse_method)]
    pub method: u32,
    /// Payload size, e.g. 64, 1K, 64KiB.
    #[arg(long, default_value = "64", value_parser = crate::units::parse_size)]
    pub payload_size: usize,
    /// Deadline in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub deadline_ms: u64,
    /// Ask for a stream of N responses (method stream of the echo service).
    #[arg(long)]
    pub stream: Option<u32>,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

fn dial_failed(node: &shardwire::node::NodeHandle, args: &RpcArgs, e: DialError) -> ExitCode {
    node.shutdown(Duration::from_millis(100));
    if args.json {
        println!("{}", serde_json::json!({"status": "error", "error": "handshake", "message": e.to_string()}));
    }
    eprintln!("error: cannot connect to {}@{}: {e}", args.target.id, args.target.addr);
    ExitCode::from(1)
}

fn parse_method(s: &str) -> Result<u32, String> {
    match s {
        "echo" => Ok(services::METHOD_ECHO),
        "stream" => Ok(services::METHOD_STREAM),
        n => n.parse().map_err(|_| format!("{s:?}: expected echo, stream or a method number")),
    }
}

pub fn run(args: RpcArgs) -> ExitCode {
    let identity = match args.key.as_deref().map(crate::node::load_key).transpose() {
        Ok(i) => i.unwrap_or_else(Identity::generate),
        Err(code) => return code,
    };
    if args.payload_size > 4 << 20 {
        eprintln!("error: --payload-size at most 4MiB (the RPC payload limit)");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let node = match Node::builder().identity(identity).shards(Shards::Count(1)).start() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    // Permanent: the node dials at once (an ephemeral peer waits for
    // something to send), as loadgen's and latency's peers do.
    node.add_peer(args.target.id, args.target.addr, Permanence::Permanent);
    let data = crate::measure::payload(args.payload_size).to_vec();
    let deadline = Duration::from_millis(args.deadline_ms);
    // The link is set up first and timed on its own, so the figure printed
    // for the call is the call (its session opening included), not the
    // dial and handshake before it; both share the one deadline.
    let start = Instant::now();
    // The last dial failure that was retried, to say why no link came up.
    let mut last_dial = None;
    let linked = loop {
        let Some(left) = deadline.checked_sub(start.elapsed()) else { break false };
        match node.events().recv_timeout(left) {
            Ok(NodeEvent::LinkUp(n)) if n == args.target.id => break true,
            // A hard handshake failure ends the tool at once.
            Ok(NodeEvent::DialFailed { node: n, error }) if n == args.target.id && error.is_fatal() => {
                return dial_failed(&node, &args, error);
            }
            Ok(NodeEvent::DialFailed { node: n, error }) if n == args.target.id => last_dial = Some(error),
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    let waited = start.elapsed();
    let connect_ms = waited.as_secs_f64() * 1000.0;
    let left = deadline.saturating_sub(waited);
    let t = Instant::now();
    let result: Result<(u64, u64), RpcError> = if !linked {
        Err(RpcError::DeadlineExceeded { reported_by_server: false })
    } else {
        match args.stream {
            None => node
                .call(args.target.id, &args.service, args.method, Bytes::from(data), left)
                .wait()
                .map(|b| (1, b.len() as u64)),
            Some(n) => {
                let method = if args.method == services::METHOD_ECHO { services::METHOD_STREAM } else { args.method };
                let payload = if method == services::METHOD_STREAM {
                    services::stream_request(n, &data)
                } else {
                    Bytes::from(data)
                };
                let mut st = node.call_streaming(args.target.id, &args.service, method, payload, left);
                let (mut items, mut bytes) = (0u64, 0u64);
                loop {
                    match st.next_blocking() {
                        Some(Ok(b)) => {
                            items += 1;
                            bytes += b.len() as u64;
                        }
                        Some(Err(e)) => break Err(e),
                        None => break Ok((items, bytes)),
                    }
                }
            }
        }
    };
    // No call was made without a link: its time is left out (JSON null).
    let elapsed_ms = linked.then(|| t.elapsed().as_secs_f64() * 1000.0);
    node.shutdown(Duration::from_millis(200));
    match result {
        Ok((items, bytes)) => {
            let elapsed_ms = elapsed_ms.unwrap_or_default();
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"status": "ok", "items": items, "bytes": bytes,
                        "elapsed_ms": elapsed_ms, "connect_ms": connect_ms})
                );
            } else if args.stream.is_some() {
                println!("ok: {items} items, {bytes} bytes in {elapsed_ms:.2} ms (link up in {connect_ms:.2} ms)");
            } else {
                println!("ok: {bytes} bytes in {elapsed_ms:.2} ms (link up in {connect_ms:.2} ms)");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let message = match (linked, last_dial) {
                (true, _) => e.to_string(),
                (false, None) => format!("{e}: no link to {} came up in time", args.target.addr),
                (false, Some(d)) => format!("{e}: no link to {} came up in time (last dial: {d})", args.target.addr),
            };
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"status": "error", "error": e.reason(), "message": message,
                        "retryable": e.is_retryable(), "elapsed_ms": elapsed_ms, "connect_ms": connect_ms})
                );
            }
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}
