//! Task entities and the indexes over them.

use std::collections::{BTreeMap, BTreeSet};

use bevy_ecs::prelude::*;
use gonka_kernels::encoding::Hash32;
use rkyv::{Archive, Deserialize, Serialize};

use crate::crypto::PublicKeyBytes;
use crate::params::Amount;

/// One host's check of a task.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// The checking host's registry index.
    pub validator: u32,
    /// Its verdict.
    pub pass: bool,
}

/// The executor's result as recorded.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    /// Height of the finish.
    pub height: u64,
    /// Output commitment.
    pub output: Hash32,
    /// Validation-artifact commitment.
    pub artifact: Hash32,
    /// Tokens billed.
    pub tokens: u32,
    /// What the payer pays: `min(price · tokens, max_cost)`.
    pub cost: Amount,
    /// The cost would have exceeded `max_cost`: the task stopped at the
    /// limit, and what was spent is not refunded.
    pub cancelled: bool,
    /// The executor's required validation rate `p` (units of 2^-32).
    pub rate: u64,
    /// Last height at which checks are accepted; the task settles then.
    pub checks_until: u64,
}

/// A re-verification in progress.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Dispute {
    /// Height it opened at.
    pub opened: u64,
    /// Last height of votes; undecided by then means no fraud.
    pub until: u64,
    /// The user's report fee, when a report opened it.
    pub report_fee: Amount,
    /// Weight voting fraud.
    pub fraud: u128,
    /// Weight voting no fraud.
    pub clear: u128,
    /// Weight that may vote: every voting host but the executor.
    pub eligible: u128,
    /// The voters and their votes, by registry index.
    pub votes: BTreeMap<u32, bool>,
}

/// Where a task stands.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum TaskStatus {
    /// Waiting for the executor.
    Requested,
    /// Finished; checks may come.
    Finished(Finished),
    /// Finished, and a check failed or the user reported it.
    Disputed(Finished, Dispute),
}

/// A task entity's data.
#[derive(Archive, Serialize, Deserialize, Component, Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Its id ([`super::task_id`], or a dummy's).
    pub id: Hash32,
    /// Who pays, and receives refunds.
    pub payer: PublicKeyBytes,
    /// Model index.
    pub model: u32,
    /// Prompt commitment.
    pub prompt: Hash32,
    /// Most tokens paid for.
    pub max_tokens: u32,
    /// Most paid.
    pub max_cost: Amount,
    /// Held for it now.
    pub escrow: Amount,
    /// Height of the request.
    pub requested: u64,
    /// The host that relays the prompt (registry index).
    pub intermediary: u32,
    /// The host drawn to run it (registry index).
    pub executor: u32,
    /// Where it stands.
    pub status: TaskStatus,
    /// Checks so far, validators ascending.
    pub checks: Vec<Check>,
}

/// The chain's tasks by id, the pool of hanging (unfinished) requests, and
/// the settlement queue.
#[derive(Resource, Clone, Debug, Default)]
pub struct TaskIndex {
    /// Every open task.
    pub by_id: BTreeMap<Hash32, Entity>,
    /// Requested, unfinished tasks by (request height, id): the hanging pool.
    pub hanging: BTreeSet<(u64, Hash32)>,
    /// Finished tasks by (settlement height, id).
    pub settle: BTreeSet<(u64, Hash32)>,
    /// Open disputes by (last vote height, id).
    pub disputes: BTreeSet<(u64, Hash32)>,
}

/// How a task left the state.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskEnd {
    /// Its check window passed (or a dispute cleared it) and it was paid.
    Settled,
    /// A dispute confirmed a mismatch: the payer was refunded.
    Convicted,
    /// Never finished in time: the payer was refunded.
    Expired,
}

impl TaskEnd {
    /// The ending in words.
    pub fn name(self) -> &'static str {
        match self {
            TaskEnd::Settled => "settled",
            TaskEnd::Convicted => "convicted of fraud",
            TaskEnd::Expired => "expired",
        }
    }
}

/// The models a host serves, as a bit mask over the model list: `current`
/// this epoch (executors are drawn from it), `next` from the next epoch.
#[derive(Archive, Serialize, Deserialize, Component, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Serves {
    /// This epoch's models.
    pub current: u64,
    /// The models declared for the next epoch.
    pub next: u64,
}

/// The one-time payer accounts of dummy requests: swept back into the
/// reserve at the epoch boundary once their tasks are settled.
#[derive(Resource, Clone, Debug, Default, PartialEq, Eq)]
pub struct DummyAccounts(pub BTreeSet<PublicKeyBytes>);

/// This epoch's dummy requests, fixed at its first block: the seed of their
/// heights, accounts and prompts, and how many there are.
#[derive(Archive, Serialize, Deserialize, Resource, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DummyPlan {
    /// The epoch.
    pub epoch: u64,
    /// `H("gonka/dummy", beacon at the epoch's start, epoch)`.
    pub seed: Hash32,
    /// Dummy requests this epoch: the shortfall of the last epoch's user requests.
    pub due: u64,
}
