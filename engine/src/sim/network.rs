//! The simulated network and clock: a seeded event queue, per-message
//! latency and loss, and partitions over time windows.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use gonka_kernels::encoding::{Hash32, tagged_hash};

/// A small, seeded, portable generator (SplitMix64): the simulator's only randomness.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator for `label` under `seed`.
    pub fn new(seed: u64, label: &str) -> Self {
        let h: Hash32 = tagged_hash("gonka/sim-rng", &[&seed.to_le_bytes(), label.as_bytes()]);
        Self(u64::from_le_bytes(h[..8].try_into().expect("8 bytes")))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo { lo } else { lo + self.next_u64() % (hi - lo + 1) }
    }

    /// True with probability `permille / 1000`.
    pub fn chance(&mut self, permille: u32) -> bool {
        self.next_u64() % 1000 < u64::from(permille)
    }
}

/// A split of the hosts for a time window: messages between the sides are lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Start, simulated ms.
    pub from_ms: u64,
    /// End, simulated ms.
    pub until_ms: u64,
    /// Hosts cut off from the rest (host indices).
    pub minority: Vec<usize>,
}

/// Link behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Smallest one-way latency, ms.
    pub latency_ms_min: u64,
    /// Largest one-way latency, ms.
    pub latency_ms_max: u64,
    /// Messages lost, per thousand.
    pub loss_permille: u32,
    /// Partitions.
    pub partitions: Vec<Partition>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self { latency_ms_min: 5, latency_ms_max: 40, loss_permille: 10, partitions: Vec::new() }
    }
}

/// An event due at a simulated time; ties break by insertion order.
#[derive(Debug)]
struct Entry<E> {
    at_ms: u64,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.seq) == (other.at_ms, other.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_ms, self.seq).cmp(&(other.at_ms, other.seq))
    }
}

/// The clock and the queue of pending events.
#[derive(Debug)]
pub struct EventQueue<E> {
    now_ms: u64,
    seq: u64,
    heap: BinaryHeap<Reverse<Entry<E>>>,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self { now_ms: 0, seq: 0, heap: BinaryHeap::new() }
    }
}

impl<E> EventQueue<E> {
    /// Simulated time now.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Schedules `event` at `at_ms` (not before now).
    pub fn push(&mut self, at_ms: u64, event: E) {
        self.seq += 1;
        self.heap.push(Reverse(Entry { at_ms: at_ms.max(self.now_ms), seq: self.seq, event }));
    }

    /// The next event, advancing the clock to it.
    pub fn pop(&mut self) -> Option<E> {
        let Reverse(e) = self.heap.pop()?;
        self.now_ms = e.at_ms;
        Some(e.event)
    }

    /// Events pending.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// Decides each message's fate.
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    rng: SimRng,
    /// Messages delivered and lost.
    pub delivered: u64,
    /// See [`Network::delivered`].
    pub lost: u64,
}

impl Network {
    /// A network with `config` under `seed`.
    pub fn new(config: NetworkConfig, seed: u64) -> Self {
        Self { config, rng: SimRng::new(seed, "network"), delivered: 0, lost: 0 }
    }

    /// Whether `a` and `b` are on different sides of a partition at `now_ms`.
    pub fn cut(&self, a: usize, b: usize, now_ms: u64) -> bool {
        self.config.partitions.iter().any(|p| {
            (p.from_ms..p.until_ms).contains(&now_ms) && (p.minority.contains(&a) != p.minority.contains(&b))
        })
    }

    /// The delivery time of a message sent now from `from` to `to`, or `None` if it is lost.
    pub fn send(&mut self, from: usize, to: usize, now_ms: u64) -> Option<u64> {
        if from == to {
            return Some(now_ms);
        }
        if self.cut(from, to, now_ms) || self.rng.chance(self.config.loss_permille) {
            self.lost += 1;
            return None;
        }
        self.delivered += 1;
        Some(now_ms + self.rng.range(self.config.latency_ms_min, self.config.latency_ms_max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_pop_in_time_then_insertion_order() {
        let mut q = EventQueue::default();
        q.push(10, "b");
        q.push(5, "a");
        q.push(10, "c");
        assert_eq!((q.pop(), q.now_ms()), (Some("a"), 5));
        assert_eq!(q.pop(), Some("b"));
        assert_eq!(q.pop(), Some("c"));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn partitions_cut_only_across_sides_and_only_in_their_window() {
        let cfg = NetworkConfig {
            loss_permille: 0,
            partitions: vec![Partition { from_ms: 100, until_ms: 200, minority: vec![0, 1] }],
            ..NetworkConfig::default()
        };
        let mut n = Network::new(cfg, 0);
        assert!(n.send(0, 2, 150).is_none(), "across the cut");
        assert!(n.send(0, 1, 150).is_some(), "same side");
        assert!(n.send(0, 2, 250).is_some(), "after it heals");
    }

    #[test]
    fn the_generator_is_reproducible() {
        let a: Vec<u64> = (0..4).scan(SimRng::new(7, "x"), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..4).scan(SimRng::new(7, "x"), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        assert_ne!(a[0], SimRng::new(8, "x").next_u64());
    }
}
