//! The task transactions' bodies.

use gonka_kernels::encoding::{Hash32, tagged_hash};
use rkyv::{Archive, Deserialize, Serialize};

use crate::crypto::{PublicKeyBytes, SignatureBytes};
use crate::params::Amount;

/// A user's inference request; the sender is the payer.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct InferenceRequest {
    /// The payer's next account nonce (the request's identity, and replay protection).
    pub nonce: u64,
    /// Index of the model in the chain's model list.
    pub model: u32,
    /// [`prompt_commitment`] of the prompt, which travels off chain through the intermediary.
    pub prompt: Hash32,
    /// Most tokens (prompt and completion) the payer pays for.
    pub max_tokens: u32,
    /// Most the payer pays: held in escrow until the task settles.
    pub max_cost: Amount,
}

impl InferenceRequest {
    /// The task id of this request from `payer`.
    pub fn task_id(&self, payer: &PublicKeyBytes) -> Hash32 {
        task_id(payer, self.nonce)
    }
}

/// The id of the task `payer` requested with `nonce`.
pub fn task_id(payer: &PublicKeyBytes, nonce: u64) -> Hash32 {
    tagged_hash("gonka/task", &[payer, &nonce.to_le_bytes()])
}

/// The commitment a request carries for its prompt text.
pub fn prompt_commitment(prompt: &str) -> Hash32 {
    tagged_hash("gonka/prompt", &[prompt.as_bytes()])
}

/// The executor's result; the sender must be the task's executor.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct InferenceFinish {
    /// The task.
    pub task: Hash32,
    /// Commitment to the output sent back to the user.
    pub output: Hash32,
    /// Commitment to the validation artifact (the per-token top log-probabilities).
    pub artifact: Hash32,
    /// Tokens billed (prompt and completion), at most the request's `max_tokens`.
    pub tokens: u32,
}

/// A selected host's check of a finished task.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskCheck {
    /// The task.
    pub task: Hash32,
    /// The sender's selection signature over the task id: proves it was selected.
    pub selection: SignatureBytes,
    /// Whether its recomputation matched the executor's artifact.
    pub pass: bool,
}

/// A host's re-verification vote on a disputed task.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisputeVote {
    /// The task.
    pub task: Hash32,
    /// Whether its recomputation confirms the mismatch.
    pub fraud: bool,
}
