//! What hosts say to each other: one rkyv enum, one net message kind per
//! variant (each with its size cap and rate), decoded only through
//! [`decode_message`] (size, bytecheck, field bounds, kind = variant).

use gonka_kernels::encoding::Hash32;
use rkyv::{Archive, Deserialize, Serialize};

use super::addresses::{HostAddress, MAX_ADDRESSES};
use crate::chain::types::{Block, FinalBlock, MAX_BLOCK_BYTES, MAX_TRANSACTION_BYTES, SignedTransaction};
use crate::consensus::{Message, Proposal, Vote};
use crate::crypto::wire::{WireError, WireMessage, bound, decode, encode};
use crate::inference::payload::{InferencePayload, MAX_OUTPUT_TOKENS, MAX_PROMPT_TOKENS};
use gonka_kernels::llm::artifact::Artifact;

/// Most final blocks in one [`NodeMessage::Blocks`] reply.
pub const MAX_SYNC_BLOCKS: u32 = 32;
/// Largest encoded sync reply: the blocks' size bound binds first in practice.
pub const MAX_SYNC_BYTES: usize = 64 << 20;

/// Largest completion relayed between hosts: a full prompt and output in
/// tokens, the records of every output token, and headroom.
pub const MAX_TASK_OUTPUT_BYTES: usize =
    (MAX_PROMPT_TOKENS + MAX_OUTPUT_TOKENS) * 4 + MAX_OUTPUT_TOKENS * Artifact::RECORD_BYTES + 512;

/// A message between hosts.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum NodeMessage {
    /// A transaction for the mempools (gossip). Boxed, like the proposal:
    /// an archived enum is as large as its largest inline variant, and the
    /// small messages should stay small.
    Tx(Box<SignedTransaction>),
    /// A proposal and its block.
    Proposal(Box<(Proposal, Block)>),
    /// A prevote or a precommit.
    Vote(Vote),
    /// The sender's next height: peers behind it ask for blocks.
    Status {
        /// The height the sender needs next.
        next_height: u64,
    },
    /// A request for final blocks from `from`, at most `count` (≤ [`MAX_SYNC_BLOCKS`]).
    GetBlocks {
        /// First height wanted.
        from: u64,
        /// How many.
        count: u32,
    },
    /// Final blocks in height order, answering [`NodeMessage::GetBlocks`].
    Blocks(Vec<FinalBlock>),
    /// To a task's executor, from the host its user asked: the completion, please.
    GetTaskOutput {
        /// The task.
        task: Hash32,
    },
    /// The executor's completion of a task, with the request it answers.
    TaskOutput {
        /// The task.
        task: Hash32,
        /// The request (its hash is the task's prompt commitment).
        payload: InferencePayload,
        /// Output tokens (their hash is the output commitment).
        output: Vec<u32>,
        /// The executor's records, encoded (their hash is the artifact commitment).
        artifact: Vec<u8>,
    },
    /// A task's request, from the host its user asked to the task's
    /// intermediary, and from the intermediary to the executor.
    Prompt {
        /// The task.
        task: Hash32,
        /// The request (its hash is the task's prompt commitment).
        payload: InferencePayload,
    },
    /// Hosts' signed peer addresses (gossip; at most [`MAX_ADDRESSES`]).
    Addresses(Vec<HostAddress>),
    /// Output tokens of a task while it runs, for the asking host to stream:
    /// from the executor to the intermediary, and on to the asking host.
    /// Provisional: the asking host answers only what the output commitment
    /// on chain confirms.
    Partial {
        /// The task.
        task: Hash32,
        /// Index of the first of these tokens in the output.
        offset: u32,
        /// The tokens.
        tokens: Vec<u32>,
    },
}

/// The net message kinds, one per variant.
pub mod kind {
    /// [`super::NodeMessage::Tx`].
    pub const TX: u8 = 1;
    /// [`super::NodeMessage::Proposal`].
    pub const PROPOSAL: u8 = 2;
    /// [`super::NodeMessage::Vote`].
    pub const VOTE: u8 = 3;
    /// [`super::NodeMessage::Status`].
    pub const STATUS: u8 = 4;
    /// [`super::NodeMessage::GetBlocks`].
    pub const GET_BLOCKS: u8 = 5;
    /// [`super::NodeMessage::Blocks`].
    pub const BLOCKS: u8 = 6;
    /// [`super::NodeMessage::GetTaskOutput`].
    pub const GET_TASK_OUTPUT: u8 = 7;
    /// [`super::NodeMessage::TaskOutput`].
    pub const TASK_OUTPUT: u8 = 8;
    /// [`NodeMessage::Prompt`].
    pub const PROMPT: u8 = 9;
    /// [`super::NodeMessage::Addresses`].
    pub const ADDRESSES: u8 = 10;
    /// [`super::NodeMessage::Partial`].
    pub const PARTIAL: u8 = 11;
}

impl NodeMessage {
    /// Its net message kind.
    pub fn kind(&self) -> u8 {
        match self {
            NodeMessage::Tx(_) => kind::TX,
            NodeMessage::Proposal(_) => kind::PROPOSAL,
            NodeMessage::Vote(_) => kind::VOTE,
            NodeMessage::Status { .. } => kind::STATUS,
            NodeMessage::GetBlocks { .. } => kind::GET_BLOCKS,
            NodeMessage::Blocks(_) => kind::BLOCKS,
            NodeMessage::GetTaskOutput { .. } => kind::GET_TASK_OUTPUT,
            NodeMessage::TaskOutput { .. } => kind::TASK_OUTPUT,
            NodeMessage::Prompt { .. } => kind::PROMPT,
            NodeMessage::Addresses(_) => kind::ADDRESSES,
            NodeMessage::Partial { .. } => kind::PARTIAL,
        }
    }

    /// Its encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
}

/// Largest encoding of each kind, for the net layer's per-kind caps.
pub fn max_bytes(kind: u8) -> usize {
    match kind {
        kind::TX => MAX_TRANSACTION_BYTES + 256,
        kind::PROPOSAL => MAX_BLOCK_BYTES + 1024,
        kind::VOTE => 512,
        // An archived enum is as large as its largest inline variant (a vote).
        kind::STATUS | kind::GET_BLOCKS | kind::GET_TASK_OUTPUT => 512,
        kind::TASK_OUTPUT => MAX_TASK_OUTPUT_BYTES,
        kind::PROMPT => MAX_PROMPT_TOKENS * 4 + 256,
        kind::PARTIAL => MAX_OUTPUT_TOKENS * 4 + 256,
        kind::ADDRESSES => MAX_ADDRESSES * std::mem::size_of::<super::addresses::ArchivedHostAddress>() + 256,
        _ => MAX_SYNC_BYTES,
    }
}

impl WireMessage for NodeMessage {
    const KIND: &'static str = "node message";
    const MAX_BYTES: usize = MAX_SYNC_BYTES;
    fn check_bounds(&self) -> Result<(), WireError> {
        match self {
            NodeMessage::Tx(tx) => tx.check_bounds(),
            NodeMessage::Proposal(p) => {
                Message::Proposal(p.0.clone()).check_bounds()?;
                p.1.check_bounds()
            }
            NodeMessage::Vote(v) => Message::Vote(v.clone()).check_bounds(),
            NodeMessage::Status { .. } => Ok(()),
            NodeMessage::GetBlocks { count, .. } => {
                bound(Self::KIND, "count", *count as usize, MAX_SYNC_BLOCKS as usize)
            }
            NodeMessage::Blocks(blocks) => {
                bound(Self::KIND, "blocks", blocks.len(), MAX_SYNC_BLOCKS as usize)?;
                blocks.iter().try_for_each(WireMessage::check_bounds)
            }
            NodeMessage::GetTaskOutput { .. } => Ok(()),
            NodeMessage::TaskOutput { payload, output, artifact, .. } => {
                payload.check_bounds()?;
                bound(Self::KIND, "output tokens", output.len(), MAX_OUTPUT_TOKENS)?;
                bound(
                    Self::KIND,
                    "artifact bytes",
                    artifact.len(),
                    MAX_OUTPUT_TOKENS * Artifact::RECORD_BYTES,
                )
            }
            NodeMessage::Prompt { payload, .. } => payload.check_bounds(),
            NodeMessage::Addresses(records) => bound(Self::KIND, "addresses", records.len(), MAX_ADDRESSES),
            NodeMessage::Partial { offset, tokens, .. } => {
                bound(Self::KIND, "partial tokens", tokens.len(), MAX_OUTPUT_TOKENS)?;
                bound(Self::KIND, "partial offset", *offset as usize, MAX_OUTPUT_TOKENS)
            }
        }
    }
}

/// Decodes a message of net kind `kind` from a peer: the size cap of the
/// kind, validation, field bounds, and the variant must be the kind's.
pub fn decode_message(kind: u8, bytes: &[u8]) -> Result<NodeMessage, WireError> {
    let max = max_bytes(kind);
    if bytes.len() > max {
        return Err(WireError::TooLarge { kind: NodeMessage::KIND, len: bytes.len(), max });
    }
    let msg = decode::<NodeMessage>(bytes)?;
    if msg.kind() != kind {
        return Err(WireError::Malformed {
            kind: NodeMessage::KIND,
            reason: format!("a message of kind {} sent as kind {kind}", msg.kind()),
        });
    }
    Ok(msg)
}
