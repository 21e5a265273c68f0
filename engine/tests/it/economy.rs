//! The chain-side economy end to end on `tiny`: transfers, requests with
//! escrow and routing, finishes, auditable checks, disputes, reports,
//! expiry, settlement, the epoch's subsidy and release rules, reputation
//! and dummy requests. Every block goes to two replicas that must agree on
//! the state root, and the money invariants are checked after each one.

use gonka_engine::chain::TxError;
use gonka_engine::chain::types::{SignedTransaction, Transaction};
use gonka_engine::crypto::HostKey;
use gonka_engine::crypto::selection::Probability;
use gonka_engine::params::{Amount, ChainParams};
use gonka_engine::rewards::{EpochWork, Payout, Reputation, Volume, Withheld};
use gonka_engine::tasks::{DummyAccounts, Serves, Task, TaskStatus, task_id};

use net::*;

mod formats;
mod net;
mod random;

#[test]
fn transfers_follow_nonces_and_balances() {
    let mut net = Net::new(quiet(), &[10; 4]);
    let (u0, u1) = (net.user(0), net.user(1));
    let first = transfer(&net.users[0], u1, 1_000, 0);
    net.apply_ok(vec![first.clone()]);
    assert_eq!((net.balance(&u0), net.balance(&u1)), (FUNDS - 1_000, FUNDS + 1_000));
    assert_eq!(net.nonce(&u0), 1);

    // A refused transfer changes nothing: not the balances, not the nonce.
    let before = net.a.ledger().clone();
    let r = net.apply(vec![transfer(&net.users[0], u1, FUNDS, 1)]);
    refused(&r, 0, invalid, "a transfer above the balance");
    assert_eq!(*net.a.ledger(), before, "the ledger moved on a refused transfer");

    let fresh = user_key(1000).public_key();
    let r = net.apply(vec![
        first,                                    // a replay
        transfer(&net.users[0], u1, 5, 7),        // a nonce from the future
        transfer(&net.users[0], u1, FUNDS, 1),    // more than the balance
        transfer(&net.users[0], u1, 0, 1),        // nothing
        transfer(&net.users[0], fresh, 2_500, 1), // creates the account
        transfer(&net.users[0], u1, 1, 2),        // the next nonce in the same block
        transfer(&net.users[0], u1, 1, 2),        // the same nonce again
        transfer(&user_key(1001), u1, 1, 0),      // an unfunded sender
    ]);
    refused(&r, 0, invalid, "a replayed transfer");
    refused(&r, 1, invalid, "a transfer with a future nonce");
    refused(&r, 2, invalid, "a transfer above the balance");
    refused(&r, 3, invalid, "a zero transfer");
    assert!(r.receipts[4].is_ok() && r.receipts[5].is_ok(), "{:?}", r.receipts);
    refused(&r, 6, invalid, "a nonce used in the same block");
    refused(&r, 7, invalid, "a transfer from an empty account");
    assert_eq!(net.balance(&u0), FUNDS - 1_000 - 2_500 - 1);
    assert_eq!(net.balance(&u1), FUNDS + 1_000 + 1);
    assert_eq!(net.balance(&fresh), 2_500);
    assert_eq!(net.nonce(&u0), 3, "only accepted transfers use nonces");
    assert_eq!(net.nonce(&user_key(1001).public_key()), 0);
}

#[test]
fn a_task_is_escrowed_routed_finished_checked_and_settled() {
    let mut net = Net::new(quiet(), &[10; 4]);
    let (u, id, exec, [s1, s2], unselected) = net.two_selected();
    let payer = net.user(u);
    let user = net.users[u].clone();
    let r = net.apply(vec![
        request(&user, 0, 2, 100, 1_000),     // no model 2
        request(&user, 0, 0, 100, 0),         // nothing to escrow
        request(&user, 0, 0, 100, FUNDS + 1), // more than the balance
        request(&user, 0, 0, 100, 1_000),
    ]);
    refused(&r, 0, invalid, "a request for a model that does not exist");
    refused(&r, 1, invalid, "a request with zero max cost");
    refused(&r, 2, invalid, "a request above the balance");
    assert!(r.receipts[3].is_ok(), "{:?}", r.receipts[3]);
    let task = net.task(&id).expect("the request opened a task");
    let (executor, intermediary) = net.route(&id, 0);
    assert_eq!((task.executor, task.intermediary), (executor, intermediary), "routing as `route` computes");
    assert_eq!(executor as usize, exec);
    assert_ne!(executor, intermediary, "another host relays");
    assert_eq!((task.escrow, task.requested, task.status.clone()), (1_000, 0, TaskStatus::Requested));
    assert_eq!(net.balance(&payer), FUNDS - 1_000);
    assert_eq!(net.a.ledger().escrow, 1_000);
    assert_eq!(net.nonce(&payer), 1);
    assert_eq!(net.work(exec).assigned, 1);

    let r = net.apply(vec![
        finish(&net.hosts[s1].clone(), id, 77),    // not the executor
        finish(&net.hosts[exec].clone(), id, 101), // more than max tokens
        finish(&net.hosts[exec].clone(), id, 77),
        finish(&net.hosts[exec].clone(), id, 77),
    ]);
    refused(&r, 0, not_allowed, "a finish by another host");
    refused(&r, 1, invalid, "a finish above max tokens");
    assert!(r.receipts[2].is_ok(), "{:?}", r.receipts[2]);
    refused(&r, 3, |e| matches!(e, TxError::Duplicate { .. }), "a second finish");
    let f = net.finished(&id);
    assert_eq!((f.height, f.tokens, f.cost, f.cancelled), (1, 77, 770, false));
    assert_eq!(f.rate, Probability::ONE.raw(), "no reputation: every task is checked");
    assert_eq!(f.checks_until, 1 + net.a.params().economy.task_validation_blocks);

    let r = net.apply(vec![
        check(&net.hosts[unselected].clone(), id, true),
        check(&net.hosts[exec].clone(), id, true),
        check(&user, id, true),
        check(&net.hosts[s1].clone(), id, true),
        check(&net.hosts[s1].clone(), id, true),
        check(&net.hosts[s2].clone(), id, true),
    ]);
    refused(&r, 0, not_allowed, "a check by a host its signature does not select");
    refused(&r, 1, not_allowed, "the executor's check of itself");
    refused(&r, 2, |e| matches!(e, TxError::UnknownSender { .. }), "a user's check");
    assert!(r.receipts[3].is_ok() && r.receipts[5].is_ok(), "{:?}", r.receipts);
    refused(&r, 4, |e| matches!(e, TxError::Duplicate { .. }), "a second check");

    net.run_to(f.checks_until);
    assert!(net.task(&id).is_some(), "open until its check window ends");
    net.apply(Vec::new());
    assert!(net.task(&id).is_none(), "settled at the end of its check window");
    // cost 770: training 154, rest 616 split in three (205 each, the executor's 206 with the dust).
    let l = net.a.ledger().clone();
    assert_eq!(net.balance(&payer), FUNDS - 770, "refunded max_cost − cost");
    assert_eq!((l.escrow, l.training_fund, l.pending, l.reserve), (0, 154, 616, RESERVE));
    assert_eq!((net.earnings(exec), net.earnings(s1), net.earnings(s2)), (206, 205, 205));
    assert_eq!(net.earnings(unselected), 0);
    let w = net.work(exec);
    assert_eq!((w.assigned, w.finished, w.tokens, w.checks), (1, 1, 77, 0));
    assert_eq!((net.work(s1).checks, net.work(s2).checks, net.work(unselected).checks), (1, 1, 0));
}

#[test]
fn a_cancelled_task_pays_its_max_cost() {
    let mut net = Net::new(quiet(), &[10; 4]);
    let user = net.users[3].clone();
    let id = task_id(&user.public_key(), 0);
    net.apply_ok(vec![request(&user, 0, 1, 200, 5_000)]);
    let exec = net.task(&id).expect("opened").executor as usize;
    // 150 tokens of model 1 at 40 would cost 6 000.
    net.apply_ok(vec![finish(&net.hosts[exec].clone(), id, 150)]);
    let f = net.finished(&id);
    assert_eq!((f.cost, f.cancelled), (5_000, true));
    net.run_to(f.checks_until + 1);
    assert!(net.task(&id).is_none());
    assert_eq!(net.balance(&user.public_key()), FUNDS - 5_000, "nothing refunded");
    assert_eq!(net.a.ledger().training_fund, 1_000);
    assert_eq!(net.earnings(exec), 4_000);
}

#[test]
fn an_unfinished_request_expires_with_a_full_refund() {
    let mut net = Net::new(quiet(), &[10; 4]);
    let e = net.a.params().economy.clone();
    let (early, late) = (net.users[0].clone(), net.users[1].clone());
    let (early_id, late_id) = (task_id(&early.public_key(), 0), task_id(&late.public_key(), 0));
    net.run_to(3);
    net.apply_ok(vec![request(&early, 0, 0, 10, 100)]);
    net.apply_ok(vec![request(&late, 0, 0, 10, 100)]);
    let exec = net.task(&early_id).expect("opened").executor as usize;
    // Scans at multiples of X once the height exceeds Y; a request expires
    // at the first scan it is more than Y blocks old at.
    let expiry = |requested: u64| {
        (1..)
            .map(|k| k * e.hanging_scan_blocks)
            .find(|&s| s > e.task_timeout_blocks && s - requested > e.task_timeout_blocks)
    };
    let (first, second) = (expiry(3).expect("a scan"), expiry(4).expect("a scan"));
    assert_eq!((first, second), (10, 15), "with X = 5, Y = 6");
    net.run_to(first);
    assert!(net.task(&early_id).is_some(), "not expired before its scan");
    assert_eq!(net.balance(&early.public_key()), FUNDS - 100);
    net.apply(Vec::new());
    assert!(net.task(&early_id).is_none(), "expired at height {first}");
    assert!(net.task(&late_id).is_some(), "6 blocks old at height 10 is not older than Y");
    assert_eq!(net.balance(&early.public_key()), FUNDS, "full refund");
    assert_eq!(net.work(exec).expired, 1);
    net.run_to(second + 1);
    assert!(net.task(&late_id).is_none(), "expired at height {second}");
    assert_eq!(net.balance(&late.public_key()), FUNDS);
    assert_eq!(net.a.ledger().escrow, 0);
    // A finish after expiry finds no task.
    let r = net.apply(vec![finish(&net.hosts[exec].clone(), early_id, 5)]);
    refused(&r, 0, invalid, "a finish of an expired task");
}

#[test]
fn a_confirmed_fraud_refunds_the_payer_and_pays_the_catchers() {
    let mut net = Net::new(quiet(), &[10; 4]);
    let (u, id, exec, [catcher, passer], third) = net.two_selected();
    let h = net.hosts.clone();
    net.apply_ok(vec![request(&net.users[u].clone(), 0, 0, 100, 1_000)]);
    net.apply_ok(vec![finish(&h[exec], id, 77)]);
    net.apply_ok(vec![check(&h[passer], id, true), check(&h[catcher], id, false)]);
    match net.task(&id).map(|t| t.status) {
        Some(TaskStatus::Disputed(_, d)) => {
            assert_eq!((d.opened, d.until, d.eligible, d.report_fee), (2, 6, 30, 0));
        }
        other => panic!("a failed check opens a dispute: {other:?}"),
    }
    let r = net.apply(vec![
        vote(&h[exec], id, false),
        vote(&h[passer], id, false),
        vote(&h[catcher], id, true),
        vote(&h[third], id, true), // 20 of 30 for fraud
        vote(&h[third], id, true),
    ]);
    refused(&r, 0, not_allowed, "the executor's vote");
    assert!(r.receipts[1..4].iter().all(Result::is_ok), "{:?}", r.receipts);
    refused(&r, 4, |e| matches!(e, TxError::Duplicate { .. }), "a second vote");
    // Every vote counts until the last height; the dispute is decided then.
    net.run_to(6);
    assert!(matches!(net.task(&id).map(|t| t.status), Some(TaskStatus::Disputed(..))), "open until height 6");
    net.apply_ok(Vec::new());
    assert!(net.task(&id).is_none(), "a confirmed fraud closes the task");
    let l = net.a.ledger().clone();
    assert_eq!(net.balance(&net.user(u)), FUNDS, "the payer gets everything back");
    // Bounty: half of the executor's part, 770 − 154 = 616.
    assert_eq!((l.escrow, l.training_fund, l.reserve, l.pending), (0, 0, RESERVE - 308, 308));
    assert_eq!(net.earnings(catcher), 308);
    assert_eq!(net.earnings(exec), 0);
    assert_eq!(net.work(exec).frauds, 1);
    // Every verdict on the task is judged: the passer missed the fraud twice (check and vote).
    let judged = |w: EpochWork| (w.judged_frauds, w.missed, w.judged_honest, w.alarms);
    assert_eq!(judged(net.work(passer)), (2, 2, 0, 0));
    assert_eq!(judged(net.work(catcher)), (2, 0, 0, 0));
    assert_eq!(judged(net.work(third)), (1, 0, 0, 0));
    assert_eq!(judged(net.work(exec)), (0, 0, 0, 0));
}

#[test]
fn a_cleared_dispute_counts_the_false_alarm_and_settles_at_once() {
    let mut net = Net::new(quiet(), &[10; 4]);
    let (u, id, exec, [failer, passer], third) = net.two_selected();
    let h = net.hosts.clone();
    net.apply_ok(vec![request(&net.users[u].clone(), 0, 0, 100, 1_000)]);
    net.apply_ok(vec![finish(&h[exec], id, 77)]);
    // The pass lands first: once a dispute is open, checks wait for its outcome.
    net.apply_ok(vec![check(&h[passer], id, true), check(&h[failer], id, false)]);
    net.apply_ok(vec![vote(&h[passer], id, false), vote(&h[third], id, false), vote(&h[failer], id, true)]);
    net.run_to(6);
    net.apply_ok(Vec::new());
    assert!(net.task(&id).is_none(), "re-verified by the majority: settled in the deciding block");
    // Every verdict on an honest task is judged; the failed check and the fraud vote were false alarms.
    let judged = |w: EpochWork| (w.judged_honest, w.alarms, w.judged_frauds, w.missed);
    assert_eq!(judged(net.work(failer)), (2, 2, 0, 0));
    assert_eq!(judged(net.work(passer)), (2, 0, 0, 0), "its check and its vote");
    assert_eq!(judged(net.work(third)), (1, 0, 0, 0));
    let l = net.a.ledger().clone();
    assert_eq!(net.balance(&net.user(u)), FUNDS - 770);
    assert_eq!((l.escrow, l.training_fund, l.pending, l.reserve), (0, 154, 616, RESERVE));
    assert_eq!((net.earnings(exec), net.earnings(passer), net.earnings(failer)), (308, 308, 0));
}

#[test]
fn an_undecided_dispute_clears_at_its_deadline() {
    let mut net = Net::new(quiet(), &[10; 4]);
    let (u, id, exec, [failer, _], _) = net.two_selected();
    let voter = (0..4).find(|&x| x != exec && x != failer).expect("a third host");
    let h = net.hosts.clone();
    net.apply_ok(vec![request(&net.users[u].clone(), 0, 0, 100, 1_000)]);
    net.apply_ok(vec![finish(&h[exec], id, 77)]);
    net.apply_ok(vec![check(&h[failer], id, false)]);
    net.apply_ok(vec![vote(&h[voter], id, true)]);
    let until = match net.task(&id).map(|t| t.status) {
        Some(TaskStatus::Disputed(_, d)) => {
            assert_eq!((d.fraud, d.clear), (10, 0), "10 of 30 decides nothing");
            d.until
        }
        other => panic!("still disputed: {other:?}"),
    };
    net.run_to(until);
    assert!(matches!(net.task(&id).map(|t| t.status), Some(TaskStatus::Disputed(..))));
    net.apply(Vec::new());
    // Its check window ended before the deadline: it settles at once.
    assert!(net.task(&id).is_none(), "cleared and settled at height {until}");
    let alarms = |w: EpochWork| (w.judged_honest, w.alarms);
    assert_eq!((alarms(net.work(failer)), alarms(net.work(voter))), ((1, 1), (1, 1)), "two false alarms");
    assert_eq!(net.balance(&net.user(u)), FUNDS - 770);
    assert_eq!(net.earnings(exec), 616);
    assert_eq!(net.a.ledger().training_fund, 154);
}

#[test]
fn reports_refund_fee_and_cost_when_confirmed_and_pay_voters_when_cleared() {
    let mut net = Net::new(quiet(), &[10; 4]);
    let fee = net.a.params().economy.report_fee;
    let h = net.hosts.clone();
    let (good, bad) = (net.users[0].clone(), net.users[1].clone());
    let (good_id, bad_id) = (task_id(&good.public_key(), 0), task_id(&bad.public_key(), 0));
    net.apply_ok(vec![request(&good, 0, 0, 100, 1_000), request(&bad, 0, 0, 100, 1_000)]);
    let r = net.apply(vec![report(&good, good_id, 1)]);
    refused(&r, 0, invalid, "a report of an unfinished task");
    let (ge, be) = (
        net.task(&good_id).expect("open").executor as usize,
        net.task(&bad_id).expect("open").executor as usize,
    );
    net.apply_ok(vec![finish(&h[ge], good_id, 77), finish(&h[be], bad_id, 77)]);
    let r = net.apply(vec![
        report(&bad, good_id, 1), // not the payer
        report(&good, good_id, 5),
        report(&good, good_id, 1),
        report(&bad, bad_id, 1),
        report(&bad, bad_id, 2),
    ]);
    refused(&r, 0, invalid, "a report by another user");
    refused(&r, 1, invalid, "a report with a wrong nonce");
    assert!(r.receipts[2].is_ok() && r.receipts[3].is_ok(), "{:?}", r.receipts);
    refused(&r, 4, invalid, "a report of a disputed task");
    assert_eq!(net.balance(&good.public_key()), FUNDS - 1_000 - fee);
    assert_eq!(net.a.ledger().escrow, 2 * (1_000 + fee));

    // The bad executor's output is confirmed a fraud; the good one's is cleared by 20 of 30.
    let others = |x: usize| (0..4).filter(move |&y| y != x);
    let mut txs: Vec<SignedTransaction> = others(be).take(2).map(|y| vote(&h[y], bad_id, true)).collect();
    let good_voters: Vec<usize> = others(ge).collect();
    txs.push(vote(&h[good_voters[0]], good_id, true));
    txs.push(vote(&h[good_voters[1]], good_id, false));
    txs.push(vote(&h[good_voters[2]], good_id, false));
    net.apply_ok(txs);
    let until = net.a.next_height() + 2;
    net.run_to(until);
    net.apply_ok(Vec::new());
    assert!(net.task(&bad_id).is_none());
    assert_eq!(net.balance(&bad.public_key()), FUNDS, "fee and cost refunded");
    assert_eq!(net.work(be).frauds, 1);
    // The fee, 1 000, split among the three voters: 333 each, 1 to the reserve.
    for &v in &good_voters {
        assert_eq!(net.earnings(v), 333, "voter {v}");
    }
    assert_eq!(net.a.ledger().reserve, RESERVE + 1, "no bounty without a catcher; the fee's dust");
    assert_eq!((net.work(good_voters[0]).judged_honest, net.work(good_voters[0]).alarms), (1, 1));
    assert!(net.task(&good_id).is_none(), "cleared: settled in the deciding block");
    assert_eq!(net.balance(&good.public_key()), FUNDS - 770 - fee, "pays the cost and loses the fee");
    assert_eq!(net.earnings(ge), 616, "the executor is not among its own task's voters");
    assert_eq!(net.a.ledger().escrow, 0);
}

#[test]
fn an_unanswered_report_clears_at_its_deadline_and_its_fee_goes_to_the_reserve() {
    let mut net = Net::new(quiet(), &[10; 4]);
    let fee = net.a.params().economy.report_fee;
    let user = net.users[2].clone();
    let id = task_id(&user.public_key(), 0);
    net.apply_ok(vec![request(&user, 0, 0, 100, 1_000)]);
    let exec = net.task(&id).expect("opened").executor as usize;
    net.apply_ok(vec![finish(&net.hosts[exec].clone(), id, 77)]);
    net.apply_ok(vec![report(&user, id, 1)]);
    let until = match net.task(&id).map(|t| t.status) {
        Some(TaskStatus::Disputed(_, d)) => d.until,
        other => panic!("a report opens a dispute: {other:?}"),
    };
    net.run_to(until);
    assert_eq!(net.balance(&user.public_key()), FUNDS - 1_000 - fee, "cost and fee held");
    net.apply(Vec::new());
    assert!(net.task(&id).is_none(), "cleared and settled at height {until}");
    assert_eq!(net.balance(&user.public_key()), FUNDS - 770 - fee);
    assert_eq!(net.a.ledger().reserve, RESERVE + fee, "nobody re-verified: the fee goes to the reserve");
    assert_eq!(net.earnings(exec), 616);
}

#[test]
fn served_models_are_declared_with_a_nonce_and_switch_at_the_boundary() {
    let mut net = Net::new(quiet(), &[10; 4]);
    let epoch = net.a.params().epoch_blocks;
    let serve = |k: &HostKey, models: u64, nonce: u64| {
        SignedTransaction::sign(k, Transaction::ServeModels { models, nonce })
    };
    // Every host drops model 1 from the next epoch.
    let mut txs: Vec<SignedTransaction> = net.hosts.iter().map(|k| serve(k, 0b01, 0)).collect();
    txs.push(serve(&net.hosts[0], 0b01, 0)); // the nonce again
    txs.push(serve(&net.hosts[1], 0b100, 1)); // no model 2
    txs.push(serve(&net.users[0], 0b01, 0)); // not a host
    let r = net.apply(txs);
    assert!(r.receipts[..4].iter().all(Result::is_ok), "{:?}", r.receipts);
    refused(&r, 4, invalid, "a reused nonce");
    refused(&r, 5, invalid, "a model beyond the list");
    refused(&r, 6, |e| matches!(e, TxError::UnknownSender { .. }), "a user's declaration");
    assert_eq!(net.nonce(&net.hosts[0].public_key()), 1);
    assert_eq!(net.host::<Serves>(0), Some(Serves { current: 0b11, next: 0b01 }));
    // Model 1 is served for the rest of this epoch.
    net.apply_ok(vec![request(&net.users[0].clone(), 0, 1, 10, 400)]);
    net.run_to(epoch);
    assert_eq!(net.host::<Serves>(0), Some(Serves { current: 0b01, next: 0b01 }), "switched at the close");
    let r = net.apply(vec![request(&net.users[1].clone(), 0, 1, 10, 400)]);
    refused(&r, 0, invalid, "a request for a model no host serves");
    assert_eq!(net.balance(&net.user(1)), FUNDS, "nothing held");
}

#[test]
fn the_epoch_close_mints_releases_forfeits_and_moves_reputation() {
    // Weights 10, 10, 10, 13: the subsidy splits with a dust of one unit.
    let mut net = Net::new(quiet(), &[10, 10, 10, 13]);
    let h = net.hosts.clone();
    let epoch = net.a.params().epoch_blocks;
    // Three reported, confirmed frauds of one executor, and one honest task of another.
    // The cheat: the host drawn most often for the users' first requests.
    let mut drawn = [0; 4];
    for u in 0..USERS {
        drawn[net.route(&task_id(&net.user(u), 0), 0).0 as usize] += 1;
    }
    let cheat = (0..4).max_by_key(|&h| drawn[h]).expect("four hosts");
    assert!(drawn[cheat] >= 3, "three tasks for the cheat: {drawn:?}");
    let mut frauds = Vec::new();
    for _ in 0..3 {
        let (u, id, _) = net.find_task(|e, _, _| e as usize == cheat);
        net.apply_ok(vec![request(&net.users[u].clone(), 0, 0, 100, 1_000)]);
        frauds.push((u, id));
    }
    let (hu, honest_id, honest) = net.find_task(|e, _, _| e as usize != cheat);
    let honest = honest as usize;
    net.apply_ok(vec![request(&net.users[hu].clone(), 0, 0, 100, 1_000)]);
    let mut txs: Vec<SignedTransaction> = frauds.iter().map(|&(_, id)| finish(&h[cheat], id, 50)).collect();
    txs.push(finish(&h[honest], honest_id, 50));
    net.apply_ok(txs);
    net.apply_ok(frauds.iter().map(|&(u, id)| report(&net.users[u], id, 1)).collect());
    // Every host but the cheat owes a vote on each dispute, and casts it.
    let voters: Vec<usize> = (0..4).filter(|&x| x != cheat).collect();
    let h = &h;
    net.apply_ok(
        frauds.iter().flat_map(|&(_, id)| voters.iter().map(move |&v| vote(&h[v], id, true))).collect(),
    );
    net.run_to(net.a.next_height() + 3);
    assert_eq!(net.work(cheat).frauds, 3, "a confirmed mismatch is fraud, with no allowance");
    net.run_to(epoch - 1);
    let before = net.a.ledger().clone();
    assert_eq!(before.pending, 400, "the honest task's 500 less 100 for training");
    net.apply(Vec::new()); // offset E − 1: the close
    let after = net.a.ledger().clone();
    let s = subsidies(2);
    assert_eq!(after.supply(), before.supply() + s[0], "the supply grows by the subsidy");
    assert_eq!((after.minted, after.next_subsidy, after.pending), (s[0], s[1], 0));
    let share = |w: Amount| s[0] * w / 43;
    let dust = s[0] - 3 * share(10) - share(13);
    assert_eq!(dust, 1);
    for (id, key) in h.iter().enumerate() {
        let weight = if id == 3 { 13 } else { 10 };
        let earned = share(weight) + if id == honest { 400 } else { 0 };
        let payout = net.host::<Payout>(id).expect("every voting host gets a payout");
        assert_eq!((payout.epoch, payout.earned), (0, earned), "host {id}");
        assert_eq!(net.earnings(id), 0, "earnings are emptied at the close");
        let released = net.balance(&key.public_key());
        let reputation = net.host::<Reputation>(id).expect("every host was active or caught");
        if id == cheat {
            assert_eq!((payout.withheld, released), (Some(Withheld::Fraud), 0), "the cheat forfeits");
            assert_eq!(payout.work.frauds, 3);
            assert_eq!(reputation, Reputation { epochs: 0, last_active: 0 });
        } else {
            assert_eq!((payout.withheld, released), (None, earned), "host {id} released");
            assert_eq!(reputation, Reputation { epochs: 1, last_active: 0 });
        }
        assert_eq!(net.work(id), EpochWork::default(), "the work resets");
    }
    let forfeited = share(if cheat == 3 { 13 } else { 10 });
    assert_eq!(after.reserve, before.reserve + dust + forfeited);
    // One more epoch: everyone active and honest.
    net.run_to(2 * epoch - 1);
    let before = net.a.ledger().supply();
    net.apply(Vec::new());
    assert_eq!(net.a.ledger().supply(), before + s[1]);
    for id in 0..4 {
        let r = net.host::<Reputation>(id).expect("kept");
        let want = if id == cheat { 1 } else { 2 };
        assert_eq!(r, Reputation { epochs: want, last_active: 1 }, "host {id}");
    }
}

#[test]
fn the_supply_grows_by_exactly_the_subsidy_each_epoch() {
    // Default `tiny`: dummy requests run from the reserve meanwhile.
    let mut net = Net::new(ChainParams::tiny(), &[10; 4]);
    let epoch = net.a.params().epoch_blocks;
    let s = subsidies(4);
    let genesis = net.a.ledger().supply();
    assert_eq!(genesis, USERS as Amount * FUNDS + RESERVE);
    let mut minted = 0;
    for (e, &subsidy) in s.iter().enumerate() {
        net.run_to(epoch * (e as u64 + 1) - 1);
        let before = net.a.ledger().supply();
        assert_eq!(before, genesis + minted, "no money appears inside epoch {e}");
        net.apply(Vec::new());
        minted += subsidy;
        assert_eq!(net.a.ledger().supply(), before + subsidy, "epoch {e} mints exactly {subsidy}");
        assert_eq!(net.a.ledger().minted, minted);
    }
    assert_eq!(s, vec![1_000_000, 990_000, 980_100, 970_299]);
}

#[test]
fn dummy_requests_fill_a_quiet_epoch_and_are_swept_back() {
    let mut net = Net::new(ChainParams::tiny(), &[10; 4]);
    let (epoch, e) = (net.a.params().epoch_blocks, net.a.params().economy.clone());
    let half = epoch / 2;
    // Four real requests in epoch 0 (they expire); the next epoch owes 10 − 4 dummies.
    let reqs: Vec<SignedTransaction> =
        (0..4).map(|u| request(&net.users[u].clone(), 0, 0, 10, 100)).collect();
    net.apply_ok(reqs);
    // The executor of the first dummy finishes it in the next block; the
    // others hang and expire back to their accounts.
    let mut dummy_tasks: Vec<Task> = Vec::new();
    let mut next = Vec::new();
    while net.a.next_height() <= half {
        net.apply_ok(std::mem::take(&mut next));
        let dummies = net.a.world().resource::<DummyAccounts>().clone();
        let world = net.a.world_mut_for_queries();
        let fresh: Vec<Task> = world
            .query::<&Task>()
            .iter(world)
            .filter(|t| dummies.0.contains(&t.payer) && !dummy_tasks.iter().any(|d| d.id == t.id))
            .cloned()
            .collect();
        if dummy_tasks.is_empty()
            && let Some(t) = fresh.first()
        {
            next.push(finish(&net.hosts[t.executor as usize].clone(), t.id, 20));
        }
        dummy_tasks.extend(fresh);
    }
    assert_eq!(dummy_tasks.len(), e.dummy_requests as usize, "epoch 0 follows a real volume of 0");
    let volume = net.a.world().resource::<Volume>().clone();
    assert_eq!((volume.current, volume.real_current), (14, 4));
    let held: Amount = dummy_tasks.iter().map(|t| t.max_cost).sum();
    for t in &dummy_tasks {
        let price = e.models[t.model as usize].price_per_token;
        assert_eq!(
            (t.max_tokens, t.max_cost),
            (e.dummy_max_tokens, price * Amount::from(e.dummy_max_tokens))
        );
        assert!(net.user_index(&t.payer).is_none(), "a fresh account");
    }
    assert_eq!(net.a.ledger().reserve, RESERVE - held, "the reserve funds them");
    let cost = e.models[dummy_tasks[0].model as usize].price_per_token * 20;
    net.run_to(epoch - 1);
    let pending_dummies = net.a.world().resource::<DummyAccounts>().0.len();
    assert_eq!(pending_dummies, dummy_tasks.len(), "kept until the boundary");
    net.apply(Vec::new());
    assert!(net.a.world().resource::<DummyAccounts>().0.is_empty(), "swept at the boundary");
    for t in &dummy_tasks {
        assert!(!net.a.ledger().accounts.contains_key(&t.payer), "dummy account removed");
    }
    assert_eq!(net.a.ledger().reserve, RESERVE - cost, "leftovers back in the reserve");
    for id in 0..4 {
        let payout = net.host::<Payout>(id).expect("a payout");
        assert_eq!(payout.withheld, None, "host {id}: a few unfinished dummies are within the noise");
    }
    // Epoch 1 owes 10 − 4 = 6.
    assert_eq!(net.a.world().resource::<Volume>().real_previous, 4);
    net.run_to(epoch + half + 1);
    let volume = net.a.world().resource::<Volume>().clone();
    assert_eq!((volume.current, volume.real_current), (6, 0));
    assert_eq!(net.a.world().resource::<DummyAccounts>().0.len(), 6);
}

#[test]
fn a_host_that_skips_its_dispute_votes_is_not_paid() {
    let mut net = Net::new(quiet(), &[10; 4]);
    let h = net.hosts.clone();
    let epoch = net.a.params().epoch_blocks;
    let (u, id, exec) = net.find_task(|_, _, _| true);
    let exec = exec as usize;
    net.apply_ok(vec![request(&net.users[u].clone(), 0, 0, 100, 1_000)]);
    net.apply_ok(vec![finish(&h[exec], id, 50)]);
    net.apply_ok(vec![report(&net.users[u].clone(), id, 1)]);
    let others: Vec<usize> = (0..4).filter(|&x| x != exec).collect();
    let (voters, skipper) = (&others[..2], others[2]);
    net.apply_ok(voters.iter().map(|&v| vote(&h[v], id, false)).collect());
    net.run_to(epoch);
    for id in 0..4 {
        let payout = net.host::<Payout>(id).expect("every voting host gets a payout");
        let want = if id == skipper { Some(Withheld::TooFewValidations) } else { None };
        assert_eq!(payout.withheld, want, "host {id}: {payout:?}");
        let owed = u32::from(id != exec);
        assert_eq!((payout.work.owed_votes, payout.work.votes), (owed, u32::from(voters.contains(&id))));
    }
}
