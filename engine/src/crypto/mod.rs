//! Everything the protocol signs, aggregates or draws at random, on BLS12-381
//! (blst, min_pk: 48-byte public keys in G1, 96-byte signatures in G2).
//!
//! Start with [`keys`] (host keys, key files, proofs of possession) and
//! [`Domain`] (one hash-to-curve tag per signed message kind). Then:
//!
//! | module | owns |
//! |---|---|
//! | [`votes`] | weighted aggregate votes: bitmap over the epoch's hosts, one signature, integer thresholds |
//! | [`dkg`] | the per-epoch Joint-Feldman DKG among the highest-weight hosts, a deterministic state machine |
//! | [`threshold`] | threshold BLS: share keys, partial signatures, Lagrange recovery |
//! | [`cache`] | a bounded, shared memo of signatures that already verified |
//! | [`beacon`] | the random beacon `H(σ_e)` and the Sprint seed commit–reveal |
//! | [`selection`] | auditable per-task selection and integer weighted draws |
//! | [`wire`] | rkyv encoding and the checked, bounded decoder of every crypto message |
//! | [`scalar`] | Fr arithmetic on blst's raw bindings: the only `unsafe` of the engine |
//!
//! ```text
//!  epoch e:  DKG deals ─► complaints ─► justifications ─► group key (t of N slots)
//!            seed commits ─► reveals (window) ─► beacon partials ─► σ_e = recover(t partials)
//!            beacon_e = H(σ_e)      sprint seed = H(σ_e ‖ reveals in host order)
//!  every block:  votes ─► VoteSet { message, bitmap, aggregate signature } ─► > 2/3 of weight
//!  every task:   sig = BLS(host, Selection, task id) ─► H(sig) < p ⇒ selected
//! ```
//!
//! The design, each scheme's messages and the attacks each part defeats are in
//! `docs/crypto.md`. Chain-side code here is deterministic: heights instead of
//! clocks, randomness passed in, integers only, sorted maps.

pub mod beacon;
pub mod cache;
pub mod dkg;
pub mod keys;
pub mod scalar;
pub mod selection;
pub mod threshold;
pub mod votes;
pub mod wire;

pub use keys::{HostKey, verify_possession};

use blst::BLST_ERROR;
use blst::min_pk::{PublicKey as BlsPublicKey, Signature as BlsSignature};
use std::path::PathBuf;

/// Compressed G1 public key.
pub type PublicKeyBytes = [u8; 48];
/// Compressed G2 signature.
pub type SignatureBytes = [u8; 96];

/// What a signature is for. Each variant is a distinct hash-to-curve tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A host's commitment to its Sprint proof batch.
    ProofBatch,
    /// A validator's signature over a batch commitment, which seeds its sample.
    ValidationSample,
    /// A vote on a block.
    BlockVote,
    /// A vote deciding a verification dispute.
    DisputeVote,
    /// A partial signature of the random beacon, and the recovered beacon signature.
    BeaconShare,
    /// A host's auditable selection for a task.
    Selection,
    /// A transaction.
    Transaction,
    /// The peer handshake.
    PeerHandshake,
    /// Proof of possession of a secret key, at registration.
    ProofOfPossession,
    /// A host's derivation of its own local secrets (agent entropy); such a
    /// signature never leaves the host.
    LocalSecret,
    /// A host's record of the network address it can be reached at.
    HostAddress,
}

impl Domain {
    /// Every domain, for tests and documentation.
    pub const ALL: [Domain; 11] = [
        Domain::ProofBatch,
        Domain::ValidationSample,
        Domain::BlockVote,
        Domain::DisputeVote,
        Domain::BeaconShare,
        Domain::Selection,
        Domain::Transaction,
        Domain::PeerHandshake,
        Domain::ProofOfPossession,
        Domain::LocalSecret,
        Domain::HostAddress,
    ];

    /// The hash-to-curve domain-separation tag (RFC 9380 style suite name).
    pub fn tag(self) -> &'static [u8] {
        match self {
            Domain::ProofBatch => b"GONKA-V1-PROOF-BATCH_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::ValidationSample => b"GONKA-V1-VALIDATION-SAMPLE_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::BlockVote => b"GONKA-V1-BLOCK-VOTE_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::DisputeVote => b"GONKA-V1-DISPUTE-VOTE_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::BeaconShare => b"GONKA-V1-BEACON-SHARE_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::Selection => b"GONKA-V1-SELECTION_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::Transaction => b"GONKA-V1-TRANSACTION_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::PeerHandshake => b"GONKA-V1-PEER-HANDSHAKE_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::ProofOfPossession => b"GONKA-V1-POP_BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::LocalSecret => b"GONKA-V1-LOCAL-SECRET_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::HostAddress => b"GONKA-V1-HOST-ADDRESS_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
        }
    }
}

/// Errors of keys and signatures.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file is readable by others.
    #[error("key file {path} has mode {mode:04o}; it must be readable by its owner only (chmod 600)")]
    LooseMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not in our format.
    #[error("key file {path} is malformed: {why}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was expected.
        why: &'static str,
    },
    /// A public key is not a valid point of the G1 subgroup.
    #[error("invalid public key: {0:?}")]
    BadPublicKey(BLST_ERROR),
    /// A signature is not a valid point of the G2 subgroup.
    #[error("invalid signature encoding: {0:?}")]
    BadSignature(BLST_ERROR),
    /// The signature does not verify for this key and message.
    #[error("signature does not verify ({0:?})")]
    VerifyFailed(BLST_ERROR),
    /// The OS random source failed.
    #[error("random source failed: {0}")]
    Random(String),
}

/// Checks that `pk` is a valid, non-identity G1 subgroup point.
pub fn validate_public_key(pk: &PublicKeyBytes) -> Result<(), CryptoError> {
    BlsPublicKey::key_validate(pk).map(|_| ()).map_err(CryptoError::BadPublicKey)
}

/// Verifies `sig` by `pk` over `msg` in `domain` (subgroup checks included).
pub fn verify(
    domain: Domain,
    pk: &PublicKeyBytes,
    msg: &[u8],
    sig: &SignatureBytes,
) -> Result<(), CryptoError> {
    let pk = BlsPublicKey::key_validate(pk).map_err(CryptoError::BadPublicKey)?;
    verify_parsed(domain, &pk, msg, sig)
}

/// Verifies `sig` over `msg` in `domain` against an already validated key.
pub(crate) fn verify_parsed(
    domain: Domain,
    pk: &BlsPublicKey,
    msg: &[u8],
    sig: &SignatureBytes,
) -> Result<(), CryptoError> {
    let sig = BlsSignature::sig_validate(sig, true).map_err(CryptoError::BadSignature)?;
    match sig.verify(false, msg, domain.tag(), &[], pk, false) {
        BLST_ERROR::BLST_SUCCESS => Ok(()),
        e => Err(CryptoError::VerifyFailed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_domain_separation() {
        let k = HostKey::from_ikm(&[7u8; 32]);
        let pk = k.public_key();
        let sig = k.sign(Domain::ProofBatch, b"commitment");
        verify(Domain::ProofBatch, &pk, b"commitment", &sig).expect("own signature verifies");
        for d in Domain::ALL.into_iter().filter(|&d| d != Domain::ProofBatch) {
            assert!(verify(d, &pk, b"commitment", &sig).is_err(), "a signature must not cross into {d:?}");
        }
        assert!(
            verify(Domain::ProofBatch, &pk, b"other", &sig).is_err(),
            "a signature must not cover another message"
        );
        let other = HostKey::from_ikm(&[8u8; 32]).public_key();
        assert!(verify(Domain::ProofBatch, &other, b"commitment", &sig).is_err());
    }

    #[test]
    fn all_domain_tags_are_distinct() {
        let tags: std::collections::BTreeSet<&[u8]> = Domain::ALL.iter().map(|d| d.tag()).collect();
        assert_eq!(tags.len(), Domain::ALL.len());
    }
}
