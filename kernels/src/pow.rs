//! The per-nonce parts of the Sprint function (spec §4): input, permutation,
//! target and distance, plus the context that binds them to one Sprint.

use crate::chacha::{StreamKey, fill_words};
use crate::encoding::{Hash32, bf16_bits, bf16_to_f32, scale, tagged_hash, unit};

/// A host's BLS12-381 public key, compressed G1 (min_pk).
pub type PublicKey = [u8; 48];

/// `H("gonka/node-seed", pubkey)`.
pub fn node_seed(pubkey: &PublicKey) -> Hash32 {
    tagged_hash("gonka/node-seed", &[pubkey])
}

/// `H("gonka/input", sprint_seed, node_seed, u64_le(nonce))`.
pub fn input_key(sprint_seed: &Hash32, node_seed: &Hash32, nonce: u64) -> Hash32 {
    tagged_hash("gonka/input", &[sprint_seed, node_seed, &nonce.to_le_bytes()])
}

/// `H("gonka/perm", sprint_seed, node_seed, u64_le(nonce))`.
pub fn perm_key(sprint_seed: &Hash32, node_seed: &Hash32, nonce: u64) -> Hash32 {
    tagged_hash("gonka/perm", &[sprint_seed, node_seed, &nonce.to_le_bytes()])
}

/// `H("gonka/target", sprint_seed)`.
pub fn target_key(sprint_seed: &Hash32) -> Hash32 {
    tagged_hash("gonka/target", &[sprint_seed])
}

/// Writes the `[T, d]` input of a nonce into `out` (f32 values, each exactly a bf16).
/// `words` is scratch of at least `out.len()`.
pub fn fill_input(
    sprint_seed: &Hash32,
    node_seed: &Hash32,
    nonce: u64,
    out: &mut [f32],
    words: &mut Vec<u32>,
) {
    words.resize(out.len(), 0);
    fill_words(&StreamKey::new(&input_key(sprint_seed, node_seed, nonce)), 0, words);
    let s = scale(1);
    for (o, &w) in out.iter_mut().zip(words.iter()) {
        *o = bf16_to_f32(bf16_bits(unit(w) * s));
    }
}

/// Writes the permutation `π` of a nonce into `perm` (length `V`).
/// `words` is scratch.
pub fn fill_permutation(
    sprint_seed: &Hash32,
    node_seed: &Hash32,
    nonce: u64,
    perm: &mut [u32],
    words: &mut Vec<u32>,
) {
    let v = perm.len();
    for (i, p) in perm.iter_mut().enumerate() {
        *p = i as u32;
    }
    if v < 2 {
        return;
    }
    words.resize(v - 1, 0);
    fill_words(&StreamKey::new(&perm_key(sprint_seed, node_seed, nonce)), 0, words);
    for (step, i) in (1..v).rev().enumerate() {
        let j = ((words[step] as u64 * (i as u64 + 1)) >> 32) as usize;
        perm.swap(i, j);
    }
}

/// The unit target vector `t` (length `V`), in f64.
pub fn target(sprint_seed: &Hash32, vocab: usize) -> Vec<f64> {
    let mut words = vec![0u32; vocab];
    fill_words(&StreamKey::new(&target_key(sprint_seed)), 0, &mut words);
    let t: Vec<f64> = words.iter().map(|&w| unit(w) as f64).collect();
    let norm = t.iter().map(|v| v * v).sum::<f64>().sqrt();
    t.iter().map(|v| v / norm).collect()
}

/// `‖ z/‖z‖₂ − t ‖₂` with `z[i] = y[π[i]]`, in f64. A zero output is as far
/// from every target as a vector can be made to look: distance 2 (never a proof).
pub fn distance(y: &[f32], perm: &[u32], target: &[f64]) -> f64 {
    let norm = y.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
    if !(norm > 0.0 && norm.is_finite()) {
        return 2.0;
    }
    let mut acc = 0.0f64;
    for (&p, &t) in perm.iter().zip(target) {
        let e = y[p as usize] as f64 / norm - t;
        acc += e * e;
    }
    acc.sqrt()
}

/// `P(dist < r)` for a well-mixed output (spec §5): `1 − Φ(sqrt(V)·(1 − r²/2))`.
pub fn expected_proof_rate(vocab: usize, r_target: f32) -> f64 {
    let r = r_target as f64;
    let z = (vocab as f64).sqrt() * (1.0 - r * r / 2.0);
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The `r_target` at which one nonce in `nonces_per_proof` is a proof (spec §5
/// estimate), found by bisection on [`expected_proof_rate`].
pub fn r_target_for_rate(vocab: usize, nonces_per_proof: f64) -> f32 {
    let want = 1.0 / nonces_per_proof;
    let (mut lo, mut hi) = (0.0f64, 2.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if expected_proof_rate(vocab, mid as f32) < want { lo = mid } else { hi = mid }
    }
    hi as f32
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative
/// error below 1.2e-7): enough for difficulty estimates and studies, never
/// used in consensus.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_difficulty_matches_spec_example() {
        // Spec §5: one proof in about 900 nonces at V = 8192 is r_target ≈ 1.3901.
        let r = r_target_for_rate(8192, 900.0);
        assert!((r - 1.3901).abs() < 2e-4, "r_target for 1/900 at V=8192 is {r}");
    }

    #[test]
    fn permutation_is_a_permutation() {
        let (s, n) = ([1u8; 32], [2u8; 32]);
        let mut p = vec![0u32; 1000];
        fill_permutation(&s, &n, 7, &mut p, &mut Vec::new());
        let mut seen = vec![false; 1000];
        for &i in &p {
            assert!(!seen[i as usize], "index {i} appears twice");
            seen[i as usize] = true;
        }
    }
}

/// Nonces per proof that the default difficulty aims at (spec §5).
pub const DEFAULT_NONCES_PER_PROOF: f64 = 900.0;

/// The default `r_target` for an output size: the spec §5 estimate for one
/// proof in [`DEFAULT_NONCES_PER_PROOF`] nonces. Named sizes are constants
/// (so no platform's `exp` can move a chain parameter); others are computed.
pub fn default_r_target(vocab: usize) -> f32 {
    match vocab {
        256 => f32::from_bits(DEFAULT_R_TARGET_BITS[0]),
        1024 => f32::from_bits(DEFAULT_R_TARGET_BITS[1]),
        8192 => f32::from_bits(DEFAULT_R_TARGET_BITS[2]),
        v => r_target_for_rate(v, DEFAULT_NONCES_PER_PROOF),
    }
}

/// `r_target_for_rate(V, 900)` for V = 256, 1024, 8192, as f32 bits.
const DEFAULT_R_TARGET_BITS: [u32; 3] = [0x3fa2_cc97, 0x3fac_2686, 0x3fb1_ef2b];

#[cfg(test)]
mod default_target_tests {
    use super::*;

    #[test]
    fn default_r_targets_match_the_estimate() {
        for (i, v) in [256usize, 1024, 8192].into_iter().enumerate() {
            let r = r_target_for_rate(v, DEFAULT_NONCES_PER_PROOF);
            assert_eq!(DEFAULT_R_TARGET_BITS[i], r.to_bits(), "default r_target for V={v}");
        }
    }
}
