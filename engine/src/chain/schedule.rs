//! The chain's tick: the phases that apply one final block, in order.
//!
//! ```text
//!  Begin       advance_clock
//!  Register    register_hosts
//!  Evidence    punish_equivocations
//!  Beacon      apply_dkg_messages → finish_dkg → apply_seed_messages → apply_beacon_partials → finish_beacon
//!  Proofs      record_proof_commitments → record_proof_batches
//!  Validation  record_validation_reports → tally_proof_batches
//!  Tasks       apply_transfers → declare_models → open_requests → finish_tasks → record_task_checks
//!              → open_reports → record_dispute_votes → settle_tasks → expire_hanging_tasks
//!  Rewards     close_epoch_rewards
//!  Epoch       rotate_epoch
//!  Record      record_block
//! ```
//!
//! Within a block, transactions are handled by phase, then in block order
//! within a phase: a registration counts before anything else in its block,
//! a commitment before a batch. Every system runs on one thread in this
//! order: the result may depend on nothing but the block and the state.

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::{ScheduleLabel, SingleThreadedExecutor};

/// The label of the chain schedule.
#[derive(ScheduleLabel, Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApplyBlock;

/// The phases of applying a block.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Time moves to the block's height.
    Begin,
    /// New hosts.
    Register,
    /// Equivocation evidence.
    Evidence,
    /// DKG, commit–reveal, beacon.
    Beacon,
    /// Proof commitments and batches.
    Proofs,
    /// Validation reports and the tally.
    Validation,
    /// Transfers and the inference tasks' lifecycle.
    Tasks,
    /// The epoch's subsidy and the release of earnings (before the weights rotate).
    Rewards,
    /// The epoch boundary.
    Epoch,
    /// The block record.
    Record,
}

/// The schedule with every domain's systems in their phases.
pub fn build() -> Schedule {
    let mut schedule = Schedule::new(ApplyBlock);
    schedule.set_executor(SingleThreadedExecutor::new());
    schedule.configure_sets(
        (
            Phase::Begin,
            Phase::Register,
            Phase::Evidence,
            Phase::Beacon,
            Phase::Proofs,
            Phase::Validation,
            Phase::Tasks,
            Phase::Rewards,
            Phase::Epoch,
            Phase::Record,
        )
            .chain(),
    );
    crate::sprints::plugin::clock(&mut schedule);
    crate::hosts::plugin::plugin(&mut schedule);
    crate::blocks::plugin::plugin(&mut schedule);
    crate::sprints::plugin::plugin(&mut schedule);
    crate::proofs::plugin::plugin(&mut schedule);
    crate::validations::plugin::plugin(&mut schedule);
    crate::tasks::plugin::plugin(&mut schedule);
    crate::rewards::plugin::plugin(&mut schedule);
    schedule
}
