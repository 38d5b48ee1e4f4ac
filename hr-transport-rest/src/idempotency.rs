//! The receiver's memory of answered idempotency keys.
//!
//! Each key is bound to the SHA-256 of the body it came with, so a key reused
//! with another body is refused instead of answered with the first outcome
//! (which would silently drop the new body). Only the hash and the small
//! answer are kept, and the memory is bounded by bytes: keeping bodies,
//! 2,000 keys of 100 kB bodies would hold 400 MB.

use hr_core::ApplyOutcome;
use std::collections::{HashMap, VecDeque};

/// Longest accepted `Idempotency-Key` header, in bytes (400 above).
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 200;

/// What one remembered key costs besides its text (hash, answer, map and queue slots).
const ENTRY_OVERHEAD: usize = 128;

/// SHA-256 of a request body.
pub(crate) type BodyHash = [u8; 32];

/// What a key's earlier request says about this one.
pub(crate) enum Seen {
    /// Not answered yet (or forgotten): apply the body.
    New,
    /// Answered for the same body: give the same answer, apply nothing.
    Same(ApplyOutcome),
    /// Answered for another body: refuse.
    OtherBody,
}

/// Answered keys, oldest forgotten first once `capacity` bytes are used.
pub(crate) struct AnsweredKeys {
    entries: HashMap<String, (BodyHash, ApplyOutcome)>,
    order: VecDeque<String>,
    bytes: usize,
    capacity: usize,
}

impl AnsweredKeys {
    pub(crate) fn new(capacity: usize) -> Self {
        AnsweredKeys { entries: HashMap::new(), order: VecDeque::new(), bytes: 0, capacity }
    }

    pub(crate) fn check(&self, key: &str, body: &BodyHash) -> Seen {
        match self.entries.get(key) {
            None => Seen::New,
            Some((hash, outcome)) if hash == body => Seen::Same(*outcome),
            Some(_) => Seen::OtherBody,
        }
    }

    pub(crate) fn remember(&mut self, key: String, body: BodyHash, outcome: ApplyOutcome) {
        // Two requests with one key may race; the version rule made both harmless, keep the first.
        if self.entries.contains_key(&key) {
            return;
        }
        self.bytes += cost(&key);
        self.order.push_back(key.clone());
        self.entries.insert(key, (body, outcome));
        self.forget_oldest_beyond_capacity();
    }

    fn forget_oldest_beyond_capacity(&mut self) {
        while self.bytes > self.capacity {
            let Some(old) = self.order.pop_front() else { break };
            self.bytes -= cost(&old);
            self.entries.remove(&old);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

fn cost(key: &str) -> usize {
    // The text is held twice: as the map key and in the eviction queue.
    2 * key.len() + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_bounded_by_bytes_oldest_forgotten_first() {
        // A remembered key costs its text twice (map and queue) plus the entry's fixed size.
        let mut keys = AnsweredKeys::new(10 * (2 * 200 + ENTRY_OVERHEAD));
        for i in 0..1_000 {
            keys.remember(format!("{i:0>200}"), [0; 32], ApplyOutcome::default());
        }
        assert_eq!(keys.len(), 10);
        assert!(matches!(keys.check(&format!("{:0>200}", 999), &[0; 32]), Seen::Same(_)));
        assert!(matches!(keys.check(&format!("{:0>200}", 0), &[0; 32]), Seen::New));
        assert!(matches!(keys.check(&format!("{:0>200}", 999), &[1; 32]), Seen::OtherBody));
    }
}
