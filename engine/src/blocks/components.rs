//! Block records.

use std::collections::BTreeMap;

use bevy_ecs::prelude::*;
use gonka_kernels::encoding::Hash32;
use rkyv::{Archive, Deserialize, Serialize};

/// A final block as the chain remembers it (the last epoch's worth).
#[derive(Archive, Serialize, Deserialize, Component, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRecord {
    /// Height.
    pub height: u64,
    /// Header hash.
    pub hash: Hash32,
    /// Deciding round.
    pub round: u32,
    /// Proposer's voting-list position.
    pub proposer: u32,
    /// Transactions in it.
    pub transactions: u32,
    /// Those that had no effect.
    pub failed: u32,
}

/// The tip and the recent block records by height.
#[derive(Resource, Debug, Default)]
pub struct ChainTip {
    /// Height of the last applied block; `None` at genesis.
    pub height: Option<u64>,
    /// Its hash; the genesis digest at genesis.
    pub hash: Hash32,
    /// Record entities by height.
    pub records: BTreeMap<u64, Entity>,
}

/// Equivocations already punished this epoch, by (height, voter's registry index, round).
#[derive(Resource, Debug, Default)]
pub struct EvidenceSeen(pub BTreeMap<(u64, u32, u32), ()>);
