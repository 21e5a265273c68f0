//! What the chain schedule reads and writes while it applies one block: the
//! block's transactions with their senders resolved, and one receipt per
//! transaction.

use std::sync::Arc;

use bevy_ecs::prelude::*;

use super::types::{SignedTransaction, Transaction};
use crate::crypto::PublicKeyBytes;

/// Why a transaction had no effect. Recorded in the block's receipts; a
/// failed transaction changes nothing else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The envelope's signature does not verify.
    #[error("bad signature from {sender}")]
    BadSignature {
        /// The claimed sender, hex.
        sender: String,
    },
    /// The sender is not a registered host.
    #[error("sender {sender} is not a registered host")]
    UnknownSender {
        /// The sender, hex.
        sender: String,
    },
    /// Not accepted at this height.
    #[error("{what} at height {height} is outside its window [{from}, {to}]")]
    OutsideWindow {
        /// The transaction kind.
        what: &'static str,
        /// The block height.
        height: u64,
        /// First accepted height.
        from: u64,
        /// Last accepted height.
        to: u64,
    },
    /// Names another epoch.
    #[error("{what} names epoch {found}, the chain is in epoch {expected}")]
    WrongEpoch {
        /// The transaction kind.
        what: &'static str,
        /// Its epoch.
        found: u64,
        /// The current epoch.
        expected: u64,
    },
    /// Already done once.
    #[error("duplicate {what} from host {host}")]
    Duplicate {
        /// The transaction kind.
        what: &'static str,
        /// The sender's registry index.
        host: u32,
    },
    /// The sender may not send this kind now.
    #[error("host {host} may not send {what}: {why}")]
    NotAllowed {
        /// The transaction kind.
        what: &'static str,
        /// The sender's registry index.
        host: u32,
        /// Why.
        why: &'static str,
    },
    /// The content fails a rule.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// The transaction kind.
        what: &'static str,
        /// What was expected and what was found.
        why: String,
    },
}

/// The transactions of the block being applied.
#[derive(Resource, Debug, Default)]
pub struct BlockInput {
    /// Its height.
    pub height: u64,
    /// Its hash.
    pub hash: gonka_kernels::encoding::Hash32,
    /// The round it was decided in.
    pub round: u32,
    /// Its proposer's voting-list position.
    pub proposer: u32,
    /// Its transactions in block order.
    pub transactions: Arc<Vec<SignedTransaction>>,
    /// Each transaction's sender as a registry index, `None` when the sender
    /// is unregistered (only [`Transaction::RegisterHost`] may be).
    pub senders: Vec<Option<u32>>,
    /// One receipt per transaction; `None` until a system has handled it.
    pub receipts: Vec<Option<Result<(), TxError>>>,
    /// Tasks that left the state in this block, as they were last, and how they ended.
    pub closed_tasks: Vec<(crate::tasks::Task, crate::tasks::TaskEnd)>,
}

impl BlockInput {
    /// Transactions not yet handled for which `select` returns `Some`, with
    /// their index and the sender's key.
    pub fn pending<'a, T: 'a>(
        &'a self,
        select: impl Fn(&'a Transaction) -> Option<T> + 'a,
    ) -> impl Iterator<Item = (usize, &'a PublicKeyBytes, T)> + 'a {
        self.transactions.iter().enumerate().filter_map(move |(i, tx)| {
            if self.receipts[i].is_some() {
                return None;
            }
            select(&tx.body).map(|t| (i, &tx.sender, t))
        })
    }

    /// The sender of transaction `i` as a registered host, or the receipt's error.
    pub fn registered_sender(&self, i: usize) -> Result<u32, TxError> {
        self.senders[i]
            .ok_or_else(|| TxError::UnknownSender { sender: hex::encode(self.transactions[i].sender) })
    }

    /// Records transaction `i`'s outcome.
    pub fn record(&mut self, i: usize, outcome: Result<(), TxError>) {
        debug_assert!(self.receipts[i].is_none(), "transaction {i} handled twice");
        self.receipts[i] = Some(outcome);
    }
}
