//! Proof validation on the chain: each voting host's report of verdicts on
//! the epoch's batches, and the weighted tally that accepts or rejects them.

pub mod components;
pub mod plugin;
pub mod systems;

pub use components::*;
