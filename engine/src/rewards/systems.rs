//! The epoch's close: mint the subsidy, decide each host's release,
//! update reputations, roll the volume, sweep dummy accounts.

use bevy_ecs::prelude::*;

use super::components::*;
use super::rate::{decay, enough};
use crate::hosts::{HostId, HostPublicKey, Penalized, ValidationDuty, VotingHosts};
use crate::params::ChainParams;
use crate::sprints::EpochClock;
use crate::tasks::{DummyAccounts, Serves, Task};

/// A host as the epoch's close reads and writes it.
type HostRow = (
    Entity,
    &'static HostId,
    &'static HostPublicKey,
    &'static mut EpochWork,
    &'static mut Earnings,
    &'static mut Serves,
    &'static ValidationDuty,
    Option<&'static Penalized>,
    Option<&'static mut Reputation>,
);

/// At the epoch's last block, before the weights rotate: the subsidy is
/// minted and split by weight into the voting hosts' earnings; each host's
/// earnings are released to its account if it (1) committed no fraud (no
/// equivocation, no rejected Sprint batch, no confirmed mismatch, accurate
/// verdicts), (2) finished enough of the tasks its weight owed, (3)
/// submitted enough of the checks its weight owed, judged enough of the
/// Sprint's batches and cast enough of the dispute votes it owed;
/// otherwise they go to the reserve. Reputations move, the volume rolls,
/// dummy accounts are swept, the served models switch.
pub fn close_epoch_rewards(
    mut commands: Commands,
    clock: Res<EpochClock>,
    params: Res<ChainParams>,
    voting: Res<VotingHosts>,
    mut ledger: ResMut<Ledger>,
    mut volume: ResMut<Volume>,
    mut dummies: ResMut<DummyAccounts>,
    tasks: Query<&Task>,
    batch_index: Res<crate::proofs::components::BatchIndex>,
    batches: Query<&crate::proofs::components::BatchStatus>,
    mut hosts: Query<HostRow>,
) {
    if clock.offset + 1 != params.epoch_blocks {
        return;
    }
    let economy = &params.economy;
    let epoch = clock.epoch;
    let total = voting.total_weight();
    let weight_of = |id: u32| voting.position(id).map_or(0, |p| u128::from(voting.weights[p]));

    // The subsidy, by weight.
    let subsidy = ledger.next_subsidy;
    ledger.minted += subsidy;
    ledger.next_subsidy = decay(subsidy, economy.subsidy_decay);
    let mut paid = 0u128;
    for (_, id, _, _, mut earnings, ..) in &mut hosts {
        let share = (subsidy * weight_of(id.0)).checked_div(total).unwrap_or(0);
        earnings.0 += share;
        paid += share;
    }
    ledger.pending += paid;
    ledger.reserve += subsidy - paid;

    // Per model, the weight of the hosts serving it (executors were drawn from them).
    let mut serving_weight = vec![0u128; economy.models.len()];
    for (_, id, _, _, _, serves, ..) in &hosts {
        for (m, w) in serving_weight.iter_mut().enumerate() {
            if serves.current >> m & 1 == 1 {
                *w += weight_of(id.0);
            }
        }
    }

    for (entity, id, key, mut work, mut earnings, mut serves, duty, penalized, reputation) in &mut hosts {
        let weight = weight_of(id.0);
        let batch = crate::proofs::components::BatchKey { epoch, host: id.0 };
        let rejected_batch = batch_index
            .0
            .get(&batch)
            .and_then(|&e| batches.get(e).ok())
            .is_some_and(|s| *s == crate::proofs::components::BatchStatus::Rejected);
        let fraud = penalized.is_some_and(|p| p.epoch == epoch)
            || rejected_batch
            || work.frauds > 0
            || work.inaccurate(economy.false_positive_allowance);
        // Tasks owed: for each model it serves, its share of the requests.
        let owed_tasks: u128 = (0..economy.models.len())
            .filter(|&m| serves.current >> m & 1 == 1 && serving_weight[m] > 0)
            .map(|m| (u128::from(volume.per_model[m]) << 32) * weight / serving_weight[m])
            .sum();
        let owed_checks = (volume.owed_checks * weight).checked_div(total).unwrap_or(0);
        let share_done = |done: u32, owed: u32| {
            u128::from(done) * u128::from(economy.min_validation.den)
                >= u128::from(owed) * u128::from(economy.min_validation.num)
        };
        let duty_done = share_done(duty.done, duty.expected) && share_done(work.votes, work.owed_votes);
        let withheld = if fraud {
            Some(Withheld::Fraud)
        } else if !enough(u64::from(work.finished), owed_tasks, economy.min_work) {
            Some(Withheld::TooLittleWork)
        } else if !enough(u64::from(work.checks), owed_checks, economy.min_validation) || !duty_done {
            Some(Withheld::TooFewValidations)
        } else {
            None
        };
        let earned = std::mem::take(&mut earnings.0);
        ledger.pending -= earned;
        match withheld {
            None => ledger.credit(&key.0, earned),
            Some(_) => ledger.reserve += earned,
        }
        if earned > 0 || withheld.is_some() || *work != EpochWork::default() || weight > 0 {
            commands.entity(entity).insert(Payout { epoch, earned, withheld, work: *work });
        }
        // Reputation: +1 per active epoch without fraud, 0 on fraud, kept
        // while inactive, forgotten after the inactivity limit.
        let active = weight > 0 || work.finished > 0;
        match reputation {
            Some(mut r) if fraud => *r = Reputation { epochs: 0, last_active: epoch },
            Some(mut r) if active => *r = Reputation { epochs: r.epochs + 1, last_active: epoch },
            Some(r) if epoch - r.last_active >= economy.reputation_forget_epochs => {
                commands.entity(entity).remove::<Reputation>();
            }
            Some(_) => {}
            None if fraud => {
                commands.entity(entity).insert(Reputation { epochs: 0, last_active: epoch });
            }
            None if active => {
                commands.entity(entity).insert(Reputation { epochs: 1, last_active: epoch });
            }
            None => {}
        }
        *work = EpochWork::default();
        serves.current = serves.next;
    }

    // Dummy accounts whose tasks are all settled go back to the reserve.
    let busy: std::collections::BTreeSet<_> = tasks.iter().map(|t| t.payer).collect();
    let done: Vec<_> = dummies.0.iter().filter(|a| !busy.contains(*a)).copied().collect();
    for account in done {
        dummies.0.remove(&account);
        if let Some(a) = ledger.accounts.remove(&account) {
            ledger.reserve += a.balance;
        }
    }

    *volume = Volume {
        previous: volume.current,
        current: 0,
        real_previous: volume.real_current,
        real_current: 0,
        owed_checks: 0,
        per_model: vec![0; economy.models.len()],
    };
}
