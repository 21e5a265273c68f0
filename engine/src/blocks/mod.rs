//! Blocks on the chain: the record of recent final blocks, and equivocation
//! evidence against the hosts that signed conflicting votes.

pub mod components;
pub mod plugin;
pub mod systems;

pub use components::*;
