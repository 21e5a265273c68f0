//! The state root: one hash over a canonical encoding of the whole chain
//! state, every collection in its protocol order (registry index, batch key,
//! height), every integer little-endian.

use bevy_ecs::prelude::*;
use gonka_kernels::encoding::{Hash32, tagged_hash};

use crate::blocks::{BlockRecord, ChainTip, EvidenceSeen};
use crate::hosts::{HostId, HostPublicKey, Penalized, RegisteredAt, ValidationDuty, VotingHosts, Weight};
use crate::params::ChainParams;
use crate::proofs::components::{BatchCommitment, BatchKey, BatchStatus, BatchTally};
use crate::rewards::{Earnings, EpochWork, Ledger, Payout, Reputation, Volume};
use crate::sprints::{BeaconState, BeaconStatus, EpochClock, Sprint};
use crate::tasks::{DummyAccounts, DummyPlan, Serves, Task, TaskStatus};
use crate::validations::ValidationReport;

struct Encoder(Vec<u8>);

impl Encoder {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
}

/// The root of `world`'s chain state.
pub fn state_root(world: &mut World, genesis: &Hash32) -> Hash32 {
    let mut e = Encoder(Vec::with_capacity(64 << 10));
    e.bytes(genesis);
    e.bytes(&world.resource::<ChainParams>().digest());
    let tip = world.resource::<ChainTip>();
    e.u64(tip.height.map_or(u64::MAX, |h| h));
    e.bytes(&tip.hash);
    let clock = *world.resource::<EpochClock>();
    e.u64(clock.height);
    e.u64(clock.epoch);
    encode_hosts(world, &mut e);
    encode_beacon(world, &mut e);
    encode_batches(world, &mut e);
    encode_reports(world, &mut e);
    encode_records(world, &mut e);
    encode_economy(world, &mut e);
    encode_tasks(world, &mut e);
    let seen = world.resource::<EvidenceSeen>();
    e.len(seen.0.len());
    for &(height, voter, round) in seen.0.keys() {
        e.u64(height);
        e.u32(voter);
        e.u32(round);
    }
    tagged_hash("gonka/state-root", &[&e.0])
}

fn encode_hosts(world: &mut World, e: &mut Encoder) {
    let mut q = world
        .query::<(&HostId, &HostPublicKey, &Weight, &RegisteredAt, Option<&Penalized>, &ValidationDuty)>();
    let mut hosts: Vec<_> =
        q.iter(world).map(|(i, k, w, r, p, d)| (i.0, k.0, w.0, r.0, p.copied(), *d)).collect();
    hosts.sort_unstable_by_key(|h| h.0);
    e.len(hosts.len());
    for (id, key, weight, registered, penalized, duty) in hosts {
        e.u32(id);
        e.bytes(&key);
        e.u64(weight);
        e.u64(registered);
        e.u64(penalized.map_or(u64::MAX, |p| p.epoch));
        e.u32(duty.expected);
        e.u32(duty.done);
    }
    let voting = world.resource::<VotingHosts>();
    e.u64(voting.epoch);
    e.len(voting.ids.len());
    for (id, w) in voting.ids.iter().zip(&voting.weights) {
        e.u32(*id);
        e.u64(*w);
    }
}

fn encode_beacon(world: &mut World, e: &mut Encoder) {
    let b = world.resource::<BeaconState>();
    e.bytes(&b.previous);
    e.bytes(&b.transcript);
    match b.status {
        BeaconStatus::Pending => e.u8(0),
        BeaconStatus::Ready { height } => {
            e.u8(1);
            e.u64(height);
        }
        BeaconStatus::Failed { why } => {
            e.u8(2);
            e.bytes(why.why().as_bytes());
        }
    }
    e.u8(u8::from(b.outcome.is_some()));
    e.len(b.committee.len());
    b.committee.iter().for_each(|&m| e.u32(m));
    let s = *world.resource::<Sprint>();
    e.u64(s.epoch);
    e.bytes(&s.seed.unwrap_or([0; 32]));
    e.u8(u8::from(s.seed.is_some()));
    e.u64(s.start);
    e.u64(s.end);
    e.u64(s.validation_end);
}

fn encode_batches(world: &mut World, e: &mut Encoder) {
    let mut q = world.query::<(&BatchKey, &BatchCommitment, &BatchStatus, &BatchTally)>();
    let mut batches: Vec<_> = q.iter(world).map(|(k, c, s, t)| (*k, *c, *s, *t)).collect();
    batches.sort_unstable_by_key(|b| b.0);
    e.len(batches.len());
    for (k, c, s, t) in batches {
        e.u64(k.epoch);
        e.u32(k.host);
        e.bytes(&c.commitment);
        e.u64(c.proofs);
        e.u64(c.height);
        e.u8(s.code());
        e.u128(t.accept);
        e.u128(t.reject);
        e.u128(t.validating);
    }
}

fn encode_reports(world: &mut World, e: &mut Encoder) {
    let mut q = world.query::<&ValidationReport>();
    let mut reports: Vec<&ValidationReport> = q.iter(world).collect();
    reports.sort_unstable_by_key(|r| (r.epoch, r.validator));
    e.len(reports.len());
    for r in reports {
        e.u64(r.epoch);
        e.u32(r.validator);
        e.u64(r.height);
        e.len(r.verdicts.len());
        for v in &r.verdicts {
            e.u32(v.host);
            e.u8(u8::from(v.accept));
        }
    }
}

fn encode_records(world: &mut World, e: &mut Encoder) {
    let mut q = world.query::<&BlockRecord>();
    let mut records: Vec<BlockRecord> = q.iter(world).copied().collect();
    records.sort_unstable_by_key(|r| r.height);
    e.len(records.len());
    for r in records {
        e.u64(r.height);
        e.bytes(&r.hash);
        e.u32(r.round);
        e.u32(r.proposer);
        e.u32(r.transactions);
        e.u32(r.failed);
    }
}

fn encode_economy(world: &mut World, e: &mut Encoder) {
    let l = world.resource::<Ledger>();
    e.len(l.accounts.len());
    for (key, a) in &l.accounts {
        e.bytes(key);
        e.u128(a.balance);
        e.u64(a.nonce);
    }
    for v in [l.escrow, l.pending, l.training_fund, l.reserve, l.genesis_supply, l.minted, l.next_subsidy] {
        e.u128(v);
    }
    let v = world.resource::<Volume>();
    e.u64(v.previous);
    e.u64(v.current);
    e.u64(v.real_previous);
    e.u64(v.real_current);
    e.u128(v.owed_checks);
    e.len(v.per_model.len());
    v.per_model.iter().for_each(|&n| e.u64(n));
    let d = world.resource::<DummyAccounts>();
    e.len(d.0.len());
    d.0.iter().for_each(|k| e.bytes(k));
    let plan = *world.resource::<DummyPlan>();
    e.u64(plan.epoch);
    e.bytes(&plan.seed);
    e.u64(plan.due);
    let mut q =
        world.query::<(&HostId, &EpochWork, &Earnings, &Serves, Option<&Reputation>, Option<&Payout>)>();
    let mut hosts: Vec<_> =
        q.iter(world).map(|(i, w, a, s, r, p)| (i.0, *w, a.0, *s, r.copied(), p.copied())).collect();
    hosts.sort_unstable_by_key(|h| h.0);
    e.len(hosts.len());
    for (id, w, earned, serves, reputation, payout) in hosts {
        e.u32(id);
        encode_work(e, &w);
        e.u128(earned);
        e.u64(serves.current);
        e.u64(serves.next);
        match reputation {
            Some(r) => {
                e.u8(1);
                e.u32(r.epochs);
                e.u64(r.last_active);
            }
            None => e.u8(0),
        }
        match payout {
            Some(p) => {
                e.u8(1);
                e.u64(p.epoch);
                e.u128(p.earned);
                e.u8(p.withheld.map_or(0, |w| w.code()));
                encode_work(e, &p.work);
            }
            None => e.u8(0),
        }
    }
}

fn encode_work(e: &mut Encoder, w: &EpochWork) {
    for v in [
        w.assigned,
        w.finished,
        w.expired,
        w.checks,
        w.votes,
        w.owed_votes,
        w.frauds,
        w.judged_honest,
        w.alarms,
        w.judged_frauds,
        w.missed,
    ] {
        e.u32(v);
    }
    e.u64(w.tokens);
}

fn encode_tasks(world: &mut World, e: &mut Encoder) {
    let mut q = world.query::<&Task>();
    let mut tasks: Vec<&Task> = q.iter(world).collect();
    tasks.sort_unstable_by_key(|t| t.id);
    e.len(tasks.len());
    for t in tasks {
        e.bytes(&t.id);
        e.bytes(&t.payer);
        e.u32(t.model);
        e.bytes(&t.prompt);
        e.u32(t.max_tokens);
        e.u128(t.max_cost);
        e.u128(t.escrow);
        e.u64(t.requested);
        e.u32(t.intermediary);
        e.u32(t.executor);
        let (finished, dispute) = match &t.status {
            TaskStatus::Requested => (None, None),
            TaskStatus::Finished(f) => (Some(f), None),
            TaskStatus::Disputed(f, d) => (Some(f), Some(d)),
        };
        e.u8(u8::from(finished.is_some()) + u8::from(dispute.is_some()));
        if let Some(f) = finished {
            e.u64(f.height);
            e.bytes(&f.output);
            e.bytes(&f.artifact);
            e.u32(f.tokens);
            e.u128(f.cost);
            e.u8(u8::from(f.cancelled));
            e.u64(f.rate);
            e.u64(f.checks_until);
        }
        if let Some(d) = dispute {
            e.u64(d.opened);
            e.u64(d.until);
            e.u128(d.report_fee);
            e.u128(d.fraud);
            e.u128(d.clear);
            e.u128(d.eligible);
            e.len(d.votes.len());
            for (&voter, &fraud) in &d.votes {
                e.u32(voter);
                e.u8(u8::from(fraud));
            }
        }
        e.len(t.checks.len());
        for c in &t.checks {
            e.u32(c.validator);
            e.u8(u8::from(c.pass));
        }
    }
}
