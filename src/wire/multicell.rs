//! Multi-cell encoding (CAD015): `top cell ‖ (VLQ length ‖ branch cell)*`.
//!
//! The top cell has no length prefix; its end is found by parsing it. Branch
//! cells are indexed by value ID. Rules (documented in `docs/protocol.md`):
//! - each branch's length prefix equals exactly what parsing it consumes;
//! - a branch is never nil and never 140 bytes or less (those are embedded);
//! - a branch may appear only once (duplicates are rejected);
//! - every branch must be reachable from the top cell through Refs
//!   (unreferenced branches are rejected);
//! - Refs that no branch satisfies make the message *partial*; their value
//!   IDs are reported by [`MultiCell::missing`].
//!
//! Decoding is zero-copy: cells are `Bytes` views into the input.

use bytes::{BufMut, Bytes};

use super::cell::{self, Cell, Expect, MAX_EMBEDDED_LEN, Scanner, WireConfig, ref_bytes, tag};
use super::error::{DecodeError, DecodeErrorKind as K};
use super::hash::{HashAlg, ValueId};
use super::vlq;

/// One branch cell of a decoded message.
#[derive(Debug, Clone)]
struct Branch {
    id: ValueId,
    start: usize,
    end: usize,
}

/// A decoded, validated multi-cell encoding.
#[derive(Debug, Clone)]
pub struct MultiCell {
    /// The buffer the encoding lies in; it starts at `start` (a message keeps
    /// its type byte in front, so decoding needs no re-slicing).
    data: Bytes,
    start: usize,
    top_end: usize,
    /// Branches and missing refs; `None` for a single cell without Refs (the
    /// common case stays small and allocation-free).
    index: Option<Box<Index>>,
}

#[derive(Debug, Clone, Default)]
struct Index {
    /// Sorted by value ID (binary-searchable).
    branches: Vec<Branch>,
    /// Sorted, without duplicates.
    missing: Vec<ValueId>,
}

impl MultiCell {
    /// Decodes and validates a multi-cell encoding.
    pub fn decode(data: Bytes, cfg: &WireConfig) -> Result<MultiCell, DecodeError> {
        Self::decode_from(data, 0, cfg)
    }

    /// As [`MultiCell::decode`] for the encoding at `data[start..]`; error
    /// offsets are positions in `data`.
    #[inline]
    pub(crate) fn decode_from(data: Bytes, start: usize, cfg: &WireConfig) -> Result<MultiCell, DecodeError> {
        let mut refs: Vec<usize> = Vec::new();
        let (top_end, expects) = cell::scan(&data, start, cfg, &mut refs)?;
        if top_end == data.len() && refs.is_empty() {
            // Single cell, no refs: the common case allocates nothing more.
            return Ok(MultiCell { data, start, top_end, index: None });
        }
        Self::decode_branches(data, start, top_end, refs, expects, cfg)
    }

    /// The multi-cell part: branch cells after the top, reachability, missing refs.
    #[inline(never)]
    fn decode_branches(
        data: Bytes,
        start: usize,
        top_end: usize,
        mut refs: Vec<usize>,
        mut expects: Vec<(usize, Expect)>,
        cfg: &WireConfig,
    ) -> Result<MultiCell, DecodeError> {
        let top_refs = refs.len();
        // One scanner for all branches, so its key-hash memo serves every
        // cell (Map keys repeat across branches).
        let mut s = Scanner::new(&data, 0, Some(cfg.hash), &mut refs);

        // Branch cells, in wire order. `ref_ranges[i]` is the slice of `refs`
        // holding branch i's Ref positions; `headers[i]` its length prefix offset.
        let mut branches: Vec<Branch> = Vec::new();
        let mut ref_ranges: Vec<(usize, usize)> = Vec::new();
        let mut headers: Vec<usize> = Vec::new();
        let mut pos = top_end;
        while pos < data.len() {
            if branches.len() == cfg.max_branches {
                return Err(DecodeError::new(pos, K::TooManyBranches { max: cfg.max_branches }));
            }
            let hdr = pos;
            let (declared, n) = vlq::decode(&data[pos..]).map_err(|e| DecodeError::new(pos, e.into()))?;
            pos += n;
            if declared > cfg.max_cell as u64 {
                return Err(DecodeError::new(hdr, K::CellTooLarge { max: cfg.max_cell }));
            }
            if declared > (data.len() - pos) as u64 {
                return Err(DecodeError::new(data.len(), K::Truncated));
            }
            let refs_before = s.ref_count();
            s.seek(pos);
            if s.bounded_cell(cfg.max_cell).is_err() {
                return Err(s.take_error());
            }
            let parsed = s.pos() - pos;
            if parsed as u64 != declared {
                return Err(DecodeError::new(hdr, K::BranchLengthMismatch { declared, parsed }));
            }
            if parsed <= MAX_EMBEDDED_LEN {
                let kind = if data[pos] == tag::NIL { K::NilBranch } else { K::EmbeddedBranch { len: parsed } };
                return Err(DecodeError::new(pos, kind));
            }
            let end = pos + parsed;
            branches.push(Branch { id: cfg.hash.hash(&data[pos..end]), start: pos, end });
            ref_ranges.push((refs_before, s.ref_count()));
            headers.push(hdr);
            pos = end;
        }
        expects.extend(s.take_expects());
        drop(s);

        // Index by value ID; duplicates are rejected (report the later one).
        let mut order: Vec<u32> = (0..branches.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| branches[a as usize].id.cmp(&branches[b as usize].id).then(a.cmp(&b)));
        for w in order.windows(2) {
            if branches[w[0] as usize].id == branches[w[1] as usize].id {
                return Err(DecodeError::new(headers[w[1] as usize], K::DuplicateBranch));
            }
        }
        let find = |id: &ValueId| order.binary_search_by(|&i| branches[i as usize].id.cmp(id)).ok();

        // Walk from the top cell: mark reachable branches, collect missing refs.
        let mut reached = vec![false; branches.len()];
        let mut missing = Vec::new();
        let mut stack: Vec<usize> = refs[..top_refs].to_vec();
        while let Some(p) = stack.pop() {
            let id = ValueId(ref_bytes(&data, p));
            match find(&id) {
                Some(k) => {
                    let i = order[k] as usize;
                    // A tree child or prefix must be the cell its parent requires.
                    if let Ok(e) = expects.binary_search_by_key(&p, |(at, _)| *at) {
                        if !expects[e].1.matches(&data[branches[i].start..branches[i].end]) {
                            return Err(DecodeError::new(p - 1, K::TreeChild));
                        }
                    }
                    if !reached[i] {
                        reached[i] = true;
                        let (a, b) = ref_ranges[i];
                        stack.extend_from_slice(&refs[a..b]);
                    }
                }
                None => missing.push(id),
            }
        }
        if let Some(i) = reached.iter().position(|r| !r) {
            return Err(DecodeError::new(headers[i], K::UnreferencedBranch));
        }
        missing.sort_unstable();
        missing.dedup();

        let mut sorted = Vec::with_capacity(branches.len());
        for &i in &order {
            sorted.push(branches[i as usize].clone());
        }
        Ok(MultiCell { data, start, top_end, index: Some(Box::new(Index { branches: sorted, missing })) })
    }

    /// The top cell.
    pub fn top(&self) -> Cell {
        Cell::from_validated(self.data.slice(self.start..self.top_end))
    }

    /// The top cell's encoding, borrowed.
    pub(crate) fn top_slice(&self) -> &[u8] {
        &self.data[self.start..self.top_end]
    }

    /// The top cell's value ID (computed on demand).
    pub fn top_id(&self, alg: HashAlg) -> ValueId {
        alg.hash(self.top_slice())
    }

    /// The buffer the encoding lies in, including anything before `start`
    /// (for a message: its type byte).
    pub(crate) fn buffer(&self) -> &Bytes {
        &self.data
    }

    /// The whole multi-cell encoding this was decoded from.
    pub fn bytes(&self) -> Bytes {
        self.data.slice(self.start..)
    }

    fn branch_list(&self) -> &[Branch] {
        self.index.as_ref().map_or(&[], |i| &i.branches)
    }

    /// Number of branch cells.
    pub fn branch_count(&self) -> usize {
        self.branch_list().len()
    }

    /// The branch cell with this value ID, if the message carries it.
    pub fn branch(&self, id: &ValueId) -> Option<Cell> {
        let list = self.branch_list();
        let i = list.binary_search_by(|b| b.id.cmp(id)).ok()?;
        let b = &list[i];
        Some(Cell::from_validated(self.data.slice(b.start..b.end)))
    }

    /// Branch cells with their value IDs, ordered by value ID.
    pub fn branches(&self) -> impl Iterator<Item = (ValueId, Cell)> + '_ {
        self.branch_list().iter().map(|b| (b.id, Cell::from_validated(self.data.slice(b.start..b.end))))
    }

    /// Value IDs referenced but not carried (sorted). Non-empty means partial.
    pub fn missing(&self) -> &[ValueId] {
        self.index.as_ref().map_or(&[], |i| &i.missing)
    }

    /// True if some referenced branch is not in the message.
    pub fn is_partial(&self) -> bool {
        !self.missing().is_empty()
    }

    /// Smallest and largest cell encoding (top and branches), in bytes.
    pub fn cell_size_range(&self) -> (usize, usize) {
        self.branch_list()
            .iter()
            .map(|b| b.end - b.start)
            .fold((self.top_end - self.start, self.top_end - self.start), |(lo, hi), n| (lo.min(n), hi.max(n)))
    }

    /// Follows a child slot: an inline cell as is, a Ref through the branches.
    /// `None` for nil and for Refs the message does not carry.
    pub fn resolve(&self, child: &cell::Child) -> Option<Cell> {
        match child {
            cell::Child::Nil => None,
            cell::Child::Inline(c) => Some(c.clone()),
            cell::Child::Ref(id) => self.branch(id),
        }
    }
}

impl MultiCell {
    /// The bytes of a Blob or String child, leaf or tree: a view when the
    /// data is one leaf, otherwise the leaves joined in order. `None` for
    /// other types, and when a leaf is missing from the message (partial).
    pub fn blob(&self, child: &cell::Child) -> Option<Bytes> {
        let c = self.resolve(child)?;
        let t = c.tag();
        if t != cell::tag::BLOB && t != cell::tag::STRING {
            return None;
        }
        if let Some(leaf) = c.as_blob_leaf().or_else(|| c.as_string_leaf()) {
            return Some(leaf);
        }
        let (n, _) = super::vlq::decode(&c.encoding()[1..]).ok()?;
        let mut out = bytes::BytesMut::with_capacity(usize::try_from(n).ok()?.min(self.data.len()));
        self.append_blob(&c, &mut out, 0)?;
        (out.len() as u64 == n).then(|| out.freeze())
    }

    fn append_blob(&self, c: &Cell, out: &mut bytes::BytesMut, depth: u32) -> Option<()> {
        // A blob tree of 2^63 bytes is 13 levels deep.
        if depth > 16 {
            return None;
        }
        if let Some(leaf) = c.as_blob_leaf() {
            out.extend_from_slice(&leaf);
            return Some(());
        }
        for ch in c.children() {
            let child = self.resolve(&ch)?;
            if child.tag() != cell::tag::BLOB {
                return None;
            }
            self.append_blob(&child, out, depth + 1)?;
        }
        Some(())
    }
}

/// Writes a multi-cell encoding: the top cell, then each branch with its
/// VLQ length. The caller supplies valid cells (e.g. from the encoder).
pub fn write_multicell<'a>(out: &mut impl BufMut, top: &[u8], branches: impl IntoIterator<Item = &'a [u8]>) {
    out.put_slice(top);
    for b in branches {
        vlq::write_len(out, b.len());
        out.put_slice(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> WireConfig {
        WireConfig::default()
    }

    /// A blob cell of `n` bytes (n <= 4096) filled with `fill`.
    fn blob(n: usize, fill: u8) -> Vec<u8> {
        let mut v = vec![tag::BLOB];
        vlq::write_len(&mut v, n);
        v.extend(std::iter::repeat_n(fill, n));
        v
    }

    fn vec_of_refs(ids: &[ValueId]) -> Vec<u8> {
        let mut v = vec![tag::VECTOR, ids.len() as u8];
        for id in ids {
            v.push(tag::REF);
            v.extend_from_slice(&id.0);
        }
        v
    }

    fn encode(top: &[u8], branches: &[&[u8]]) -> Bytes {
        let mut out = Vec::new();
        write_multicell(&mut out, top, branches.iter().copied());
        Bytes::from(out)
    }

    #[test]
    fn complete_and_partial() {
        let a = blob(200, 1);
        let b = blob(300, 2);
        let ida = HashAlg::Blake3.hash(&a);
        let idb = HashAlg::Blake3.hash(&b);
        let top = vec_of_refs(&[ida, idb]);
        let full = MultiCell::decode(encode(&top, &[&b, &a]), &cfg()).unwrap();
        assert_eq!(full.branch_count(), 2);
        assert!(!full.is_partial());
        assert_eq!(full.branch(&ida).unwrap().encoding().as_ref(), &a[..]);
        assert_eq!(full.cell_size_range(), (top.len(), 303));

        let partial = MultiCell::decode(encode(&top, &[&a]), &cfg()).unwrap();
        assert_eq!(partial.missing(), &[idb]);
    }

    #[test]
    fn duplicate_and_unreferenced_are_rejected() {
        let a = blob(200, 1);
        let b = blob(300, 2);
        let ida = HashAlg::Blake3.hash(&a);
        let top = vec_of_refs(&[ida]);
        let dup = encode(&top, &[&a, &a]);
        let e = MultiCell::decode(dup, &cfg()).unwrap_err();
        assert_eq!(e.kind, K::DuplicateBranch);
        assert_eq!(e.offset, top.len() + 2 + a.len());
        let extra = MultiCell::decode(encode(&top, &[&a, &b]), &cfg()).unwrap_err();
        assert_eq!(extra.kind, K::UnreferencedBranch);
    }

    #[test]
    fn branch_rules() {
        let a = blob(200, 1);
        let top = vec_of_refs(&[HashAlg::Blake3.hash(&a)]);
        // length prefix one too large / too small
        let mut m = top.clone();
        vlq::write_len(&mut m, a.len() + 1);
        m.extend_from_slice(&a);
        m.push(0);
        let e = MultiCell::decode(Bytes::from(m), &cfg()).unwrap_err();
        assert_eq!(e.kind, K::BranchLengthMismatch { declared: 204, parsed: 203 });
        // an embedded-size branch
        let small = blob(10, 3);
        let top2 = vec_of_refs(&[HashAlg::Blake3.hash(&small)]);
        let e = MultiCell::decode(encode(&top2, &[&small]), &cfg()).unwrap_err();
        assert_eq!(e.kind, K::EmbeddedBranch { len: 12 });
    }
}
