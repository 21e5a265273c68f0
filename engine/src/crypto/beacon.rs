//! The random beacon and the Sprint seed (whitepaper Appendix C).
//!
//! ```text
//!  m_e       = u64_le(e) ‖ beacon_{e−1}                   signed in Domain::BeaconShare
//!  σ_e       = recover(t valid partials of m_e)            = the group key's unique signature
//!  beacon_e  = H("gonka/beacon", σ_e)
//!  commit_i  = H("gonka/seed-commit", u64_le(e), pk_i, r_i)
//!  seed_e    = H("gonka/sprint-seed", σ_e, u32_le(i) ‖ r_i for each revealer i in host order)
//!
//!  height ─► ≤ commit_deadline ─► [reveal_open, reveal_close] ─► ≥ partials_open ─► σ_e ─► seed_e
//! ```
//!
//! Partials are only accepted from `partials_open`, which must lie after the
//! reveal window: no one (short of `t` slots) knows `σ_e` while reveals are
//! open, so the last revealer cannot tell which choice, reveal or withhold,
//! favours it. A host that commits and does not reveal in the window is
//! reported in [`SeedOutcome::non_revealers`] (the engine excludes it and
//! withholds its epoch rewards).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use blst::min_pk::{PublicKey, Signature};
use gonka_kernels::encoding::{Hash32, tagged_hash};
use rkyv::{Archive, Deserialize, Serialize};

use super::threshold::{
    MAX_SLOTS, PartialSignature, PublicPolynomial, ThresholdError, combine, verify_batch,
};
use super::wire::{WireError, WireMessage, bound};
use super::{CryptoError, Domain, PublicKeyBytes, SignatureBytes, verify_parsed};

/// The message the group signs for epoch `e`: `u64_le(e) ‖ beacon_{e−1}`.
pub fn beacon_message(epoch: u64, previous: &Hash32) -> [u8; 40] {
    let mut m = [0u8; 40];
    m[..8].copy_from_slice(&epoch.to_le_bytes());
    m[8..].copy_from_slice(previous);
    m
}

/// `beacon_e = H("gonka/beacon", σ_e)`.
pub fn beacon_value(sigma: &SignatureBytes) -> Hash32 {
    tagged_hash("gonka/beacon", &[sigma])
}

/// Checks `σ_e` against the group key and returns `beacon_e`.
pub fn verify_beacon(
    group_key: &PublicKeyBytes,
    epoch: u64,
    previous: &Hash32,
    sigma: &SignatureBytes,
) -> Result<Hash32, CryptoError> {
    let pk = PublicKey::key_validate(group_key).map_err(CryptoError::BadPublicKey)?;
    verify_parsed(Domain::BeaconShare, &pk, &beacon_message(epoch, previous), sigma)?;
    Ok(beacon_value(sigma))
}

/// Errors of the beacon and the seed round.
#[derive(Debug, thiserror::Error)]
pub enum BeaconError {
    /// A message for another epoch.
    #[error("message for epoch {found}, this round is epoch {expected}")]
    WrongEpoch {
        /// In the message.
        found: u64,
        /// This round's.
        expected: u64,
    },
    /// Outside the window in which the message is accepted.
    #[error("{what} at height {height} is outside its window {from}..={to}")]
    OutsideWindow {
        /// The message kind.
        what: &'static str,
        /// Current height.
        height: u64,
        /// First accepted height.
        from: u64,
        /// Last accepted height.
        to: u64,
    },
    /// A repeated message.
    #[error("duplicate {what} from {from}")]
    Duplicate {
        /// The message kind.
        what: &'static str,
        /// Sender (host index or slot).
        from: u32,
    },
    /// A host index outside the epoch's list.
    #[error("host {host} is not among the epoch's {hosts} hosts")]
    UnknownHost {
        /// The index.
        host: u32,
        /// Hosts.
        hosts: usize,
    },
    /// A reveal without a commitment, or one that does not open it.
    #[error("reveal of host {host} does not open a commitment of this epoch")]
    BadReveal {
        /// The host.
        host: u32,
    },
    /// The round's parameters are inconsistent.
    #[error("invalid round: {0}")]
    BadConfig(&'static str),
    /// A partial is invalid, or too few partials.
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
}

/// One host's partial signatures of the beacon, one per slot it holds.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BeaconPartials {
    /// The epoch.
    pub epoch: u64,
    /// The partials.
    pub partials: Vec<PartialSignature>,
}

impl WireMessage for BeaconPartials {
    const KIND: &'static str = "beacon partials";
    const MAX_BYTES: usize = MAX_SLOTS as usize * 104 + 256;
    fn check_bounds(&self) -> Result<(), WireError> {
        bound(Self::KIND, "partials", self.partials.len(), MAX_SLOTS as usize)
    }
}

/// Collects verified partials of `σ_e` until `t` of them recover it.
///
/// Partials arrive per block: [`BeaconRound::add_block`] checks each
/// message cheaply (epoch, window, the sender owns the slot, no repeat, a
/// valid G2 point), then verifies all of the block's partials with one batch
/// check, and only when that fails one message at a time to find the culprits.
#[derive(Clone, Debug)]
pub struct BeaconRound {
    epoch: u64,
    message: [u8; 40],
    public: PublicPolynomial,
    /// Each member's slots (the DKG outcome's).
    member_slots: Vec<Range<u32>>,
    slots: u32,
    partials_open: u64,
    /// Verified partials by slot.
    partials: BTreeMap<u32, Signature>,
    /// Share public keys computed so far: one MSM of `t` points per slot, once per epoch.
    share_keys: BTreeMap<u32, PublicKey>,
}

/// A [`BeaconRound`] as plain data, for the state snapshot (the share-key
/// cache is recomputed on demand).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BeaconRoundSnapshot {
    epoch: u64,
    message: [u8; 40],
    public: Vec<PublicKeyBytes>,
    member_slots: Vec<(u32, u32)>,
    partials_open: u64,
    partials: Vec<(u32, SignatureBytes)>,
}

impl BeaconRound {
    /// The round as plain data.
    pub fn to_snapshot(&self) -> BeaconRoundSnapshot {
        BeaconRoundSnapshot {
            epoch: self.epoch,
            message: self.message,
            public: self.public.to_bytes(),
            member_slots: self.member_slots.iter().map(|r| (r.start, r.end)).collect(),
            partials_open: self.partials_open,
            partials: self.partials.iter().map(|(&slot, sig)| (slot, sig.compress())).collect(),
        }
    }

    /// The round from [`BeaconRound::to_snapshot`]; every point is checked.
    pub fn from_snapshot(s: &BeaconRoundSnapshot) -> Result<Self, ThresholdError> {
        let public = PublicPolynomial::from_bytes(&s.public)?;
        let member_slots: Vec<Range<u32>> = s.member_slots.iter().map(|&(a, b)| a..b).collect();
        let slots = member_slots.iter().map(|r| r.end).max().unwrap_or(0);
        let mut partials = BTreeMap::new();
        for &(slot, ref sig) in &s.partials {
            if slot >= slots {
                return Err(ThresholdError::UnknownSlot { slot, slots });
            }
            let sig = Signature::sig_validate(sig, true)
                .map_err(|e| ThresholdError::BadPartial { slot, source: CryptoError::BadSignature(e) })?;
            partials.insert(slot, sig);
        }
        Ok(Self {
            epoch: s.epoch,
            message: s.message,
            public,
            member_slots,
            slots,
            partials_open: s.partials_open,
            partials,
            share_keys: BTreeMap::new(),
        })
    }
}

/// A produced beacon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Beacon {
    /// `σ_e`.
    pub signature: SignatureBytes,
    /// `beacon_e = H(σ_e)`.
    pub value: Hash32,
}

/// A partial that passed the cheap checks, waiting for the pairing check.
struct Candidate {
    message: usize,
    slot: u32,
    key: PublicKey,
    sig: Signature,
}

impl BeaconRound {
    /// The round of `epoch` chained on `previous`, for the DKG's `public`
    /// polynomial and each member's slots, accepting partials from `partials_open`.
    pub fn new(
        epoch: u64,
        previous: &Hash32,
        public: PublicPolynomial,
        member_slots: Vec<Range<u32>>,
        partials_open: u64,
    ) -> Self {
        let slots = member_slots.iter().map(|r| r.end).max().unwrap_or(0);
        Self {
            epoch,
            message: beacon_message(epoch, previous),
            public,
            member_slots,
            slots,
            partials_open,
            partials: BTreeMap::new(),
            share_keys: BTreeMap::new(),
        }
    }

    /// Computes every slot's share public key now (one MSM of `t` points
    /// each), off the path of the blocks that carry partials.
    pub fn precompute_share_keys(&mut self) {
        for slot in 0..self.slots {
            self.share_keys.entry(slot).or_insert_with(|| self.public.share_public_key(slot));
        }
    }

    /// The message partials sign.
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// Verifies and records one member's partials at `height`; nothing is
    /// recorded when one of them is invalid.
    pub fn add(&mut self, height: u64, member: u32, msg: &BeaconPartials) -> Result<(), BeaconError> {
        self.add_block(height, &[(member, msg)]).remove(0)
    }

    /// Verifies and records the partials of one block: `(sender, message)`
    /// in block order. Returns one result per message; a message is recorded
    /// whole or not at all.
    pub fn add_block(
        &mut self,
        height: u64,
        msgs: &[(u32, &BeaconPartials)],
    ) -> Vec<Result<(), BeaconError>> {
        let mut results: Vec<Result<(), BeaconError>> = Vec::with_capacity(msgs.len());
        let mut candidates = Vec::new();
        let mut claimed = BTreeSet::new();
        for (index, &(member, msg)) in msgs.iter().enumerate() {
            let before = candidates.len();
            let checked = self.precheck(height, member, msg, &mut claimed, index, &mut candidates);
            if checked.is_err() {
                candidates.truncate(before);
            }
            results.push(checked);
        }
        let keys: Vec<PublicKey> = candidates.iter().map(|c| c.key).collect();
        let sigs: Vec<Signature> = candidates.iter().map(|c| c.sig).collect();
        if !verify_batch(Domain::BeaconShare, &self.message, &keys, &sigs) {
            // Someone sent a bad partial: check each one to find whose.
            for c in &candidates {
                if results[c.message].is_ok() {
                    let sig = c.sig.compress();
                    if let Err(source) = verify_parsed(Domain::BeaconShare, &c.key, &self.message, &sig) {
                        results[c.message] = Err(ThresholdError::BadPartial { slot: c.slot, source }.into());
                    }
                }
            }
        }
        for c in candidates {
            if results[c.message].is_ok() {
                self.partials.insert(c.slot, c.sig);
            }
        }
        results
    }

    /// The checks short of the pairing; pushes the message's partials onto `out`.
    fn precheck(
        &mut self,
        height: u64,
        member: u32,
        msg: &BeaconPartials,
        claimed: &mut BTreeSet<u32>,
        index: usize,
        out: &mut Vec<Candidate>,
    ) -> Result<(), BeaconError> {
        if msg.epoch != self.epoch {
            return Err(BeaconError::WrongEpoch { found: msg.epoch, expected: self.epoch });
        }
        if height < self.partials_open {
            let (from, to) = (self.partials_open, u64::MAX);
            return Err(BeaconError::OutsideWindow { what: "beacon partial", height, from, to });
        }
        let owned = self
            .member_slots
            .get(member as usize)
            .cloned()
            .ok_or(BeaconError::UnknownHost { host: member, hosts: self.member_slots.len() })?;
        let mut mine = BTreeSet::new();
        for p in &msg.partials {
            if !owned.contains(&p.slot) {
                return Err(ThresholdError::UnknownSlot { slot: p.slot, slots: self.slots }.into());
            }
            if self.partials.contains_key(&p.slot) || claimed.contains(&p.slot) || !mine.insert(p.slot) {
                return Err(BeaconError::Duplicate { what: "beacon partial", from: p.slot });
            }
            let sig = Signature::sig_validate(&p.signature, true).map_err(|e| {
                ThresholdError::BadPartial { slot: p.slot, source: CryptoError::BadSignature(e) }
            })?;
            let key = *self.share_keys.entry(p.slot).or_insert_with(|| self.public.share_public_key(p.slot));
            out.push(Candidate { message: index, slot: p.slot, key, sig });
        }
        claimed.extend(mine);
        Ok(())
    }

    /// Slots with a recorded partial.
    pub fn partial_count(&self) -> usize {
        self.partials.len()
    }

    /// The beacon, once `t` partials are in: the first `t` slots recorded.
    pub fn finish(&self) -> Result<Beacon, BeaconError> {
        let threshold = self.public.threshold();
        if self.partials.len() < threshold {
            let have = self.partials.len();
            return Err(ThresholdError::NotEnoughPartials { have, threshold }.into());
        }
        let (xs, sigs): (Vec<u64>, Vec<Signature>) =
            self.partials.iter().take(threshold).map(|(&slot, &sig)| (u64::from(slot) + 1, sig)).unzip();
        let signature = combine(&xs, &sigs);
        Ok(Beacon { signature, value: beacon_value(&signature) })
    }
}

/// `H("gonka/seed-commit", u64_le(e), pk, r)`: binds the value to its host
/// and epoch, so a commitment cannot be copied or replayed.
pub fn seed_commitment(epoch: u64, host: &PublicKeyBytes, value: &[u8; 32]) -> Hash32 {
    tagged_hash("gonka/seed-commit", &[&epoch.to_le_bytes(), host, value])
}

/// A host's commitment to its Sprint seed contribution.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedCommit {
    /// The epoch.
    pub epoch: u64,
    /// [`seed_commitment`] of the value.
    pub commitment: Hash32,
}

/// A host's opening of its commitment.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedReveal {
    /// The epoch.
    pub epoch: u64,
    /// The committed value `r_i`.
    pub value: [u8; 32],
}

impl WireMessage for SeedCommit {
    const KIND: &'static str = "seed commit";
    const MAX_BYTES: usize = 64;
    fn check_bounds(&self) -> Result<(), WireError> {
        Ok(())
    }
}

impl WireMessage for SeedReveal {
    const KIND: &'static str = "seed reveal";
    const MAX_BYTES: usize = 64;
    fn check_bounds(&self) -> Result<(), WireError> {
        Ok(())
    }
}

/// Heights of the commit–reveal round.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedWindows {
    /// The epoch.
    pub epoch: u64,
    /// Last height a commitment is accepted.
    pub commit_deadline: u64,
    /// First height a reveal is accepted (after the commit deadline).
    pub reveal_open: u64,
    /// Last height a reveal is accepted; beacon partials open after it.
    pub reveal_close: u64,
}

/// The commit–reveal round of one epoch (plain data: the state snapshot
/// stores it as it is).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SeedRound {
    windows: SeedWindows,
    hosts: Vec<PublicKeyBytes>,
    commits: BTreeMap<u32, Hash32>,
    reveals: BTreeMap<u32, [u8; 32]>,
}

/// The Sprint seed and who failed to reveal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedOutcome {
    /// `seed_e`.
    pub sprint_seed: Hash32,
    /// Hosts that revealed, ascending.
    pub revealed: Vec<u32>,
    /// Hosts that committed and did not reveal in the window, ascending.
    pub non_revealers: Vec<u32>,
}

impl SeedRound {
    /// A round over the epoch's ordered host list.
    pub fn new(windows: SeedWindows, hosts: Vec<PublicKeyBytes>) -> Result<Self, BeaconError> {
        if !(windows.commit_deadline < windows.reveal_open && windows.reveal_open <= windows.reveal_close) {
            return Err(BeaconError::BadConfig("need commit_deadline < reveal_open ≤ reveal_close"));
        }
        Ok(Self { windows, hosts, commits: BTreeMap::new(), reveals: BTreeMap::new() })
    }

    /// Height from which beacon partials may be accepted.
    pub fn partials_open(&self) -> u64 {
        self.windows.reveal_close + 1
    }

    fn check(&self, epoch: u64, host: u32) -> Result<(), BeaconError> {
        if epoch != self.windows.epoch {
            return Err(BeaconError::WrongEpoch { found: epoch, expected: self.windows.epoch });
        }
        if host as usize >= self.hosts.len() {
            return Err(BeaconError::UnknownHost { host, hosts: self.hosts.len() });
        }
        Ok(())
    }

    /// Records host `host`'s commitment at `height`.
    pub fn commit(&mut self, height: u64, host: u32, msg: &SeedCommit) -> Result<(), BeaconError> {
        self.check(msg.epoch, host)?;
        if height > self.windows.commit_deadline {
            let to = self.windows.commit_deadline;
            return Err(BeaconError::OutsideWindow { what: "seed commit", height, from: 0, to });
        }
        // The first commitment stands: a host may not change its mind.
        if self.commits.contains_key(&host) {
            return Err(BeaconError::Duplicate { what: "seed commit", from: host });
        }
        self.commits.insert(host, msg.commitment);
        Ok(())
    }

    /// Records host `host`'s reveal at `height`, if it opens its commitment.
    pub fn reveal(&mut self, height: u64, host: u32, msg: &SeedReveal) -> Result<(), BeaconError> {
        self.check(msg.epoch, host)?;
        let (from, to) = (self.windows.reveal_open, self.windows.reveal_close);
        if height < from || height > to {
            return Err(BeaconError::OutsideWindow { what: "seed reveal", height, from, to });
        }
        let expected = seed_commitment(self.windows.epoch, &self.hosts[host as usize], &msg.value);
        if self.commits.get(&host) != Some(&expected) {
            return Err(BeaconError::BadReveal { host });
        }
        if self.reveals.insert(host, msg.value).is_some() {
            return Err(BeaconError::Duplicate { what: "seed reveal", from: host });
        }
        Ok(())
    }

    /// The Sprint seed from the beacon signature `σ_e` and the reveals, once
    /// `height` is past the reveal window.
    pub fn finish(&self, height: u64, sigma: &SignatureBytes) -> Result<SeedOutcome, BeaconError> {
        if height <= self.windows.reveal_close {
            let (from, to) = (self.windows.reveal_close + 1, u64::MAX);
            return Err(BeaconError::OutsideWindow { what: "seed finish", height, from, to });
        }
        let parts: Vec<[u8; 36]> = self
            .reveals
            .iter()
            .map(|(&host, value)| {
                let mut part = [0u8; 36];
                part[..4].copy_from_slice(&host.to_le_bytes());
                part[4..].copy_from_slice(value);
                part
            })
            .collect();
        let mut refs: Vec<&[u8]> = vec![sigma];
        refs.extend(parts.iter().map(|p| p.as_slice()));
        let non_revealers = self.commits.keys().copied().filter(|h| !self.reveals.contains_key(h)).collect();
        Ok(SeedOutcome {
            sprint_seed: tagged_hash("gonka/sprint-seed", &refs),
            revealed: self.reveals.keys().copied().collect(),
            non_revealers,
        })
    }
}
