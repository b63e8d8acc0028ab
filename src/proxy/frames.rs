//! Link frames: what travels in the plaintext stream of an established link
//! (docs/protocol.md section 10). Each frame is one type byte (link control
//! range `60`–`7f`) and a body:
//!
//! | byte | frame | body |
//! | --- | --- | --- |
//! | `60` | HELLO | incarnation u64 ‖ rx_incarnation u64 ‖ VLQ rx_next ‖ VLQ refusal_floor |
//! | `61` | DATA | VLQ seq ‖ flags u8 ‖ sender name ‖ target name ‖ [VLQ mailbox] ‖ message |
//! | `62` | ACK | VLQ rx_next ‖ VLQ n ‖ n × (VLQ seq ‖ reason u8) |
//! | `63` | ADVERT | multi-cell NodeAdvert |
//! | `64` | GOODBYE | reason u8 |
//! | `65` | PING | u64 nonce |
//! | `66` | PONG | u64 nonce |
//!
//! Names are `u8 length ‖ bytes` (1 to 31 bytes). Pure: decoding returns
//! views into the frame; encoding writes into caller buffers.

use bytes::{Buf, BufMut, Bytes};

use crate::wire::{Message, WireConfig, vlq};

/// HELLO frame type.
pub const HELLO: u8 = 0x60;
/// DATA frame type.
pub const DATA: u8 = 0x61;
/// ACK frame type.
pub const ACK: u8 = 0x62;
/// ADVERT frame type.
pub const ADVERT: u8 = 0x63;
/// GOODBYE frame type.
pub const GOODBYE: u8 = 0x64;
/// PING frame type.
pub const PING: u8 = 0x65;
/// PONG frame type.
pub const PONG: u8 = 0x66;

/// Longest engine name.
pub const MAX_NAME: usize = 31;

/// DATA flag bits.
const FLAG_UNORDERED: u8 = 0x01;
const FLAG_UNRELIABLE: u8 = 0x02;
const FLAG_MAILBOX: u8 = 0x04;
const FLAG_KNOWN: u8 = FLAG_UNORDERED | FLAG_UNRELIABLE | FLAG_MAILBOX;

/// An engine's name: 1 to 31 bytes, stored inline (no allocation, `Copy`).
///
/// Stored as on the wire, `len ‖ name`, zero-padded to 32 bytes: a name is
/// read from a frame with two 16-byte loads and a mask, and compared and
/// moved as two 16-byte words (a byte-wise build of the array made every
/// later wide read of it stall on store forwarding, ~15% of a receiver's
/// time per 64-byte message; docs/performance.md section 4). Aligned to 16
/// so that every copy of it, wherever an enum puts it, stays two aligned words.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C, align(16))]
pub struct EngineId([u8; 32]);

impl EngineId {
    /// An engine name. Fails if empty or longer than 31 bytes.
    pub fn new(name: &str) -> Result<EngineId, BadName> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > MAX_NAME {
            return Err(BadName(b.len()));
        }
        let mut w = [0u8; 32];
        w[0] = b.len() as u8;
        w[1..=b.len()].copy_from_slice(b);
        Ok(EngineId(w))
    }

    /// As [`EngineId::new`], for a `&'static str` known to be valid; an
    /// invalid constant is a programming error and panics at startup.
    pub const fn named(name: &'static str) -> EngineId {
        let b = name.as_bytes();
        assert!(!b.is_empty() && b.len() <= MAX_NAME, "engine names are 1 to 31 bytes");
        let mut w = [0u8; 32];
        w[0] = b.len() as u8;
        let mut i = 0;
        while i < b.len() {
            w[1 + i] = b[i];
            i += 1;
        }
        EngineId(w)
    }

    /// Whether the name is reserved for the library (starts with `$`).
    pub fn is_reserved(&self) -> bool {
        self.0[1] == b'$'
    }

    /// The name whose wire form (`len ‖ name`, `len` = `src[0]`, already
    /// checked to be 1..=31 with the name present) starts `src`.
    #[inline(always)]
    fn from_wire(src: &[u8]) -> EngineId {
        let k = usize::from(src[0]) + 1;
        if src.len() < 32 {
            // Near the frame's end: a plain copy, the rest already zero.
            let mut w = [0u8; 32];
            w[..k].copy_from_slice(&src[..k]);
            return EngineId(w);
        }
        // Fixed-size copies: two 16-byte loads; what follows the name is masked off.
        let (mut lo, mut hi) = ([0u8; 16], [0u8; 16]);
        lo.copy_from_slice(&src[..16]);
        hi.copy_from_slice(&src[16..32]);
        let keep = |bytes: usize| if bytes >= 16 { u128::MAX } else { (1u128 << (8 * bytes)) - 1 };
        let lo = u128::from_le_bytes(lo) & keep(k);
        let hi = u128::from_le_bytes(hi) & keep(k.saturating_sub(16));
        let mut w = [0u8; 32];
        w[..16].copy_from_slice(&lo.to_le_bytes());
        w[16..].copy_from_slice(&hi.to_le_bytes());
        EngineId(w)
    }

    /// The wire form, `len ‖ name`.
    fn wire(&self) -> &[u8] {
        &self.0[..=usize::from(self.0[0])]
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0[1..=usize::from(self.0[0])]
    }

    /// The name (lossy for non-UTF-8 names received from peers).
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl std::fmt::Debug for EngineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EngineId({})", self.as_str())
    }
}

impl std::fmt::Display for EngineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// An engine name that is empty or over 31 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("engine names are 1 to 31 bytes, got {0}")]
pub struct BadName(pub usize);

/// A mailbox inside an engine (node proxy: `mailbox: Option<MailboxId>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId(pub u64);

/// Transport preferences a send carries. TCP, the one transport so far,
/// is ordered and reliable, so it honours every combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TransportPrefs {
    /// The message may overtake earlier ones.
    pub unordered: bool,
    /// The message may be dropped.
    pub unreliable: bool,
}

/// A message between engines on two nodes (node proxy: `EngineMsg`).
#[derive(Debug, Clone)]
pub struct EngineMsg {
    /// The sending engine.
    pub sender: EngineId,
    /// The receiving engine.
    pub target: EngineId,
    /// An optional mailbox inside the target.
    pub mailbox: Option<MailboxId>,
    /// The message itself.
    pub msg: Message,
}

/// Why a receiver refused a message (travels in ACK frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefuseReason {
    /// No engine of that name runs on the receiving node.
    UnknownEngine,
    /// The target's inbox is full: a temporary condition.
    Busy,
    /// The message does not decode (bad cells or payload shape).
    Malformed,
    /// The receiving node is shutting down.
    ShuttingDown,
}

impl RefuseReason {
    fn code(self) -> u8 {
        match self {
            RefuseReason::UnknownEngine => 1,
            RefuseReason::Busy => 2,
            RefuseReason::Malformed => 3,
            RefuseReason::ShuttingDown => 4,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => RefuseReason::UnknownEngine,
            2 => RefuseReason::Busy,
            3 => RefuseReason::Malformed,
            4 => RefuseReason::ShuttingDown,
            _ => return None,
        })
    }

    /// Lower-case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            RefuseReason::UnknownEngine => "unknown_engine",
            RefuseReason::Busy => "busy",
            RefuseReason::Malformed => "malformed",
            RefuseReason::ShuttingDown => "shutting_down",
        }
    }
}

/// Why a link is being closed (GOODBYE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GoodbyeReason {
    /// The node is shutting down.
    Shutdown,
    /// An ephemeral link had nothing to do.
    Idle,
    /// Another link to the same node won (simultaneous dials).
    Duplicate,
    /// The sender saw a protocol error.
    ProtocolError,
}

impl GoodbyeReason {
    fn code(self) -> u8 {
        match self {
            GoodbyeReason::Shutdown => 1,
            GoodbyeReason::Idle => 2,
            GoodbyeReason::Duplicate => 3,
            GoodbyeReason::ProtocolError => 4,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => GoodbyeReason::Shutdown,
            2 => GoodbyeReason::Idle,
            3 => GoodbyeReason::Duplicate,
            4 => GoodbyeReason::ProtocolError,
            _ => return None,
        })
    }
}

/// A link frame the peer sent that breaks the link protocol. Ends the link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// An empty frame or an unknown frame type.
    #[error("unknown link frame type {0:#04x}")]
    UnknownType(u8),
    /// The frame is shorter than its fields.
    #[error("{0} frame is truncated")]
    Truncated(&'static str),
    /// Bytes after the last field.
    #[error("{0} frame has trailing bytes")]
    Trailing(&'static str),
    /// A VLQ field is not canonical or overflows.
    #[error("{0} frame has a bad VLQ field")]
    BadVlq(&'static str),
    /// A field value outside its range (flag bits, names, reason codes).
    #[error("{0} frame has an invalid field: {1}")]
    Invalid(&'static str, &'static str),
    /// A frame that is not allowed now (e.g. DATA before HELLO).
    #[error("{0} frame out of order: {1}")]
    OutOfOrder(&'static str, &'static str),
}

/// A decoded link frame (views into the received frame).
#[derive(Debug, Clone)]
pub enum Frame {
    /// First frame in each direction of a new link.
    Hello {
        /// The sender's process incarnation.
        incarnation: u64,
        /// The incarnation of our process whose messages the sender has been
        /// receiving (0: none).
        rx_incarnation: u64,
        /// The next seq the sender expects from that incarnation.
        rx_next: u64,
        /// The lowest seq whose refusal the sender still remembers (it
        /// forgets the oldest beyond 65,536).
        refusal_floor: u64,
    },
    /// An engine message.
    Data {
        /// Delivery sequence number (per sender incarnation, starts at 1).
        seq: u64,
        /// Preferences the sender attached.
        prefs: TransportPrefs,
        /// The message, not yet validated (decoding it is the receiver's job).
        sender: EngineId,
        /// Target engine.
        target: EngineId,
        /// Mailbox.
        mailbox: Option<MailboxId>,
        /// `type byte ‖ multi-cell`, a view into the frame.
        message: Bytes,
    },
    /// Cumulative acknowledgement.
    Ack {
        /// Every seq below this was handled (delivered or refused).
        rx_next: u64,
        /// Which of them were refused, and why.
        refused: Vec<(u64, RefuseReason)>,
    },
    /// The sender's NodeAdvert, multi-cell encoded.
    Advert(Bytes),
    /// The sender is closing the link.
    Goodbye(GoodbyeReason),
    /// Liveness probe.
    Ping(u64),
    /// Answer to a probe.
    Pong(u64),
}

struct Cursor<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Result<u8, FrameError> {
        let (&x, rest) = self.b.split_first().ok_or(FrameError::Truncated(self.what))?;
        self.b = rest;
        Ok(x)
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        if self.b.len() < 8 {
            return Err(FrameError::Truncated(self.what));
        }
        let (x, rest) = self.b.split_at(8);
        self.b = rest;
        Ok(u64::from_be_bytes(x.try_into().unwrap_or([0; 8])))
    }
    fn vlq(&mut self) -> Result<u64, FrameError> {
        match vlq::decode(self.b) {
            Ok((v, n)) => {
                self.b = &self.b[n..];
                Ok(v)
            }
            Err(vlq::VlqError::Truncated) => Err(FrameError::Truncated(self.what)),
            Err(_) => Err(FrameError::BadVlq(self.what)),
        }
    }
    #[inline(always)]
    fn name(&mut self) -> Result<EngineId, FrameError> {
        let n = usize::from(*self.b.first().ok_or(FrameError::Truncated(self.what))?);
        if n == 0 || n > MAX_NAME {
            return Err(FrameError::Invalid(self.what, "engine name length"));
        }
        if self.b.len() < 1 + n {
            return Err(FrameError::Truncated(self.what));
        }
        let id = EngineId::from_wire(self.b);
        self.b = &self.b[1 + n..];
        Ok(id)
    }
    fn end(&self) -> Result<(), FrameError> {
        if self.b.is_empty() { Ok(()) } else { Err(FrameError::Trailing(self.what)) }
    }
}

impl Frame {
    /// Decodes one link frame. The DATA message is returned undecoded.
    /// Takes the frame by value: a DATA frame's message and an ADVERT's body
    /// become the same buffer advanced past the header (no reference count
    /// traffic per message).
    pub fn decode(mut frame: Bytes) -> Result<Frame, FrameError> {
        let (&ty, body) = frame.split_first().ok_or(FrameError::UnknownType(0))?;
        match ty {
            HELLO => {
                let mut c = Cursor { b: body, what: "HELLO" };
                let f = Frame::Hello {
                    incarnation: c.u64()?,
                    rx_incarnation: c.u64()?,
                    rx_next: c.vlq()?,
                    refusal_floor: c.vlq()?,
                };
                c.end()?;
                Ok(f)
            }
            DATA => {
                let mut c = Cursor { b: body, what: "DATA" };
                let seq = c.vlq()?;
                let flags = c.u8()?;
                if flags & !FLAG_KNOWN != 0 {
                    return Err(FrameError::Invalid("DATA", "unknown flag bits"));
                }
                let sender = c.name()?;
                let target = c.name()?;
                let mailbox = if flags & FLAG_MAILBOX != 0 { Some(MailboxId(c.vlq()?)) } else { None };
                if seq == 0 {
                    return Err(FrameError::Invalid("DATA", "seq 0"));
                }
                let at = frame.len() - c.b.len();
                frame.advance(at);
                Ok(Frame::Data {
                    seq,
                    prefs: TransportPrefs {
                        unordered: flags & FLAG_UNORDERED != 0,
                        unreliable: flags & FLAG_UNRELIABLE != 0,
                    },
                    sender,
                    target,
                    mailbox,
                    message: frame,
                })
            }
            ACK => {
                let mut c = Cursor { b: body, what: "ACK" };
                let rx_next = c.vlq()?;
                let n = c.vlq()?;
                // Each entry is at least 2 bytes: bound the count by the bytes present.
                if n > (c.b.len() / 2) as u64 {
                    return Err(FrameError::Truncated("ACK"));
                }
                let mut refused = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let seq = c.vlq()?;
                    let r = RefuseReason::from_code(c.u8()?).ok_or(FrameError::Invalid("ACK", "refuse reason"))?;
                    if seq >= rx_next {
                        return Err(FrameError::Invalid("ACK", "refused seq not below rx_next"));
                    }
                    refused.push((seq, r));
                }
                c.end()?;
                Ok(Frame::Ack { rx_next, refused })
            }
            ADVERT => {
                frame.advance(1);
                Ok(Frame::Advert(frame))
            }
            GOODBYE => {
                let mut c = Cursor { b: body, what: "GOODBYE" };
                let r = GoodbyeReason::from_code(c.u8()?).ok_or(FrameError::Invalid("GOODBYE", "reason"))?;
                c.end()?;
                Ok(Frame::Goodbye(r))
            }
            PING | PONG => {
                let mut c = Cursor { b: body, what: if ty == PING { "PING" } else { "PONG" } };
                let n = c.u64()?;
                c.end()?;
                Ok(if ty == PING { Frame::Ping(n) } else { Frame::Pong(n) })
            }
            other => Err(FrameError::UnknownType(other)),
        }
    }
}

/// Where encoded frames go: the shard writes them into a link's records,
/// tests collect them.
pub trait FrameSink {
    /// Appends one frame made of `parts` concatenated.
    fn frame(&mut self, parts: &[&[u8]]);
}

impl FrameSink for Vec<Bytes> {
    fn frame(&mut self, parts: &[&[u8]]) {
        self.push(Bytes::from(parts.concat()));
    }
}

/// Encodes a HELLO.
pub fn hello(sink: &mut dyn FrameSink, incarnation: u64, rx_incarnation: u64, rx_next: u64, refusal_floor: u64) {
    let mut b = Vec::with_capacity(1 + 16 + 2 * vlq::MAX_LEN);
    b.put_u8(HELLO);
    b.put_u64(incarnation);
    b.put_u64(rx_incarnation);
    vlq::write_len(&mut b, rx_next as usize);
    vlq::write_len(&mut b, refusal_floor as usize);
    sink.frame(&[&b]);
}

/// Encodes a DATA frame header; the message bytes follow as a second part.
pub fn data(sink: &mut dyn FrameSink, seq: u64, prefs: TransportPrefs, msg: &EngineMsg) {
    const CAP: usize = 1 + vlq::MAX_LEN + 1 + 2 * (1 + MAX_NAME) + vlq::MAX_LEN;
    let mut h = [0u8; CAP];
    let mut w = &mut h[..];
    w.put_u8(DATA);
    vlq::write_len(&mut w, seq as usize);
    let mut flags = 0;
    if prefs.unordered {
        flags |= FLAG_UNORDERED;
    }
    if prefs.unreliable {
        flags |= FLAG_UNRELIABLE;
    }
    if msg.mailbox.is_some() {
        flags |= FLAG_MAILBOX;
    }
    w.put_u8(flags);
    let mut used = CAP - w.len();
    for name in [&msg.sender, &msg.target] {
        // All 32 bytes of the padded form (a fixed-size copy, no memcpy
        // call); only `len ‖ name` counts. The array has room: each name
        // before the last leaves at least 32 bytes after it.
        h[used..used + 32].copy_from_slice(&name.0);
        used += name.wire().len();
    }
    if let Some(m) = msg.mailbox {
        // Mailbox IDs are below 2^63 in practice; larger ones are clamped by the VLQ limit.
        used += vlq::write(&mut &mut h[used..], m.0.min(vlq::MAX_VALUE)).unwrap_or(0);
    }
    sink.frame(&[&h[..used], msg.msg.bytes()]);
}

/// Encodes an ACK.
pub fn ack(sink: &mut dyn FrameSink, rx_next: u64, refused: &[(u64, RefuseReason)]) {
    // The head (and the whole of the usual ACK, which refuses nothing) is
    // built on the stack: a heap buffer per ACK showed in the send path.
    let mut head = [0u8; 1 + 2 * vlq::MAX_LEN];
    let free = {
        let mut w = &mut head[..];
        w.put_u8(ACK);
        vlq::write_len(&mut w, rx_next as usize);
        vlq::write_len(&mut w, refused.len());
        w.len()
    };
    let head = &head[..head.len() - free];
    if refused.is_empty() {
        sink.frame(&[head]);
        return;
    }
    let mut list = Vec::with_capacity(refused.len() * (vlq::MAX_LEN + 1));
    for (seq, r) in refused {
        vlq::write_len(&mut list, *seq as usize);
        list.put_u8(r.code());
    }
    sink.frame(&[head, &list]);
}

/// Encodes an ADVERT carrying a multi-cell encoding.
pub fn advert(sink: &mut dyn FrameSink, encoded: &[u8]) {
    sink.frame(&[&[ADVERT], encoded]);
}

/// Encodes a GOODBYE.
pub fn goodbye(sink: &mut dyn FrameSink, reason: GoodbyeReason) {
    sink.frame(&[&[GOODBYE, reason.code()]]);
}

/// Encodes a PING or PONG.
pub fn ping(sink: &mut dyn FrameSink, pong: bool, nonce: u64) {
    let mut b = [0u8; 9];
    b[0] = if pong { PONG } else { PING };
    b[1..].copy_from_slice(&nonce.to_be_bytes());
    sink.frame(&[&b]);
}

/// Decodes a DATA frame's message (validates its cells).
pub fn decode_message(message: Bytes, cfg: &WireConfig) -> Result<Message, crate::wire::DecodeError> {
    Message::decode(message, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{MessageType, Value, encode_message};

    /// A name read from the wire equals the same name built from a string,
    /// whatever follows it in the frame (masked off) and however close the
    /// frame's end is.
    #[test]
    fn names_from_the_wire_ignore_what_follows() {
        for n in 1..=MAX_NAME {
            let name: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            let want = EngineId::new(&name).unwrap();
            for tail in 0..40 {
                let mut wire = vec![n as u8];
                wire.extend_from_slice(name.as_bytes());
                wire.extend(std::iter::repeat_n(0xffu8, tail));
                let got = EngineId::from_wire(&wire);
                assert_eq!(got, want, "n {n} tail {tail}");
                assert_eq!(got.as_bytes(), name.as_bytes());
            }
        }
    }

    #[test]
    fn round_trips() {
        let cfg = WireConfig::default();
        let m = Message::decode(encode_message(MessageType::Belief, &Value::Long(5), &cfg).unwrap(), &cfg).unwrap();
        let msg = EngineMsg {
            sender: EngineId::named("a"),
            target: EngineId::named("target-engine"),
            mailbox: Some(MailboxId(300)),
            msg: m,
        };
        let mut out: Vec<Bytes> = Vec::new();
        hello(&mut out, 7, 8, 9, 3);
        data(&mut out, 42, TransportPrefs { unordered: true, unreliable: false }, &msg);
        ack(&mut out, 50, &[(44, RefuseReason::Busy), (45, RefuseReason::UnknownEngine)]);
        goodbye(&mut out, GoodbyeReason::Idle);
        ping(&mut out, false, 1);
        ping(&mut out, true, 2);
        advert(&mut out, &[0x10]);
        let f: Vec<Frame> = out.iter().map(|b| Frame::decode(b.clone()).unwrap()).collect();
        assert!(matches!(f[0], Frame::Hello { incarnation: 7, rx_incarnation: 8, rx_next: 9, refusal_floor: 3 }));
        match &f[1] {
            Frame::Data { seq: 42, prefs, sender, target, mailbox: Some(MailboxId(300)), message } => {
                assert!(prefs.unordered && !prefs.unreliable);
                assert_eq!((sender.as_str(), target.as_str()), ("a".into(), "target-engine".into()));
                assert_eq!(message, msg.msg.bytes());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&f[2], Frame::Ack { rx_next: 50, refused } if refused.len() == 2));
        assert!(matches!(f[3], Frame::Goodbye(GoodbyeReason::Idle)));
        assert!(matches!(f[4], Frame::Ping(1)));
        assert!(matches!(f[5], Frame::Pong(2)));
        assert!(matches!(&f[6], Frame::Advert(b) if b.as_ref() == [0x10]));
    }

    #[test]
    fn acks_encode_as_the_protocol_spells_them() {
        let mut out: Vec<Bytes> = Vec::new();
        ack(&mut out, 50, &[]);
        ack(&mut out, 200, &[(44, RefuseReason::Busy), (199, RefuseReason::UnknownEngine)]);
        ack(&mut out, u64::MAX >> 1, &[]);
        assert_eq!(out[0].as_ref(), [ACK, 50, 0]);
        assert_eq!(out[1].as_ref(), [ACK, 0x81, 0x48, 2, 44, 2, 0x81, 0x47, 1]);
        let mut max = vec![ACK];
        max.extend(vlq::to_vec(u64::MAX >> 1).unwrap());
        max.push(0);
        assert_eq!(out[2].as_ref(), max);
        assert!(
            matches!(Frame::decode(out[1].clone()), Ok(Frame::Ack { rx_next: 200, refused }) if refused.len() == 2)
        );
    }

    #[test]
    fn bad_frames_are_typed() {
        let d = |b: &[u8]| Frame::decode(Bytes::copy_from_slice(b)).unwrap_err();
        assert_eq!(d(&[]), FrameError::UnknownType(0));
        assert_eq!(d(&[0x99]), FrameError::UnknownType(0x99));
        assert_eq!(d(&[HELLO, 1, 2]), FrameError::Truncated("HELLO"));
        assert_eq!(d(&[GOODBYE, 1, 0]), FrameError::Trailing("GOODBYE"));
        assert_eq!(d(&[GOODBYE, 9]), FrameError::Invalid("GOODBYE", "reason"));
        assert_eq!(d(&[DATA, 0x80, 0]), FrameError::BadVlq("DATA"));
        assert_eq!(d(&[DATA, 1, 0x80]), FrameError::Invalid("DATA", "unknown flag bits"));
        assert_eq!(d(&[DATA, 1, 0, 0]), FrameError::Invalid("DATA", "engine name length"));
        assert_eq!(d(&[DATA, 0, 0, 1, b'a', 1, b'b']), FrameError::Invalid("DATA", "seq 0"));
        // An ACK claiming a million refusals in three bytes: rejected before allocating.
        assert_eq!(d(&[ACK, 5, 0xbd, 0x84, 0x40]), FrameError::Truncated("ACK"));
        assert_eq!(d(&[ACK, 5, 1, 7, 1]), FrameError::Invalid("ACK", "refused seq not below rx_next"));
    }
}
