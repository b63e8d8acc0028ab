//! The CAD015 peer message types in the shard: QUERY / TRANSACT / STATUS
//! answered with RESULT, BELIEF to the merge handler, MISSING_DATA answered
//! from the cell store, partial messages completed before delivery.
//!
//! Everything addressed to the reserved engine `$peer` comes here, on the
//! shard that owns the sender's link. Answers go back to the engine that
//! sent the request. Requests this node makes (query, transact, status)
//! live on the shard that owns the server node, like RPC calls.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_channel::oneshot;

use super::{Command, Cross, Inbox, Notify, Shard};
use crate::handshake::NodeId;
use crate::node::{Metric, shard_of};
use crate::peer::{Assembled, Assembler, CellStore, Incomplete, PEER_ENGINE, TokenBucket, codes};
use crate::proxy::{self, EngineId, EngineMsg, Outcome, Outgoing, TransportPrefs};
use crate::rpc::Tag;
use crate::wire::{Message, MessageType, Value, ValueId, encode_message, payload};

/// The application's side of the peer message types, one instance per
/// shard. Every method has a default, so a node answers every request
/// even without a handler (`:UNSUPPORTED`).
pub trait PeerHandler: 'static {
    /// A QUERY: answer with a value or an error keyword.
    fn query(&self, req: PeerRequest, reply: ResultReply) {
        let _ = req;
        reply.error(codes::UNSUPPORTED, "this node answers no QUERY");
    }

    /// A STATUS request.
    fn status(&self, req: PeerRequest, reply: ResultReply) {
        let _ = req;
        reply.error(codes::UNSUPPORTED, "this node answers no STATUS");
    }

    /// Checks a transaction before it is accepted (signature, sequence
    /// number, ...). A rejected transaction is answered with the
    /// rejection's code and is not remembered as accepted.
    fn validate_transaction(&self, req: &PeerRequest) -> Result<(), Rejection> {
        let _ = req;
        Ok(())
    }

    /// An accepted TRANSACT (valid, not a duplicate): answer with its result.
    fn transact(&self, req: PeerRequest, reply: ResultReply) {
        let _ = req;
        reply.ok(Value::Nil);
    }

    /// A BELIEF, once per value ID, within the belief rate: merge it.
    fn belief(&self, from: NodeId, belief: Message) {
        let _ = (from, belief);
    }

    /// A partial message could not be completed and was dropped.
    fn incomplete(&self, from: NodeId, ty: MessageType, why: Incomplete) {
        let _ = (from, ty, why);
    }

    /// Any other message type sent to `$peer`.
    fn message(&self, from: NodeId, msg: Message) {
        let _ = (from, msg);
    }
}

/// The handler used when the application registers none.
pub(crate) struct NoHandler;
impl PeerHandler for NoHandler {}

/// A QUERY, TRANSACT or STATUS as a handler sees it.
#[derive(Debug, Clone)]
pub struct PeerRequest {
    /// The requesting node.
    pub from: NodeId,
    /// Its message ID (the RESULT references it).
    pub id: u64,
    /// The whole message.
    pub msg: Message,
}

impl PeerRequest {
    /// The query or transaction cell (element 1); `None` for STATUS.
    pub fn body(&self) -> Option<crate::wire::Cell> {
        self.msg.element(1)
    }

    /// The value ID of the body (a transaction's hash).
    pub fn body_id(&self, alg: crate::wire::HashAlg) -> Option<ValueId> {
        let (_, items) = self.msg.payload().top().seq_leaf()?;
        match items.get(1)? {
            crate::wire::Child::Ref(id) => Some(*id),
            crate::wire::Child::Inline(c) => Some(c.value_id(alg)),
            crate::wire::Child::Nil => Some(alg.hash(&[0])),
        }
    }
}

/// Why a transaction was rejected: a RESULT error keyword and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The keyword (without the colon), e.g. `SIGNATURE` or `SEQUENCE`.
    pub code: String,
    /// A human-readable reason (RESULT's value field).
    pub message: String,
}

impl Rejection {
    /// A rejection with `code` and `message`.
    pub fn new(code: &str, message: &str) -> Rejection {
        Rejection { code: code.to_string(), message: message.to_string() }
    }
}

/// How a handler answers one request with a RESULT. Dropping it
/// unanswered answers `:NO_ANSWER`: a request is never met with silence.
pub struct ResultReply {
    shard: Rc<Shard>,
    to: NodeId,
    target: EngineId,
    id: u64,
    done: bool,
}

impl std::fmt::Debug for ResultReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultReply").field("to", &self.to.short()).field("id", &self.id).finish()
    }
}

impl ResultReply {
    /// Answers with a value.
    pub fn ok(mut self, value: Value) {
        self.done = true;
        self.shard.peer_result(self.to, self.target, self.id, value, None);
    }

    /// Answers with an error keyword (without the colon) and a message.
    pub fn error(mut self, code: &str, message: &str) {
        self.done = true;
        self.shard.peer_result(self.to, self.target, self.id, Value::string(message), Some(code));
    }
}

impl Drop for ResultReply {
    fn drop(&mut self) {
        let s = &self.shard;
        s.peer.outstanding.set(s.peer.outstanding.get().saturating_sub(1));
        if !self.done {
            s.peer_result(self.to, self.target, self.id, Value::string("no answer"), Some(codes::NO_ANSWER));
        }
    }
}

/// A RESULT received for a request this node made.
#[derive(Debug, Clone)]
pub struct PeerResult {
    msg: Message,
}

impl PeerResult {
    /// The message ID it answers.
    pub fn id(&self) -> u64 {
        self.msg.id().unwrap_or(0)
    }

    /// The error keyword (without the colon), if the request failed.
    pub fn error(&self) -> Option<String> {
        let (_, items) = self.msg.payload().top().seq_leaf()?;
        let kw = self.msg.payload().resolve(items.get(2)?)?;
        kw.as_keyword().map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// The result value (or the error message), as a cell.
    pub fn value(&self) -> Option<crate::wire::Cell> {
        self.msg.element(1)
    }

    /// The whole RESULT message.
    pub fn message(&self) -> &Message {
        &self.msg
    }
}

/// Why a QUERY / TRANSACT / STATUS got no RESULT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// No RESULT came before the deadline.
    #[error("no result before the deadline")]
    Timeout,
    /// The request was not delivered.
    #[error("request not delivered: {}", .0.name())]
    Undelivered(Outcome),
    /// A bounded queue on the way is full.
    #[error("queue full")]
    Busy,
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// Requests to this node itself are not supported.
    #[error("cannot send to this node itself")]
    ToSelf,
    /// The request could not be encoded.
    #[error("cannot encode the request: {0}")]
    Encode(crate::wire::EncodeError),
}

/// The RESULT of a request: await it on a shard, or [`PendingResult::wait`]
/// on any other thread.
#[must_use = "a request's result should be looked at"]
pub struct PendingResult {
    rx: oneshot::Receiver<Result<PeerResult, PeerError>>,
    /// The result may come from another shard's thread (see `poll_routed`).
    routed: Option<(std::task::Waker, std::task::Waker)>,
}

impl PendingResult {
    fn new() -> (PendingResult, ResultTx) {
        let (tx, rx) = oneshot::channel();
        (PendingResult { rx, routed: None }, tx)
    }

    /// Blocks the calling thread for the result (not on a shard thread).
    pub fn wait(self) -> Result<PeerResult, PeerError> {
        futures_lite::future::block_on(self)
    }

    /// The result if it has arrived.
    pub fn try_result(&mut self) -> Option<Result<PeerResult, PeerError>> {
        match self.rx.try_recv() {
            Ok(Some(r)) => Some(r),
            Ok(None) => None,
            Err(_) => Some(Err(PeerError::ShuttingDown)),
        }
    }
}

impl Future for PendingResult {
    type Output = Result<PeerResult, PeerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        super::wake::poll_routed(&mut this.routed, cx, |cx| Pin::new(&mut this.rx).poll(cx))
            .map(|r| r.unwrap_or(Err(PeerError::ShuttingDown)))
    }
}

type ResultTx = oneshot::Sender<Result<PeerResult, PeerError>>;

/// A request travelling to the shard that owns its server node.
pub(crate) struct PeerCallCmd {
    pub to: NodeId,
    pub ty: MessageType,
    pub body: Option<Value>,
    pub deadline_ms: u64,
    pub reply: ResultTx,
}

/// A shard's peer-message state.
pub(crate) struct PeerState {
    pub handler: Rc<dyn PeerHandler>,
    pub store: RefCell<CellStore>,
    asm: RefCell<Assembler>,
    bucket: RefCell<TokenBucket>,
    outstanding: Cell<usize>,
    calls: RefCell<HashMap<(NodeId, u32), (u64, ResultTx)>>,
    deadlines: RefCell<BTreeSet<(u64, NodeId, u32)>>,
    next_id: Cell<u32>,
    pub wake: Notify,
}

impl PeerState {
    pub fn new(handler: Rc<dyn PeerHandler>, cfg: &crate::node::NodeConfig) -> PeerState {
        let p = &cfg.peer_msgs;
        PeerState {
            handler,
            store: RefCell::new(CellStore::new(p.store_bytes)),
            asm: RefCell::new(Assembler::new(cfg.wire, p.max_partial, p.max_partial_bytes, p.partial_timeout_ms)),
            bucket: RefCell::new(TokenBucket::new(p.belief_rate, p.belief_burst, p.belief_trusted_reserve)),
            outstanding: Cell::new(0),
            calls: RefCell::new(HashMap::new()),
            deadlines: RefCell::new(BTreeSet::new()),
            next_id: Cell::new(1),
            wake: Notify::default(),
        }
    }
}

/// Starts a request from a thread outside the owner shard.
pub(crate) fn call_via_inbox(inbox: &Inbox, cmd_of: impl FnOnce(ResultTx) -> PeerCallCmd) -> PendingResult {
    let (p, tx) = PendingResult::new();
    if let Err(Command::PeerCall(c)) = inbox.send(Command::PeerCall(Box::new(cmd_of(tx)))) {
        let _ = c.reply.send(Err(PeerError::Busy));
    }
    p
}

impl Shard {
    /// A request from an engine on this shard (or arriving from elsewhere).
    pub(crate) fn peer_call_local(self: &Rc<Self>, cmd_of: impl FnOnce(ResultTx) -> PeerCallCmd) -> PendingResult {
        let (p, tx) = PendingResult::new();
        self.peer_call(cmd_of(tx));
        p
    }

    pub(crate) fn peer_call(self: &Rc<Self>, cmd: PeerCallCmd) {
        if self.stopping.get() {
            let _ = cmd.reply.send(Err(PeerError::ShuttingDown));
            return;
        }
        if cmd.to == self.me {
            let _ = cmd.reply.send(Err(PeerError::ToSelf));
            return;
        }
        let owner = shard_of(&cmd.to, self.count);
        if owner != self.index {
            self.mesh_push(owner, Cross::PeerCall(Box::new(cmd)));
            return;
        }
        let now = self.now();
        if cmd.deadline_ms <= now {
            let _ = cmd.reply.send(Err(PeerError::Timeout));
            return;
        }
        // A request ID unused towards this node.
        let mut id = self.peer.next_id.get();
        {
            let calls = self.peer.calls.borrow();
            while id == 0 || calls.contains_key(&(cmd.to, id)) {
                id = id.wrapping_add(1);
            }
        }
        self.peer.next_id.set(id.wrapping_add(1));
        let body = cmd.body.unwrap_or(Value::Nil);
        let v = match cmd.ty {
            MessageType::Query => payload::query(u64::from(id), body),
            MessageType::Transact => payload::transact(u64::from(id), body),
            _ => payload::status(u64::from(id)),
        };
        let msg = match encode_message(cmd.ty, &v, &self.cfg.wire)
            .and_then(|b| Message::decode(b, &self.cfg.wire).map_err(crate::wire::EncodeError::Limits))
        {
            Ok(m) => m,
            Err(e) => {
                let _ = cmd.reply.send(Err(PeerError::Encode(e)));
                return;
            }
        };
        self.peer.calls.borrow_mut().insert((cmd.to, id), (cmd.deadline_ms, cmd.reply));
        self.peer.deadlines.borrow_mut().insert((cmd.deadline_ms, cmd.to, id));
        self.peer.wake.notify();
        let out = Outgoing::new(
            self.new_msg_id(),
            Tag::Peer(id).to_origin(),
            EngineMsg { sender: PEER_ENGINE, target: PEER_ENGINE, mailbox: None, msg },
            TransportPrefs::default(),
            cmd.deadline_ms,
            false,
        );
        if let Err(e) = self.local_send(cmd.to, out, self.now()) {
            let o = match e {
                proxy::SendError::Full(_) => Outcome::NotQueued(proxy::NotQueued::QueueFull),
                proxy::SendError::Refused(r, _) => Outcome::NotQueued(proxy::NotQueued::Refused(r)),
                proxy::SendError::ShuttingDown(_) => Outcome::NotQueued(proxy::NotQueued::ShuttingDown),
            };
            self.peer_end(cmd.to, id, Err(PeerError::Undelivered(o)));
        }
    }

    fn peer_end(&self, to: NodeId, id: u32, r: Result<PeerResult, PeerError>) {
        if let Some((deadline, tx)) = self.peer.calls.borrow_mut().remove(&(to, id)) {
            self.peer.deadlines.borrow_mut().remove(&(deadline, to, id));
            let _ = tx.send(r);
        }
    }

    /// A request of ours was not delivered.
    pub(crate) fn peer_undelivered(&self, to: NodeId, id: u32, outcome: Outcome) {
        let e = if outcome == Outcome::Expired { PeerError::Timeout } else { PeerError::Undelivered(outcome) };
        self.peer_end(to, id, Err(e));
    }

    /// A message for `$peer` arrived from engine `sender` of node `from`.
    pub(crate) fn peer_on_message(self: &Rc<Self>, from: NodeId, sender: EngineId, msg: Message) {
        let now = self.now();
        match msg.ty() {
            MessageType::Result => {
                if let Some(id) = msg.id().and_then(|i| u32::try_from(i).ok()) {
                    self.peer_end(from, id, Ok(PeerResult { msg }));
                }
                return;
            }
            MessageType::MissingData => {
                self.peer_answer_missing(from, sender, &msg);
                return;
            }
            MessageType::Data => {
                if let Some((id, cells)) = crate::peer::assemble::data_cells(&msg) {
                    let mut store = self.peer.store.borrow_mut();
                    self.peer.asm.borrow_mut().on_data(now, from, id, cells, &mut store);
                }
            }
            _ => {
                // Keep the cells it carries: a later partial message (from
                // anyone) may leave them out, and peers may ask for them.
                {
                    let mut store = self.peer.store.borrow_mut();
                    for (id, c) in msg.payload().branches() {
                        store.insert(id, c.encoding().clone());
                    }
                }
                let mut store = self.peer.store.borrow_mut();
                self.peer.asm.borrow_mut().add(now, from, sender, msg, &mut store);
            }
        }
        self.peer_assembled();
    }

    /// Acts on what the assembler produced.
    fn peer_assembled(self: &Rc<Self>) {
        let out: Vec<Assembled> = self.peer.asm.borrow_mut().drain().collect();
        for a in out {
            match a {
                Assembled::Request { to, engine, id, ids } => {
                    let v = payload::missing_data(id, &ids);
                    self.peer_send_value(to, engine, MessageType::MissingData, &v);
                }
                Assembled::Ready { from, sender, msg, completed } => {
                    self.metrics.add(Metric::peer_partial_completed, u64::from(completed));
                    self.peer_deliver(from, sender, msg);
                }
                Assembled::Failed { from, ty, why } => {
                    self.metrics.add(Metric::peer_partial_failed, 1);
                    tracing::debug!(from = %from.short(), ty, %why, "partial message dropped");
                    self.peer.handler.incomplete(from, MessageType::from_byte(ty), why);
                }
            }
        }
        self.metrics.set(Metric::peer_store_bytes, self.peer.store.borrow().bytes() as u64);
    }

    /// Sends a library-made peer message (MISSING_DATA, DATA, RESULT).
    fn peer_send_value(self: &Rc<Self>, to: NodeId, target: EngineId, ty: MessageType, v: &Value) {
        let Ok(msg) = encode_message(ty, v, &self.cfg.wire)
            .and_then(|b| Message::decode(b, &self.cfg.wire).map_err(crate::wire::EncodeError::Limits))
        else {
            return;
        };
        let out = Outgoing::new(
            self.new_msg_id(),
            Tag::Other.to_origin(),
            EngineMsg { sender: PEER_ENGINE, target, mailbox: None, msg },
            TransportPrefs::default(),
            self.now() + self.cfg.peer_msgs.partial_timeout_ms.max(10_000),
            false,
        );
        // A full queue loses only a library answer the peer will time out
        // on (and count); the peer's own request is what it retries.
        let _ = self.local_send(to, out, self.now());
    }

    /// MISSING_DATA: answer with DATA from the store, `nil` for what it lacks.
    fn peer_answer_missing(self: &Rc<Self>, from: NodeId, sender: EngineId, msg: &Message) {
        let (Some(id), Some(ids)) = (msg.id(), msg.missing_request()) else { return };
        self.metrics.add(Metric::peer_missing_data_in, 1);
        let cells: Vec<Value> = {
            let mut store = self.peer.store.borrow_mut();
            ids.iter().map(|i| store.get(i).map_or(Value::Nil, Value::Cell)).collect()
        };
        self.peer_send_value(from, sender, MessageType::Data, &payload::data(id, cells));
    }

    /// Sends a RESULT for request `id` to engine `target` of `to`.
    fn peer_result(self: &Rc<Self>, to: NodeId, target: EngineId, id: u64, value: Value, error: Option<&str>) {
        let v = payload::result(id, value, error, Value::Nil);
        self.peer_send_value(to, target, MessageType::Result, &v);
    }

    fn reply_for(self: &Rc<Self>, to: NodeId, target: EngineId, id: u64) -> ResultReply {
        self.peer.outstanding.set(self.peer.outstanding.get() + 1);
        ResultReply { shard: self.clone(), to, target, id, done: false }
    }

    /// A whole message for `$peer`.
    fn peer_deliver(self: &Rc<Self>, from: NodeId, sender: EngineId, msg: Message) {
        let ty = msg.ty();
        let handler = self.peer.handler.clone();
        match ty {
            MessageType::Query | MessageType::Status | MessageType::Transact => {
                let Some(id) = msg.id() else { return };
                if self.peer.outstanding.get() >= self.cfg.peer_msgs.max_pending_requests {
                    // Shed load, but never with silence.
                    self.metrics.add(Metric::peer_load_shed, 1);
                    self.peer_result(from, sender, id, Value::string("busy: try again"), Some(codes::LOAD));
                    return;
                }
                self.metrics.add(Metric::peer_requests_in, 1);
                let req = PeerRequest { from, id, msg };
                match ty {
                    MessageType::Query => handler.query(req, self.reply_for(from, sender, id)),
                    MessageType::Status => handler.status(req, self.reply_for(from, sender, id)),
                    _ => self.peer_transact(&handler, req, sender),
                }
            }
            MessageType::Belief => {
                let vid = msg.payload().top_id(self.cfg.wire.hash);
                let mut seen = self.shared.beliefs_seen.lock().unwrap_or_else(|e| e.into_inner());
                if seen.contains(&vid) {
                    self.metrics.add(Metric::peer_beliefs_duplicate, 1);
                    return;
                }
                let trusted = self.cfg.peer_msgs.trusted.contains(&from);
                if !self.peer.bucket.borrow_mut().admit(self.now(), trusted) {
                    self.metrics.add(Metric::peer_beliefs_dropped, 1);
                    return;
                }
                seen.insert(vid);
                drop(seen);
                self.metrics.add(Metric::peer_beliefs_in, 1);
                handler.belief(from, msg);
            }
            MessageType::Data | MessageType::MissingData | MessageType::Result => {}
            MessageType::Other(_) => handler.message(from, msg),
        }
    }

    fn peer_transact(self: &Rc<Self>, handler: &Rc<dyn PeerHandler>, req: PeerRequest, sender: EngineId) {
        let (from, id) = (req.from, req.id);
        let Some(tx_id) = req.body_id(self.cfg.wire.hash) else {
            self.peer_result(from, sender, id, Value::string("TRANSACT must be [id, tx]"), Some(codes::FORMAT));
            return;
        };
        // Check, validate and remember under one lock, so the same
        // transaction arriving on two shards is accepted once.
        let verdict = {
            let mut seen = self.shared.tx_seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.contains(&tx_id) {
                Err(Rejection::new(codes::DUPLICATE, "transaction already accepted"))
            } else {
                let v = handler.validate_transaction(&req);
                if v.is_ok() {
                    seen.insert(tx_id);
                }
                v
            }
        };
        match verdict {
            Ok(()) => handler.transact(req, self.reply_for(from, sender, id)),
            Err(r) => {
                let m = if r.code == codes::DUPLICATE { Metric::peer_tx_duplicate } else { Metric::peer_tx_rejected };
                self.metrics.add(m, 1);
                self.peer_result(from, sender, id, Value::string(&r.message), Some(&r.code));
            }
        }
    }

    /// Request deadlines and partial-message timeouts.
    pub(crate) async fn peer_timer_task(self: Rc<Self>) {
        loop {
            let now = self.now();
            let late: Vec<(u64, NodeId, u32)> =
                self.peer.deadlines.borrow().iter().take_while(|d| d.0 <= now).copied().collect();
            for (_, to, id) in late {
                self.peer_end(to, id, Err(PeerError::Timeout));
            }
            self.peer.asm.borrow_mut().on_timeout(now);
            self.peer_assembled();
            let next = [self.peer.deadlines.borrow().first().map(|d| d.0), self.peer.asm.borrow().poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let wait = next.map_or(1000, |t| t.saturating_sub(self.now())).clamp(1, 1000);
            futures_lite::future::or(self.sleep(std::time::Duration::from_millis(wait)), self.peer.wake.wait()).await;
        }
    }

    /// Fails every request waiting for a RESULT (the node stops).
    pub(crate) fn peer_shutdown(&self) {
        let keys: Vec<(NodeId, u32)> = self.peer.calls.borrow().keys().copied().collect();
        for (to, id) in keys {
            self.peer_end(to, id, Err(PeerError::ShuttingDown));
        }
    }
}
