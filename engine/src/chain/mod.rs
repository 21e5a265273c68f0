//! The replicated chain state and the block that moves it: a bevy_ecs
//! [`World`] per replica, changed only by [`Chain::apply`] running the
//! [`schedule`] on a final block.
//!
//! Start with [`Chain`]; the phases are in [`schedule`]; the protocol types
//! in [`types`]; every number in [`crate::params`]. The domains each own a
//! folder shaped alike (`components.rs`, `systems.rs`, `plugin.rs`):
//! [`crate::hosts`], [`crate::sprints`], [`crate::proofs`],
//! [`crate::validations`], [`crate::blocks`].
//!
//! ```text
//!  FinalBlock ─► checks: height, parent, state root (= ours, else halt),
//!                transactions root, finality (> 2/3 of the epoch's weight)
//!            ─► signatures of every transaction ─► BlockInput
//!            ─► schedule: Begin → Register → Evidence → Beacon → Proofs → Validation → Epoch → Record
//!            ─► state root of the new state
//! ```
//!
//! Rules of this world: integers only, no clock, no randomness but the
//! beacon, every order a protocol order. A failed transaction changes
//! nothing and leaves a receipt with its reason.

pub mod genesis;
pub mod input;
pub mod root;
pub mod schedule;
pub mod snapshot;
pub mod timing;
pub mod types;

use std::sync::Arc;

use bevy_ecs::prelude::*;
use gonka_kernels::encoding::Hash32;

pub use genesis::{Genesis, GenesisHost};
pub use input::{BlockInput, TxError};
use types::{Block, BlockHeader, FinalBlock, SignedTransaction, signing_message, transactions_root};

use crate::blocks::{ChainTip, EvidenceSeen};
use crate::crypto::Domain;
use crate::crypto::cache::SigCache;
use crate::hosts::{HostId, HostPublicKey, HostRegistry, RegisteredAt, ValidationDuty, VotingHosts, Weight};
use crate::params::ChainParams;
use crate::proofs::components::{BatchIndex, BatchKey};
use crate::sprints::{BeaconState, EpochClock, Sprint, open_epoch};
use crate::validations::ReportIndex;

/// Why a block cannot be applied, or a proposal is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The genesis is unusable.
    #[error("invalid genesis: {0}")]
    Genesis(String),
    /// Not the next height.
    #[error("block at height {found}, expected {expected}")]
    WrongHeight {
        /// Its height.
        found: u64,
        /// The next height.
        expected: u64,
    },
    /// Built on another parent.
    #[error("block at height {height} names parent {found}, the tip is {expected}")]
    WrongParent {
        /// Its height.
        height: u64,
        /// Its parent, hex.
        found: String,
        /// The tip, hex.
        expected: String,
    },
    /// The header's state root is not ours. For a proposal this is a bad
    /// proposal; for a final block it means this replica diverged: halt.
    #[error("state root mismatch at height {height}: block says {found}, this replica has {ours}")]
    StateRootMismatch {
        /// Its height.
        height: u64,
        /// The header's root, hex.
        found: String,
        /// Ours, hex.
        ours: String,
    },
    /// The header does not commit to the body.
    #[error("transactions root mismatch at height {height}")]
    TransactionsRoot {
        /// Its height.
        height: u64,
    },
    /// Too many transactions.
    #[error("block at height {height} has {found} transactions, at most {max} are allowed")]
    TooManyTransactions {
        /// Its height.
        height: u64,
        /// Its count.
        found: usize,
        /// The limit.
        max: u32,
    },
    /// Larger than the parameters allow.
    #[error("block at height {height} has {bytes} bytes, at most {max} are allowed")]
    TooLarge {
        /// Its height.
        height: u64,
        /// Its encoded size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The proposer is not the one drawn for the round.
    #[error("block at height {height} round {round} names proposer {found}, the draw gives {expected}")]
    WrongProposer {
        /// Its height.
        height: u64,
        /// Its round.
        round: u32,
        /// The header's proposer.
        found: u32,
        /// The drawn proposer.
        expected: u32,
    },
    /// The finality votes do not carry it.
    #[error("finality of height {height}: {source}")]
    Finality {
        /// Its height.
        height: u64,
        /// The vote-set error.
        #[source]
        source: crate::consensus::ConsensusError,
    },
}

/// The replica's memo of verified signatures, for the systems that check them.
#[derive(Resource, Debug, Clone)]
pub struct Verifier(pub SigCache);

/// What applying a block did.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    /// Its height.
    pub height: u64,
    /// The state root after it.
    pub state_root: Hash32,
    /// One receipt per transaction.
    pub receipts: Vec<Result<(), TxError>>,
    /// Open tasks this block created or changed, as they are now.
    pub changed_tasks: Vec<crate::tasks::Task>,
    /// Tasks that left the state in this block, as they were last, and how they ended.
    pub closed_tasks: Vec<(crate::tasks::Task, crate::tasks::TaskEnd)>,
}

/// One replica of the chain state.
pub struct Chain {
    world: World,
    schedule: Schedule,
    genesis: Hash32,
    root: Hash32,
    cache: SigCache,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("genesis", &hex::encode(self.genesis))
            .field("next_height", &self.next_height())
            .field("state_root", &hex::encode(self.root))
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// The state at genesis. `cache` remembers verified signatures (a
    /// simulator shares one among its replicas).
    pub fn from_genesis(genesis: &Genesis, cache: SigCache) -> Result<Self, ChainError> {
        genesis.validate(&cache)?;
        let params = genesis.params.clone();
        let digest = genesis.digest();
        let mut world = World::new();
        let mut registry = HostRegistry::default();
        let mut members = Vec::new();
        let all_models = u64::MAX >> (64 - params.economy.models.len());
        for h in &genesis.hosts {
            let entity = world.spawn_empty().id();
            let id = registry.insert(h.public_key, entity);
            world.entity_mut(entity).insert((
                HostId(id),
                HostPublicKey(h.public_key),
                Weight(h.weight),
                RegisteredAt(0),
                ValidationDuty::default(),
                crate::rewards::EpochWork::default(),
                crate::rewards::Earnings::default(),
                crate::tasks::Serves { current: h.models & all_models, next: h.models & all_models },
            ));
            if h.weight > 0 {
                members.push((id, h.public_key, h.weight));
            }
        }
        let voting = VotingHosts::new(0, members, &cache).map_err(|e| ChainError::Genesis(e.to_string()))?;
        let (beacon, sprint) = open_epoch(0, &params, &voting, genesis.seed);
        world.insert_resource(registry);
        world.insert_resource(voting);
        world.insert_resource(beacon);
        world.insert_resource(sprint);
        world.insert_resource(EpochClock::default());
        world.insert_resource(ChainTip { height: None, hash: digest, records: Default::default() });
        world.insert_resource(EvidenceSeen::default());
        world.insert_resource(BatchIndex::default());
        world.insert_resource(ReportIndex::default());
        world.insert_resource(BlockInput::default());
        let mut ledger = crate::rewards::Ledger {
            reserve: genesis.reserve,
            next_subsidy: params.economy.epoch_subsidy,
            ..Default::default()
        };
        for a in &genesis.accounts {
            ledger.credit(&a.key, a.balance);
        }
        ledger.genesis_supply = ledger.supply();
        world.insert_resource(ledger);
        world.insert_resource(crate::rewards::Volume {
            per_model: vec![0; params.economy.models.len()],
            ..Default::default()
        });
        world.insert_resource(crate::tasks::TaskIndex::default());
        world.insert_resource(crate::tasks::DummyAccounts::default());
        world.insert_resource(crate::tasks::DummyPlan::default());
        world.insert_resource(params);
        world.insert_resource(Verifier(cache.clone()));
        let root = root::state_root(&mut world, &digest);
        Ok(Self { world, schedule: schedule::build(), genesis: digest, root, cache })
    }

    /// The genesis digest: the chain's identity.
    pub fn genesis_digest(&self) -> Hash32 {
        self.genesis
    }

    /// Root of the current state.
    pub fn state_root(&self) -> Hash32 {
        self.root
    }

    /// The height the next block must have.
    pub fn next_height(&self) -> u64 {
        self.tip().height.map_or(0, |h| h + 1)
    }

    /// The tip.
    pub fn tip(&self) -> &ChainTip {
        self.world.resource::<ChainTip>()
    }

    /// The parameters.
    pub fn params(&self) -> &ChainParams {
        self.world.resource::<ChainParams>()
    }

    /// The hosts that vote on the next block.
    pub fn voting(&self) -> &VotingHosts {
        self.world.resource::<VotingHosts>()
    }

    /// The seed of proposer draws for the next block: the latest beacon.
    pub fn proposer_seed(&self) -> Hash32 {
        self.beacon().previous
    }

    /// The epoch's beacon state.
    pub fn beacon(&self) -> &BeaconState {
        self.world.resource::<BeaconState>()
    }

    /// Where the last applied block sat in time.
    pub fn clock(&self) -> crate::sprints::EpochClock {
        *self.world.resource::<crate::sprints::EpochClock>()
    }

    /// The epoch's Sprint.
    pub fn sprint(&self) -> Sprint {
        *self.world.resource::<Sprint>()
    }

    /// Every registered host.
    pub fn registry(&self) -> &HostRegistry {
        self.world.resource::<HostRegistry>()
    }

    /// Wall time spent in each chain system so far, in schedule order.
    pub fn system_times(&self) -> Vec<(String, std::time::Duration)> {
        self.world
            .get_resource::<timing::SystemTimes>()
            .map(|t| t.0.iter().map(|(n, d)| (n.to_string(), *d)).collect())
            .unwrap_or_default()
    }

    /// The accounts and pools.
    pub fn ledger(&self) -> &crate::rewards::Ledger {
        self.world.resource::<crate::rewards::Ledger>()
    }

    /// Checks the money invariants: the supply is the genesis supply plus
    /// the subsidy minted, the escrow is the sum of the open tasks' escrow,
    /// the pending earnings are the sum of the hosts' earnings.
    pub fn check_money(&mut self) -> Result<(), String> {
        let ledger = self.world.resource::<crate::rewards::Ledger>().clone();
        ledger.check()?;
        let mut tasks = self.world.query::<&crate::tasks::Task>();
        let escrow: u128 = tasks.iter(&self.world).map(|t| t.escrow).sum();
        if escrow != ledger.escrow {
            return Err(format!("escrow {} ≠ Σ task escrow {escrow}", ledger.escrow));
        }
        let mut earnings = self.world.query::<&crate::rewards::Earnings>();
        let pending: u128 = earnings.iter(&self.world).map(|e| e.0).sum();
        if pending != ledger.pending {
            return Err(format!("pending {} ≠ Σ host earnings {pending}", ledger.pending));
        }
        Ok(())
    }

    /// The contents of the proof batch `key`, while the state holds them.
    pub fn batch(&mut self, key: BatchKey) -> Option<crate::proofs::ProofBatch> {
        let entity = *self.world.resource::<BatchIndex>().0.get(&key)?;
        self.world.get::<crate::proofs::components::BatchContents>(entity).map(|c| (*c.0).clone())
    }

    /// The open task `id`.
    pub fn task(&self, id: &Hash32) -> Option<&crate::tasks::Task> {
        let entity = *self.world.resource::<crate::tasks::TaskIndex>().by_id.get(id)?;
        self.world.get::<crate::tasks::Task>(entity)
    }

    /// The memo of verified signatures this replica shares.
    pub fn sig_cache(&self) -> &SigCache {
        &self.cache
    }

    /// Read access for inspection and the host's local systems.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// Mutable access for queries (read them only: writing bypasses the rules).
    pub fn world_mut_for_queries(&mut self) -> &mut World {
        &mut self.world
    }

    /// The block at the next height on this state, built in `round` by the
    /// voting host at position `proposer`, carrying `transactions`.
    pub fn build_block(&self, round: u32, proposer: u32, transactions: Vec<SignedTransaction>) -> Block {
        let header = BlockHeader {
            chain: self.genesis,
            height: self.next_height(),
            round,
            parent: self.tip().hash,
            state_root: self.root,
            transactions_root: transactions_root(&transactions),
            proposer,
        };
        Block { header, transactions }
    }

    /// Checks a proposed block against this state: height, parent, state
    /// root, transactions root, size and proposer. Transactions are checked
    /// when the block is applied (a failing one only fails itself).
    pub fn check_proposal(&self, block: &Block) -> Result<(), ChainError> {
        self.check_extends(block)?;
        let h = &block.header;
        let max = self.params().max_block_transactions;
        if block.transactions.len() > max as usize {
            return Err(ChainError::TooManyTransactions {
                height: h.height,
                found: block.transactions.len(),
                max,
            });
        }
        let drawn =
            crate::consensus::proposer(&self.proposer_seed(), h.height, h.round, &self.voting().hosts);
        if h.proposer != drawn {
            return Err(ChainError::WrongProposer {
                height: h.height,
                round: h.round,
                found: h.proposer,
                expected: drawn,
            });
        }
        Ok(())
    }

    /// Applies a final block after checking it extends the tip and carries
    /// the precommits of more than 2/3 of the epoch's weight. A state-root
    /// mismatch here means this replica computed a different state than the
    /// hosts that finalized the block: the caller must halt.
    pub fn apply(&mut self, fb: &FinalBlock) -> Result<ApplyReport, ChainError> {
        let h = fb.block.header;
        self.check_extends(&fb.block)?;
        crate::consensus::verify_finality(
            &self.voting().hosts,
            h.height,
            fb.round,
            &h.hash(),
            &fb.finality,
            &self.cache,
        )
        .map_err(|source| ChainError::Finality { height: h.height, source })?;
        self.apply_trusted(&fb.block, fb.round)
    }

    /// Applies a block whose finality the caller has already verified (a
    /// replay from this host's own store, a test, a fuzz target). Every other
    /// check still runs.
    pub fn apply_trusted(&mut self, block: &Block, round: u32) -> Result<ApplyReport, ChainError> {
        self.check_extends(block)?;
        let height = block.header.height;
        let input = self.input_of(block, round);
        self.world.insert_resource(input);
        self.schedule.run(&mut self.world);
        let input = std::mem::take(&mut *self.world.resource_mut::<BlockInput>());
        let receipts: Vec<Result<(), TxError>> = input
            .receipts
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.unwrap_or_else(|| panic!("transaction {i} at height {height} reached no system")))
            .collect();
        self.root = root::state_root(&mut self.world, &self.genesis);
        // Change ticks count from the last `clear_trackers`: the tasks
        // touched by this block's systems (or spawned by them).
        let mut changed = self.world.query_filtered::<&crate::tasks::Task, Changed<crate::tasks::Task>>();
        let mut changed_tasks: Vec<crate::tasks::Task> = changed.iter(&self.world).cloned().collect();
        changed_tasks.sort_unstable_by_key(|t| t.id);
        self.world.clear_trackers();
        Ok(ApplyReport {
            height,
            state_root: self.root,
            receipts,
            changed_tasks,
            closed_tasks: input.closed_tasks,
        })
    }

    /// Height, parent, chain, state root and transactions root.
    fn check_extends(&self, block: &Block) -> Result<(), ChainError> {
        let h = &block.header;
        let expected = self.next_height();
        if h.height != expected {
            return Err(ChainError::WrongHeight { found: h.height, expected });
        }
        let tip = self.tip().hash;
        if h.parent != tip {
            let (found, expected) = (hex::encode(h.parent), hex::encode(tip));
            return Err(ChainError::WrongParent { height: h.height, found, expected });
        }
        if h.state_root != self.root || h.chain != self.genesis {
            let (found, ours) = (hex::encode(h.state_root), hex::encode(self.root));
            return Err(ChainError::StateRootMismatch { height: h.height, found, ours });
        }
        if transactions_root(&block.transactions) != h.transactions_root {
            return Err(ChainError::TransactionsRoot { height: h.height });
        }
        Ok(())
    }

    /// The block's transactions with senders resolved and signatures checked.
    fn input_of(&self, block: &Block, round: u32) -> BlockInput {
        let registry = self.registry();
        let mut input = BlockInput {
            height: block.header.height,
            hash: block.header.hash(),
            round,
            proposer: block.header.proposer,
            transactions: Arc::new(block.transactions.clone()),
            senders: Vec::with_capacity(block.transactions.len()),
            receipts: vec![None; block.transactions.len()],
            closed_tasks: Vec::new(),
        };
        for (i, tx) in block.transactions.iter().enumerate() {
            input.senders.push(registry.id_of(&tx.sender));
            let message = signing_message(&tx.sender, &tx.body);
            if self.cache.verify(Domain::Transaction, &tx.sender, &message, &tx.signature).is_err() {
                input.receipts[i] = Some(Err(TxError::BadSignature { sender: hex::encode(tx.sender) }));
            }
        }
        input
    }
}
