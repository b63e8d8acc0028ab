//! Duplicate suppression and belief rate limiting.

use std::collections::{HashSet, VecDeque};

use crate::wire::ValueId;

/// The most recent `capacity` value IDs seen (oldest forgotten first).
pub struct RecentIds {
    set: HashSet<ValueId>,
    order: VecDeque<ValueId>,
    capacity: usize,
}

impl RecentIds {
    /// Remembers at most `capacity` IDs.
    pub fn new(capacity: usize) -> RecentIds {
        RecentIds { set: HashSet::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// Whether `id` was seen.
    pub fn contains(&self, id: &ValueId) -> bool {
        self.set.contains(id)
    }

    /// Records `id`; `false` if it was already there.
    pub fn insert(&mut self, id: ValueId) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// IDs remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// A token bucket that keeps a share of its burst for trusted senders:
/// untrusted senders are admitted only while more than `reserve` tokens
/// remain, so under overload trusted peers are served first.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_sec: f64,
    burst: f64,
    reserve: f64,
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// `per_sec` admissions per second, up to `burst` at once; `reserve`
    /// tokens are for trusted senders only.
    pub fn new(per_sec: u32, burst: u32, reserve: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            per_sec: f64::from(per_sec),
            burst,
            reserve: f64::from(reserve).min(burst - 1.0),
            tokens: burst,
            last_ms: 0,
        }
    }

    /// Admits one (taking a token) or not.
    pub fn admit(&mut self, now_ms: u64, trusted: bool) -> bool {
        if now_ms > self.last_ms {
            let dt = (now_ms - self.last_ms) as f64 / 1000.0;
            self.tokens = (self.tokens + dt * self.per_sec).min(self.burst);
            self.last_ms = now_ms;
        }
        let floor = if trusted { 1.0 } else { 1.0 + self.reserve };
        if self.tokens >= floor {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
