//! The protocol's block and transaction types: rkyv on the wire and on disk,
//! decoded only through [`crate::crypto::wire::decode`] (size limit, bytecheck,
//! field bounds), signed in [`Domain::Transaction`].

use gonka_kernels::encoding::{Hash32, tagged_hash};
use rkyv::{Archive, Deserialize, Serialize};

use crate::crypto::beacon::{BeaconPartials, SeedCommit, SeedReveal};
use crate::crypto::dkg::{DkgMessage, MAX_DKG_MESSAGE_BYTES};
use crate::crypto::votes::{MAX_VOTE_SET_BYTES, VoteSet};
use crate::crypto::wire::{WireError, WireMessage, bound};
use crate::crypto::{Domain, HostKey, PublicKeyBytes, SignatureBytes};
use crate::proofs::ProofBatch;

/// Most proofs one batch transaction may carry (a block's size limit binds first).
pub const MAX_BATCH_PROOFS: usize = 1 << 16;
/// Most verdicts in one validation report: one per batch of an epoch, and at
/// most one batch per host.
pub const MAX_VERDICTS: usize = crate::crypto::votes::MAX_HOSTS;
/// Largest encoded transaction: a full proof batch (16 bytes a proof) or a DKG deal, plus framing.
pub const MAX_TRANSACTION_BYTES: usize = {
    let batch = MAX_BATCH_PROOFS * 16 + 1024;
    if batch > MAX_DKG_MESSAGE_BYTES { batch } else { MAX_DKG_MESSAGE_BYTES + 1024 }
};
/// Most transactions in a block's encoding (parameters may lower it).
pub const MAX_BLOCK_TRANSACTIONS: usize = 1 << 16;
/// Largest encoded block accepted from a peer (parameters may lower it).
pub const MAX_BLOCK_BYTES: usize = 64 << 20;

/// A validator's decision on one host's proof batch.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchVerdict {
    /// The host whose batch it is (its registry index).
    pub host: u32,
    /// Whether the recomputed sample passed.
    pub accept: bool,
}

/// What a transaction does. The sender is authenticated by the envelope's signature.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Transaction {
    /// Registers the sender as a host; the proof of possession defeats rogue-key aggregation.
    RegisterHost {
        /// BLS proof of possession of the sender's key.
        proof_of_possession: SignatureBytes,
    },
    /// During the Sprint: the sender's batch commitment and proof count.
    ProofCommitment {
        /// The epoch of the Sprint.
        epoch: u64,
        /// [`ProofBatch::commitment`].
        commitment: Hash32,
        /// Proofs in the batch.
        proofs: u64,
    },
    /// The batch itself, matching the sender's commitment.
    ProofBatch(ProofBatch),
    /// A validator's verdicts on the epoch's batches.
    ProofValidation {
        /// The epoch of the Sprint.
        epoch: u64,
        /// One verdict per batch, hosts strictly ascending.
        verdicts: Vec<BatchVerdict>,
    },
    /// A commitment to a Sprint-seed contribution.
    SeedCommit(SeedCommit),
    /// Its opening.
    SeedReveal(SeedReveal),
    /// Beacon partial signatures of a committee member.
    BeaconPartials(BeaconPartials),
    /// A DKG round message of a committee member.
    Dkg(DkgMessage),
    /// Two conflicting signed votes of one host: the equivocator loses its
    /// weight and the epoch's rewards.
    Equivocation(crate::consensus::Equivocation),
    /// Moves base units from the sender's account to another.
    Transfer {
        /// The receiving account.
        to: PublicKeyBytes,
        /// Base units.
        amount: crate::params::Amount,
        /// The sender's next account nonce.
        nonce: u64,
    },
    /// The models a host serves from the next epoch (bit mask over the model list).
    ServeModels {
        /// Bit `m` set: serves model `m`.
        models: u64,
        /// The sender's next account nonce.
        nonce: u64,
    },
    /// A user's inference request (escrows its maximum cost).
    InferenceRequest(crate::tasks::InferenceRequest),
    /// The executor's result of a task.
    InferenceFinish(crate::tasks::InferenceFinish),
    /// A selected host's check of a finished task.
    TaskCheck(crate::tasks::TaskCheck),
    /// A re-verification vote on a disputed task.
    DisputeVote(crate::tasks::DisputeVote),
    /// The payer's paid report of a finished task: opens a re-verification.
    Report {
        /// The task.
        task: Hash32,
        /// The payer's next account nonce.
        nonce: u64,
    },
}

impl Transaction {
    /// The kind's name in errors and tables.
    pub fn kind(&self) -> &'static str {
        match self {
            Transaction::RegisterHost { .. } => "register host",
            Transaction::ProofCommitment { .. } => "proof commitment",
            Transaction::ProofBatch(_) => "proof batch",
            Transaction::ProofValidation { .. } => "proof validation",
            Transaction::SeedCommit(_) => "seed commit",
            Transaction::SeedReveal(_) => "seed reveal",
            Transaction::BeaconPartials(_) => "beacon partials",
            Transaction::Dkg(_) => "DKG message",
            Transaction::Equivocation(_) => "equivocation",
            Transaction::Transfer { .. } => "transfer",
            Transaction::ServeModels { .. } => "serve models",
            Transaction::InferenceRequest(_) => "inference request",
            Transaction::InferenceFinish(_) => "inference finish",
            Transaction::TaskCheck(_) => "task check",
            Transaction::DisputeVote(_) => "dispute vote",
            Transaction::Report { .. } => "report",
        }
    }
}

/// A transaction, its sender and the sender's signature.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SignedTransaction {
    /// The sender's public key.
    pub sender: PublicKeyBytes,
    /// What it does.
    pub body: Transaction,
    /// BLS signature in [`Domain::Transaction`] over [`signing_message`].
    pub signature: SignatureBytes,
}

/// What a sender signs: the body bound to the sender's key.
pub fn signing_message(sender: &PublicKeyBytes, body: &Transaction) -> Hash32 {
    let bytes = crate::crypto::wire::encode(body);
    tagged_hash("gonka/transaction", &[sender, &bytes])
}

impl SignedTransaction {
    /// Signs `body` with `key`.
    pub fn sign(key: &HostKey, body: Transaction) -> Self {
        let sender = key.public_key();
        let signature = key.sign(Domain::Transaction, &signing_message(&sender, &body));
        Self { sender, body, signature }
    }

    /// The transaction's identity: the hash of its whole encoding.
    pub fn id(&self) -> Hash32 {
        tagged_hash("gonka/transaction-id", &[&crate::crypto::wire::encode(self)])
    }
}

fn check_transaction_bounds(tx: &SignedTransaction) -> Result<(), WireError> {
    let kind = SignedTransaction::KIND;
    match &tx.body {
        Transaction::ProofBatch(b) => bound(kind, "proofs", b.proofs.len(), MAX_BATCH_PROOFS),
        Transaction::ProofValidation { verdicts, .. } => {
            bound(kind, "verdicts", verdicts.len(), MAX_VERDICTS)
        }
        Transaction::BeaconPartials(p) => p.check_bounds(),
        Transaction::Dkg(m) => m.check_bounds(),
        Transaction::Equivocation(e) => e.check_bounds(),
        Transaction::RegisterHost { .. }
        | Transaction::ProofCommitment { .. }
        | Transaction::SeedCommit(_)
        | Transaction::SeedReveal(_)
        | Transaction::Transfer { .. }
        | Transaction::ServeModels { .. }
        | Transaction::InferenceRequest(_)
        | Transaction::InferenceFinish(_)
        | Transaction::TaskCheck(_)
        | Transaction::DisputeVote(_)
        | Transaction::Report { .. } => Ok(()),
    }
}

impl WireMessage for SignedTransaction {
    const KIND: &'static str = "transaction";
    const MAX_BYTES: usize = MAX_TRANSACTION_BYTES;
    fn check_bounds(&self) -> Result<(), WireError> {
        check_transaction_bounds(self)
    }
}

/// A block's header: what votes sign (through its hash).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// The chain: the genesis digest.
    pub chain: Hash32,
    /// Height; genesis state is before height 0.
    pub height: u64,
    /// The consensus round the proposer built it in.
    pub round: u32,
    /// Hash of the block at `height - 1` (the genesis digest at height 0).
    pub parent: Hash32,
    /// Root of the chain state this block applies to: the state after the parent.
    pub state_root: Hash32,
    /// [`transactions_root`] of the body.
    pub transactions_root: Hash32,
    /// The proposer's index among the epoch's voting hosts.
    pub proposer: u32,
}

impl BlockHeader {
    /// The block's identity.
    pub fn hash(&self) -> Hash32 {
        tagged_hash("gonka/block-header", &[&crate::crypto::wire::encode(self)])
    }
}

/// `H("gonka/transactions", id_0 ‖ id_1 ‖ …)` over the body in order.
pub fn transactions_root(transactions: &[SignedTransaction]) -> Hash32 {
    let ids: Vec<Hash32> = transactions.iter().map(SignedTransaction::id).collect();
    let parts: Vec<&[u8]> = ids.iter().map(|id| id.as_slice()).collect();
    tagged_hash("gonka/transactions", &parts)
}

/// A proposed block: header and transactions.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The body.
    pub transactions: Vec<SignedTransaction>,
}

impl WireMessage for Block {
    const KIND: &'static str = "block";
    const MAX_BYTES: usize = MAX_BLOCK_BYTES;
    fn check_bounds(&self) -> Result<(), WireError> {
        bound(Self::KIND, "transactions", self.transactions.len(), MAX_BLOCK_TRANSACTIONS)?;
        self.transactions.iter().try_for_each(check_transaction_bounds)
    }
}

/// A final block: the block, the round it was decided in, and the
/// precommits of more than 2/3 of the epoch's weight.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FinalBlock {
    /// The block.
    pub block: Block,
    /// The deciding round (votes sign it).
    pub round: u32,
    /// The aggregate precommits.
    pub finality: VoteSet,
}

impl WireMessage for FinalBlock {
    const KIND: &'static str = "final block";
    const MAX_BYTES: usize = MAX_BLOCK_BYTES + MAX_VOTE_SET_BYTES;
    fn check_bounds(&self) -> Result<(), WireError> {
        self.block.check_bounds()?;
        self.finality.check_bounds()
    }
}
