//! One simulated host: its replica, consensus state, agent and mempool.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use gonka_kernels::encoding::Hash32;

use crate::agent::Agent;
use crate::chain::Chain;
use crate::chain::types::{Block, SignedTransaction};
use crate::consensus::Consensus;

/// Most transactions a host keeps waiting (a simulated peer cannot grow it further).
pub const MAX_MEMPOOL: usize = 1 << 16;

/// What part a host plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Follows the protocol.
    Honest,
    /// Claims proofs it never computed.
    FabricatedProofs,
    /// Commits to more proofs than it submits.
    InflatedCount,
    /// Repeats nonces in its batch.
    DuplicateNonces,
    /// Accepts every batch unchecked.
    LazyValidator,
    /// Accepts its coalition's batches, rejects the rest.
    ColludingValidator,
    /// Proposes two blocks per round and signs conflicting votes.
    EquivocatingProposer,
    /// Returns inference outputs it never computed.
    WrongOutputs,
    /// Serves a smaller model than the one requested.
    SmallerModel,
    /// Returns wrong outputs, counting on the colluding validators to pass them.
    ColludingExecutor,
    /// Sends no validation report and checks no task.
    SkipsValidation,
    /// Never online.
    Offline,
}

impl Role {
    /// Every adversarial role, in the order the simulator hands them out.
    pub const ADVERSARIES: [Role; 11] = [
        Role::FabricatedProofs,
        Role::WrongOutputs,
        Role::LazyValidator,
        Role::ColludingValidator,
        Role::ColludingExecutor,
        Role::SmallerModel,
        Role::SkipsValidation,
        Role::InflatedCount,
        Role::DuplicateNonces,
        Role::EquivocatingProposer,
        Role::Offline,
    ];

    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Role::Honest => "honest",
            Role::FabricatedProofs => "fabricated proofs",
            Role::InflatedCount => "inflated count",
            Role::DuplicateNonces => "duplicate nonces",
            Role::LazyValidator => "lazy validator",
            Role::ColludingValidator => "colluding validator",
            Role::EquivocatingProposer => "equivocating proposer",
            Role::WrongOutputs => "wrong outputs",
            Role::SmallerModel => "smaller model",
            Role::ColludingExecutor => "colluding executor",
            Role::SkipsValidation => "skips validation",
            Role::Offline => "offline",
        }
    }

    /// Whether its Sprint batch is a fraud validators must reject (or the chain refuse).
    pub fn submits_bad_batch(self) -> bool {
        matches!(self, Role::FabricatedProofs | Role::InflatedCount | Role::DuplicateNonces)
    }
}

/// A bounded, de-duplicating pool of transactions in arrival order.
#[derive(Debug, Default)]
pub struct Mempool {
    order: VecDeque<Hash32>,
    txs: BTreeMap<Hash32, Arc<SignedTransaction>>,
    /// Ids already in a block; they are not taken again.
    included: BTreeSet<Hash32>,
}

impl Mempool {
    /// Adds a transaction (`id` is [`SignedTransaction::id`]) unless it is
    /// known or the pool is full.
    pub fn add(&mut self, id: Hash32, tx: Arc<SignedTransaction>) {
        if self.txs.len() >= MAX_MEMPOOL || self.included.contains(&id) || self.txs.contains_key(&id) {
            return;
        }
        self.order.push_back(id);
        self.txs.insert(id, tx);
    }

    /// Up to `max` transactions, oldest first.
    pub fn take(&self, max: usize) -> Vec<SignedTransaction> {
        self.order.iter().filter_map(|id| self.txs.get(id)).take(max).map(|t| (**t).clone()).collect()
    }

    /// Forgets the transactions of an applied block (`ids` of its transactions).
    pub fn remove_included(&mut self, ids: &[Hash32]) {
        for &id in ids {
            self.txs.remove(&id);
            self.included.insert(id);
        }
        let txs = &self.txs;
        self.order.retain(|id| txs.contains_key(id));
    }

    /// Transactions waiting.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether `id` is waiting or was already included.
    pub fn knows(&self, id: &Hash32) -> bool {
        self.txs.contains_key(id) || self.included.contains(id)
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }
}

/// One host of the simulation.
#[derive(Debug)]
pub struct SimHost {
    /// Its index in the simulation.
    pub index: usize,
    /// Its part.
    pub role: Role,
    /// Its replica of the chain.
    pub chain: Chain,
    /// Its consensus state.
    pub consensus: Consensus,
    /// Its local work.
    pub agent: Agent,
    /// Transactions waiting for a block.
    pub mempool: Mempool,
    /// Set when the replica diverged: the host stops.
    pub halted: Option<String>,
}

impl SimHost {
    /// Builds this host's block for `(height, round)` from its mempool.
    pub fn build_block(&self, round: u32, proposer: u32) -> Block {
        let max = self.chain.params().max_block_transactions as usize;
        self.chain.build_block(round, proposer, self.mempool.take(max))
    }

    /// Whether this host takes part at all.
    pub fn online(&self) -> bool {
        self.role != Role::Offline && self.halted.is_none()
    }
}
