//! CAD3 cells (CAD003, as Convex 0.8's decoder reads them): one tag byte plus
//! a self-delimiting body. [`scan`] finds the exact end of any valid cell while
//! checking every encoding rule; [`Cell`] is a validated, zero-copy view
//! (`Bytes::slice`) into the received buffer.
//!
//! No IO and no allocation while scanning (the caller's ref list grows only
//! when a cell holds Refs).

use bytes::Bytes;

use super::error::{DecodeError, DecodeErrorKind as K};
use super::hash::{HashAlg, ValueId};
use super::reader::Reader;

/// Tag bytes (CAD003 "Tag Byte" table; Convex `Tag.java`).
pub mod tag {
    /// nil.
    pub const NIL: u8 = 0x00;
    /// Long with 0 bytes (the value 0); `0x10 + n` carries n bytes.
    pub const LONG_0: u8 = 0x10;
    /// Long with 8 bytes.
    pub const LONG_8: u8 = 0x18;
    /// BigInt: VLQ byte count (9..=4096) + two's complement bytes.
    pub const BIGINT: u8 = 0x19;
    /// IEEE-754 double, 8 bytes big-endian.
    pub const DOUBLE: u8 = 0x1d;
    /// Ref: 32-byte value ID of a branch cell (child positions only).
    pub const REF: u8 = 0x20;
    /// UTF-8 string (blob layout).
    pub const STRING: u8 = 0x30;
    /// Blob.
    pub const BLOB: u8 = 0x31;
    /// Symbol: 1-byte length + name.
    pub const SYMBOL: u8 = 0x32;
    /// Keyword: 1-byte length + name.
    pub const KEYWORD: u8 = 0x33;
    /// Char with 1 byte of code point (0x3d: 2 bytes, 0x3e: 3, 0x3f: 4).
    pub const CHAR_1: u8 = 0x3c;
    /// Vector.
    pub const VECTOR: u8 = 0x80;
    /// List (vector layout, reversed order).
    pub const LIST: u8 = 0x81;
    /// Hash map.
    pub const MAP: u8 = 0x82;
    /// Hash set.
    pub const SET: u8 = 0x83;
    /// Index (radix tree over blob-like keys).
    pub const INDEX: u8 = 0x84;
    /// Syntax object: datum + metadata map.
    pub const SYNTAX: u8 = 0x88;
    /// Signed data: public key + signature + value.
    pub const SIGNED: u8 = 0x90;
    /// Signed data without the public key.
    pub const SIGNED_SHORT: u8 = 0x91;
    /// Byte flag false (0xb1 = true; 0xb0..=0xbf are all byte flags).
    pub const FALSE: u8 = 0xb0;
    /// Byte flag true.
    pub const TRUE: u8 = 0xb1;
    /// Convex Result record (dense record, 5 fields).
    pub const RESULT: u8 = 0xdd;
}

/// A child whose encoding is at most this many bytes is embedded inline;
/// a larger child must be a Ref (CAD003; Convex `Format.MAX_EMBEDDED_LENGTH`).
pub const MAX_EMBEDDED_LEN: usize = 140;
/// Blob and String leaves hold at most this many bytes (Convex `Blob.CHUNK_LENGTH`).
pub const BLOB_CHUNK: u64 = 4096;
/// Map and Set leaves hold at most this many entries.
pub const MAX_HASH_LEAF: u64 = 15;
/// Default largest cell encoding (the seed design's 8192 bytes).
pub const DEFAULT_MAX_CELL: usize = 8192;
/// Convex 0.8's limit (`Format.LIMIT_ENCODING_LENGTH`).
pub const CONVEX_MAX_CELL: usize = 16383;

/// Limits and choices of the codec: one place, documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireConfig {
    /// Largest encoding of one cell, in bytes (default 8192).
    pub max_cell: usize,
    /// Most branch cells in one message (default 4096).
    pub max_branches: usize,
    /// Hash that gives value IDs (default BLAKE3).
    pub hash: HashAlg,
}

impl Default for WireConfig {
    fn default() -> Self {
        WireConfig { max_cell: DEFAULT_MAX_CELL, max_branches: 4096, hash: HashAlg::Blake3 }
    }
}

impl WireConfig {
    /// Settings that read real Convex 0.8 data: SHA3-256, cells up to 16383 bytes.
    pub fn convex() -> Self {
        WireConfig { max_cell: CONVEX_MAX_CELL, max_branches: 1 << 16, hash: HashAlg::Sha3_256 }
    }
}

/// A child slot as the scanner found it (positions relative to the scanned buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// `0x00`.
    Nil,
    /// `0x20` + hash; the position of the 32 hash bytes.
    Ref(usize),
    /// An embedded cell occupying `start..end`.
    Inline(usize, usize),
}

/// Walks one cell's encoding, checking every rule, recording where Refs are.
pub(crate) struct Scanner<'a, 'r> {
    pub r: Reader<'a>,
    /// Hash for checking Map/Set key order; `None` when re-walking bytes
    /// that were already validated (no hashing needed).
    order: Option<HashAlg>,
    /// Positions (relative to the reader's buffer) of each Ref's 32 hash bytes.
    refs: &'r mut Vec<usize>,
}

impl<'a, 'r> Scanner<'a, 'r> {
    pub fn new(r: Reader<'a>, order: Option<HashAlg>, refs: &'r mut Vec<usize>) -> Self {
        Scanner { r, order, refs }
    }

    /// Scans one whole cell (any tag but Ref) starting at the cursor, reading
    /// at most `max` bytes. On success the cursor is at the cell's end.
    pub fn bounded_cell(&mut self, max: usize) -> Result<(), DecodeError> {
        let start = self.r.pos();
        let outer_end = self.r.end();
        let window = start.saturating_add(max).min(outer_end);
        self.r.set_end(window);
        let res = self.cell();
        self.r.set_end(outer_end);
        match res {
            // Wanting more bytes than a window narrower than the input proves
            // the cell is longer than `max`.
            Err(e) if e.kind == K::Truncated && window < outer_end => {
                Err(self.r.err_at(start, K::CellTooLarge { max }))
            }
            other => other,
        }
    }

    /// Scans one whole cell (any tag but Ref) starting at the cursor.
    pub fn cell(&mut self) -> Result<(), DecodeError> {
        let start = self.r.pos();
        let t = self.r.u8()?;
        match t {
            tag::NIL | 0xb0..=0xbf => Ok(()),
            tag::LONG_0..=tag::LONG_8 => self.integer(start, usize::from(t - tag::LONG_0)),
            tag::BIGINT => {
                let n = self.r.vlq()?;
                if !(9..=4096).contains(&n) {
                    return Err(self.r.err_at(start, K::BigIntLength(n)));
                }
                self.integer(start, n as usize)
            }
            tag::DOUBLE => self.r.skip(8),
            tag::REF => Err(self.r.err_at(start, K::RefNotAllowed)),
            tag::STRING | tag::BLOB => self.blob_body(),
            tag::SYMBOL | tag::KEYWORD => {
                let n = self.r.u8()?;
                if n == 0 || n > 128 {
                    return Err(self.r.err_at(start, K::NameLength(n)));
                }
                self.r.skip(u64::from(n))
            }
            0x3c..=0x3f => {
                let n = usize::from(t & 3) + 1;
                let b = self.r.take(n)?;
                if n > 1 && b[0] == 0 {
                    return Err(self.r.err_at(start, K::NonMinimalChar));
                }
                let cp = b.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x));
                if cp > 0x10ffff {
                    return Err(self.r.err_at(start, K::CharOutOfRange(cp)));
                }
                Ok(())
            }
            tag::VECTOR | tag::LIST | 0xd0..=0xdf => self.vector_body(),
            tag::MAP => self.hash_tree(start, true),
            tag::SET => self.hash_tree(start, false),
            tag::INDEX => self.index(start),
            tag::SYNTAX => self.syntax(),
            tag::SIGNED => {
                self.r.skip(32 + 64)?;
                self.child().map(drop)
            }
            tag::SIGNED_SHORT => {
                self.r.skip(64)?;
                self.child().map(drop)
            }
            0xa0..=0xaf => {
                let mask = self.r.vlq()?;
                for _ in 0..mask.count_ones() {
                    self.nonnil_child()?;
                }
                Ok(())
            }
            0xc0..=0xcf => {
                self.child()?;
                self.child().map(drop)
            }
            0xe0..=0xef => self.r.vlq().map(drop),
            other => Err(self.r.err_at(start, K::IllegalTag(other))),
        }
    }

    /// `n` bytes of big-endian two's complement, shortest form.
    fn integer(&mut self, start: usize, n: usize) -> Result<(), DecodeError> {
        let b = self.r.take(n)?;
        let redundant = match b {
            [] => false,
            [0x00] => true,
            [0x00, next, ..] => *next < 0x80,
            [0xff, next, ..] => *next >= 0x80,
            _ => false,
        };
        if redundant {
            return Err(self.r.err_at(start, K::NonMinimalInteger));
        }
        Ok(())
    }

    /// One child: nil, a Ref, or an embedded cell of at most 140 bytes.
    pub fn child(&mut self) -> Result<Slot, DecodeError> {
        let start = self.r.pos();
        match self.r.peek()? {
            tag::NIL => {
                self.r.u8()?;
                Ok(Slot::Nil)
            }
            tag::REF => {
                self.r.u8()?;
                let pos = self.r.pos();
                self.r.skip(32)?;
                self.refs.push(pos);
                Ok(Slot::Ref(pos))
            }
            _ => {
                // An inline child can never be longer than 140 bytes, so scan
                // it inside a 140-byte window: this also bounds nesting depth.
                let outer_end = self.r.end();
                let window = (start + MAX_EMBEDDED_LEN).min(outer_end);
                self.r.set_end(window);
                let res = self.cell();
                self.r.set_end(outer_end);
                match res {
                    Ok(()) => Ok(Slot::Inline(start, self.r.pos())),
                    // Running out inside a window narrower than the parent's
                    // proves the child is longer than 140 bytes.
                    Err(e) if e.kind == K::Truncated && window < outer_end => {
                        Err(self.r.err_at(start, K::InlineTooLarge))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn nonnil_child(&mut self) -> Result<Slot, DecodeError> {
        let start = self.r.pos();
        match self.child()? {
            Slot::Nil => Err(self.r.err_at(start, K::NilChild)),
            s => Ok(s),
        }
    }

    /// Blob/String body: VLQ length, then the bytes (leaf) or 2-16 children (tree).
    fn blob_body(&mut self) -> Result<(), DecodeError> {
        let n = self.r.vlq()?;
        if n <= BLOB_CHUNK {
            return self.r.skip(n);
        }
        let (k, child_len) = blob_tree_shape(n);
        for i in 0..k {
            let start = self.r.pos();
            let expect = if i + 1 < k { child_len } else { n - child_len * (k - 1) };
            match self.nonnil_child()? {
                Slot::Inline(a, b) => {
                    if inline_blob_len(&self.r.buf()[a..b]) != Some(expect) {
                        return Err(self.r.err_at(start, K::BlobTreeChild));
                    }
                }
                Slot::Ref(_) | Slot::Nil => {}
            }
        }
        Ok(())
    }

    /// Vector body (also List and dense records): VLQ count, then leaf or tree form.
    fn vector_body(&mut self) -> Result<(), DecodeError> {
        let count = self.r.vlq()?;
        if is_vector_leaf(count) {
            let n = vector_leaf_items(count);
            for _ in 0..n {
                self.child()?;
            }
            if count > 16 {
                self.nonnil_child()?;
            }
        } else {
            for _ in 0..vector_tree_children(count) {
                self.nonnil_child()?;
            }
        }
        Ok(())
    }

    /// Map (`with_values`) or Set body.
    fn hash_tree(&mut self, start: usize, with_values: bool) -> Result<(), DecodeError> {
        let count = self.r.vlq()?;
        if count == 0 {
            return Ok(());
        }
        if count <= MAX_HASH_LEAF {
            let mut prev: Option<ValueId> = None;
            for _ in 0..count {
                let key = self.child()?;
                if let (true, Some(alg)) = (count > 1, self.order) {
                    let id = self.slot_id(key, alg);
                    if prev.is_some_and(|p| p >= id) {
                        return Err(self.r.err_at(start, K::KeyOrder));
                    }
                    prev = Some(id);
                }
                if with_values {
                    self.child()?;
                }
            }
            return Ok(());
        }
        let shift = self.r.u8()?;
        if shift > 63 {
            return Err(self.r.err_at(start, K::TreeShift(shift)));
        }
        let n = self.r.u16_be()?.count_ones();
        if n < 2 {
            return Err(self.r.err_at(start, K::TreeChildren(n)));
        }
        for _ in 0..n {
            self.nonnil_child()?;
        }
        Ok(())
    }

    /// Index body (Convex 0.8 code: entry marker 0x00/0x80, depth byte < 64).
    fn index(&mut self, start: usize) -> Result<(), DecodeError> {
        let count = self.r.vlq()?;
        match count {
            0 => return Ok(()),
            1 => {
                self.child()?;
                self.child()?;
                return Ok(());
            }
            _ => {}
        }
        let marker_pos = self.r.pos();
        let has_entry = match self.r.u8()? {
            0x00 => false,
            0x80 => true,
            m => return Err(self.r.err_at(marker_pos, K::IndexEntryMarker(m))),
        };
        if has_entry {
            self.child()?;
            self.child()?;
        }
        let depth = self.r.u8()?;
        if depth >= 64 {
            return Err(self.r.err_at(start, K::IndexDepth(depth)));
        }
        let n = self.r.u16_be()?.count_ones();
        if n < if has_entry { 1 } else { 2 } {
            return Err(self.r.err_at(start, K::TreeChildren(n)));
        }
        for _ in 0..n {
            self.nonnil_child()?;
        }
        Ok(())
    }

    /// Syntax (Convex 0.8 code order): datum child, then the metadata cell,
    /// which is nil or a non-empty Map written out in full.
    fn syntax(&mut self) -> Result<(), DecodeError> {
        self.child()?;
        let meta = self.r.pos();
        match self.r.peek()? {
            tag::NIL => {
                self.r.u8()?;
                Ok(())
            }
            tag::MAP => {
                self.cell()?;
                // The map's count follows its tag; 0 would be the empty map.
                if self.r.buf().get(meta + 1) == Some(&0) {
                    return Err(self.r.err_at(meta, K::SyntaxMeta));
                }
                Ok(())
            }
            _ => Err(self.r.err_at(meta, K::SyntaxMeta)),
        }
    }

    /// The value ID a child slot stands for (a Ref carries it; others are hashed).
    fn slot_id(&self, s: Slot, alg: HashAlg) -> ValueId {
        let buf = self.r.buf();
        match s {
            Slot::Ref(p) => ValueId(ref_bytes(buf, p)),
            Slot::Nil => alg.hash(&[tag::NIL]),
            Slot::Inline(a, b) => alg.hash(&buf[a..b]),
        }
    }
}

/// The 32 bytes of a Ref the scanner already bounds-checked.
pub(crate) fn ref_bytes(buf: &[u8], pos: usize) -> [u8; 32] {
    let mut id = [0u8; 32];
    id.copy_from_slice(&buf[pos..pos + 32]);
    id
}

/// For an inline blob cell (already validated), its length field.
fn inline_blob_len(enc: &[u8]) -> Option<u64> {
    match enc {
        [tag::BLOB, rest @ ..] => super::vlq::decode(rest).ok().map(|(n, _)| n),
        _ => None,
    }
}

/// Blob tree of `n > 4096` bytes: (number of children, bytes per full child).
pub(crate) fn blob_tree_shape(n: u64) -> (u64, u64) {
    let chunks = ((n - 1) >> 12) + 1;
    let mut shift = 0u32;
    while (16u64 << shift) < chunks {
        shift += 4;
    }
    (((chunks - 1) >> shift) + 1, BLOB_CHUNK << shift)
}

/// A vector of `count` elements is a leaf when it has at most 16 or a
/// non-empty tail (count not a multiple of 16).
pub(crate) fn is_vector_leaf(count: u64) -> bool {
    count <= 16 || count % 16 != 0
}

/// Items written directly in a leaf vector (the rest are in the prefix).
pub(crate) fn vector_leaf_items(count: u64) -> u64 {
    match count & 0xf {
        0 if count > 0 => 16,
        n => n,
    }
}

/// Elements per child of a vector tree of `count` elements (16^k).
pub(crate) fn vector_tree_child_size(count: u64) -> u64 {
    if count >= 1 << 60 {
        return 1 << 60;
    }
    let mut shift = 0;
    while (1u64 << (shift + 4)) < count {
        shift += 4;
    }
    1 << shift
}

/// Children of a vector tree of `count` elements.
pub(crate) fn vector_tree_children(count: u64) -> u64 {
    count.div_ceil(vector_tree_child_size(count))
}

/// Scans the single cell at the start of `buf` (absolute offset `base`),
/// bounded by `max_cell`, pushing Ref positions to `refs`. Returns its length.
pub(crate) fn scan(
    buf: &[u8],
    base: usize,
    cfg: &WireConfig,
    refs: &mut Vec<usize>,
) -> Result<usize, DecodeError> {
    let mut s = Scanner::new(Reader::new(buf, base), Some(cfg.hash), refs);
    s.bounded_cell(cfg.max_cell)?;
    Ok(s.r.pos())
}

/// A validated cell: a zero-copy view of its encoding.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cell {
    enc: Bytes,
}

impl std::fmt::Debug for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cell({})", hex::encode(&self.enc))
    }
}

impl Cell {
    /// Decodes a standalone cell: exactly one valid cell, no trailing bytes,
    /// at most `cfg.max_cell` bytes. Refs inside it are not resolved.
    pub fn decode(enc: Bytes, cfg: &WireConfig) -> Result<Cell, DecodeError> {
        let mut refs = Vec::new();
        let n = scan(&enc, 0, cfg, &mut refs)?;
        if n != enc.len() {
            return Err(DecodeError::new(n, K::TrailingBytes));
        }
        Ok(Cell { enc })
    }

    /// Wraps bytes the caller has validated (the decoder, the encoder).
    pub(crate) fn from_validated(enc: Bytes) -> Cell {
        Cell { enc }
    }

    /// The tag byte.
    pub fn tag(&self) -> u8 {
        self.enc[0]
    }

    /// The full encoding (tag included).
    pub fn encoding(&self) -> &Bytes {
        &self.enc
    }

    /// Encoding length in bytes.
    pub fn len(&self) -> usize {
        self.enc.len()
    }

    /// Never true: a cell has at least its tag byte.
    pub fn is_empty(&self) -> bool {
        self.enc.is_empty()
    }

    /// True if this cell is small enough to be embedded in a parent.
    pub fn is_embedded(&self) -> bool {
        self.enc.len() <= MAX_EMBEDDED_LEN
    }

    /// The value ID: hash of the encoding.
    pub fn value_id(&self, alg: HashAlg) -> ValueId {
        alg.hash(&self.enc)
    }

    /// Value IDs of the branch cells this cell refers to directly, in encoding order.
    pub fn refs(&self) -> Vec<ValueId> {
        let mut refs = Vec::new();
        let mut s = Scanner::new(Reader::new(&self.enc, 0), None, &mut refs);
        // Already validated: a rescan cannot fail; on the impossible error no refs are reported.
        if s.cell().is_err() {
            return Vec::new();
        }
        refs.into_iter().map(|p| ValueId(ref_bytes(&self.enc, p))).collect()
    }

    /// The signed 64-bit value, if this is a Long (0x10-0x18).
    pub fn as_long(&self) -> Option<i64> {
        let t = self.tag();
        if !(tag::LONG_0..=tag::LONG_8).contains(&t) {
            return None;
        }
        let b = &self.enc[1..];
        if b.is_empty() {
            return Some(0);
        }
        let init: i64 = if b[0] & 0x80 != 0 { -1 } else { 0 };
        Some(b.iter().fold(init, |acc, &x| (acc << 8) | i64::from(x)))
    }

    /// The bytes of a leaf Blob (0x31, at most 4096 bytes), as a view.
    pub fn as_blob_leaf(&self) -> Option<Bytes> {
        self.leaf_data(tag::BLOB)
    }

    /// The bytes of a leaf String (0x30), as a view.
    pub fn as_string_leaf(&self) -> Option<Bytes> {
        self.leaf_data(tag::STRING)
    }

    /// The name of a Keyword (0x33).
    pub fn as_keyword(&self) -> Option<&[u8]> {
        match self.enc.as_ref() {
            [tag::KEYWORD, _, name @ ..] => Some(name),
            _ => None,
        }
    }

    fn leaf_data(&self, want: u8) -> Option<Bytes> {
        if self.tag() != want {
            return None;
        }
        let (n, used) = super::vlq::decode(&self.enc[1..]).ok()?;
        if n > BLOB_CHUNK {
            return None;
        }
        Some(self.enc.slice(1 + used..))
    }

    /// For a Vector, List or dense record in leaf form: its element count and
    /// directly held children (the prefix, if any, is not included).
    pub fn seq_leaf(&self) -> Option<(u64, Vec<Child>)> {
        let t = self.tag();
        if !matches!(t, tag::VECTOR | tag::LIST | 0xd0..=0xdf) {
            return None;
        }
        let (count, used) = super::vlq::decode(&self.enc[1..]).ok()?;
        if !is_vector_leaf(count) {
            return None;
        }
        let mut refs = Vec::new();
        let mut s = Scanner::new(Reader::new(&self.enc, 0), None, &mut refs);
        s.r.seek(1 + used);
        let mut out = Vec::with_capacity(vector_leaf_items(count) as usize);
        for _ in 0..vector_leaf_items(count) {
            let slot = s.child().ok()?;
            out.push(self.child_of(slot));
        }
        Some((count, out))
    }

    /// Every child slot of this cell, in encoding order (one level deep).
    pub fn children(&self) -> Vec<Child> {
        let mut v = Vec::new();
        // Already validated: walking it again cannot fail.
        let _ = walk_children(&self.enc, |slot| v.push(self.child_of(slot)));
        v
    }

    fn child_of(&self, slot: Slot) -> Child {
        match slot {
            Slot::Nil => Child::Nil,
            Slot::Ref(p) => Child::Ref(ValueId(ref_bytes(&self.enc, p))),
            Slot::Inline(a, b) => Child::Inline(Cell { enc: self.enc.slice(a..b) }),
        }
    }
}

/// A child position inside a cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Child {
    /// `0x00`.
    Nil,
    /// A branch cell, by value ID.
    Ref(ValueId),
    /// An embedded cell.
    Inline(Cell),
}

/// Calls `f` for every child slot of a validated cell, one level deep, in order.
pub(crate) fn walk_children(enc: &[u8], mut f: impl FnMut(Slot)) -> Result<(), DecodeError> {
    // Re-scan with a scanner that reports slots: reuse the validating scanner
    // on each child boundary by walking the same grammar.
    let mut refs = Vec::new();
    let mut s = Scanner::new(Reader::new(enc, 0), None, &mut refs);
    let t = s.r.u8()?;
    let mut next = |s: &mut Scanner<'_, '_>| -> Result<(), DecodeError> {
        let slot = s.child()?;
        f(slot);
        Ok(())
    };
    match t {
        tag::STRING | tag::BLOB => {
            let n = s.r.vlq()?;
            if n > BLOB_CHUNK {
                for _ in 0..blob_tree_shape(n).0 {
                    next(&mut s)?;
                }
            }
        }
        tag::VECTOR | tag::LIST | 0xd0..=0xdf => {
            let count = s.r.vlq()?;
            let n = if is_vector_leaf(count) {
                vector_leaf_items(count) + u64::from(count > 16)
            } else {
                vector_tree_children(count)
            };
            for _ in 0..n {
                next(&mut s)?;
            }
        }
        tag::MAP | tag::SET => {
            let count = s.r.vlq()?;
            if count <= MAX_HASH_LEAF {
                let per = if t == tag::MAP { 2 } else { 1 };
                for _ in 0..count * per {
                    next(&mut s)?;
                }
            } else {
                s.r.u8()?;
                for _ in 0..s.r.u16_be()?.count_ones() {
                    next(&mut s)?;
                }
            }
        }
        tag::INDEX => {
            let count = s.r.vlq()?;
            if count == 1 {
                next(&mut s)?;
                next(&mut s)?;
            } else if count > 1 {
                if s.r.u8()? == 0x80 {
                    next(&mut s)?;
                    next(&mut s)?;
                }
                s.r.u8()?;
                for _ in 0..s.r.u16_be()?.count_ones() {
                    next(&mut s)?;
                }
            }
        }
        tag::SYNTAX => {
            next(&mut s)?;
            // The metadata is a whole cell, reported as an inline child.
            let a = s.r.pos();
            s.cell()?;
            let b = s.r.pos();
            f(if b - a == 1 { Slot::Nil } else { Slot::Inline(a, b) });
        }
        tag::SIGNED => {
            s.r.skip(96)?;
            next(&mut s)?;
        }
        tag::SIGNED_SHORT => {
            s.r.skip(64)?;
            next(&mut s)?;
        }
        0xa0..=0xaf => {
            for _ in 0..s.r.vlq()?.count_ones() {
                next(&mut s)?;
            }
        }
        0xc0..=0xcf => {
            next(&mut s)?;
            next(&mut s)?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Bytes {
        Bytes::from(hex::decode(s.replace(' ', "")).unwrap())
    }

    fn ok(s: &str) -> Cell {
        Cell::decode(h(s), &WireConfig::default()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn bad(s: &str) -> DecodeError {
        Cell::decode(h(s), &WireConfig::default()).expect_err(s)
    }

    #[test]
    fn convex_vectors() {
        assert_eq!(ok("10").as_long(), Some(0));
        assert_eq!(ok("11 01").as_long(), Some(1));
        assert_eq!(ok("11 ff").as_long(), Some(-1));
        assert_eq!(ok("12 00 80").as_long(), Some(128));
        assert_eq!(ok("31 00").as_blob_leaf().unwrap().len(), 0);
        assert_eq!(ok("30 02 48 69").as_string_leaf().unwrap().as_ref(), b"Hi");
        let v = ok("80 01 11 01");
        let (n, items) = v.seq_leaf().unwrap();
        assert_eq!(n, 1);
        assert_eq!(items, vec![Child::Inline(ok("11 01"))]);
        // CAD003 example: [101 "Hello" #{}]
        ok("80 03 11 65 30 05 48 65 6c 6c 6f 83 00");
        // SyntaxTest: 88110100 and CAD3Test dense records.
        ok("88 11 01 00");
        ok("df 03 11 01 11 02 11 03");
        ok("df 00");
        ok("b0");
        ok("00");
    }

    #[test]
    fn convex_rejects() {
        assert_eq!(bad("11 00").kind, K::NonMinimalInteger);
        assert_eq!(bad("10 ff").kind, K::TrailingBytes);
        assert_eq!(bad("12 00 7f").kind, K::NonMinimalInteger);
        assert_eq!(bad("12 ff ff").kind, K::NonMinimalInteger);
        assert_eq!(bad("ff").kind, K::IllegalTag(0xff));
    }

    #[test]
    fn long_values() {
        assert_eq!(ok("18 80 00 00 00 00 00 00 00").as_long(), Some(i64::MIN));
        assert_eq!(ok("18 7f ff ff ff ff ff ff ff").as_long(), Some(i64::MAX));
        assert_eq!(ok("12 ff 7f").as_long(), Some(-129));
    }

    #[test]
    fn blob_tree_shapes() {
        assert_eq!(blob_tree_shape(4097), (2, 4096));
        assert_eq!(blob_tree_shape(16 * 4096), (16, 4096));
        assert_eq!(blob_tree_shape(16 * 4096 + 1), (2, 65536));
        // CAD003: a 4 GiB blob has 16 children of 256 MiB.
        assert_eq!(blob_tree_shape(1 << 32), (16, 1 << 28));
        assert_eq!(vector_tree_children(32), 2);
        assert_eq!(vector_tree_children(272), 2);
        assert_eq!(vector_tree_child_size(4096), 256);
    }

    #[test]
    fn cad003_4gb_blob_header() {
        // The CAD003 example: 31 90 80 80 80 00 then 16 refs.
        let mut s = String::from("31 90 80 80 80 00");
        for i in 0..16 {
            s.push_str(&format!(" 20 {}", hex::encode([i as u8; 32])));
        }
        let c = ok(&s);
        assert_eq!(c.refs().len(), 16);
        assert_eq!(c.children().len(), 16);
    }
}
