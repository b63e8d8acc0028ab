//! The client side: sessions per (server node, service), calls in flight
//! matched by request ID, deadlines as data, stream credit.
//!
//! ```text
//!  call ──► no session ──send RPC_SESSION──► Opening ──reply: version──► Open
//!              │                                │                         │
//!              │                                └─reply: rejected──► calls fail (Rejected)
//!              └──────── Open: send RPC_REQUEST at once ◄─────────────────┘
//!  each call ends exactly once: response, error status, deadline, failed
//!  delivery of its request, server restart, or cancel
//! ```

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::msg::{self, ControlKind, RejectReason, RpcMsg, RpcRequest, RpcResponse};
use super::{Budget, Outbound, RpcConfig, RpcError, Status, Tag};
use crate::handshake::NodeId;
use crate::proxy::Outcome;
use crate::wire::WireConfig;

/// Where a call's answer goes (a channel to the caller, in the shard layer).
pub trait Completion {
    /// One streamed item. Returns `false` if the consumer is gone (the call
    /// is then cancelled).
    fn item(&mut self, payload: Bytes) -> bool;
    /// The end: the answer of a unary call, an empty `Ok` at the end of a
    /// stream, or the error.
    fn finish(self, result: Result<Bytes, RpcError>);
}

/// Control messages are small and not worth waiting long for.
const CONTROL_EXPIRY_MS: u64 = 10_000;

enum SessionState {
    Opening { sid: u32, waiting: Vec<u32> },
    Open { sid: u32, last_used: u64, active: usize },
}

struct Call<C> {
    service: Arc<str>,
    method: u32,
    payload: Bytes,
    deadline_ms: u64,
    /// `Some(window)` for a streamed call.
    window: Option<u32>,
    /// The session the request went out on (`None` while waiting for one).
    sid: Option<u32>,
    reply: C,
    /// Items received; credit granted in total.
    received: u64,
    granted: u64,
    /// Items the consumer took that have not been granted back yet.
    consumed: u32,
    /// Sent again once after the server had forgotten the session.
    retried: bool,
}

struct Peer<C> {
    sessions: HashMap<Arc<str>, SessionState>,
    by_sid: HashMap<u32, Arc<str>>,
    calls: HashMap<u32, Call<C>>,
    next_sid: u32,
    next_rid: u32,
}

impl<C> Default for Peer<C> {
    fn default() -> Self {
        Peer { sessions: HashMap::new(), by_sid: HashMap::new(), calls: HashMap::new(), next_sid: 1, next_rid: 1 }
    }
}

/// Counters of a client table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Calls started.
    pub calls: u64,
    /// Calls answered successfully.
    pub ok: u64,
    /// Calls failed (any reason).
    pub failed: u64,
    /// Of those, by the client's deadline.
    pub deadline: u64,
    /// Sessions rejected.
    pub rejected: u64,
    /// Calls in flight now.
    pub in_flight: usize,
    /// Sessions open or opening now.
    pub sessions: usize,
}

/// Every client session and call of one shard.
pub struct ClientTable<C> {
    cfg: RpcConfig,
    wire: WireConfig,
    peers: HashMap<NodeId, Peer<C>>,
    deadlines: BTreeSet<(u64, NodeId, u32)>,
    budget: Arc<Budget>,
    out: VecDeque<Outbound>,
    stats: ClientStats,
    /// The latest time any entry point was given (the node clock, ms).
    now: u64,
    next_idle_check: u64,
}

impl<C: Completion> ClientTable<C> {
    /// A table; `budget` is the node-wide limit on calls in flight.
    pub fn new(cfg: RpcConfig, wire: WireConfig, budget: Arc<Budget>) -> Self {
        ClientTable {
            cfg,
            wire,
            peers: HashMap::new(),
            deadlines: BTreeSet::new(),
            budget,
            out: VecDeque::new(),
            stats: ClientStats::default(),
            now: 0,
            next_idle_check: 0,
        }
    }

    /// Starts a call to `service` on `to`; the answer goes to `reply`.
    /// `deadline_ms` is absolute (node clock); `window` is `Some` for a
    /// streamed call (the initial credit). Returns the request ID, or
    /// `None` if the call failed at once (its answer is already given).
    #[allow(clippy::too_many_arguments)]
    pub fn call(
        &mut self,
        now: u64,
        to: NodeId,
        service: &str,
        method: u32,
        payload: Bytes,
        deadline_ms: u64,
        window: Option<u32>,
        reply: C,
    ) -> Option<u32> {
        self.touch(now);
        if payload.len() > self.cfg.max_payload {
            reply.finish(Err(RpcError::PayloadTooLarge { len: payload.len(), max: self.cfg.max_payload }));
            return None;
        }
        if deadline_ms <= now {
            self.stats.failed += 1;
            self.stats.deadline += 1;
            reply.finish(Err(RpcError::DeadlineExceeded { reported_by_server: false }));
            return None;
        }
        let peer = self.peers.entry(to).or_default();
        if peer.calls.len() >= self.cfg.max_client_calls_per_peer || !self.budget.try_take() {
            reply.finish(Err(RpcError::ClientBusy));
            return None;
        }
        let mut rid = peer.next_rid;
        while rid == 0 || peer.calls.contains_key(&rid) {
            rid = rid.wrapping_add(1);
        }
        peer.next_rid = rid.wrapping_add(1);
        let service: Arc<str> = match peer.sessions.get_key_value(service) {
            Some((k, _)) => k.clone(),
            None => Arc::from(service),
        };
        let window = window.map(|w| w.max(1));
        peer.calls.insert(
            rid,
            Call {
                service: service.clone(),
                method,
                payload,
                deadline_ms,
                window,
                sid: None,
                reply,
                received: 0,
                granted: u64::from(window.unwrap_or(0)),
                consumed: 0,
                retried: false,
            },
        );
        self.deadlines.insert((deadline_ms, to, rid));
        self.stats.calls += 1;
        self.dispatch(now, to, service, rid);
        // The call may already have failed (its request did not encode).
        self.peers.get(&to).is_some_and(|p| p.calls.contains_key(&rid)).then_some(rid)
    }

    /// Sends call `rid` on its service's session, opening one if needed.
    fn dispatch(&mut self, now: u64, to: NodeId, service: Arc<str>, rid: u32) {
        let Some(peer) = self.peers.get_mut(&to) else { return };
        match peer.sessions.get_mut(&service) {
            Some(SessionState::Open { sid, last_used, active }) => {
                *last_used = now;
                *active += 1;
                let sid = *sid;
                self.send_request(to, sid, rid);
            }
            Some(SessionState::Opening { waiting, .. }) => waiting.push(rid),
            None => {
                let sid = peer.next_sid;
                peer.next_sid = peer.next_sid.wrapping_add(1).max(1);
                peer.sessions.insert(service.clone(), SessionState::Opening { sid, waiting: vec![rid] });
                peer.by_sid.insert(sid, service.clone());
                let m =
                    RpcMsg::Session { session: sid, service: service.to_string(), versions: self.cfg.versions.clone() };
                self.push(to, &m, Tag::Session(sid), now + self.cfg.client_idle_ms);
            }
        }
    }

    fn send_request(&mut self, to: NodeId, sid: u32, rid: u32) {
        let Some(call) = self.peers.get_mut(&to).and_then(|p| p.calls.get_mut(&rid)) else { return };
        call.sid = Some(sid);
        let m = RpcMsg::Request(RpcRequest {
            session: sid,
            request_id: rid,
            method: call.method,
            flags: if call.window.is_some() { msg::FLAG_STREAM } else { 0 },
            // The wire carries the time left.
            deadline_ms: call.deadline_ms.saturating_sub(self.now).max(1),
            credit: call.window.unwrap_or(0),
            payload: call.payload.clone(),
        });
        let deadline = call.deadline_ms;
        self.push(to, &m, Tag::Request(rid), deadline);
    }

    fn push(&mut self, to: NodeId, m: &RpcMsg, tag: Tag, expiry_ms: u64) {
        match m.encode(&self.wire) {
            Ok(msg) => self.out.push_back(Outbound { to, target: super::RPC_ENGINE, msg, tag, expiry_ms }),
            Err(_) => {
                // Only a payload beyond the codec's limits can fail, and
                // only requests carry payloads: fail that call.
                if let Tag::Request(rid) = tag {
                    self.end(to, rid, Err(RpcError::PayloadTooLarge { len: 0, max: self.cfg.max_payload }));
                }
            }
        }
    }

    /// An RPC message from `from` for the client side (session replies,
    /// responses, session closes). Returns `false` if it was not for us.
    pub fn on_message(&mut self, now: u64, from: NodeId, m: RpcMsg) -> bool {
        self.touch(now);
        match m {
            RpcMsg::SessionReply { session, result } => self.on_session_reply(now, from, session, result),
            RpcMsg::Response(r) => self.on_response(now, from, r),
            RpcMsg::Control { session, kind: ControlKind::SessionClosed, .. } => {
                // The server closed an idle session: the next call opens a new one.
                if let Some(peer) = self.peers.get_mut(&from) {
                    if let Some(service) = peer.by_sid.remove(&session) {
                        if matches!(peer.sessions.get(&service), Some(SessionState::Open { sid, .. }) if *sid == session)
                        {
                            peer.sessions.remove(&service);
                        }
                    }
                }
            }
            _ => return false,
        }
        true
    }

    fn on_session_reply(&mut self, now: u64, from: NodeId, sid: u32, result: Result<u32, RejectReason>) {
        let Some(peer) = self.peers.get_mut(&from) else { return };
        let Some(service) = peer.by_sid.get(&sid).cloned() else { return };
        let waiting = match peer.sessions.get_mut(&service) {
            Some(SessionState::Opening { sid: s, waiting }) if *s == sid => std::mem::take(waiting),
            _ => return,
        };
        match result {
            Ok(version) if self.cfg.versions.contains(&version) => {
                let waiting: Vec<u32> = waiting.into_iter().filter(|r| peer.calls.contains_key(r)).collect();
                peer.sessions.insert(service, SessionState::Open { sid, last_used: now, active: waiting.len() });
                for rid in waiting {
                    self.send_request(from, sid, rid);
                }
            }
            Ok(_) => {
                // A version we never offered: the server is broken.
                peer.sessions.remove(&service);
                peer.by_sid.remove(&sid);
                for rid in waiting {
                    self.end(from, rid, Err(RpcError::Protocol("accepted a version that was not offered")));
                }
            }
            Err(reason) => {
                self.stats.rejected += 1;
                peer.sessions.remove(&service);
                peer.by_sid.remove(&sid);
                for rid in waiting {
                    self.end(from, rid, Err(RpcError::Rejected(reason)));
                }
            }
        }
    }

    fn on_response(&mut self, now: u64, from: NodeId, r: RpcResponse) {
        let Some(call) = self.peers.get_mut(&from).and_then(|p| p.calls.get_mut(&r.request_id)) else { return };
        if call.sid != Some(r.session) {
            return; // an answer to an earlier incarnation of this request ID
        }
        let fin = r.flags & msg::FLAG_FIN != 0;
        let status = Status(r.status);
        if status == Status::NO_SESSION && !call.retried && call.deadline_ms > now {
            // The server forgot the session (closed while our request
            // travelled): open a new one and send the call again, once.
            call.retried = true;
            call.sid = None;
            let service = call.service.clone();
            if let Some(peer) = self.peers.get_mut(&from) {
                if let Some(SessionState::Open { sid, .. }) = peer.sessions.get(&service) {
                    if *sid == r.session {
                        peer.sessions.remove(&service);
                        peer.by_sid.remove(&r.session);
                    }
                }
            }
            self.dispatch(now, from, service, r.request_id);
            return;
        }
        if status != Status::OK {
            let e = match status {
                Status::DEADLINE_EXCEEDED => RpcError::DeadlineExceeded { reported_by_server: true },
                Status::BUSY => RpcError::ServerBusy,
                _ => RpcError::Status { status, details: r.payload },
            };
            self.end(from, r.request_id, Err(e));
            return;
        }
        match (call.window.is_some(), fin) {
            (false, true) => self.end(from, r.request_id, Ok(r.payload)),
            (false, false) => {
                self.cancel_remote(from, r.session, r.request_id);
                self.end(from, r.request_id, Err(RpcError::Protocol("streamed answer to a unary call")));
            }
            (true, true) => {
                // A FIN with a payload carries a last item (it needs no credit).
                if !r.payload.is_empty() && !call.reply.item(r.payload) {
                    self.end(from, r.request_id, Err(RpcError::Cancelled));
                } else {
                    self.end(from, r.request_id, Ok(Bytes::new()));
                }
            }
            (true, false) => {
                call.received += 1;
                if call.received > call.granted {
                    self.cancel_remote(from, r.session, r.request_id);
                    self.end(from, r.request_id, Err(RpcError::Protocol("stream sent beyond its credit")));
                } else if !call.reply.item(r.payload) {
                    self.cancel(now, from, r.request_id);
                }
            }
        }
    }

    /// The consumer of stream `rid` took `n` items: grant as much credit
    /// back (in batches of half the window).
    pub fn consumed(&mut self, now: u64, to: NodeId, rid: u32, n: u32) {
        self.touch(now);
        let Some(call) = self.peers.get_mut(&to).and_then(|p| p.calls.get_mut(&rid)) else { return };
        let (Some(window), Some(sid)) = (call.window, call.sid) else { return };
        call.consumed = call.consumed.saturating_add(n);
        if call.consumed < (window / 2).max(1) {
            return;
        }
        let grant = std::mem::take(&mut call.consumed);
        call.granted += u64::from(grant);
        let m = RpcMsg::Control { session: sid, request_id: rid, kind: ControlKind::Credit, n: grant };
        self.push(to, &m, Tag::Other, now + CONTROL_EXPIRY_MS);
    }

    /// The caller gave up on call `rid` (dropped its stream): tell the
    /// server to stop, and end the call as cancelled.
    pub fn cancel(&mut self, now: u64, to: NodeId, rid: u32) {
        self.touch(now);
        let Some(sid) = self.peers.get(&to).and_then(|p| p.calls.get(&rid)).map(|c| c.sid) else { return };
        if let Some(sid) = sid {
            self.cancel_remote(to, sid, rid);
        }
        self.end(to, rid, Err(RpcError::Cancelled));
    }

    fn cancel_remote(&mut self, to: NodeId, sid: u32, rid: u32) {
        let m = RpcMsg::Control { session: sid, request_id: rid, kind: ControlKind::Cancel, n: 0 };
        self.push(to, &m, Tag::Other, self.now + CONTROL_EXPIRY_MS);
    }

    /// A message this table sent was not delivered.
    pub fn on_undelivered(&mut self, now: u64, to: NodeId, tag: Tag, outcome: Outcome) {
        self.touch(now);
        match tag {
            Tag::Session(sid) => {
                let Some(peer) = self.peers.get_mut(&to) else { return };
                let Some(service) = peer.by_sid.remove(&sid) else { return };
                if let Some(SessionState::Opening { waiting, .. }) = peer.sessions.remove(&service) {
                    for rid in waiting {
                        self.end(to, rid, Err(RpcError::Undelivered(outcome)));
                    }
                }
            }
            Tag::Request(rid) => {
                let e = match outcome {
                    Outcome::Expired => RpcError::DeadlineExceeded { reported_by_server: false },
                    Outcome::Unresolved(crate::proxy::Unresolved::PeerRestarted) => RpcError::PeerRestarted,
                    o => RpcError::Undelivered(o),
                };
                self.end(to, rid, Err(e));
            }
            Tag::Response(_) | Tag::Peer(_) | Tag::Other => {}
        }
    }

    /// The server node's process restarted: its sessions are gone and no
    /// answer to a call in flight will come.
    pub fn on_peer_restarted(&mut self, now: u64, peer: NodeId) {
        self.touch(now);
        let rids: Vec<u32> = self.peers.get(&peer).map(|p| p.calls.keys().copied().collect()).unwrap_or_default();
        for rid in rids {
            self.end(peer, rid, Err(RpcError::PeerRestarted));
        }
        self.peers.remove(&peer);
    }

    /// Ends every call (the node stops).
    pub fn shutdown(&mut self) {
        let all: Vec<(NodeId, u32)> =
            self.peers.iter().flat_map(|(n, p)| p.calls.keys().map(move |r| (*n, *r))).collect();
        for (n, r) in all {
            self.end(n, r, Err(RpcError::ShuttingDown));
        }
    }

    /// Ends call `rid` with `result` (exactly once: it leaves the table).
    fn end(&mut self, to: NodeId, rid: u32, result: Result<Bytes, RpcError>) {
        let Some(peer) = self.peers.get_mut(&to) else { return };
        let Some(call) = peer.calls.remove(&rid) else { return };
        self.budget.give();
        self.deadlines.remove(&(call.deadline_ms, to, rid));
        if let Some(sid) = call.sid {
            if let Some(SessionState::Open { sid: s, active, .. }) = peer.sessions.get_mut(&call.service) {
                if *s == sid {
                    *active = active.saturating_sub(1);
                }
            }
        } else if let Some(SessionState::Opening { waiting, .. }) = peer.sessions.get_mut(&call.service) {
            waiting.retain(|r| *r != rid);
        }
        match &result {
            Ok(_) => self.stats.ok += 1,
            Err(e) => {
                self.stats.failed += 1;
                if matches!(e, RpcError::DeadlineExceeded { reported_by_server: false }) {
                    self.stats.deadline += 1;
                }
            }
        }
        call.reply.finish(result);
    }

    /// Deadlines and idle sessions.
    pub fn on_timeout(&mut self, now: u64) {
        self.touch(now);
        while let Some(&(d, to, rid)) = self.deadlines.first() {
            if d > now {
                break;
            }
            // Tell the server to stop working on it (it will also notice).
            let sid = self.peers.get(&to).and_then(|p| p.calls.get(&rid)).and_then(|c| c.sid);
            if let Some(sid) = sid {
                self.cancel_remote(to, sid, rid);
            }
            self.end(to, rid, Err(RpcError::DeadlineExceeded { reported_by_server: false }));
            self.deadlines.remove(&(d, to, rid));
        }
        if now >= self.next_idle_check {
            self.next_idle_check = now + IDLE_CHECK_MS;
            self.close_idle(now);
        }
    }

    fn close_idle(&mut self, now: u64) {
        let idle = self.cfg.client_idle_ms;
        let mut closes = Vec::new();
        for (node, peer) in self.peers.iter_mut() {
            peer.sessions.retain(|_, s| match s {
                SessionState::Open { sid, last_used, active } if *active == 0 && now >= *last_used + idle => {
                    closes.push((*node, *sid));
                    false
                }
                _ => true,
            });
            for (_, sid) in closes.iter().filter(|(n, _)| n == node) {
                peer.by_sid.remove(sid);
            }
        }
        self.peers.retain(|_, p| !p.sessions.is_empty() || !p.calls.is_empty());
        for (to, sid) in closes {
            let m = RpcMsg::Control { session: sid, request_id: 0, kind: ControlKind::CloseSession, n: 0 };
            self.push(to, &m, Tag::Other, now + CONTROL_EXPIRY_MS);
        }
    }

    fn touch(&mut self, now: u64) {
        self.now = self.now.max(now);
        if self.next_idle_check == 0 {
            self.next_idle_check = now + IDLE_CHECK_MS;
        }
    }

    /// When [`ClientTable::on_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<u64> {
        let d = self.deadlines.first().map(|d| d.0);
        let idle = (!self.peers.is_empty()).then_some(self.next_idle_check);
        match (d, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next message to send.
    pub fn poll_outbound(&mut self) -> Option<Outbound> {
        self.out.pop_front()
    }

    /// Counters and gauges.
    pub fn stats(&self) -> ClientStats {
        let mut s = self.stats;
        s.in_flight = self.peers.values().map(|p| p.calls.len()).sum();
        s.sessions = self.peers.values().map(|p| p.sessions.len()).sum();
        s
    }
}

/// Idle sessions are looked for this often.
const IDLE_CHECK_MS: u64 = 1000;
