//! Node configuration: every limit and timing in one struct, with
//! documented defaults.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::handshake::{HandshakeConfig, NodeId};
use crate::peer::PeerMsgConfig;
use crate::proxy::{Permanence, ProxyConfig};
use crate::rpc::RpcConfig;
use crate::wire::WireConfig;

/// How many shards (executor threads) a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shards {
    /// One per available CPU (default).
    #[default]
    PerCore,
    /// Exactly this many (at least 1, at most [`Shards::max`]).
    Count(usize),
}

impl Shards {
    /// The number this resolves to on this machine.
    pub fn resolve(self) -> usize {
        match self {
            Shards::PerCore => cpus(),
            Shards::Count(n) => n.max(1),
        }
    }

    /// The most shards a node may run on this machine: four per CPU, and
    /// at least 16. Each shard is a thread with its own executor, ring and
    /// receive buffers (~3 MiB resident at rest, 4 MiB of buffers under
    /// load), so a mistyped count would otherwise exhaust memory; it gets
    /// [`StartError::TooManyShards`](crate::node::StartError::TooManyShards)
    /// instead. More shards than CPUs only makes sense for tests.
    pub fn max() -> usize {
        (cpus() * 4).max(16)
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Where shard threads run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Placement {
    /// Let the OS schedule them (default: robust when several nodes share a machine).
    #[default]
    Unbound,
    /// Pin shard `i` to CPU `i mod CPUs` (thread-per-core; best for a dedicated machine).
    PinnedPerCore,
    /// Pin shard `i` to `cpus[i mod len]`.
    Cpus(Vec<usize>),
}

/// Which socket path the shards use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// Each shard's own io_uring ring: multishot receives into provided
    /// buffers, owned sends, one `io_uring_enter` per driver tick (default).
    /// Falls back to `Glommio` (with a log line) where the kernel refuses
    /// the ring's features.
    #[default]
    Uring,
    /// glommio's TCP streams (readiness polling, one syscall per read/write).
    Glommio,
}

impl IoMode {
    /// `uring` or `glommio`.
    pub fn name(self) -> &'static str {
        match self {
            IoMode::Uring => "uring",
            IoMode::Glommio => "glommio",
        }
    }
}

/// Which shards accept connections on the listening port.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ListenShards {
    /// Every shard (SO_REUSEPORT: the kernel spreads connections; default).
    #[default]
    All,
    /// Only these shards; sockets whose handshake names a node another
    /// shard owns are handed to it.
    Only(Vec<usize>),
}

/// A peer known at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Its NodeId.
    pub id: NodeId,
    /// Where to dial it.
    pub addr: SocketAddr,
    /// Kept up or not.
    pub permanence: Permanence,
}

/// The sizes [`NodeConfig::ring_buffer_size`] may take: 512 bytes to 1 MiB.
pub const RING_BUFFER_SIZES: std::ops::RangeInclusive<usize> = 512..=1 << 20;

/// Everything a node needs to know, with defaults that are safe to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Number of shards (default: one per core).
    pub shards: Shards,
    /// Where shard threads run (default: unbound).
    pub placement: Placement,
    /// Where to listen (default: nowhere — a dial-only node).
    pub listen: Option<SocketAddr>,
    /// Which shards accept (default: all, through SO_REUSEPORT).
    pub listen_shards: ListenShards,
    /// Peers to know at start.
    pub peers: Vec<PeerConfig>,
    /// If set, only these NodeIds may connect; others are refused as Denied.
    pub allow: Option<HashSet<NodeId>>,
    /// Most established links, node-wide (default 10,000); beyond it inbound
    /// dials are refused as OverCapacity.
    pub max_links: usize,
    /// Most handshakes in progress on accepted connections, node-wide
    /// (default 256); beyond it the early over-capacity refusal is sent
    /// before any cryptography.
    pub max_pending_handshakes: usize,
    /// Replay cache entries (default 65,536; see docs/protocol.md 8.4).
    pub replay_cache: usize,
    /// Handshake settings: versions, clock skew, timeout (5 s), AEAD backend,
    /// largest link frame (8 MiB).
    pub handshake: HandshakeConfig,
    /// Codec limits: largest cell (8192), most branches (4096), hash (BLAKE3).
    pub wire: WireConfig,
    /// Per-node-proxy queue limits and timings: 65,536 messages / 64 MiB
    /// queued per remote node, backoff 20 ms to 30 s, ephemeral idle close
    /// after 60 s, keepalive 5 s, link declared dead after 20 s of silence.
    pub proxy: ProxyConfig,
    /// Default expiry of a send (30 s).
    pub default_expiry: Duration,
    /// Batches from the other shards that one shard's queue holds (default
    /// 4096; a batch carries everything one shard had for another since
    /// its last one). Memory follows the batches queued.
    pub mesh_capacity: usize,
    /// Commands the handle's queue into each shard holds (default 65,536).
    /// Memory follows the commands queued, not this bound (an empty queue
    /// holds almost nothing); senders on several threads at once may pass
    /// it by one each.
    pub inbox_capacity: usize,
    /// Events the handle's event queue holds (default 65,536); deliveries to
    /// external engines beyond it are refused as Busy. Memory follows the
    /// events queued, as for `inbox_capacity`.
    pub event_capacity: usize,
    /// glommio path: busy-poll this long before a shard parks (default 0).
    pub spin_before_park: Duration,
    /// The socket path (default: the shard's own io_uring ring).
    pub io: IoMode,
    /// Ring path: how long the driver keeps polling after the last
    /// completion before it parks (default 50 us).
    pub ring_spin: Duration,
    /// Ring path: after `ring_spin`, how long the driver may sleep inside
    /// its own ring, woken by the kernel as directly as a thread blocked in
    /// `recv`, before it parks through glommio's reactor (default 5 ms;
    /// zero parks through glommio at once). It sleeps there only while no
    /// other task of the shard can run. Wake-ups that go through glommio
    /// alone (its timers, a waker woken on another thread by code that is
    /// not shardwire's) wait at most this long, as they wait at most 5 ms
    /// (the preempt timer) while the driver spins.
    pub ring_sleep: Duration,
    /// Ring path: submission queue entries (default 4096; the completion
    /// queue has four times as many). The kernel refuses more than 32768.
    pub ring_entries: u32,
    /// Ring path: provided receive buffers per shard (a power of two,
    /// default 256) and their size (default 16 KiB, within
    /// [`RING_BUFFER_SIZES`]). A buffer whose frames and messages have all
    /// been dropped is reused: besides the ring's own, a shard keeps at
    /// most `ring_buffers / 4` (at least one) buffers it has handed out in
    /// view for that.
    pub ring_buffers: u16,
    /// See `ring_buffers`.
    pub ring_buffer_size: usize,
    /// How long a graceful shutdown may take (default 5 s).
    pub shutdown_timeout: Duration,
    /// RPC limits and timings (see [`RpcConfig`]).
    pub rpc: RpcConfig,
    /// Peer-message limits: cell store, partial messages, belief rate
    /// (see [`PeerMsgConfig`]).
    pub peer_msgs: PeerMsgConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            shards: Shards::PerCore,
            placement: Placement::Unbound,
            listen: None,
            listen_shards: ListenShards::All,
            peers: Vec::new(),
            allow: None,
            max_links: 10_000,
            max_pending_handshakes: 256,
            replay_cache: 65_536,
            handshake: HandshakeConfig::default(),
            wire: WireConfig::default(),
            proxy: ProxyConfig::default(),
            default_expiry: Duration::from_secs(30),
            mesh_capacity: 4096,
            inbox_capacity: 65_536,
            event_capacity: 65_536,
            spin_before_park: Duration::ZERO,
            io: IoMode::Uring,
            ring_spin: Duration::from_micros(50),
            ring_sleep: Duration::from_millis(5),
            ring_entries: 4096,
            ring_buffers: 256,
            ring_buffer_size: 16 << 10,
            shutdown_timeout: Duration::from_secs(5),
            rpc: RpcConfig::default(),
            peer_msgs: PeerMsgConfig::default(),
        }
    }
}
