//! `shardwire node`: run a node until SIGTERM/SIGINT.
//!
//! On start it prints one JSON line (`node_id`, `listen`, `shards`, `io`); on a
//! signal it shuts down gracefully and prints one JSON summary line.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use shardwire::handshake::{Identity, NodeId};
use shardwire::node::{EngineCounts, Node, NodeHandle, Placement, Shards, ShutdownReport, StartError};
use shardwire::proxy::Permanence;

use crate::{EXIT_BAD_INPUT, services};

#[derive(Args)]
pub struct NodeArgs {
    /// Key file (from `shardwire keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Address to listen on, e.g. 127.0.0.1:7000 (port 0 picks one).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Number of shards (default: one per core).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Pin shard i to CPU i (thread-per-core).
    #[arg(long)]
    pub pin: bool,
    /// A peer: NODEID@ADDR, or NODEID@ADDR,permanent to keep a link up.
    #[arg(long = "peer", value_parser = parse_peer)]
    pub peers: Vec<Peer>,
    /// Only these NodeIds may connect (repeatable); others are Denied.
    #[arg(long = "allow", value_parser = parse_node_id)]
    pub allow: Vec<NodeId>,
    /// What to run: echo (an engine returning every message to its
    /// sender), sink (an engine counting and discarding), rpc-echo (the RPC
    /// service "echo" and answers to QUERY/STATUS). Repeatable.
    #[arg(long = "service", value_enum)]
    pub services: Vec<Service>,
    /// Serve Prometheus metrics on this address (GET /metrics).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// How long a graceful shutdown may take, e.g. 5s.
    #[arg(long, default_value = "5s", value_parser = crate::units::parse_duration)]
    pub shutdown_timeout: Duration,
    #[command(flatten)]
    pub io: IoArgs,
}

/// The socket path flags every node-running command shares.
#[derive(Args, Clone, Copy, Debug)]
pub struct IoArgs {
    /// Socket path of every shard: uring (the shard's own io_uring ring) or
    /// glommio (glommio's TCP streams). uring falls back to glommio, with
    /// a warning, where the kernel refuses a ring feature.
    #[arg(long, value_enum, default_value = "uring")]
    pub io: Io,
    /// Ring path: how long a shard keeps polling its ring after the last
    /// completion before it sleeps, e.g. 50us (0s: sleep at once).
    #[arg(long, default_value = "50us", value_parser = crate::units::parse_duration)]
    pub ring_spin: Duration,
    /// Ring path: after --ring-spin, how long an idle shard may sleep inside
    /// its own ring (woken by the kernel as a blocked recv is) before it
    /// parks through glommio's reactor, e.g. 5ms (0s: park at once).
    #[arg(long, default_value = "5ms", value_parser = crate::units::parse_duration)]
    pub ring_sleep: Duration,
    /// Ring path: size of each of a shard's 256 receive buffers, 512 .. 1M.
    /// 16K (default) suits small messages; streams of large ones copy less
    /// with 128K (a record that spans two buffers is copied once: see the
    /// shardwire_ring_bytes_joined metric), at the price of more memory.
    #[arg(long, default_value = "16K", value_parser = parse_ring_buffer_size)]
    pub ring_buffer_size: usize,
}

fn parse_ring_buffer_size(s: &str) -> Result<usize, String> {
    let n = crate::units::parse_size(s)?;
    if shardwire::node::RING_BUFFER_SIZES.contains(&n) { Ok(n) } else { Err(format!("{n} bytes is outside 512 .. 1M")) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Io {
    Uring,
    Glommio,
}

impl IoArgs {
    /// Puts the flags into a node's configuration.
    pub fn apply(self, c: &mut shardwire::node::NodeConfig) {
        c.io = match self.io {
            Io::Uring => shardwire::node::IoMode::Uring,
            Io::Glommio => shardwire::node::IoMode::Glommio,
        };
        c.ring_spin = self.ring_spin;
        c.ring_sleep = self.ring_sleep;
        c.ring_buffer_size = self.ring_buffer_size;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Service {
    /// Return each received message to its sender.
    Echo,
    /// Count and discard.
    Sink,
    /// RPC service "echo" (method 1 echo, 2 stream) and QUERY/STATUS answers.
    RpcEcho,
}

#[derive(Clone, Debug)]
pub struct Peer {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub permanence: Permanence,
}

pub fn parse_node_id(s: &str) -> Result<NodeId, String> {
    s.parse::<NodeId>().map_err(|e| e.to_string())
}

/// `NODEID@ADDR[,permanent]`.
pub fn parse_peer(s: &str) -> Result<Peer, String> {
    let (main, flag) = match s.split_once(',') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    let (id, addr) = main.split_once('@').ok_or_else(|| format!("{s:?}: expected NODEID@ADDR[,permanent]"))?;
    let permanence = match flag {
        None | Some("ephemeral") => Permanence::Ephemeral,
        Some("permanent") => Permanence::Permanent,
        Some(other) => return Err(format!("{s:?}: unknown flag {other:?} (expected permanent)")),
    };
    let addr = addr.parse().map_err(|e| format!("{s:?}: bad address: {e}"))?;
    Ok(Peer { id: parse_node_id(id)?, addr, permanence })
}

/// Loads a key file; a bad one is a one-line error and exit code 2.
pub fn load_key(path: &std::path::Path) -> Result<Identity, ExitCode> {
    Identity::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_BAD_INPUT)
    })
}

/// The exit code for a node that would not start: 2 when the user asked
/// for too many shards (bad input), 1 otherwise.
pub fn start_failure(e: &StartError) -> ExitCode {
    ExitCode::from(if matches!(e, StartError::TooManyShards { .. }) { EXIT_BAD_INPUT } else { 1 })
}

pub fn run(args: NodeArgs) -> ExitCode {
    let identity = match load_key(&args.key) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let mut b = Node::builder().identity(identity).listen(args.listen).configure(|c| args.io.apply(c));
    if let Some(n) = args.shards {
        if n == 0 {
            eprintln!("error: --shards must be at least 1");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        b = b.shards(Shards::Count(n));
    }
    if args.pin {
        b = b.configure(|c| c.placement = Placement::PinnedPerCore);
    }
    for p in &args.peers {
        b = b.peer(p.id, p.addr, p.permanence);
    }
    for a in &args.allow {
        b = b.allow(*a);
    }
    for s in &args.services {
        b = match s {
            Service::Echo => b.engine("echo", |_| services::Echo),
            Service::Sink => b.engine("sink", |_| services::Sink),
            Service::RpcEcho => b
                .rpc_service(services::RPC_ECHO, |_| services::RpcEcho)
                .peer_handler(|info| services::EchoPeer { shard: info.index }),
        };
    }
    let node = match b.start() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return start_failure(&e);
        }
    };
    if let Some(addr) = args.metrics {
        if let Err(e) = serve_metrics(addr, node.clone()) {
            eprintln!("error: cannot serve metrics on {addr}: {e}");
            node.shutdown(Duration::from_secs(1));
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    }
    let listen = node.listen_addr().map(|a| a.to_string()).unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({"node_id": node.node_id().to_hex(), "listen": listen, "shards": node.shards(), "io": node.io_mode().name()})
    );
    let _ = std::io::stdout().flush();
    tracing::info!(node = %node.node_id(), %listen, "running; SIGTERM or SIGINT to stop");

    let mut signals =
        match signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot handle signals: {e}");
                node.shutdown(Duration::from_secs(1));
                return ExitCode::from(1);
            }
        };
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "shutting down");
    }
    let report = node.shutdown(args.shutdown_timeout);
    println!("{}", summary(&report));
    let _ = std::io::stdout().flush();
    ExitCode::SUCCESS
}

/// The JSON summary line printed at shutdown.
pub fn summary(r: &ShutdownReport) -> serde_json::Value {
    let mut engines = serde_json::Map::new();
    let mut names: Vec<&String> = r.engines.keys().collect();
    names.sort();
    let counts = |c: &EngineCounts| {
        serde_json::json!({"received": c.received, "sent": c.sent, "delivered": c.delivered,
            "expired": c.expired, "refused": c.refused, "unresolved": c.unresolved})
    };
    for name in names {
        engines.insert(name.clone(), counts(&r.engines[name]));
    }
    let mut summary = counts(&r.totals);
    summary["undelivered"] = r.undelivered.len().into();
    summary["engines"] = engines.into();
    summary
}

/// A minimal HTTP endpoint: any GET returns the Prometheus text.
fn serve_metrics(addr: SocketAddr, node: NodeHandle) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            let mut reader = BufReader::new(match conn.try_clone() {
                Ok(c) => c,
                Err(_) => continue,
            });
            // Request line, then headers up to the blank line.
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                match reader.read_line(&mut h) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if h == "\r\n" || h == "\n" => break,
                    Ok(_) => {}
                }
            }
            let (status, body) = if line.starts_with("GET ") {
                ("200 OK", node.prometheus())
            } else {
                ("405 Method Not Allowed", String::from("only GET\n"))
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })?;
    Ok(())
}
