//! Block systems.

use bevy_ecs::prelude::*;

use super::components::*;
use crate::chain::input::{BlockInput, TxError};
use crate::chain::types::Transaction;
use crate::hosts::{HostRegistry, Penalized, VotingHosts};
use crate::params::ChainParams;
use crate::sprints::EpochClock;

/// Punishes equivocation evidence about votes of this epoch: the voter's
/// weight drops to zero from the next block, it earns no weight at the
/// boundary and forfeits the epoch's rewards.
pub fn punish_equivocations(
    mut commands: Commands,
    mut input: ResMut<BlockInput>,
    clock: Res<EpochClock>,
    params: Res<ChainParams>,
    registry: Res<HostRegistry>,
    mut voting: ResMut<VotingHosts>,
    mut seen: ResMut<EvidenceSeen>,
    verifier: Res<crate::chain::Verifier>,
) {
    let what = "equivocation";
    let pending: Vec<usize> =
        input.pending(|tx| matches!(tx, Transaction::Equivocation(_)).then_some(())).map(|p| p.0).collect();
    for i in pending {
        let Transaction::Equivocation(evidence) = &input.transactions[i].body else {
            unreachable!("filtered")
        };
        let evidence = evidence.clone();
        let outcome = input.registered_sender(i).and_then(|_| {
            let height = evidence.a.height;
            if params.epoch_of(height) != clock.epoch || height > clock.height {
                let why = format!("votes at height {height} are not of this epoch's past");
                return Err(TxError::Invalid { what, why });
            }
            let voter = *voting
                .ids
                .get(evidence.a.voter as usize)
                .ok_or(TxError::Invalid { what, why: "no such voter".into() })?;
            // Already punished (this offence, or any this epoch: its weight is
            // gone): refuse before paying for the signature checks.
            let key = (height, voter, evidence.a.round);
            if seen.0.contains_key(&key) || voting.weights.get(evidence.a.voter as usize) == Some(&0) {
                return Err(TxError::Duplicate { what, host: voter });
            }
            evidence
                .verify(&voting.hosts, &verifier.0)
                .map_err(|e| TxError::Invalid { what, why: e.to_string() })?;
            // Evidence names this epoch's heights only: older entries can go.
            let epoch_start = params.epoch_start(clock.epoch);
            seen.0 = seen.0.split_off(&(epoch_start, 0, 0));
            seen.0.insert(key, ());
            if let Some(entity) = registry.entity(voter) {
                commands.entity(entity).insert(Penalized { epoch: clock.epoch });
            }
            if let Some(list) = voting.without(voter) {
                *voting = list;
            }
            Ok(())
        });
        input.record(i, outcome);
    }
}

/// Records the block and forgets records older than one epoch.
pub fn record_block(
    mut commands: Commands,
    input: Res<BlockInput>,
    params: Res<ChainParams>,
    mut tip: ResMut<ChainTip>,
) {
    let failed = input.receipts.iter().filter(|r| matches!(r, Some(Err(_)))).count() as u32;
    let record = BlockRecord {
        height: input.height,
        hash: input.hash,
        round: input.round,
        proposer: input.proposer,
        transactions: input.transactions.len() as u32,
        failed,
    };
    let entity = commands.spawn(record).id();
    tip.records.insert(input.height, entity);
    tip.height = Some(input.height);
    tip.hash = input.hash;
    while let Some((&h, &e)) = tip.records.first_key_value() {
        if h + params.epoch_blocks > input.height {
            break;
        }
        commands.entity(e).despawn();
        tip.records.remove(&h);
    }
}
