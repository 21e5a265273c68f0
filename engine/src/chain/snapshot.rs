//! The whole chain state as one plain value: what the store writes every
//! `K` blocks and after every block, and what a restarting host loads
//! instead of replaying the chain from genesis.
//!
//! A snapshot holds every component and resource the state root covers,
//! plus the parts the root covers only through a hash (the beacon's DKG and
//! threshold rounds, through the transcript) and the derived indexes' raw
//! sets. Entity maps (registry, batch, report, task and record indexes) are
//! rebuilt on restore. [`Chain::restore`] recomputes the root and refuses a
//! snapshot whose root differs from the one it records.
//!
//! Proof-batch contents are the bulk of the state and never change once on
//! chain, so a snapshot may leave them out ([`BatchContents::Elsewhere`]):
//! the store keeps each batch once, in its own table, and hands it back on
//! restore.

use std::collections::BTreeMap;
use std::sync::Arc;

use bevy_ecs::prelude::*;
use gonka_kernels::encoding::Hash32;
use rkyv::{Archive, Deserialize, Serialize};

use super::input::BlockInput;
use super::{Chain, Verifier, root, schedule};
use crate::blocks::{BlockRecord, ChainTip, EvidenceSeen};
use crate::crypto::PublicKeyBytes;
use crate::crypto::cache::SigCache;
use crate::hosts::{
    HostId, HostPublicKey, HostRegistry, Penalized, RegisteredAt, ValidationDuty, VotingHosts, Weight,
};
use crate::params::{Amount, ChainParams};
use crate::proofs::ProofBatch;
use crate::proofs::components::{
    BatchCommitment, BatchContents as Contents, BatchIndex, BatchKey, BatchStatus, BatchTally,
};
use crate::rewards::{Earnings, EpochWork, Ledger, Payout, Reputation, Volume};
use crate::sprints::{BeaconSnapshot, BeaconState, EpochClock, Sprint};
use crate::tasks::{DummyAccounts, DummyPlan, Serves, Task, TaskIndex};
use crate::validations::{ReportIndex, ValidationReport};

/// Why a snapshot cannot become a chain.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A part does not decode into valid state (a bad point, a broken index).
    #[error("snapshot at height {height:?}: invalid {part}: {why}")]
    Invalid {
        /// The tip height of the snapshot.
        height: Option<u64>,
        /// Which part.
        part: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A batch left out of the snapshot was not found where it should be.
    #[error(
        "snapshot at height {height:?}: contents of the proof batch of epoch {epoch}, host {host} are missing"
    )]
    MissingBatch {
        /// The tip height of the snapshot.
        height: Option<u64>,
        /// The batch's epoch.
        epoch: u64,
        /// The batch's host.
        host: u32,
    },
    /// The restored state does not hash to the root the snapshot records.
    #[error(
        "snapshot at height {height:?}: restored state has root {found}, the snapshot records {expected}"
    )]
    RootMismatch {
        /// The tip height of the snapshot.
        height: Option<u64>,
        /// The restored state's root, hex.
        found: String,
        /// The recorded root, hex.
        expected: String,
    },
}

/// One registered host.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HostSnapshot {
    /// Registry index.
    pub id: u32,
    /// BLS public key.
    pub key: PublicKeyBytes,
    /// Voting weight this epoch.
    pub weight: u64,
    /// Registration height.
    pub registered: u64,
    /// Epoch of an equivocation, if any this epoch.
    pub penalized: Option<u64>,
    /// Validation duty this epoch.
    pub duty: ValidationDuty,
    /// Work this epoch.
    pub work: EpochWork,
    /// Earnings this epoch.
    pub earnings: Amount,
    /// Models served.
    pub serves: Serves,
    /// Reputation, once active.
    pub reputation: Option<Reputation>,
    /// The last epoch's payout.
    pub payout: Option<Payout>,
}

/// Where a batch's contents are.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum BatchContents {
    /// Committed only: no contents yet.
    None,
    /// In the snapshot.
    Inline(Box<ProofBatch>),
    /// Kept by the caller under the batch's key (the store's batch table).
    Elsewhere,
}

/// One proof batch.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BatchSnapshot {
    /// Epoch and host.
    pub key: BatchKey,
    /// The commitment.
    pub commitment: BatchCommitment,
    /// Where it stands.
    pub status: BatchStatus,
    /// Validators' weight for and against.
    pub tally: BatchTally,
    /// Its proofs, once submitted.
    pub contents: BatchContents,
}

/// The chain state at one height.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StateSnapshot {
    /// The chain's identity.
    pub genesis: Hash32,
    /// The state root of this state.
    pub root: Hash32,
    /// The parameters.
    pub params: ChainParams,
    /// Height of the last applied block; `None` at genesis.
    pub tip_height: Option<u64>,
    /// Its hash (the genesis digest at genesis).
    pub tip_hash: Hash32,
    /// Where the last block sat in time.
    pub clock: EpochClock,
    /// Every registered host, by registry index.
    pub hosts: Vec<HostSnapshot>,
    /// The epoch of the voting list.
    pub voting_epoch: u64,
    /// The voting list: `(registry index, key, weight)`, ascending.
    pub voting: Vec<(u32, PublicKeyBytes, u64)>,
    /// The beacon's state machines.
    pub beacon: BeaconSnapshot,
    /// The epoch's Sprint window.
    pub sprint: Sprint,
    /// Punished equivocations: `(height, voter, round)`.
    pub evidence: Vec<(u64, u32, u32)>,
    /// Proof batches of this epoch and the last, by key.
    pub batches: Vec<BatchSnapshot>,
    /// Validation reports, by `(epoch, validator)`.
    pub reports: Vec<ValidationReport>,
    /// Recent block records, by height.
    pub records: Vec<BlockRecord>,
    /// Accounts and pools.
    pub ledger: Ledger,
    /// Request volume.
    pub volume: Volume,
    /// Open tasks, by id.
    pub tasks: Vec<Task>,
    /// Unfinished requests: `(height requested, id)`.
    pub hanging: Vec<(u64, Hash32)>,
    /// Finished tasks waiting to settle: `(height due, id)`.
    pub settle: Vec<(u64, Hash32)>,
    /// Open disputes: `(deadline, id)`.
    pub disputes: Vec<(u64, Hash32)>,
    /// The one-time accounts of dummy requests.
    pub dummy_accounts: Vec<PublicKeyBytes>,
    /// This epoch's dummy-request plan.
    pub dummy_plan: DummyPlan,
}

impl StateSnapshot {
    /// The keys of the batches whose contents were left out.
    pub fn batches_elsewhere(&self) -> impl Iterator<Item = BatchKey> + '_ {
        self.batches.iter().filter(|b| matches!(b.contents, BatchContents::Elsewhere)).map(|b| b.key)
    }
}

impl Chain {
    /// The current state as one value. With `inline_batches` false, batch
    /// contents are left out ([`BatchContents::Elsewhere`]) and must be
    /// handed back to [`Chain::restore`].
    pub fn snapshot(&mut self, inline_batches: bool) -> StateSnapshot {
        let world = &mut self.world;
        let tip = world.resource::<ChainTip>();
        let (tip_height, tip_hash) = (tip.height, tip.hash);
        let voting = world.resource::<VotingHosts>();
        let voting_epoch = voting.epoch;
        let voting_list = voting
            .ids
            .iter()
            .zip(&voting.keys)
            .zip(&voting.weights)
            .map(|((&id, &key), &weight)| (id, key, weight))
            .collect();
        let ledger = world.resource::<Ledger>().clone();
        let volume = world.resource::<Volume>().clone();
        let index = world.resource::<TaskIndex>();
        let (hanging, settle, disputes) = (
            index.hanging.iter().copied().collect(),
            index.settle.iter().copied().collect(),
            index.disputes.iter().copied().collect(),
        );
        StateSnapshot {
            genesis: self.genesis,
            root: self.root,
            params: world.resource::<ChainParams>().clone(),
            tip_height,
            tip_hash,
            clock: *world.resource::<EpochClock>(),
            hosts: hosts_of(world),
            voting_epoch,
            voting: voting_list,
            beacon: world.resource::<BeaconState>().to_snapshot(),
            sprint: *world.resource::<Sprint>(),
            evidence: world.resource::<EvidenceSeen>().0.keys().copied().collect(),
            batches: batches_of(world, inline_batches),
            reports: sorted(world, |r: &ValidationReport| (r.epoch, r.validator)),
            records: sorted(world, |r: &BlockRecord| r.height),
            ledger,
            volume,
            tasks: sorted(world, |t: &Task| t.id),
            hanging,
            settle,
            disputes,
            dummy_accounts: world.resource::<DummyAccounts>().0.iter().copied().collect(),
            dummy_plan: *world.resource::<DummyPlan>(),
        }
    }

    /// The chain in the state `snapshot` records. `batch` returns the
    /// contents of a batch left out of it (by key). The root of the rebuilt
    /// state must equal the recorded one.
    pub fn restore(
        snapshot: &StateSnapshot,
        cache: SigCache,
        mut batch: impl FnMut(BatchKey) -> Option<ProofBatch>,
    ) -> Result<Self, SnapshotError> {
        let height = snapshot.tip_height;
        let invalid = |part: &'static str, why: String| SnapshotError::Invalid { height, part, why };
        let mut world = World::new();
        let registry = spawn_hosts(&mut world, &snapshot.hosts).map_err(|why| invalid("hosts", why))?;
        let voting = VotingHosts::new(snapshot.voting_epoch, snapshot.voting.clone(), &cache)
            .map_err(|e| invalid("voting list", e.to_string()))?;
        let beacon = BeaconState::from_snapshot(&snapshot.beacon).map_err(|why| invalid("beacon", why))?;
        let mut batch_index = BatchIndex::default();
        for b in &snapshot.batches {
            let entity = world.spawn((b.key, b.commitment, b.status, b.tally)).id();
            let contents = match &b.contents {
                BatchContents::None => None,
                BatchContents::Inline(p) => Some((**p).clone()),
                BatchContents::Elsewhere => Some(batch(b.key).ok_or(SnapshotError::MissingBatch {
                    height,
                    epoch: b.key.epoch,
                    host: b.key.host,
                })?),
            };
            if let Some(p) = contents {
                world.entity_mut(entity).insert(Contents(Arc::new(p)));
            }
            if batch_index.0.insert(b.key, entity).is_some() {
                return Err(invalid("batches", format!("batch {:?} appears twice", b.key)));
            }
        }
        let mut report_index = ReportIndex::default();
        for r in &snapshot.reports {
            let entity = world.spawn(r.clone()).id();
            if report_index.0.insert((r.epoch, r.validator), entity).is_some() {
                return Err(invalid(
                    "reports",
                    format!("report ({}, {}) appears twice", r.epoch, r.validator),
                ));
            }
        }
        let mut records = BTreeMap::new();
        for r in &snapshot.records {
            records.insert(r.height, world.spawn(*r).id());
        }
        let mut tasks = TaskIndex {
            hanging: snapshot.hanging.iter().copied().collect(),
            settle: snapshot.settle.iter().copied().collect(),
            disputes: snapshot.disputes.iter().copied().collect(),
            ..TaskIndex::default()
        };
        for t in &snapshot.tasks {
            let entity = world.spawn(t.clone()).id();
            if tasks.by_id.insert(t.id, entity).is_some() {
                return Err(invalid("tasks", format!("task {} appears twice", hex::encode(t.id))));
            }
        }
        world.insert_resource(registry);
        world.insert_resource(voting);
        world.insert_resource(beacon);
        world.insert_resource(snapshot.sprint);
        world.insert_resource(snapshot.clock);
        world.insert_resource(ChainTip { height, hash: snapshot.tip_hash, records });
        world.insert_resource(EvidenceSeen(snapshot.evidence.iter().map(|&k| (k, ())).collect()));
        world.insert_resource(batch_index);
        world.insert_resource(report_index);
        world.insert_resource(BlockInput::default());
        world.insert_resource(snapshot.ledger.clone());
        world.insert_resource(snapshot.volume.clone());
        world.insert_resource(tasks);
        world.insert_resource(DummyAccounts(snapshot.dummy_accounts.iter().copied().collect()));
        world.insert_resource(snapshot.dummy_plan);
        world.insert_resource(snapshot.params.clone());
        world.insert_resource(Verifier(cache.clone()));
        let root = root::state_root(&mut world, &snapshot.genesis);
        if root != snapshot.root {
            let (found, expected) = (hex::encode(root), hex::encode(snapshot.root));
            return Err(SnapshotError::RootMismatch { height, found, expected });
        }
        Ok(Self { world, schedule: schedule::build(), genesis: snapshot.genesis, root, cache })
    }
}

fn sorted<T: Component + Clone, K: Ord>(world: &mut World, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut q = world.query::<&T>();
    let mut items: Vec<T> = q.iter(world).cloned().collect();
    items.sort_by_key(|t| key(t));
    items
}

type HostRow<'a> = (
    &'a HostId,
    &'a HostPublicKey,
    &'a Weight,
    &'a RegisteredAt,
    Option<&'a Penalized>,
    &'a ValidationDuty,
    &'a EpochWork,
    &'a Earnings,
    &'a Serves,
    Option<&'a Reputation>,
    Option<&'a Payout>,
);

fn hosts_of(world: &mut World) -> Vec<HostSnapshot> {
    let mut q = world.query::<HostRow<'_>>();
    let mut hosts: Vec<HostSnapshot> = q
        .iter(world)
        .map(|(id, key, weight, registered, penalized, duty, work, earnings, serves, reputation, payout)| {
            HostSnapshot {
                id: id.0,
                key: key.0,
                weight: weight.0,
                registered: registered.0,
                penalized: penalized.map(|p| p.epoch),
                duty: *duty,
                work: *work,
                earnings: earnings.0,
                serves: *serves,
                reputation: reputation.copied(),
                payout: payout.copied(),
            }
        })
        .collect();
    hosts.sort_unstable_by_key(|h| h.id);
    hosts
}

fn batches_of(world: &mut World, inline: bool) -> Vec<BatchSnapshot> {
    let mut q = world.query::<(&BatchKey, &BatchCommitment, &BatchStatus, &BatchTally, Option<&Contents>)>();
    let mut batches: Vec<BatchSnapshot> = q
        .iter(world)
        .map(|(key, commitment, status, tally, contents)| BatchSnapshot {
            key: *key,
            commitment: *commitment,
            status: *status,
            tally: *tally,
            contents: match contents {
                None => BatchContents::None,
                Some(c) if inline => BatchContents::Inline(Box::new((*c.0).clone())),
                Some(_) => BatchContents::Elsewhere,
            },
        })
        .collect();
    batches.sort_unstable_by_key(|b| b.key);
    batches
}

/// Spawns the hosts (ascending registry index, no gaps) and returns their registry.
fn spawn_hosts(world: &mut World, hosts: &[HostSnapshot]) -> Result<HostRegistry, String> {
    let mut registry = HostRegistry::default();
    for h in hosts {
        let entity = world
            .spawn((
                HostId(h.id),
                HostPublicKey(h.key),
                Weight(h.weight),
                RegisteredAt(h.registered),
                h.duty,
                h.work,
                Earnings(h.earnings),
                h.serves,
            ))
            .id();
        if let Some(epoch) = h.penalized {
            world.entity_mut(entity).insert(Penalized { epoch });
        }
        if let Some(r) = h.reputation {
            world.entity_mut(entity).insert(r);
        }
        if let Some(p) = h.payout {
            world.entity_mut(entity).insert(p);
        }
        if registry.id_of(&h.key).is_some() {
            return Err(format!("host {} repeats the key of an earlier host", h.id));
        }
        let id = registry.insert(h.key, entity);
        if id != h.id {
            return Err(format!("host {} found where registry index {id} belongs", h.id));
        }
    }
    Ok(registry)
}
