//! The epoch's clock and its Sprint: the DKG that keys this epoch's beacon,
//! the seed commit–reveal, beacon partials, the Sprint window, and the epoch
//! boundary where weights from accepted proofs take effect.

pub mod components;
pub mod plugin;
pub mod systems;

pub use components::*;
pub use systems::next_weights;
