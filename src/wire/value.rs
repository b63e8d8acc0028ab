//! Owned CAD3 values: build a value, encode it into canonical cells (children
//! of more than 140 bytes become branch cells referenced by hash), and read a
//! decoded [`MultiCell`] back into a value.
//!
//! This is the convenient, allocating side of the codec (for applications,
//! tools and tests); the receive path works on zero-copy [`Cell`] views.

use std::collections::HashSet;

use bytes::{BufMut, Bytes, BytesMut};

use super::cell::{self, BLOB_CHUNK, Cell, Child, MAX_EMBEDDED_LEN, MAX_HASH_LEAF, WireConfig, tag};
use super::hash::{HashAlg, ValueId};
use super::multicell::{MultiCell, write_multicell};
use super::vlq;

/// A CAD3 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `nil`.
    Nil,
    /// Byte flag 0xb0 / 0xb1.
    Bool(bool),
    /// Byte flag 0xb0 + n (n in 0..=15; 0 and 1 are the booleans).
    ByteFlag(u8),
    /// 64-bit integer.
    Long(i64),
    /// Integer of 9 to 4096 bytes: minimal big-endian two's complement.
    BigInt(Bytes),
    /// IEEE-754 double, kept as its bit pattern (every pattern is a distinct value).
    Double(u64),
    /// Unicode code point (at most 0x10ffff).
    Char(u32),
    /// Bytes.
    Blob(Bytes),
    /// UTF-8 text (not enforced).
    String(Bytes),
    /// Symbol name, 1 to 128 bytes.
    Symbol(Bytes),
    /// Keyword name, 1 to 128 bytes.
    Keyword(Bytes),
    /// Vector.
    Vector(Vec<Value>),
    /// List, in logical order (encoded reversed).
    List(Vec<Value>),
    /// Dense record, tag 0xd0..=0xdf, fields in order.
    Record(u8, Vec<Value>),
    /// Hash map; encoded in key value-ID order (keys must be distinct).
    Map(Vec<(Value, Value)>),
    /// Hash set; encoded in value-ID order (elements must be distinct).
    Set(Vec<Value>),
    /// Syntax: a datum with metadata (an empty list is encoded as nil).
    Syntax(Box<Value>, Vec<(Value, Value)>),
    /// Signed data: optional public key (0x90 with, 0x91 without), signature, value.
    Signed(Option<[u8; 32]>, Box<[u8; 64]>, Box<Value>),
    /// Sparse record, tag 0xa0..=0xaf: (field index 0..=62, non-nil value), ascending.
    Sparse(u8, Vec<(u8, Value)>),
    /// Coded value, tag 0xc0..=0xcf: code, value.
    Coded(u8, Box<Value>, Box<Value>),
    /// Extension value, tag 0xe0..=0xef, 0..=2^63-1.
    Extension(u8, u64),
    /// A branch cell by value ID that is not sent (the receiver has it, or
    /// will ask for it with MISSING_DATA): makes the encoding partial.
    Ref(ValueId),
    /// A cell sent as it is (for example an Index, or a value received
    /// earlier); its own branches are not included.
    Cell(Cell),
}

impl Value {
    /// A Double.
    pub fn double(x: f64) -> Value {
        Value::Double(x.to_bits())
    }

    /// A Blob from bytes.
    pub fn blob(b: impl Into<Bytes>) -> Value {
        Value::Blob(b.into())
    }

    /// A Keyword.
    pub fn keyword(name: &str) -> Value {
        Value::Keyword(Bytes::copy_from_slice(name.as_bytes()))
    }

    /// A String.
    pub fn string(s: &str) -> Value {
        Value::String(Bytes::copy_from_slice(s.as_bytes()))
    }
}

/// Why a value could not be encoded (local misuse, not peer input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A field is outside what CAD3 can express (name length, tag range, ...).
    #[error("value cannot be encoded: {0}")]
    Invalid(&'static str),
    /// A Map or Set holds the same key twice.
    #[error("duplicate key in map or set")]
    DuplicateKey,
    /// A cell's encoding is longer than the configured maximum.
    #[error("a cell of {len} bytes exceeds the maximum {max}")]
    CellTooLarge {
        /// Encoding length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A Ref cannot be the top cell.
    #[error("a Ref cannot be the top cell")]
    RefAtTop,
    /// The encoding breaks the codec's own limits when read back (for
    /// example more branch cells than `max_branches`).
    #[error("the encoding exceeds the codec limits: {0}")]
    Limits(super::error::DecodeError),
}

/// An encoded value: the top cell and its branch cells (each once, children
/// before the parents that refer to them).
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Top cell encoding.
    pub top: Bytes,
    /// Branch cells as (value ID, encoding).
    pub branches: Vec<(ValueId, Bytes)>,
}

impl Encoded {
    /// Total bytes of the multi-cell encoding.
    pub fn encoded_len(&self) -> usize {
        self.top.len() + self.branches.iter().map(|(_, b)| vlq::encoded_len(b.len() as u64) + b.len()).sum::<usize>()
    }

    /// Writes `top ‖ (VLQ len ‖ branch)*`.
    pub fn write(&self, out: &mut impl BufMut) {
        write_multicell(out, &self.top, self.branches.iter().map(|(_, b)| b.as_ref()));
    }

    /// The multi-cell encoding as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.write(&mut out);
        out.freeze()
    }

    /// Value ID of the top cell.
    pub fn top_id(&self, alg: HashAlg) -> ValueId {
        alg.hash(&self.top)
    }
}

/// Encodes `v` under `cfg` (hash for value IDs, maximum cell size).
pub fn encode(v: &Value, cfg: &WireConfig) -> Result<Encoded, EncodeError> {
    if matches!(v, Value::Ref(_)) {
        return Err(EncodeError::RefAtTop);
    }
    let mut e = Encoder { cfg: *cfg, branches: Vec::new(), seen: HashSet::new() };
    let top = e.cell(v)?;
    Ok(Encoded { top: Bytes::from(top), branches: e.branches })
}

struct Encoder {
    cfg: WireConfig,
    branches: Vec<(ValueId, Bytes)>,
    seen: HashSet<ValueId>,
}

impl Encoder {
    /// The full encoding of one cell.
    fn cell(&mut self, v: &Value) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        match v {
            Value::Nil => out.push(tag::NIL),
            Value::Bool(b) => out.push(if *b { tag::TRUE } else { tag::FALSE }),
            Value::ByteFlag(n) => {
                if *n > 15 {
                    return Err(EncodeError::Invalid("byte flag above 15"));
                }
                out.push(0xb0 + n);
            }
            Value::Long(x) => put_long(&mut out, *x),
            Value::BigInt(b) => {
                if !(9..=4096).contains(&b.len()) || !minimal_twos(b) {
                    return Err(EncodeError::Invalid("BigInt must be 9..=4096 minimal bytes"));
                }
                out.push(tag::BIGINT);
                vlq::write_len(&mut out, b.len());
                out.extend_from_slice(b);
            }
            Value::Double(bits) => {
                out.push(tag::DOUBLE);
                out.extend_from_slice(&bits.to_be_bytes());
            }
            Value::Char(cp) => {
                if *cp > 0x10ffff {
                    return Err(EncodeError::Invalid("code point above 0x10ffff"));
                }
                let bytes = cp.to_be_bytes();
                let n = match *cp {
                    0..=0xff => 1,
                    0x100..=0xffff => 2,
                    _ => 3,
                };
                out.push(tag::CHAR_1 + (n as u8 - 1));
                out.extend_from_slice(&bytes[4 - n..]);
            }
            Value::Blob(b) => self.blob(&mut out, tag::BLOB, b)?,
            Value::String(b) => self.blob(&mut out, tag::STRING, b)?,
            Value::Symbol(n) | Value::Keyword(n) => {
                if n.is_empty() || n.len() > 128 {
                    return Err(EncodeError::Invalid("name must be 1..=128 bytes"));
                }
                out.push(if matches!(v, Value::Symbol(_)) { tag::SYMBOL } else { tag::KEYWORD });
                out.push(n.len() as u8);
                out.extend_from_slice(n);
            }
            Value::Vector(items) => self.vector(&mut out, tag::VECTOR, items)?,
            Value::List(items) => {
                let rev: Vec<Value> = items.iter().rev().cloned().collect();
                self.vector(&mut out, tag::LIST, &rev)?;
            }
            Value::Record(t, items) => {
                if !(0xd0..=0xdf).contains(t) {
                    return Err(EncodeError::Invalid("record tag outside 0xd0..=0xdf"));
                }
                self.vector(&mut out, *t, items)?;
            }
            Value::Map(entries) => {
                let mut keyed = Vec::with_capacity(entries.len());
                for (k, val) in entries {
                    keyed.push((self.id_of(k)?, k, Some(val)));
                }
                self.hash_tree(&mut out, tag::MAP, keyed)?;
            }
            Value::Set(items) => {
                let mut keyed = Vec::with_capacity(items.len());
                for k in items {
                    keyed.push((self.id_of(k)?, k, None));
                }
                self.hash_tree(&mut out, tag::SET, keyed)?;
            }
            Value::Syntax(datum, meta) => {
                out.push(tag::SYNTAX);
                self.child(&mut out, datum)?;
                if meta.is_empty() {
                    out.push(tag::NIL);
                } else {
                    // Convex writes the metadata map out in full.
                    let m = self.cell(&Value::Map(meta.clone()))?;
                    out.extend_from_slice(&m);
                }
            }
            Value::Signed(key, sig, value) => {
                match key {
                    Some(k) => {
                        out.push(tag::SIGNED);
                        out.extend_from_slice(k);
                    }
                    None => out.push(tag::SIGNED_SHORT),
                }
                out.extend_from_slice(&sig[..]);
                self.child(&mut out, value)?;
            }
            Value::Sparse(t, fields) => {
                if !(0xa0..=0xaf).contains(t) {
                    return Err(EncodeError::Invalid("sparse record tag outside 0xa0..=0xaf"));
                }
                let mut mask = 0u64;
                for (i, f) in fields {
                    if *i > 62 || mask >> i != 0 || matches!(f, Value::Nil) {
                        return Err(EncodeError::Invalid("sparse fields must be ascending, 0..=62, non-nil"));
                    }
                    mask |= 1 << i;
                }
                out.push(*t);
                vlq::write_len(&mut out, mask as usize);
                for (_, f) in fields {
                    self.child(&mut out, f)?;
                }
            }
            Value::Coded(t, code, value) => {
                if !(0xc0..=0xcf).contains(t) {
                    return Err(EncodeError::Invalid("coded value tag outside 0xc0..=0xcf"));
                }
                out.push(*t);
                self.child(&mut out, code)?;
                self.child(&mut out, value)?;
            }
            Value::Extension(t, x) => {
                if !(0xe0..=0xef).contains(t) {
                    return Err(EncodeError::Invalid("extension tag outside 0xe0..=0xef"));
                }
                out.push(*t);
                vlq::write(&mut out, *x).map_err(|_| EncodeError::Invalid("extension value above 2^63-1"))?;
            }
            Value::Ref(_) => return Err(EncodeError::RefAtTop),
            Value::Cell(c) => out.extend_from_slice(c.encoding()),
        }
        if out.len() > self.cfg.max_cell {
            return Err(EncodeError::CellTooLarge { len: out.len(), max: self.cfg.max_cell });
        }
        Ok(out)
    }

    /// Writes `v` in a child position: inline when at most 140 bytes, else a
    /// Ref to a branch cell (recorded once).
    fn child(&mut self, out: &mut Vec<u8>, v: &Value) -> Result<(), EncodeError> {
        if let Value::Ref(id) = v {
            out.push(tag::REF);
            out.extend_from_slice(&id.0);
            return Ok(());
        }
        let enc = self.cell(v)?;
        if enc.len() <= MAX_EMBEDDED_LEN {
            out.extend_from_slice(&enc);
        } else {
            let id = self.cfg.hash.hash(&enc);
            out.push(tag::REF);
            out.extend_from_slice(&id.0);
            if self.seen.insert(id) {
                self.branches.push((id, Bytes::from(enc)));
            }
        }
        Ok(())
    }

    /// The value ID `v` has as a key (the hash of its cell encoding).
    fn id_of(&mut self, v: &Value) -> Result<ValueId, EncodeError> {
        if let Value::Ref(id) = v {
            return Ok(*id);
        }
        // Keys are encoded again when written; small keys make this cheap.
        let mut probe = Encoder { cfg: self.cfg, branches: Vec::new(), seen: HashSet::new() };
        Ok(self.cfg.hash.hash(&probe.cell(v)?))
    }

    fn blob(&mut self, out: &mut Vec<u8>, t: u8, b: &Bytes) -> Result<(), EncodeError> {
        out.push(t);
        vlq::write_len(out, b.len());
        if b.len() as u64 <= BLOB_CHUNK {
            out.extend_from_slice(b);
            return Ok(());
        }
        // Tree: children are Blobs (for Strings too), each of `child` bytes but the last.
        let (_, child) = cell::blob_tree_shape(b.len() as u64);
        for chunk_start in (0..b.len()).step_by(child as usize) {
            let end = (chunk_start + child as usize).min(b.len());
            self.child(out, &Value::Blob(b.slice(chunk_start..end)))?;
        }
        Ok(())
    }

    fn vector(&mut self, out: &mut Vec<u8>, t: u8, items: &[Value]) -> Result<(), EncodeError> {
        let count = items.len() as u64;
        out.push(t);
        vlq::write_len(out, items.len());
        if cell::is_vector_leaf(count) {
            let n = cell::vector_leaf_items(count) as usize;
            let (prefix, tail) = items.split_at(items.len() - n);
            for it in tail {
                self.child(out, it)?;
            }
            if count > 16 {
                self.child(out, &Value::Vector(prefix.to_vec()))?;
            }
        } else {
            let size = cell::vector_tree_child_size(count) as usize;
            for chunk in items.chunks(size) {
                self.child(out, &Value::Vector(chunk.to_vec()))?;
            }
        }
        Ok(())
    }

    /// Map (entries with values) or Set: leaf of at most 15 in key-ID order,
    /// else a tree node splitting on the first hex digit where keys differ.
    fn hash_tree(
        &mut self,
        out: &mut Vec<u8>,
        t: u8,
        mut entries: Vec<(ValueId, &Value, Option<&Value>)>,
    ) -> Result<(), EncodeError> {
        entries.sort_by_key(|a| a.0);
        if entries.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(EncodeError::DuplicateKey);
        }
        self.hash_node(out, t, &entries)
    }

    fn hash_node(
        &mut self,
        out: &mut Vec<u8>,
        t: u8,
        entries: &[(ValueId, &Value, Option<&Value>)],
    ) -> Result<(), EncodeError> {
        out.push(t);
        vlq::write_len(out, entries.len());
        if entries.len() as u64 <= MAX_HASH_LEAF {
            for (_, k, v) in entries {
                self.child(out, k)?;
                if let Some(v) = v {
                    self.child(out, v)?;
                }
            }
            return Ok(());
        }
        // Sorted keys: the first differing digit is where first and last differ.
        let (first, last) = (&entries[0].0, &entries[entries.len() - 1].0);
        let shift = (0..64).find(|&i| first.hex_digit(i) != last.hex_digit(i)).unwrap_or(63);
        let mut mask = 0u16;
        for (id, _, _) in entries {
            mask |= 1 << id.hex_digit(shift);
        }
        out.push(shift as u8);
        out.extend_from_slice(&mask.to_be_bytes());
        for digit in 0..16u8 {
            let group: Vec<_> = entries.iter().filter(|e| e.0.hex_digit(shift) == digit).cloned().collect();
            if group.is_empty() {
                continue;
            }
            let mut child = Vec::new();
            self.hash_node(&mut child, t, &group)?;
            self.child(out, &Value::Cell(Cell::from_validated(Bytes::from(child))))?;
        }
        Ok(())
    }
}

fn put_long(out: &mut Vec<u8>, x: i64) {
    let b = x.to_be_bytes();
    // Drop redundant sign bytes: keep the shortest two's-complement form.
    let mut start = 0;
    while start < 8 {
        let redundant = (b[start] == 0x00 && (start == 7 || b[start + 1] < 0x80))
            || (b[start] == 0xff && start < 7 && b[start + 1] >= 0x80);
        if !redundant {
            break;
        }
        start += 1;
    }
    out.push(tag::LONG_0 + (8 - start) as u8);
    out.extend_from_slice(&b[start..]);
}

fn minimal_twos(b: &[u8]) -> bool {
    !matches!(b, [0x00, n, ..] if *n < 0x80) && !matches!(b, [0xff, n, ..] if *n >= 0x80)
}

/// Why a decoded message could not be turned into a [`Value`] tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ToValueError {
    /// The tree is nested deeper than the limit.
    #[error("value nested deeper than {0} levels")]
    TooDeep(usize),
    /// The tree expands to more nodes than the limit (shared subtrees count each time).
    #[error("value expands to more than {0} nodes")]
    TooLarge(usize),
}

/// Depth limit of [`to_value`].
pub const TO_VALUE_MAX_DEPTH: usize = 256;
/// Node budget of [`to_value`].
pub const TO_VALUE_MAX_NODES: usize = 1 << 20;

/// Reads the top cell of `mc` into a value tree, following Refs through the
/// message's branches; Refs it does not carry become [`Value::Ref`].
/// Indexes are returned as [`Value::Cell`].
pub fn to_value(mc: &MultiCell) -> Result<Value, ToValueError> {
    let mut budget = TO_VALUE_MAX_NODES;
    read_cell(mc, &mc.top(), 0, &mut budget)
}

fn read_child(mc: &MultiCell, c: &Child, depth: usize, budget: &mut usize) -> Result<Value, ToValueError> {
    match c {
        Child::Nil => Ok(Value::Nil),
        Child::Inline(cell) => read_cell(mc, cell, depth, budget),
        Child::Ref(id) => match mc.branch(id) {
            Some(cell) => read_cell(mc, &cell, depth, budget),
            None => Ok(Value::Ref(*id)),
        },
    }
}

fn read_cell(mc: &MultiCell, c: &Cell, depth: usize, budget: &mut usize) -> Result<Value, ToValueError> {
    if depth > TO_VALUE_MAX_DEPTH {
        return Err(ToValueError::TooDeep(TO_VALUE_MAX_DEPTH));
    }
    if *budget == 0 {
        return Err(ToValueError::TooLarge(TO_VALUE_MAX_NODES));
    }
    *budget -= 1;
    let enc = c.encoding();
    let t = c.tag();
    let kids = c.children();
    let mut sub = |k: &Child| read_child(mc, k, depth + 1, budget);
    Ok(match t {
        tag::NIL => Value::Nil,
        tag::FALSE => Value::Bool(false),
        tag::TRUE => Value::Bool(true),
        0xb2..=0xbf => Value::ByteFlag(t - 0xb0),
        tag::LONG_0..=tag::LONG_8 => Value::Long(c.as_long().unwrap_or_default()),
        tag::BIGINT => {
            let (_, used) = vlq::decode(&enc[1..]).unwrap_or((0, 0));
            Value::BigInt(enc.slice(1 + used..))
        }
        tag::DOUBLE => Value::Double(u64::from_be_bytes(enc[1..9].try_into().unwrap_or_default())),
        0x3c..=0x3f => Value::Char(enc[1..].iter().fold(0u32, |a, &x| (a << 8) | u32::from(x))),
        tag::STRING | tag::BLOB => {
            let data = match c.as_blob_leaf().or_else(|| c.as_string_leaf()) {
                Some(d) => d,
                None => {
                    let mut buf = BytesMut::new();
                    for k in &kids {
                        match sub(k)? {
                            Value::Blob(b) => buf.extend_from_slice(&b),
                            // A missing chunk cannot be spliced in; keep the cell whole.
                            _ => return Ok(Value::Cell(c.clone())),
                        }
                    }
                    buf.freeze()
                }
            };
            if t == tag::BLOB { Value::Blob(data) } else { Value::String(data) }
        }
        tag::SYMBOL => Value::Symbol(enc.slice(2..)),
        tag::KEYWORD => Value::Keyword(enc.slice(2..)),
        tag::VECTOR | tag::LIST | 0xd0..=0xdf => {
            let Some(items) = read_seq(mc, c, depth, budget)? else {
                return Ok(Value::Cell(c.clone()));
            };
            match t {
                tag::VECTOR => Value::Vector(items),
                tag::LIST => Value::List(items.into_iter().rev().collect()),
                _ => Value::Record(t, items),
            }
        }
        tag::MAP | tag::SET => {
            let mut flat = Vec::new();
            if !read_hash(mc, c, depth, budget, &mut flat)? {
                return Ok(Value::Cell(c.clone()));
            }
            if t == tag::MAP {
                Value::Map(flat.chunks(2).map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or(Value::Nil))).collect())
            } else {
                Value::Set(flat)
            }
        }
        tag::SYNTAX => {
            let datum = sub(&kids[0])?;
            let meta = match sub(&kids[1])? {
                Value::Map(m) => m,
                _ => Vec::new(),
            };
            Value::Syntax(Box::new(datum), meta)
        }
        tag::SIGNED | tag::SIGNED_SHORT => {
            let (key, sig_at) = if t == tag::SIGNED {
                let mut k = [0u8; 32];
                k.copy_from_slice(&enc[1..33]);
                (Some(k), 33)
            } else {
                (None, 1)
            };
            let mut sig = [0u8; 64];
            sig.copy_from_slice(&enc[sig_at..sig_at + 64]);
            Value::Signed(key, Box::new(sig), Box::new(sub(&kids[0])?))
        }
        0xa0..=0xaf => {
            let (mask, _) = vlq::decode(&enc[1..]).unwrap_or((0, 0));
            let idx = (0..63u8).filter(|i| mask >> i & 1 == 1);
            let mut fields = Vec::new();
            for (i, k) in idx.zip(kids.iter()) {
                fields.push((i, sub(k)?));
            }
            Value::Sparse(t, fields)
        }
        0xc0..=0xcf => Value::Coded(t, Box::new(sub(&kids[0])?), Box::new(sub(&kids[1])?)),
        0xe0..=0xef => Value::Extension(t, vlq::decode(&enc[1..]).map(|(v, _)| v).unwrap_or(0)),
        _ => Value::Cell(c.clone()),
    })
}

/// Elements of a Vector/List/record cell in encoding order, flattening trees
/// and prefixes; `None` when a subtree is not in the message.
fn read_seq(mc: &MultiCell, c: &Cell, depth: usize, budget: &mut usize) -> Result<Option<Vec<Value>>, ToValueError> {
    if depth > TO_VALUE_MAX_DEPTH {
        return Err(ToValueError::TooDeep(TO_VALUE_MAX_DEPTH));
    }
    let (count, _) = vlq::decode(&c.encoding()[1..]).unwrap_or((0, 0));
    let mut kids = c.children();
    let mut out = Vec::new();
    let subtrees: Vec<Child> = if cell::is_vector_leaf(count) {
        // Leaf: its own items, then (above 16 elements) the prefix, which comes first logically.
        let prefix = if count > 16 { kids.pop() } else { None };
        let mut items = Vec::with_capacity(kids.len());
        for k in &kids {
            items.push(read_child(mc, k, depth + 1, budget)?);
        }
        if let Some(p) = prefix {
            let Some(cell) = mc.resolve(&p) else {
                return Ok(None);
            };
            let Some(pre) = read_seq(mc, &cell, depth + 1, budget)? else {
                return Ok(None);
            };
            out.extend(pre);
        }
        out.extend(items);
        return Ok(Some(out));
    } else {
        kids
    };
    for k in &subtrees {
        let Some(cell) = mc.resolve(k) else {
            return Ok(None);
        };
        let Some(part) = read_seq(mc, &cell, depth + 1, budget)? else {
            return Ok(None);
        };
        out.extend(part);
    }
    Ok(Some(out))
}

/// Entries of a Map/Set cell (keys and values interleaved for maps),
/// flattening trees; `false` when a subtree is not in the message.
fn read_hash(
    mc: &MultiCell,
    c: &Cell,
    depth: usize,
    budget: &mut usize,
    out: &mut Vec<Value>,
) -> Result<bool, ToValueError> {
    if depth > TO_VALUE_MAX_DEPTH {
        return Err(ToValueError::TooDeep(TO_VALUE_MAX_DEPTH));
    }
    let (count, _) = vlq::decode(&c.encoding()[1..]).unwrap_or((0, 0));
    for k in c.children() {
        if count <= MAX_HASH_LEAF {
            out.push(read_child(mc, &k, depth + 1, budget)?);
            continue;
        }
        let Some(child) = mc.resolve(&k) else {
            return Ok(false);
        };
        if !read_hash(mc, &child, depth + 1, budget, out)? {
            return Ok(false);
        }
    }
    Ok(true)
}
