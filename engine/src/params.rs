//! Every number of the chain in one place: epoch layout, Sprint, validation,
//! beacon and consensus parameters, with their defaults.
//!
//! The parameters are part of the genesis and of every state root: two hosts
//! with different parameters are on different chains.
//!
//! ```text
//!  epoch e = heights [e·E, (e+1)·E)
//!  offset 0 ─ DKG deals ─ complaints ─ justifications        (group key for this epoch's beacon)
//!  offset 0 ─ seed commits ─┬─ reveals ─┬─ beacon partials ─► seed known at height s
//!                           c           r
//!  s+1 ……… s+S   Sprint: proof commitments and batches
//!  s+S+1 … s+S+V validation reports; tally at s+S+V
//!  (e+1)·E       new weights take effect
//! ```

use rkyv::{Archive, Deserialize, Serialize};
use thiserror::Error;

use crate::proofs::{Difficulty, ModelShape, V2_NONCES_PER_PROOF};

/// A rational share `num/den` of the total weight.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// Numerator.
    pub num: u32,
    /// Denominator (non-zero).
    pub den: u32,
}

/// The chain's parameters.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, bevy_ecs::resource::Resource)]
pub struct ChainParams {
    /// `E`: blocks per epoch.
    pub epoch_blocks: u64,
    /// Last epoch offset at which a Sprint-seed commitment is accepted.
    pub seed_commit_blocks: u64,
    /// Blocks after the commit window during which reveals are accepted.
    pub seed_reveal_blocks: u64,
    /// Blocks after the reveal window in which the beacon must be recovered;
    /// past them the epoch has no Sprint and weights carry over.
    pub beacon_partial_blocks: u64,
    /// Epoch offsets of the DKG's deal, complaint and justification deadlines.
    pub dkg_deal_blocks: u64,
    /// See [`ChainParams::dkg_deal_blocks`].
    pub dkg_complaint_blocks: u64,
    /// See [`ChainParams::dkg_deal_blocks`].
    pub dkg_justification_blocks: u64,
    /// Beacon share slots split among the committee by weight.
    pub beacon_slots: u32,
    /// Largest DKG committee: the highest-weight hosts.
    pub beacon_committee: u32,
    /// `S`: blocks of the Sprint, counted from the block after the seed is known.
    pub sprint_blocks: u64,
    /// `V`: blocks of proof validation after the Sprint.
    pub validation_blocks: u64,
    /// The Sprint model.
    pub pow_shape: ModelShape,
    /// The Sprint function and difficulty.
    pub pow_difficulty: Difficulty,
    /// Largest number of proofs in one batch (bounds a block and a validator's work).
    pub max_batch_proofs: u32,
    /// Proofs a validator recomputes per batch.
    pub validation_sample: u32,
    /// Cap on one host's share of the total weight; `None` (the default) is
    /// no cap, because a cap only moves weight to whoever splits into more
    /// keys: weight is earned by compute, and compute splits freely.
    pub max_weight_share: Option<Share>,
    /// Most transactions in one block.
    pub max_block_transactions: u32,
    /// Largest encoded block in bytes.
    pub max_block_bytes: u32,
    /// Consensus: the propose step's first timeout.
    pub timeout_propose_ms: u64,
    /// Consensus: the prevote and precommit steps' first timeout.
    pub timeout_vote_ms: u64,
    /// Consensus: added to every timeout per round, so rounds grow until the network keeps up.
    pub timeout_step_ms: u64,
    /// Local pacing: how long a proposer waits after a commit before the next proposal.
    pub block_interval_ms: u64,
    /// Tasks, validation of tasks, reputation, rewards.
    pub economy: EconomyParams,
}

/// Token amounts in base units: 1 GNK = 10^9 base units.
pub type Amount = u128;

/// One GNK in base units.
pub const GNK: Amount = 1_000_000_000;

/// A model the network serves, and its price.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ModelPrice {
    /// Its name (requests name the model by its index in [`EconomyParams::models`]).
    pub name: String,
    /// Base units per token (prompt and completion tokens alike).
    pub price_per_token: Amount,
}

/// The numbers of the economy (`docs/economy.md` has every rule that reads them).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EconomyParams {
    /// The models requests may name (at most 64: hosts declare theirs as a bit mask).
    pub models: Vec<ModelPrice>,
    /// `Y`: a request not finished this many blocks after it landed expires with a refund.
    pub task_timeout_blocks: u64,
    /// `X`: the pool of hanging requests is scanned every this many blocks.
    pub hanging_scan_blocks: u64,
    /// Blocks after a task finishes during which selected hosts submit their checks.
    pub task_validation_blocks: u64,
    /// Blocks a dispute stays open for re-verification votes.
    pub dispute_blocks: u64,
    /// `N`: epochs of reputation at which the validation rate reaches its floor `p_min`.
    pub reputation_full_epochs: u32,
    /// Epochs of inactivity after which a host's reputation is deleted.
    pub reputation_forget_epochs: u64,
    /// Requests per epoch up to which every task is checked (`p_min = 1`).
    pub full_check_requests: u64,
    /// The floor of `p_min`, reached at `full_check_requests / floor` requests per epoch.
    pub min_check_rate: Share,
    /// Checks and dispute votes against the final outcome (false alarms, or
    /// missed frauds) a host may have per epoch before its verdicts can count
    /// as inaccurate. A confirmed mismatch of its own output has no allowance:
    /// more than half of the weight re-verified it.
    pub false_positive_allowance: u32,
    /// Share of its expected tasks a host must finish to be paid.
    pub min_work: Share,
    /// Share of its expected checks a host must submit to be paid.
    pub min_validation: Share,
    /// Share of every task payment that goes to the training fund.
    pub training_fund: Share,
    /// Bounty for a caught fraud, as a share of the executor's part of that task's pay.
    pub bounty: Share,
    /// What a user pays to report a task (refunded when the report is confirmed).
    pub report_fee: Amount,
    /// Subsidy minted in epoch 0; every later epoch mints less by `subsidy_decay`.
    pub epoch_subsidy: Amount,
    /// Per-epoch decay of the subsidy: `S_{e+1} = S_e − ⌈S_e · decay⌉`.
    pub subsidy_decay: Share,
    /// Requests per epoch below which the chain adds dummy requests (paid from the reserve).
    pub dummy_requests: u64,
    /// Largest completion a dummy request asks for.
    pub dummy_max_tokens: u32,
}

impl EconomyParams {
    /// A ten-second-block network: the subsidy of the published emission
    /// (about 680 million GNK in all) spread over two-hour epochs.
    pub fn standard() -> Self {
        Self {
            models: vec![ModelPrice { name: "SmolLM2-135M".into(), price_per_token: 1_000 }],
            task_timeout_blocks: 20,
            hanging_scan_blocks: 100,
            task_validation_blocks: 20,
            dispute_blocks: 30,
            reputation_full_epochs: 30,
            // 30 days of two-hour epochs.
            reputation_forget_epochs: 360,
            full_check_requests: 100,
            min_check_rate: Share { num: 1, den: 100 },
            false_positive_allowance: 2,
            min_work: Share { num: 1, den: 2 },
            min_validation: Share { num: 1, den: 2 },
            training_fund: Share { num: 1, den: 5 },
            bounty: Share { num: 1, den: 2 },
            report_fee: 1_000_000,
            // 323 000 GNK a day, decaying by 0.000475 a day, in twelve epochs a day.
            epoch_subsidy: 323_000 * GNK / 12,
            subsidy_decay: Share { num: 475, den: 12_000_000 },
            dummy_requests: 100,
            dummy_max_tokens: 256,
        }
    }

    /// Short windows for tests and the simulator.
    pub fn tiny() -> Self {
        Self {
            models: vec![
                ModelPrice { name: "tiny-chat".into(), price_per_token: 10 },
                ModelPrice { name: "small-chat".into(), price_per_token: 40 },
            ],
            task_timeout_blocks: 6,
            hanging_scan_blocks: 5,
            task_validation_blocks: 4,
            dispute_blocks: 4,
            reputation_full_epochs: 30,
            reputation_forget_epochs: 12,
            full_check_requests: 100,
            min_check_rate: Share { num: 1, den: 100 },
            false_positive_allowance: 2,
            min_work: Share { num: 1, den: 2 },
            min_validation: Share { num: 1, den: 2 },
            training_fund: Share { num: 1, den: 5 },
            bounty: Share { num: 1, den: 2 },
            report_fee: 1_000,
            epoch_subsidy: 1_000_000,
            subsidy_decay: Share { num: 1, den: 100 },
            dummy_requests: 10,
            dummy_max_tokens: 32,
        }
    }

    fn validate(&self) -> Result<(), ParamsError> {
        let bad = |s: &str| Err(ParamsError::Invalid(s.to_string()));
        if self.models.is_empty() || self.models.len() > 64 {
            return bad("between 1 and 64 models");
        }
        if self.task_timeout_blocks == 0 || self.hanging_scan_blocks == 0 {
            return bad("task timeout and hanging scan must be positive");
        }
        if self.task_validation_blocks == 0 || self.dispute_blocks == 0 {
            return bad("task validation and dispute windows must be non-empty");
        }
        if self.reputation_full_epochs == 0 || self.full_check_requests == 0 {
            return bad("reputation scale and full-check volume must be positive");
        }
        for (name, s) in [
            ("min check rate", self.min_check_rate),
            ("min work", self.min_work),
            ("min validation", self.min_validation),
            ("training fund", self.training_fund),
            ("bounty", self.bounty),
            ("subsidy decay", self.subsidy_decay),
        ] {
            if s.den == 0 || s.num > s.den {
                return Err(ParamsError::Invalid(format!("{name} must be a share in [0, 1]")));
            }
        }
        if self.min_check_rate.num == 0 {
            return bad("the check rate floor must be positive");
        }
        Ok(())
    }
}

impl Share {
    /// `⌊amount · num / den⌋` (the share of an amount, rounded down).
    pub fn of(self, amount: u128) -> u128 {
        let (num, den) = (u128::from(self.num), u128::from(self.den));
        // amount = q·den + r, so amount·num/den = q·num + r·num/den without overflow.
        (amount / den) * num + (amount % den) * num / den
    }
}

/// Why a parameter set is unusable.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParamsError {
    /// A relation between parameters does not hold.
    #[error("invalid chain parameters: {0}")]
    Invalid(String),
}

impl Default for ChainParams {
    /// A ten-second-block network: 720-block (two-hour) epochs, a 30-block
    /// Sprint on `seed-64`, one proof per [`V2_NONCES_PER_PROOF`] nonces.
    fn default() -> Self {
        Self {
            epoch_blocks: 720,
            seed_commit_blocks: 20,
            seed_reveal_blocks: 10,
            beacon_partial_blocks: 20,
            dkg_deal_blocks: 10,
            dkg_complaint_blocks: 15,
            dkg_justification_blocks: 20,
            beacon_slots: 64,
            beacon_committee: 64,
            sprint_blocks: 30,
            validation_blocks: 60,
            pow_shape: ModelShape::of(&gonka_kernels::config::SEED_64),
            pow_difficulty: Difficulty::V2 { nonces_per_proof: V2_NONCES_PER_PROOF },
            max_batch_proofs: 1 << 16,
            validation_sample: 16,
            max_weight_share: None,
            max_block_transactions: 4096,
            max_block_bytes: 16 << 20,
            timeout_propose_ms: 3000,
            timeout_vote_ms: 1000,
            timeout_step_ms: 500,
            block_interval_ms: 10_000,
            economy: EconomyParams::standard(),
        }
    }
}

impl ChainParams {
    /// Small, fast parameters for tests and the simulator: 40-block epochs
    /// on the `tiny` model.
    pub fn tiny() -> Self {
        Self {
            epoch_blocks: 40,
            seed_commit_blocks: 4,
            seed_reveal_blocks: 3,
            beacon_partial_blocks: 6,
            dkg_deal_blocks: 2,
            dkg_complaint_blocks: 4,
            dkg_justification_blocks: 6,
            beacon_slots: 16,
            beacon_committee: 16,
            sprint_blocks: 6,
            validation_blocks: 10,
            pow_shape: ModelShape::of(&gonka_kernels::config::TINY),
            pow_difficulty: Difficulty::V2 { nonces_per_proof: 256 },
            max_batch_proofs: 4096,
            validation_sample: 8,
            max_weight_share: None,
            max_block_transactions: 4096,
            max_block_bytes: 16 << 20,
            timeout_propose_ms: 400,
            timeout_vote_ms: 200,
            timeout_step_ms: 200,
            block_interval_ms: 100,
            economy: EconomyParams::tiny(),
        }
    }

    /// Checks the relations the epoch layout relies on.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let bad = |s: &str| Err(ParamsError::Invalid(s.to_string()));
        if self.dkg_deal_blocks >= self.dkg_complaint_blocks
            || self.dkg_complaint_blocks >= self.dkg_justification_blocks
        {
            return bad("DKG deadlines must increase: deal < complaint < justification");
        }
        if self.seed_commit_blocks == 0 || self.seed_reveal_blocks == 0 || self.beacon_partial_blocks == 0 {
            return bad("seed commit, reveal and partial windows must be non-empty");
        }
        // Partials open after both the reveals and the DKG (the group key signs them).
        if self.dkg_justification_blocks >= self.partials_open_offset() {
            return bad("the DKG must finish before beacon partials open");
        }
        if self.sprint_blocks == 0 || self.validation_blocks == 0 {
            return bad("Sprint and validation windows must be non-empty");
        }
        let latest_end = self.beacon_deadline_offset() + self.sprint_blocks + self.validation_blocks;
        if latest_end >= self.epoch_blocks {
            return bad("epoch too short: the latest beacon + Sprint + validation must end before it");
        }
        if self.beacon_slots == 0 || self.beacon_slots > crate::crypto::threshold::MAX_SLOTS {
            return bad("beacon slots outside 1..=MAX_SLOTS");
        }
        if self.beacon_committee == 0 || self.beacon_committee as usize > crate::crypto::dkg::MAX_COMMITTEE {
            return bad("beacon committee outside 1..=MAX_COMMITTEE");
        }
        if self.pow_shape.named_config().is_none() {
            return bad("the Sprint model must be a named config");
        }
        match self.pow_difficulty {
            Difficulty::V2 { nonces_per_proof: 0 } => return bad("v2 difficulty must be at least 1"),
            Difficulty::V1 { r_target_bits } if !f32::from_bits(r_target_bits).is_finite() => {
                return bad("v1 r_target must be finite");
            }
            _ => {}
        }
        if self.validation_sample == 0 || self.max_batch_proofs == 0 {
            return bad("validation sample and batch size must be positive");
        }
        if let Some(s) = self.max_weight_share
            && (s.den == 0 || s.num == 0 || s.num > s.den)
        {
            return bad("weight cap must be a share in (0, 1]");
        }
        if self.max_block_transactions == 0 || self.max_block_bytes < 1024 {
            return bad("blocks must hold at least one transaction and 1 KiB");
        }
        self.economy.validate()
    }

    /// Epoch offset of the first reveal.
    pub fn reveal_open_offset(&self) -> u64 {
        self.seed_commit_blocks
    }

    /// Epoch offset of the last reveal.
    pub fn reveal_close_offset(&self) -> u64 {
        self.seed_commit_blocks + self.seed_reveal_blocks - 1
    }

    /// Epoch offset from which beacon partials are accepted.
    pub fn partials_open_offset(&self) -> u64 {
        self.reveal_close_offset() + 1
    }

    /// Last epoch offset at which the beacon may complete.
    pub fn beacon_deadline_offset(&self) -> u64 {
        self.partials_open_offset() + self.beacon_partial_blocks - 1
    }

    /// The epoch of `height`.
    pub fn epoch_of(&self, height: u64) -> u64 {
        height / self.epoch_blocks
    }

    /// First height of `epoch`.
    pub fn epoch_start(&self, epoch: u64) -> u64 {
        epoch * self.epoch_blocks
    }

    /// A canonical digest of the parameters (part of every state root).
    pub fn digest(&self) -> gonka_kernels::encoding::Hash32 {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("encoding plain data cannot fail");
        gonka_kernels::encoding::tagged_hash("gonka/chain-params", &[&bytes])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent() {
        ChainParams::default().validate().expect("default parameters");
        ChainParams::tiny().validate().expect("tiny parameters");
    }

    #[test]
    fn short_epoch_is_refused() {
        let p = ChainParams { epoch_blocks: 20, ..ChainParams::tiny() };
        assert!(matches!(p.validate(), Err(ParamsError::Invalid(_))));
    }
}
