//! The per-epoch distributed key generation of the beacon's group key:
//! Joint-Feldman (Pedersen's DKG) among the highest-weight hosts, with share
//! slots in proportion to weight.
//!
//! Every committee member deals: it picks a secret polynomial `f_i` of `t`
//! coefficients, publishes the commitments `C_{i,k} = g1^{a_{i,k}}`, and
//! encrypts `f_i(s + 1)` to the owner of each slot `s`. Owners check their
//! shares against the commitments and complain about bad ones; the dealer
//! answers each complaint by publishing the complainer's shares in the clear,
//! which everyone checks. Dealers that did not deal, left a complaint
//! unanswered, or answered it with a bad share are disqualified. The group
//! secret is `Σ f_i(0)` over the qualified dealers, its public key
//! `Σ C_{i,0}`; slot `s` holds `Σ f_i(s + 1)`.
//!
//! ```text
//!  height ──►  ≤ deal_deadline   ≤ complaint_deadline   ≤ justification_deadline   > justification_deadline
//!              DkgDeal            DkgComplaint           DkgJustification           finish(): DkgOutcome
//! ```
//!
//! [`Dkg`] is the chain's view: a deterministic state machine driven only by
//! messages (whose sender the carrying transaction authenticates) and the
//! current height. [`Dealing`] and [`open_shares`] are a member's local side;
//! their randomness is passed in.
//!
//! Slots are allocated by the largest-remainder rule ([`allocate_slots`]).
//! Share encryption: `share ⊕ H("gonka/dkg-share-pad", DH, epoch, dealer,
//! owner, slot)`, where `DH = pk_owner^{sk_dealer} = pk_dealer^{sk_owner}` on
//! the members' host keys.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use blst::min_pk::PublicKey;
use gonka_kernels::encoding::tagged_hash;
use rkyv::{Archive, Deserialize, Serialize};

use super::keys::HostKey;
use super::scalar::{Scalar, g1_mul_secret};
use super::threshold::{MAX_SLOTS, PublicPolynomial, ShareKey, ThresholdError};
use super::wire::{WireError, WireMessage, bound};
use super::{CryptoError, PublicKeyBytes};

/// Most members of a DKG committee.
pub const MAX_COMMITTEE: usize = 256;
/// Largest encoded DKG message: a deal of [`MAX_SLOTS`] shares and commitments plus framing.
pub const MAX_DKG_MESSAGE_BYTES: usize = MAX_SLOTS as usize * (32 + 48) + 256;
/// Tag of the hash that derives a dealer's coefficients from its seed.
const COEFFICIENT_DST: &[u8] = b"GONKA-V1-DKG-COEFFICIENT";

/// Parameters of one DKG run.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct DkgConfig {
    /// The epoch whose beacon key this is; every message names it.
    pub epoch: u64,
    /// Share slots `N`, split among members by weight.
    pub slots: u32,
    /// Partials needed to sign, `t`; [`DkgConfig::default_threshold`] by default.
    pub threshold: u32,
    /// Last height at which a deal is accepted.
    pub deal_deadline: u64,
    /// Last height at which a complaint is accepted.
    pub complaint_deadline: u64,
    /// Last height at which a justification is accepted.
    pub justification_deadline: u64,
}

impl DkgConfig {
    /// More than half of the slots: `⌊N/2⌋ + 1`.
    pub fn default_threshold(slots: u32) -> u32 {
        slots / 2 + 1
    }
}

/// A committee member: its host key and weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DkgMember {
    /// Host public key (proof of possession checked at registration).
    pub public_key: PublicKeyBytes,
    /// Weight, which sets its number of slots.
    pub weight: u64,
}

/// One round's message; the carrying transaction names and authenticates the sender.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum DkgMessage {
    /// A dealer's commitments and encrypted shares.
    Deal(DkgDeal),
    /// A slot owner's claim that a dealer's shares to it are bad.
    Complaint(DkgComplaint),
    /// A dealer's answer: the complainer's shares in the clear.
    Justification(DkgJustification),
}

/// Round 1: commitments `C_k` (`t` of them) and one encrypted share per slot.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DkgDeal {
    /// The DKG's epoch.
    pub epoch: u64,
    /// `g1^{a_k}`, constant term first.
    pub commitments: Vec<PublicKeyBytes>,
    /// `f(s + 1) ⊕ pad` for every slot `s`, little-endian.
    pub encrypted_shares: Vec<[u8; 32]>,
}

/// Round 2: the sender's shares from `dealer` are bad.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DkgComplaint {
    /// The DKG's epoch.
    pub epoch: u64,
    /// The accused dealer.
    pub dealer: u32,
}

/// Round 3: the sender (a dealer) publishes `complainer`'s shares.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DkgJustification {
    /// The DKG's epoch.
    pub epoch: u64,
    /// The member that complained.
    pub complainer: u32,
    /// `f(s + 1)` for each of the complainer's slots in order, little-endian.
    pub shares: Vec<[u8; 32]>,
}

impl WireMessage for DkgMessage {
    const KIND: &'static str = "DKG message";
    const MAX_BYTES: usize = MAX_DKG_MESSAGE_BYTES;
    fn check_bounds(&self) -> Result<(), WireError> {
        let max = MAX_SLOTS as usize;
        match self {
            DkgMessage::Deal(d) => {
                bound(Self::KIND, "commitments", d.commitments.len(), max)?;
                bound(Self::KIND, "encrypted_shares", d.encrypted_shares.len(), max)
            }
            DkgMessage::Complaint(_) => Ok(()),
            DkgMessage::Justification(j) => bound(Self::KIND, "shares", j.shares.len(), max),
        }
    }
}

/// Why a dealer is out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disqualification {
    /// No valid deal by the deal deadline.
    NoDeal,
    /// A complaint left unanswered by the justification deadline.
    UnansweredComplaint {
        /// Who complained.
        complainer: u32,
    },
    /// A justification whose shares do not match the commitments.
    BadJustification {
        /// Who complained.
        complainer: u32,
    },
}

/// Errors of the DKG.
#[derive(Debug, thiserror::Error)]
pub enum DkgError {
    /// Parameters or committee are unusable.
    #[error("invalid DKG configuration: {0}")]
    BadConfig(String),
    /// A member's key is invalid.
    #[error("member {index} has an invalid public key: {source}")]
    BadMember {
        /// The member.
        index: usize,
        /// Why.
        #[source]
        source: CryptoError,
    },
    /// The sender is not a member.
    #[error("sender {sender} is not one of the {members} members")]
    UnknownSender {
        /// The sender.
        sender: u32,
        /// Committee size.
        members: usize,
    },
    /// A message for another epoch's DKG.
    #[error("message for epoch {found}, this DKG is epoch {expected}")]
    WrongEpoch {
        /// In the message.
        found: u64,
        /// This DKG's.
        expected: u64,
    },
    /// Past the round's deadline.
    #[error("{round} at height {height} is past its deadline {deadline}")]
    Late {
        /// The round.
        round: &'static str,
        /// Current height.
        height: u64,
        /// Its deadline.
        deadline: u64,
    },
    /// `finish` before the last deadline passed.
    #[error("the DKG finishes after height {deadline}; it is {height}")]
    NotFinished {
        /// Current height.
        height: u64,
        /// The justification deadline.
        deadline: u64,
    },
    /// A deal of the wrong shape or with invalid commitments.
    #[error("deal of member {dealer} rejected: {why}")]
    BadDeal {
        /// The dealer.
        dealer: u32,
        /// What was wrong.
        why: String,
    },
    /// The message repeats one already recorded.
    #[error("duplicate {round} from member {sender}")]
    Duplicate {
        /// The round.
        round: &'static str,
        /// The sender.
        sender: u32,
    },
    /// A complaint or justification that does not fit the recorded state.
    #[error("{round} from member {sender} about member {about} not accepted: {why}")]
    NotAccepted {
        /// The round.
        round: &'static str,
        /// The sender.
        sender: u32,
        /// The other member.
        about: u32,
        /// Why.
        why: &'static str,
    },
    /// A share sent to us does not match its dealer's commitments.
    #[error("dealer {dealer}'s share for slot {slot} does not match its commitments")]
    BadShare {
        /// The dealer.
        dealer: u32,
        /// The slot.
        slot: u32,
    },
    /// Every dealer was disqualified.
    #[error("no qualified dealer")]
    NoQualifiedDealers,
    /// Polynomial arithmetic failed.
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
}

/// Slots per member in proportion to weight, summing to `slots`: member `i`
/// gets `⌊w_i·N/W⌋`, and the slots left over go one each to the largest
/// remainders `w_i·N mod W`, ties to the earlier member (Hamilton's rule:
/// every count is within one slot of its exact quota).
pub fn allocate_slots(weights: &[u64], slots: u32) -> Vec<u32> {
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let n = u128::from(slots);
    let mut counts: Vec<u32> = weights
        .iter()
        .map(|&w| u32::try_from(u128::from(w) * n / total).expect("a quota is at most N"))
        .collect();
    let left = slots - counts.iter().sum::<u32>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(u128::from(weights[i]) * n % total), i));
    for &i in order.iter().take(left as usize) {
        counts[i] += 1;
    }
    counts
}

/// Indices of the `size` highest-weight hosts with non-zero weight, ties to
/// the earlier host, returned in host order.
pub fn committee(weights: &[u64], size: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(weights[i]), i));
    order.truncate(size);
    order.sort_unstable();
    order
}

#[derive(Clone, Debug)]
struct Member {
    key: PublicKey,
    key_bytes: PublicKeyBytes,
    slots: Range<u32>,
}

#[derive(Clone, Debug)]
struct RecordedDeal {
    poly: PublicPolynomial,
    encrypted_shares: Vec<[u8; 32]>,
}

/// The chain's view of one DKG run.
#[derive(Clone, Debug)]
pub struct Dkg {
    config: DkgConfig,
    members: Vec<Member>,
    deals: Vec<Option<RecordedDeal>>,
    /// `(dealer, complainer)`.
    complaints: BTreeSet<(u32, u32)>,
    /// Valid justifications: `(dealer, complainer)` → the complainer's shares.
    justified: BTreeMap<(u32, u32), Vec<Scalar>>,
    /// Dealers caught by a bad justification, with the complainer.
    bad_justification: BTreeMap<u32, u32>,
}

/// The result of a finished DKG.
#[derive(Clone, Debug)]
pub struct DkgOutcome {
    /// Qualified dealers, ascending.
    pub qualified: Vec<u32>,
    /// Disqualified dealers and why, ascending.
    pub disqualified: Vec<(u32, Disqualification)>,
    /// The group's public polynomial; its constant term is the group key.
    pub public: PublicPolynomial,
    /// Each member's slots.
    pub slots: Vec<Range<u32>>,
}

impl Dkg {
    /// A fresh run for `members` (in host order).
    pub fn new(config: DkgConfig, members: &[DkgMember]) -> Result<Self, DkgError> {
        let bad = |s: String| Err(DkgError::BadConfig(s));
        if members.is_empty() || members.len() > MAX_COMMITTEE {
            return bad(format!("{} members, expected 1..={MAX_COMMITTEE}", members.len()));
        }
        if config.slots == 0 || config.slots > MAX_SLOTS {
            return bad(format!("{} slots, expected 1..={MAX_SLOTS}", config.slots));
        }
        if config.threshold == 0 || config.threshold > config.slots {
            return bad(format!("threshold {} outside 1..={}", config.threshold, config.slots));
        }
        if !(config.deal_deadline < config.complaint_deadline
            && config.complaint_deadline < config.justification_deadline)
        {
            return bad("deadlines must increase: deal < complaint < justification".into());
        }
        let weights: Vec<u64> = members.iter().map(|m| m.weight).collect();
        if weights.iter().all(|&w| w == 0) {
            return bad("total weight is zero".into());
        }
        let counts = allocate_slots(&weights, config.slots);
        let mut seen = BTreeSet::new();
        let mut start = 0u32;
        let mut out = Vec::with_capacity(members.len());
        for (index, (m, count)) in members.iter().zip(counts).enumerate() {
            if !seen.insert(m.public_key) {
                return bad(format!("member {index} repeats an earlier key"));
            }
            let key = PublicKey::key_validate(&m.public_key)
                .map_err(|e| DkgError::BadMember { index, source: CryptoError::BadPublicKey(e) })?;
            out.push(Member { key, key_bytes: m.public_key, slots: start..start + count });
            start += count;
        }
        Ok(Self {
            config,
            deals: vec![None; members.len()],
            members: out,
            complaints: BTreeSet::new(),
            justified: BTreeMap::new(),
            bad_justification: BTreeMap::new(),
        })
    }

    /// The parameters.
    pub fn config(&self) -> &DkgConfig {
        &self.config
    }

    /// Member `i`'s slots.
    pub fn slots_of(&self, member: u32) -> Option<Range<u32>> {
        self.members.get(member as usize).map(|m| m.slots.clone())
    }

    /// Number of members.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// Members that complained about `dealer`, ascending (each wants a justification).
    pub fn complainers_of(&self, dealer: u32) -> Vec<u32> {
        self.complaints.range((dealer, 0)..=(dealer, u32::MAX)).map(|&(_, c)| c).collect()
    }

    /// Member `i`'s public polynomial, once it has dealt.
    pub fn dealt_polynomial(&self, dealer: u32) -> Option<&PublicPolynomial> {
        self.deals.get(dealer as usize)?.as_ref().map(|d| &d.poly)
    }

    /// Applies a message from member `sender` carried in the block at `height`.
    pub fn apply(&mut self, height: u64, sender: u32, msg: &DkgMessage) -> Result<(), DkgError> {
        if sender as usize >= self.members.len() {
            return Err(DkgError::UnknownSender { sender, members: self.members.len() });
        }
        let epoch = match msg {
            DkgMessage::Deal(d) => d.epoch,
            DkgMessage::Complaint(c) => c.epoch,
            DkgMessage::Justification(j) => j.epoch,
        };
        if epoch != self.config.epoch {
            return Err(DkgError::WrongEpoch { found: epoch, expected: self.config.epoch });
        }
        match msg {
            DkgMessage::Deal(d) => self.apply_deal(height, sender, d),
            DkgMessage::Complaint(c) => self.apply_complaint(height, sender, c.dealer),
            DkgMessage::Justification(j) => self.apply_justification(height, sender, j),
        }
    }

    fn late(round: &'static str, height: u64, deadline: u64) -> Result<(), DkgError> {
        if height > deadline { Err(DkgError::Late { round, height, deadline }) } else { Ok(()) }
    }

    fn apply_deal(&mut self, height: u64, dealer: u32, deal: &DkgDeal) -> Result<(), DkgError> {
        Self::late("deal", height, self.config.deal_deadline)?;
        if self.deals[dealer as usize].is_some() {
            return Err(DkgError::Duplicate { round: "deal", sender: dealer });
        }
        let bad = |why: String| DkgError::BadDeal { dealer, why };
        if deal.commitments.len() != self.config.threshold as usize {
            return Err(bad(format!(
                "{} commitments, expected {}",
                deal.commitments.len(),
                self.config.threshold
            )));
        }
        if deal.encrypted_shares.len() != self.config.slots as usize {
            return Err(bad(format!(
                "{} shares, expected {}",
                deal.encrypted_shares.len(),
                self.config.slots
            )));
        }
        let coefficients = deal
            .commitments
            .iter()
            .enumerate()
            .map(|(k, c)| PublicKey::key_validate(c).map_err(|e| bad(format!("commitment {k}: {e:?}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let poly = PublicPolynomial::new(coefficients)?;
        self.deals[dealer as usize] =
            Some(RecordedDeal { poly, encrypted_shares: deal.encrypted_shares.clone() });
        Ok(())
    }

    fn apply_complaint(&mut self, height: u64, complainer: u32, dealer: u32) -> Result<(), DkgError> {
        Self::late("complaint", height, self.config.complaint_deadline)?;
        let refuse =
            |why| DkgError::NotAccepted { round: "complaint", sender: complainer, about: dealer, why };
        if dealer as usize >= self.members.len() || self.deals[dealer as usize].is_none() {
            return Err(refuse("the dealer has no recorded deal"));
        }
        if dealer == complainer {
            return Err(refuse("a dealer cannot complain about itself"));
        }
        if self.members[complainer as usize].slots.is_empty() {
            return Err(refuse("the complainer holds no slots"));
        }
        if !self.complaints.insert((dealer, complainer)) {
            return Err(DkgError::Duplicate { round: "complaint", sender: complainer });
        }
        Ok(())
    }

    fn apply_justification(
        &mut self,
        height: u64,
        dealer: u32,
        j: &DkgJustification,
    ) -> Result<(), DkgError> {
        Self::late("justification", height, self.config.justification_deadline)?;
        let key = (dealer, j.complainer);
        let refuse =
            |why| DkgError::NotAccepted { round: "justification", sender: dealer, about: j.complainer, why };
        if !self.complaints.contains(&key) {
            return Err(refuse("no such complaint"));
        }
        if self.justified.contains_key(&key) || self.bad_justification.contains_key(&dealer) {
            return Err(DkgError::Duplicate { round: "justification", sender: dealer });
        }
        let slots = self.members[j.complainer as usize].slots.clone();
        let poly =
            &self.deals[dealer as usize].as_ref().expect("complaints are only about recorded deals").poly;
        let shares: Option<Vec<Scalar>> = (j.shares.len() == slots.len())
            .then(|| {
                slots
                    .zip(&j.shares)
                    .map(|(slot, bytes)| Scalar::from_le_bytes(bytes).filter(|s| poly.check_share(slot, s)))
                    .collect()
            })
            .flatten();
        match shares {
            Some(shares) => {
                self.justified.insert(key, shares);
            }
            // A wrong answer is a valid message whose content disqualifies the dealer.
            None => {
                self.bad_justification.insert(dealer, j.complainer);
            }
        }
        Ok(())
    }

    /// Why `dealer` is out, or `None` if it is qualified (at the end of the run).
    fn disqualification(&self, dealer: u32) -> Option<Disqualification> {
        if self.deals[dealer as usize].is_none() {
            return Some(Disqualification::NoDeal);
        }
        if let Some(&complainer) = self.bad_justification.get(&dealer) {
            return Some(Disqualification::BadJustification { complainer });
        }
        self.complaints
            .range((dealer, 0)..=(dealer, u32::MAX))
            .find(|key| !self.justified.contains_key(key))
            .map(|&(_, complainer)| Disqualification::UnansweredComplaint { complainer })
    }

    /// The outcome, once `height` is past the justification deadline.
    pub fn finish(&self, height: u64) -> Result<DkgOutcome, DkgError> {
        let deadline = self.config.justification_deadline;
        if height <= deadline {
            return Err(DkgError::NotFinished { height, deadline });
        }
        let mut qualified = Vec::new();
        let mut disqualified = Vec::new();
        for dealer in 0..self.members.len() as u32 {
            match self.disqualification(dealer) {
                None => qualified.push(dealer),
                Some(why) => disqualified.push((dealer, why)),
            }
        }
        if qualified.is_empty() {
            return Err(DkgError::NoQualifiedDealers);
        }
        let public = PublicPolynomial::sum(qualified.iter().filter_map(|&d| self.dealt_polynomial(d)))?;
        let slots = self.members.iter().map(|m| m.slots.clone()).collect();
        Ok(DkgOutcome { qualified, disqualified, public, slots })
    }

    fn pad(&self, dh: &PublicKey, dealer: u32, owner: u32, slot: u32) -> [u8; 32] {
        tagged_hash(
            "gonka/dkg-share-pad",
            &[
                &dh.compress(),
                &self.config.epoch.to_le_bytes(),
                &self.members[dealer as usize].key_bytes,
                &self.members[owner as usize].key_bytes,
                &slot.to_le_bytes(),
            ],
        )
    }

    fn owner_of(&self, slot: u32) -> u32 {
        let i = self.members.partition_point(|m| m.slots.end <= slot);
        u32::try_from(i).expect("at most MAX_COMMITTEE members")
    }
}

fn xor(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// A dealer's secret polynomial (local; never leaves the host).
pub struct Dealing {
    coefficients: Vec<Scalar>,
}

impl std::fmt::Debug for Dealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dealing(degree {})", self.coefficients.len().saturating_sub(1))
    }
}

impl Dealing {
    /// The polynomial of `threshold` coefficients derived from 32 bytes of
    /// fresh randomness (passed in: the caller draws it from the OS).
    pub fn from_seed(seed: &[u8; 32], threshold: u32) -> Self {
        let coefficients = (0..threshold)
            .map(|k| Scalar::hash_to(&[seed.as_slice(), &k.to_le_bytes()].concat(), COEFFICIENT_DST))
            .collect();
        Self { coefficients }
    }

    /// `f(slot + 1)`.
    pub fn share(&self, slot: u32) -> Scalar {
        let x = Scalar::from_u64(u64::from(slot) + 1);
        self.coefficients.iter().rev().fold(Scalar::ZERO, |acc, &a| acc * x + a)
    }

    /// The secret `f(0)` this dealer contributes.
    pub fn constant(&self) -> Scalar {
        self.coefficients[0]
    }

    /// This dealer's round-1 message in `dkg`, as member `dealer` with `key`.
    pub fn deal(&self, dkg: &Dkg, dealer: u32, key: &HostKey) -> DkgDeal {
        let commitments =
            self.coefficients.iter().map(|a| a.public_key().map_or([0u8; 48], |pk| pk.compress())).collect();
        let sk = key.secret_scalar();
        let mut encrypted_shares = Vec::with_capacity(dkg.config.slots as usize);
        let mut owner_dh: Option<(u32, PublicKey)> = None;
        for slot in 0..dkg.config.slots {
            let owner = dkg.owner_of(slot);
            let dh = match owner_dh {
                Some((o, dh)) if o == owner => dh,
                _ => g1_mul_secret(&dkg.members[owner as usize].key, &sk),
            };
            owner_dh = Some((owner, dh));
            encrypted_shares.push(xor(self.share(slot).to_le_bytes(), dkg.pad(&dh, dealer, owner, slot)));
        }
        DkgDeal { epoch: dkg.config.epoch, commitments, encrypted_shares }
    }

    /// The round-3 answer to `complainer`'s complaint.
    pub fn justify(&self, dkg: &Dkg, complainer: u32) -> DkgJustification {
        let slots = dkg.slots_of(complainer).unwrap_or(0..0);
        DkgJustification {
            epoch: dkg.config.epoch,
            complainer,
            shares: slots.map(|s| self.share(s).to_le_bytes()).collect(),
        }
    }
}

/// Member `me`'s shares from `dealer`'s recorded deal, decrypted with `key`
/// and checked against the commitments. An error means: complain.
pub fn open_shares(dkg: &Dkg, me: u32, key: &HostKey, dealer: u32) -> Result<Vec<Scalar>, DkgError> {
    let slots = dkg.slots_of(me).ok_or(DkgError::UnknownSender { sender: me, members: dkg.members() })?;
    let deal = dkg.deals.get(dealer as usize).and_then(Option::as_ref).ok_or(DkgError::NotAccepted {
        round: "open",
        sender: me,
        about: dealer,
        why: "the dealer has no recorded deal",
    })?;
    let dh = g1_mul_secret(&dkg.members[dealer as usize].key, &key.secret_scalar());
    slots
        .map(|slot| {
            let plain = xor(deal.encrypted_shares[slot as usize], dkg.pad(&dh, dealer, me, slot));
            Scalar::from_le_bytes(&plain)
                .filter(|s| deal.poly.check_share(slot, s))
                .ok_or(DkgError::BadShare { dealer, slot })
        })
        .collect()
}

/// Complaints member `me` should file: one per recorded deal whose shares to it are bad.
pub fn complaints(dkg: &Dkg, me: u32, key: &HostKey) -> Vec<DkgComplaint> {
    (0..dkg.members() as u32)
        .filter(|&d| d != me && dkg.deals[d as usize].is_some())
        .filter(|&d| matches!(open_shares(dkg, me, key, d), Err(DkgError::BadShare { .. })))
        .map(|dealer| DkgComplaint { epoch: dkg.config.epoch, dealer })
        .collect()
}

/// Member `me`'s final share keys: for each slot, the sum over qualified
/// dealers of their shares (a justified share where it complained).
pub fn group_shares(
    dkg: &Dkg,
    outcome: &DkgOutcome,
    me: u32,
    key: &HostKey,
) -> Result<Vec<ShareKey>, DkgError> {
    let slots = dkg.slots_of(me).ok_or(DkgError::UnknownSender { sender: me, members: dkg.members() })?;
    let mut sums = vec![Scalar::ZERO; slots.len()];
    for &dealer in &outcome.qualified {
        let shares = match dkg.justified.get(&(dealer, me)) {
            Some(shares) => shares.clone(),
            None => open_shares(dkg, me, key, dealer)?,
        };
        for (sum, s) in sums.iter_mut().zip(shares) {
            *sum = *sum + s;
        }
    }
    Ok(slots.zip(sums).map(|(slot, s)| ShareKey::new(slot, s)).collect())
}

/// A recorded deal as plain data: commitments and encrypted shares.
type DealBytes = (Vec<PublicKeyBytes>, Vec<[u8; 32]>);
/// A valid justification as plain data: `(dealer, complainer)` and the shares.
type JustifiedBytes = ((u32, u32), Vec<[u8; 32]>);

/// A [`Dkg`] as plain data, for the state snapshot: points compressed,
/// scalars as little-endian bytes.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DkgSnapshot {
    config: DkgConfig,
    /// `(key, first slot, end slot)` per member.
    members: Vec<(PublicKeyBytes, u32, u32)>,
    /// Per member: its deal's commitments and encrypted shares.
    deals: Vec<Option<DealBytes>>,
    complaints: Vec<(u32, u32)>,
    justified: Vec<JustifiedBytes>,
    bad_justification: Vec<(u32, u32)>,
}

/// A [`DkgOutcome`] as plain data. Disqualifications as `(dealer, code, complainer)`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DkgOutcomeSnapshot {
    qualified: Vec<u32>,
    disqualified: Vec<(u32, u8, u32)>,
    public: Vec<PublicKeyBytes>,
    slots: Vec<(u32, u32)>,
}

impl Dkg {
    /// The run as plain data.
    pub fn to_snapshot(&self) -> DkgSnapshot {
        DkgSnapshot {
            config: self.config,
            members: self.members.iter().map(|m| (m.key_bytes, m.slots.start, m.slots.end)).collect(),
            deals: self
                .deals
                .iter()
                .map(|d| d.as_ref().map(|d| (d.poly.to_bytes(), d.encrypted_shares.clone())))
                .collect(),
            complaints: self.complaints.iter().copied().collect(),
            justified: self
                .justified
                .iter()
                .map(|(&k, v)| (k, v.iter().map(|s| s.to_le_bytes()).collect()))
                .collect(),
            bad_justification: self.bad_justification.iter().map(|(&d, &c)| (d, c)).collect(),
        }
    }

    /// The run from [`Dkg::to_snapshot`]; every key, point and scalar is checked.
    pub fn from_snapshot(s: &DkgSnapshot) -> Result<Self, DkgError> {
        let bad = |why: &str| DkgError::BadConfig(format!("snapshot: {why}"));
        if s.members.is_empty() || s.members.len() > MAX_COMMITTEE || s.deals.len() != s.members.len() {
            return Err(bad("member and deal counts"));
        }
        let mut members = Vec::with_capacity(s.members.len());
        for (index, &(key_bytes, start, end)) in s.members.iter().enumerate() {
            let key = PublicKey::key_validate(&key_bytes)
                .map_err(|e| DkgError::BadMember { index, source: CryptoError::BadPublicKey(e) })?;
            if start > end || end > s.config.slots {
                return Err(bad("member slots"));
            }
            members.push(Member { key, key_bytes, slots: start..end });
        }
        let mut deals = Vec::with_capacity(s.deals.len());
        for d in &s.deals {
            deals.push(match d {
                None => None,
                Some((poly, shares)) => {
                    let poly = PublicPolynomial::from_bytes(poly).map_err(|e| bad(&e.to_string()))?;
                    Some(RecordedDeal { poly, encrypted_shares: shares.clone() })
                }
            });
        }
        let mut justified = BTreeMap::new();
        for (k, shares) in &s.justified {
            let shares = shares
                .iter()
                .map(Scalar::from_le_bytes)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("justified share is not a scalar"))?;
            justified.insert(*k, shares);
        }
        Ok(Self {
            config: s.config,
            members,
            deals,
            complaints: s.complaints.iter().copied().collect(),
            justified,
            bad_justification: s.bad_justification.iter().copied().collect(),
        })
    }
}

impl DkgOutcome {
    /// The outcome as plain data.
    pub fn to_snapshot(&self) -> DkgOutcomeSnapshot {
        let disqualified = self
            .disqualified
            .iter()
            .map(|&(d, why)| match why {
                Disqualification::NoDeal => (d, 0, 0),
                Disqualification::UnansweredComplaint { complainer } => (d, 1, complainer),
                Disqualification::BadJustification { complainer } => (d, 2, complainer),
            })
            .collect();
        DkgOutcomeSnapshot {
            qualified: self.qualified.clone(),
            disqualified,
            public: self.public.to_bytes(),
            slots: self.slots.iter().map(|r| (r.start, r.end)).collect(),
        }
    }

    /// The outcome from [`DkgOutcome::to_snapshot`].
    pub fn from_snapshot(s: &DkgOutcomeSnapshot) -> Result<Self, DkgError> {
        let bad = |why: String| DkgError::BadConfig(format!("outcome snapshot: {why}"));
        let disqualified = s
            .disqualified
            .iter()
            .map(|&(d, code, complainer)| match code {
                0 => Ok((d, Disqualification::NoDeal)),
                1 => Ok((d, Disqualification::UnansweredComplaint { complainer })),
                2 => Ok((d, Disqualification::BadJustification { complainer })),
                _ => Err(bad(format!("disqualification code {code}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            qualified: s.qualified.clone(),
            disqualified,
            public: PublicPolynomial::from_bytes(&s.public).map_err(|e| bad(e.to_string()))?,
            slots: s.slots.iter().map(|&(a, b)| a..b).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_weight_by_largest_remainder() {
        assert_eq!(allocate_slots(&[40, 30, 20, 10], 10), vec![4, 3, 2, 1]);
        // Quotas 3.33, 3.33, 3.33: the leftover slot goes to the earliest tie.
        assert_eq!(allocate_slots(&[1, 1, 1], 10), vec![4, 3, 3]);
        // Quotas 0.5, 9.5 … remainders decide; total is always N.
        assert_eq!(allocate_slots(&[1, 19], 10), vec![1, 9]);
        assert_eq!(allocate_slots(&[5, 0, 5], 3), vec![2, 0, 1]);
        for n in [1u32, 7, 100, 1024] {
            let w = [u64::MAX, 3, u64::MAX / 7, 1];
            let c = allocate_slots(&w, n);
            assert_eq!(c.iter().sum::<u32>(), n, "slots must sum to N");
        }
    }

    #[test]
    fn committee_takes_the_heaviest_in_host_order() {
        assert_eq!(committee(&[5, 9, 0, 9, 1], 3), vec![0, 1, 3]);
        assert_eq!(committee(&[5, 9, 0, 9, 1], 10), vec![0, 1, 3, 4]);
        assert_eq!(committee(&[2, 2, 2], 2), vec![0, 1]);
    }
}
