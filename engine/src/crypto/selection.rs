//! Auditable selection and deterministic weighted draws, integers only.
//!
//! A host's selection for a task is a pure function of its own BLS signature
//! over the task id: `selected ⇔ u32_le(H("gonka/selection", sig)[..4]) < p`,
//! with `p` a [`Probability`] in units of 2^-32. BLS signatures are unique, so
//! the host cannot grind for a favourable value, nobody else can compute it
//! before the host reveals its signature, and anyone with the host's public
//! key verifies the claim ([`verify_selection`]).
//!
//! Weighted draws (proposer, executors) read a ChaCha20 stream keyed by
//! `H("gonka/draw", seed, label)` and pick an index with probability
//! `w_i / Σw` by exact rejection sampling over 128-bit words.

use gonka_kernels::chacha::{StreamKey, fill_words};
use gonka_kernels::encoding::{Hash32, tagged_hash};

use super::{CryptoError, Domain, HostKey, PublicKeyBytes, SignatureBytes, verify};

/// A probability in fixed point: `p = raw / 2^32`, from 0 to [`Probability::ONE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probability(u64);

impl Probability {
    /// Never.
    pub const ZERO: Probability = Probability(0);
    /// Always.
    pub const ONE: Probability = Probability(1 << 32);

    /// `raw / 2^32`, capped at one.
    pub fn from_raw(raw: u64) -> Self {
        Probability(raw.min(Self::ONE.0))
    }

    /// The fixed-point value.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// `⌊num · 2^32 / den⌋ / 2^32`, exactly, capped at one; `None` when `den` is zero.
    pub fn from_ratio(num: u128, den: u128) -> Option<Self> {
        if den == 0 {
            return None;
        }
        if num >= den {
            return Some(Self::ONE);
        }
        // Long division, one quotient bit per step; `2r ≥ den` is tested as
        // `r ≥ den − r` so no step can overflow.
        let (mut q, mut r) = (0u64, num);
        for _ in 0..32 {
            q <<= 1;
            if r >= den - r {
                r -= den - r;
                q |= 1;
            } else {
                r += r;
            }
        }
        Some(Probability(q))
    }

    /// The product `self · other`, rounded down.
    pub fn times(self, other: Probability) -> Probability {
        Probability(((u128::from(self.0) * u128::from(other.0)) >> 32) as u64)
    }
}

/// What a host signs, under [`Domain::Selection`], to learn whether it is selected for `task_id`.
pub fn selection_message(task_id: &Hash32) -> [u8; 32] {
    *task_id
}

/// The host's selection signature for `task_id`.
pub fn selection_signature(key: &HostKey, task_id: &Hash32) -> SignatureBytes {
    key.sign(Domain::Selection, &selection_message(task_id))
}

/// The 32-bit draw of a selection signature.
pub fn selection_draw(sig: &SignatureBytes) -> u32 {
    let h = tagged_hash("gonka/selection", &[sig]);
    u32::from_le_bytes([h[0], h[1], h[2], h[3]])
}

/// A host's probability of validating a task: the executor's required
/// validation rate times the host's share of the weight, so that over all
/// hosts the expected number of validations equals the rate. `None` when the
/// total weight is zero.
pub fn selection_probability(rate: Probability, weight: u64, total_weight: u64) -> Option<Probability> {
    Probability::from_ratio(u128::from(weight), u128::from(total_weight)).map(|share| rate.times(share))
}

/// Whether the signature's draw falls below `p`.
pub fn select(sig: &SignatureBytes, p: Probability) -> bool {
    u64::from(selection_draw(sig)) < p.0
}

/// Checks a selection claim: the signature is `pk`'s over `task_id`, and
/// returns whether it selects the host at probability `p`.
pub fn verify_selection(
    pk: &PublicKeyBytes,
    task_id: &Hash32,
    sig: &SignatureBytes,
    p: Probability,
) -> Result<bool, CryptoError> {
    verify(Domain::Selection, pk, &selection_message(task_id), sig)?;
    Ok(select(sig, p))
}

/// A deterministic stream of draws from a seed and a label naming their use.
#[derive(Clone, Debug)]
pub struct DrawStream {
    key: StreamKey,
    next_word: u64,
}

impl DrawStream {
    /// The stream for `label` under `seed` (a beacon or Sprint seed).
    pub fn new(seed: &Hash32, label: &str) -> Self {
        Self { key: StreamKey::new(&tagged_hash("gonka/draw", &[seed, label.as_bytes()])), next_word: 0 }
    }

    fn next_u128(&mut self) -> u128 {
        let mut w = [0u32; 4];
        fill_words(&self.key, self.next_word, &mut w);
        self.next_word += 4;
        w.iter().rev().fold(0u128, |acc, &x| (acc << 32) | u128::from(x))
    }

    /// Uniform in `0..bound` (exact: words in the last partial zone are redrawn).
    pub fn below(&mut self, bound: u128) -> u128 {
        assert!(bound > 0, "a draw needs a non-empty range");
        let zone = u128::MAX - (u128::MAX % bound + 1) % bound;
        loop {
            let x = self.next_u128();
            if x <= zone {
                return x % bound;
            }
        }
    }

    /// Index `i` with probability `weights[i] / Σ weights`; `None` when all are zero.
    pub fn weighted_index(&mut self, weights: &[u64]) -> Option<usize> {
        let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
        if total == 0 {
            return None;
        }
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u128::from(w) {
                return Some(i);
            }
            x -= u128::from(w);
        }
        unreachable!("x < total = Σ weights")
    }

    /// `k` distinct indices, each drawn in proportion to weight among those
    /// not yet drawn (successive sampling); fewer when fewer have weight.
    pub fn weighted_sample(&mut self, weights: &[u64], k: usize) -> Vec<usize> {
        let mut left = weights.to_vec();
        let mut out = Vec::with_capacity(k.min(weights.len()));
        while out.len() < k {
            let Some(i) = self.weighted_index(&left) else { break };
            left[i] = 0;
            out.push(i);
        }
        out
    }
}

/// One index drawn in proportion to weight from `seed` for `label`.
pub fn weighted_index(seed: &Hash32, label: &str, weights: &[u64]) -> Option<usize> {
    DrawStream::new(seed, label).weighted_index(weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_exact_fixed_point() {
        assert_eq!(Probability::from_ratio(1, 2), Some(Probability::from_raw(1 << 31)));
        assert_eq!(Probability::from_ratio(1, 3).map(Probability::raw), Some((1u64 << 32) / 3));
        assert_eq!(Probability::from_ratio(5, 5), Some(Probability::ONE));
        assert_eq!(Probability::from_ratio(1, 0), None);
        let big = u128::MAX;
        assert_eq!(Probability::from_ratio(big / 2, big).map(Probability::raw), Some((1u64 << 31) - 1));
        assert_eq!(Probability::ONE.times(Probability::from_raw(77)), Probability::from_raw(77));
    }

    #[test]
    fn select_respects_the_extremes() {
        let sig = [9u8; 96];
        assert!(!select(&sig, Probability::ZERO));
        assert!(select(&sig, Probability::ONE));
    }

    #[test]
    fn draws_are_deterministic_and_in_range() {
        let seed = [0u8; 32];
        let mut a = DrawStream::new(&seed, "proposer");
        let mut b = DrawStream::new(&seed, "proposer");
        for bound in [1u128, 2, 3, 1000, u128::MAX] {
            let x = a.below(bound);
            assert!(x < bound);
            assert_eq!(x, b.below(bound), "same seed and label, same draw");
        }
        assert_eq!(weighted_index(&seed, "x", &[0, 0, 5, 0]), Some(2));
        assert_eq!(weighted_index(&seed, "x", &[0, 0]), None);
        let s = DrawStream::new(&seed, "executors").weighted_sample(&[1, 0, 3, 2], 5);
        assert_eq!(s.len(), 3, "only weighted indices are drawn: {s:?}");
        let mut sorted = s.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 2, 3]);
    }

    #[test]
    fn selection_probabilities_sum_to_the_rate() {
        let rate = Probability::from_ratio(1, 20).expect("nonzero denominator");
        let weights = [5u64, 17, 1, 300, 42, 0, 99];
        let total: u64 = weights.iter().sum();
        let sum: u64 = weights
            .iter()
            .map(|&w| selection_probability(rate, w, total).expect("positive total").raw())
            .sum();
        // Each term rounds down by less than one unit of 2^-32.
        assert!(rate.raw() - sum < weights.len() as u64, "sum {sum} vs rate {}", rate.raw());
        assert_eq!(selection_probability(rate, 1, 0), None);
    }
}
