//! The server side: sessions per client node, running calls, limits.
//!
//! The table decides; the shard runs handlers. For each request it answers
//! [`RequestDecision::Start`] (the call is registered and counted until
//! [`ServerTable::finish`]) or [`RequestDecision::Reply`] with a status to
//! send at once (deadline already passed, unknown session, over a limit).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use super::msg::{self, ControlKind, RejectReason, RpcMsg, RpcRequest, RpcResponse};
use super::{Budget, Outbound, RpcConfig, Status, Tag};
use crate::handshake::NodeId;
use crate::proxy::EngineId;
use crate::wire::WireConfig;

struct Session {
    /// The engine that proposed it: answers go there.
    reply_to: EngineId,
    service: Arc<str>,
    version: u32,
    last_active: u64,
    calls: usize,
}

#[derive(Default)]
struct Peer {
    sessions: HashMap<u32, Session>,
    calls: HashSet<(u32, u32)>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestDecision {
    /// Run the service's handler; the call is registered.
    Start {
        /// The service.
        service: Arc<str>,
        /// The session's RPC version.
        version: u32,
        /// When the server stops waiting (absolute, node clock).
        deadline_ms: u64,
    },
    /// Answer with this status now; no handler runs.
    Reply(Status),
    /// Ignore it (a duplicate of a call still running: a client bug).
    Ignore,
}

/// Counters of a server table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Sessions accepted.
    pub sessions_accepted: u64,
    /// Sessions rejected.
    pub sessions_rejected: u64,
    /// Calls started.
    pub calls_started: u64,
    /// Requests answered without starting (deadline passed, busy, no session).
    pub calls_refused: u64,
    /// Calls running now.
    pub running: usize,
    /// Sessions open now.
    pub sessions: usize,
}

/// Every server session and running call of one shard.
pub struct ServerTable {
    cfg: RpcConfig,
    wire: WireConfig,
    peers: HashMap<NodeId, Peer>,
    sessions: Arc<Budget>,
    calls: Arc<Budget>,
    out: Vec<Outbound>,
    stats: ServerStats,
}

impl ServerTable {
    /// A table; the budgets are the node-wide session and call limits.
    pub fn new(cfg: RpcConfig, wire: WireConfig, sessions: Arc<Budget>, calls: Arc<Budget>) -> Self {
        ServerTable {
            cfg,
            wire,
            peers: HashMap::new(),
            sessions,
            calls,
            out: Vec::new(),
            stats: ServerStats::default(),
        }
    }

    /// A session proposal from engine `reply_to` of node `from`: accept
    /// (highest common version) or reject. `has_service` says whether this
    /// node serves `service`. The reply is queued for sending.
    #[allow(clippy::too_many_arguments)]
    pub fn on_session(
        &mut self,
        now: u64,
        from: NodeId,
        reply_to: EngineId,
        sid: u32,
        service: &str,
        versions: &[u32],
        has_service: bool,
    ) -> Result<u32, RejectReason> {
        let result = self.decide_session(now, from, reply_to, sid, service, versions, has_service);
        match result {
            Ok(_) => self.stats.sessions_accepted += 1,
            Err(_) => self.stats.sessions_rejected += 1,
        }
        let m = RpcMsg::SessionReply { session: sid, result };
        self.push(from, reply_to, &m, Tag::Other, now + self.cfg.client_idle_ms);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_session(
        &mut self,
        now: u64,
        from: NodeId,
        reply_to: EngineId,
        sid: u32,
        service: &str,
        versions: &[u32],
        has_service: bool,
    ) -> Result<u32, RejectReason> {
        let peer = self.peers.entry(from).or_default();
        if let Some(s) = peer.sessions.get(&sid) {
            // The same proposal again (a client that lost our reply): same answer.
            if &*s.service == service {
                return Ok(s.version);
            }
        }
        if !has_service {
            return Err(RejectReason::ProtocolNotSupported);
        }
        let version = self
            .cfg
            .versions
            .iter()
            .copied()
            .filter(|v| versions.contains(v))
            .max()
            .ok_or(RejectReason::UnsupportedVersion)?;
        if peer.sessions.len() >= self.cfg.max_sessions_per_peer {
            return Err(RejectReason::NoClientSessionsAvailable);
        }
        if !self.sessions.try_take() {
            return Err(RejectReason::NoServerSessionsAvailable);
        }
        peer.sessions
            .insert(sid, Session { reply_to, service: Arc::from(service), version, last_active: now, calls: 0 });
        Ok(version)
    }

    /// A request: start it or answer it at once. A status answer is queued.
    pub fn on_request(&mut self, now: u64, from: NodeId, r: &RpcRequest) -> RequestDecision {
        let d = self.decide_request(now, from, r);
        match &d {
            RequestDecision::Start { .. } => self.stats.calls_started += 1,
            RequestDecision::Reply(status) => {
                self.stats.calls_refused += 1;
                let m = RpcMsg::Response(RpcResponse {
                    session: r.session,
                    request_id: r.request_id,
                    status: status.0,
                    flags: msg::FLAG_FIN,
                    payload: Bytes::new(),
                });
                let target = self.reply_to(from, r.session);
                self.push(from, target, &m, Tag::Response(r.request_id), now + r.deadline_ms.max(1000));
            }
            RequestDecision::Ignore => {}
        }
        d
    }

    fn decide_request(&mut self, now: u64, from: NodeId, r: &RpcRequest) -> RequestDecision {
        let max_per_peer = self.cfg.max_calls_per_peer;
        let peer = self.peers.entry(from).or_default();
        let Some(session) = peer.sessions.get_mut(&r.session) else {
            return RequestDecision::Reply(Status::NO_SESSION);
        };
        session.last_active = now;
        if r.deadline_ms == 0 {
            // Its deadline had passed before it was sent: never start it.
            return RequestDecision::Reply(Status::DEADLINE_EXCEEDED);
        }
        if peer.calls.contains(&(r.session, r.request_id)) {
            return RequestDecision::Ignore;
        }
        if peer.calls.len() >= max_per_peer || !self.calls.try_take() {
            return RequestDecision::Reply(Status::BUSY);
        }
        session.calls += 1;
        let (service, version) = (session.service.clone(), session.version);
        peer.calls.insert((r.session, r.request_id));
        RequestDecision::Start { service, version, deadline_ms: now + r.deadline_ms }
    }

    /// A running call ended (answered, failed, cancelled or out of time).
    /// Returns `false` if it was not running.
    pub fn finish(&mut self, from: NodeId, sid: u32, rid: u32) -> bool {
        let Some(peer) = self.peers.get_mut(&from) else { return false };
        if !peer.calls.remove(&(sid, rid)) {
            return false;
        }
        self.calls.give();
        if let Some(s) = peer.sessions.get_mut(&sid) {
            s.calls = s.calls.saturating_sub(1);
        }
        true
    }

    /// A client closed a session. Returns the calls still running on it
    /// (the shard cancels them).
    pub fn on_close(&mut self, from: NodeId, sid: u32) -> Vec<u32> {
        let Some(peer) = self.peers.get_mut(&from) else { return Vec::new() };
        if peer.sessions.remove(&sid).is_some() {
            self.sessions.give();
        }
        let rids: Vec<u32> = peer.calls.iter().filter(|(s, _)| *s == sid).map(|(_, r)| *r).collect();
        rids
    }

    /// Whether call (`sid`, `rid`) of `from` is running.
    pub fn is_running(&self, from: NodeId, sid: u32, rid: u32) -> bool {
        self.peers.get(&from).is_some_and(|p| p.calls.contains(&(sid, rid)))
    }

    /// The client node's process restarted (or is gone for good): drop its
    /// sessions. Returns its running calls (the shard cancels them).
    pub fn drop_peer(&mut self, from: NodeId) -> Vec<(u32, u32)> {
        let Some(peer) = self.peers.remove(&from) else { return Vec::new() };
        for _ in 0..peer.sessions.len() {
            self.sessions.give();
        }
        for _ in 0..peer.calls.len() {
            self.calls.give();
        }
        peer.calls.into_iter().collect()
    }

    /// Closes sessions without calls that have been idle for
    /// `server_idle_ms`, telling their clients.
    pub fn close_idle(&mut self, now: u64) {
        let idle = self.cfg.server_idle_ms;
        let mut closed = Vec::new();
        for (node, peer) in self.peers.iter_mut() {
            peer.sessions.retain(|sid, s| {
                let keep = s.calls > 0 || now < s.last_active + idle;
                if !keep {
                    closed.push((*node, s.reply_to, *sid));
                }
                keep
            });
        }
        self.peers.retain(|_, p| !p.sessions.is_empty() || !p.calls.is_empty());
        for (to, target, sid) in closed {
            self.sessions.give();
            let m = RpcMsg::Control { session: sid, request_id: 0, kind: ControlKind::SessionClosed, n: 0 };
            self.push(to, target, &m, Tag::Other, now + 10_000);
        }
    }

    /// Encodes a response for sending (to the engine that opened the session).
    pub fn response(&self, to: NodeId, r: RpcResponse, expiry_ms: u64) -> Result<Outbound, Status> {
        if r.payload.len() > self.cfg.max_payload {
            return Err(Status::INTERNAL);
        }
        let tag = Tag::Response(r.request_id);
        let target = self.reply_to(to, r.session);
        RpcMsg::Response(r)
            .encode(&self.wire)
            .map(|msg| Outbound { to, target, msg, tag, expiry_ms })
            .map_err(|_| Status::INTERNAL)
    }

    fn reply_to(&self, peer: NodeId, sid: u32) -> EngineId {
        self.peers.get(&peer).and_then(|p| p.sessions.get(&sid)).map_or(super::RPC_ENGINE, |s| s.reply_to)
    }

    fn push(&mut self, to: NodeId, target: EngineId, m: &RpcMsg, tag: Tag, expiry_ms: u64) {
        if let Ok(msg) = m.encode(&self.wire) {
            self.out.push(Outbound { to, target, msg, tag, expiry_ms });
        }
    }

    /// Messages to send (session replies, immediate answers, closes).
    pub fn drain_outbound(&mut self) -> std::vec::Drain<'_, Outbound> {
        self.out.drain(..)
    }

    /// Counters and gauges.
    pub fn stats(&self) -> ServerStats {
        let mut s = self.stats;
        s.running = self.peers.values().map(|p| p.calls.len()).sum();
        s.sessions = self.peers.values().map(|p| p.sessions.len()).sum();
        s
    }
}
