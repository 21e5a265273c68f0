//! Where the epoch and beacon systems run.

use bevy_ecs::prelude::*;

use super::systems::*;
use crate::chain::schedule::Phase;
use crate::timed;

/// Adds the clock.
pub fn clock(schedule: &mut Schedule) {
    schedule.add_systems(timed!(advance_clock).in_set(Phase::Begin));
}

/// Adds the beacon systems and the epoch boundary.
pub fn plugin(schedule: &mut Schedule) {
    schedule.add_systems(
        (
            timed!(apply_dkg_messages),
            timed!(finish_dkg),
            timed!(apply_seed_messages),
            timed!(apply_beacon_partials),
            timed!(finish_beacon),
        )
            .chain()
            .in_set(Phase::Beacon),
    );
    schedule.add_systems(timed!(rotate_epoch).in_set(Phase::Epoch));
}
