//! The validator's sample: which proofs of a batch it recomputes.

use std::collections::BTreeMap;

use gonka_kernels::chacha::{StreamKey, fill_words};
use gonka_kernels::encoding::tagged_hash;

use crate::crypto::SignatureBytes;

/// `n` distinct indices of `0..len` (all of them when `n ≥ len`), drawn by a
/// partial Fisher–Yates shuffle on the ChaCha20 stream keyed by
/// `H("gonka/validation-sample", signature)`. Index `i` of the sample is the
/// `i`-th draw; `j = i + ((w · (len − i)) >> 32)` as in the spec's permutation.
pub fn sample_indices(signature: &SignatureBytes, len: usize, n: usize) -> Vec<usize> {
    let n = n.min(len);
    let key = StreamKey::new(&tagged_hash("gonka/validation-sample", &[signature]));
    let mut words = vec![0u32; n];
    fill_words(&key, 0, &mut words);
    // Positions moved by earlier swaps; the rest still hold their own index.
    let mut moved: BTreeMap<usize, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(n);
    for (i, &w) in words.iter().enumerate() {
        let span = (len - i) as u64;
        let j = i + ((w as u64 * span) >> 32) as usize;
        let at_j = moved.get(&j).copied().unwrap_or(j);
        let at_i = moved.get(&i).copied().unwrap_or(i);
        moved.insert(j, at_i);
        out.push(at_j);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_is_distinct_in_range_and_deterministic() {
        let sig = [3u8; 96];
        for (len, n) in [(10usize, 10usize), (1000, 200), (5, 9), (1, 1), (0, 4)] {
            let s = sample_indices(&sig, len, n);
            assert_eq!(s.len(), n.min(len));
            let set: std::collections::BTreeSet<usize> = s.iter().copied().collect();
            assert_eq!(set.len(), s.len(), "sample of {n} from {len} repeats an index");
            assert!(s.iter().all(|&i| i < len));
            assert_eq!(s, sample_indices(&sig, len, n), "same signature, same sample");
        }
        assert_ne!(sample_indices(&[4u8; 96], 1000, 20), sample_indices(&sig, 1000, 20));
    }
}
