//! Completing partial messages: a message whose branch cells are not all
//! carried is held while the missing value IDs are fetched from its
//! sender (MISSING_DATA → DATA), then delivered whole — or dropped with a
//! reason (the sender lacks a cell, too large, out of time).

use std::collections::{HashMap, HashSet};

use bytes::{BufMut, BytesMut};

use super::store::CellStore;
use crate::handshake::NodeId;
use crate::proxy::EngineId;
use crate::wire::{Cell, Message, ValueId, WireConfig, vlq};

/// Value IDs asked for in one MISSING_DATA (the format allows 128; 16
/// keeps each answer's cell list a single leaf Vector).
pub const REQUEST_CHUNK: usize = 16;

/// Why a partial message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Incomplete {
    /// Its cells did not all arrive in time.
    #[error("missing cells did not arrive in time")]
    Timeout,
    /// The sender answered that it does not hold a cell.
    #[error("the sender does not hold a missing cell")]
    Absent,
    /// Completing it would exceed the branch-cell or byte limits.
    #[error("the completed message would exceed the codec limits")]
    TooLarge,
    /// Too many partial messages are already waiting.
    #[error("too many partial messages waiting")]
    Busy,
}

/// What the assembler asks for or produces.
#[derive(Debug, Clone)]
pub enum Assembled {
    /// Send MISSING_DATA `[id, ids]` to `to`.
    Request {
        /// The sender of the partial message.
        to: NodeId,
        /// The engine that sent it (the request goes there).
        engine: EngineId,
        /// The MISSING_DATA message ID.
        id: u64,
        /// At most 128 value IDs.
        ids: Vec<ValueId>,
    },
    /// A message is complete: deliver it.
    Ready {
        /// Its sender.
        from: NodeId,
        /// The sending engine.
        sender: EngineId,
        /// The whole message (every branch carried).
        msg: Message,
        /// It arrived partial and was completed here.
        completed: bool,
    },
    /// A partial message was dropped.
    Failed {
        /// Its sender.
        from: NodeId,
        /// Its type byte.
        ty: u8,
        /// Why.
        why: Incomplete,
    },
}

struct Pending {
    from: NodeId,
    sender: EngineId,
    msg: Message,
    /// Cells gathered so far (not carried by the message).
    have: HashMap<ValueId, Cell>,
    have_bytes: usize,
    /// Still missing.
    need: HashSet<ValueId>,
    deadline_ms: u64,
}

/// Partial messages waiting for cells, per shard.
pub struct Assembler {
    cfg: WireConfig,
    max_pending: usize,
    max_bytes: usize,
    timeout_ms: u64,
    pending: HashMap<u64, Pending>,
    next_slot: u64,
    /// MISSING_DATA requests in flight: id → (peer, the IDs asked for).
    requests: HashMap<u64, (NodeId, Vec<ValueId>)>,
    next_request: u64,
    out: Vec<Assembled>,
}

impl Assembler {
    /// An assembler holding at most `max_pending` messages of at most
    /// `max_bytes` each, for at most `timeout_ms`.
    pub fn new(cfg: WireConfig, max_pending: usize, max_bytes: usize, timeout_ms: u64) -> Assembler {
        Assembler {
            cfg,
            max_pending,
            max_bytes,
            timeout_ms,
            pending: HashMap::new(),
            next_slot: 1,
            requests: HashMap::new(),
            next_request: 1,
            out: Vec::new(),
        }
    }

    /// A message arrived. A whole one is ready at once; a partial one is
    /// completed from the store or held while its cells are fetched.
    pub fn add(&mut self, now: u64, from: NodeId, sender: EngineId, msg: Message, store: &mut CellStore) {
        if !msg.payload().is_partial() {
            self.out.push(Assembled::Ready { from, sender, msg, completed: false });
            return;
        }
        let ty = msg.ty().to_byte();
        if self.pending.len() >= self.max_pending {
            self.out.push(Assembled::Failed { from, ty, why: Incomplete::Busy });
            return;
        }
        let need: HashSet<ValueId> = msg.payload().missing().iter().copied().collect();
        let mut p = Pending {
            from,
            sender,
            msg,
            have: HashMap::new(),
            have_bytes: 0,
            need,
            deadline_ms: now + self.timeout_ms,
        };
        let slot = self.next_slot;
        self.next_slot += 1;
        match self.advance(&mut p, store) {
            Err(why) => self.out.push(Assembled::Failed { from, ty, why }),
            Ok(true) => self.finish(p),
            Ok(false) => {
                let ids: Vec<ValueId> = p.need.iter().copied().collect();
                self.request(from, sender, ids);
                self.pending.insert(slot, p);
            }
        }
    }

    /// Moves what the store now holds from `need` to `have`, following the
    /// new cells' own refs. `Ok(true)` when nothing is missing.
    fn advance(&self, p: &mut Pending, store: &mut CellStore) -> Result<bool, Incomplete> {
        let mut stack: Vec<ValueId> = p.need.drain().collect();
        while let Some(id) = stack.pop() {
            if p.have.contains_key(&id) || p.msg.payload().branch(&id).is_some() {
                continue;
            }
            let Some(cell) = store.get(&id) else {
                p.need.insert(id);
                continue;
            };
            p.have_bytes += cell.len();
            if p.have.len() + p.msg.payload().branch_count() >= self.cfg.max_branches
                || p.have_bytes + p.msg.bytes().len() > self.max_bytes
            {
                return Err(Incomplete::TooLarge);
            }
            stack.extend(cell.refs());
            p.have.insert(id, cell);
        }
        Ok(p.need.is_empty())
    }

    fn request(&mut self, to: NodeId, engine: EngineId, ids: Vec<ValueId>) {
        // 16 per request keeps the DATA answer's list a leaf Vector.
        for chunk in ids.chunks(REQUEST_CHUNK) {
            let id = self.next_request;
            self.next_request += 1;
            self.requests.insert(id, (to, chunk.to_vec()));
            self.out.push(Assembled::Request { to, engine, id, ids: chunk.to_vec() });
        }
    }

    /// Rebuilds the whole message: its own bytes plus the gathered cells.
    fn finish(&mut self, p: Pending) {
        let ty = p.msg.ty().to_byte();
        let extra: usize = p.have.values().map(|c| c.len() + vlq::encoded_len(c.len() as u64)).sum();
        let mut b = BytesMut::with_capacity(p.msg.bytes().len() + extra);
        b.put_slice(p.msg.bytes());
        for c in p.have.values() {
            vlq::write_len(&mut b, c.len());
            b.put_slice(c.encoding());
        }
        match Message::decode(b.freeze(), &self.cfg) {
            Ok(msg) if !msg.payload().is_partial() => {
                self.out.push(Assembled::Ready { from: p.from, sender: p.sender, msg, completed: true })
            }
            _ => self.out.push(Assembled::Failed { from: p.from, ty, why: Incomplete::TooLarge }),
        }
    }

    /// A DATA answer from `from` to request `id`: `cells[i]` answers the
    /// i-th requested ID (`None`: the sender does not hold it). Cells go to
    /// the store (when their hash matches); waiting messages advance.
    /// Returns `false` if `id` is not a request of ours to `from`.
    pub fn on_data(
        &mut self,
        now: u64,
        from: NodeId,
        id: u64,
        cells: Vec<Option<Cell>>,
        store: &mut CellStore,
    ) -> bool {
        let Some((to, asked)) = self.requests.get(&id) else { return false };
        if *to != from {
            return false;
        }
        let asked = asked.clone();
        self.requests.remove(&id);
        let mut absent = HashSet::new();
        for (i, want) in asked.iter().enumerate() {
            match cells.get(i) {
                Some(Some(c)) if c.value_id(self.cfg.hash) == *want => store.insert(*want, c.encoding().clone()),
                _ => {
                    absent.insert(*want);
                }
            }
        }
        self.progress(now, from, &absent, store);
        true
    }

    /// Advances the messages waiting on `from`; fails those needing an
    /// absent cell.
    fn progress(&mut self, _now: u64, from: NodeId, absent: &HashSet<ValueId>, store: &mut CellStore) {
        let slots: Vec<u64> = self.pending.iter().filter(|(_, p)| p.from == from).map(|(s, _)| *s).collect();
        for slot in slots {
            let Some(mut p) = self.pending.remove(&slot) else { continue };
            let ty = p.msg.ty().to_byte();
            if p.need.iter().any(|n| absent.contains(n)) {
                self.out.push(Assembled::Failed { from, ty, why: Incomplete::Absent });
                continue;
            }
            let before: HashSet<ValueId> = p.need.clone();
            match self.advance(&mut p, store) {
                Err(why) => self.out.push(Assembled::Failed { from, ty, why }),
                Ok(true) => self.finish(p),
                Ok(false) => {
                    // Ask for what was newly found missing (inside new cells).
                    let fresh: Vec<ValueId> = p.need.difference(&before).copied().collect();
                    if !fresh.is_empty() {
                        self.request(from, p.sender, fresh);
                    }
                    self.pending.insert(slot, p);
                }
            }
        }
    }

    /// Drops messages past their time.
    pub fn on_timeout(&mut self, now: u64) {
        let late: Vec<u64> = self.pending.iter().filter(|(_, p)| p.deadline_ms <= now).map(|(s, _)| *s).collect();
        for slot in late {
            if let Some(p) = self.pending.remove(&slot) {
                let ty = p.msg.ty().to_byte();
                self.out.push(Assembled::Failed { from: p.from, ty, why: Incomplete::Timeout });
            }
        }
        if self.pending.is_empty() {
            self.requests.clear();
        }
    }

    /// The earliest deadline of a waiting message.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.pending.values().map(|p| p.deadline_ms).min()
    }

    /// Messages waiting now.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// What to act on.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Assembled> {
        self.out.drain(..)
    }
}

/// A DATA message's ID and cells (`None` where the sender lacks one).
/// `None` if the cell list is not a leaf Vector (more than 16 entries: an
/// answer to somebody else's larger request).
pub fn data_cells(msg: &Message) -> Option<(u64, Vec<Option<Cell>>)> {
    let id = msg.id()?;
    let list = msg.element(1)?;
    let (_, items) = list.seq_leaf()?;
    Some((
        id,
        items
            .iter()
            .map(|c| match c {
                crate::wire::Child::Nil => None,
                other => msg.payload().resolve(other),
            })
            .collect(),
    ))
}
