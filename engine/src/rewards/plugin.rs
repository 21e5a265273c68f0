//! Where the rewards systems run.

use bevy_ecs::prelude::*;

use super::systems::*;
use crate::chain::schedule::Phase;
use crate::timed;

/// Adds the rewards systems.
pub fn plugin(schedule: &mut Schedule) {
    schedule.add_systems(timed!(close_epoch_rewards).in_set(Phase::Rewards));
}
