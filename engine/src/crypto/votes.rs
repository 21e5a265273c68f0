//! Weighted aggregate votes: a vote set is a message, a bitmap of signers over
//! the epoch's ordered host list, and one aggregate BLS signature.
//!
//! Verification sums the signers' public keys and does one pairing check, so
//! its cost is one signature verification plus a cheap point addition per
//! signer. Public keys must have passed [`super::verify_possession`] when they
//! were registered: that is what makes summing them safe (no rogue keys).
//! Weight is summed in integers and compared with a [`Threshold`] exactly.
//!
//! ```text
//!  bitmap:  byte k, bit b (LSB first)  ⇔  host 8k + b signed
//!           exactly ceil(n / 8) bytes; padding bits past host n − 1 are zero
//! ```

use std::collections::{BTreeMap, BTreeSet};

use blst::MultiPoint;
use blst::blst_p1_affine;
use blst::min_pk::{AggregatePublicKey, AggregateSignature, PublicKey, Signature};
use rkyv::{Archive, Deserialize, Serialize};

use super::wire::{WireError, WireMessage, bound};
use super::{CryptoError, Domain, PublicKeyBytes, SignatureBytes, verify_parsed};

/// Most hosts an epoch may list: bounds bitmaps (8 KiB) and weight sums.
pub const MAX_HOSTS: usize = 1 << 16;
/// Longest signer bitmap.
pub const MAX_BITMAP_BYTES: usize = MAX_HOSTS / 8;
/// Longest voted message: a domain-specific header, epoch, height and a hash fit easily.
pub const MAX_VOTE_MESSAGE_BYTES: usize = 128;
/// Largest encoded vote set: bitmap, message, signature and rkyv's framing.
pub const MAX_VOTE_SET_BYTES: usize = MAX_BITMAP_BYTES + MAX_VOTE_MESSAGE_BYTES + 256;

// Weight sums are u128 products of at most MAX_HOSTS u64 weights and a u32
// ratio term: 2^16 · 2^64 · 2^32 = 2^112 cannot overflow.
const _: () = assert!(MAX_HOSTS <= 1 << 16);

/// A weight threshold `num / den`: met when `signed / total > num / den`,
/// compared exactly as `signed · den > total · num`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threshold {
    num: u32,
    den: u32,
}

impl Threshold {
    /// Block finality: more than two thirds of the epoch's weight (the BFT bound).
    pub const FINALITY: Threshold = Threshold::new(2, 3);
    /// Verification disputes: more than half of the epoch's weight.
    pub const DISPUTE: Threshold = Threshold::new(1, 2);

    /// The ratio `num / den`; panics unless `0 ≤ num < den` (a constant's bug).
    pub const fn new(num: u32, den: u32) -> Self {
        assert!(den > 0 && num < den, "a threshold is a fraction in [0, 1)");
        Self { num, den }
    }

    /// The ratio `num / den` from a parameter; `None` unless `0 ≤ num < den`.
    pub fn try_new(num: u32, den: u32) -> Option<Self> {
        (den > 0 && num < den).then_some(Self { num, den })
    }

    /// Whether `signed` is strictly more than this fraction of `total`.
    pub fn is_met(self, signed: u128, total: u128) -> bool {
        signed * u128::from(self.den) > total * u128::from(self.num)
    }
}

/// Errors of vote sets.
#[derive(Debug, thiserror::Error)]
pub enum VoteError {
    /// The host list is empty, too long, has no weight, or lists a key twice.
    #[error("invalid host list: {0}")]
    BadHostList(String),
    /// A host's public key is invalid.
    #[error("host {index} has an invalid public key: {source}")]
    BadHostKey {
        /// Position in the host list.
        index: usize,
        /// Why.
        #[source]
        source: CryptoError,
    },
    /// The vote set signs another message than the one expected.
    #[error("vote set signs a {found_len}-byte message other than the expected {expected_len}-byte one")]
    WrongMessage {
        /// Expected message length.
        expected_len: usize,
        /// Found message length.
        found_len: usize,
    },
    /// The bitmap is not exactly one bit per host, rounded up to bytes.
    #[error("signer bitmap of {found} bytes, expected {expected} for {hosts} hosts")]
    BitmapLength {
        /// Bytes found.
        found: usize,
        /// Bytes expected.
        expected: usize,
        /// Hosts in the epoch.
        hosts: usize,
    },
    /// A signer index past the host list.
    #[error("signer {index} is not among the epoch's {hosts} hosts")]
    UnknownSigner {
        /// The index.
        index: usize,
        /// Hosts in the epoch.
        hosts: usize,
    },
    /// The same host signed twice.
    #[error("host {index} signed twice")]
    DuplicateSigner {
        /// The index.
        index: usize,
    },
    /// No signer.
    #[error("vote set has no signers")]
    EmptySet,
    /// The aggregate (or one vote) does not verify.
    #[error("signature does not verify: {0}")]
    BadSignature(#[source] CryptoError),
    /// Valid, but short of the threshold.
    #[error("signed weight {signed} of {total} does not exceed {num}/{den}")]
    InsufficientWeight {
        /// Weight that signed.
        signed: u128,
        /// The epoch's total weight.
        total: u128,
        /// Threshold numerator.
        num: u32,
        /// Threshold denominator.
        den: u32,
    },
}

/// The epoch's ordered host list: validated keys and integer weights.
#[derive(Clone, Debug)]
pub struct EpochHosts {
    keys: Vec<blst_p1_affine>,
    weights: Vec<u64>,
    total: u128,
}

impl EpochHosts {
    /// From `(public key, weight)` in the epoch's order. Keys must be valid
    /// subgroup points (checked) whose proofs of possession were checked at
    /// registration; a key may appear once.
    pub fn new(hosts: &[(PublicKeyBytes, u64)]) -> Result<Self, VoteError> {
        Self::build(hosts, |pk| PublicKey::key_validate(pk).map_err(CryptoError::BadPublicKey))
    }

    /// [`EpochHosts::new`] with each key's subgroup check remembered by `cache`.
    pub fn new_cached(
        hosts: &[(PublicKeyBytes, u64)],
        cache: &super::cache::SigCache,
    ) -> Result<Self, VoteError> {
        Self::build(hosts, |pk| cache.public_key(pk))
    }

    fn build(
        hosts: &[(PublicKeyBytes, u64)],
        validate: impl Fn(&PublicKeyBytes) -> Result<PublicKey, CryptoError>,
    ) -> Result<Self, VoteError> {
        if hosts.is_empty() || hosts.len() > MAX_HOSTS {
            return Err(VoteError::BadHostList(format!("{} hosts, expected 1..={MAX_HOSTS}", hosts.len())));
        }
        let mut seen = BTreeSet::new();
        let mut keys = Vec::with_capacity(hosts.len());
        for (index, (pk, _)) in hosts.iter().enumerate() {
            if !seen.insert(*pk) {
                return Err(VoteError::BadHostList(format!("host {index} repeats an earlier key")));
            }
            let parsed = validate(pk).map_err(|source| VoteError::BadHostKey { index, source })?;
            keys.push(parsed.into());
        }
        let weights: Vec<u64> = hosts.iter().map(|&(_, w)| w).collect();
        let total = weights.iter().map(|&w| u128::from(w)).sum();
        if total == 0 {
            return Err(VoteError::BadHostList("total weight is zero".into()));
        }
        Ok(Self { keys, weights, total })
    }

    /// The same hosts with other weights (one per host); no key is checked again.
    pub fn with_weights(&self, weights: Vec<u64>) -> Result<Self, VoteError> {
        if weights.len() != self.keys.len() {
            let (found, expected) = (weights.len(), self.keys.len());
            return Err(VoteError::BadHostList(format!("{found} weights for {expected} hosts")));
        }
        let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
        if total == 0 {
            return Err(VoteError::BadHostList("total weight is zero".into()));
        }
        Ok(Self { keys: self.keys.clone(), weights, total })
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a host list has at least one host.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Sum of all weights.
    pub fn total_weight(&self) -> u128 {
        self.total
    }

    /// Weight of host `index`.
    pub fn weight(&self, index: usize) -> Option<u64> {
        self.weights.get(index).copied()
    }

    /// Compressed public key of host `index`.
    pub fn public_key(&self, index: usize) -> Option<PublicKeyBytes> {
        self.keys.get(index).map(|&k| PublicKey::from(k).compress())
    }

    /// Bytes of a bitmap over this list.
    pub fn bitmap_bytes(&self) -> usize {
        self.len().div_ceil(8)
    }

    fn key(&self, index: usize) -> PublicKey {
        PublicKey::from(self.keys[index])
    }
}

/// A message, the hosts that signed it, and their aggregate signature.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct VoteSet {
    /// What was signed; it names the epoch, so a set cannot be replayed in another.
    pub message: Vec<u8>,
    /// One bit per host of the epoch's list, LSB first.
    pub signers: Vec<u8>,
    /// Aggregate of the signers' signatures.
    pub signature: SignatureBytes,
}

impl WireMessage for VoteSet {
    const KIND: &'static str = "vote set";
    const MAX_BYTES: usize = MAX_VOTE_SET_BYTES;
    fn check_bounds(&self) -> Result<(), WireError> {
        bound(Self::KIND, "message", self.message.len(), MAX_VOTE_MESSAGE_BYTES)?;
        bound(Self::KIND, "signers", self.signers.len(), MAX_BITMAP_BYTES)
    }
}

/// What a valid vote set carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoteTally {
    /// Hosts that signed.
    pub signers: usize,
    /// Their summed weight.
    pub signed_weight: u128,
    /// The epoch's total weight.
    pub total_weight: u128,
}

/// Indices of the set bits of `bitmap`, checked against a list of `hosts`.
pub fn signer_indices(bitmap: &[u8], hosts: usize) -> Result<Vec<usize>, VoteError> {
    let expected = hosts.div_ceil(8);
    if bitmap.len() != expected {
        return Err(VoteError::BitmapLength { found: bitmap.len(), expected, hosts });
    }
    let mut out = Vec::new();
    for (k, &byte) in bitmap.iter().enumerate() {
        let mut bits = byte;
        while bits != 0 {
            let index = 8 * k + bits.trailing_zeros() as usize;
            if index >= hosts {
                return Err(VoteError::UnknownSigner { index, hosts });
            }
            out.push(index);
            bits &= bits - 1;
        }
    }
    if out.is_empty() {
        return Err(VoteError::EmptySet);
    }
    Ok(out)
}

/// Verifies `set` against the epoch's hosts and the message the verifier
/// expects, then checks that the signed weight meets `threshold`.
pub fn verify_vote_set(
    hosts: &EpochHosts,
    domain: Domain,
    expected_message: &[u8],
    set: &VoteSet,
    threshold: Threshold,
) -> Result<VoteTally, VoteError> {
    check_vote_set(hosts, domain, expected_message, set, threshold, None)
}

/// [`verify_vote_set`] through `cache`: the pairing check of the aggregate
/// runs once per distinct set (every replica of a process checks the same
/// final blocks).
pub fn verify_vote_set_cached(
    hosts: &EpochHosts,
    domain: Domain,
    expected_message: &[u8],
    set: &VoteSet,
    threshold: Threshold,
    cache: &super::cache::SigCache,
) -> Result<VoteTally, VoteError> {
    check_vote_set(hosts, domain, expected_message, set, threshold, Some(cache))
}

fn check_vote_set(
    hosts: &EpochHosts,
    domain: Domain,
    expected_message: &[u8],
    set: &VoteSet,
    threshold: Threshold,
    cache: Option<&super::cache::SigCache>,
) -> Result<VoteTally, VoteError> {
    if set.message != expected_message {
        return Err(VoteError::WrongMessage {
            expected_len: expected_message.len(),
            found_len: set.message.len(),
        });
    }
    let signers = signer_indices(&set.signers, hosts.len())?;
    let signed = signers.iter().map(|&i| u128::from(hosts.weights[i])).sum();
    let tally = VoteTally { signers: signers.len(), signed_weight: signed, total_weight: hosts.total };
    // Weight first: it costs nothing and a short set needs no pairing.
    if !threshold.is_met(signed, hosts.total) {
        return Err(VoteError::InsufficientWeight {
            signed,
            total: hosts.total,
            num: threshold.num,
            den: threshold.den,
        });
    }
    let points: Vec<blst_p1_affine> = signers.iter().map(|&i| hosts.keys[i]).collect();
    let sum = points.as_slice().add();
    let aggregate = PublicKey::from_aggregate(&AggregatePublicKey::from(sum));
    match cache {
        Some(cache) => cache.verify(domain, &aggregate.compress(), &set.message, &set.signature),
        None => verify_parsed(domain, &aggregate, &set.message, &set.signature),
    }
    .map_err(VoteError::BadSignature)?;
    Ok(tally)
}

/// Collects individual votes, checking each, into a [`VoteSet`].
#[derive(Debug)]
pub struct VoteSetBuilder<'a> {
    hosts: &'a EpochHosts,
    domain: Domain,
    message: Vec<u8>,
    votes: BTreeMap<usize, Signature>,
}

impl<'a> VoteSetBuilder<'a> {
    /// An empty set for `message` in `domain`.
    pub fn new(hosts: &'a EpochHosts, domain: Domain, message: &[u8]) -> Self {
        Self { hosts, domain, message: message.to_vec(), votes: BTreeMap::new() }
    }

    /// Adds host `index`'s vote after verifying it: an aggregator must not
    /// let one bad vote spoil the aggregate.
    pub fn add(&mut self, index: usize, signature: &SignatureBytes) -> Result<(), VoteError> {
        if index >= self.hosts.len() {
            return Err(VoteError::UnknownSigner { index, hosts: self.hosts.len() });
        }
        if self.votes.contains_key(&index) {
            return Err(VoteError::DuplicateSigner { index });
        }
        verify_parsed(self.domain, &self.hosts.key(index), &self.message, signature)
            .map_err(VoteError::BadSignature)?;
        let sig = Signature::from_bytes(signature)
            .map_err(|e| VoteError::BadSignature(CryptoError::BadSignature(e)))?;
        self.votes.insert(index, sig);
        Ok(())
    }

    /// Weight of the votes so far.
    pub fn signed_weight(&self) -> u128 {
        self.votes.keys().map(|&i| u128::from(self.hosts.weights[i])).sum()
    }

    /// The vote set; at least one vote is needed.
    pub fn finish(&self) -> Result<VoteSet, VoteError> {
        let sigs: Vec<&Signature> = self.votes.values().collect();
        if sigs.is_empty() {
            return Err(VoteError::EmptySet);
        }
        let aggregate = AggregateSignature::aggregate(&sigs, false)
            .map_err(|e| VoteError::BadSignature(CryptoError::BadSignature(e)))?;
        let mut signers = vec![0u8; self.hosts.bitmap_bytes()];
        for &i in self.votes.keys() {
            signers[i / 8] |= 1 << (i % 8);
        }
        Ok(VoteSet { message: self.message.clone(), signers, signature: aggregate.to_signature().compress() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_exact_at_the_boundary() {
        let f = Threshold::FINALITY;
        assert!(!f.is_met(2, 3), "exactly 2/3 is not more than 2/3");
        assert!(f.is_met(3, 3));
        assert!(!f.is_met(200, 300));
        assert!(f.is_met(201, 300));
        let d = Threshold::DISPUTE;
        assert!(!d.is_met(50, 100) && d.is_met(51, 100));
        // The largest sums cannot overflow.
        let total = u128::from(u64::MAX) * MAX_HOSTS as u128;
        assert!(!f.is_met(total / 3 * 2, total) && f.is_met(total, total));
        assert!(Threshold::try_new(3, 3).is_none() && Threshold::try_new(1, 0).is_none());
    }

    #[test]
    fn bitmap_rules() {
        assert_eq!(signer_indices(&[0b0000_0101], 3).expect("valid"), vec![0, 2]);
        assert!(matches!(signer_indices(&[0b0000_1000], 3), Err(VoteError::UnknownSigner { index: 3, .. })));
        assert!(matches!(
            signer_indices(&[1, 0], 8),
            Err(VoteError::BitmapLength { found: 2, expected: 1, .. })
        ));
        assert!(matches!(signer_indices(&[], 8), Err(VoteError::BitmapLength { .. })));
        assert!(matches!(signer_indices(&[0], 8), Err(VoteError::EmptySet)));
        assert_eq!(signer_indices(&[0, 0x80], 16).expect("valid"), vec![15]);
    }
}
