//! The chain store: everything a host must find again after a restart, in
//! LMDB tables of rkyv archives ([`tables`] lists them all).
//!
//! ```text
//!  Chain::apply(final block) ─► ApplyReport ─► ChainStore::commit ─┐ one LMDB transaction:
//!     block, hash → height, finality + root, transaction locations, │ all of it is on disk
//!     new hosts, proof batches, validations, changed and ended      │ or none of it is
//!     tasks, the Sprint, at an epoch's close its record and pruning,│
//!     the snapshot every K blocks, the latest state  ◄──────────────┘
//!
//!  restart: ChainStore::load ─► latest StateSnapshot ─► Chain::restore (+ batches from
//!           their table) ─► root must equal the one recorded with the last block
//! ```
//!
//! The latest state is rewritten with every block (small: the proof
//! batches, the bulk, are stored once in their own table and left out of
//! it). Blocks, their finality and the epoch records are kept for good;
//! proof batches, validations, ended tasks and snapshots are pruned
//! [`StoreConfig::retention_epochs`] epochs after their epoch.

pub mod audit;
pub mod tables;

use std::path::Path;

use gonka_storage::keys;
use gonka_storage::{ReadTxn, Store, StoreError, StoreOptions, WriteTxn};

use crate::chain::snapshot::{SnapshotError, StateSnapshot};
use crate::chain::types::{Block, FinalBlock, Transaction};
use crate::chain::{ApplyReport, Chain, ChainError, Genesis};
use crate::crypto::cache::SigCache;
use crate::proofs::components::{BatchCommitment, BatchKey, BatchStatus, BatchTally};
use crate::validations::ValidationReport;
use tables::*;

/// Why the chain store failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainStoreError {
    /// The database failed (its message names the table and key where one is involved).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored state does not restore.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The genesis is unusable.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store belongs to another chain.
    #[error("the store at {path} holds chain {found}, not {expected}")]
    OtherChain {
        /// The store.
        path: String,
        /// Its genesis digest, hex.
        found: String,
        /// The expected one, hex.
        expected: String,
    },
    /// Tables disagree with each other.
    #[error("the store at {path} is inconsistent: {why}")]
    Inconsistent {
        /// The store.
        path: String,
        /// What disagrees.
        why: String,
    },
    /// The caller passed a block that does not follow the stored tip.
    #[error("cannot store block {height}: {why}")]
    OutOfOrder {
        /// The block's height.
        height: u64,
        /// What was expected.
        why: String,
    },
}

/// How the store keeps history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// A state snapshot after every this many blocks (besides the latest state).
    pub snapshot_every_blocks: u64,
    /// Epochs of proof batches, validations, ended tasks and snapshots kept
    /// after the current one. At least 2: the state refers to the batches
    /// of its own epoch and the one before.
    pub retention_epochs: u64,
    /// Largest the database may grow to.
    pub max_map_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { snapshot_every_blocks: 1000, retention_epochs: 8, max_map_bytes: 1 << 40 }
    }
}

/// The chain store of one host.
#[derive(Debug)]
pub struct ChainStore {
    store: Store,
    config: StoreConfig,
}

impl ChainStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path, config: StoreConfig) -> Result<Self, ChainStoreError> {
        let config = StoreConfig { retention_epochs: config.retention_epochs.max(2), ..config };
        let options = StoreOptions {
            max_map_bytes: config.max_map_bytes,
            ..StoreOptions::new(SCHEMA, FORMAT_VERSION, TABLES)
        };
        Ok(Self { store: Store::open(path, options)?, config })
    }

    /// Opens the store at `path` for reading only (another process may be writing it).
    pub fn open_read_only(path: &Path) -> Result<Self, ChainStoreError> {
        let options = StoreOptions::new(SCHEMA, FORMAT_VERSION, TABLES).read_only();
        Ok(Self { store: Store::open(path, options)?, config: StoreConfig::default() })
    }

    /// The underlying tables, for zero-copy reads through [`tables`].
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A read transaction over the last commit.
    pub fn read(&self) -> Result<ReadTxn<'_>, ChainStoreError> {
        Ok(self.store.read()?)
    }

    fn path(&self) -> String {
        self.store.path().display().to_string()
    }

    /// The chain at the latest stored state; a fresh store is initialised
    /// from `genesis` first. A store of another chain is refused.
    pub fn load_or_init(&self, genesis: &Genesis, cache: SigCache) -> Result<Chain, ChainStoreError> {
        let digest = genesis.digest();
        let stored = {
            let txn = self.read()?;
            GENESIS.get_owned(&txn, SINGLE)?.map(|g| g.digest())
        };
        match stored {
            Some(found) if found != digest => Err(ChainStoreError::OtherChain {
                path: self.path(),
                found: hex::encode(found),
                expected: hex::encode(digest),
            }),
            Some(_) => self.load(cache)?.ok_or_else(|| self.inconsistent("a genesis but no state".into())),
            None => {
                let mut chain = Chain::from_genesis(genesis, cache)?;
                let state = chain.snapshot(false);
                self.store.write(|txn| {
                    GENESIS.put(txn, SINGLE, genesis)?;
                    for (id, host) in genesis.hosts.iter().enumerate() {
                        HOSTS.put(txn, &host.public_key, &(id as u32))?;
                    }
                    STATE.put(txn, SINGLE, &state)
                })?;
                Ok(chain)
            }
        }
    }

    /// The chain at the latest stored state, `None` for an empty store. The
    /// restored root must equal the root recorded with the last block.
    pub fn load(&self, cache: SigCache) -> Result<Option<Chain>, ChainStoreError> {
        let txn = self.read()?;
        let Some(state) = STATE.get_owned(&txn, SINGLE)? else { return Ok(None) };
        let last = BLOCKS.last(&txn)?.map(|(k, _)| keys::read_u64(k)).unwrap_or(None);
        if last != state.tip_height {
            let why = format!("the last block is {last:?} but the state is at {:?}", state.tip_height);
            return Err(self.inconsistent(why));
        }
        if let Some(height) = last {
            let recorded = FINALITY
                .get(&txn, &keys::u64(height))?
                .ok_or_else(|| self.inconsistent(format!("no finality record for block {height}")))?;
            if recorded.state_root != state.root {
                let why = format!(
                    "block {height} recorded state root {}, the stored state has {}",
                    hex::encode(recorded.state_root),
                    hex::encode(state.root)
                );
                return Err(self.inconsistent(why));
            }
        }
        Ok(Some(self.restore(&txn, &state, cache)?))
    }

    /// The state stored by the snapshot at `height` (one of every K blocks).
    pub fn load_snapshot(&self, height: u64, cache: SigCache) -> Result<Option<Chain>, ChainStoreError> {
        let txn = self.read()?;
        let Some(state) = SNAPSHOTS.get_owned(&txn, &keys::u64(height))? else { return Ok(None) };
        Ok(Some(self.restore(&txn, &state, cache)?))
    }

    fn restore(
        &self,
        txn: &ReadTxn<'_>,
        state: &StateSnapshot,
        cache: SigCache,
    ) -> Result<Chain, ChainStoreError> {
        let mut failure = None;
        let chain = Chain::restore(state, cache, |key| {
            match PROOF_BATCHES.get_owned(txn, &keys::u64_u32(key.epoch, key.host)) {
                Ok(batch) => batch,
                Err(e) => {
                    failure.get_or_insert(e);
                    None
                }
            }
        });
        if let Some(e) = failure {
            return Err(e.into());
        }
        Ok(chain?)
    }

    pub(crate) fn inconsistent(&self, why: String) -> ChainStoreError {
        ChainStoreError::Inconsistent { path: self.path(), why }
    }

    /// Height of the last stored block.
    pub fn tip_height(&self) -> Result<Option<u64>, ChainStoreError> {
        let txn = self.read()?;
        Ok(BLOCKS.last(&txn)?.and_then(|(k, _)| keys::read_u64(k)))
    }

    /// The stored final block at `height`.
    pub fn final_block(&self, height: u64) -> Result<Option<FinalBlock>, ChainStoreError> {
        let txn = self.read()?;
        let key = keys::u64(height);
        let (Some(block), Some(f)) = (BLOCKS.get_owned(&txn, &key)?, FINALITY.get_owned(&txn, &key)?) else {
            return Ok(None);
        };
        Ok(Some(FinalBlock { block, round: f.round, finality: f.finality }))
    }

    /// Stores a block `chain` has just applied (`report` is what applying
    /// it returned) with everything it changed, in one transaction. A
    /// failure leaves the store at the previous block and unusable
    /// (poisoned); the node must stop and reopen it.
    pub fn commit(
        &self,
        chain: &mut Chain,
        fb: &FinalBlock,
        report: &ApplyReport,
    ) -> Result<(), ChainStoreError> {
        let block = &fb.block;
        let height = block.header.height;
        if report.height != height
            || chain.next_height() != height + 1
            || chain.state_root() != report.state_root
        {
            let why = "the chain must have just applied this block".to_string();
            return Err(ChainStoreError::OutOfOrder { height, why });
        }
        let state = chain.snapshot(false);
        let epoch = chain.clock().epoch;
        let params = chain.params().clone();
        let epoch_close = (height + 1).is_multiple_of(params.epoch_blocks);
        let epoch_record = epoch_close.then(|| epoch_record(chain, epoch, height));
        let sprint = chain.sprint();
        let senders: Vec<Option<u32>> =
            block.transactions.iter().map(|tx| chain.registry().id_of(&tx.sender)).collect();
        let snapshot_due = (height + 1).is_multiple_of(self.config.snapshot_every_blocks.max(1));
        let retention = self.config.retention_epochs;
        self.store.write(|txn| {
            let key = keys::u64(height);
            let expected = BLOCKS.last(txn)?.and_then(|(k, _)| keys::read_u64(k)).map_or(0, |h| h + 1);
            if expected != height {
                return Err(StoreError::aborted(format!(
                    "block {height} stored after block {}",
                    expected.wrapping_sub(1)
                )));
            }
            BLOCKS.put(txn, &key, block)?;
            BLOCK_HASHES.put(txn, &block.header.hash(), &height)?;
            let finality = FinalityRecord {
                round: fb.round,
                finality: fb.finality.clone(),
                state_root: report.state_root,
            };
            FINALITY.put(txn, &key, &finality)?;
            put_transactions(txn, block, report, &senders, epoch)?;
            for task in &report.changed_tasks {
                TASKS.put(txn, &task.id, &TaskRecord { task: task.clone(), end: None })?;
            }
            for (task, end) in &report.closed_tasks {
                TASKS.put(txn, &task.id, &TaskRecord { task: task.clone(), end: Some((height, *end)) })?;
                CLOSED_TASKS.put(txn, &keys::u64_bytes(height, &task.id), end)?;
            }
            if sprint.seed.is_some() {
                SPRINTS.put(txn, &keys::u64(sprint.epoch), &sprint)?;
            }
            if let Some(record) = &epoch_record {
                EPOCHS.put(txn, &keys::u64(epoch), record)?;
                prune(txn, epoch, retention, params.epoch_blocks)?;
            }
            if snapshot_due {
                SNAPSHOTS.put(txn, &key, &state)?;
            }
            STATE.put(txn, SINGLE, &state)
        })?;
        Ok(())
    }
}

/// Transaction locations, new hosts, proof batches and validation reports of one block.
fn put_transactions(
    txn: &mut WriteTxn<'_>,
    block: &Block,
    report: &ApplyReport,
    senders: &[Option<u32>],
    epoch: u64,
) -> Result<(), StoreError> {
    for (i, tx) in block.transactions.iter().enumerate() {
        let ok = report.receipts.get(i).is_some_and(Result::is_ok);
        TRANSACTIONS.put(txn, &tx.id(), &TxLocation { height: block.header.height, index: i as u32, ok })?;
        let (true, Some(sender)) = (ok, senders[i]) else { continue };
        match &tx.body {
            Transaction::RegisterHost { .. } => HOSTS.put(txn, &tx.sender, &sender)?,
            Transaction::ProofBatch(batch) => PROOF_BATCHES.put(txn, &keys::u64_u32(epoch, sender), batch)?,
            Transaction::ProofValidation { epoch, verdicts } => {
                let report = ValidationReport {
                    epoch: *epoch,
                    validator: sender,
                    verdicts: verdicts.clone(),
                    height: block.header.height,
                };
                VALIDATIONS.put(txn, &keys::u64_u32(*epoch, sender), &report)?
            }
            _ => {}
        }
    }
    Ok(())
}

/// At the close of `epoch`: drops what fell out of the retention window.
/// Snapshots go one epoch later than batches, since a snapshot refers to
/// the batches of its epoch and the one before.
fn prune(txn: &mut WriteTxn<'_>, epoch: u64, retention: u64, epoch_blocks: u64) -> Result<(), StoreError> {
    let Some(cutoff) = (epoch + 1).checked_sub(retention) else { return Ok(()) };
    let below = keys::u64_u32(cutoff, 0);
    PROOF_BATCHES.delete_range(txn, ..below)?;
    VALIDATIONS.delete_range(txn, ..below)?;
    let cutoff_height = cutoff * epoch_blocks;
    let ended: Vec<Vec<u8>> = CLOSED_TASKS
        .range(txn, ..keys::u64(cutoff_height))?
        .map(|e| e.map(|(k, _)| k.to_vec()))
        .collect::<Result<_, _>>()?;
    for key in &ended {
        if let Some((_, id)) = keys::read_u64_bytes(key) {
            TASKS.delete(txn, id)?;
        }
    }
    CLOSED_TASKS.delete_range(txn, ..keys::u64(cutoff_height))?;
    SNAPSHOTS.delete_range(txn, ..keys::u64(cutoff_height + epoch_blocks))?;
    Ok(())
}

/// The record of `epoch`, read from the state right after its last block.
fn epoch_record(chain: &mut Chain, epoch: u64, height: u64) -> EpochRecord {
    let world = chain.world_mut_for_queries();
    let mut q = world.query::<(&BatchKey, &BatchCommitment, &BatchStatus, &BatchTally)>();
    let mut batches: Vec<BatchOutcome> = q
        .iter(world)
        .filter(|(k, ..)| k.epoch == epoch)
        .map(|(k, &commitment, &status, &tally)| BatchOutcome { host: k.host, commitment, status, tally })
        .collect();
    batches.sort_unstable_by_key(|b| b.host);
    let mut q = world.query::<(&crate::hosts::HostId, &crate::hosts::HostPublicKey, &crate::hosts::Weight)>();
    let mut weights: Vec<(u32, crate::crypto::PublicKeyBytes, u64)> =
        q.iter(world).map(|(i, k, w)| (i.0, k.0, w.0)).collect();
    weights.sort_unstable_by_key(|w| w.0);
    let mut q = world.query::<(&crate::hosts::HostId, &crate::rewards::Payout)>();
    let mut payouts: Vec<(u32, crate::rewards::Payout)> =
        q.iter(world).filter(|(_, p)| p.epoch == epoch).map(|(i, p)| (i.0, *p)).collect();
    payouts.sort_unstable_by_key(|p| p.0);
    let mut q = world.query::<(&crate::hosts::HostId, &crate::hosts::Penalized)>();
    let mut penalized: Vec<u32> = q.iter(world).filter(|(_, p)| p.epoch == epoch).map(|(i, _)| i.0).collect();
    penalized.sort_unstable();
    EpochRecord { epoch, close_height: height, batches, weights, payouts, penalized }
}
