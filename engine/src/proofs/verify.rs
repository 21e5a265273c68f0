//! Offline verification of a proof file: decode, check every claim that can be
//! checked without the model, then recompute the validator's sample.

use std::time::{Duration, Instant};

use gonka_kernels::encoding::Hash32;
use gonka_kernels::model::Model;
use gonka_kernels::pow::{default_r_target, node_seed};
use gonka_kernels::sprint::SprintV1;
use gonka_kernels::validate::{ValidationError, ValidationParams, Verdict, judge, recompute};
use gonka_kernels::{ModelConfig, Precision};

use super::{ProofBatch, ProofFileError, decode_proof_file, sample_indices};
use crate::crypto::{self, CryptoError, Domain, HostKey, PublicKeyBytes, SignatureBytes};

/// How to verify.
#[derive(Debug)]
pub struct VerifyOptions<'a> {
    /// The Sprint the batch must belong to.
    pub sprint_seed: Hash32,
    /// The Sprint's threshold; `None` is the default for the batch's model.
    pub r_target: Option<f32>,
    /// Proofs to recompute.
    pub sample: usize,
    /// The validator's key: its signature over the commitment picks the sample.
    pub validator: &'a HostKey,
    /// Precision of the recomputation.
    pub precision: Precision,
    /// Cores to use.
    pub threads: usize,
    /// Nonces per forward batch.
    pub batch: usize,
    /// Tolerance and test thresholds.
    pub params: ValidationParams,
}

/// A batch that passed.
#[derive(Debug)]
pub struct VerifyReport {
    /// The model.
    pub config: ModelConfig,
    /// The mining host.
    pub pubkey: PublicKeyBytes,
    /// Proofs in the batch (its Sprint weight if accepted).
    pub proofs: usize,
    /// Nonces the host says it computed.
    pub nonces_tried: u64,
    /// The threshold used.
    pub r_target: f32,
    /// The validator's public key and its signature over the commitment (the audit trail of the sample).
    pub validator: (PublicKeyBytes, SignatureBytes),
    /// The statistical decision.
    pub verdict: Verdict,
    /// Model generation time.
    pub init_time: Duration,
    /// Recomputation time.
    pub recompute_time: Duration,
}

/// Why a batch is rejected.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The bytes are not a readable proof file.
    #[error(transparent)]
    File(#[from] ProofFileError),
    /// For another Sprint.
    #[error("batch is for sprint seed {found}, expected {expected}")]
    WrongSprint {
        /// Hex of the file's seed.
        found: String,
        /// Hex of the expected seed.
        expected: String,
    },
    /// Not a named model.
    #[error("batch names an unknown model shape {0:?}")]
    UnknownModel(super::ModelShape),
    /// Claims another difficulty.
    #[error("batch claims r_target {found}, the Sprint's is {expected}")]
    WrongRTarget {
        /// The file's.
        found: f32,
        /// The Sprint's.
        expected: f32,
    },
    /// Nonces out of order.
    #[error("proofs are not sorted by nonce: nonce {nonce} at index {index} follows {previous}")]
    Unsorted {
        /// Position.
        index: usize,
        /// Its nonce.
        nonce: u64,
        /// The one before.
        previous: u64,
    },
    /// The same nonce twice.
    #[error("duplicate nonce {nonce} at index {index}")]
    DuplicateNonce {
        /// Position of the second copy.
        index: usize,
        /// The nonce.
        nonce: u64,
    },
    /// A claim that is not a proof by its own account.
    #[error("nonce {nonce} claims distance {dist}, not below r_target {r_target}")]
    ClaimNotBelowTarget {
        /// The nonce.
        nonce: u64,
        /// Its claim.
        dist: f64,
        /// The threshold.
        r_target: f32,
    },
    /// No proofs at all.
    #[error("batch holds no proofs: nothing to verify and no weight to grant")]
    EmptyBatch,
    /// Bad key or signature.
    #[error("host signature: {0}")]
    Signature(#[from] CryptoError),
    /// The sample cannot be judged.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The binomial test convicts.
    #[error(
        "fraudulent: {mismatches} of {sampled} sampled proofs recompute at or above r_target + tolerance \
         (p = {p_value:.3e}); first: nonce {first_nonce} claimed {first_claimed:.6} recomputed {first_recomputed:.6}"
    )]
    Fraudulent {
        /// Mismatches.
        mismatches: usize,
        /// Sample size.
        sampled: usize,
        /// `P(X ≥ k)` under honest noise.
        p_value: f64,
        /// First mismatched nonce.
        first_nonce: u64,
        /// Its claim.
        first_claimed: f64,
        /// Its recomputation.
        first_recomputed: f64,
    },
}

/// Every check that needs no model: Sprint, model, threshold, order,
/// duplicates, claimed distances, public key and signature. Returns the model
/// config and the threshold.
pub fn check_batch(
    b: &ProofBatch,
    sprint_seed: &Hash32,
    r_target: Option<f32>,
) -> Result<(ModelConfig, f32), VerifyError> {
    if &b.sprint_seed != sprint_seed {
        return Err(VerifyError::WrongSprint {
            found: hex::encode(b.sprint_seed),
            expected: hex::encode(sprint_seed),
        });
    }
    let config = b.shape.named_config().ok_or(VerifyError::UnknownModel(b.shape))?;
    let expected = r_target.unwrap_or_else(|| default_r_target(config.vocab));
    if b.r_target_bits != expected.to_bits() {
        return Err(VerifyError::WrongRTarget { found: b.r_target(), expected });
    }
    if b.proofs.is_empty() {
        return Err(VerifyError::EmptyBatch);
    }
    for (index, w) in b.proofs.windows(2).enumerate() {
        let (prev, cur) = (w[0].nonce, w[1].nonce);
        if cur == prev {
            return Err(VerifyError::DuplicateNonce { index: index + 1, nonce: cur });
        }
        if cur < prev {
            return Err(VerifyError::Unsorted { index: index + 1, nonce: cur, previous: prev });
        }
    }
    if let Some(p) = b.proofs.iter().find(|p| p.dist.is_nan() || p.dist >= expected as f64) {
        return Err(VerifyError::ClaimNotBelowTarget { nonce: p.nonce, dist: p.dist, r_target: expected });
    }
    crypto::verify(Domain::ProofBatch, &b.pubkey, &b.commitment(), &b.signature)?;
    Ok((config, expected))
}

/// Verifies a proof file end to end.
pub fn verify_proof_file(bytes: &[u8], opt: &VerifyOptions<'_>) -> Result<VerifyReport, VerifyError> {
    let batch = decode_proof_file(bytes)?;
    let (config, r_target) = check_batch(&batch, &opt.sprint_seed, opt.r_target)?;
    let commitment = batch.commitment();
    let validator_sig = opt.validator.sign(Domain::ValidationSample, &commitment);
    let picked = sample_indices(&validator_sig, batch.proofs.len(), opt.sample);
    let claims: Vec<(u64, f64)> =
        picked.iter().map(|&i| (batch.proofs[i].nonce, batch.proofs[i].dist)).collect();
    let nonces: Vec<u64> = claims.iter().map(|c| c.0).collect();
    let t0 = Instant::now();
    let model = Model::generate(&config, &batch.sprint_seed);
    let init_time = t0.elapsed();
    let t1 = Instant::now();
    let f = SprintV1::new(&model, batch.sprint_seed, node_seed(&batch.pubkey), r_target, opt.precision);
    let recomputed = recompute(&f, &nonces, opt.batch, opt.threads);
    let recompute_time = t1.elapsed();
    let verdict = judge(&f, &claims, &recomputed, &opt.params)?;
    if verdict.fraudulent {
        let first = verdict.mismatches[0];
        return Err(VerifyError::Fraudulent {
            mismatches: verdict.mismatches.len(),
            sampled: verdict.sampled,
            p_value: verdict.p_value,
            first_nonce: first.nonce,
            first_claimed: first.claimed,
            first_recomputed: first.recomputed,
        });
    }
    Ok(VerifyReport {
        config,
        pubkey: batch.pubkey,
        proofs: batch.proofs.len(),
        nonces_tried: batch.nonces_tried,
        r_target,
        validator: (opt.validator.public_key(), validator_sig),
        verdict,
        init_time,
        recompute_time,
    })
}
