//! Weighted-vote consensus among the hosts that hold weight (local host state).
//!
//! One [`Consensus`] is one host's view of the height being decided: a pure,
//! deterministic Tendermint state machine (propose → prevote → precommit, with
//! locking and re-proposal of a valid value) in which every count is a sum of
//! epoch weights compared exactly with [`Threshold::FINALITY`] (more than two
//! thirds). It owns no clock, thread or randomness: the node passes `now_ms`
//! in, and every effect comes back as an [`Action`] — build a block, broadcast
//! a message, schedule a timeout, commit a block with its finality
//! certificate, report an equivocation.
//!
//! Start reading at [`Consensus`] (`machine.rs`: the handlers
//! `start_height`, `on_proposal`, `on_vote`, `on_timeout`, `on_finality` and
//! `rebroadcast`, and the routing of each message to the current height, the
//! next-height buffer or the bin), then `height.rs` (the Tendermint rules, one
//! method per rule), `rounds.rs` (per-round weighted tallies), [`messages`]
//! (what each message signs, the evidence, the finality check) and
//! [`proposer()`] (the weighted proposer draw). `docs/consensus.md` holds the
//! protocol, the safety and liveness arguments and the measured costs.
//!
//! ```text
//!  round r of height h          (timeouts grow by step_ms per round)
//!
//!  ┌ Propose ─────────────────────────────────────────────────────────────────┐
//!  │ proposer(seed, h, r) sends Proposal(h, r, B, pol_round): its valid value │
//!  │ with the POL round if it has one, else the block built on BuildBlock     │
//!  │ on the proposal: prevote B if B is valid and the lock allows it (no      │
//!  │ lock, locked on B, or a POL at or after the lock's round); else nil      │
//!  │ on timeout_propose(r): prevote nil                                       │
//!  └──────────────┬───────────────────────────────────────────────────────────┘
//!  ┌ Prevote ─────▼───────────────────────────────────────────────────────────┐
//!  │ > 2/3 prevotes for B (a POL): lock on B, precommit B, valid ← (r, B)     │
//!  │ > 2/3 prevotes for nil: precommit nil                                    │
//!  │ > 2/3 prevotes for anything: start timeout_prevote(r) → precommit nil    │
//!  └──────────────┬───────────────────────────────────────────────────────────┘
//!  ┌ Precommit ───▼───────────────────────────────────────────────────────────┐
//!  │ > 2/3 precommits for B (any round): Commit(B, aggregate certificate)     │
//!  │ > 2/3 precommits for anything: start timeout_precommit(r) → round r + 1  │
//!  └──────────────────────────────────────────────────────────────────────────┘
//!  at any step: > 1/3 of the weight seen in round r' > r  →  skip to round r'
//! ```
//!
//! Signatures are checked through a shared [`SigCache`], so a vote costs one
//! pairing per process however many hosts of a simulation receive it.

mod buffer;
mod height;
mod machine;
pub mod messages;
pub mod proposer;
mod rounds;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use gonka_kernels::encoding::Hash32;

use crate::crypto::CryptoError;
use crate::crypto::votes::{EpochHosts, Threshold, VoteError, VoteSet};

pub use crate::crypto::cache::SigCache;
pub use machine::{Consensus, ConsensusStats};
pub use messages::{
    Equivocation, Message, Proposal, Vote, VoteKind, certify, proposal_message, verify_finality, vote_message,
};
pub use proposer::proposer;

/// Rounds ahead of the current one whose votes and proposals are stored. A
/// vote further ahead only counts towards a round skip: a host that far
/// behind joins the others by skipping, and needs none of the rounds between.
pub const MAX_FUTURE_ROUNDS: u32 = 8;
/// Rounds behind the current one whose votes are kept (beyond the locked and
/// valid rounds, which are always kept): late precommits of a recent round can
/// still decide it, and a re-proposal's POL round is usually recent.
pub const RETAINED_PAST_ROUNDS: u32 = 16;
/// Heights ahead of the current one whose messages are buffered: the next
/// one, which peers that committed first have already started.
pub const MAX_FUTURE_HEIGHTS: u64 = 1;
/// Messages buffered for future heights: a proposal and two votes per host
/// for a few rounds of a 1 000-host epoch, about 2 MiB. Past it, new ones are
/// dropped; the sender's rebroadcast delivers them again later.
pub const MAX_BUFFERED_MESSAGES: usize = 8192;

/// Fraction of the weight whose presence in a later round makes a host skip
/// to it: more than a third contains at least one honest host.
pub const ROUND_SKIP: Threshold = Threshold::new(1, 3);

/// Base durations of the three timeouts; each grows by `step_ms` per round,
/// so that after the network stabilises rounds last long enough to succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutParams {
    /// Wait for the proposal in round 0.
    pub propose_ms: u64,
    /// Wait after > 2/3 prevotes that agree on nothing, in round 0.
    pub prevote_ms: u64,
    /// Wait after > 2/3 precommits that agree on nothing, in round 0.
    pub precommit_ms: u64,
    /// Added to each timeout per round.
    pub step_ms: u64,
}

impl Default for TimeoutParams {
    fn default() -> Self {
        Self { propose_ms: 1000, prevote_ms: 500, precommit_ms: 500, step_ms: 500 }
    }
}

impl TimeoutParams {
    /// How long `step` waits in `round`: its base plus `step_ms · round`.
    pub fn duration_ms(&self, step: Step, round: u32) -> u64 {
        let base = match step {
            Step::Propose => self.propose_ms,
            Step::Prevote => self.prevote_ms,
            Step::Precommit => self.precommit_ms,
        };
        base.saturating_add(self.step_ms.saturating_mul(u64::from(round)))
    }
}

/// The step of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// Waiting for the proposal.
    Propose,
    /// Prevoted; waiting for > 2/3 prevotes.
    Prevote,
    /// Precommitted; waiting for > 2/3 precommits.
    Precommit,
}

/// A timeout the node must deliver back through [`Consensus::on_timeout`]
/// once its clock reaches `at_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    /// Height it belongs to.
    pub height: u64,
    /// Round it belongs to.
    pub round: u32,
    /// Step it ends.
    pub step: Step,
    /// When it fires, on the clock the node passes as `now_ms`.
    pub at_ms: u64,
}

/// What the height being decided depends on.
#[derive(Clone, Debug)]
pub struct HeightContext {
    /// The height.
    pub height: u64,
    /// The epoch's voting hosts, in host order (index = host id).
    pub hosts: Arc<EpochHosts>,
    /// Seed of the proposer draw (the epoch's beacon).
    pub proposer_seed: Hash32,
}

/// An effect the node carries out for the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// This host proposes in `(height, round)`: build a block and pass its
    /// hash to [`Consensus::propose`].
    BuildBlock {
        /// Height.
        height: u64,
        /// Round.
        round: u32,
    },
    /// Send to every peer.
    Broadcast(Message),
    /// Call [`Consensus::on_timeout`] with this at `at_ms`.
    ScheduleTimeout(Timeout),
    /// A proposal received before its height started: check its block
    /// against the new state and pass it to [`Consensus::on_proposal`].
    CheckProposal(Proposal),
    /// The block is final: apply it, then start the next height.
    Commit {
        /// Height.
        height: u64,
        /// Round whose precommits decided it.
        round: u32,
        /// Hash of the block.
        block: Hash32,
        /// Aggregate of > 2/3 of the weight's precommits; see [`verify_finality`].
        finality: VoteSet,
    },
    /// A host signed two different votes at one `(height, round, kind)`:
    /// submit this to the chain.
    Evidence(Equivocation),
}

/// Why a message or a certificate was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// The sender is not in the epoch's host list.
    #[error("{what} at height {height} from host {host}, but the epoch lists {hosts} hosts")]
    NotMember {
        /// The message kind.
        what: &'static str,
        /// Its height.
        height: u64,
        /// The claimed sender.
        host: u32,
        /// Hosts in the epoch.
        hosts: usize,
    },
    /// A signature does not verify.
    #[error("{what} of host {host} at height {height} round {round} does not verify: {source}")]
    BadSignature {
        /// The message kind.
        what: &'static str,
        /// Its height.
        height: u64,
        /// Its round.
        round: u32,
        /// The claimed signer.
        host: u32,
        /// Why.
        #[source]
        source: CryptoError,
    },
    /// A proposal from a host that is not the round's proposer.
    #[error("proposal at height {height} round {round} from host {found}, expected the proposer {expected}")]
    WrongProposer {
        /// Height.
        height: u64,
        /// Round.
        round: u32,
        /// The round's proposer.
        expected: u32,
        /// The sender.
        found: u32,
    },
    /// A proposal whose POL round is not earlier than its own round.
    #[error("proposal at height {height} round {round} names POL round {pol_round}, expected an earlier one")]
    BadPolRound {
        /// Height.
        height: u64,
        /// Round.
        round: u32,
        /// The POL round it names.
        pol_round: u32,
    },
    /// A second, different proposal for a round that has one.
    #[error("host {proposer} proposed a second, different block at height {height} round {round}")]
    ConflictingProposal {
        /// Height.
        height: u64,
        /// Round.
        round: u32,
        /// The proposer.
        proposer: u32,
    },
    /// A message for a height past the ones buffered.
    #[error("message for height {height}, more than {max} ahead of the current height {current}")]
    HeightTooFar {
        /// Its height.
        height: u64,
        /// The current height.
        current: u64,
        /// [`MAX_FUTURE_HEIGHTS`].
        max: u64,
    },
    /// The future-height buffer is full.
    #[error("buffer of {capacity} messages for future heights is full; message for height {height} dropped")]
    BufferFull {
        /// Its height.
        height: u64,
        /// [`MAX_BUFFERED_MESSAGES`].
        capacity: usize,
    },
    /// Two votes that are not an equivocation.
    #[error("not an equivocation: {why}")]
    NotEquivocation {
        /// What differs or matches that should not.
        why: &'static str,
    },
    /// A finality certificate does not hold.
    #[error("finality certificate for height {height} round {round}: {source}")]
    Finality {
        /// Height.
        height: u64,
        /// Round.
        round: u32,
        /// Why.
        #[source]
        source: VoteError,
    },
}
