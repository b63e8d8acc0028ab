//! Messages (CAD015 as the seed design defines it): one type byte, then the
//! payload's multi-cell encoding. The shapes of the seed types' payloads are
//! checked on decode; unknown type bytes are carried as numbers.
//!
//! Type byte ranges (see `docs/protocol.md`):
//! - `0x00..=0x3f` peer messages (CAD015; the seed types use Convex 0.7's codes),
//! - `0x40..=0x5f` RPC, `0x60..=0x7f` link control (defined by later layers),
//! - `0x80..=0xff` application-defined.

use bytes::{BufMut, Bytes};

use super::cell::{self, Cell, Slot, WireConfig, long_at, tag};
use super::error::{DecodeError, DecodeErrorKind as K, PayloadError as P};
use super::hash::ValueId;
use super::multicell::MultiCell;
use super::value::{EncodeError, Encoded, Value, encode};

/// The message type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Cells answering MISSING_DATA: `[id, [cell-or-nil ...]]`.
    Data,
    /// Request for cells by value ID: `[id, hashes-blob]`.
    MissingData,
    /// A read-only request: `[id, query]`.
    Query,
    /// A transaction: `[id, tx]`.
    Transact,
    /// Answer to QUERY/TRANSACT/STATUS: Result record `dd 05 [id value error log info]`.
    Result,
    /// A consensus belief: any value (often partial).
    Belief,
    /// Status request: `[id]`.
    Status,
    /// Any other type byte, carried as is.
    Other(u8),
}

impl MessageType {
    /// From the wire byte.
    pub const fn from_byte(b: u8) -> Self {
        match b {
            3 => MessageType::Data,
            5 => MessageType::MissingData,
            6 => MessageType::Query,
            7 => MessageType::Transact,
            8 => MessageType::Result,
            9 => MessageType::Belief,
            12 => MessageType::Status,
            other => MessageType::Other(other),
        }
    }

    /// The wire byte.
    pub const fn to_byte(self) -> u8 {
        match self {
            MessageType::Data => 3,
            MessageType::MissingData => 5,
            MessageType::Query => 6,
            MessageType::Transact => 7,
            MessageType::Result => 8,
            MessageType::Belief => 9,
            MessageType::Status => 12,
            MessageType::Other(b) => b,
        }
    }

    /// Upper-case name as the seed design spells it.
    pub const fn name(self) -> &'static str {
        match self {
            MessageType::Data => "DATA",
            MessageType::MissingData => "MISSING_DATA",
            MessageType::Query => "QUERY",
            MessageType::Transact => "TRANSACT",
            MessageType::Result => "RESULT",
            MessageType::Belief => "BELIEF",
            MessageType::Status => "STATUS",
            MessageType::Other(_) => "OTHER",
        }
    }
}

/// Most value IDs one MISSING_DATA may ask for (one 4096-byte Blob leaf).
pub const MAX_MISSING_PER_REQUEST: usize = 128;

/// A decoded message: type plus validated payload.
#[derive(Debug, Clone)]
pub struct Message {
    ty: MessageType,
    payload: MultiCell,
    id: Option<u64>,
}

impl Message {
    /// Decodes `type byte ‖ multi-cell`, checking the payload shape of known types.
    #[inline]
    pub fn decode(bytes: Bytes, cfg: &WireConfig) -> Result<Message, DecodeError> {
        let Some(&b) = bytes.first() else {
            return Err(DecodeError::new(0, K::EmptyMessage));
        };
        let ty = MessageType::from_byte(b);
        let payload = MultiCell::decode_from(bytes, 1, cfg)?;
        let id =
            check_shape(ty, &payload).map_err(|reason| DecodeError::new(1, K::BadPayload { ty: ty.name(), reason }))?;
        Ok(Message { ty, payload, id })
    }

    /// The whole encoded message, `type byte ‖ multi-cell` (a view).
    pub fn bytes(&self) -> &Bytes {
        self.payload.buffer()
    }

    /// The type.
    pub fn ty(&self) -> MessageType {
        self.ty
    }

    /// The payload.
    pub fn payload(&self) -> &MultiCell {
        &self.payload
    }

    /// The message ID of QUERY, TRANSACT, STATUS, MISSING_DATA and DATA, or the
    /// referenced ID of a RESULT.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// The value IDs a MISSING_DATA asks for.
    pub fn missing_request(&self) -> Option<Vec<super::hash::ValueId>> {
        if self.ty != MessageType::MissingData {
            return None;
        }
        let (_, items) = self.payload.top().seq_leaf()?;
        let blob = self.payload.resolve(items.get(1)?)?.as_blob_leaf()?;
        Some(
            blob.chunks_exact(32)
                .map(|c| {
                    let mut id = [0u8; 32];
                    id.copy_from_slice(c);
                    super::hash::ValueId(id)
                })
                .collect(),
        )
    }

    /// Element `i` of a Vector-shaped payload (resolved through branches).
    pub fn element(&self, i: usize) -> Option<Cell> {
        let (_, items) = self.payload.top().seq_leaf()?;
        self.payload.resolve(items.get(i)?)
    }
}

/// Writes `type byte ‖ multi-cell` of an encoded payload.
pub fn write_message(out: &mut impl BufMut, ty: MessageType, payload: &Encoded) {
    out.put_u8(ty.to_byte());
    payload.write(out);
}

/// Encodes a message of type `ty` with payload `v`.
pub fn encode_message(ty: MessageType, v: &Value, cfg: &WireConfig) -> Result<Bytes, EncodeError> {
    let enc = encode(v, cfg)?;
    let mut out = bytes::BytesMut::with_capacity(1 + enc.encoded_len());
    write_message(&mut out, ty, &enc);
    Ok(out.freeze())
}

/// Encodes a message of type `ty` leaving out the branch cells `omit`
/// selects (the receiver holds them, or will ask for them with
/// MISSING_DATA); cells reachable only through an omitted cell are left out
/// too. Returns the (partial) message and every branch cell of the value,
/// carried or not, so the sender can keep them to answer MISSING_DATA.
pub fn encode_partial(
    ty: MessageType,
    v: &Value,
    cfg: &WireConfig,
    omit: impl Fn(&ValueId) -> bool,
) -> Result<(Message, Vec<(ValueId, Bytes)>), EncodeError> {
    let enc = encode(v, cfg)?;
    let by_id: std::collections::HashMap<ValueId, &Bytes> = enc.branches.iter().map(|(id, b)| (*id, b)).collect();
    let mut carried = std::collections::HashSet::new();
    let top = Cell::from_validated(enc.top.clone());
    let mut stack = top.refs();
    while let Some(id) = stack.pop() {
        if omit(&id) || carried.contains(&id) {
            continue;
        }
        if let Some(b) = by_id.get(&id) {
            carried.insert(id);
            stack.extend(Cell::from_validated((*b).clone()).refs());
        }
    }
    let mut out = bytes::BytesMut::with_capacity(1 + enc.encoded_len());
    out.put_u8(ty.to_byte());
    super::multicell::write_multicell(
        &mut out,
        &enc.top,
        enc.branches.iter().filter(|(id, _)| carried.contains(id)).map(|(_, b)| b.as_ref()),
    );
    let msg = Message::decode(out.freeze(), cfg).map_err(EncodeError::Limits)?;
    Ok((msg, enc.branches))
}

/// Payload builders for the seed types, matching the documented shapes.
pub mod payload {
    use super::super::hash::ValueId;
    use super::Value;

    /// QUERY `[id, query]`.
    pub fn query(id: u64, query: Value) -> Value {
        Value::Vector(vec![Value::Long(id as i64), query])
    }

    /// TRANSACT `[id, tx]`.
    pub fn transact(id: u64, tx: Value) -> Value {
        Value::Vector(vec![Value::Long(id as i64), tx])
    }

    /// STATUS `[id]`.
    pub fn status(id: u64) -> Value {
        Value::Vector(vec![Value::Long(id as i64)])
    }

    /// RESULT: `dd 05 [id value error log info]`; `error` is a keyword name or none.
    pub fn result(id: u64, value: Value, error: Option<&str>, info: Value) -> Value {
        let err = error.map_or(Value::Nil, Value::keyword);
        Value::Record(0xdd, vec![Value::Long(id as i64), value, err, Value::Nil, info])
    }

    /// MISSING_DATA `[id, blob of 32-byte value IDs]` (1 to 128 IDs).
    pub fn missing_data(id: u64, ids: &[ValueId]) -> Value {
        let mut b = Vec::with_capacity(ids.len() * 32);
        for i in ids {
            b.extend_from_slice(&i.0);
        }
        Value::Vector(vec![Value::Long(id as i64), Value::blob(b)])
    }

    /// DATA `[id, [cell-or-nil ...]]`, in the order of the request.
    pub fn data(id: u64, cells: Vec<Value>) -> Value {
        Value::Vector(vec![Value::Long(id as i64), Value::Vector(cells)])
    }
}

/// Checks the documented payload shape of the seed types; returns the
/// message ID. Allocation-free, and for QUERY/TRANSACT/STATUS (the hot
/// types) only a few byte reads: the top cell was validated already.
fn check_shape(ty: MessageType, mc: &MultiCell) -> Result<Option<u64>, P> {
    let enc = mc.top_slice();
    let id_at = |at: usize| long_at(enc, at).and_then(|v| u64::try_from(v).ok()).ok_or(P::BadId);
    let seq = |want_tag: u8, what: &'static str, n: u64| -> Result<usize, P> {
        match cell::seq_head(enc) {
            _ if enc.first() != Some(&want_tag) => Err(P::WrongTopCell(what)),
            Some((_, count, at)) if count == n => Ok(at),
            _ => Err(P::WrongCount),
        }
    };
    let vector = |n: u64| seq(tag::VECTOR, "a Vector", n);
    // The cell a slot stands for: inline bytes, or a carried branch.
    let resolve = |s: Slot| -> Option<Bytes> {
        match s {
            Slot::Inline(a, b) => Some(mc.top().encoding().slice(a..b)),
            Slot::Ref(p) => mc.branch(&ValueId(cell::ref_bytes(enc, p))).map(|c| c.encoding().clone()),
            Slot::Nil => None,
        }
    };
    match ty {
        MessageType::Query | MessageType::Transact => Ok(Some(id_at(vector(2)?)?)),
        MessageType::Status => Ok(Some(id_at(vector(1)?)?)),
        MessageType::MissingData => {
            let at = vector(2)?;
            let id = id_at(at)?;
            let [_, list] = cell::seq_slots::<2>(enc, at).ok_or(P::WrongCount)?;
            let ok = resolve(list)
                .and_then(|c| cell::blob_leaf_len(&c))
                .is_some_and(|n| n > 0 && n % 32 == 0 && n / 32 <= MAX_MISSING_PER_REQUEST);
            if !ok {
                return Err(P::BadHashList);
            }
            Ok(Some(id))
        }
        MessageType::Data => {
            let at = vector(2)?;
            let id = id_at(at)?;
            let [_, cells] = cell::seq_slots::<2>(enc, at).ok_or(P::WrongCount)?;
            let is_vector = match cells {
                Slot::Inline(a, _) => enc[a] == tag::VECTOR,
                // A partial DATA may leave its list out; a carried one must be a Vector.
                Slot::Ref(_) => resolve(cells).is_none_or(|c| c.first() == Some(&tag::VECTOR)),
                Slot::Nil => false,
            };
            if !is_vector {
                return Err(P::WrongTopCell("[id, Vector]"));
            }
            Ok(Some(id))
        }
        MessageType::Result => {
            let at = seq(tag::RESULT, "a Result record (0xdd)", 5)?;
            let id = id_at(at)?;
            let [_, _, err] = cell::seq_slots::<3>(enc, at).ok_or(P::WrongCount)?;
            match err {
                Slot::Nil => {}
                Slot::Inline(a, _) if enc[a] == tag::KEYWORD => {}
                _ => return Err(P::BadErrorCode),
            }
            Ok(Some(id))
        }
        MessageType::Belief | MessageType::Other(_) => Ok(None),
    }
}
