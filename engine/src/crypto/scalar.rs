//! Arithmetic in BLS12-381's scalar field Fr, multi-scalar multiplication in
//! G1 and G2, and the one secret-scalar point multiplication the DKG's share
//! encryption needs.
//!
//! blst has no safe API for Fr, so this module wraps its raw bindings
//! (`blst_fr_*`). It is the only module of the engine with `unsafe`: each
//! block is one FFI call on values owned by the caller, with a `// SAFETY:`
//! comment. Everything above it (the DKG, Lagrange interpolation) is safe code
//! over [`Scalar`]. Multi-scalar multiplication goes through blst's safe
//! `MultiPoint` (Pippenger).

use std::ops::{Add, Mul, Sub};

use blst::min_pk::{AggregatePublicKey, AggregateSignature, PublicKey, SecretKey, Signature};
use blst::{
    MultiPoint, blst_fr, blst_fr_add, blst_fr_from_scalar, blst_fr_from_uint64, blst_fr_inverse, blst_fr_mul,
    blst_fr_sub, blst_p1, blst_p1_affine, blst_p1_mult, blst_p2_affine, blst_scalar, blst_scalar_fr_check,
    blst_scalar_from_fr,
};

/// Bits of a scalar of Fr (`r < 2^255`), for multi-scalar multiplication.
const SCALAR_BITS: usize = 255;

/// An element of Fr, the field of BLS12-381 scalars (`r ≈ 2^255`).
#[derive(Clone, Copy, Default)]
pub struct Scalar(blst_fr);

impl std::fmt::Debug for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Scalars are often secret (shares, coefficients): never print them.
        f.write_str("Scalar(..)")
    }
}

impl PartialEq for Scalar {
    fn eq(&self, other: &Self) -> bool {
        self.to_le_bytes() == other.to_le_bytes()
    }
}
impl Eq for Scalar {}

impl Scalar {
    /// Zero.
    pub const ZERO: Scalar = Scalar(blst_fr { l: [0; 4] });

    /// The integer `v`.
    pub fn from_u64(v: u64) -> Self {
        let mut out = blst_fr::default();
        let limbs = [v, 0, 0, 0];
        // SAFETY: `out` is a live blst_fr; blst reads exactly four u64 limbs from `limbs`.
        unsafe { blst_fr_from_uint64(&mut out, limbs.as_ptr()) };
        Scalar(out)
    }

    /// The scalar with canonical little-endian encoding `le`, or `None` when `le ≥ r`.
    pub fn from_le_bytes(le: &[u8; 32]) -> Option<Self> {
        let s = blst_scalar { b: *le };
        // SAFETY: `s` is a live, initialised blst_scalar.
        let canonical = unsafe { blst_scalar_fr_check(&s) };
        canonical.then(|| Self::from_blst_scalar(&s))
    }

    /// A scalar derived from `msg` (RFC 9380 `expand_message_xmd` to 48 bytes,
    /// reduced mod r: statistically uniform), under the tag `dst`.
    pub fn hash_to(msg: &[u8], dst: &[u8]) -> Self {
        // `hash_to` is `None` only when the reduced value is zero, which has
        // probability 2^-255; zero is then the right answer.
        blst::blst_scalar::hash_to(msg, dst).map_or(Scalar::ZERO, |s| Self::from_blst_scalar(&s))
    }

    fn from_blst_scalar(s: &blst_scalar) -> Self {
        let mut out = blst_fr::default();
        // SAFETY: both pointers are to live locals; callers pass only scalars below r.
        unsafe { blst_fr_from_scalar(&mut out, s) };
        Scalar(out)
    }

    fn to_blst_scalar(self) -> blst_scalar {
        let mut out = blst_scalar::default();
        // SAFETY: both pointers are to live locals of the declared types.
        unsafe { blst_scalar_from_fr(&mut out, &self.0) };
        out
    }

    /// Canonical little-endian encoding (the form blst's multiplications read).
    pub fn to_le_bytes(self) -> [u8; 32] {
        self.to_blst_scalar().b
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self == Scalar::ZERO
    }

    /// The multiplicative inverse, `None` for zero.
    pub fn inverse(self) -> Option<Self> {
        if self.is_zero() {
            return None;
        }
        let mut out = blst_fr::default();
        // SAFETY: both pointers are to live values; the input is non-zero.
        unsafe { blst_fr_inverse(&mut out, &self.0) };
        Some(Scalar(out))
    }

    /// `self^e`.
    pub fn pow(self, mut e: u64) -> Self {
        let (mut acc, mut base) = (Scalar::from_u64(1), self);
        while e > 0 {
            if e & 1 == 1 {
                acc = acc * base;
            }
            base = base * base;
            e >>= 1;
        }
        acc
    }

    /// This scalar as a secret key; `None` for zero, which is no key.
    pub fn to_secret_key(self) -> Option<SecretKey> {
        let mut be = self.to_le_bytes();
        be.reverse();
        SecretKey::from_bytes(&be).ok()
    }

    /// `g1^self`, the public key of this scalar; `None` for zero.
    pub fn public_key(self) -> Option<PublicKey> {
        self.to_secret_key().map(|sk| sk.sk_to_pk())
    }
}

impl Add for Scalar {
    type Output = Scalar;
    fn add(self, rhs: Scalar) -> Scalar {
        let mut out = blst_fr::default();
        // SAFETY: all three pointers are to live values of type blst_fr.
        unsafe { blst_fr_add(&mut out, &self.0, &rhs.0) };
        Scalar(out)
    }
}

impl Sub for Scalar {
    type Output = Scalar;
    fn sub(self, rhs: Scalar) -> Scalar {
        let mut out = blst_fr::default();
        // SAFETY: all three pointers are to live values of type blst_fr.
        unsafe { blst_fr_sub(&mut out, &self.0, &rhs.0) };
        Scalar(out)
    }
}

impl Mul for Scalar {
    type Output = Scalar;
    fn mul(self, rhs: Scalar) -> Scalar {
        let mut out = blst_fr::default();
        // SAFETY: all three pointers are to live values of type blst_fr.
        unsafe { blst_fr_mul(&mut out, &self.0, &rhs.0) };
        Scalar(out)
    }
}

/// Inverts every element in place with one field inversion (Montgomery's
/// trick: prefix products, one inverse, then a backward sweep). Returns
/// `false`, leaving `xs` unchanged, when any element is zero.
pub fn batch_invert(xs: &mut [Scalar]) -> bool {
    let mut prefix = Vec::with_capacity(xs.len());
    let mut acc = Scalar::from_u64(1);
    for &x in xs.iter() {
        prefix.push(acc);
        acc = acc * x;
    }
    let Some(mut inv) = acc.inverse() else {
        return false;
    };
    for (x, before) in xs.iter_mut().zip(prefix).rev() {
        let x_inv = inv * before;
        inv = inv * *x;
        *x = x_inv;
    }
    true
}

fn scalar_bytes(scalars: &[Scalar]) -> Vec<u8> {
    scalars.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// `Σ scalars[i] · points[i]` in G1 (Pippenger); the identity for no points.
pub fn g1_msm(points: &[PublicKey], scalars: &[Scalar]) -> PublicKey {
    assert_eq!(points.len(), scalars.len(), "one scalar per point");
    if points.is_empty() {
        return PublicKey::from(blst_p1_affine::default());
    }
    let affine: Vec<blst_p1_affine> = points.iter().map(|&p| p.into()).collect();
    let sum = affine.as_slice().mult(&scalar_bytes(scalars), SCALAR_BITS);
    PublicKey::from_aggregate(&AggregatePublicKey::from(sum))
}

/// `Σ scalars[i] · points[i]` in G2 (Pippenger); the identity for no points.
pub fn g2_msm(points: &[Signature], scalars: &[Scalar]) -> Signature {
    assert_eq!(points.len(), scalars.len(), "one scalar per point");
    if points.is_empty() {
        return Signature::from(blst_p2_affine::default());
    }
    let affine: Vec<blst_p2_affine> = points.iter().map(|&p| p.into()).collect();
    let sum = affine.as_slice().mult(&scalar_bytes(scalars), SCALAR_BITS);
    Signature::from_aggregate(&AggregateSignature::from(sum))
}

/// `Σ scalars[i] · points[i]` in G1 for 128-bit scalars (half the doublings
/// of [`g1_msm`]): the random weights of batch verification.
pub fn g1_msm_u128(points: &[PublicKey], scalars: &[u128]) -> PublicKey {
    assert_eq!(points.len(), scalars.len(), "one scalar per point");
    if points.is_empty() {
        return PublicKey::from(blst_p1_affine::default());
    }
    let affine: Vec<blst_p1_affine> = points.iter().map(|&p| p.into()).collect();
    let bytes: Vec<u8> = scalars.iter().flat_map(|s| s.to_le_bytes()).collect();
    PublicKey::from_aggregate(&AggregatePublicKey::from(affine.as_slice().mult(&bytes, 128)))
}

/// `Σ scalars[i] · points[i]` in G2 for 128-bit scalars.
pub fn g2_msm_u128(points: &[Signature], scalars: &[u128]) -> Signature {
    assert_eq!(points.len(), scalars.len(), "one scalar per point");
    if points.is_empty() {
        return Signature::from(blst_p2_affine::default());
    }
    let affine: Vec<blst_p2_affine> = points.iter().map(|&p| p.into()).collect();
    let bytes: Vec<u8> = scalars.iter().flat_map(|s| s.to_le_bytes()).collect();
    Signature::from_aggregate(&AggregateSignature::from(affine.as_slice().mult(&bytes, 128)))
}

/// `point^secret` in G1, in constant time (blst's GLV multiplication): the
/// Diffie–Hellman point of the DKG's share encryption.
pub fn g1_mul_secret(point: &PublicKey, secret: &Scalar) -> PublicKey {
    let p: blst_p1 = AggregatePublicKey::from_public_key(point).into();
    let s = secret.to_blst_scalar();
    let mut out = blst_p1::default();
    // SAFETY: `out`, `p` and the 32 bytes of `s.b` are live locals; blst reads
    // `SCALAR_BITS` bits (32 bytes) of the scalar.
    unsafe { blst_p1_mult(&mut out, &p, s.b.as_ptr(), SCALAR_BITS) };
    PublicKey::from_aggregate(&AggregatePublicKey::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_laws_and_inverses() {
        let a = Scalar::hash_to(b"a", b"test");
        let b = Scalar::hash_to(b"b", b"test");
        assert_eq!(a + b - b, a);
        assert_eq!(a * b, b * a);
        assert_eq!(a * a.inverse().expect("non-zero"), Scalar::from_u64(1));
        assert_eq!(Scalar::from_u64(3).pow(5), Scalar::from_u64(243));
        assert!(Scalar::ZERO.inverse().is_none());
        assert_eq!(Scalar::from_le_bytes(&a.to_le_bytes()), Some(a));
        assert_eq!(Scalar::from_le_bytes(&[0xff; 32]), None, "values ≥ r are not canonical");
    }

    #[test]
    fn batch_inversion_matches_single_inversions() {
        let mut xs: Vec<Scalar> = (1..=20u64).map(|i| Scalar::hash_to(&i.to_le_bytes(), b"t")).collect();
        let single: Vec<Scalar> = xs.iter().map(|x| x.inverse().expect("non-zero")).collect();
        assert!(batch_invert(&mut xs));
        assert_eq!(xs, single);
        let mut with_zero = vec![Scalar::from_u64(2), Scalar::ZERO];
        assert!(!batch_invert(&mut with_zero));
        assert_eq!(with_zero[0], Scalar::from_u64(2), "a failed batch leaves its input unchanged");
    }

    #[test]
    fn msm_and_secret_multiplication_agree_with_keys() {
        let (a, b) = (Scalar::from_u64(5), Scalar::from_u64(7));
        let g = Scalar::from_u64(1).public_key().expect("non-zero");
        assert_eq!(g1_msm(&[g, g], &[a, b]), Scalar::from_u64(12).public_key().expect("non-zero"));
        assert_eq!(g1_mul_secret(&g, &a), a.public_key().expect("non-zero"));
        let big = (1u128 << 127) + 3;
        let big_scalar =
            Scalar::from_le_bytes(&[big.to_le_bytes(), [0; 16]].concat().try_into().expect("32"))
                .expect("below r");
        assert_eq!(g1_msm_u128(&[g, g], &[big, 9]), g1_msm(&[g, g], &[big_scalar, Scalar::from_u64(9)]));
        let (x, y) = (Scalar::hash_to(b"x", b"t"), Scalar::hash_to(b"y", b"t"));
        let gx = x.public_key().expect("non-zero");
        let gy = y.public_key().expect("non-zero");
        assert_eq!(g1_mul_secret(&gx, &y), g1_mul_secret(&gy, &x), "Diffie–Hellman agrees");
    }
}
