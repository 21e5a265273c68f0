//! The v2 proof predicate (spec v2 §5): the digest of a nonce's exact output
//! and the exact 256-bit difficulty threshold.

use sha2::{Digest, Sha256};

use crate::encoding::Hash32;

/// Nonces per proof at the default difficulty: the threshold is `⌊2²⁵⁶/900⌋`.
pub const DEFAULT_NONCES_PER_PROOF: u64 = 900;

/// Domain tag of the digest.
const PROOF_TAG: &str = "gonka/proof-v2";

/// `H("gonka/proof-v2", sprint_seed, node_seed, u64_le(nonce), i32_le(y))`,
/// with `H` the tagged hash of spec §1 (each part prefixed by its u32_le length).
pub fn digest(sprint_seed: &Hash32, node_seed: &Hash32, nonce: u64, y: &[i32]) -> Hash32 {
    let mut h = Sha256::new();
    h.update(PROOF_TAG.as_bytes());
    h.update([0u8]);
    for part in [&sprint_seed[..], &node_seed[..], &nonce.to_le_bytes()[..]] {
        h.update((part.len() as u32).to_le_bytes());
        h.update(part);
    }
    let y_len = u32::try_from(4 * y.len()).expect("an output of under 2^30 values");
    h.update(y_len.to_le_bytes());
    // Hash y in blocks of little-endian bytes, so no allocation per nonce.
    let mut buf = [0u8; 1024];
    for chunk in y.chunks(buf.len() / 4) {
        for (b, v) in buf.chunks_exact_mut(4).zip(chunk) {
            b.copy_from_slice(&v.to_le_bytes());
        }
        h.update(&buf[..4 * chunk.len()]);
    }
    h.finalize().into()
}

/// `⌊2²⁵⁶ / nonces_per_proof⌋` as a big-endian 256-bit integer (`nonces_per_proof ≥ 2`).
pub fn proof_threshold(nonces_per_proof: u64) -> Hash32 {
    assert!(nonces_per_proof >= 2, "difficulty needs at least 2 nonces per proof");
    // Long division of 1·2^256 (a one followed by 32 zero bytes), base 256.
    let q = u128::from(nonces_per_proof);
    let mut rem: u128 = 1;
    let mut out = [0u8; 32];
    for byte in out.iter_mut() {
        let cur = rem << 8;
        *byte = (cur / q) as u8;
        rem = cur % q;
    }
    out
}

/// Whether a digest is a proof at the default difficulty: read big-endian,
/// it is below `⌊2²⁵⁶/900⌋`.
pub fn is_proof(digest: &Hash32) -> bool {
    is_proof_at(digest, &default_threshold())
}

/// Whether a digest is below a threshold of [`proof_threshold`] (both big-endian).
pub fn is_proof_at(digest: &Hash32, threshold: &Hash32) -> bool {
    digest < threshold
}

fn default_threshold() -> Hash32 {
    use std::sync::OnceLock;
    static T: OnceLock<Hash32> = OnceLock::new();
    *T.get_or_init(|| proof_threshold(DEFAULT_NONCES_PER_PROOF))
}

/// The digest's leading 64 bits over 2^64, in `[0, 1)`: a proof has a score
/// below `1/900` (the exact rule is [`is_proof`]; the two differ only within
/// 2^-64 of the threshold). Useful to plot or sort digests.
pub fn score(digest: &Hash32) -> f64 {
    let mut lead = [0u8; 8];
    lead.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(lead) as f64 / 18_446_744_073_709_551_616.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_floor_of_two_to_256_over_n() {
        // 2^256 / 2 = 2^255.
        let mut half = [0u8; 32];
        half[0] = 0x80;
        assert_eq!(proof_threshold(2), half);
        // 2^256 / 256 = 2^248.
        let mut t = [0u8; 32];
        t[0] = 1;
        assert_eq!(proof_threshold(256), t);
        let t900 = proof_threshold(900);
        assert!((score(&t900) - 1.0 / 900.0).abs() < 1e-15);
    }

    #[test]
    fn predicate_is_strictly_below() {
        let t = proof_threshold(900);
        assert!(!is_proof(&t), "the threshold itself is not a proof");
        let mut below = t;
        below[31] = below[31].wrapping_sub(1);
        assert!(is_proof(&below) || t[31] == 0);
        assert!(is_proof(&[0u8; 32]));
        assert!(!is_proof(&[0xff; 32]));
    }

    #[test]
    fn digest_matches_the_tagged_hash_of_spec_section_1() {
        let y = [1i32, -2, 300_000, i32::MIN];
        let bytes: Vec<u8> = y.iter().flat_map(|v| v.to_le_bytes()).collect();
        let want = crate::encoding::tagged_hash(
            "gonka/proof-v2",
            &[&[1; 32], &[2; 32], &7u64.to_le_bytes(), &bytes],
        );
        assert_eq!(digest(&[1; 32], &[2; 32], 7, &y), want);
    }
}
