//! Where the task systems run.

use bevy_ecs::prelude::*;

use super::systems::*;
use crate::chain::schedule::Phase;
use crate::timed;

/// Adds the task systems: money first, then requests, finishes, checks,
/// reports, votes, settlement and expiry.
pub fn plugin(schedule: &mut Schedule) {
    schedule.add_systems(
        (
            timed!(apply_transfers),
            timed!(declare_models),
            timed!(open_requests),
            timed!(finish_tasks),
            timed!(record_task_checks),
            timed!(open_reports),
            timed!(record_dispute_votes),
            timed!(settle_tasks),
            timed!(expire_hanging_tasks),
        )
            .chain()
            .in_set(Phase::Tasks),
    );
}
