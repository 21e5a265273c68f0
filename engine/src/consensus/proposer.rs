//! Who proposes: a draw in proportion to weight, fresh for every round.
//!
//! The draw reads the stream of `H("gonka/proposer", seed, u64_le(height),
//! u32_le(round))` (a [`DrawStream`] labelled `proposer`), so every host
//! computes the same proposer, a host with twice the weight proposes twice
//! as often, and a proposer that fails is replaced by an independent draw in
//! the next round.

use gonka_kernels::encoding::{Hash32, tagged_hash};

use crate::crypto::selection::DrawStream;
use crate::crypto::votes::EpochHosts;

/// The proposer of `(height, round)`: a host index drawn by weight from `seed`.
pub fn proposer(seed: &Hash32, height: u64, round: u32, hosts: &EpochHosts) -> u32 {
    proposer_by_weight(seed, height, round, &weights(hosts))
}

/// The weights of `hosts` in host order.
pub(crate) fn weights(hosts: &EpochHosts) -> Vec<u64> {
    (0..hosts.len()).map(|i| hosts.weight(i).unwrap_or(0)).collect()
}

/// [`proposer`] over weights already read from the host list.
pub(crate) fn proposer_by_weight(seed: &Hash32, height: u64, round: u32, weights: &[u64]) -> u32 {
    let round_seed = tagged_hash("gonka/proposer", &[seed, &height.to_le_bytes(), &round.to_le_bytes()]);
    let index = DrawStream::new(&round_seed, "proposer").weighted_index(weights);
    // An epoch's host list has a positive total weight (`EpochHosts::new`
    // refuses any other), so the draw always yields an index; host 0 only
    // answers an empty list, which has no proposer to find.
    index.and_then(|i| u32::try_from(i).ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::HostKey;

    fn hosts(weights: &[u64]) -> EpochHosts {
        let list: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (HostKey::from_ikm(&[i as u8 + 1; 32]).public_key(), w))
            .collect();
        EpochHosts::new(&list).expect("valid hosts")
    }

    #[test]
    fn draws_follow_weight_and_change_with_round_and_height() {
        let seed = [0u8; 32];
        println!("proposer draw seed {seed:?}");
        let h = hosts(&[1, 0, 3, 6]);
        let mut counts = [0u32; 4];
        for height in 1..=250u64 {
            for round in 0..4 {
                let p = proposer(&seed, height, round, &h);
                assert_eq!(p, proposer(&seed, height, round, &h), "deterministic");
                counts[p as usize] += 1;
            }
        }
        assert_eq!(counts[1], 0, "a host without weight never proposes");
        // 1000 draws of shares 0.1, 0.3, 0.6: each within 5 standard deviations.
        for (i, share) in [(0usize, 100.0), (2, 300.0), (3, 600.0)] {
            let sd = (1000.0f64 * (share / 1000.0) * (1.0 - share / 1000.0)).sqrt();
            assert!((f64::from(counts[i]) - share).abs() < 5.0 * sd, "host {i}: {counts:?}");
        }
        let other_seed =
            (1..=40u64).any(|height| proposer(&[1u8; 32], height, 0, &h) != proposer(&seed, height, 0, &h));
        assert!(other_seed, "the seed changes the draws");
        assert_eq!(proposer(&seed, 1, 0, &hosts(&[0, 0, 5])), 2);
    }
}
