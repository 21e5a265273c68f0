//! Epoch and beacon systems, in the order the plugin runs them.

use bevy_ecs::prelude::*;

use super::components::*;
use crate::chain::input::{BlockInput, TxError};
use crate::chain::types::Transaction;
use crate::crypto::PublicKeyBytes;
use crate::crypto::beacon::{BeaconPartials, BeaconRound};
use crate::crypto::wire::encode;
use crate::hosts::{HostId, HostPublicKey, Penalized, ValidationDuty, VotingHosts, Weight};
use crate::params::ChainParams;

/// Sets the clock to the block being applied.
pub fn advance_clock(input: Res<BlockInput>, params: Res<ChainParams>, mut clock: ResMut<EpochClock>) {
    let epoch = params.epoch_of(input.height);
    *clock = EpochClock { height: input.height, epoch, offset: input.height - params.epoch_start(epoch) };
}

/// Transcript tags of the accepted message kinds.
const TAG_DKG: u8 = 1;
const TAG_SEED_COMMIT: u8 = 2;
const TAG_SEED_REVEAL: u8 = 3;
const TAG_PARTIALS: u8 = 4;

fn member(
    input: &BlockInput,
    i: usize,
    voting: &VotingHosts,
    beacon: &BeaconState,
    what: &'static str,
) -> Result<u32, TxError> {
    let host = input.registered_sender(i)?;
    let pos = voting.position(host).ok_or(TxError::NotAllowed { what, host, why: "not a voting host" })?;
    beacon.member_of(pos as u32).ok_or(TxError::NotAllowed { what, host, why: "not in the DKG committee" })
}

/// Feeds DKG deals, complaints and justifications to the epoch's DKG.
pub fn apply_dkg_messages(
    mut input: ResMut<BlockInput>,
    voting: Res<VotingHosts>,
    mut beacon: ResMut<BeaconState>,
) {
    let height = input.height;
    let pending: Vec<usize> =
        input.pending(|tx| matches!(tx, Transaction::Dkg(_)).then_some(())).map(|p| p.0).collect();
    for i in pending {
        let Transaction::Dkg(msg) = &input.transactions[i].body else { unreachable!("filtered above") };
        let msg = msg.clone();
        let outcome = member(&input, i, &voting, &beacon, "DKG message").and_then(|m| {
            let dkg = beacon
                .dkg
                .as_mut()
                .ok_or(TxError::Invalid { what: "DKG message", why: "no DKG this epoch".into() })?;
            dkg.apply(height, m, &msg)
                .map_err(|e| TxError::Invalid { what: "DKG message", why: e.to_string() })?;
            beacon.append(TAG_DKG, m, &encode(&msg));
            Ok(())
        });
        input.record(i, outcome);
    }
}

/// Right after the justification deadline: the group key, and the beacon round it signs with.
pub fn finish_dkg(clock: Res<EpochClock>, params: Res<ChainParams>, mut beacon: ResMut<BeaconState>) {
    if clock.offset != params.dkg_justification_blocks + 1 || beacon.status != BeaconStatus::Pending {
        return;
    }
    let Some(dkg) = beacon.dkg.as_ref() else { return };
    match dkg.finish(clock.height) {
        Ok(outcome) => {
            let partials_open = params.epoch_start(clock.epoch) + params.partials_open_offset();
            let mut round = BeaconRound::new(
                clock.epoch,
                &beacon.previous,
                outcome.public.clone(),
                outcome.slots.clone(),
                partials_open,
            );
            round.precompute_share_keys();
            beacon.beacon_round = Some(round);
            beacon.outcome = Some(outcome);
        }
        Err(_) => beacon.status = BeaconStatus::Failed { why: BeaconFailure::NoQualifiedDealer },
    }
}

/// Seed commitments and reveals of the voting hosts.
pub fn apply_seed_messages(
    mut input: ResMut<BlockInput>,
    voting: Res<VotingHosts>,
    mut beacon: ResMut<BeaconState>,
) {
    let height = input.height;
    let pending: Vec<usize> = input
        .pending(|tx| matches!(tx, Transaction::SeedCommit(_) | Transaction::SeedReveal(_)).then_some(()))
        .map(|p| p.0)
        .collect();
    for i in pending {
        let body = input.transactions[i].body.clone();
        let what = body.kind();
        let outcome = input.registered_sender(i).and_then(|host| {
            let pos =
                voting.position(host).ok_or(TxError::NotAllowed { what, host, why: "not a voting host" })?
                    as u32;
            let round =
                beacon.seed_round.as_mut().ok_or(TxError::Invalid { what, why: "no seed round".into() })?;
            let invalid =
                |e: crate::crypto::beacon::BeaconError| TxError::Invalid { what, why: e.to_string() };
            let (tag, bytes) = match &body {
                Transaction::SeedCommit(c) => {
                    round.commit(height, pos, c).map_err(invalid)?;
                    (TAG_SEED_COMMIT, encode(c))
                }
                Transaction::SeedReveal(r) => {
                    round.reveal(height, pos, r).map_err(invalid)?;
                    (TAG_SEED_REVEAL, encode(r))
                }
                _ => unreachable!("filtered above"),
            };
            beacon.append(tag, pos, &bytes);
            Ok(())
        });
        input.record(i, outcome);
    }
}

/// Beacon partials of the block, batch-verified together.
pub fn apply_beacon_partials(
    mut input: ResMut<BlockInput>,
    voting: Res<VotingHosts>,
    mut beacon: ResMut<BeaconState>,
) {
    let height = input.height;
    let pending: Vec<usize> =
        input.pending(|tx| matches!(tx, Transaction::BeaconPartials(_)).then_some(())).map(|p| p.0).collect();
    if pending.is_empty() {
        return;
    }
    let mut accepted: Vec<(usize, u32, BeaconPartials)> = Vec::new();
    for &i in &pending {
        let Transaction::BeaconPartials(msg) = &input.transactions[i].body else {
            unreachable!("filtered above")
        };
        match member(&input, i, &voting, &beacon, "beacon partials") {
            Ok(m) => accepted.push((i, m, msg.clone())),
            Err(e) => input.record(i, Err(e)),
        }
    }
    let Some(round) = beacon.beacon_round.as_mut() else {
        for (i, _, _) in accepted {
            input.record(
                i,
                Err(TxError::Invalid { what: "beacon partials", why: "no beacon round open".into() }),
            );
        }
        return;
    };
    let msgs: Vec<(u32, &BeaconPartials)> = accepted.iter().map(|(_, m, p)| (*m, p)).collect();
    let results = round.add_block(height, &msgs);
    for ((i, m, msg), result) in accepted.iter().zip(results) {
        let outcome = result.map_err(|e| TxError::Invalid { what: "beacon partials", why: e.to_string() });
        if outcome.is_ok() {
            beacon.append(TAG_PARTIALS, *m, &encode(msg));
        }
        input.record(*i, outcome);
    }
}

/// Recovers `σ_e` once enough partials are in, derives the Sprint seed and
/// opens the Sprint; past the deadline, marks the epoch Sprint-less.
pub fn finish_beacon(
    clock: Res<EpochClock>,
    params: Res<ChainParams>,
    mut beacon: ResMut<BeaconState>,
    mut sprint: ResMut<Sprint>,
) {
    if beacon.status != BeaconStatus::Pending {
        return;
    }
    let recovered = beacon.beacon_round.as_ref().and_then(|r| r.finish().ok());
    let seeded = recovered.and_then(|b| {
        let outcome = beacon.seed_round.as_ref()?.finish(clock.height, &b.signature).ok()?;
        Some((b, outcome))
    });
    match seeded {
        Some((b, outcome)) => {
            beacon.previous = b.value;
            beacon.status = BeaconStatus::Ready { height: clock.height };
            let start = clock.height + 1;
            let end = clock.height + params.sprint_blocks;
            *sprint = Sprint {
                epoch: clock.epoch,
                seed: Some(outcome.sprint_seed),
                start,
                end,
                validation_end: end + params.validation_blocks,
            };
        }
        None if clock.offset >= params.beacon_deadline_offset() => {
            beacon.status = BeaconStatus::Failed { why: BeaconFailure::NotRecovered };
        }
        None => {}
    }
}

/// At the epoch's last block: the next epoch's weights (accepted proofs of
/// this Sprint, capped, nothing for a penalized host; carried over when the
/// epoch had no Sprint or nobody earned weight), its voting list, its DKG
/// and commit–reveal; records of the epoch before this one are dropped.
pub fn rotate_epoch(
    clock: Res<EpochClock>,
    params: Res<ChainParams>,
    mut voting: ResMut<VotingHosts>,
    mut beacon: ResMut<BeaconState>,
    mut sprint: ResMut<Sprint>,
    mut batch_index: ResMut<crate::proofs::components::BatchIndex>,
    mut report_index: ResMut<crate::validations::ReportIndex>,
    batches: Query<(&crate::proofs::components::BatchCommitment, &crate::proofs::components::BatchStatus)>,
    mut hosts: Query<(&HostId, &HostPublicKey, &mut Weight, Option<&Penalized>, &mut ValidationDuty)>,
    verifier: Res<crate::chain::Verifier>,
    mut commands: Commands,
) {
    use crate::proofs::components::{BatchKey, BatchStatus};
    if clock.offset + 1 != params.epoch_blocks {
        return;
    }
    let epoch = clock.epoch;
    let mut rows: Vec<(u32, PublicKeyBytes, u64, u64)> = Vec::with_capacity(hosts.iter().len());
    for (id, key, weight, penalized, _) in &hosts {
        let penalized = penalized.is_some_and(|p| p.epoch == epoch);
        let earned = if penalized || sprint.seed.is_none() {
            0
        } else {
            batch_index
                .0
                .get(&BatchKey { epoch, host: id.0 })
                .and_then(|&e| batches.get(e).ok())
                .filter(|(_, s)| **s == BatchStatus::Accepted)
                .map_or(0, |(c, _)| c.proofs)
        };
        let carried = if penalized { 0 } else { weight.0 };
        rows.push((id.0, key.0, earned, carried));
    }
    rows.sort_unstable_by_key(|r| r.0);
    let earned: Vec<u64> = rows.iter().map(|r| r.2).collect();
    let carried: Vec<u64> = rows.iter().map(|r| r.3).collect();
    let voting_now: Vec<u64> =
        rows.iter().map(|r| voting.position(r.0).map_or(0, |p| voting.weights[p])).collect();
    let next = next_weights(&earned, &carried, &voting_now, params.max_weight_share);
    for (id, _, mut weight, _, mut duty) in &mut hosts {
        if let Ok(k) = rows.binary_search_by_key(&id.0, |r| r.0) {
            weight.0 = next[k];
        }
        *duty = ValidationDuty::default();
    }
    let members: Vec<(u32, PublicKeyBytes, u64)> =
        rows.iter().zip(&next).filter(|(_, w)| **w > 0).map(|(r, &w)| (r.0, r.1, w)).collect();
    if let Ok(list) = VotingHosts::new(epoch + 1, members, &verifier.0) {
        *voting = list;
    }
    let (b, s) = open_epoch(epoch + 1, &params, &voting, beacon.previous);
    *beacon = b;
    *sprint = s;
    // Keep this epoch's batches and reports (the rewards read them); drop the epoch before.
    if let Some(old) = epoch.checked_sub(1) {
        let keys: Vec<BatchKey> =
            batch_index.0.range(..=BatchKey { epoch: old, host: u32::MAX }).map(|(k, _)| *k).collect();
        for k in keys {
            if let Some(e) = batch_index.0.remove(&k) {
                commands.entity(e).despawn();
            }
        }
        let keys: Vec<(u64, u32)> = report_index.0.range(..=(old, u32::MAX)).map(|(k, _)| *k).collect();
        for k in keys {
            if let Some(e) = report_index.0.remove(&k) {
                commands.entity(e).despawn();
            }
        }
    }
}

/// The weights of the next epoch, one per host in registry order: what each
/// earned in the Sprint (its accepted batch's proofs; zero when penalized
/// or without a batch); when nobody earned anything (no Sprint), the weights
/// `carried` over (zero for the penalized); when that too is all zero, the
/// epoch's `voting` weights, so the chain never loses its voters. Then the
/// cap, if any.
pub fn next_weights(
    earned: &[u64],
    carried: &[u64],
    voting: &[u64],
    cap: Option<crate::params::Share>,
) -> Vec<u64> {
    let mut next = if earned.iter().any(|&w| w > 0) { earned.to_vec() } else { carried.to_vec() };
    if next.iter().all(|&w| w == 0) {
        next = voting.to_vec();
    }
    if let Some(cap) = cap {
        apply_cap(&mut next, cap);
    }
    next
}

/// Caps every weight at `⌊total·num/den⌋` of the uncapped total (one pass:
/// the cap is a share of what was earned, not a fixed point).
fn apply_cap(weights: &mut [u64], cap: crate::params::Share) {
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let limit = total * u128::from(cap.num) / u128::from(cap.den);
    let limit = u64::try_from(limit).unwrap_or(u64::MAX).max(1);
    for w in weights.iter_mut() {
        *w = (*w).min(limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_a_share_of_the_earned_total() {
        let mut w = vec![70, 20, 10, 0];
        apply_cap(&mut w, crate::params::Share { num: 1, den: 2 });
        assert_eq!(w, vec![50, 20, 10, 0], "capped at half of 100");
        let mut w = vec![1, 1];
        apply_cap(&mut w, crate::params::Share { num: 1, den: 10 });
        assert_eq!(w, vec![1, 1], "a cap never drops below one unit");
    }
}
