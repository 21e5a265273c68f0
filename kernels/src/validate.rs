//! Validation of someone else's proofs (spec §6): recompute a sample of the
//! claimed nonces, count mismatches with the tolerance rule, and decide with a
//! one-sided binomial test.
//!
//! There is no path that passes a batch without recomputing it: an empty
//! sample, a claim that is not below `r_target`, or a nonce that recomputes at
//! or above `r_target + tolerance` is an error or a mismatch, never a pass.

use crate::encoding::Hash32;
use crate::forward::{ForwardScratch, Rope, forward_batch};
use crate::gemm::Precision;
use crate::model::Model;
use crate::pow;

/// The chain parameters of validation, with their defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValidationParams {
    /// The Sprint's distance threshold.
    pub r_target: f32,
    /// Honest numeric noise allowed above `r_target`. f32 against bf16
    /// activations moves distances by at most 6e-4 on `small` (spec §7);
    /// a fabricated nonce lands about `1/sqrt(V)` ≥ 1e-2 above.
    pub tolerance: f32,
    /// The mismatch rate an honest host may show (noise, hardware faults).
    pub honest_mismatch_rate: f64,
    /// A batch is fraudulent when `P(X ≥ k | n, honest_mismatch_rate)` is below this.
    pub fraud_threshold: f64,
}

/// Default tolerance: about three times the worst honest noise measured.
pub const DEFAULT_TOLERANCE: f32 = 2e-3;
/// Default honest mismatch rate.
pub const DEFAULT_HONEST_MISMATCH_RATE: f64 = 1e-3;
/// Default fraud threshold: with 200 samples, 4 mismatches convict, 3 do not.
pub const DEFAULT_FRAUD_THRESHOLD: f64 = 1e-3;

impl ValidationParams {
    /// Defaults for a Sprint with this `r_target`.
    pub fn with_r_target(r_target: f32) -> Self {
        Self {
            r_target,
            tolerance: DEFAULT_TOLERANCE,
            honest_mismatch_rate: DEFAULT_HONEST_MISMATCH_RATE,
            fraud_threshold: DEFAULT_FRAUD_THRESHOLD,
        }
    }
}

/// A sampled claim that failed recomputation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mismatch {
    /// The nonce.
    pub nonce: u64,
    /// What the submitter claimed.
    pub claimed: f64,
    /// What the validator computed.
    pub recomputed: f64,
}

/// The decision on one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Nonces recomputed.
    pub sampled: usize,
    /// Those that failed, in sample order.
    pub mismatches: Vec<Mismatch>,
    /// `P(X ≥ k | n, honest_mismatch_rate)`.
    pub p_value: f64,
    /// `p_value < fraud_threshold`.
    pub fraudulent: bool,
    /// Largest `|recomputed − claimed|` among the sample.
    pub max_abs_diff: f64,
}

/// Input that cannot be judged at all.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ValidationError {
    /// Nothing to recompute.
    #[error("empty sample: a batch cannot be accepted without recomputing any proof")]
    EmptySample,
    /// A claim is not a proof even by its own account.
    #[error("nonce {nonce} claims distance {claimed}, which is not below r_target {r_target}")]
    ClaimNotBelowTarget {
        /// The nonce.
        nonce: u64,
        /// Its claimed distance.
        claimed: f64,
        /// The Sprint's threshold.
        r_target: f32,
    },
    /// The model's output was not a number.
    #[error("recomputed distance of nonce {nonce} is not finite")]
    NotFinite {
        /// The nonce.
        nonce: u64,
    },
}

/// Recomputes the distances of `nonces` for the host with `node_seed`, on
/// `threads` cores in batches of `batch`.
pub fn recompute_distances(
    model: &Model,
    sprint_seed: &Hash32,
    node_seed: &Hash32,
    nonces: &[u64],
    precision: Precision,
    batch: usize,
    threads: usize,
) -> Vec<f64> {
    let _span = tracy_client::span!("recompute_distances");
    let c = model.config;
    let target = pow::target(sprint_seed, c.vocab);
    let rope = Rope::new(c.seq, c.head_dim());
    let batch = batch.max(1);
    let mut dists = vec![0f64; nonces.len()];
    let chunks: Vec<(&[u64], &mut [f64])> = nonces.chunks(batch).zip(dists.chunks_mut(batch)).collect();
    let next = std::sync::Mutex::new(chunks.into_iter());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut scratch = ForwardScratch::default();
                let (mut words, mut perm) = (Vec::new(), vec![0u32; c.vocab]);
                loop {
                    let job = next.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some((ns, out)) = job else { break };
                    let len = c.seq * c.dim;
                    let mut inputs = vec![0f32; ns.len() * len];
                    for (i, &n) in ns.iter().enumerate() {
                        pow::fill_input(
                            sprint_seed,
                            node_seed,
                            n,
                            &mut inputs[i * len..(i + 1) * len],
                            &mut words,
                        );
                    }
                    let mut y = vec![0f32; ns.len() * c.vocab];
                    forward_batch(model, &rope, &inputs, ns.len(), precision, &mut scratch, &mut y);
                    for (i, (&n, d)) in ns.iter().zip(out.iter_mut()).enumerate() {
                        pow::fill_permutation(sprint_seed, node_seed, n, &mut perm, &mut words);
                        *d = pow::distance(&y[i * c.vocab..(i + 1) * c.vocab], &perm, &target);
                    }
                }
            });
        }
    });
    dists
}

/// Judges sampled claims `(nonce, claimed distance)` against their recomputed distances.
pub fn judge(
    claims: &[(u64, f64)],
    recomputed: &[f64],
    p: &ValidationParams,
) -> Result<Verdict, ValidationError> {
    assert_eq!(claims.len(), recomputed.len(), "one recomputed distance per claim");
    if claims.is_empty() {
        return Err(ValidationError::EmptySample);
    }
    let limit = p.r_target as f64 + p.tolerance as f64;
    let mut mismatches = Vec::new();
    let mut max_abs_diff = 0f64;
    for (&(nonce, claimed), &got) in claims.iter().zip(recomputed) {
        if claimed.is_nan() || claimed >= p.r_target as f64 {
            return Err(ValidationError::ClaimNotBelowTarget { nonce, claimed, r_target: p.r_target });
        }
        if !got.is_finite() {
            return Err(ValidationError::NotFinite { nonce });
        }
        max_abs_diff = max_abs_diff.max((got - claimed).abs());
        if got >= limit {
            mismatches.push(Mismatch { nonce, claimed, recomputed: got });
        }
    }
    let p_value = binomial_upper_tail(claims.len() as u64, mismatches.len() as u64, p.honest_mismatch_rate);
    Ok(Verdict {
        sampled: claims.len(),
        fraudulent: p_value < p.fraud_threshold,
        mismatches,
        p_value,
        max_abs_diff,
    })
}

/// `P(X ≥ k)` for `X ~ Binomial(n, p)`, summed in log space so large `n` neither
/// overflows nor underflows.
pub fn binomial_upper_tail(n: u64, k: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    // log C(n, i) by the running product C(n, i) = C(n, i−1)·(n−i+1)/i.
    let mut log_c = 0f64;
    let mut terms = Vec::with_capacity((n - k + 1) as usize);
    for i in 1..=n {
        log_c += ((n - i + 1) as f64).ln() - (i as f64).ln();
        if i >= k {
            terms.push(log_c + i as f64 * lp + (n - i) as f64 * lq);
        }
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    (max + sum.ln()).exp().min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tail_known_values() {
        // P(X ≥ 1 | 10, 0.5) = 1 − 2^-10.
        assert!((binomial_upper_tail(10, 1, 0.5) - (1.0 - 1.0 / 1024.0)).abs() < 1e-12);
        // P(X ≥ 10 | 10, 0.5) = 2^-10.
        assert!((binomial_upper_tail(10, 10, 0.5) - 1.0 / 1024.0).abs() < 1e-15);
        assert_eq!(binomial_upper_tail(5, 0, 0.1), 1.0);
        assert_eq!(binomial_upper_tail(5, 6, 0.1), 0.0);
        // The documented defaults: 4 of 200 convicts, 3 does not.
        assert!(binomial_upper_tail(200, 4, DEFAULT_HONEST_MISMATCH_RATE) < DEFAULT_FRAUD_THRESHOLD);
        assert!(binomial_upper_tail(200, 3, DEFAULT_HONEST_MISMATCH_RATE) >= DEFAULT_FRAUD_THRESHOLD);
    }

    #[test]
    fn judge_rejects_empty_and_bad_claims() {
        let p = ValidationParams::with_r_target(1.0);
        assert_eq!(judge(&[], &[], &p), Err(ValidationError::EmptySample));
        assert!(matches!(judge(&[(1, 1.0)], &[0.5], &p), Err(ValidationError::ClaimNotBelowTarget { .. })));
        assert!(matches!(
            judge(&[(1, f64::NAN)], &[0.5], &p),
            Err(ValidationError::ClaimNotBelowTarget { .. })
        ));
        assert!(matches!(judge(&[(1, 0.9)], &[f64::NAN], &p), Err(ValidationError::NotFinite { .. })));
    }

    #[test]
    fn judge_counts_mismatches_beyond_tolerance() {
        let p = ValidationParams::with_r_target(1.0);
        let claims: Vec<(u64, f64)> = (0..200).map(|n| (n, 0.99)).collect();
        // Within tolerance above r_target: honest noise, not a mismatch.
        let honest = vec![1.0 + 0.5 * DEFAULT_TOLERANCE as f64; 200];
        let v = judge(&claims, &honest, &p).expect("judgeable");
        assert!(v.mismatches.is_empty() && !v.fraudulent);
        let mut forged = vec![0.99; 200];
        for d in forged.iter_mut().take(4) {
            *d = 1.05;
        }
        let v = judge(&claims, &forged, &p).expect("judgeable");
        assert_eq!(v.mismatches.len(), 4);
        assert!(v.fraudulent, "4 mismatches of 200 must convict (p = {})", v.p_value);
    }
}
