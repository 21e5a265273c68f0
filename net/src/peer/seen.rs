//! De-duplication of gossip: a bounded set of recently seen message ids.

use std::collections::{HashSet, VecDeque};

/// The last `capacity` distinct 32-byte ids seen, oldest evicted first.
///
/// The engine keeps one per gossip topic, inserts the id (hash) of each
/// message before handling it, and relays only when `insert` says it is new.
/// The hash set uses std's randomly keyed hasher, so peers cannot choose ids
/// that collide. Not synchronised: the engine owns it.
#[derive(Debug, Clone)]
pub struct SeenCache {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl SeenCache {
    /// An empty cache remembering up to `capacity` ids (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { set: HashSet::with_capacity(capacity), order: VecDeque::with_capacity(capacity), capacity }
    }

    /// Records `id`; returns whether it was new. A full cache forgets its oldest id.
    pub fn insert(&mut self, id: [u8; 32]) -> bool {
        if self.set.contains(&id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.set.insert(id);
        self.order.push_back(id);
        true
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &[u8; 32]) -> bool {
        self.set.contains(id)
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn duplicates_are_not_new_and_oldest_is_evicted() {
        let mut seen = SeenCache::new(2);
        assert!(seen.insert(id(1)));
        assert!(!seen.insert(id(1)), "a repeat is not new");
        assert!(seen.insert(id(2)));
        assert!(seen.insert(id(3)), "a third id evicts the first");
        assert!(!seen.contains(&id(1)) && seen.contains(&id(2)) && seen.contains(&id(3)));
        assert_eq!(seen.len(), 2);
        assert!(seen.insert(id(1)), "an evicted id is new again");
    }
}
