//! Deadlines: a min-heap of (instant, key) with lazy deletion, one for participants and one
//! for calls. Each owner keeps its current deadline; a heap entry that no longer matches it
//! is stale and skipped when it surfaces, so rescheduling is one push and cancelling is free.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Deadlines of many owners, keyed by `K`.
pub(crate) struct Deadlines<K: Copy + Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Copy + Ord> Deadlines<K> {
    pub(crate) fn new() -> Self {
        Deadlines {
            heap: BinaryHeap::new(),
        }
    }

    /// Sets `key`'s deadline to `next`; `current` is where the owner keeps it.
    pub(crate) fn schedule(
        &mut self,
        key: K,
        current: &mut Option<Instant>,
        next: Option<Instant>,
    ) {
        if next != *current {
            *current = next;
            if let Some(t) = next {
                self.heap.push(Reverse((t, key)));
            }
        }
    }

    /// The earliest live deadline. `live(key, at)`: whether `at` is still `key`'s deadline.
    pub(crate) fn next(&mut self, live: impl Fn(K, Instant) -> bool) -> Option<Instant> {
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            if live(key, at) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes the keys whose live deadline is at or before `now`.
    pub(crate) fn due(&mut self, now: Instant, live: impl Fn(K, Instant) -> bool) -> Vec<K> {
        let mut due = Vec::new();
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if live(key, at) {
                due.push(key);
            }
        }
        due
    }

    /// Drops stale entries once they outnumber the live ones (`owners` of them) fourfold.
    pub(crate) fn compact(&mut self, owners: usize, live: impl Iterator<Item = (Instant, K)>) {
        if self.heap.len() > 4 * owners + 64 {
            self.heap = live.map(Reverse).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stale_entries_are_skipped_and_due_keys_come_out_once() {
        let t0 = Instant::now();
        let mut d = Deadlines::new();
        let mut current = [None, None];
        d.schedule(0u8, &mut current[0], Some(t0 + Duration::from_millis(10)));
        d.schedule(1u8, &mut current[1], Some(t0 + Duration::from_millis(20)));
        // Key 0 moves later: its first entry is stale.
        d.schedule(0u8, &mut current[0], Some(t0 + Duration::from_millis(30)));
        let live = |k: u8, at| current[k as usize] == Some(at);
        assert_eq!(d.next(live), Some(t0 + Duration::from_millis(20)));
        assert_eq!(d.due(t0 + Duration::from_millis(25), live), vec![1]);
        assert_eq!(
            d.due(t0 + Duration::from_millis(25), live),
            Vec::<u8>::new()
        );
        assert_eq!(d.due(t0 + Duration::from_millis(30), live), vec![0]);
    }
}
