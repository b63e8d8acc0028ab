//! A content-addressed cell store bounded in bytes: least recently used
//! cells go first.

use bytes::Bytes;
use lru::LruCache;

use crate::wire::{Cell, ValueId};

/// Cells by value ID, at most `max_bytes` of encodings (plus a fixed
/// per-entry overhead counted as [`ENTRY_OVERHEAD`]).
pub struct CellStore {
    cells: LruCache<ValueId, Bytes>,
    bytes: usize,
    max_bytes: usize,
}

/// Bytes counted for each entry beyond its encoding (key, links, header).
pub const ENTRY_OVERHEAD: usize = 96;

impl CellStore {
    /// An empty store holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> CellStore {
        CellStore { cells: LruCache::unbounded(), bytes: 0, max_bytes }
    }

    /// Adds a cell (the caller has checked that `id` is its value ID), or
    /// marks it used if present. Evicts least recently used cells to fit.
    pub fn insert(&mut self, id: ValueId, cell: Bytes) {
        if self.cells.get(&id).is_some() {
            return;
        }
        let size = cell.len() + ENTRY_OVERHEAD;
        if size > self.max_bytes {
            return;
        }
        while self.bytes + size > self.max_bytes {
            match self.cells.pop_lru() {
                Some((_, c)) => self.bytes -= c.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
        self.bytes += size;
        self.cells.put(id, cell);
    }

    /// The cell with this value ID (marks it used).
    pub fn get(&mut self, id: &ValueId) -> Option<Cell> {
        self.cells.get(id).map(|b| Cell::from_validated(b.clone()))
    }

    /// Whether the store holds `id` (does not mark it used).
    pub fn contains(&self, id: &ValueId) -> bool {
        self.cells.contains(id)
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Bytes counted against the limit.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
