//! The host a person runs: its protocol logic ([`core::NodeCore`]), the
//! messages hosts exchange ([`messages`]), and the runtime that ties them to
//! the network, a clock, the chain store and the HTTP API.

pub mod addresses;
pub mod api;
pub mod config;
pub mod core;
pub mod inference;
pub mod local;
pub mod messages;
pub mod runtime;
