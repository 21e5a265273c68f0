//! The table registry of the chain store: every table, its key encoding and
//! its value type, in one place. Keys are big-endian so that byte order is
//! numeric order (`gonka_storage::keys`).

use gonka_kernels::encoding::Hash32;
use gonka_storage::{Table, TableDef};
use rkyv::{Archive, Deserialize, Serialize};

use crate::chain::Genesis;
use crate::chain::snapshot::StateSnapshot;
use crate::chain::types::Block;
use crate::crypto::PublicKeyBytes;
use crate::crypto::votes::VoteSet;
use crate::hosts::HostId;
use crate::proofs::ProofBatch;
use crate::proofs::components::{BatchCommitment, BatchStatus, BatchTally};
use crate::rewards::Payout;
use crate::sprints::Sprint;
use crate::tasks::{Task, TaskEnd};
use crate::validations::ValidationReport;

/// Schema name written into every chain store.
pub const SCHEMA: &str = "gonka-chain";
/// Version of the encoding of every table below. Bump it with any change to
/// a stored type (the frozen-format test names each one).
pub const FORMAT_VERSION: u32 = 1;

/// The key of the single entry in [`GENESIS`] and [`STATE`].
pub const SINGLE: &[u8] = b"0";

macro_rules! tables {
    ($($(#[doc = $doc:literal])+ $konst:ident : $name:literal, $key:literal => $ty:ty;)+) => {
        $(
            $(#[doc = $doc])+
            pub const $konst: Table<$ty> = Table::new(&TableDef {
                name: $name,
                doc: concat!($($doc),+),
                key: $key,
                value: stringify!($ty),
            });
        )+
        /// Every table of the chain store, in the order `gonka inspect` lists them.
        pub const TABLES: &[TableDef] = &[$(*$konst.def()),+];
    };
}

tables! {
    /// The genesis the store was created from: its digest is the chain's identity.
    GENESIS: "genesis", "\"0\"" => Genesis;
    /// Final blocks by height.
    BLOCKS: "blocks", "height u64 BE" => Block;
    /// Heights by block header hash.
    BLOCK_HASHES: "block_hashes", "header hash (32 bytes)" => u64;
    /// The finality vote set of each block, its round and the state root after it.
    FINALITY: "finality", "height u64 BE" => FinalityRecord;
    /// Where each transaction landed and whether it took effect.
    TRANSACTIONS: "transactions", "transaction id (32 bytes)" => TxLocation;
    /// Registry index by host public key.
    HOSTS: "hosts", "BLS public key (48 bytes)" => u32;
    /// Submitted proof batches; also the contents the state snapshots leave out.
    PROOF_BATCHES: "proof_batches", "epoch u64 BE ‖ host u32 BE" => ProofBatch;
    /// Validation reports.
    VALIDATIONS: "validations", "epoch u64 BE ‖ validator u32 BE" => ValidationReport;
    /// Every task as last seen, and how it ended once it left the state.
    TASKS: "tasks", "task id (32 bytes)" => TaskRecord;
    /// Ended tasks by the height they ended at (the pruning order).
    CLOSED_TASKS: "closed_tasks", "height u64 BE ‖ task id" => TaskEnd;
    /// Each epoch's Sprint window and seed, once the seed is known.
    SPRINTS: "sprints", "epoch u64 BE" => Sprint;
    /// Each closed epoch: its batches' outcomes, the weights they gave, the payouts.
    EPOCHS: "epochs", "epoch u64 BE" => EpochRecord;
    /// The state after every K-th block.
    SNAPSHOTS: "snapshots", "height u64 BE" => StateSnapshot;
    /// The state after the last stored block.
    STATE: "state", "\"0\"" => StateSnapshot;
}

/// How a block became final, and where it left the state.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FinalityRecord {
    /// The deciding round.
    pub round: u32,
    /// The aggregate precommits of more than two thirds of the weight.
    pub finality: VoteSet,
    /// The state root after the block.
    pub state_root: Hash32,
}

/// Where a transaction is.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    /// The block's height.
    pub height: u64,
    /// Its position in the block.
    pub index: u32,
    /// Whether it took effect (its receipt was a success).
    pub ok: bool,
}

/// A task as the store remembers it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TaskRecord {
    /// The task as last seen in the state.
    pub task: Task,
    /// The height at which it left the state, and how.
    pub end: Option<(u64, TaskEnd)>,
}

/// One proof batch's outcome in a closed epoch.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The host's registry index.
    pub host: u32,
    /// Its commitment.
    pub commitment: BatchCommitment,
    /// How it ended.
    pub status: BatchStatus,
    /// The validators' weight for and against.
    pub tally: BatchTally,
}

/// What an epoch's close recorded.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EpochRecord {
    /// The epoch.
    pub epoch: u64,
    /// Height of its last block.
    pub close_height: u64,
    /// Its Sprint's batches, by host.
    pub batches: Vec<BatchOutcome>,
    /// The weights of the next epoch: `(registry index, key, weight)`.
    pub weights: Vec<(u32, PublicKeyBytes, u64)>,
    /// Each host's payout for this epoch.
    pub payouts: Vec<(u32, Payout)>,
    /// Hosts penalized for equivocation in this epoch (they earn no weight).
    pub penalized: Vec<u32>,
}

impl EpochRecord {
    /// The recorded weight of host `id`.
    pub fn weight_of(&self, id: HostId) -> u64 {
        self.weights.iter().find(|w| w.0 == id.0).map_or(0, |w| w.2)
    }
}
