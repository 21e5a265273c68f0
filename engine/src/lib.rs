//! The protocol of the Gonka host: types (rkyv), crypto (blst BLS, beacon,
//! selection), the chain state machine as bevy_ecs systems, the host's local
//! work (mining, serving, validating), the node runtime.
//!
//! Start with [`crypto`] (host keys, domain-separated BLS signatures) and
//! [`proofs`] (the Sprint proof batch a host submits: its rkyv format, its
//! commitment, the validator's auditable sample and offline verification).
//!
//! ```text
//!   gonka-kernels ──► miner ──► ProofBatch ──sign──► file / wire
//!                                                 │
//!   validator: decode ─► check_batch ─► sample(sig over commitment) ─► recompute ─► binomial verdict
//! ```

// A bevy system takes one parameter per resource and query it touches; splitting
// them to please the lint would hide what a system reads and writes.
#![allow(clippy::too_many_arguments)]

pub mod agent;
pub mod blocks;
pub mod chain;
pub mod consensus;
pub mod crypto;
pub mod hosts;
pub mod params;
pub mod proofs;
pub mod sim;
pub mod sprints;
pub mod validations;
