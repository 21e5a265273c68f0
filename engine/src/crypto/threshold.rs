//! Threshold BLS over a shared polynomial: share keys, partial signatures
//! checked against each share's public key, and recovery of the group
//! signature from any `t` valid partials by Lagrange interpolation at zero.
//!
//! Slot `s` (0-based) holds the polynomial's value at `x = s + 1`; `x = 0` is
//! the group secret. BLS signatures are unique, so the recovered signature is
//! the same whichever `t` partials are used, and bit-identical to a signature
//! made with the group secret itself.

use std::collections::BTreeSet;

use blst::min_pk::{PublicKey, SecretKey, Signature};
use rkyv::{Archive, Deserialize, Serialize};

use gonka_kernels::encoding::tagged_hash;

use super::scalar::{Scalar, batch_invert, g1_msm, g1_msm_u128, g2_msm, g2_msm_u128};
use super::{CryptoError, Domain, PublicKeyBytes, SignatureBytes, verify_parsed};

/// Most slots a sharing may have: bounds every slot index read from outside
/// and the size of every DKG message.
pub const MAX_SLOTS: u32 = 1024;

/// Errors of threshold signing and recovery.
#[derive(Debug, thiserror::Error)]
pub enum ThresholdError {
    /// Fewer distinct valid partials than the threshold.
    #[error("{have} distinct valid partial signatures, the threshold is {threshold}")]
    NotEnoughPartials {
        /// Distinct slots available.
        have: usize,
        /// Partials needed.
        threshold: usize,
    },
    /// A slot index outside the sharing.
    #[error("slot {slot} is outside the sharing's {slots} slots")]
    UnknownSlot {
        /// The slot.
        slot: u32,
        /// Slots in the sharing.
        slots: u32,
    },
    /// A partial signature does not verify against its share's public key.
    #[error("partial signature of slot {slot} is invalid: {source}")]
    BadPartial {
        /// The slot.
        slot: u32,
        /// Why.
        #[source]
        source: CryptoError,
    },
    /// A public polynomial with no coefficients, or an invalid one.
    #[error("invalid public polynomial: {0}")]
    BadPolynomial(&'static str),
}

/// A secret share: the shared polynomial's value at `slot + 1`.
#[derive(Clone, Debug)]
pub struct ShareKey {
    /// The slot.
    pub slot: u32,
    secret: Scalar,
}

impl ShareKey {
    /// The share of `slot` with value `secret`.
    pub fn new(slot: u32, secret: Scalar) -> Self {
        Self { slot, secret }
    }

    /// The share's secret value.
    pub fn secret(&self) -> Scalar {
        self.secret
    }

    /// Signs `msg` in `domain` with this share. A zero share (probability
    /// 2^-255 for an honest DKG) cannot sign and yields `None`.
    pub fn sign(&self, domain: Domain, msg: &[u8]) -> Option<PartialSignature> {
        let sk: SecretKey = self.secret.to_secret_key()?;
        Some(PartialSignature { slot: self.slot, signature: sk.sign(msg, domain.tag(), &[]).compress() })
    }
}

/// One slot's signature share, as carried on the wire.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartialSignature {
    /// The signing slot.
    pub slot: u32,
    /// BLS signature with the slot's share key.
    pub signature: SignatureBytes,
}

/// The public side of a shared polynomial: `C_k = g1^{a_k}` for its `t`
/// coefficients. `C_0` is the group public key; evaluating at `slot + 1`
/// gives a share's public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicPolynomial {
    coefficients: Vec<PublicKey>,
}

impl PublicPolynomial {
    /// From validated commitments, constant term first.
    pub fn new(coefficients: Vec<PublicKey>) -> Result<Self, ThresholdError> {
        if coefficients.is_empty() {
            return Err(ThresholdError::BadPolynomial("no coefficients"));
        }
        Ok(Self { coefficients })
    }

    /// The commitments of `secret_coefficients` (constant term first); `None`
    /// when one is zero. For dealers and tests.
    pub fn commit(secret_coefficients: &[Scalar]) -> Option<Self> {
        let coefficients = secret_coefficients.iter().map(|a| a.public_key()).collect::<Option<Vec<_>>>()?;
        Self::new(coefficients).ok()
    }

    /// Partials needed to recover a signature: the number of coefficients.
    pub fn threshold(&self) -> usize {
        self.coefficients.len()
    }

    /// The commitments, constant term first.
    pub fn coefficients(&self) -> &[PublicKey] {
        &self.coefficients
    }

    /// The group public key `C_0`.
    pub fn group_public_key(&self) -> PublicKeyBytes {
        self.coefficients[0].compress()
    }

    /// The public key of `slot`'s share: `Σ C_k · x^k` at `x = slot + 1`.
    pub fn share_public_key(&self, slot: u32) -> PublicKey {
        let x = Scalar::from_u64(u64::from(slot) + 1);
        let powers: Vec<Scalar> = (0..self.coefficients.len() as u64).map(|k| x.pow(k)).collect();
        g1_msm(&self.coefficients, &powers)
    }

    /// Whether `share` is the polynomial's value at `slot + 1`.
    pub fn check_share(&self, slot: u32, share: &Scalar) -> bool {
        share.public_key().is_some_and(|pk| pk == self.share_public_key(slot))
    }

    /// The commitments compressed, constant term first (for the state snapshot).
    pub fn to_bytes(&self) -> Vec<PublicKeyBytes> {
        self.coefficients.iter().map(PublicKey::compress).collect()
    }

    /// The inverse of [`PublicPolynomial::to_bytes`]; every point is checked.
    pub fn from_bytes(bytes: &[PublicKeyBytes]) -> Result<Self, ThresholdError> {
        if bytes.len() > MAX_SLOTS as usize {
            return Err(ThresholdError::BadPolynomial("more coefficients than slots"));
        }
        let coefficients = bytes
            .iter()
            .map(|c| PublicKey::key_validate(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ThresholdError::BadPolynomial("a commitment is not a valid G1 point"))?;
        Self::new(coefficients)
    }

    /// Coefficient-wise sum: the public polynomial of the summed secrets.
    pub fn sum<'a>(polys: impl IntoIterator<Item = &'a PublicPolynomial>) -> Result<Self, ThresholdError> {
        let mut iter = polys.into_iter();
        let first = iter.next().ok_or(ThresholdError::BadPolynomial("sum of no polynomials"))?;
        let mut acc: Vec<blst::min_pk::AggregatePublicKey> =
            first.coefficients.iter().map(blst::min_pk::AggregatePublicKey::from_public_key).collect();
        for p in iter {
            if p.coefficients.len() != acc.len() {
                return Err(ThresholdError::BadPolynomial("summands of different degrees"));
            }
            for (a, c) in acc.iter_mut().zip(&p.coefficients) {
                a.add_aggregate(&blst::min_pk::AggregatePublicKey::from_public_key(c));
            }
        }
        Self::new(acc.iter().map(|a| a.to_public_key()).collect())
    }

    /// Verifies one partial signature against its share's public key.
    pub fn verify_partial(
        &self,
        domain: Domain,
        msg: &[u8],
        partial: &PartialSignature,
        slots: u32,
    ) -> Result<(), ThresholdError> {
        if partial.slot >= slots {
            return Err(ThresholdError::UnknownSlot { slot: partial.slot, slots });
        }
        verify_partial_with_key(&self.share_public_key(partial.slot), domain, msg, partial)
    }
}

/// Verifies one partial signature against its share's public key, already
/// computed ([`PublicPolynomial::share_public_key`]; callers cache it per slot).
pub fn verify_partial_with_key(
    share_key: &PublicKey,
    domain: Domain,
    msg: &[u8],
    partial: &PartialSignature,
) -> Result<(), ThresholdError> {
    verify_parsed(domain, share_key, msg, &partial.signature)
        .map_err(|source| ThresholdError::BadPartial { slot: partial.slot, source })
}

/// Lagrange coefficients at zero for the distinct points `xs`:
/// `λ_j = Π_{m≠j} x_m / (x_m − x_j)`, with one batched inversion.
/// `None` when two points coincide or one is zero.
pub fn lagrange_at_zero(xs: &[u64]) -> Option<Vec<Scalar>> {
    let xs_f: Vec<Scalar> = xs.iter().map(|&x| Scalar::from_u64(x)).collect();
    let mut numerators = Vec::with_capacity(xs.len());
    let mut denominators = Vec::with_capacity(xs.len());
    for (j, &xj) in xs_f.iter().enumerate() {
        let mut num = Scalar::from_u64(1);
        let mut den = Scalar::from_u64(1);
        for (m, &xm) in xs_f.iter().enumerate() {
            if m != j {
                num = num * xm;
                den = den * (xm - xj);
            }
        }
        numerators.push(num);
        denominators.push(den);
    }
    if xs_f.iter().any(|x| x.is_zero()) || !batch_invert(&mut denominators) {
        return None;
    }
    Some(numerators.into_iter().zip(denominators).map(|(n, d)| n * d).collect())
}

/// Combines `threshold` partial signatures of distinct slots into the group
/// signature: `σ = Σ λ_j · σ_j` (one multi-scalar multiplication). The
/// partials must already be verified ([`PublicPolynomial::verify_partial`]);
/// the first `threshold` distinct slots are used.
pub fn recover(threshold: usize, partials: &[PartialSignature]) -> Result<SignatureBytes, ThresholdError> {
    let mut seen = BTreeSet::new();
    let mut xs = Vec::with_capacity(threshold);
    let mut sigs = Vec::with_capacity(threshold);
    for p in partials {
        if xs.len() == threshold {
            break;
        }
        if !seen.insert(p.slot) {
            continue;
        }
        // Decompression checks the point is on the curve; the subgroup check
        // was part of verifying the partial and is not repeated here.
        let sig = Signature::from_bytes(&p.signature)
            .map_err(|e| ThresholdError::BadPartial { slot: p.slot, source: CryptoError::BadSignature(e) })?;
        xs.push(u64::from(p.slot) + 1);
        sigs.push(sig);
    }
    if xs.len() < threshold || threshold == 0 {
        return Err(ThresholdError::NotEnoughPartials { have: xs.len(), threshold });
    }
    Ok(combine(&xs, &sigs))
}

/// `Σ λ_j · σ_j` for distinct non-zero points `xs` (slot + 1) and their
/// parsed, verified partials.
pub(crate) fn combine(xs: &[u64], sigs: &[Signature]) -> SignatureBytes {
    let lambdas = lagrange_at_zero(xs).expect("callers pass distinct slots, so distinct non-zero points");
    g2_msm(sigs, &lambdas).compress()
}

/// Verifies many signatures of one message under different keys with one
/// check: `e(Σ r_j σ_j, g1) = e(H(m), Σ r_j pk_j)`, with 128-bit weights
/// `r_j` hashed from the message and every signature (so they are fixed only
/// after the signatures are), i.e. deterministic and sound up to 2^-128.
/// Signatures must be subgroup-checked already. `false` means at least one
/// is invalid; verify them one by one to find it.
pub fn verify_batch(domain: Domain, msg: &[u8], keys: &[PublicKey], sigs: &[Signature]) -> bool {
    assert_eq!(keys.len(), sigs.len(), "one key per signature");
    match (keys, sigs) {
        ([], []) => return true,
        // One signature needs no random weights.
        ([key], [sig]) => return verify_parsed(domain, key, msg, &sig.compress()).is_ok(),
        _ => {}
    }
    let compressed: Vec<SignatureBytes> = sigs.iter().map(Signature::compress).collect();
    let mut parts: Vec<&[u8]> = vec![msg];
    parts.extend(compressed.iter().map(|c| c.as_slice()));
    let seed = tagged_hash("gonka/batch-verify", &parts);
    let weights: Vec<u128> = (0..keys.len() as u64)
        .map(|j| {
            let h = tagged_hash("gonka/batch-verify-weight", &[&seed, &j.to_le_bytes()]);
            u128::from_le_bytes(h[..16].try_into().expect("16 of 32 bytes"))
        })
        .collect();
    let sig = g2_msm_u128(sigs, &weights);
    let pk = g1_msm_u128(keys, &weights);
    verify_parsed(domain, &pk, msg, &sig.compress()).is_ok()
}

/// Verifies each partial against `poly`, skips invalid ones, and recovers
/// from the first `t` valid distinct ones. Returns the signature and the
/// slots whose partials were rejected.
pub fn recover_verified(
    poly: &PublicPolynomial,
    domain: Domain,
    msg: &[u8],
    partials: &[PartialSignature],
    slots: u32,
) -> Result<(SignatureBytes, Vec<u32>), ThresholdError> {
    let mut good = Vec::with_capacity(poly.threshold());
    let mut seen = BTreeSet::new();
    let mut rejected = Vec::new();
    for p in partials {
        if good.len() == poly.threshold() {
            break;
        }
        if seen.contains(&p.slot) {
            continue;
        }
        match poly.verify_partial(domain, msg, p, slots) {
            Ok(()) => {
                seen.insert(p.slot);
                good.push(p.clone());
            }
            Err(_) => rejected.push(p.slot),
        }
    }
    recover(poly.threshold(), &good).map(|sig| (sig, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trusted-dealer sharing of a random polynomial of `t` coefficients.
    fn deal(seed: u64, t: usize, n: u32) -> (Vec<Scalar>, PublicPolynomial, Vec<ShareKey>) {
        let coeffs: Vec<Scalar> = (0..t as u64)
            .map(|k| Scalar::hash_to(&[seed.to_le_bytes(), k.to_le_bytes()].concat(), b"t"))
            .collect();
        let poly = PublicPolynomial::commit(&coeffs).expect("non-zero coefficients");
        let shares = (0..n)
            .map(|s| {
                let x = Scalar::from_u64(u64::from(s) + 1);
                let v = coeffs.iter().rev().fold(Scalar::ZERO, |acc, &a| acc * x + a);
                ShareKey::new(s, v)
            })
            .collect();
        (coeffs, poly, shares)
    }

    #[test]
    fn any_t_shares_recover_the_group_signature() {
        let seed = 0u64;
        println!("seed = {seed}");
        let (coeffs, poly, shares) = deal(seed, 4, 9);
        let msg = b"beacon input";
        let group = coeffs[0].to_secret_key().expect("non-zero").sign(msg, Domain::BeaconShare.tag(), &[]);
        let partials: Vec<PartialSignature> =
            shares.iter().map(|s| s.sign(Domain::BeaconShare, msg).expect("non-zero share")).collect();
        for p in &partials {
            poly.verify_partial(Domain::BeaconShare, msg, p, 9).expect("honest partial verifies");
            assert!(poly.check_share(p.slot, &shares[p.slot as usize].secret()));
        }
        for subset in [[0usize, 1, 2, 3], [8, 6, 4, 2], [1, 3, 5, 7], [5, 6, 7, 8]] {
            let chosen: Vec<PartialSignature> = subset.iter().map(|&i| partials[i].clone()).collect();
            let sig = recover(4, &chosen).expect("t partials recover");
            assert_eq!(sig, group.compress(), "subset {subset:?} must give the group signature");
        }
        let short: Vec<PartialSignature> = partials[..3].to_vec();
        assert!(matches!(
            recover(4, &short),
            Err(ThresholdError::NotEnoughPartials { have: 3, threshold: 4 })
        ));
        // A duplicate slot does not count twice.
        let dup = vec![partials[0].clone(), partials[0].clone(), partials[1].clone(), partials[2].clone()];
        assert!(matches!(recover(4, &dup), Err(ThresholdError::NotEnoughPartials { have: 3, .. })));
    }

    #[test]
    fn a_wrong_partial_is_rejected_and_skipped() {
        let (coeffs, poly, shares) = deal(1, 3, 5);
        let msg = b"m";
        let mut partials: Vec<PartialSignature> =
            shares.iter().map(|s| s.sign(Domain::BeaconShare, msg).expect("non-zero")).collect();
        // Slot 1 signs another message; slot 2 claims slot 0's signature.
        partials[1] = shares[1].sign(Domain::BeaconShare, b"other").expect("non-zero");
        partials[2].signature = partials[0].signature;
        assert!(matches!(
            poly.verify_partial(Domain::BeaconShare, msg, &partials[1], 5),
            Err(ThresholdError::BadPartial { slot: 1, .. })
        ));
        let (sig, rejected) =
            recover_verified(&poly, Domain::BeaconShare, msg, &partials, 5).expect("3 good");
        assert_eq!(rejected, vec![1, 2]);
        let group = coeffs[0].to_secret_key().expect("non-zero").sign(msg, Domain::BeaconShare.tag(), &[]);
        assert_eq!(sig, group.compress());
        // Recovery from unverified partials including a bad one gives a wrong signature.
        let bad = recover(3, &partials[..3]).expect("three slots");
        assert_ne!(bad, group.compress());
        let out_of_range = PartialSignature { slot: 5, signature: partials[0].signature };
        assert!(matches!(
            poly.verify_partial(Domain::BeaconShare, msg, &out_of_range, 5),
            Err(ThresholdError::UnknownSlot { slot: 5, slots: 5 })
        ));
    }

    #[test]
    fn batch_verification_catches_one_bad_signature() {
        let (_, poly, shares) = deal(2, 3, 6);
        let msg = b"batch";
        let keys: Vec<PublicKey> = (0..6).map(|s| poly.share_public_key(s)).collect();
        let mut sigs: Vec<Signature> = shares
            .iter()
            .map(|s| {
                let p = s.sign(Domain::BeaconShare, msg).expect("non-zero");
                Signature::from_bytes(&p.signature).expect("valid point")
            })
            .collect();
        assert!(verify_batch(Domain::BeaconShare, msg, &keys, &sigs));
        assert!(verify_batch(Domain::BeaconShare, msg, &[], &[]), "nothing to check");
        assert!(!verify_batch(Domain::BlockVote, msg, &keys, &sigs), "another domain");
        sigs.swap(0, 1);
        assert!(!verify_batch(Domain::BeaconShare, msg, &keys, &sigs), "two swapped partials");
    }

    #[test]
    fn lagrange_rejects_repeated_or_zero_points() {
        assert!(lagrange_at_zero(&[1, 2, 2]).is_none());
        assert!(lagrange_at_zero(&[0, 1]).is_none());
        let l = lagrange_at_zero(&[1, 2]).expect("distinct");
        // f(x) = 3 + 5x: f(1) = 8, f(2) = 13, f(0) = 2·8 − 13 = 3.
        assert_eq!(l[0] * Scalar::from_u64(8) + l[1] * Scalar::from_u64(13), Scalar::from_u64(3));
    }
}
