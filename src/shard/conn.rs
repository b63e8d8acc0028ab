//! Connections: dialing, accepting, the handshake on both sides, handing
//! accepted sockets to their owner shard, and each link's reader and
//! writer tasks — on the shard's own io_uring ring (`super::uring`, the
//! default) or on glommio's TCP streams (the fallback).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use super::uring::{Ring, RingSocket};
use super::{Cross, Notify, Shard, wall_ms};
use crate::handshake::connect::MAX_HANDSHAKE_FRAME;
use crate::handshake::{
    Decision, Established, HandshakeError, Initiator, Outcome as HsOutcome, Refusal, Rejection, Responder,
    early_refusal, early_reply_for,
};
use crate::node::{DialError, Metric, shard_of};
use crate::proxy::{DialFailure, LinkId};
use crate::stage_trace::{Stage, mark};
use crate::wire::{FrameDecoder, write_frame};

/// Runs `fut`, or fails with `on_timeout` after `d` (a sleep of the shard).
async fn with_timeout<T, E>(
    shard: &Shard,
    d: Duration,
    on_timeout: E,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    futures_lite::future::or(fut, async {
        shard.sleep(d).await;
        Err(on_timeout)
    })
    .await
}

/// A connection's socket on either IO path.
pub(super) enum Sock {
    Glommio(TcpStream),
    Ring(RingSocket),
}

impl Sock {
    /// Reads some bytes onto the end of `buf` (handshake use); 0 is EOF.
    async fn read_into(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Sock::Glommio(s) => {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await?;
                buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Sock::Ring(s) => {
                let b = s.read(4096).await?;
                buf.extend_from_slice(&b);
                Ok(b.len())
            }
        }
    }

    async fn write_all(&mut self, data: Bytes) -> std::io::Result<()> {
        match self {
            Sock::Glommio(s) => s.write_all(&data).await,
            Sock::Ring(s) => s.write_all(data).await,
        }
    }

    /// Gives up the descriptor (for another shard to adopt).
    fn into_raw_fd(self) -> Option<RawFd> {
        match self {
            // glommio streams give no descriptor away: a dup travels, the
            // stream is dropped here.
            // SAFETY: duplicating a descriptor we hold open.
            Sock::Glommio(s) => Some(unsafe { libc::dup(s.as_raw_fd()) }).filter(|fd| *fd >= 0),
            Sock::Ring(s) => Some(s.fd.into_raw_fd()),
        }
    }

    /// Wraps a connected TCP socket descriptor for `shard`'s IO path.
    ///
    /// # Safety
    /// `fd` must be an open, connected TCP socket nobody else owns.
    pub(super) unsafe fn from_raw_fd(shard: &Shard, fd: RawFd) -> Sock {
        match &shard.ring {
            // SAFETY: as the caller promised.
            Some(r) => Sock::Ring(RingSocket { ring: r.clone(), fd: unsafe { OwnedFd::from_raw_fd(fd) } }),
            // SAFETY: as the caller promised.
            None => Sock::Glommio(unsafe { TcpStream::from_raw_fd(fd) }),
        }
    }
}

#[derive(Debug)]
enum HsIo {
    Io(std::io::ErrorKind),
    Closed,
    Handshake(HandshakeError),
    Timeout,
}

/// Reads one handshake frame; returns it and whatever followed it.
async fn read_frame(stream: &mut Sock, buf: &mut BytesMut) -> Result<BytesMut, HsIo> {
    let mut dec = FrameDecoder::new(MAX_HANDSHAKE_FRAME);
    loop {
        match dec.decode(buf) {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {}
            Err(_) => return Err(HsIo::Handshake(HandshakeError::Malformed("handshake frame"))),
        }
        let n = stream.read_into(buf).await.map_err(|e| HsIo::Io(e.kind()))?;
        if n == 0 {
            return Err(HsIo::Closed);
        }
    }
}

async fn write_frame_to(stream: &mut Sock, body: &[u8]) -> Result<(), HsIo> {
    let mut out = BytesMut::with_capacity(body.len() + 4);
    write_frame(&mut out, body);
    stream.write_all(out.freeze()).await.map_err(|e| HsIo::Io(e.kind()))
}

/// Dials `addr` and runs the initiator's handshake.
pub(super) async fn dial(
    shard: &Rc<Shard>,
    remote: crate::handshake::NodeId,
    addr: SocketAddr,
) -> Result<(Sock, Box<Established>, Bytes), (DialFailure, DialError)> {
    let cfg = &shard.cfg.handshake;
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let known_remote = shard.shared.adverts.read().ok().and_then(|m| m.get(&remote).map(|a| a.version)).unwrap_or(0);
    let r = with_timeout(shard, timeout, HsIo::Timeout, async {
        let mut stream = match &shard.ring {
            Some(r) => Sock::Ring(RingSocket::connect(r, addr).await.map_err(|e| HsIo::Io(e.kind()))?),
            None => {
                let s = TcpStream::connect(addr).await.map_err(|e| HsIo::Io(std::io::Error::from(e).kind()))?;
                let _ = s.set_nodelay(true);
                Sock::Glommio(s)
            }
        };
        let (init, msg1) =
            Initiator::start(&shard.identity, remote, shard.shared.our_advert.0, known_remote, cfg, wall_ms())
                .map_err(HsIo::Handshake)?;
        write_frame_to(&mut stream, &msg1).await?;
        let mut buf = BytesMut::new();
        let msg2 = read_frame(&mut stream, &mut buf).await?;
        let est = init.read_reply(&msg2, wall_ms()).map_err(HsIo::Handshake)?;
        Ok((stream, Box::new(est), buf.freeze()))
    })
    .await;
    r.map_err(|e| {
        tracing::debug!(remote = %remote.short(), %addr, error = ?e, "dial failed");
        let error = match &e {
            HsIo::Io(kind) => DialError::Io(*kind),
            HsIo::Closed => DialError::Closed,
            HsIo::Timeout | HsIo::Handshake(HandshakeError::Timeout) => DialError::Timeout,
            HsIo::Handshake(HandshakeError::Rejected(Rejection::CannotDecrypt)) => DialError::WrongNodeId,
            HsIo::Handshake(HandshakeError::Rejected(Rejection::ClockSkew)) => DialError::ClockSkew,
            HsIo::Handshake(HandshakeError::Refused { reason, .. }) => match reason {
                Refusal::OverCapacity => DialError::OverCapacity,
                Refusal::Denied => DialError::Denied,
                Refusal::Incompatible => DialError::Incompatible,
            },
            HsIo::Handshake(other) => DialError::Handshake(other.to_string()),
        };
        let failure = match e {
            HsIo::Handshake(HandshakeError::Refused { reason, authenticated: true })
                if matches!(reason, Refusal::Denied | Refusal::Incompatible) =>
            {
                tracing::warn!(remote = %remote.short(), %addr, "connection refused: {}", reason.name());
                DialFailure::Refused(reason)
            }
            _ => DialFailure::Transient,
        };
        (failure, error)
    })
}

/// Accepts connections until the shard stops (glommio path).
pub(super) async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(_) if shard.stopping.get() => return,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shard.stopping.get() {
            return;
        }
        let _ = stream.set_nodelay(true);
        accepted(&shard, Sock::Glommio(stream));
    }
}

/// Accepts connections until the shard stops (ring path: one multishot
/// accept, re-armed if the kernel ends it).
pub(super) async fn ring_accept_loop(shard: Rc<Shard>, ring: Rc<Ring>, listener: OwnedFd) {
    let fd = listener.as_raw_fd();
    let mut op = ring.accept_multi(fd);
    loop {
        let Some(c) = op.next().await else {
            if shard.stopping.get() {
                return;
            }
            op = ring.accept_multi(fd);
            continue;
        };
        if shard.stopping.get() {
            if c.res >= 0 {
                // SAFETY: a descriptor the kernel just gave us; closed here.
                drop(unsafe { OwnedFd::from_raw_fd(c.res) });
            }
            ring.cancel(&op);
            return;
        }
        if c.res < 0 {
            // The accept's last completion: the next turn re-arms it.
            tracing::warn!("accept failed: {}", std::io::Error::from_raw_os_error(-c.res));
            shard.sleep(Duration::from_millis(10)).await;
            continue;
        }
        // SAFETY: a connected socket the kernel just gave us; owned from here.
        let conn = unsafe { OwnedFd::from_raw_fd(c.res) };
        let _ = socket2::SockRef::from(&conn).set_nodelay(true);
        accepted(&shard, Sock::Ring(RingSocket { ring: ring.clone(), fd: conn }));
    }
}

/// A connection came in: refuse it before any cryptography if the node is
/// at a limit, otherwise run the responder's handshake.
fn accepted(shard: &Rc<Shard>, sock: Sock) {
    let shared = &shard.shared;
    let over = shared.pending_handshakes.load(Ordering::Relaxed) >= shard.cfg.max_pending_handshakes
        || shared.links.load(Ordering::Relaxed) >= shard.cfg.max_links;
    if over {
        shard.metrics.add(Metric::handshakes_refused_over_capacity, 1);
        let s = shard.clone();
        super::uring::spawn(async move {
            let mut sock = sock;
            let refusal = early_refusal();
            let _ =
                with_timeout(&s, Duration::from_millis(200), HsIo::Timeout, write_frame_to(&mut sock, &refusal)).await;
        });
        return;
    }
    shared.pending_handshakes.fetch_add(1, Ordering::Relaxed);
    let s = shard.clone();
    super::uring::spawn(async move {
        respond(&s, sock).await;
        s.shared.pending_handshakes.fetch_sub(1, Ordering::Relaxed);
        s.dispatch();
    });
}

/// The responder's side of a handshake on an accepted connection.
async fn respond(shard: &Rc<Shard>, mut stream: Sock) {
    let cfg = &shard.cfg.handshake;
    let responder = Responder::new(&shard.identity, cfg, wall_ms());
    let mut buf = BytesMut::new();
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let msg1 = match with_timeout(shard, timeout, HsIo::Timeout, read_frame(&mut stream, &mut buf)).await {
        Ok(m) => m,
        Err(_) => {
            shard.metrics.add(Metric::handshakes_failed, 1);
            return;
        }
    };
    let pending = {
        let mut replay = shard.shared.replay.lock().unwrap_or_else(|e| e.into_inner());
        responder.read_request(&msg1, wall_ms(), &mut replay)
    };
    let pending = match pending {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "inbound handshake rejected");
            if matches!(e, HandshakeError::ReplayCacheFull) {
                shard.metrics.add(Metric::handshakes_refused_over_capacity, 1);
            } else {
                shard.metrics.add(Metric::handshakes_failed, 1);
            }
            if let Some(reply) = early_reply_for(&e) {
                let _ = write_frame_to(&mut stream, &reply).await;
            }
            return;
        }
    };
    let remote = pending.request().src_node_id;
    let denied = shard.cfg.allow.as_ref().is_some_and(|a| !a.contains(&remote));
    let full = shard.shared.links.load(Ordering::Relaxed) >= shard.cfg.max_links;
    let known_initiator = shard.shared.adverts.read().ok().and_then(|m| m.get(&remote).map(|a| a.version)).unwrap_or(0);
    let decision = if denied {
        Decision::Refuse(Refusal::Denied)
    } else if full || shard.stopping.get() {
        Decision::Refuse(Refusal::OverCapacity)
    } else {
        Decision::Accept { own_advert_ver: shard.shared.our_advert.0, known_initiator_advert_ver: known_initiator }
    };
    let (msg2, outcome) = match pending.finish(decision) {
        Ok(x) => x,
        Err(_) => {
            shard.metrics.add(Metric::handshakes_failed, 1);
            return;
        }
    };
    // Count the decision before the reply leaves: the peer may act on it at once.
    let est = match outcome {
        HsOutcome::Established(est) => Some(est),
        HsOutcome::Refused(r) => {
            let m = match r {
                Refusal::OverCapacity => Metric::handshakes_refused_over_capacity,
                Refusal::Denied => Metric::handshakes_refused_denied,
                Refusal::Incompatible => Metric::handshakes_refused_incompatible,
            };
            shard.metrics.add(m, 1);
            tracing::info!(remote = %remote.short(), "refused inbound connection: {}", r.name());
            None
        }
    };
    if write_frame_to(&mut stream, &msg2).await.is_err() {
        shard.metrics.add(Metric::handshakes_failed, 1);
        return;
    }
    let Some(est) = est else { return };
    let leftover = buf.freeze();
    let owner = shard_of(&est.remote, shard.count);
    if owner == shard.index {
        shard.adopt(stream, *est, leftover);
    } else {
        // The socket moves to the shard that owns this node, with the
        // link state and whatever was read past the handshake.
        if let Some(fd) = stream.into_raw_fd() {
            shard.mesh_push(owner, Cross::Adopt { fd, est, leftover });
        }
    }
}

/// A link's socket, shared by its reader and writer tasks. glommio keeps
/// separate readiness sources (and wakers) for reading and writing, so the
/// two tasks poll the same stream without a second descriptor; the
/// `RefCell` is borrowed only inside each poll, never across an await.
type SharedStream = Rc<RefCell<TcpStream>>;

async fn read_some(s: &SharedStream, buf: &mut [u8]) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| Pin::new(&mut *s.borrow_mut()).poll_read(cx, buf)).await
}

async fn write_all(s: &SharedStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = std::future::poll_fn(|cx| Pin::new(&mut *s.borrow_mut()).poll_write(cx, data)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

/// Shuts both directions down now (the peer sees the close at once; the
/// descriptor is closed when both tasks are done with it).
fn shutdown_now(s: &SharedStream) {
    // SAFETY: shutdown(2) on a descriptor the stream owns and keeps open.
    unsafe { libc::shutdown(s.borrow().as_raw_fd(), libc::SHUT_RDWR) };
}

/// Starts the reader and writer tasks of an adopted link.
pub(super) fn spawn_link(shard: Rc<Shard>, link: LinkId, sock: Sock, leftover: Bytes, wake: Rc<Notify>) {
    match sock {
        Sock::Glommio(stream) => {
            let _ = stream.set_nodelay(true);
            let stream = Rc::new(RefCell::new(stream));
            super::uring::spawn(reader(shard.clone(), link, stream.clone(), leftover));
            super::uring::spawn(writer(shard, link, stream, wake));
        }
        Sock::Ring(s) => {
            let s = Rc::new(s);
            super::uring::spawn(ring_reader(shard.clone(), link, s.clone(), leftover));
            super::uring::spawn(ring_writer(shard, link, s, wake));
        }
    }
}

/// Reads land directly in the frame buffer (frames are views into it).
/// The buffer grows while reads fill it (up to `READ_MAX`) and shrinks back
/// to `READ_MIN` when the link is quiet, so an idle link holds little.
const READ_MIN: usize = 4 << 10;
const READ_MAX: usize = 256 << 10;
/// A writer keeps a buffer at most this large between bursts.
const WRITE_KEEP: usize = 64 << 10;

async fn reader(shard: Rc<Shard>, link: LinkId, stream: SharedStream, leftover: Bytes) {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&leftover);
    let mut want = READ_MIN;
    loop {
        if !buf.is_empty() && shard.on_bytes(link, |l| l.handle_recv(&mut buf)).is_err() {
            shutdown_now(&stream);
            break;
        }
        if !shard.links.borrow().contains_key(&link) {
            break;
        }
        // Unparsed bytes stay at the front; a fresh buffer when none remain
        // lets frames handed out keep the old one alive on their own.
        if buf.is_empty() && buf.capacity() < want / 2 {
            buf = BytesMut::with_capacity(want);
        }
        let start = buf.len();
        buf.resize(start + want, 0);
        match read_some(&stream, &mut buf[start..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.truncate(start + n);
                shard.metrics.add(Metric::bytes_in, n as u64);
                want = if n == want {
                    (want * 2).min(READ_MAX)
                } else if n < want / 8 {
                    READ_MIN
                } else {
                    want
                };
            }
        }
    }
    shard.link_closed(link);
}

async fn writer(shard: Rc<Shard>, link: LinkId, stream: SharedStream, wake: Rc<Notify>) {
    let mut out = BytesMut::new();
    loop {
        let (closing, gone) = shard.fill(link, &mut out);
        if !out.is_empty() {
            if write_all(&stream, &out).await.is_err() {
                shutdown_now(&stream);
                shard.link_closed(link);
                return;
            }
            shard.metrics.add(Metric::bytes_out, out.len() as u64);
            out.clear();
            continue;
        }
        if gone || closing {
            shutdown_now(&stream);
            return;
        }
        // Going idle: a big buffer is released (a busy link keeps it, so
        // bursts do not pay for fresh pages every time).
        if out.capacity() > WRITE_KEEP {
            out = BytesMut::new();
        }
        wake.wait().await;
    }
}

/// Ring path: a multishot receive feeds provided buffers straight to the
/// link's decoder (a buffer becomes the link's receive buffer when nothing
/// is pending, so frames are views into it; otherwise it is appended).
async fn ring_reader(shard: Rc<Shard>, link: LinkId, sock: Rc<RingSocket>, leftover: Bytes) {
    let ring = sock.ring.clone();
    let fd = sock.fd.as_raw_fd();
    // The unparsed start of a record (the link decrypts whole records).
    let mut pending = BytesMut::new();
    // Hands one received buffer to the link behind `pending` and runs what
    // it completes; counts the bytes copied to join a record across buffers.
    let feed = |pending: &mut BytesMut, b: BytesMut| {
        let mut joined = 0;
        let fed = shard.on_bytes(link, |l| {
            joined = l.handle_recv_buf(pending, b)?;
            mark(Stage::Opened);
            Ok(())
        });
        shard.metrics.add(Metric::ring_bytes_joined, joined as u64);
        fed
    };
    let mut op = ring.recv_multi(fd);
    let mut fed = if leftover.is_empty() { Ok(()) } else { feed(&mut pending, BytesMut::from(&leftover[..])) };
    'read: while fed.is_ok() && shard.links.borrow().contains_key(&link) {
        loop {
            // Completions are taken strictly in order; only once the last
            // one of a multishot receive is consumed is a new one armed
            // (re-arming earlier would drop data still queued on the old).
            let Some(c) = op.next().await else {
                op = ring.recv_multi(fd);
                continue;
            };
            if c.res > 0 {
                mark(Stage::Received);
                shard.metrics.add(Metric::bytes_in, c.res as u64);
                if let Some(b) = c.buf {
                    fed = feed(&mut pending, b);
                }
                continue 'read;
            }
            if c.res == -libc::ENOBUFS {
                // Every provided buffer was filled before the driver could
                // refill them (it has by now): this was the receive's last
                // completion, the next turn of the loop re-arms it.
                shard.metrics.add(Metric::ring_enobufs, 1);
                continue;
            }
            break 'read; // EOF or an error
        }
    }
    ring.cancel(&op);
    sock.shutdown();
    shard.link_closed(link);
}

/// Ring path: each batch of records leaves in one send that owns its bytes.
async fn ring_writer(shard: Rc<Shard>, link: LinkId, sock: Rc<RingSocket>, wake: Rc<Notify>) {
    let mut out = BytesMut::new();
    // Each batch's bytes leave with its send, so every fill starts from
    // fresh memory: sized like the last batch, it is allocated once
    // instead of grown (and copied) step by step.
    let mut last = 0usize;
    loop {
        mark(Stage::WriterRuns);
        out.reserve(last.clamp(512, 4 << 20));
        let (closing, gone) = shard.fill(link, &mut out);
        mark(Stage::Sealed);
        if !out.is_empty() {
            let n = out.len() as u64;
            last = out.len();
            if sock.write_all(out.split().freeze()).await.is_err() {
                sock.shutdown();
                shard.link_closed(link);
                return;
            }
            shard.metrics.add(Metric::bytes_out, n);
            continue;
        }
        if gone || closing {
            sock.shutdown();
            return;
        }
        // Idle: hold no memory while waiting (an idle link costs nothing here).
        out = BytesMut::new();
        wake.wait().await;
    }
}
