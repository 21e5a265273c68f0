//! Wall time of each chain system, for the simulator's table and benches.
//!
//! Timing is local measurement, never state: [`SystemTimes`] is a resource
//! outside the state root, and no system reads it.

use std::time::{Duration, Instant};

use bevy_ecs::prelude::*;
use bevy_ecs::system::IntoSystem;

/// Time spent in each system since the replica started, in first-run order.
#[derive(Resource, Debug, Default, Clone)]
pub struct SystemTimes(pub Vec<(&'static str, Duration)>);

impl SystemTimes {
    fn add(&mut self, name: &'static str, t: Duration) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 += t,
            None => self.0.push((name, t)),
        }
    }
}

/// Wraps `system` so that each run adds its wall time to [`SystemTimes`].
pub fn timed<M>(name: &'static str, system: impl IntoSystem<(), (), M>) -> impl FnMut(&mut World) {
    let mut system = IntoSystem::into_system(system);
    let mut initialized = false;
    move |world: &mut World| {
        if !initialized {
            system.initialize(world);
            initialized = true;
        }
        let t = Instant::now();
        if let Err(e) = system.run((), world) {
            panic!("chain system {name} could not run: {e}");
        }
        let elapsed = t.elapsed();
        world.get_resource_or_insert_with(SystemTimes::default).add(name, elapsed);
    }
}

/// `timed!(system)`: [`timed`] under the system's own name.
#[macro_export]
macro_rules! timed {
    ($system:path) => {
        $crate::chain::timing::timed(stringify!($system), $system)
    };
}
