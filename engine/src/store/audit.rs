//! Offline re-verification of a stored Sprint: every stored batch of the
//! epoch checked again (claims, signature, a freshly drawn sample
//! recomputed), the verdicts compared with what the chain decided, and the
//! weights the chain's rule gives from our verdicts compared with the
//! weights it recorded.

use gonka_kernels::Precision;
use gonka_kernels::encoding::Hash32;
use gonka_storage::keys;

use super::tables::{EpochRecord, GENESIS, PROOF_BATCHES, SINGLE, SPRINTS};
use super::{ChainStore, ChainStoreError};
use crate::crypto::{HostKey, PublicKeyBytes};
use crate::proofs::components::BatchStatus;
use crate::proofs::{Difficulty, PowVersion, VerifyOptions, verify_batch};
use crate::sprints::next_weights;

/// One batch checked again.
#[derive(Debug, Clone)]
pub struct BatchAudit {
    /// The host's registry index.
    pub host: u32,
    /// Proofs it committed to.
    pub proofs: u64,
    /// What the chain decided.
    pub recorded: BatchStatus,
    /// Our verdict: `Ok` valid, `Err` why not (or why it could not be checked).
    pub ours: Result<(), String>,
}

impl BatchAudit {
    /// Whether our verdict agrees with the chain's (an undecided batch agrees with anything).
    pub fn agrees(&self) -> bool {
        match self.recorded {
            BatchStatus::Accepted => self.ours.is_ok(),
            BatchStatus::Rejected => self.ours.is_err(),
            BatchStatus::Committed
            | BatchStatus::Missing
            | BatchStatus::Undecided
            | BatchStatus::Submitted => true,
        }
    }
}

/// The re-verification of one epoch.
#[derive(Debug, Clone)]
pub struct EpochAudit {
    /// The epoch.
    pub epoch: u64,
    /// Its Sprint seed; `None` when the epoch had no Sprint.
    pub seed: Option<Hash32>,
    /// Each batch.
    pub batches: Vec<BatchAudit>,
    /// `(host, key, recorded weight, weight from our verdicts)` for every host.
    pub weights: Vec<(u32, PublicKeyBytes, u64, u64)>,
}

impl EpochAudit {
    /// Whether every verdict and every weight agrees.
    pub fn agrees(&self) -> bool {
        self.batches.iter().all(BatchAudit::agrees) && self.weights.iter().all(|w| w.2 == w.3)
    }
}

/// Re-verifies `epoch` from the store, recomputing `sample` proofs per batch
/// (`None`: the chain's validation sample) with `validator`'s signature
/// choosing them, on `threads` cores.
pub fn audit_epoch(
    store: &ChainStore,
    epoch: u64,
    validator: &HostKey,
    sample: Option<usize>,
    threads: usize,
) -> Result<EpochAudit, ChainStoreError> {
    let txn = store.read()?;
    let missing = |what: String| store.inconsistent(what);
    let genesis = GENESIS.get_owned(&txn, SINGLE)?.ok_or_else(|| missing("no genesis".into()))?;
    let record: EpochRecord = super::tables::EPOCHS
        .get_owned(&txn, &keys::u64(epoch))?
        .ok_or_else(|| missing(format!("epoch {epoch} has not closed in this store")))?;
    let previous: Vec<(u32, u64)> = match epoch.checked_sub(1) {
        None => genesis.hosts.iter().enumerate().map(|(i, h)| (i as u32, h.weight)).collect(),
        Some(e) => super::tables::EPOCHS
            .get_owned(&txn, &keys::u64(e))?
            .ok_or_else(|| missing(format!("epoch {e}'s record is missing")))?
            .weights
            .iter()
            .map(|w| (w.0, w.2))
            .collect(),
    };
    let seed = SPRINTS.get_owned(&txn, &keys::u64(epoch))?.and_then(|s| s.seed);
    let params = &genesis.params;
    let (pow, r_target) = match params.pow_difficulty {
        Difficulty::V1 { r_target_bits } => (PowVersion::V1, Some(f32::from_bits(r_target_bits))),
        Difficulty::V2 { .. } => (PowVersion::V2, None),
    };
    let mut batches = Vec::with_capacity(record.batches.len());
    for b in &record.batches {
        let stored = PROOF_BATCHES.get_owned(&txn, &keys::u64_u32(epoch, b.host))?;
        let ours = match (&stored, seed) {
            (None, _) if matches!(b.status, BatchStatus::Committed | BatchStatus::Missing) => {
                Err("no batch was submitted".to_string())
            }
            (None, _) => Err("the batch is not in the store (pruned?)".to_string()),
            (Some(_), None) => Err("the epoch has no Sprint seed".to_string()),
            (Some(batch), Some(seed)) => {
                let opts = VerifyOptions {
                    sprint_seed: seed,
                    pow,
                    r_target,
                    sample: sample.unwrap_or(params.validation_sample as usize),
                    validator,
                    precision: Precision::F32,
                    threads,
                    batch: 16,
                    params: None,
                    difficulty: Some(params.pow_difficulty),
                };
                verify_batch(batch, &opts).map(|_| ()).map_err(|e| e.to_string())
            }
        };
        batches.push(BatchAudit { host: b.host, proofs: b.commitment.proofs, recorded: b.status, ours });
    }
    let penalized = |id: u32| record.penalized.binary_search(&id).is_ok();
    let earned: Vec<u64> = record
        .weights
        .iter()
        .map(|&(id, _, _)| {
            let batch = batches.iter().find(|b| b.host == id);
            let valid = batch.is_some_and(|b| b.ours.is_ok() && b.recorded != BatchStatus::Missing);
            if valid && seed.is_some() && !penalized(id) { batch.map_or(0, |b| b.proofs) } else { 0 }
        })
        .collect();
    let carried: Vec<u64> = record
        .weights
        .iter()
        .map(
            |&(id, _, _)| {
                if penalized(id) { 0 } else { previous.iter().find(|p| p.0 == id).map_or(0, |p| p.1) }
            },
        )
        .collect();
    let ours = next_weights(&earned, &carried, &carried, params.max_weight_share);
    let weights =
        record.weights.iter().zip(ours).map(|(&(id, key, recorded), o)| (id, key, recorded, o)).collect();
    Ok(EpochAudit { epoch, seed, batches, weights })
}
