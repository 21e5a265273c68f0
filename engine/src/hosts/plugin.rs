//! Where the host systems run.

use bevy_ecs::prelude::*;

use super::systems::*;
use crate::chain::schedule::Phase;
use crate::timed;

/// Adds the host systems.
pub fn plugin(schedule: &mut Schedule) {
    schedule.add_systems(timed!(register_hosts).in_set(Phase::Register));
}
