//! Deliveries already seen (`X-GitHub-Delivery`), so a delivery GitHub sends twice (or an
//! attacker replays) is not scanned twice. Bounded: the oldest ids are forgotten first.

use std::collections::{HashSet, VecDeque};

/// A bounded set of delivery ids, oldest evicted first.
#[derive(Debug)]
pub struct DeliveryLog {
    capacity: usize,
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl DeliveryLog {
    pub fn new(capacity: usize) -> Self {
        DeliveryLog {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    /// Records `id`; `true` the first time, `false` when it was already recorded.
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(id.to_owned());
        self.seen.insert(id.to_owned());
        true
    }

    /// Forgets `id` (its scan failed, so GitHub's redelivery should run it again).
    pub fn forget(&mut self, id: &str) {
        if self.seen.remove(id) {
            self.order.retain(|x| x != id);
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_until_evicted_or_forgotten() {
        let mut log = DeliveryLog::new(2);
        assert!(log.first_time("a"));
        assert!(!log.first_time("a"));
        assert!(log.first_time("b"));
        assert!(log.first_time("c")); // evicts a
        assert_eq!(log.len(), 2);
        assert!(log.first_time("a"));
        assert!(!log.first_time("c"));
        log.forget("c");
        assert!(log.first_time("c"));
    }
}
