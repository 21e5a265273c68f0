//! Validation systems.

use bevy_ecs::prelude::*;

use super::components::*;
use crate::chain::input::{BlockInput, TxError};
use crate::chain::types::{BatchVerdict, Transaction};
use crate::hosts::{HostId, ValidationDuty, VotingHosts};
use crate::proofs::components::{BatchIndex, BatchKey, BatchStatus, BatchTally};
use crate::sprints::Sprint;

/// Records each voting host's report (one per epoch) during the validation window.
pub fn record_validation_reports(
    mut commands: Commands,
    mut input: ResMut<BlockInput>,
    sprint: Res<Sprint>,
    voting: Res<VotingHosts>,
    batches: Res<BatchIndex>,
    statuses: Query<&BatchStatus>,
    mut reports: ResMut<ReportIndex>,
) {
    let height = input.height;
    let what = "proof validation";
    let pending: Vec<_> = input
        .pending(|tx| match tx {
            Transaction::ProofValidation { epoch, verdicts } => Some((*epoch, verdicts.clone())),
            _ => None,
        })
        .map(|(i, _, v)| (i, v))
        .collect();
    for (i, (epoch, verdicts)) in pending {
        let outcome = input.registered_sender(i).and_then(|host| {
            if epoch != sprint.epoch {
                return Err(TxError::WrongEpoch { what, found: epoch, expected: sprint.epoch });
            }
            if !sprint.accepts_validations(height) {
                let (from, to) = (sprint.end + 1, sprint.validation_end);
                return Err(TxError::OutsideWindow { what, height, from, to });
            }
            let pos =
                voting.position(host).ok_or(TxError::NotAllowed { what, host, why: "not a voting host" })?;
            if voting.weights[pos] == 0 {
                return Err(TxError::NotAllowed { what, host, why: "holds no weight" });
            }
            if reports.0.contains_key(&(epoch, host)) {
                return Err(TxError::Duplicate { what, host });
            }
            check_verdicts(&verdicts, host, epoch, &batches, &statuses)?;
            let entity = commands.spawn(ValidationReport { epoch, validator: host, verdicts, height }).id();
            reports.0.insert((epoch, host), entity);
            Ok(())
        });
        input.record(i, outcome);
    }
}

fn check_verdicts(
    verdicts: &[BatchVerdict],
    validator: u32,
    epoch: u64,
    batches: &BatchIndex,
    statuses: &Query<&BatchStatus>,
) -> Result<(), TxError> {
    let what = "proof validation";
    if let Some(k) = verdicts.windows(2).position(|w| w[1].host <= w[0].host) {
        return Err(TxError::Invalid {
            what,
            why: format!("verdict hosts not strictly ascending at {}", k + 1),
        });
    }
    for v in verdicts {
        if v.host == validator {
            return Err(TxError::Invalid { what, why: "a host may not judge its own batch".into() });
        }
        let submitted = batches
            .0
            .get(&BatchKey { epoch, host: v.host })
            .and_then(|&e| statuses.get(e).ok())
            .is_some_and(|s| *s == BatchStatus::Submitted);
        if !submitted {
            return Err(TxError::Invalid { what, why: format!("host {} has no submitted batch", v.host) });
        }
    }
    Ok(())
}

/// At the last validation height: adds each report's weight to its batches,
/// decides every batch by more than half of its validating weight, and
/// records each voting host's validation share.
pub fn tally_proof_batches(
    input: Res<BlockInput>,
    sprint: Res<Sprint>,
    voting: Res<VotingHosts>,
    batches: Res<BatchIndex>,
    reports: Res<ReportIndex>,
    report_data: Query<&ValidationReport>,
    mut tallies: Query<(&BatchKey, &mut BatchTally, &mut BatchStatus)>,
    mut duties: Query<(&HostId, &mut ValidationDuty)>,
) {
    if sprint.seed.is_none() || input.height != sprint.validation_end {
        return;
    }
    let epoch = sprint.epoch;
    let total = voting.total_weight();
    let weight_of = |host: u32| voting.position(host).map_or(0, |p| u128::from(voting.weights[p]));
    let mut submitted: Vec<u32> = Vec::new();
    for (_, &entity) in batches.0.range(BatchKey { epoch, host: 0 }..=BatchKey { epoch, host: u32::MAX }) {
        if let Ok((key, mut tally, mut status)) = tallies.get_mut(entity) {
            match *status {
                BatchStatus::Committed => *status = BatchStatus::Missing,
                BatchStatus::Submitted => {
                    tally.validating = total - weight_of(key.host);
                    submitted.push(key.host);
                }
                _ => {}
            }
        }
    }
    let mut done = std::collections::BTreeMap::<u32, u32>::new();
    for (&(e, validator), &entity) in reports.0.range((epoch, 0)..=(epoch, u32::MAX)) {
        debug_assert_eq!(e, epoch);
        let Ok(report) = report_data.get(entity) else { continue };
        let w = weight_of(validator);
        done.insert(validator, report.verdicts.len() as u32);
        for v in &report.verdicts {
            let Some(&b) = batches.0.get(&BatchKey { epoch, host: v.host }) else { continue };
            if let Ok((_, mut tally, _)) = tallies.get_mut(b) {
                if v.accept { tally.accept += w } else { tally.reject += w }
            }
        }
    }
    for &host in &submitted {
        let Some(&b) = batches.0.get(&BatchKey { epoch, host }) else { continue };
        if let Ok((_, tally, mut status)) = tallies.get_mut(b) {
            *status = if 2 * tally.accept > tally.validating {
                BatchStatus::Accepted
            } else if 2 * tally.reject > tally.validating {
                BatchStatus::Rejected
            } else {
                BatchStatus::Undecided
            };
        }
    }
    for (id, mut duty) in &mut duties {
        let Some(pos) = voting.position(id.0) else { continue };
        if voting.weights[pos] == 0 {
            continue;
        }
        let own = u32::from(submitted.binary_search(&id.0).is_ok());
        *duty = ValidationDuty {
            expected: submitted.len() as u32 - own,
            done: done.get(&id.0).copied().unwrap_or(0),
        };
    }
}
