//! Task systems, in the order the plugin runs them.

use bevy_ecs::prelude::*;
use gonka_kernels::encoding::{Hash32, tagged_hash};

use super::components::*;
use super::messages::task_id;
use super::routing::{Candidate, route};
use crate::chain::input::{BlockInput, TxError};
use crate::chain::types::Transaction;
use crate::crypto::selection::{DrawStream, Probability, select, selection_message, selection_probability};
use crate::crypto::{Domain, PublicKeyBytes};
use crate::hosts::{HostRegistry, VotingHosts};
use crate::params::{Amount, ChainParams};
use crate::rewards::rate::{check_rate, min_check_rate};
use crate::rewards::{Earnings, EpochWork, Ledger, Reputation, Volume};
use crate::sprints::{BeaconState, EpochClock};

/// The hosts' economy components, by registry index.
type HostBooks<'w, 's> = Query<'w, 's, (&'static mut EpochWork, &'static mut Earnings)>;

fn books<'a>(
    registry: &HostRegistry,
    hosts: &'a mut HostBooks<'_, '_>,
    id: u32,
) -> Option<(Mut<'a, EpochWork>, Mut<'a, Earnings>)> {
    hosts.get_mut(registry.entity(id)?).ok()
}

/// Adds `amount`, already taken from escrow or the reserve, to host `id`'s
/// earnings of the epoch (to the reserve when the host has none).
pub(crate) fn pay(
    ledger: &mut Ledger,
    registry: &HostRegistry,
    hosts: &mut HostBooks,
    id: u32,
    amount: Amount,
) {
    if amount == 0 {
        return;
    }
    match books(registry, hosts, id) {
        Some((_, mut earnings)) => {
            earnings.0 += amount;
            ledger.pending += amount;
        }
        None => ledger.reserve += amount,
    }
}

fn work(registry: &HostRegistry, hosts: &mut HostBooks, id: u32, f: impl FnOnce(&mut EpochWork)) {
    if let Some((mut w, _)) = books(registry, hosts, id) {
        f(&mut w);
    }
}

/// The open task `id` for a transaction of kind `what`, or its receipt's error.
fn open_task<'a>(
    index: &TaskIndex,
    tasks: &'a mut Query<&mut Task>,
    id: &Hash32,
    what: &'static str,
) -> Result<Mut<'a, Task>, TxError> {
    index
        .by_id
        .get(id)
        .and_then(|&e| tasks.get_mut(e).ok())
        .ok_or_else(|| TxError::Invalid { what, why: format!("no open task {}", hex::encode(id)) })
}

/// The voting hosts with their models, for routing.
fn candidates(voting: &VotingHosts, registry: &HostRegistry, serves: &Query<&Serves>) -> Vec<Candidate> {
    voting
        .ids
        .iter()
        .zip(&voting.weights)
        .map(|(&id, &weight)| Candidate {
            id,
            weight,
            serves: registry.entity(id).and_then(|e| serves.get(e).ok()).map_or(0, |s| s.current),
        })
        .collect()
}

/// Transfers between accounts.
pub fn apply_transfers(mut input: ResMut<BlockInput>, mut ledger: ResMut<Ledger>) {
    let what = "transfer";
    let pending: Vec<_> = input
        .pending(|tx| match tx {
            Transaction::Transfer { to, amount, nonce } => Some((*to, *amount, *nonce)),
            _ => None,
        })
        .map(|(i, sender, t)| (i, *sender, t))
        .collect();
    for (i, sender, (to, amount, nonce)) in pending {
        let outcome = (|| {
            if amount == 0 {
                return Err(TxError::Invalid { what, why: "zero amount".into() });
            }
            check_nonce(&ledger, &sender, nonce, what)?;
            ledger.debit(&sender, amount).map_err(|e| TxError::Invalid { what, why: e.to_string() })?;
            ledger.use_nonce(&sender, nonce).map_err(|_| unreachable_nonce())?;
            ledger.credit(&to, amount);
            Ok(())
        })();
        input.record(i, outcome);
    }
}

fn check_nonce(
    ledger: &Ledger,
    sender: &PublicKeyBytes,
    nonce: u64,
    what: &'static str,
) -> Result<(), TxError> {
    let expected = ledger.nonce(sender);
    if nonce != expected {
        return Err(TxError::Invalid {
            what,
            why: format!("nonce {nonce}, the account's next is {expected}"),
        });
    }
    Ok(())
}

fn unreachable_nonce() -> TxError {
    TxError::Invalid { what: "nonce", why: "checked above".into() }
}

/// Hosts' declarations of the models they serve, effective next epoch.
pub fn declare_models(
    mut input: ResMut<BlockInput>,
    params: Res<ChainParams>,
    mut ledger: ResMut<Ledger>,
    registry: Res<HostRegistry>,
    mut serves: Query<&mut Serves>,
) {
    let what = "serve models";
    let n = params.economy.models.len() as u32;
    let pending: Vec<_> = input
        .pending(|tx| match tx {
            Transaction::ServeModels { models, nonce } => Some((*models, *nonce)),
            _ => None,
        })
        .map(|(i, sender, m)| (i, *sender, m))
        .collect();
    for (i, sender, (models, nonce)) in pending {
        let outcome = input.registered_sender(i).and_then(|host| {
            check_nonce(&ledger, &sender, nonce, what)?;
            if n < 64 && models >> n != 0 {
                return Err(TxError::Invalid { what, why: format!("model bits beyond the {n} models") });
            }
            let mut s = registry
                .entity(host)
                .and_then(|e| serves.get_mut(e).ok())
                .ok_or(TxError::NotAllowed { what, host, why: "no host record" })?;
            ledger.use_nonce(&sender, nonce).map_err(|_| unreachable_nonce())?;
            s.next = models;
            Ok(())
        });
        input.record(i, outcome);
    }
}

/// Opens the block's requests (escrow, routing) and, on schedule, the
/// chain's dummy requests.
pub fn open_requests(
    mut commands: Commands,
    mut input: ResMut<BlockInput>,
    params: Res<ChainParams>,
    clock: Res<EpochClock>,
    beacon: Res<BeaconState>,
    voting: Res<VotingHosts>,
    registry: Res<HostRegistry>,
    serves: Query<&Serves>,
    mut ledger: ResMut<Ledger>,
    mut volume: ResMut<Volume>,
    mut index: ResMut<TaskIndex>,
    mut dummies: ResMut<DummyAccounts>,
    mut plan: ResMut<DummyPlan>,
    mut hosts: HostBooks,
) {
    let what = "inference request";
    let height = input.height;
    let pending: Vec<_> = input
        .pending(|tx| match tx {
            Transaction::InferenceRequest(r) => Some(*r),
            _ => None,
        })
        .map(|(i, sender, r)| (i, *sender, r))
        .collect();
    let roster = candidates(&voting, &registry, &serves);
    let economy = &params.economy;
    for (i, payer, r) in pending {
        let outcome = (|| {
            check_nonce(&ledger, &payer, r.nonce, what)?;
            if r.model as usize >= economy.models.len() {
                return Err(TxError::Invalid { what, why: format!("no model {}", r.model) });
            }
            if r.max_tokens == 0 || r.max_cost == 0 {
                return Err(TxError::Invalid {
                    what,
                    why: "max tokens and max cost must be positive".into(),
                });
            }
            let id = r.task_id(&payer);
            let (executor, intermediary) = route(&beacon.previous, &id, r.model, &roster)
                .ok_or_else(|| TxError::Invalid { what, why: format!("no host serves model {}", r.model) })?;
            ledger.hold(&payer, r.max_cost).map_err(|e| TxError::Invalid { what, why: e.to_string() })?;
            ledger.use_nonce(&payer, r.nonce).map_err(|_| unreachable_nonce())?;
            let task = Task {
                id,
                payer,
                model: r.model,
                prompt: r.prompt,
                max_tokens: r.max_tokens,
                max_cost: r.max_cost,
                escrow: r.max_cost,
                requested: height,
                intermediary,
                executor,
                status: TaskStatus::Requested,
                checks: Vec::new(),
            };
            volume.real_current += 1;
            open(&mut commands, &mut index, &mut volume, &registry, &mut hosts, task);
            Ok(())
        })();
        input.record(i, outcome);
    }
    // Dummy requests: when the last epoch's user requests fell short, the
    // difference is spread over this epoch's first half at heights drawn
    // from the beacon at the epoch's start, each from a fresh account
    // funded by the reserve.
    let span = (params.epoch_blocks / 2).max(1);
    if clock.offset == 0 {
        *plan = DummyPlan {
            epoch: clock.epoch,
            seed: tagged_hash("gonka/dummy", &[&beacon.previous, &clock.epoch.to_le_bytes()]),
            due: economy.dummy_requests.saturating_sub(volume.real_previous).min(span * 4),
        };
        return;
    }
    if plan.epoch != clock.epoch || plan.due == 0 || clock.offset > span {
        return;
    }
    let seed = plan.seed;
    let mut draws = DrawStream::new(&seed, "schedule");
    for k in 0..plan.due {
        if 1 + draws.below(u128::from(span)) as u64 != clock.offset {
            continue;
        }
        let model =
            (DrawStream::new(&seed, &format!("model {k}")).below(economy.models.len() as u128)) as u32;
        let price = economy.models[model as usize].price_per_token;
        let max_cost = price.saturating_mul(u128::from(economy.dummy_max_tokens)).max(1);
        // A fresh account's first request: its id is the one a user's first request has.
        let payer = dummy_account(&seed, k);
        let id = task_id(&payer, 0);
        let Some((executor, intermediary)) = route(&beacon.previous, &id, model, &roster) else { continue };
        if ledger.reserve < max_cost {
            continue;
        }
        ledger.reserve -= max_cost;
        ledger.credit(&payer, max_cost);
        if ledger.hold(&payer, max_cost).is_err() || ledger.use_nonce(&payer, 0).is_err() {
            unreachable!("a fresh account credited just above");
        }
        dummies.0.insert(payer);
        let task = Task {
            id,
            payer,
            model,
            prompt: super::messages::prompt_commitment(&super::dummy::dummy_prompt(&seed, k)),
            max_tokens: economy.dummy_max_tokens,
            max_cost,
            escrow: max_cost,
            requested: height,
            intermediary,
            executor,
            status: TaskStatus::Requested,
            checks: Vec::new(),
        };
        open(&mut commands, &mut index, &mut volume, &registry, &mut hosts, task);
    }
}

/// A dummy request's one-time payer account.
fn dummy_account(seed: &Hash32, k: u64) -> PublicKeyBytes {
    let a = tagged_hash("gonka/dummy-payer", &[seed, &k.to_le_bytes(), &[0]]);
    let b = tagged_hash("gonka/dummy-payer", &[seed, &k.to_le_bytes(), &[1]]);
    let mut key = [0u8; 48];
    key[..32].copy_from_slice(&a);
    key[32..].copy_from_slice(&b[..16]);
    key
}

fn open(
    commands: &mut Commands,
    index: &mut TaskIndex,
    volume: &mut Volume,
    registry: &HostRegistry,
    hosts: &mut HostBooks,
    task: Task,
) {
    volume.current += 1;
    if let Some(n) = volume.per_model.get_mut(task.model as usize) {
        *n += 1;
    }
    work(registry, hosts, task.executor, |w| w.assigned += 1);
    index.hanging.insert((task.requested, task.id));
    let id = task.id;
    let entity = commands.spawn(task).id();
    index.by_id.insert(id, entity);
}

/// The executors' results.
pub fn finish_tasks(
    mut input: ResMut<BlockInput>,
    params: Res<ChainParams>,
    registry: Res<HostRegistry>,
    mut volume: ResMut<Volume>,
    reputations: Query<&Reputation>,
    mut index: ResMut<TaskIndex>,
    mut tasks: Query<&mut Task>,
    mut hosts: HostBooks,
) {
    let what = "inference finish";
    let height = input.height;
    let economy = &params.economy;
    let p_min = min_check_rate(economy, volume.previous.max(volume.current));
    let pending: Vec<_> = input
        .pending(|tx| match tx {
            Transaction::InferenceFinish(f) => Some(*f),
            _ => None,
        })
        .map(|(i, _, f)| (i, f))
        .collect();
    for (i, f) in pending {
        let outcome = input.registered_sender(i).and_then(|host| {
            let mut task = open_task(&index, &mut tasks, &f.task, what)?;
            if task.executor != host {
                return Err(TxError::NotAllowed { what, host, why: "not the task's executor" });
            }
            if task.status != TaskStatus::Requested {
                return Err(TxError::Duplicate { what, host });
            }
            if f.tokens == 0 || f.tokens > task.max_tokens {
                let why = format!("{} tokens, the request allows 1..={}", f.tokens, task.max_tokens);
                return Err(TxError::Invalid { what, why });
            }
            let price = economy.models[task.model as usize].price_per_token;
            let full = price.saturating_mul(u128::from(f.tokens));
            let reputation =
                registry.entity(host).and_then(|e| reputations.get(e).ok()).map_or(0, |r| r.epochs);
            let rate = check_rate(p_min, reputation, economy.reputation_full_epochs);
            let checks_until = height + economy.task_validation_blocks;
            task.status = TaskStatus::Finished(Finished {
                height,
                output: f.output,
                artifact: f.artifact,
                tokens: f.tokens,
                cost: full.min(task.max_cost),
                cancelled: full > task.max_cost,
                rate: rate.raw(),
                checks_until,
            });
            index.hanging.remove(&(task.requested, task.id));
            index.settle.insert((checks_until, task.id));
            work(&registry, &mut hosts, host, |w| {
                w.finished += 1;
                w.tokens += u64::from(f.tokens);
            });
            volume.owed_checks += u128::from(rate.raw());
            Ok(())
        });
        input.record(i, outcome);
    }
}

/// The selected hosts' checks; a failed one opens a dispute.
pub fn record_task_checks(
    mut input: ResMut<BlockInput>,
    params: Res<ChainParams>,
    voting: Res<VotingHosts>,
    registry: Res<HostRegistry>,
    verifier: Res<crate::chain::Verifier>,
    mut index: ResMut<TaskIndex>,
    mut tasks: Query<&mut Task>,
    mut hosts: HostBooks,
) {
    let what = "task check";
    let height = input.height;
    let pending: Vec<_> = input
        .pending(|tx| match tx {
            Transaction::TaskCheck(c) => Some(*c),
            _ => None,
        })
        .map(|(i, sender, c)| (i, *sender, c))
        .collect();
    let weight_of = |id: u32| voting.position(id).map_or(0, |p| voting.weights[p]);
    let total = u64::try_from(voting.total_weight()).unwrap_or(u64::MAX);
    for (i, sender, c) in pending {
        let outcome = input.registered_sender(i).and_then(|host| {
            let mut task = open_task(&index, &mut tasks, &c.task, what)?;
            // A check still counts while a dispute runs: it is judged with the outcome.
            let (f, disputed) = match &task.status {
                TaskStatus::Finished(f) => (*f, false),
                TaskStatus::Disputed(f, _) => (*f, true),
                TaskStatus::Requested => {
                    return Err(TxError::Invalid { what, why: "the task is not finished".into() });
                }
            };
            if height > f.checks_until {
                let (from, to) = (f.height, f.checks_until);
                return Err(TxError::OutsideWindow { what, height, from, to });
            }
            if host == task.executor {
                return Err(TxError::NotAllowed { what, host, why: "the executor cannot check itself" });
            }
            let weight = weight_of(host);
            if weight == 0 {
                return Err(TxError::NotAllowed { what, host, why: "holds no weight" });
            }
            let at = match task.checks.binary_search_by_key(&host, |c| c.validator) {
                Ok(_) => return Err(TxError::Duplicate { what, host }),
                Err(at) => at,
            };
            verifier
                .0
                .verify(Domain::Selection, &sender, &selection_message(&c.task), &c.selection)
                .map_err(|e| TxError::Invalid { what, why: format!("selection signature: {e}") })?;
            let others = total.saturating_sub(weight_of(task.executor));
            let p = selection_probability(Probability::from_raw(f.rate), weight, others)
                .ok_or(TxError::NotAllowed { what, host, why: "no weight to draw from" })?;
            if !select(&c.selection, p) {
                return Err(TxError::NotAllowed { what, host, why: "not selected for this task" });
            }
            task.checks.insert(at, Check { validator: host, pass: c.pass });
            work(&registry, &mut hosts, host, |w| w.checks += 1);
            if !c.pass && !disputed {
                open_dispute(&mut index, &mut task, f, height, params.economy.dispute_blocks, &voting, 0);
            }
            Ok(())
        });
        input.record(i, outcome);
    }
}

/// Opens the dispute of `task`: it leaves the settlement queue, and every
/// voting host's weight but the executor's may vote until `height + blocks`.
fn open_dispute(
    index: &mut TaskIndex,
    task: &mut Task,
    f: Finished,
    height: u64,
    blocks: u64,
    voting: &VotingHosts,
    report_fee: Amount,
) {
    let executor = voting.position(task.executor).map_or(0, |p| u128::from(voting.weights[p]));
    let eligible = voting.total_weight() - executor;
    index.settle.remove(&(f.checks_until, task.id));
    let until = height + blocks;
    index.disputes.insert((until, task.id));
    let dispute = Dispute {
        opened: height,
        until,
        report_fee,
        fraud: 0,
        clear: 0,
        eligible,
        votes: Default::default(),
    };
    task.status = TaskStatus::Disputed(f, dispute);
}

/// The payers' paid reports.
pub fn open_reports(
    mut input: ResMut<BlockInput>,
    params: Res<ChainParams>,
    voting: Res<VotingHosts>,
    mut ledger: ResMut<Ledger>,
    mut index: ResMut<TaskIndex>,
    mut tasks: Query<&mut Task>,
) {
    let what = "report";
    let height = input.height;
    let fee = params.economy.report_fee;
    let pending: Vec<_> = input
        .pending(|tx| match tx {
            Transaction::Report { task, nonce } => Some((*task, *nonce)),
            _ => None,
        })
        .map(|(i, sender, r)| (i, *sender, r))
        .collect();
    for (i, sender, (id, nonce)) in pending {
        let outcome = (|| {
            check_nonce(&ledger, &sender, nonce, what)?;
            let mut task = open_task(&index, &mut tasks, &id, what)?;
            if task.payer != sender {
                return Err(TxError::Invalid { what, why: "only the payer may report its task".into() });
            }
            let TaskStatus::Finished(f) = task.status.clone() else {
                return Err(TxError::Invalid {
                    what,
                    why: "the task is not finished or already disputed".into(),
                });
            };
            ledger.hold(&sender, fee).map_err(|e| TxError::Invalid { what, why: e.to_string() })?;
            ledger.use_nonce(&sender, nonce).map_err(|_| unreachable_nonce())?;
            task.escrow += fee;
            open_dispute(&mut index, &mut task, f, height, params.economy.dispute_blocks, &voting, fee);
            Ok(())
        })();
        input.record(i, outcome);
    }
}

/// Re-verification votes, all counted until the dispute's last height;
/// then more than half of the eligible weight voting fraud convicts, and
/// anything else clears. Every voting host but the executor owes a vote:
/// the votes are validation work, judged like checks, and a host that
/// skips them falls short of its share.
pub fn record_dispute_votes(
    mut commands: Commands,
    mut input: ResMut<BlockInput>,
    params: Res<ChainParams>,
    voting: Res<VotingHosts>,
    registry: Res<HostRegistry>,
    mut ledger: ResMut<Ledger>,
    mut index: ResMut<TaskIndex>,
    mut tasks: Query<&mut Task>,
    mut hosts: HostBooks,
) {
    let what = "dispute vote";
    let height = input.height;
    let pending: Vec<_> = input
        .pending(|tx| match tx {
            Transaction::DisputeVote(v) => Some(*v),
            _ => None,
        })
        .map(|(i, _, v)| (i, v))
        .collect();
    let weight_of = |id: u32| voting.position(id).map_or(0, |p| u128::from(voting.weights[p]));
    for (i, v) in pending {
        let outcome = input.registered_sender(i).and_then(|host| {
            let mut task = open_task(&index, &mut tasks, &v.task, what)?;
            let executor = task.executor;
            let TaskStatus::Disputed(_, d) = &mut task.status else {
                return Err(TxError::Invalid { what, why: "the task is not disputed".into() });
            };
            if height > d.until {
                return Err(TxError::OutsideWindow { what, height, from: d.opened, to: d.until });
            }
            if host == executor {
                return Err(TxError::NotAllowed { what, host, why: "the executor cannot judge itself" });
            }
            let w = weight_of(host);
            if w == 0 {
                return Err(TxError::NotAllowed { what, host, why: "holds no weight" });
            }
            if d.votes.insert(host, v.fraud).is_some() {
                return Err(TxError::Duplicate { what, host });
            }
            if v.fraud {
                d.fraud += w
            } else {
                d.clear += w
            }
            work(&registry, &mut hosts, host, |w| w.votes += 1);
            Ok(())
        });
        input.record(i, outcome);
    }
    // Deadlines: more than half of the eligible weight for fraud convicts.
    let due: Vec<(u64, Hash32)> = index.disputes.range(..=(height, [0xff; 32])).copied().collect();
    for (_, id) in due {
        let Some(&entity) = index.by_id.get(&id) else { continue };
        let Ok(mut task) = tasks.get_mut(entity) else { continue };
        let TaskStatus::Disputed(f, d) = task.status.clone() else { continue };
        index.disputes.remove(&(d.until, id));
        for &voter in voting.ids.iter().filter(|&&h| h != task.executor && weight_of(h) > 0) {
            work(&registry, &mut hosts, voter, |w| w.owed_votes += 1);
        }
        if d.fraud * 2 > d.eligible {
            convict(&params, &registry, &mut ledger, &mut hosts, &task, &f, &d);
            index.by_id.remove(&id);
            input.closed_tasks.push((task.clone(), TaskEnd::Convicted));
            commands.entity(entity).despawn();
        } else {
            clear(&registry, &mut ledger, &mut hosts, &mut task, &d);
            // Re-verified by the majority: it settles now, and no second dispute can open.
            task.status = TaskStatus::Finished(f);
            index.settle.insert((height, id));
        }
    }
}

/// A confirmed mismatch: the payer gets everything back, the executor's
/// fraud count grows, the hosts whose failed check caught it share a
/// bounty from the reserve, and every verdict for the output was wrong.
fn convict(
    params: &ChainParams,
    registry: &HostRegistry,
    ledger: &mut Ledger,
    hosts: &mut HostBooks,
    task: &Task,
    f: &Finished,
    d: &Dispute,
) {
    let economy = &params.economy;
    ledger.refund(&task.payer, task.escrow);
    work(registry, hosts, task.executor, |w| w.frauds += 1);
    let catchers: Vec<u32> = task.checks.iter().filter(|c| !c.pass).map(|c| c.validator).collect();
    if !catchers.is_empty() {
        let executor_part = f.cost - economy.training_fund.of(f.cost);
        let pot = ledger.draw_reserve(economy.bounty.of(executor_part));
        let each = pot / catchers.len() as u128;
        for &c in &catchers {
            pay(ledger, registry, hosts, c, each);
        }
        ledger.reserve += pot - each * catchers.len() as u128;
    }
    let verdicts =
        task.checks.iter().map(|c| (c.validator, !c.pass)).chain(d.votes.iter().map(|(&v, &f)| (v, f)));
    for (host, called_fraud) in verdicts {
        work(registry, hosts, host, |w| {
            w.judged_frauds += 1;
            w.missed += u32::from(!called_fraud);
        });
    }
}

/// A dispute without a confirmed mismatch: the fraud votes were false
/// alarms (the checks are judged when the task settles, which is now); a
/// user's report fee pays the hosts that re-verified.
fn clear(registry: &HostRegistry, ledger: &mut Ledger, hosts: &mut HostBooks, task: &mut Task, d: &Dispute) {
    for (&voter, &fraud) in &d.votes {
        work(registry, hosts, voter, |w| {
            w.judged_honest += 1;
            w.alarms += u32::from(fraud);
        });
    }
    if d.report_fee > 0 {
        task.escrow -= d.report_fee;
        ledger.escrow -= d.report_fee;
        let n = d.votes.len() as u128;
        let each = d.report_fee.checked_div(n).unwrap_or(0);
        for &voter in d.votes.keys() {
            pay(ledger, registry, hosts, voter, each);
        }
        ledger.reserve += d.report_fee - each * n;
    }
}

/// Tasks whose check window has passed: the payer pays the cost (the rest
/// of the escrow comes back), the training fund takes its share, and the
/// remainder is split equally among the executor and the hosts whose check
/// passed it (rounding dust to the executor).
pub fn settle_tasks(
    mut commands: Commands,
    mut input: ResMut<BlockInput>,
    params: Res<ChainParams>,
    registry: Res<HostRegistry>,
    mut ledger: ResMut<Ledger>,
    mut index: ResMut<TaskIndex>,
    tasks: Query<&Task>,
    mut hosts: HostBooks,
) {
    let height = input.height;
    let due: Vec<(u64, Hash32)> = index.settle.range(..=(height, [0xff; 32])).copied().collect();
    for key in due {
        index.settle.remove(&key);
        let Some(&entity) = index.by_id.get(&key.1) else { continue };
        let Ok(task) = tasks.get(entity) else { continue };
        let TaskStatus::Finished(f) = &task.status else { continue };
        index.by_id.remove(&key.1);
        ledger.escrow -= task.escrow;
        ledger.credit(&task.payer, task.escrow - f.cost);
        let training = params.economy.training_fund.of(f.cost);
        ledger.training_fund += training;
        let rest = f.cost - training;
        for c in &task.checks {
            work(&registry, &mut hosts, c.validator, |w| {
                w.judged_honest += 1;
                w.alarms += u32::from(!c.pass);
            });
        }
        let passers: Vec<u32> = task.checks.iter().filter(|c| c.pass).map(|c| c.validator).collect();
        let each = rest / (1 + passers.len() as u128);
        for &v in &passers {
            pay(&mut ledger, &registry, &mut hosts, v, each);
        }
        pay(&mut ledger, &registry, &mut hosts, task.executor, rest - each * passers.len() as u128);
        input.closed_tasks.push((task.clone(), TaskEnd::Settled));
        commands.entity(entity).despawn();
    }
}

/// Every `X` blocks: requests unfinished for more than `Y` blocks expire
/// and their escrow goes back to the payer.
pub fn expire_hanging_tasks(
    mut commands: Commands,
    mut input: ResMut<BlockInput>,
    params: Res<ChainParams>,
    registry: Res<HostRegistry>,
    mut ledger: ResMut<Ledger>,
    mut index: ResMut<TaskIndex>,
    tasks: Query<&Task>,
    mut hosts: HostBooks,
) {
    let economy = &params.economy;
    let height = input.height;
    if !height.is_multiple_of(economy.hanging_scan_blocks) || height <= economy.task_timeout_blocks {
        return;
    }
    let cutoff = height - economy.task_timeout_blocks;
    let old: Vec<(u64, Hash32)> = index.hanging.range(..(cutoff, [0; 32])).copied().collect();
    for key in old {
        index.hanging.remove(&key);
        let Some(entity) = index.by_id.remove(&key.1) else { continue };
        let Ok(task) = tasks.get(entity) else { continue };
        ledger.refund(&task.payer, task.escrow);
        work(&registry, &mut hosts, task.executor, |w| w.expired += 1);
        input.closed_tasks.push((task.clone(), TaskEnd::Expired));
        commands.entity(entity).despawn();
    }
}
