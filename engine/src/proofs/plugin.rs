//! Where the proof-batch systems run.

use bevy_ecs::prelude::*;

use super::systems::*;
use crate::chain::schedule::Phase;
use crate::timed;

/// Adds the proof-batch systems.
pub fn plugin(schedule: &mut Schedule) {
    schedule.add_systems(
        (timed!(record_proof_commitments), timed!(record_proof_batches)).chain().in_set(Phase::Proofs),
    );
}
