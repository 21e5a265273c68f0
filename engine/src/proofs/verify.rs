//! Offline verification of a proof file: decode, check every claim that can be
//! checked without the model, then recompute the validator's sample.

use std::time::{Duration, Instant};

use gonka_kernels::encoding::Hash32;
use gonka_kernels::model::Model;
use gonka_kernels::pow::{default_r_target, node_seed};
use gonka_kernels::sprint::{SprintV1, SprintV2};
use gonka_kernels::validate::{ValidationError, ValidationParams, Verdict, judge, recompute};
use gonka_kernels::{ModelConfig, Precision};

use super::{
    Difficulty, PowVersion, ProofBatch, ProofFileError, V2_NONCES_PER_PROOF, decode_proof_file,
    sample_indices,
};
use crate::crypto::{self, CryptoError, Domain, HostKey, PublicKeyBytes, SignatureBytes};

/// How to verify.
#[derive(Debug)]
pub struct VerifyOptions<'a> {
    /// The Sprint the batch must belong to.
    pub sprint_seed: Hash32,
    /// The Sprint function the batch must use.
    pub pow: PowVersion,
    /// v1's threshold; `None` is the default for the batch's model.
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
    /// Tolerance and test thresholds; `None` is the function's default
    /// (v1: noise tolerance; v2: exact, no tolerance).
    pub params: Option<ValidationParams>,
    /// The difficulty the batch must have, where a chain sets it; `None`:
    /// the function's default for the model (and `r_target`).
    pub difficulty: Option<Difficulty>,
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
    /// The Sprint function and its difficulty.
    pub difficulty: Difficulty,
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
    /// Claims another function or difficulty.
    #[error("batch claims difficulty ({found}), the Sprint's is ({expected})")]
    WrongDifficulty {
        /// The file's.
        found: Difficulty,
        /// The Sprint's.
        expected: Difficulty,
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
    #[error("nonce {nonce} claims score {score}, which is not a proof at difficulty ({difficulty})")]
    ClaimNotAProof {
        /// The nonce.
        nonce: u64,
        /// Its claim.
        score: f64,
        /// The difficulty.
        difficulty: Difficulty,
    },
    /// This build cannot recompute the batch's function.
    #[error("this build cannot recompute Sprint function {0}")]
    Unsupported(&'static str),
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

/// The difficulty a Sprint of function `pow` demands of a batch on `config`.
pub fn expected_difficulty(pow: PowVersion, r_target: Option<f32>, config: &ModelConfig) -> Difficulty {
    match pow {
        PowVersion::V1 => Difficulty::v1(r_target.unwrap_or_else(|| default_r_target(config.vocab))),
        PowVersion::V2 => Difficulty::V2 { nonces_per_proof: V2_NONCES_PER_PROOF },
    }
}

/// Whether `score` claims a proof at `difficulty` by its own account.
fn claims_proof(difficulty: Difficulty, score: f64) -> bool {
    match difficulty {
        Difficulty::V1 { r_target_bits } => score < f32::from_bits(r_target_bits) as f64,
        // v2's score is the digest's leading 64 bits as a fraction; the exact
        // 256-bit comparison happens on recomputation.
        Difficulty::V2 { nonces_per_proof } => score <= 1.0 / nonces_per_proof as f64,
    }
}

/// Every check that needs no model: Sprint, model, function and difficulty,
/// order, duplicates, claimed scores, public key and signature. Returns the
/// model config.
pub fn check_batch(
    b: &ProofBatch,
    sprint_seed: &Hash32,
    pow: PowVersion,
    r_target: Option<f32>,
) -> Result<ModelConfig, VerifyError> {
    check_batch_at(b, sprint_seed, |config| expected_difficulty(pow, r_target, config))
}

/// [`check_batch`] against the difficulty `expected` gives for the batch's model.
pub fn check_batch_at(
    b: &ProofBatch,
    sprint_seed: &Hash32,
    expected: impl FnOnce(&ModelConfig) -> Difficulty,
) -> Result<ModelConfig, VerifyError> {
    if &b.sprint_seed != sprint_seed {
        return Err(VerifyError::WrongSprint {
            found: hex::encode(b.sprint_seed),
            expected: hex::encode(sprint_seed),
        });
    }
    let config = b.shape.named_config().ok_or(VerifyError::UnknownModel(b.shape))?;
    let expected = expected(&config);
    if b.difficulty != expected {
        return Err(VerifyError::WrongDifficulty { found: b.difficulty, expected });
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
    if let Some(p) = b.proofs.iter().find(|p| !claims_proof(expected, p.score)) {
        return Err(VerifyError::ClaimNotAProof { nonce: p.nonce, score: p.score, difficulty: expected });
    }
    crypto::verify(Domain::ProofBatch, &b.pubkey, &b.commitment(), &b.signature)?;
    Ok(config)
}

/// Verifies a proof file end to end.
pub fn verify_proof_file(bytes: &[u8], opt: &VerifyOptions<'_>) -> Result<VerifyReport, VerifyError> {
    verify_batch(&decode_proof_file(bytes)?, opt)
}

/// Verifies a decoded batch: every claim, then the validator's sample recomputed.
pub fn verify_batch(batch: &ProofBatch, opt: &VerifyOptions<'_>) -> Result<VerifyReport, VerifyError> {
    let config = check_batch_at(batch, &opt.sprint_seed, |config| {
        opt.difficulty.unwrap_or_else(|| expected_difficulty(opt.pow, opt.r_target, config))
    })?;
    let commitment = batch.commitment();
    let validator_sig = opt.validator.sign(Domain::ValidationSample, &commitment);
    let picked = sample_indices(&validator_sig, batch.proofs.len(), opt.sample);
    let claims: Vec<(u64, f64)> =
        picked.iter().map(|&i| (batch.proofs[i].nonce, batch.proofs[i].score)).collect();
    let nonces: Vec<u64> = claims.iter().map(|c| c.0).collect();
    let node = node_seed(&batch.pubkey);
    let t0 = Instant::now();
    let (verdict, init_time, recompute_time) = match batch.difficulty {
        Difficulty::V1 { r_target_bits } => {
            let model = Model::generate(&config, &batch.sprint_seed);
            let init_time = t0.elapsed();
            let f =
                SprintV1::new(&model, batch.sprint_seed, node, f32::from_bits(r_target_bits), opt.precision);
            let t1 = Instant::now();
            let recomputed = recompute(&f, &nonces, opt.batch, opt.threads);
            let params = opt.params.unwrap_or_default();
            (judge(&f, &claims, &recomputed, &params)?, init_time, t1.elapsed())
        }
        Difficulty::V2 { nonces_per_proof } => {
            let model = gonka_kernels::v2::Model::generate(&config, &batch.sprint_seed)
                .map_err(|_| VerifyError::Unsupported("v2 on this model"))?;
            let init_time = t0.elapsed();
            let f = SprintV2::new(&model, batch.sprint_seed, node, nonces_per_proof);
            let t1 = Instant::now();
            let recomputed = recompute(&f, &nonces, opt.batch, opt.threads);
            let params = opt.params.unwrap_or_else(ValidationParams::exact);
            (judge(&f, &claims, &recomputed, &params)?, init_time, t1.elapsed())
        }
    };
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
        difficulty: batch.difficulty,
        validator: (opt.validator.public_key(), validator_sig),
        verdict,
        init_time,
        recompute_time,
    })
}
