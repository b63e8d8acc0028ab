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

/// The scanner failed; the error itself is in [`Scanner::take_error`].
/// Keeping the hot path's `Result` one register wide is measurably faster
/// than carrying a full `DecodeError` through every call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fail;

type R<T> = Result<T, Fail>;

/// Inline children nest at most this deep: every level adds at least two
/// bytes, so deeper nesting proves an inline child longer than 140 bytes.
const MAX_INLINE_DEPTH: u32 = (MAX_EMBEDDED_LEN / 2) as u32;

/// [`Scanner::kid`] results.
const KID_NIL: u8 = 0;
const KID_REF: u8 = 1;
const KID_INLINE: u8 = 2;

/// Walks cell encodings, checking every rule, recording where Refs are.
pub(crate) struct Scanner<'a, 'r> {
    buf: &'a [u8],
    pos: usize,
    /// Reads stop here (narrowed to bound a cell to `max_cell` bytes).
    end: usize,
    /// Absolute offset of `buf[0]` in the caller's input, for error offsets.
    base: usize,
    /// Hash for checking Map/Set key order; `None` when re-walking bytes
    /// that were already validated (no hashing needed).
    order: Option<HashAlg>,
    /// Positions (in `buf`) of each Ref's 32 hash bytes.
    refs: &'r mut Vec<usize>,
    /// Key hashes memo, created once a scan has hashed enough keys to pay
    /// for it; it lives as long as the scanner (a whole message).
    memo: Option<Box<KeyMemo>>,
    keys_hashed: u32,
    error: Option<DecodeError>,
    /// What each Ref in a tree-child position must point to, by the Ref's
    /// hash position (ascending): checked when the branch is in the message.
    expects: Vec<(usize, Expect)>,
}

/// The cell a tree child must be: its tag and, where fixed, its element
/// count (Vector) or byte length (Blob).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expect {
    pub tag: u8,
    pub count: Option<u64>,
}

impl Expect {
    /// Whether a (validated) cell encoding is what is expected.
    pub fn matches(&self, enc: &[u8]) -> bool {
        match enc.split_first() {
            Some((&t, rest)) if t == self.tag => {
                self.count.is_none_or(|c| super::vlq::decode(rest).is_ok_and(|(n, _)| n == c))
            }
            _ => false,
        }
    }
}

impl<'a, 'r> Scanner<'a, 'r> {
    /// A scanner at the start of `buf` (absolute offset `base`).
    pub fn new(buf: &'a [u8], base: usize, order: Option<HashAlg>, refs: &'r mut Vec<usize>) -> Self {
        Scanner {
            buf,
            pos: 0,
            end: buf.len(),
            base,
            order,
            refs,
            memo: None,
            keys_hashed: 0,
            error: None,
            expects: Vec::new(),
        }
    }

    /// Current position in `buf`.
    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Number of Refs recorded so far.
    #[inline]
    pub fn ref_count(&self) -> usize {
        self.refs.len()
    }

    /// Moves to `pos` (at most the end).
    #[inline]
    pub fn seek(&mut self, pos: usize) {
        self.pos = pos.min(self.end);
    }

    /// The error behind a [`Fail`] (a generic one if none was recorded).
    pub fn take_error(&mut self) -> DecodeError {
        self.error.take().unwrap_or(DecodeError::new(self.base + self.pos, K::Truncated))
    }

    #[cold]
    #[inline(never)]
    fn fail(&mut self, at: usize, kind: K) -> Fail {
        if self.error.is_none() {
            self.error = Some(DecodeError::new(self.base + at, kind));
        }
        Fail
    }

    #[inline]
    pub fn byte(&mut self) -> R<u8> {
        if self.pos < self.end {
            let b = self.buf[self.pos];
            self.pos += 1;
            Ok(b)
        } else {
            Err(self.fail(self.pos, K::Truncated))
        }
    }

    #[inline]
    fn peek(&mut self) -> R<u8> {
        if self.pos < self.end { Ok(self.buf[self.pos]) } else { Err(self.fail(self.pos, K::Truncated)) }
    }

    #[inline]
    pub fn skip(&mut self, n: u64) -> R<()> {
        if n <= (self.end - self.pos) as u64 {
            self.pos += n as usize;
            Ok(())
        } else {
            Err(self.fail(self.pos, K::Truncated))
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if n <= self.end - self.pos {
            let s = &self.buf[self.pos..self.pos + n];
            self.pos += n;
            Ok(s)
        } else {
            Err(self.fail(self.pos, K::Truncated))
        }
    }

    #[inline]
    pub fn u16_be(&mut self) -> R<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    pub fn vlq(&mut self) -> R<u64> {
        if self.pos < self.end && self.buf[self.pos] < 0x80 {
            let v = self.buf[self.pos];
            self.pos += 1;
            return Ok(u64::from(v));
        }
        match super::vlq::decode(&self.buf[self.pos..self.end]) {
            Ok((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            Err(e) => Err(self.fail(self.pos, e.into())),
        }
    }

    /// Scans one whole cell (any tag but Ref) starting at the cursor, reading
    /// at most `max` bytes. On success the cursor is at the cell's end.
    pub fn bounded_cell(&mut self, max: usize) -> R<()> {
        let start = self.pos;
        let outer_end = self.end;
        let window = start.saturating_add(max).min(outer_end);
        self.end = window;
        let res = self.cell(0);
        self.end = outer_end;
        if res.is_err() && window < outer_end && matches!(self.error, Some(DecodeError { kind: K::Truncated, .. })) {
            // Wanting more bytes than a window narrower than the input proves
            // the cell is longer than `max`.
            self.error = Some(DecodeError::new(self.base + start, K::CellTooLarge { max }));
        }
        res
    }

    /// Scans one whole cell (any tag but Ref) at inline nesting `depth`.
    pub fn cell(&mut self, depth: u32) -> R<()> {
        let start = self.pos;
        let t = self.byte()?;
        match t {
            tag::NIL | 0xb0..=0xbf => Ok(()),
            tag::LONG_0..=tag::LONG_8 => self.integer(start, usize::from(t - tag::LONG_0)),
            tag::BIGINT => {
                let n = self.vlq()?;
                if !(9..=4096).contains(&n) {
                    return Err(self.fail(start, K::BigIntLength(n)));
                }
                self.integer(start, n as usize)
            }
            tag::DOUBLE => self.skip(8),
            tag::REF => Err(self.fail(start, K::RefNotAllowed)),
            tag::STRING | tag::BLOB => self.blob_body(depth),
            tag::SYMBOL | tag::KEYWORD => {
                let n = self.byte()?;
                if n == 0 || n > 128 {
                    return Err(self.fail(start, K::NameLength(n)));
                }
                self.skip(u64::from(n))
            }
            0x3c..=0x3f => {
                let n = usize::from(t & 3) + 1;
                let b = self.take(n)?;
                if n > 1 && b[0] == 0 {
                    return Err(self.fail(start, K::NonMinimalChar));
                }
                let cp = b.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x));
                if cp > 0x10ffff {
                    return Err(self.fail(start, K::CharOutOfRange(cp)));
                }
                Ok(())
            }
            tag::VECTOR | tag::LIST | 0xd0..=0xdf => self.vector_body(depth),
            tag::MAP => self.hash_tree(start, depth, true),
            tag::SET => self.hash_tree(start, depth, false),
            tag::INDEX => self.index(start, depth),
            tag::SYNTAX => self.syntax(depth),
            tag::SIGNED => {
                self.skip(32 + 64)?;
                self.kid(depth).map(drop)
            }
            tag::SIGNED_SHORT => {
                self.skip(64)?;
                self.kid(depth).map(drop)
            }
            0xa0..=0xaf => {
                let mask = self.vlq()?;
                for _ in 0..mask.count_ones() {
                    self.nonnil_kid(depth)?;
                }
                Ok(())
            }
            0xc0..=0xcf => {
                self.kid(depth)?;
                self.kid(depth).map(drop)
            }
            0xe0..=0xef => self.vlq().map(drop),
            other => Err(self.fail(start, K::IllegalTag(other))),
        }
    }

    /// `n` bytes of big-endian two's complement, shortest form.
    #[inline]
    fn integer(&mut self, start: usize, n: usize) -> R<()> {
        let b = self.take(n)?;
        let redundant = match b {
            [] => false,
            [0x00] => true,
            [0x00, next, ..] => *next < 0x80,
            [0xff, next, ..] => *next >= 0x80,
            _ => false,
        };
        if redundant {
            return Err(self.fail(start, K::NonMinimalInteger));
        }
        Ok(())
    }

    /// One child of a cell at `depth`, validated; returns only its kind
    /// ([`KID_NIL`], [`KID_REF`], [`KID_INLINE`]) so the result stays in a
    /// register — callers that need positions read `pos` before and after.
    /// The commonest leaf cells are checked here without recursing; errors
    /// are exactly those [`Scanner::cell`] gives.
    #[inline(always)]
    fn kid(&mut self, depth: u32) -> R<u8> {
        let start = self.pos;
        let t = self.peek()?;
        match t {
            tag::NIL => {
                self.pos += 1;
                Ok(KID_NIL)
            }
            tag::REF => {
                self.pos += 1;
                self.skip(32)?;
                self.refs.push(start + 1);
                Ok(KID_REF)
            }
            tag::LONG_0..=tag::LONG_8 => {
                self.pos += 1;
                self.integer(start, usize::from(t - tag::LONG_0))?;
                Ok(KID_INLINE)
            }
            0xb0..=0xbf => {
                self.pos += 1;
                Ok(KID_INLINE)
            }
            tag::SYMBOL | tag::KEYWORD => {
                self.pos += 1;
                let n = self.byte()?;
                if n == 0 || n > 128 {
                    return Err(self.fail(start, K::NameLength(n)));
                }
                self.skip(u64::from(n))?;
                Ok(KID_INLINE)
            }
            0xe0..=0xef => {
                self.pos += 1;
                self.vlq()?;
                Ok(KID_INLINE)
            }
            _ => {
                self.embedded(start, depth)?;
                Ok(KID_INLINE)
            }
        }
    }

    /// As [`Scanner::kid`], rejecting nil.
    #[inline(always)]
    fn nonnil_kid(&mut self, depth: u32) -> R<u8> {
        let start = self.pos;
        match self.kid(depth)? {
            KID_NIL => Err(self.fail(start, K::NilChild)),
            k => Ok(k),
        }
    }

    /// An embedded child cell starting at `start`, inside a cell at
    /// `depth`: nested at most `MAX_INLINE_DEPTH` deep, at most
    /// `MAX_EMBEDDED_LEN` bytes long.
    #[inline(always)]
    fn embedded(&mut self, start: usize, depth: u32) -> R<()> {
        if depth >= MAX_INLINE_DEPTH {
            return Err(self.fail(start, K::InlineTooLarge));
        }
        self.cell(depth + 1)?;
        if self.pos - start > MAX_EMBEDDED_LEN {
            return Err(self.fail(start, K::InlineTooLarge));
        }
        Ok(())
    }

    /// A non-nil child that must be the cell `want` describes: checked now
    /// when inline, recorded for the branch walk when a Ref.
    fn typed_kid(&mut self, depth: u32, want: Expect) -> R<()> {
        let start = self.pos;
        match self.nonnil_kid(depth)? {
            KID_INLINE if !want.matches(&self.buf[start..self.pos]) => Err(self.fail(start, K::TreeChild)),
            KID_REF if self.order.is_some() => {
                self.expects.push((start + 1, want));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The tree-child expectations recorded so far (sorted by Ref position).
    pub fn take_expects(&mut self) -> Vec<(usize, Expect)> {
        std::mem::take(&mut self.expects)
    }

    /// One child of a cell at `depth`: nil, a Ref, or an embedded cell of
    /// at most 140 bytes, with its position.
    #[inline]
    pub fn child(&mut self, depth: u32) -> R<Slot> {
        let start = self.pos;
        match self.peek()? {
            tag::NIL => {
                self.pos += 1;
                Ok(Slot::Nil)
            }
            tag::REF => {
                self.pos += 1;
                let at = self.pos;
                self.skip(32)?;
                self.refs.push(at);
                Ok(Slot::Ref(at))
            }
            _ => {
                self.embedded(start, depth)?;
                Ok(Slot::Inline(start, self.pos))
            }
        }
    }

    /// Blob/String body: VLQ length, then the bytes (leaf) or 2-16 children (tree).
    fn blob_body(&mut self, depth: u32) -> R<()> {
        let n = self.vlq()?;
        if n <= BLOB_CHUNK {
            return self.skip(n);
        }
        let (k, child_len) = blob_tree_shape(n);
        for i in 0..k {
            // Children of Blob and String trees are Blobs.
            let len = if i + 1 < k { child_len } else { n - child_len * (k - 1) };
            self.typed_kid(depth, Expect { tag: tag::BLOB, count: Some(len) })?;
        }
        Ok(())
    }

    /// Vector body (also List and dense records): VLQ count, then leaf or tree form.
    fn vector_body(&mut self, depth: u32) -> R<()> {
        let count = self.vlq()?;
        if is_vector_leaf(count) {
            let m = vector_leaf_items(count);
            for _ in 0..m {
                self.kid(depth)?;
            }
            if count > 16 {
                // The prefix: a Vector of the first count - m elements.
                self.typed_kid(depth, Expect { tag: tag::VECTOR, count: Some(count - m) })?;
            }
        } else {
            let size = vector_tree_child_size(count);
            let n = vector_tree_children(count);
            for i in 0..n {
                let c = if i + 1 < n { size } else { count - size * (n - 1) };
                self.typed_kid(depth, Expect { tag: tag::VECTOR, count: Some(c) })?;
            }
        }
        Ok(())
    }

    /// Map (`with_values`) or Set body.
    fn hash_tree(&mut self, start: usize, depth: u32, with_values: bool) -> R<()> {
        let count = self.vlq()?;
        if count == 0 {
            return Ok(());
        }
        if count <= MAX_HASH_LEAF {
            let mut prev: Option<ValueId> = None;
            for _ in 0..count {
                let key_start = self.pos;
                let kind = self.kid(depth)?;
                if let (true, Some(alg)) = (count > 1, self.order) {
                    let key = match kind {
                        KID_NIL => Slot::Nil,
                        KID_REF => Slot::Ref(key_start + 1),
                        _ => Slot::Inline(key_start, self.pos),
                    };
                    let id = self.key_id(key, alg);
                    if prev.is_some_and(|p| p >= id) {
                        return Err(self.fail(start, K::KeyOrder));
                    }
                    prev = Some(id);
                }
                if with_values {
                    self.kid(depth)?;
                }
            }
            return Ok(());
        }
        let shift = self.byte()?;
        if shift > 63 {
            return Err(self.fail(start, K::TreeShift(shift)));
        }
        let n = self.u16_be()?.count_ones();
        if n < 2 {
            return Err(self.fail(start, K::TreeChildren(n)));
        }
        let want = Expect { tag: if with_values { tag::MAP } else { tag::SET }, count: None };
        // Inline children must be non-empty (a branch never is: an empty map
        // is 2 bytes) and, when every child is inline, their counts must add
        // up to this node's count.
        let mut inline_sum: Option<u64> = Some(0);
        for _ in 0..n {
            let at = self.pos;
            self.typed_kid(depth, want)?;
            if self.buf[at] == tag::REF {
                inline_sum = None;
                continue;
            }
            let c = super::vlq::decode(&self.buf[at + 1..self.pos]).map_or(0, |(c, _)| c);
            if c == 0 {
                return Err(self.fail(at, K::TreeChild));
            }
            inline_sum = inline_sum.map(|s| s.saturating_add(c));
        }
        if inline_sum.is_some_and(|s| s != count) {
            return Err(self.fail(start, K::TreeChild));
        }
        Ok(())
    }

    /// Index body (Convex 0.8 code: entry marker 0x00/0x80, depth byte < 64).
    fn index(&mut self, start: usize, depth: u32) -> R<()> {
        let count = self.vlq()?;
        match count {
            0 => return Ok(()),
            1 => {
                self.kid(depth)?;
                self.kid(depth)?;
                return Ok(());
            }
            _ => {}
        }
        let marker_pos = self.pos;
        let has_entry = match self.byte()? {
            0x00 => false,
            0x80 => true,
            m => return Err(self.fail(marker_pos, K::IndexEntryMarker(m))),
        };
        if has_entry {
            self.kid(depth)?;
            self.kid(depth)?;
        }
        let idx_depth = self.byte()?;
        if idx_depth >= 64 {
            return Err(self.fail(start, K::IndexDepth(idx_depth)));
        }
        let n = self.u16_be()?.count_ones();
        if n < if has_entry { 1 } else { 2 } {
            return Err(self.fail(start, K::TreeChildren(n)));
        }
        for _ in 0..n {
            self.typed_kid(depth, Expect { tag: tag::INDEX, count: None })?;
        }
        Ok(())
    }

    /// Syntax (Convex 0.8 code order): datum child, then the metadata cell,
    /// which is nil or a non-empty Map written out in full.
    fn syntax(&mut self, depth: u32) -> R<()> {
        self.kid(depth)?;
        let meta = self.pos;
        match self.peek()? {
            tag::NIL => {
                self.pos += 1;
                Ok(())
            }
            tag::MAP => {
                self.cell(depth + 1)?;
                // The map's count follows its tag; 0 would be the empty map.
                if self.buf.get(meta + 1) == Some(&0) {
                    return Err(self.fail(meta, K::SyntaxMeta));
                }
                Ok(())
            }
            _ => Err(self.fail(meta, K::SyntaxMeta)),
        }
    }

    /// The value ID a key slot stands for: a Ref carries it; nil and inline
    /// keys are hashed, through a per-scan memo (keys repeat a lot).
    fn key_id(&mut self, s: Slot, alg: HashAlg) -> ValueId {
        match s {
            Slot::Ref(p) => ValueId(ref_bytes(self.buf, p)),
            Slot::Nil => alg.hash(&[tag::NIL]),
            Slot::Inline(a, b) => {
                self.keys_hashed += 1;
                if self.keys_hashed < KeyMemo::AFTER {
                    return alg.hash(&self.buf[a..b]);
                }
                let memo = self.memo.get_or_insert_with(|| Box::new(KeyMemo::new()));
                memo.get(self.buf, a, b, alg)
            }
        }
    }
}

/// Remembers the value IDs of recently hashed keys, by key bytes. Misses
/// and collisions only cost a hash; hits are checked byte for byte.
struct KeyMemo {
    slots: Vec<(u32, u32, ValueId)>,
}

impl KeyMemo {
    const SLOTS: usize = 2048;
    /// Keys hashed before the memo is worth allocating.
    const AFTER: u32 = 64;

    fn new() -> Self {
        KeyMemo { slots: vec![(0, 0, ValueId([0; 32])); Self::SLOTS] }
    }

    fn get(&mut self, buf: &[u8], a: usize, b: usize, alg: HashAlg) -> ValueId {
        let key = &buf[a..b];
        // FNV-1a: a few nanoseconds for keys of a few bytes.
        let h = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3));
        let slot = &mut self.slots[(h as usize) % Self::SLOTS];
        let (sa, sb) = (slot.0 as usize, slot.1 as usize);
        if sb > sa && buf.get(sa..sb) == Some(key) {
            return slot.2;
        }
        let id = alg.hash(key);
        if let (Ok(a32), Ok(b32)) = (u32::try_from(a), u32::try_from(b)) {
            *slot = (a32, b32, id);
        }
        id
    }
}

/// The 32 bytes of a Ref the scanner already bounds-checked.
pub(crate) fn ref_bytes(buf: &[u8], pos: usize) -> [u8; 32] {
    let mut id = [0u8; 32];
    id.copy_from_slice(&buf[pos..pos + 32]);
    id
}

/// For a leaf Blob encoding (already validated), its byte length.
pub(crate) fn blob_leaf_len(enc: &[u8]) -> Option<usize> {
    match enc {
        [tag::BLOB, rest @ ..] => match super::vlq::decode(rest) {
            Ok((n, _)) if n <= BLOB_CHUNK => Some(n as usize),
            _ => None,
        },
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

/// Scans the single cell at `buf[start..]`, bounded by `max_cell`, pushing
/// Ref positions to `refs`. Returns its end. Error offsets are positions in `buf`.
#[inline]
pub(crate) fn scan(
    buf: &[u8],
    start: usize,
    cfg: &WireConfig,
    refs: &mut Vec<usize>,
) -> Result<(usize, Vec<(usize, Expect)>), DecodeError> {
    let mut s = Scanner::new(buf, 0, Some(cfg.hash), refs);
    s.seek(start);
    if s.bounded_cell(cfg.max_cell).is_err() {
        return Err(s.take_error());
    }
    Ok((s.pos(), s.take_expects()))
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
        let (n, _) = scan(&enc, 0, cfg, &mut refs)?;
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
        let mut s = Scanner::new(&self.enc, 0, None, &mut refs);
        // Already validated: a rescan cannot fail; on the impossible error no refs are reported.
        if s.cell(0).is_err() {
            return Vec::new();
        }
        refs.into_iter().map(|p| ValueId(ref_bytes(&self.enc, p))).collect()
    }

    /// The signed 64-bit value, if this is a Long (0x10-0x18).
    pub fn as_long(&self) -> Option<i64> {
        long_value(&self.enc)
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
        let mut s = Scanner::new(&self.enc, 0, None, &mut refs);
        s.seek(1 + used);
        let mut out = Vec::with_capacity(vector_leaf_items(count) as usize);
        for _ in 0..vector_leaf_items(count) {
            let slot = s.child(0).ok()?;
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

/// Calls `f` for every child slot of a validated cell, one level deep, in
/// order. Returns `None` only if the bytes were not a valid cell after all.
pub(crate) fn walk_children(enc: &[u8], mut f: impl FnMut(Slot)) -> Option<()> {
    let mut refs = Vec::new();
    let mut s = Scanner::new(enc, 0, None, &mut refs);
    let t = s.byte().ok()?;
    let mut next = |s: &mut Scanner<'_, '_>| -> Option<()> {
        f(s.child(0).ok()?);
        Some(())
    };
    match t {
        tag::STRING | tag::BLOB => {
            let n = s.vlq().ok()?;
            if n > BLOB_CHUNK {
                for _ in 0..blob_tree_shape(n).0 {
                    next(&mut s)?;
                }
            }
        }
        tag::VECTOR | tag::LIST | 0xd0..=0xdf => {
            let count = s.vlq().ok()?;
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
            let count = s.vlq().ok()?;
            if count <= MAX_HASH_LEAF {
                let per = if t == tag::MAP { 2 } else { 1 };
                for _ in 0..count * per {
                    next(&mut s)?;
                }
            } else {
                s.byte().ok()?;
                for _ in 0..s.u16_be().ok()?.count_ones() {
                    next(&mut s)?;
                }
            }
        }
        tag::INDEX => {
            let count = s.vlq().ok()?;
            if count == 1 {
                next(&mut s)?;
                next(&mut s)?;
            } else if count > 1 {
                if s.byte().ok()? == 0x80 {
                    next(&mut s)?;
                    next(&mut s)?;
                }
                s.byte().ok()?;
                for _ in 0..s.u16_be().ok()?.count_ones() {
                    next(&mut s)?;
                }
            }
        }
        tag::SYNTAX => {
            next(&mut s)?;
            // The metadata is a whole cell, reported as an inline child.
            let a = s.pos();
            s.cell(0).ok()?;
            let b = s.pos();
            f(if b - a == 1 { Slot::Nil } else { Slot::Inline(a, b) });
        }
        tag::SIGNED => {
            s.skip(96).ok()?;
            next(&mut s)?;
        }
        tag::SIGNED_SHORT => {
            s.skip(64).ok()?;
            next(&mut s)?;
        }
        0xa0..=0xaf => {
            for _ in 0..s.vlq().ok()?.count_ones() {
                next(&mut s)?;
            }
        }
        0xc0..=0xcf => {
            next(&mut s)?;
            next(&mut s)?;
        }
        _ => {}
    }
    Some(())
}

/// For a validated leaf Vector/List/record encoding: its tag, element count,
/// and the position where its first child starts.
pub(crate) fn seq_head(enc: &[u8]) -> Option<(u8, u64, usize)> {
    let (&t, rest) = enc.split_first()?;
    if !matches!(t, tag::VECTOR | tag::LIST | 0xd0..=0xdf) {
        return None;
    }
    let (count, used) = super::vlq::decode(rest).ok()?;
    is_vector_leaf(count).then_some((t, count, 1 + used))
}

/// The first `N` child slots of a validated leaf sequence whose children
/// start at `at` (positions relative to `enc`).
pub(crate) fn seq_slots<const N: usize>(enc: &[u8], at: usize) -> Option<[Slot; N]> {
    let mut refs = Vec::new();
    let mut s = Scanner::new(enc, 0, None, &mut refs);
    s.seek(at);
    let mut out = [Slot::Nil; N];
    for slot in &mut out {
        *slot = s.child(0).ok()?;
    }
    Some(out)
}

/// The Long held by the cell that starts at `enc[at]`, if it is one.
pub(crate) fn long_at(enc: &[u8], at: usize) -> Option<i64> {
    let t = *enc.get(at)?;
    if !(tag::LONG_0..=tag::LONG_8).contains(&t) {
        return None;
    }
    long_value(enc.get(at..at + 1 + usize::from(t - tag::LONG_0))?)
}

/// The value of a Long encoding (0x10-0x18).
pub(crate) fn long_value(enc: &[u8]) -> Option<i64> {
    let (&t, b) = enc.split_first()?;
    if !(tag::LONG_0..=tag::LONG_8).contains(&t) || b.len() != usize::from(t - tag::LONG_0) {
        return None;
    }
    if b.is_empty() {
        return Some(0);
    }
    let init: i64 = if b[0] & 0x80 != 0 { -1 } else { 0 };
    Some(b.iter().fold(init, |acc, &x| (acc << 8) | i64::from(x)))
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
