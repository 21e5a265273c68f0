//! Validation of someone else's proofs (spec §6): recompute a sample of the
//! claimed nonces, count mismatches with the tolerance rule, and decide with a
//! one-sided binomial test.
//!
//! There is no path that passes a batch without recomputing it: an empty
//! sample, a claim that is not a proof by its own account, or a nonce whose
//! recomputation does not back it (v1: at or above `r_target + tolerance`) is
//! an error or a mismatch, never a pass.

use crate::sprint::{Scored, SprintFunction};

/// The chain parameters of validation, with their defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValidationParams {
    /// Honest numeric noise allowed above `r_target` (v1). f32 against bf16
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
/// Honest mismatch rate of an exact function (v2): no numeric noise, only
/// faults; with 200 samples, 2 mismatches convict and 1 does not.
pub const EXACT_HONEST_MISMATCH_RATE: f64 = 1e-4;

impl ValidationParams {
    /// Defaults for a bit-exact function: no tolerance, faults only.
    pub fn exact() -> Self {
        Self { tolerance: 0.0, honest_mismatch_rate: EXACT_HONEST_MISMATCH_RATE, ..Self::default() }
    }
}

impl Default for ValidationParams {
    fn default() -> Self {
        Self {
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
    /// A claim that is not a proof even by its own account.
    #[error("nonce {nonce} claims score {claimed}, which is not a proof by the Sprint's rule")]
    ClaimNotAProof {
        /// The nonce.
        nonce: u64,
        /// Its claimed score.
        claimed: f64,
    },
    /// The model's output was not a number.
    #[error("recomputed score of nonce {nonce} is not finite")]
    NotFinite {
        /// The nonce.
        nonce: u64,
    },
}

/// Recomputes `nonces` with `f` on `threads` cores in batches of `batch`.
pub fn recompute<F: SprintFunction>(f: &F, nonces: &[u64], batch: usize, threads: usize) -> Vec<Scored> {
    let _span = tracy_client::span!("recompute");
    let batch = batch.max(1);
    let mut scores = vec![Scored::default(); nonces.len()];
    let jobs: Vec<(&[u64], &mut [Scored])> = nonces.chunks(batch).zip(scores.chunks_mut(batch)).collect();
    let next = std::sync::Mutex::new(jobs.into_iter());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut scratch = F::Scratch::default();
                loop {
                    let job = next.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some((ns, out)) = job else { break };
                    let done = f.run(&f.prepare(ns), &mut scratch, out, &|| false);
                    debug_assert!(done, "a run that is never cancelled completes");
                }
            });
        }
    });
    scores
}

/// Judges sampled claims `(nonce, claimed score)` against their recomputation by `f`.
pub fn judge<F: SprintFunction>(
    f: &F,
    claims: &[(u64, f64)],
    recomputed: &[Scored],
    p: &ValidationParams,
) -> Result<Verdict, ValidationError> {
    assert_eq!(claims.len(), recomputed.len(), "one recomputation per claim");
    if claims.is_empty() {
        return Err(ValidationError::EmptySample);
    }
    let mut mismatches = Vec::new();
    let mut max_abs_diff = 0f64;
    for (&(nonce, claimed), got) in claims.iter().zip(recomputed) {
        if !f.claims_proof(claimed) {
            return Err(ValidationError::ClaimNotAProof { nonce, claimed });
        }
        if !got.score.is_finite() {
            return Err(ValidationError::NotFinite { nonce });
        }
        max_abs_diff = max_abs_diff.max((got.score - claimed).abs());
        if f.is_mismatch(got, p.tolerance as f64) {
            mismatches.push(Mismatch { nonce, claimed, recomputed: got.score });
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
        // The exact defaults: 2 of 200 convicts, 1 does not.
        assert!(binomial_upper_tail(200, 2, EXACT_HONEST_MISMATCH_RATE) < DEFAULT_FRAUD_THRESHOLD);
        assert!(binomial_upper_tail(200, 1, EXACT_HONEST_MISMATCH_RATE) >= DEFAULT_FRAUD_THRESHOLD);
    }

    /// A function with v1's threshold rule and no model behind it.
    struct Threshold(f64);

    impl SprintFunction for Threshold {
        type Prepared = ();
        type Scratch = ();
        fn version(&self) -> &'static str {
            "test"
        }
        fn config(&self) -> &crate::ModelConfig {
            &crate::config::TINY
        }
        fn prepare(&self, _: &[u64]) {}
        fn run(&self, _: &(), _: &mut (), _: &mut [Scored], _: &dyn Fn() -> bool) -> bool {
            true
        }
        fn claims_proof(&self, claimed: f64) -> bool {
            claimed < self.0
        }
        fn is_mismatch(&self, r: &Scored, tolerance: f64) -> bool {
            r.score.is_nan() || r.score >= self.0 + tolerance
        }
    }

    fn scored(v: &[f64]) -> Vec<Scored> {
        v.iter().map(|&score| Scored { score, proof: score < 1.0 }).collect()
    }

    #[test]
    fn judge_rejects_empty_and_bad_claims() {
        let (f, p) = (Threshold(1.0), ValidationParams::default());
        assert_eq!(judge(&f, &[], &[], &p), Err(ValidationError::EmptySample));
        assert!(matches!(
            judge(&f, &[(1, 1.0)], &scored(&[0.5]), &p),
            Err(ValidationError::ClaimNotAProof { .. })
        ));
        assert!(matches!(
            judge(&f, &[(1, f64::NAN)], &scored(&[0.5]), &p),
            Err(ValidationError::ClaimNotAProof { .. })
        ));
        assert!(matches!(
            judge(&f, &[(1, 0.9)], &scored(&[f64::NAN]), &p),
            Err(ValidationError::NotFinite { .. })
        ));
    }

    #[test]
    fn judge_counts_mismatches_beyond_tolerance() {
        let (f, p) = (Threshold(1.0), ValidationParams::default());
        let claims: Vec<(u64, f64)> = (0..200).map(|n| (n, 0.99)).collect();
        // Within tolerance above r_target: honest noise, not a mismatch.
        let honest = scored(&[1.0 + 0.5 * DEFAULT_TOLERANCE as f64; 200]);
        let v = judge(&f, &claims, &honest, &p).expect("judgeable");
        assert!(v.mismatches.is_empty() && !v.fraudulent);
        let mut forged = vec![0.99; 200];
        for d in forged.iter_mut().take(4) {
            *d = 1.05;
        }
        let v = judge(&f, &claims, &scored(&forged), &p).expect("judgeable");
        assert_eq!(v.mismatches.len(), 4);
        assert!(v.fraudulent, "4 mismatches of 200 must convict (p = {})", v.p_value);
    }
}
