//! Per-shard counters, readable from any thread, rendered as Prometheus text.
//!
//! Each shard is the only writer of its counters, so updates are plain
//! relaxed loads and stores (no locked instructions on the hot path);
//! readers see values at most one update old.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! metrics {
    ($( $name:ident : $kind:literal, $help:literal; )*) => {
        /// One counter or gauge.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(non_camel_case_types, missing_docs)]
        #[repr(usize)]
        pub enum Metric { $( $name, )* }

        /// Every metric, in order.
        pub const ALL: &[Metric] = &[ $( Metric::$name, )* ];

        impl Metric {
            /// Prometheus name (without the `shardwire_` prefix).
            pub fn name(self) -> &'static str {
                match self { $( Metric::$name => stringify!($name), )* }
            }
            /// `counter` or `gauge`.
            pub fn kind(self) -> &'static str {
                match self { $( Metric::$name => $kind, )* }
            }
            /// One-line description.
            pub fn help(self) -> &'static str {
                match self { $( Metric::$name => $help, )* }
            }
        }
    };
}

metrics! {
    links_up: "gauge", "Established links owned by this shard.";
    handshakes_ok: "counter", "Handshakes that produced a link (both roles).";
    handshakes_refused_over_capacity: "counter", "Inbound handshakes refused as over capacity.";
    handshakes_refused_denied: "counter", "Inbound handshakes refused by the allow-list.";
    handshakes_refused_incompatible: "counter", "Inbound handshakes refused for lack of a common version.";
    handshakes_failed: "counter", "Handshakes that failed (peer errors, timeouts, IO), both roles.";
    dials_refused: "counter", "Outbound dials the remote refused.";
    messages_sent: "counter", "Messages accepted for sending to remote nodes.";
    messages_out: "counter", "DATA frames written (first sends and resends).";
    messages_in: "counter", "Messages received and delivered to local engines.";
    bytes_out: "counter", "Bytes written to sockets.";
    bytes_in: "counter", "Bytes read from sockets.";
    queue_depth: "gauge", "Messages queued or in flight in this shard's node proxies.";
    delivered: "counter", "Sent messages the remote acknowledged as delivered.";
    expired: "counter", "Sent messages that expired undelivered.";
    refused: "counter", "Sent messages the remote refused or could not be reached for.";
    unresolved: "counter", "Sent messages whose fate could not be learnt (peer restart, shutdown).";
    resends: "counter", "DATA frames sent again after a link loss.";
    duplicates: "counter", "Duplicate DATA frames received and dropped.";
    refused_in: "counter", "Received messages refused (unknown engine, busy, malformed).";
    protocol_errors: "counter", "Links closed because the peer broke the link protocol.";
    cross_shard_batches: "counter", "Batches sent to other shards.";
    rpc_calls_out: "counter", "RPC calls this node made (client side).";
    rpc_calls_ok: "counter", "Client calls answered successfully.";
    rpc_calls_failed: "counter", "Client calls that failed, for any reason.";
    rpc_client_deadline: "counter", "Client calls failed by the client's own deadline.";
    rpc_calls_in_flight: "gauge", "Client calls in flight.";
    rpc_sessions_rejected: "counter", "Client sessions the server rejected.";
    rpc_server_sessions: "gauge", "Server sessions open.";
    rpc_server_calls: "counter", "Server calls started (handlers run).";
    rpc_server_refused: "counter", "Requests answered without running a handler (deadline passed, busy, no session).";
    rpc_server_running: "gauge", "Server calls running.";
    rpc_server_deadline: "counter", "Server calls stopped at their deadline.";
    rpc_server_cancelled: "counter", "Server calls the client cancelled.";
    rpc_responses_undelivered: "counter", "Server responses that could not be delivered (expired, link lost).";
    rpc_malformed: "counter", "RPC messages received that failed to decode.";
    peer_requests_in: "counter", "QUERY, TRANSACT and STATUS requests handed to the peer handler.";
    peer_load_shed: "counter", "Requests answered with a :LOAD RESULT (over max_pending_requests).";
    peer_tx_duplicate: "counter", "TRANSACTs refused as duplicates.";
    peer_tx_rejected: "counter", "TRANSACTs the validation hook rejected.";
    peer_beliefs_in: "counter", "Beliefs delivered to the merge handler.";
    peer_beliefs_duplicate: "counter", "Beliefs not delivered again (same value ID).";
    peer_beliefs_dropped: "counter", "Beliefs dropped over the belief rate.";
    peer_partial_completed: "counter", "Partial messages completed through the store or MISSING_DATA.";
    peer_partial_failed: "counter", "Partial messages dropped (cell absent, timeout, limits).";
    peer_missing_data_in: "counter", "MISSING_DATA requests answered.";
    peer_store_bytes: "gauge", "Bytes held by this shard's cell store.";
    ring_enters: "counter", "io_uring_enter calls of this shard's ring (ring path).";
    ring_completions: "counter", "Completions reaped from this shard's ring.";
    ring_parks: "counter", "Times the ring driver parked (idle) through glommio instead of polling.";
    ring_sleeps: "counter", "Times the ring driver slept inside its ring (idle, before parking).";
    ring_enobufs: "counter", "Multishot receives ended because every provided buffer was taken (re-armed).";
    ring_bytes_joined: "counter", "Received bytes copied to join records that spanned provided buffers (a large share of bytes_in says ring_buffer_size is small for the record sizes).";
    ring_ops_in_flight: "gauge", "Operations this shard's ring has in the kernel (multishot ones included).";
    ring_send_bytes_held: "gauge", "Bytes owned by send operations the kernel has not completed.";
    ring_buffers_reused: "counter", "Receive buffers refilled with memory whose frames were all dropped, instead of newly allocated.";
    routed_wakes: "counter", "Tasks of this shard woken from another thread through its inbox (engine tasks, RPC handlers, pending calls; ring path) instead of through glommio's reactor.";
}

/// Number of metrics.
pub const COUNT: usize = ALL.len();

/// One shard's metrics.
#[derive(Debug)]
pub struct ShardMetrics {
    values: [AtomicU64; COUNT],
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics { values: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl ShardMetrics {
    /// Adds `n` (shard thread only: single writer).
    #[inline]
    pub fn add(&self, m: Metric, n: u64) {
        let v = &self.values[m as usize];
        v.store(v.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Sets a gauge (shard thread only).
    #[inline]
    pub fn set(&self, m: Metric, n: u64) {
        self.values[m as usize].store(n, Ordering::Relaxed);
    }

    /// Reads one value.
    pub fn get(&self, m: Metric) -> u64 {
        self.values[m as usize].load(Ordering::Relaxed)
    }

    /// All values.
    pub fn snapshot(&self) -> [u64; COUNT] {
        std::array::from_fn(|i| self.values[i].load(Ordering::Relaxed))
    }
}

/// Renders the shards' metrics in the Prometheus text exposition format.
pub fn prometheus(shards: &[std::sync::Arc<ShardMetrics>]) -> String {
    let mut out = String::new();
    for &m in ALL {
        out.push_str(&format!(
            "# HELP shardwire_{} {}\n# TYPE shardwire_{} {}\n",
            m.name(),
            m.help(),
            m.name(),
            m.kind()
        ));
        for (i, s) in shards.iter().enumerate() {
            out.push_str(&format!("shardwire_{}{{shard=\"{i}\"}} {}\n", m.name(), s.get(m)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format() {
        let a = std::sync::Arc::new(ShardMetrics::default());
        a.add(Metric::messages_in, 3);
        a.set(Metric::links_up, 2);
        let t = prometheus(&[a.clone(), std::sync::Arc::new(ShardMetrics::default())]);
        assert!(t.contains("# TYPE shardwire_messages_in counter\n"));
        assert!(t.contains("shardwire_messages_in{shard=\"0\"} 3\n"));
        assert!(t.contains("shardwire_links_up{shard=\"0\"} 2\n"));
        assert!(t.contains("shardwire_links_up{shard=\"1\"} 0\n"));
        assert_eq!(a.snapshot()[Metric::messages_in as usize], 3);
    }
}
