//! Where the validation systems run.

use bevy_ecs::prelude::*;

use super::systems::*;
use crate::chain::schedule::Phase;
use crate::timed;

/// Adds the validation systems.
pub fn plugin(schedule: &mut Schedule) {
    schedule.add_systems(
        (timed!(record_validation_reports), timed!(tally_proof_batches)).chain().in_set(Phase::Validation),
    );
}
