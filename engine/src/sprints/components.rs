//! Epoch and Sprint resources.

use bevy_ecs::prelude::*;
use gonka_kernels::encoding::{Hash32, tagged_hash};
use rkyv::{Archive, Deserialize, Serialize};

use crate::crypto::beacon::{BeaconRound, BeaconRoundSnapshot, SeedRound, SeedWindows};
use crate::crypto::dkg::{Dkg, DkgConfig, DkgMember, DkgOutcome, DkgOutcomeSnapshot, DkgSnapshot, committee};
use crate::hosts::VotingHosts;
use crate::params::ChainParams;

/// Where the block being applied sits in time.
#[derive(Archive, Serialize, Deserialize, Resource, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EpochClock {
    /// Its height.
    pub height: u64,
    /// Its epoch.
    pub epoch: u64,
    /// `height - epoch·E`.
    pub offset: u64,
}

/// Why an epoch's beacon failed.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeaconFailure {
    /// The committee or the DKG parameters are unusable.
    DkgCannotStart,
    /// The commit–reveal windows are inconsistent.
    SeedWindowsInvalid,
    /// Every dealer was disqualified.
    NoQualifiedDealer,
    /// Fewer than `t` partials by the deadline.
    NotRecovered,
}

impl BeaconFailure {
    /// The reason in words (also what the state root commits to).
    pub fn why(self) -> &'static str {
        match self {
            BeaconFailure::DkgCannotStart => "DKG cannot start",
            BeaconFailure::SeedWindowsInvalid => "seed windows invalid",
            BeaconFailure::NoQualifiedDealer => "DKG had no qualified dealer",
            BeaconFailure::NotRecovered => "beacon not recovered by its deadline",
        }
    }
}

/// How this epoch's beacon stands.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeaconStatus {
    /// Collecting.
    Pending,
    /// Recovered at this height.
    Ready {
        /// Height of the block that completed it.
        height: u64,
    },
    /// Not recovered: the epoch has no Sprint and weights carry over.
    Failed {
        /// Why.
        why: BeaconFailure,
    },
}

/// The epoch's randomness: DKG, commit–reveal, threshold beacon.
#[derive(Resource, Debug)]
pub struct BeaconState {
    /// The latest beacon value (the genesis seed before the first): it chains
    /// the next beacon and seeds proposer draws.
    pub previous: Hash32,
    /// Voting-list position of each DKG member, by member index.
    pub committee: Vec<u32>,
    /// This epoch's DKG among the committee.
    pub dkg: Option<Dkg>,
    /// Its outcome once finished.
    pub outcome: Option<DkgOutcome>,
    /// Partials of `σ_e`, once the DKG has finished.
    pub beacon_round: Option<BeaconRound>,
    /// Commit–reveal among the voting hosts (indexed by voting-list position).
    pub seed_round: Option<SeedRound>,
    /// Hash chain over every accepted beacon and DKG message: the state root
    /// commits to these state machines through it.
    pub transcript: Hash32,
    /// This epoch's progress.
    pub status: BeaconStatus,
}

impl BeaconState {
    /// Extends the transcript with an accepted message.
    pub fn append(&mut self, kind: u8, sender: u32, bytes: &[u8]) {
        self.transcript = tagged_hash(
            "gonka/beacon-transcript",
            &[&self.transcript, &[kind], &sender.to_le_bytes(), bytes],
        );
    }

    /// Member index of voting-list position `pos` in this epoch's DKG.
    pub fn member_of(&self, pos: u32) -> Option<u32> {
        self.committee.binary_search(&pos).ok().map(|m| m as u32)
    }
}

/// A [`BeaconState`] as plain data, for the state snapshot.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BeaconSnapshot {
    previous: Hash32,
    committee: Vec<u32>,
    dkg: Option<DkgSnapshot>,
    outcome: Option<DkgOutcomeSnapshot>,
    beacon_round: Option<BeaconRoundSnapshot>,
    seed_round: Option<SeedRound>,
    transcript: Hash32,
    status: BeaconStatus,
}

impl BeaconState {
    /// The state as plain data.
    pub fn to_snapshot(&self) -> BeaconSnapshot {
        BeaconSnapshot {
            previous: self.previous,
            committee: self.committee.clone(),
            dkg: self.dkg.as_ref().map(Dkg::to_snapshot),
            outcome: self.outcome.as_ref().map(DkgOutcome::to_snapshot),
            beacon_round: self.beacon_round.as_ref().map(BeaconRound::to_snapshot),
            seed_round: self.seed_round.clone(),
            transcript: self.transcript,
            status: self.status,
        }
    }

    /// The state from [`BeaconState::to_snapshot`]; every point is checked.
    pub fn from_snapshot(s: &BeaconSnapshot) -> Result<Self, String> {
        let dkg = s.dkg.as_ref().map(Dkg::from_snapshot).transpose().map_err(|e| format!("DKG: {e}"))?;
        let outcome = s
            .outcome
            .as_ref()
            .map(DkgOutcome::from_snapshot)
            .transpose()
            .map_err(|e| format!("DKG outcome: {e}"))?;
        let beacon_round = s
            .beacon_round
            .as_ref()
            .map(BeaconRound::from_snapshot)
            .transpose()
            .map_err(|e| format!("beacon round: {e}"))?;
        Ok(Self {
            previous: s.previous,
            committee: s.committee.clone(),
            dkg,
            outcome,
            beacon_round,
            seed_round: s.seed_round.clone(),
            transcript: s.transcript,
            status: s.status,
        })
    }
}

/// The epoch's Sprint window, once its seed is known.
#[derive(Archive, Serialize, Deserialize, Resource, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sprint {
    /// The epoch.
    pub epoch: u64,
    /// The seed, once revealed.
    pub seed: Option<Hash32>,
    /// First height that accepts proofs.
    pub start: u64,
    /// Last height that accepts proofs.
    pub end: u64,
    /// Last height that accepts validation reports; batches are tallied in it.
    pub validation_end: u64,
}

impl Sprint {
    /// Whether `height` accepts proof commitments and batches.
    pub fn accepts_proofs(&self, height: u64) -> bool {
        self.seed.is_some() && (self.start..=self.end).contains(&height)
    }

    /// Whether `height` accepts validation reports.
    pub fn accepts_validations(&self, height: u64) -> bool {
        self.seed.is_some() && (self.end + 1..=self.validation_end).contains(&height)
    }
}

/// Opens `epoch`: a DKG among the heaviest voting hosts and a commit–reveal
/// among all of them. A DKG that cannot start (impossible parameters) marks
/// the beacon failed, and the epoch runs without a Sprint.
pub fn open_epoch(
    epoch: u64,
    params: &ChainParams,
    voting: &VotingHosts,
    previous: Hash32,
) -> (BeaconState, Sprint) {
    let h0 = params.epoch_start(epoch);
    let committee: Vec<u32> =
        committee(&voting.weights, params.beacon_committee as usize).into_iter().map(|p| p as u32).collect();
    let members: Vec<DkgMember> = committee
        .iter()
        .map(|&p| DkgMember { public_key: voting.keys[p as usize], weight: voting.weights[p as usize] })
        .collect();
    let config = DkgConfig {
        epoch,
        slots: params.beacon_slots,
        threshold: DkgConfig::default_threshold(params.beacon_slots),
        deal_deadline: h0 + params.dkg_deal_blocks,
        complaint_deadline: h0 + params.dkg_complaint_blocks,
        justification_deadline: h0 + params.dkg_justification_blocks,
    };
    let windows = SeedWindows {
        epoch,
        commit_deadline: h0 + params.seed_commit_blocks - 1,
        reveal_open: h0 + params.reveal_open_offset(),
        reveal_close: h0 + params.reveal_close_offset(),
    };
    let mut status = BeaconStatus::Pending;
    let dkg = Dkg::new(config, &members)
        .map_err(|_| status = BeaconStatus::Failed { why: BeaconFailure::DkgCannotStart })
        .ok();
    let seed_round = SeedRound::new(windows, voting.keys.clone())
        .map_err(|_| status = BeaconStatus::Failed { why: BeaconFailure::SeedWindowsInvalid })
        .ok();
    let beacon = BeaconState {
        previous,
        committee,
        dkg,
        outcome: None,
        beacon_round: None,
        seed_round,
        transcript: tagged_hash("gonka/beacon-transcript", &[&epoch.to_le_bytes(), &previous]),
        status,
    };
    (beacon, Sprint { epoch, ..Sprint::default() })
}
