//! Messages (CAD015 as the seed design defines it): one type byte, then the
//! payload's multi-cell encoding. The shapes of the seed types' payloads are
//! checked on decode; unknown type bytes are carried as numbers.
//!
//! Type byte ranges (see `docs/protocol.md`):
//! - `0x00..=0x3f` peer messages (CAD015; the seed types use Convex 0.7's codes),
//! - `0x40..=0x5f` RPC, `0x60..=0x7f` link control (defined by later layers),
//! - `0x80..=0xff` application-defined.

use bytes::{BufMut, Bytes};

use super::cell::{Cell, Child, WireConfig, tag};
use super::error::{DecodeError, DecodeErrorKind as K, PayloadError as P};
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
    pub fn decode(bytes: Bytes, cfg: &WireConfig) -> Result<Message, DecodeError> {
        let Some(&b) = bytes.first() else {
            return Err(DecodeError::new(0, K::EmptyMessage));
        };
        let ty = MessageType::from_byte(b);
        let payload = MultiCell::decode_at(bytes.slice(1..), 1, cfg)?;
        let id = check_shape(ty, &payload).map_err(|reason| {
            DecodeError::new(1, K::BadPayload { ty: ty.name(), reason })
        })?;
        Ok(Message { ty, payload, id })
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

/// A non-negative Long written inline.
fn id_of(c: &Child) -> Result<u64, P> {
    match c {
        Child::Inline(cell) => cell.as_long().and_then(|v| u64::try_from(v).ok()).ok_or(P::BadId),
        _ => Err(P::BadId),
    }
}

/// Checks the documented payload shape of the seed types; returns the message ID.
fn check_shape(ty: MessageType, mc: &MultiCell) -> Result<Option<u64>, P> {
    let top = mc.top();
    let vector = |n: u64| -> Result<Vec<Child>, P> {
        if top.tag() != tag::VECTOR {
            return Err(P::WrongTopCell("a Vector"));
        }
        match top.seq_leaf() {
            Some((count, items)) if count == n => Ok(items),
            _ => Err(P::WrongCount),
        }
    };
    match ty {
        MessageType::Query | MessageType::Transact => Ok(Some(id_of(&vector(2)?[0])?)),
        MessageType::Status => Ok(Some(id_of(&vector(1)?[0])?)),
        MessageType::MissingData => {
            let items = vector(2)?;
            let id = id_of(&items[0])?;
            let ok = mc
                .resolve(&items[1])
                .and_then(|c| c.as_blob_leaf())
                .is_some_and(|b| !b.is_empty() && b.len() % 32 == 0 && b.len() / 32 <= MAX_MISSING_PER_REQUEST);
            if !ok {
                return Err(P::BadHashList);
            }
            Ok(Some(id))
        }
        MessageType::Data => {
            let items = vector(2)?;
            let id = id_of(&items[0])?;
            let is_vector = match &items[1] {
                Child::Inline(c) => c.tag() == tag::VECTOR,
                Child::Ref(_) => mc.resolve(&items[1]).is_none_or(|c| c.tag() == tag::VECTOR),
                Child::Nil => false,
            };
            if !is_vector {
                return Err(P::WrongTopCell("[id, Vector]"));
            }
            Ok(Some(id))
        }
        MessageType::Result => {
            if top.tag() != tag::RESULT {
                return Err(P::WrongTopCell("a Result record (0xdd)"));
            }
            let items = match top.seq_leaf() {
                Some((5, items)) => items,
                _ => return Err(P::WrongCount),
            };
            let id = id_of(&items[0])?;
            match &items[2] {
                Child::Nil => {}
                Child::Inline(c) if c.tag() == tag::KEYWORD => {}
                _ => return Err(P::BadErrorCode),
            }
            Ok(Some(id))
        }
        MessageType::Belief | MessageType::Other(_) => Ok(None),
    }
}
