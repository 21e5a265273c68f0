//! The protocol of the Gonka host: types (rkyv), crypto (blst BLS, beacon,
//! selection), the chain state machine as bevy_ecs systems, the host's local
//! work (mining, serving, validating), the node runtime.
//!
//! Start with [`chain`] (a replica of the chain state and the block that
//! moves it), [`consensus`] (how a block becomes final) and [`sim`] (the whole
//! network in one process). Two worlds, as in `docs/chain.md`:
//!
//! | module | world | owns |
//! |---|---|---|
//! | [`chain`] | chain | `Chain`: the bevy_ecs `World`, the schedule of phases, protocol types, state root, genesis |
//! | [`hosts`], [`sprints`], [`proofs`], [`validations`], [`tasks`], [`rewards`], [`blocks`] | chain | one ECS domain each: components, systems, plugin |
//! | [`params`] | chain | every number of the chain, with defaults |
//! | [`crypto`] | both | keys, weighted vote sets, DKG, beacon, selection, the signature cache |
//! | [`consensus`] | local | one host's Tendermint-style state machine: proposals, prevotes, precommits, locks |
//! | [`agent`] | local | the host's transactions: seed commit–reveal, DKG, partials, mining, validation |
//! | [`sim`] | local | N hosts, a seeded network and clock, adversaries, the per-epoch table; a producer of certified blocks |
//! | [`store`] | local | the chain store: table registry, one LMDB transaction per block, restart, pruning, audit |
//! | [`node`] | local | the host a person runs: core thread, host messages, runtime on `gonka-net`, API backend; binary `gonka-node` |
//!
//! ```text
//!   consensus ──► final block ──► Chain::apply ──► schedule (Begin → … → Record) ──► state root
//!                                        │
//!   agent ◄── reads the replica ◄────────┘      agent ──► transactions ──► mempool ──► next block
//!   gonka-kernels ──► miner ──► ProofBatch ──► commitment, batch ──► validators' sampled recomputation
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
pub mod inference;
pub mod node;
pub mod params;
pub mod proofs;
pub mod rewards;
pub mod sim;
pub mod sprints;
pub mod store;
pub mod tasks;
pub mod validations;
