//! RPC in the shard: runs service handlers, moves RPC messages through the
//! node proxies, and connects callers (on any shard or thread) to the
//! client table of the shard that owns the server node.
//!
//! Client state for a server node lives on the shard that owns that node,
//! as its link does. A call made elsewhere travels there (mesh or inbox)
//! with its answer channel: a `oneshot` for a unary call, an unbounded
//! channel for a stream (bounded in practice by the stream's credit). The
//! consumer of a stream reports what it took through shared counters and a
//! poke to the owner shard, which turns them into credit for the server.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_channel::{mpsc, oneshot};

use super::{Command, Cross, Inbox, Notify, Shard};
use crate::handshake::NodeId;
use crate::node::{Metric, shard_of};
use crate::proxy::{self, EngineId, EngineMsg, Outcome, Outgoing, TransportPrefs};
use crate::rpc::{
    ClientTable, Completion, ControlKind, Outbound, RPC_ENGINE, RequestDecision, RpcError, RpcMsg, RpcResponse,
    ServerTable, Status, Tag, msg,
};
use crate::wire::Message;

/// A service's async handler, one instance per shard.
///
/// `handle` runs on the shard that owns the calling node's link; it must
/// not block. It answers through the [`Responder`]: once for a unary call,
/// or as a stream of items for a call that asked for one
/// ([`Request::streaming`]). The shard stops it (drops the future) when the
/// deadline passes or the client cancels.
///
/// ```
/// use shardwire::node::{Request, Responder, Service};
/// use std::{future::Future, pin::Pin};
///
/// struct Echo;
/// impl Service for Echo {
///     fn handle(&self, req: Request, out: Responder) -> Pin<Box<dyn Future<Output = ()>>> {
///         Box::pin(async move { out.reply(req.payload) })
///     }
/// }
/// ```
pub trait Service: 'static {
    /// Handles one call.
    fn handle(&self, req: Request, out: Responder) -> Pin<Box<dyn Future<Output = ()>>>;
}

/// A service from a function: `service_fn(|req, out| async move { ... })`.
///
/// ```
/// use shardwire::node::service_fn;
/// let echo = service_fn(|req, out| async move { out.reply(req.payload) });
/// # let _ = echo;
/// ```
pub fn service_fn<F, Fut>(f: F) -> ServiceFn<F>
where
    F: Fn(Request, Responder) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    ServiceFn(f)
}

/// A [`Service`] made by [`service_fn`].
pub struct ServiceFn<F>(F);

impl<F, Fut> Service for ServiceFn<F>
where
    F: Fn(Request, Responder) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    fn handle(&self, req: Request, out: Responder) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin((self.0)(req, out))
    }
}

/// One call, as a handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The calling node.
    pub from: NodeId,
    /// The method (the service defines the numbers).
    pub method: u32,
    /// The argument.
    pub payload: Bytes,
    /// Whether the caller accepts a stream of responses.
    pub streaming: bool,
    /// The session's RPC version.
    pub version: u32,
    deadline_ms: u64,
    epoch_ms: u64,
}

impl Request {
    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        let now = crate::node::mono_ms() - self.epoch_ms;
        Duration::from_millis(self.deadline_ms.saturating_sub(now))
    }
}

/// Why a stream item could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The call is unary: answer with [`Responder::reply`].
    #[error("the call is not streamed")]
    NotStreaming,
    /// The client cancelled the call (or its deadline passed): stop.
    #[error("the call was cancelled")]
    Cancelled,
}

/// Per running server call: what the handler and the shard share.
#[derive(Default)]
struct CallCtl {
    cancelled: Cell<bool>,
    cancel_wake: Notify,
    /// Items the client allows in total, and items sent.
    credit: Cell<u64>,
    sent: Cell<u64>,
    credit_wake: Notify,
    /// The final response has been sent (or must not be).
    answered: Cell<bool>,
    /// The server's own deadline stopped the call.
    timed_out: Cell<bool>,
}

/// How a handler answers one call.
pub struct Responder {
    shard: Rc<Shard>,
    from: NodeId,
    sid: u32,
    rid: u32,
    streaming: bool,
    deadline_ms: u64,
    ctl: Rc<CallCtl>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").field("from", &self.from.short()).field("request_id", &self.rid).finish()
    }
}

impl Responder {
    /// Answers with `payload` (status OK). For a streamed call this is the
    /// last item and the end of the stream.
    pub fn reply(self, payload: Bytes) {
        self.answer(Status::OK, payload);
    }

    /// Answers with an error status and details.
    pub fn error(self, status: Status, details: Bytes) {
        let status = if status == Status::OK { Status::INTERNAL } else { status };
        self.answer(status, details);
    }

    /// Ends a stream (no further item).
    pub fn finish(self) {
        self.answer(Status::OK, Bytes::new());
    }

    /// Whether the client cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.ctl.cancelled.get()
    }

    /// Sends one item of a streamed answer, waiting for the client's credit
    /// (a slow consumer slows this down).
    pub async fn send(&mut self, item: Bytes) -> Result<(), StreamError> {
        if !self.streaming {
            return Err(StreamError::NotStreaming);
        }
        loop {
            if self.ctl.cancelled.get() || self.ctl.answered.get() {
                return Err(StreamError::Cancelled);
            }
            if self.ctl.sent.get() < self.ctl.credit.get() {
                break;
            }
            self.ctl.credit_wake.wait().await;
        }
        self.ctl.sent.set(self.ctl.sent.get() + 1);
        self.shard.rpc_respond(self.from, self.sid, self.rid, Status::OK, 0, item, self.deadline_ms);
        Ok(())
    }

    fn answer(&self, status: Status, payload: Bytes) {
        if self.ctl.answered.replace(true) || self.ctl.cancelled.get() {
            return;
        }
        self.shard.rpc_respond(self.from, self.sid, self.rid, status, msg::FLAG_FIN, payload, self.deadline_ms);
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        // A handler that returns without answering still gets an answer.
        if !self.ctl.answered.get() && !self.ctl.cancelled.get() {
            self.answer(Status::INTERNAL, Bytes::from_static(b"the handler ended without answering"));
        }
    }
}

/// What the consumer of a stream and the owner shard share.
#[derive(Default)]
pub(crate) struct StreamShared {
    consumed: AtomicU64,
    cancelled: AtomicBool,
    finished: AtomicBool,
}

/// Where a call's answer goes.
pub(crate) enum Reply {
    Unary(oneshot::Sender<Result<Bytes, RpcError>>),
    Stream(mpsc::UnboundedSender<Result<Bytes, RpcError>>, Arc<StreamShared>),
}

impl Completion for Reply {
    fn item(&mut self, payload: Bytes) -> bool {
        match self {
            Reply::Unary(_) => false,
            Reply::Stream(tx, _) => tx.unbounded_send(Ok(payload)).is_ok(),
        }
    }

    fn finish(self, result: Result<Bytes, RpcError>) {
        match self {
            Reply::Unary(tx) => {
                let _ = tx.send(result);
            }
            Reply::Stream(tx, shared) => {
                shared.finished.store(true, Ordering::Release);
                if let Err(e) = result {
                    let _ = tx.unbounded_send(Err(e));
                }
                // Dropping the sender ends the stream.
            }
        }
    }
}

/// A call travelling to the shard that owns its server node.
pub(crate) struct CallCmd {
    pub to: NodeId,
    pub service: String,
    pub method: u32,
    pub payload: Bytes,
    pub deadline_ms: u64,
    pub window: Option<u32>,
    pub reply: Reply,
}

/// The answer to a unary call: await it (on a shard) or [`PendingCall::wait`]
/// for it (on any other thread).
#[must_use = "a call's answer should be looked at"]
pub struct PendingCall {
    rx: oneshot::Receiver<Result<Bytes, RpcError>>,
    /// The answer may come from another shard's thread (see `poll_routed`).
    routed: Option<(std::task::Waker, std::task::Waker)>,
}

impl PendingCall {
    fn new() -> (PendingCall, Reply) {
        let (tx, rx) = oneshot::channel();
        (PendingCall { rx, routed: None }, Reply::Unary(tx))
    }

    /// Blocks the calling thread until the answer arrives. Never call this
    /// on a shard thread (an engine or a handler): await the call instead.
    pub fn wait(self) -> Result<Bytes, RpcError> {
        futures_lite::future::block_on(self)
    }

    /// The answer if it has arrived (then `Some` once; later `None`).
    pub fn try_result(&mut self) -> Option<Result<Bytes, RpcError>> {
        match self.rx.try_recv() {
            Ok(Some(r)) => Some(r),
            Ok(None) => None,
            Err(_) => Some(Err(RpcError::ShuttingDown)),
        }
    }
}

impl Future for PendingCall {
    type Output = Result<Bytes, RpcError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // A dropped sender means the node stopped before answering.
        let this = &mut *self;
        super::wake::poll_routed(&mut this.routed, cx, |cx| Pin::new(&mut this.rx).poll(cx))
            .map(|r| r.unwrap_or(Err(RpcError::ShuttingDown)))
    }
}

/// The answers of a streamed call, in order; ends after the last item or
/// with one error. Taking items grants the server credit for more;
/// dropping the stream cancels the call.
pub struct ResponseStream {
    rx: mpsc::UnboundedReceiver<Result<Bytes, RpcError>>,
    shared: Arc<StreamShared>,
    poke: Poke,
    window: u32,
    unreported: u32,
    ended: bool,
    /// Items may come from another shard's thread (see `poll_routed`).
    routed: Option<(std::task::Waker, std::task::Waker)>,
}

/// How a stream's consumer reaches the shard that owns the call.
#[derive(Clone)]
pub(crate) struct Poke {
    pub inbox: Inbox,
}

impl Poke {
    fn poke(&self) {
        // Best effort: the owner also checks its streams on a timer.
        let _ = self.inbox.send(Command::RpcPoke);
    }
}

impl ResponseStream {
    fn new(poke: Poke, window: u32) -> (ResponseStream, Reply) {
        let (tx, rx) = mpsc::unbounded();
        let shared = Arc::new(StreamShared::default());
        (
            ResponseStream {
                rx,
                shared: shared.clone(),
                poke,
                window: window.max(1),
                unreported: 0,
                ended: false,
                routed: None,
            },
            Reply::Stream(tx, shared),
        )
    }

    fn took(&mut self) {
        self.shared.consumed.fetch_add(1, Ordering::AcqRel);
        self.unreported += 1;
        if self.unreported >= (self.window / 2).max(1) {
            self.unreported = 0;
            self.poke.poke();
        }
    }

    /// The next item: `Some(Ok)` an item, `Some(Err)` the error that ended
    /// the call, `None` the end.
    pub async fn next(&mut self) -> Option<Result<Bytes, RpcError>> {
        std::future::poll_fn(|cx| self.poll_routed(cx)).await
    }

    /// As [`ResponseStream::next`], blocking the calling thread (not for
    /// shard threads).
    pub fn next_blocking(&mut self) -> Option<Result<Bytes, RpcError>> {
        futures_lite::future::block_on(self.next())
    }

    /// The next item if one is there now (`None`: nothing yet, or the end —
    /// see [`ResponseStream::is_done`]).
    pub fn try_next(&mut self) -> Option<Result<Bytes, RpcError>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.poll_item(&mut cx) {
            Poll::Ready(x) => x,
            Poll::Pending => None,
        }
    }

    /// Whether the stream has ended (last item, or an error, taken).
    pub fn is_done(&self) -> bool {
        self.ended
    }

    /// Stops the call: the server is told to stop producing.
    pub fn cancel(self) {
        drop(self);
    }

    fn poll_routed(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, RpcError>>> {
        let mut routed = self.routed.take();
        let r = super::wake::poll_routed(&mut routed, cx, |cx| self.poll_item(cx));
        self.routed = routed;
        r
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, RpcError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match futures_lite::Stream::poll_next(Pin::new(&mut self.rx), cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.took();
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.ended = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures_lite::Stream for ResponseStream {
    type Item = Result<Bytes, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_routed(cx)
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        if !self.ended && !self.shared.finished.load(Ordering::Acquire) {
            self.shared.cancelled.store(true, Ordering::Release);
            self.poke.poke();
        }
    }
}

/// A pending call that failed before it could start.
pub(crate) fn failed_call(e: RpcError) -> PendingCall {
    let (p, r) = PendingCall::new();
    r.finish(Err(e));
    p
}

/// Starts a call from outside the owner shard's thread (the handle).
pub(crate) fn call_via_inbox(inbox: &Inbox, cmd_of: impl FnOnce(Reply) -> CallCmd, window: Option<u32>) -> Either {
    match window {
        None => {
            let (p, reply) = PendingCall::new();
            if let Err(Command::Call(c)) = inbox.send(Command::Call(Box::new(cmd_of(reply)))) {
                c.reply.finish(Err(RpcError::ClientBusy));
            }
            Either::Unary(p)
        }
        Some(w) => {
            let (s, reply) = ResponseStream::new(Poke { inbox: inbox.clone() }, w);
            if let Err(Command::Call(c)) = inbox.send(Command::Call(Box::new(cmd_of(reply)))) {
                c.reply.finish(Err(RpcError::ClientBusy));
            }
            Either::Stream(s)
        }
    }
}

/// A unary or streamed call handle.
pub(crate) enum Either {
    Unary(PendingCall),
    Stream(ResponseStream),
}

impl Either {
    pub(crate) fn unary(self) -> PendingCall {
        match self {
            Either::Unary(p) => p,
            Either::Stream(_) => failed_call(RpcError::Protocol("internal: stream for a unary call")),
        }
    }

    pub(crate) fn stream(self) -> ResponseStream {
        match self {
            Either::Stream(s) => s,
            Either::Unary(_) => unreachable!("call_via_inbox returns a stream when given a window"),
        }
    }
}

type StreamEntry = (Arc<StreamShared>, u64);

/// A shard's RPC state.
pub(crate) struct RpcState {
    pub client: RefCell<ClientTable<Reply>>,
    pub server: RefCell<ServerTable>,
    pub services: HashMap<String, Rc<dyn Service>>,
    calls: RefCell<HashMap<(NodeId, u32, u32), Rc<CallCtl>>>,
    /// Streams this shard's client table runs: (shared counters, items
    /// already reported as consumed).
    streams: RefCell<HashMap<(NodeId, u32), StreamEntry>>,
    backlog: RefCell<VecDeque<Outbound>>,
    pub wake: Notify,
    next_server_idle: Cell<u64>,
}

impl RpcState {
    pub fn new(
        client: ClientTable<Reply>,
        server: ServerTable,
        services: HashMap<String, Rc<dyn Service>>,
    ) -> RpcState {
        RpcState {
            client: RefCell::new(client),
            server: RefCell::new(server),
            services,
            calls: RefCell::new(HashMap::new()),
            streams: RefCell::new(HashMap::new()),
            backlog: RefCell::new(VecDeque::new()),
            wake: Notify::default(),
            next_server_idle: Cell::new(0),
        }
    }
}

impl Shard {
    /// Routes a call to the shard owning its server node, or starts it here.
    pub(crate) fn rpc_call(self: &Rc<Self>, cmd: CallCmd) {
        if self.stopping.get() {
            cmd.reply.finish(Err(RpcError::ShuttingDown));
            return;
        }
        if cmd.to == self.me {
            cmd.reply.finish(Err(RpcError::ToSelf));
            return;
        }
        let owner = shard_of(&cmd.to, self.count);
        if owner != self.index {
            self.mesh_push(owner, Cross::Call(Box::new(cmd)));
            return;
        }
        let now = self.now();
        let CallCmd { to, service, method, payload, deadline_ms, window, reply } = cmd;
        let shared = match &reply {
            Reply::Stream(_, s) => Some(s.clone()),
            Reply::Unary(_) => None,
        };
        let rid = self.rpc.client.borrow_mut().call(now, to, &service, method, payload, deadline_ms, window, reply);
        if let (Some(rid), Some(shared)) = (rid, shared) {
            self.rpc.streams.borrow_mut().insert((to, rid), (shared, 0));
        }
        self.rpc_flush();
        self.rpc.wake.notify();
    }

    /// A call made by an engine on this shard to node `to`.
    pub(crate) fn rpc_call_local(
        self: &Rc<Self>,
        to: NodeId,
        cmd_of: impl FnOnce(Reply) -> CallCmd,
        window: Option<u32>,
    ) -> Either {
        match window {
            None => {
                let (p, reply) = PendingCall::new();
                self.rpc_call(cmd_of(reply));
                Either::Unary(p)
            }
            Some(w) => {
                let inbox = self.shared.inboxes()[shard_of(&to, self.count)].clone();
                let (s, reply) = ResponseStream::new(Poke { inbox }, w);
                self.rpc_call(cmd_of(reply));
                Either::Stream(s)
            }
        }
    }

    /// An RPC message arrived from engine `sender` of node `from`.
    pub(crate) fn rpc_on_message(self: &Rc<Self>, from: NodeId, sender: EngineId, m: Message) {
        let now = self.now();
        let decoded = match RpcMsg::decode(&m) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(from = %from.short(), error = %e, "malformed RPC message");
                self.metrics.add(Metric::rpc_malformed, 1);
                return;
            }
        };
        match decoded {
            RpcMsg::Session { session, service, versions } => {
                let has = self.rpc.services.contains_key(&service);
                let mut server = self.rpc.server.borrow_mut();
                let _ = server.on_session(now, from, sender, session, &service, &versions, has);
            }
            RpcMsg::Request(r) => {
                let d = self.rpc.server.borrow_mut().on_request(now, from, &r);
                if let RequestDecision::Start { service, version, deadline_ms } = d {
                    self.rpc_start(from, r, &service, version, deadline_ms);
                }
            }
            RpcMsg::Control { session, request_id, kind, n } => match kind {
                ControlKind::Cancel => {
                    if let Some(ctl) = self.rpc.calls.borrow().get(&(from, session, request_id)) {
                        ctl.cancelled.set(true);
                        ctl.cancel_wake.notify();
                        ctl.credit_wake.notify();
                    }
                }
                ControlKind::Credit => {
                    if let Some(ctl) = self.rpc.calls.borrow().get(&(from, session, request_id)) {
                        ctl.credit.set(ctl.credit.get() + u64::from(n));
                        ctl.credit_wake.notify();
                    }
                }
                ControlKind::CloseSession => {
                    let rids = self.rpc.server.borrow_mut().on_close(from, session);
                    for rid in rids {
                        if let Some(ctl) = self.rpc.calls.borrow().get(&(from, session, rid)) {
                            ctl.cancelled.set(true);
                            ctl.cancel_wake.notify();
                            ctl.credit_wake.notify();
                        }
                    }
                }
                ControlKind::SessionClosed => {
                    let m = RpcMsg::Control { session, request_id, kind, n };
                    self.rpc.client.borrow_mut().on_message(now, from, m);
                }
            },
            m @ (RpcMsg::SessionReply { .. } | RpcMsg::Response(_)) => {
                self.rpc.client.borrow_mut().on_message(now, from, m);
            }
        }
        self.rpc_flush();
    }

    /// Runs a handler for a started call, bounded by its deadline and by
    /// the client's cancel.
    fn rpc_start(
        self: &Rc<Self>,
        from: NodeId,
        r: crate::rpc::RpcRequest,
        service: &str,
        version: u32,
        deadline_ms: u64,
    ) {
        let key = (from, r.session, r.request_id);
        let Some(svc) = self.rpc.services.get(service).cloned() else {
            self.rpc_respond(
                from,
                r.session,
                r.request_id,
                Status::NOT_IMPLEMENTED,
                msg::FLAG_FIN,
                Bytes::new(),
                deadline_ms,
            );
            self.rpc.server.borrow_mut().finish(from, r.session, r.request_id);
            return;
        };
        let streaming = r.flags & msg::FLAG_STREAM != 0;
        let ctl = Rc::new(CallCtl::default());
        ctl.credit.set(if streaming { u64::from(r.credit) } else { 0 });
        self.rpc.calls.borrow_mut().insert(key, ctl.clone());
        let req = Request {
            from,
            method: r.method,
            payload: r.payload,
            streaming,
            version,
            deadline_ms,
            epoch_ms: self.shared.epoch_ms,
        };
        let out = Responder {
            shard: self.clone(),
            from,
            sid: r.session,
            rid: r.request_id,
            streaming,
            deadline_ms,
            ctl: ctl.clone(),
        };
        let shard = self.clone();
        // The handler is application code: it may await other threads.
        super::uring::spawn(super::wake::routed(async move {
            let start = shard.now();
            if start >= deadline_ms {
                // Too late to start: answer without running the handler.
                shard.rpc_deadline(&ctl, key);
                drop(out);
            } else {
                let handler = svc.handle(req, out);
                // The awaited race is dropped (with the handler and its
                // Responder) before its result is looked at, so the deadline
                // branch answers from inside.
                let deadline = async {
                    shard.sleep(Duration::from_millis(deadline_ms - start)).await;
                    shard.rpc_deadline(&ctl, key);
                };
                let cancel = ctl.cancel_wake.wait();
                futures_lite::future::or(handler, futures_lite::future::or(deadline, cancel)).await;
                if ctl.cancelled.get() && !ctl.timed_out.get() {
                    // Stopped by the client (its cancel, or its deadline).
                    ctl.answered.set(true);
                    shard.metrics.add(Metric::rpc_server_cancelled, 1);
                }
            }
            shard.rpc.calls.borrow_mut().remove(&key);
            shard.rpc.server.borrow_mut().finish(key.0, key.1, key.2);
            shard.rpc_flush();
        }));
    }

    fn rpc_deadline(self: &Rc<Self>, ctl: &CallCtl, key: (NodeId, u32, u32)) {
        if ctl.cancelled.get() {
            return; // the client's cancel stops it
        }
        ctl.timed_out.set(true);
        self.metrics.add(Metric::rpc_server_deadline, 1);
        if !ctl.answered.replace(true) {
            let expiry = self.now() + 1000;
            self.rpc_respond(key.0, key.1, key.2, Status::DEADLINE_EXCEEDED, msg::FLAG_FIN, Bytes::new(), expiry);
        }
    }

    /// Sends one response of call (`sid`, `rid`) to `to`.
    #[allow(clippy::too_many_arguments)]
    fn rpc_respond(
        self: &Rc<Self>,
        to: NodeId,
        sid: u32,
        rid: u32,
        status: Status,
        flags: u64,
        payload: Bytes,
        expiry_ms: u64,
    ) {
        let r = RpcResponse { session: sid, request_id: rid, status: status.0, flags, payload };
        let out = match self.rpc.server.borrow().response(to, r, expiry_ms) {
            Ok(o) => o,
            Err(status) => {
                let r = RpcResponse {
                    session: sid,
                    request_id: rid,
                    status: status.0,
                    flags: msg::FLAG_FIN,
                    payload: Bytes::new(),
                };
                match self.rpc.server.borrow().response(to, r, expiry_ms) {
                    Ok(o) => o,
                    Err(_) => return,
                }
            }
        };
        self.rpc_send(out);
    }

    /// Sends everything the tables queued.
    pub(crate) fn rpc_flush(self: &Rc<Self>) {
        loop {
            let next = {
                let mut c = self.rpc.client.borrow_mut();
                c.poll_outbound()
            };
            let next = match next {
                Some(o) => Some(o),
                None => self.rpc.server.borrow_mut().drain_outbound().next(),
            };
            let Some(out) = next else { break };
            self.rpc_send(out);
        }
        self.rpc_metrics();
    }

    /// Hands one RPC message to its proxy; a full queue keeps it in the
    /// backlog (retried by the RPC timer) instead of dropping it.
    fn rpc_send(self: &Rc<Self>, out: Outbound) {
        if !self.rpc.backlog.borrow().is_empty() {
            self.rpc.backlog.borrow_mut().push_back(out);
            return;
        }
        if let Err(out) = self.rpc_try_send(out) {
            self.rpc.backlog.borrow_mut().push_back(*out);
            self.rpc.wake.notify();
        }
    }

    fn rpc_try_send(self: &Rc<Self>, out: Outbound) -> Result<(), Box<Outbound>> {
        let out_meta = Outbound { msg: out.msg.clone(), ..out };
        let id = self.new_msg_id();
        let em = EngineMsg { sender: RPC_ENGINE, target: out.target, mailbox: None, msg: out.msg };
        let og = Outgoing::new(id, out.tag.to_origin(), em, TransportPrefs::default(), out.expiry_ms, false);
        match self.local_send(out.to, og, self.now()) {
            Ok(()) => Ok(()),
            Err(proxy::SendError::Full(o)) => Err(Box::new(Outbound { msg: o.msg.msg, ..out_meta })),
            Err(proxy::SendError::Refused(r, _)) => {
                self.rpc_undelivered(out.to, out.tag, Outcome::NotQueued(proxy::NotQueued::Refused(r)));
                Ok(())
            }
            Err(proxy::SendError::ShuttingDown(_)) => {
                self.rpc_undelivered(out.to, out.tag, Outcome::NotQueued(proxy::NotQueued::ShuttingDown));
                Ok(())
            }
        }
    }

    /// An RPC message was not delivered (reported by its proxy).
    pub(crate) fn rpc_undelivered(self: &Rc<Self>, to: NodeId, tag: Tag, outcome: Outcome) {
        match tag {
            Tag::Response(_) => self.metrics.add(Metric::rpc_responses_undelivered, 1),
            Tag::Peer(id) => self.peer_undelivered(to, id, outcome),
            _ => self.rpc.client.borrow_mut().on_undelivered(self.now(), to, tag, outcome),
        }
    }

    /// The process behind `peer` restarted: its sessions with us (both
    /// ways) are gone.
    pub(crate) fn rpc_peer_restarted(self: &Rc<Self>, peer: NodeId) {
        let now = self.now();
        self.rpc.client.borrow_mut().on_peer_restarted(now, peer);
        let calls = self.rpc.server.borrow_mut().drop_peer(peer);
        for (sid, rid) in calls {
            if let Some(ctl) = self.rpc.calls.borrow().get(&(peer, sid, rid)) {
                ctl.cancelled.set(true);
                ctl.cancel_wake.notify();
                ctl.credit_wake.notify();
            }
        }
        self.rpc_flush();
    }

    /// Stream consumers took items or went away: credit or cancel.
    pub(crate) fn rpc_poll_streams(self: &Rc<Self>) {
        let now = self.now();
        let mut grants = Vec::new();
        let mut cancels = Vec::new();
        self.rpc.streams.borrow_mut().retain(|&(to, rid), (shared, reported)| {
            if shared.finished.load(Ordering::Acquire) {
                return false;
            }
            if shared.cancelled.load(Ordering::Acquire) {
                cancels.push((to, rid));
                return false;
            }
            let c = shared.consumed.load(Ordering::Acquire);
            if c > *reported {
                grants.push((to, rid, (c - *reported).min(u64::from(u32::MAX)) as u32));
                *reported = c;
            }
            true
        });
        {
            let mut client = self.rpc.client.borrow_mut();
            for (to, rid, n) in grants {
                client.consumed(now, to, rid, n);
            }
            for (to, rid) in cancels {
                client.cancel(now, to, rid);
            }
        }
        self.rpc_flush();
    }

    fn rpc_metrics(&self) {
        let c = self.rpc.client.borrow().stats();
        let s = self.rpc.server.borrow().stats();
        let m = &self.metrics;
        m.set(Metric::rpc_calls_out, c.calls);
        m.set(Metric::rpc_calls_ok, c.ok);
        m.set(Metric::rpc_calls_failed, c.failed);
        m.set(Metric::rpc_client_deadline, c.deadline);
        m.set(Metric::rpc_calls_in_flight, c.in_flight as u64);
        m.set(Metric::rpc_sessions_rejected, c.rejected);
        m.set(Metric::rpc_server_sessions, s.sessions as u64);
        m.set(Metric::rpc_server_calls, s.calls_started);
        m.set(Metric::rpc_server_refused, s.calls_refused);
        m.set(Metric::rpc_server_running, s.running as u64);
    }

    /// Deadlines, idle sessions, the send backlog and stream credit.
    pub(crate) async fn rpc_timer_task(self: Rc<Self>) {
        loop {
            let now = self.now();
            self.rpc.client.borrow_mut().on_timeout(now);
            if now >= self.rpc.next_server_idle.get() {
                self.rpc.next_server_idle.set(now + 1000);
                self.rpc.server.borrow_mut().close_idle(now);
            }
            // Retry the backlog in order.
            loop {
                let Some(out) = self.rpc.backlog.borrow_mut().pop_front() else { break };
                if out.expiry_ms <= now {
                    self.rpc_undelivered(out.to, out.tag, Outcome::Expired);
                    continue;
                }
                if let Err(out) = self.rpc_try_send(out) {
                    self.rpc.backlog.borrow_mut().push_front(*out);
                    break;
                }
            }
            if !self.rpc.streams.borrow().is_empty() {
                self.rpc_poll_streams();
            }
            self.rpc_flush();
            self.dispatch();
            let next = self.rpc.client.borrow().poll_timeout();
            let mut wait = next.map_or(1000, |t| t.saturating_sub(self.now())).clamp(1, 1000);
            if !self.rpc.streams.borrow().is_empty() || !self.rpc.backlog.borrow().is_empty() {
                wait = wait.min(10);
            }
            futures_lite::future::or(self.sleep(Duration::from_millis(wait)), self.rpc.wake.wait()).await;
        }
    }
}
