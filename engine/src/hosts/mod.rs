//! Hosts on the chain: registration, keys, the weight each holds this
//! epoch, penalties, and the epoch's voting list.

pub mod components;
pub mod plugin;
pub mod systems;

pub use components::*;
