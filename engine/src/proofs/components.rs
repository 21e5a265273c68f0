//! Proof batches on the chain: one entity per (epoch, host).

use std::collections::BTreeMap;
use std::sync::Arc;

use bevy_ecs::prelude::*;
use gonka_kernels::encoding::Hash32;
use rkyv::{Archive, Deserialize, Serialize};

use super::ProofBatch;

/// Which Sprint and host a batch belongs to.
#[derive(Archive, Serialize, Deserialize, Component, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BatchKey {
    /// The epoch of the Sprint.
    pub epoch: u64,
    /// The host's registry index.
    pub host: u32,
}

/// The host's commitment, made during the Sprint.
#[derive(Archive, Serialize, Deserialize, Component, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchCommitment {
    /// [`ProofBatch::commitment`].
    pub commitment: Hash32,
    /// Proofs claimed.
    pub proofs: u64,
    /// Height of the commitment.
    pub height: u64,
}

/// The batch, once submitted and matched against its commitment.
#[derive(Component, Clone, Debug)]
pub struct BatchContents(pub Arc<ProofBatch>);

/// Validators' weight for and against the batch.
#[derive(Archive, Serialize, Deserialize, Component, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchTally {
    /// Weight of validators that accepted it.
    pub accept: u128,
    /// Weight of validators that rejected it.
    pub reject: u128,
    /// Weight that could validate it: all voting weight but its host's.
    pub validating: u128,
}

/// Where a batch stands.
#[derive(Archive, Serialize, Deserialize, Component, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum BatchStatus {
    /// Committed, contents not yet on chain.
    Committed,
    /// Contents on chain, awaiting validation.
    Submitted,
    /// More than half of the validating weight accepted it: its proofs are weight.
    Accepted,
    /// More than half of the validating weight rejected it.
    Rejected,
    /// Neither side passed half: it earns no weight.
    Undecided,
    /// Committed but never submitted: it earns no weight.
    Missing,
}

impl BatchStatus {
    /// A stable code for the state root.
    pub fn code(self) -> u8 {
        match self {
            BatchStatus::Committed => 0,
            BatchStatus::Submitted => 1,
            BatchStatus::Accepted => 2,
            BatchStatus::Rejected => 3,
            BatchStatus::Undecided => 4,
            BatchStatus::Missing => 5,
        }
    }
}

/// Batch entities by key.
#[derive(Resource, Debug, Default)]
pub struct BatchIndex(pub BTreeMap<BatchKey, Entity>);
