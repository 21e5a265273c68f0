//! Where the block systems run.

use bevy_ecs::prelude::*;

use super::systems::*;
use crate::chain::schedule::Phase;
use crate::timed;

/// Adds the block systems.
pub fn plugin(schedule: &mut Schedule) {
    schedule.add_systems(timed!(punish_equivocations).in_set(Phase::Evidence));
    schedule.add_systems(timed!(record_block).in_set(Phase::Record));
}
