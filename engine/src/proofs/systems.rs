//! Proof-batch systems: commitments and contents during the Sprint.

use std::sync::Arc;

use bevy_ecs::prelude::*;

use super::components::*;
use crate::chain::input::{BlockInput, TxError};
use crate::chain::types::Transaction;
use crate::crypto::{self, Domain};
use crate::params::ChainParams;
use crate::sprints::Sprint;

/// Records each host's batch commitment (once per Sprint) while the Sprint runs.
pub fn record_proof_commitments(
    mut commands: Commands,
    mut input: ResMut<BlockInput>,
    sprint: Res<Sprint>,
    params: Res<ChainParams>,
    mut index: ResMut<BatchIndex>,
) {
    let height = input.height;
    let pending: Vec<_> = input
        .pending(|tx| match tx {
            Transaction::ProofCommitment { epoch, commitment, proofs } => {
                Some((*epoch, *commitment, *proofs))
            }
            _ => None,
        })
        .map(|(i, _, c)| (i, c))
        .collect();
    for (i, (epoch, commitment, proofs)) in pending {
        let what = "proof commitment";
        let outcome = input.registered_sender(i).and_then(|host| {
            check_window(&sprint, height, epoch, what)?;
            if proofs == 0 || proofs > u64::from(params.max_batch_proofs) {
                let why = format!("{proofs} proofs, expected 1..={}", params.max_batch_proofs);
                return Err(TxError::Invalid { what, why });
            }
            let key = BatchKey { epoch, host };
            if index.0.contains_key(&key) {
                return Err(TxError::Duplicate { what, host });
            }
            let entity = commands
                .spawn((
                    key,
                    BatchCommitment { commitment, proofs, height },
                    BatchTally::default(),
                    BatchStatus::Committed,
                ))
                .id();
            index.0.insert(key, entity);
            Ok(())
        });
        input.record(i, outcome);
    }
}

fn check_window(sprint: &Sprint, height: u64, epoch: u64, what: &'static str) -> Result<(), TxError> {
    if epoch != sprint.epoch {
        return Err(TxError::WrongEpoch { what, found: epoch, expected: sprint.epoch });
    }
    if !sprint.accepts_proofs(height) {
        return Err(TxError::OutsideWindow { what, height, from: sprint.start, to: sprint.end });
    }
    Ok(())
}

/// Accepts each committed host's batch when it matches its commitment and
/// passes every check that needs no model (the validators recompute the
/// rest). A batch that is the committed one — same root, the host's own
/// signature — but breaks a rule (another proof count than committed,
/// repeated or unordered nonces) is signed evidence of a false claim: the
/// transaction lands and the batch is `Rejected`, which counts as fraud.
pub fn record_proof_batches(
    mut input: ResMut<BlockInput>,
    sprint: Res<Sprint>,
    params: Res<ChainParams>,
    index: Res<BatchIndex>,
    verifier: Res<crate::chain::Verifier>,
    mut batches: Query<(&BatchCommitment, &mut BatchStatus)>,
    mut commands: Commands,
) {
    let height = input.height;
    let pending: Vec<usize> =
        input.pending(|tx| matches!(tx, Transaction::ProofBatch(_)).then_some(())).map(|p| p.0).collect();
    for i in pending {
        let what = "proof batch";
        let tx = Arc::clone(&input.transactions);
        let Transaction::ProofBatch(batch) = &tx[i].body else { unreachable!("filtered above") };
        let outcome = input.registered_sender(i).and_then(|host| {
            check_window(&sprint, height, sprint.epoch, what)?;
            let key = BatchKey { epoch: sprint.epoch, host };
            let entity =
                *index.0.get(&key).ok_or(TxError::NotAllowed { what, host, why: "no commitment" })?;
            let (commitment, mut status) = batches
                .get_mut(entity)
                .map_err(|_| TxError::Invalid { what, why: "batch entity missing".into() })?;
            if *status != BatchStatus::Committed {
                return Err(TxError::Duplicate { what, host });
            }
            match check_contents(batch, &tx[i].sender, commitment, &sprint, &params, &verifier.0)? {
                Authentic::Valid => {
                    *status = BatchStatus::Submitted;
                    commands.entity(entity).insert(BatchContents(Arc::new(batch.clone())));
                }
                Authentic::ContradictsItsClaim => *status = BatchStatus::Rejected,
            }
            Ok(())
        });
        input.record(i, outcome);
    }
}

/// What an authentic batch (the committed root, the host's signature) turned out to be.
enum Authentic {
    /// It passes every integer check.
    Valid,
    /// It breaks a rule its commitment claimed it keeps.
    ContradictsItsClaim,
}

/// Integer-only checks of a batch against its commitment and the Sprint.
fn check_contents(
    batch: &super::ProofBatch,
    sender: &crypto::PublicKeyBytes,
    commitment: &BatchCommitment,
    sprint: &Sprint,
    params: &ChainParams,
    verifier: &crate::crypto::cache::SigCache,
) -> Result<Authentic, TxError> {
    let what = "proof batch";
    let invalid = |why: String| Err(TxError::Invalid { what, why });
    if &batch.pubkey != sender {
        return invalid("the batch names another host's key".into());
    }
    if Some(batch.sprint_seed) != sprint.seed {
        return invalid("the batch is for another Sprint seed".into());
    }
    if batch.shape != params.pow_shape || batch.difficulty != params.pow_difficulty {
        return invalid(format!("model or difficulty differ from the chain's ({})", params.pow_difficulty));
    }
    let root = batch.commitment();
    if root != commitment.commitment {
        return invalid("contents do not match the commitment".into());
    }
    verifier
        .verify(Domain::ProofBatch, sender, &root, &batch.signature)
        .map_err(|e| TxError::Invalid { what, why: e.to_string() })?;
    let miscounted = batch.proofs.len() as u64 != commitment.proofs;
    let unordered = batch.proofs.windows(2).any(|w| w[1].nonce <= w[0].nonce);
    Ok(if miscounted || unordered { Authentic::ContradictsItsClaim } else { Authentic::Valid })
}
