//! A bounded memo of signatures that already verified (local host state).
//!
//! Verifying one BLS signature costs about a millisecond (two pairings and
//! the subgroup checks), and every host receives every vote of every other
//! host. A [`SigCache`] remembers the digest of each `(domain, public key,
//! message, signature)` that verified, with the parsed signature point, so a
//! vote seen again — relayed by gossip, replayed after a restart, or received
//! by another host of a simulation sharing the cache — costs one SHA-256
//! instead of a pairing. Verification is a pure function of those four
//! inputs, so a hit returns exactly what a fresh check would; failures are
//! never remembered (a forged signature always costs the forger's victim one
//! check, and can never shadow the genuine one).
//!
//! ```text
//!  verify(d, pk, m, s) ── H(tag(d), pk, m, s) ──► in set? ──yes──► Ok (point from the set)
//!                                                   │no
//!                                                   ▼
//!                             key_validate, sig_validate, pairing check
//!                                                   │ok
//!                                                   ▼
//!                          insert (oldest entry evicted at capacity) ──► Ok
//! ```
//!
//! The handle is cheap to clone (an `Arc`); the lock is held only for the
//! lookup and the insertion, never during a pairing, so threads sharing one
//! cache verify in parallel.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use blst::BLST_ERROR;
use blst::min_pk::{PublicKey as BlsPublicKey, Signature as BlsSignature};
use gonka_kernels::encoding::{Hash32, tagged_hash};

use super::{CryptoError, Domain, PublicKeyBytes, SignatureBytes};

/// Entries a cache holds by default: two votes per host per round, two
/// rounds, two heights of a 16 384-host epoch. An entry (digest, parsed
/// point, queue slot) takes about 280 bytes, so a full cache is about 36 MiB.
pub const DEFAULT_SIG_CACHE_ENTRIES: usize = 1 << 17;

/// What a cache has done since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigCacheStats {
    /// Checks answered from the set.
    pub hits: u64,
    /// Checks that ran the pairing and succeeded.
    pub verified: u64,
    /// Checks that ran and failed (not remembered).
    pub failed: u64,
    /// Entries dropped to stay within capacity.
    pub evicted: u64,
    /// Entries held now.
    pub entries: usize,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    points: HashMap<Hash32, BlsSignature>,
    /// Public keys that passed `key_validate`, decompressed (an epoch's host
    /// list re-reads the same keys every epoch, on every replica).
    keys: HashMap<PublicKeyBytes, BlsPublicKey>,
    key_order: VecDeque<PublicKeyBytes>,
    // Insertion order, for first-in first-out eviction. Never iterated for a
    // result, so the map's order cannot leak into anything.
    order: VecDeque<Hash32>,
    stats: SigCacheStats,
}

/// A shared, bounded set of already-verified signatures; see the module docs.
#[derive(Clone, Debug)]
pub struct SigCache {
    inner: Arc<Mutex<Inner>>,
}

impl Default for SigCache {
    fn default() -> Self {
        Self::new(DEFAULT_SIG_CACHE_ENTRIES)
    }
}

impl SigCache {
    /// An empty cache holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let inner = Inner {
            capacity,
            points: HashMap::with_capacity(capacity.min(1 << 12)),
            keys: HashMap::new(),
            key_order: VecDeque::new(),
            order: VecDeque::new(),
            stats: SigCacheStats::default(),
        };
        Self { inner: Arc::new(Mutex::new(inner)) }
    }

    /// Verifies `sig` by `pk` over `msg` in `domain` (subgroup checks
    /// included), running the pairing only the first time it succeeds.
    pub fn verify(
        &self,
        domain: Domain,
        pk: &PublicKeyBytes,
        msg: &[u8],
        sig: &SignatureBytes,
    ) -> Result<(), CryptoError> {
        self.verify_point(domain, pk, msg, sig).map(|_| ())
    }

    /// As [`Self::verify`], returning the parsed signature so that callers
    /// aggregating it skip a second decompression.
    pub(crate) fn verify_point(
        &self,
        domain: Domain,
        pk: &PublicKeyBytes,
        msg: &[u8],
        sig: &SignatureBytes,
    ) -> Result<BlsSignature, CryptoError> {
        let digest = tagged_hash("gonka/sig-cache", &[domain.tag(), pk, msg, sig]);
        {
            let mut inner = self.lock();
            if let Some(&point) = inner.points.get(&digest) {
                inner.stats.hits += 1;
                return Ok(point);
            }
        }
        let checked = self.public_key(pk).and_then(|key| check(domain, &key, msg, sig));
        let mut inner = self.lock();
        match checked {
            Ok(point) => {
                inner.stats.verified += 1;
                inner.insert(digest, point);
                Ok(point)
            }
            Err(e) => {
                inner.stats.failed += 1;
                Err(e)
            }
        }
    }

    /// `pk` decompressed and checked to be a valid subgroup point, the check
    /// running only the first time it succeeds.
    pub fn public_key(&self, pk: &PublicKeyBytes) -> Result<BlsPublicKey, CryptoError> {
        if let Some(&key) = self.lock().keys.get(pk) {
            return Ok(key);
        }
        let key = BlsPublicKey::key_validate(pk).map_err(CryptoError::BadPublicKey)?;
        self.lock().insert_key(*pk, key);
        Ok(key)
    }

    /// Counters and the current size.
    pub fn stats(&self) -> SigCacheStats {
        let inner = self.lock();
        SigCacheStats { entries: inner.points.len(), ..inner.stats }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while the lock was held cannot leave the set
        // inconsistent (each update is a single insert or remove), so a
        // poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn insert_key(&mut self, pk: PublicKeyBytes, key: BlsPublicKey) {
        if self.keys.insert(pk, key).is_some() {
            return;
        }
        self.key_order.push_back(pk);
        while self.key_order.len() > self.capacity {
            if let Some(old) = self.key_order.pop_front() {
                self.keys.remove(&old);
            }
        }
    }

    fn insert(&mut self, digest: Hash32, point: BlsSignature) {
        if self.points.insert(digest, point).is_some() {
            // Another thread verified the same signature meanwhile.
            return;
        }
        self.order.push_back(digest);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.points.remove(&old);
                self.stats.evicted += 1;
            }
        }
    }
}

/// The full check: key and signature are valid subgroup points and the
/// pairing equation holds.
fn check(
    domain: Domain,
    pk: &BlsPublicKey,
    msg: &[u8],
    sig: &SignatureBytes,
) -> Result<BlsSignature, CryptoError> {
    let point = BlsSignature::sig_validate(sig, true).map_err(CryptoError::BadSignature)?;
    match point.verify(false, msg, domain.tag(), &[], pk, false) {
        BLST_ERROR::BLST_SUCCESS => Ok(point),
        e => Err(CryptoError::VerifyFailed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::HostKey;

    #[test]
    fn remembers_successes_only_and_stays_bounded() {
        let key = HostKey::from_ikm(&[3u8; 32]);
        let pk = key.public_key();
        let cache = SigCache::new(2);
        let sigs: Vec<SignatureBytes> = (0u8..3).map(|i| key.sign(Domain::BlockVote, &[i])).collect();
        cache.verify(Domain::BlockVote, &pk, &[0], &sigs[0]).expect("valid");
        cache.verify(Domain::BlockVote, &pk, &[0], &sigs[0]).expect("valid again");
        assert_eq!((cache.stats().verified, cache.stats().hits), (1, 1), "second check is a hit");

        // A wrong message fails every time: failures are not remembered.
        for _ in 0..2 {
            assert!(cache.verify(Domain::BlockVote, &pk, &[9], &sigs[0]).is_err());
        }
        // Another domain is another entry, and fails.
        assert!(cache.verify(Domain::DisputeVote, &pk, &[0], &sigs[0]).is_err());
        assert_eq!(cache.stats().failed, 3);

        cache.verify(Domain::BlockVote, &pk, &[1], &sigs[1]).expect("valid");
        cache.verify(Domain::BlockVote, &pk, &[2], &sigs[2]).expect("valid");
        let s = cache.stats();
        assert_eq!((s.entries, s.evicted), (2, 1), "capacity 2 evicts the oldest");
        // The evicted entry verifies again from scratch.
        cache.verify(Domain::BlockVote, &pk, &[0], &sigs[0]).expect("valid");
        assert_eq!(cache.stats().verified, 4);
    }

    #[test]
    fn clones_share_one_set() {
        let key = HostKey::from_ikm(&[4u8; 32]);
        let sig = key.sign(Domain::BlockVote, b"m");
        let a = SigCache::default();
        let b = a.clone();
        a.verify(Domain::BlockVote, &key.public_key(), b"m", &sig).expect("valid");
        b.verify(Domain::BlockVote, &key.public_key(), b"m", &sig).expect("valid");
        assert_eq!(b.stats().hits, 1);
        assert!(b.verify(Domain::BlockVote, &[0u8; 48], b"m", &sig).is_err(), "garbage key");
    }
}
