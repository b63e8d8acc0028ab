//! Helpers for end-to-end tests over real loopback sockets. Every wait is
//! bounded in time.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use shardwire::handshake::Identity;
use std::cell::Cell;

use shardwire::node::{IoMode, Node, NodeBuilder, NodeEvent, NodeHandle, Shards};
use shardwire::proxy::{EngineId, MsgId, Outcome};
use shardwire::wire::{Message, MessageType, Value, WireConfig, encode_message};

/// The external engine name test nodes receive messages on.
pub const APP: &str = "app";

pub fn app() -> EngineId {
    EngineId::named(APP)
}

thread_local! {
    /// The socket path nodes built by this test thread use.
    static IO: Cell<IoMode> = const { Cell::new(IoMode::Uring) };
}

/// Runs `test` with every node it builds on the `io` socket path (`node`
/// also checks that the node really runs on it).
pub fn on_io_path(io: IoMode, test: fn()) {
    IO.set(io);
    test();
}

/// The socket path this test runs on.
pub fn io_path() -> IoMode {
    IO.get()
}

/// Every end-to-end test runs twice: on the shards' own io_uring rings and
/// on glommio's TCP streams. `on_both_io_paths!(a, b)` turns the plain
/// functions `a` and `b` into the tests `a::uring` and `a::glommio`, ...
#[macro_export]
macro_rules! on_both_io_paths {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn uring() {
                $crate::common::on_io_path(shardwire::node::IoMode::Uring, super::$name);
            }
            #[test]
            fn glommio() {
                $crate::common::on_io_path(shardwire::node::IoMode::Glommio, super::$name);
            }
        }
    )*};
}

/// An identity whose NodeId hashes to `shard` of 2 (so tests can place a
/// peer on a chosen shard of a two-shard node).
pub fn identity_on(shard: usize) -> Identity {
    loop {
        let id = Identity::generate();
        if shardwire::node::shard_of(&id.node_id(), 2) == shard {
            return id;
        }
    }
}

/// A bare node on this test's socket path (no listener, no engines).
pub fn bare_builder(shards: usize) -> NodeBuilder {
    let io = io_path();
    Node::builder().identity(Identity::generate()).shards(Shards::Count(shards)).configure(move |c| {
        c.io = io;
        c.proxy.backoff_min_ms = 10;
        c.proxy.backoff_max_ms = 500;
    })
}

/// A node listening on an ephemeral loopback port with an external "app" engine.
pub fn builder(shards: usize) -> NodeBuilder {
    bare_builder(shards).listen("127.0.0.1:0".parse().unwrap()).external_engine(APP)
}

pub fn node(shards: usize) -> NodeHandle {
    let n = builder(shards).start().expect("node starts");
    assert_eq!(n.io_mode(), io_path(), "the node runs on the socket path the test asked for");
    n
}

/// A message carrying `n` (as a Long) plus `pad` bytes.
pub fn msg(n: u64, pad: usize) -> Message {
    let cfg = WireConfig::default();
    let v = Value::Vector(vec![Value::Long(n as i64), Value::blob(vec![0x5a; pad])]);
    Message::decode(encode_message(MessageType::Other(0x80), &v, &cfg).unwrap(), &cfg).unwrap()
}

/// The number carried by a [`msg`].
pub fn key(m: &Message) -> u64 {
    m.element(0).and_then(|c| c.as_long()).unwrap_or(-1) as u64
}

/// Collects events until `done` says so or `timeout` passes.
pub fn collect(node: &NodeHandle, timeout: Duration, mut done: impl FnMut(&[NodeEvent]) -> bool) -> Vec<NodeEvent> {
    let end = Instant::now() + timeout;
    let mut got = Vec::new();
    while !done(&got) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Ok(ev) = node.events().recv_timeout(left.min(Duration::from_millis(50))) {
            got.push(ev);
        }
    }
    got
}

/// Outcomes among `events`.
pub fn outcomes(events: &[NodeEvent]) -> Vec<(MsgId, Outcome)> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Outcome { id, outcome, .. } => Some((*id, *outcome)),
            _ => None,
        })
        .collect()
}

/// Keys of messages received among `events`.
pub fn received(events: &[NodeEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Message { msg, .. } => Some(key(&msg.msg)),
            _ => None,
        })
        .collect()
}

/// Waits until `f` holds (polling), up to `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// A TCP proxy that forwards to `target` and resets each connection after a
/// random number of bytes (in either direction), and can simulate an outage
/// (new connections are reset at once).
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub cuts: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    live: Arc<std::sync::Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Cuts each connection after between `min` and `max` bytes.
    pub fn start(target: SocketAddr, min: usize, max: usize) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let cuts = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, d, s) = (cuts.clone(), down.clone(), stop.clone());
        let live: Arc<std::sync::Mutex<Vec<TcpStream>>> = Arc::default();
        let l = live.clone();
        let seed = AtomicU64::new(0x1234_5678);
        let accept = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                if d.load(Ordering::Relaxed) {
                    reset(&client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    reset(&client);
                    continue;
                };
                if let (Ok(x), Ok(y)) = (client.try_clone(), server.try_clone()) {
                    l.lock().unwrap().extend([x, y]);
                }
                let r = seed.fetch_add(0x9e37_79b9, Ordering::Relaxed).wrapping_mul(0x2545_f491_4f6c_dd1d) >> 20;
                let budget = Arc::new(AtomicUsize::new(min + (r as usize) % (max - min + 1)));
                for (from, to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    let (b, c, s) = (budget.clone(), c.clone(), s.clone());
                    std::thread::spawn(move || pump(from, to, b, c, s));
                }
            }
        });
        FaultProxy { addr, cuts, down, live, stop, accept: Some(accept) }
    }

    /// Starts an outage (every live connection is reset, new ones are
    /// refused) or ends it.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
        if down {
            for s in self.live.lock().unwrap().drain(..) {
                reset(&s);
            }
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn reset(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
    let _ = s.shutdown(std::net::Shutdown::Both);
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    budget: Arc<AtomicUsize>,
    cuts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        let left = budget.load(Ordering::Relaxed);
        if n >= left {
            // Cut mid-stream: forward part, then reset both sides.
            let _ = to.write_all(&buf[..left]);
            budget.store(0, Ordering::Relaxed);
            cuts.fetch_add(1, Ordering::Relaxed);
            reset(&from);
            reset(&to);
            return;
        }
        budget.fetch_sub(n, Ordering::Relaxed);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    reset(&from);
    reset(&to);
}

/// A minimal protocol client built from the library's pure layers:
/// blocking std sockets, one link, no node around it.
pub struct RawClient {
    /// The client's own NodeId.
    pub id: shardwire::handshake::NodeId,
    stream: TcpStream,
    link: shardwire::handshake::Link,
    seq: u64,
}

impl RawClient {
    /// Connects and completes the handshake with `server`.
    pub fn connect(addr: SocketAddr, server: shardwire::handshake::NodeId) -> std::io::Result<RawClient> {
        Self::connect_with(addr, server, None)
    }

    /// As [`RawClient::connect`], with a small receive buffer if asked (a
    /// peer that stops reading then stalls its sender sooner).
    pub fn connect_with(
        addr: SocketAddr,
        server: shardwire::handshake::NodeId,
        rcvbuf: Option<usize>,
    ) -> std::io::Result<RawClient> {
        use shardwire::handshake::{HandshakeConfig, Initiator};
        use shardwire::wire::{FrameDecoder, write_frame};
        let id = Identity::generate();
        let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n)?;
        }
        sock.connect(&addr.into())?;
        let mut stream: TcpStream = sock.into();
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let (init, m1) = Initiator::start(&id, server, 0, 0, &HandshakeConfig::default(), now).unwrap();
        let mut out = bytes::BytesMut::new();
        write_frame(&mut out, &m1);
        stream.write_all(&out)?;
        let mut dec = FrameDecoder::new(256);
        let mut buf = bytes::BytesMut::new();
        let m2 = loop {
            if let Some(f) = dec.decode(&mut buf).unwrap() {
                break f;
            }
            let mut chunk = [0u8; 512];
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::other("closed during handshake"));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let est = init.read_reply(&m2, now).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(RawClient { id: id.node_id(), stream, link: est.link, seq: 0 })
    }

    /// Sends HELLO (first time) and one DATA frame to engine `target`.
    pub fn send(&mut self, target: EngineId, m: Message) -> std::io::Result<()> {
        use shardwire::proxy::{EngineMsg, TransportPrefs, frames};
        let mut frames_out: Vec<bytes::Bytes> = Vec::new();
        if self.seq == 0 {
            frames::hello(&mut frames_out, 1, 0, 1, 0);
        }
        self.seq += 1;
        let em = EngineMsg { sender: app(), target, mailbox: None, msg: m };
        frames::data(&mut frames_out, self.seq, TransportPrefs::default(), &em);
        let mut out = bytes::BytesMut::new();
        self.link.send_frames(frames_out.iter().map(|f| f.as_ref()), &mut out).unwrap();
        self.stream.write_all(&out)
    }
}
