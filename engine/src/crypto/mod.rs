//! Host identities and signatures on BLS12-381 (blst, min_pk: 48-byte public
//! keys in G1, 96-byte signatures in G2).
//!
//! Every kind of signed message has its own domain-separation tag ([`Domain`]),
//! so a signature made for one purpose can never be replayed as another.
//! Host keys live in files readable by their owner only ([`HostKey::load`]
//! refuses anything looser).

use std::fs;
use std::path::{Path, PathBuf};

use blst::BLST_ERROR;
use blst::min_pk::{PublicKey as BlsPublicKey, SecretKey, Signature as BlsSignature};

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
    /// A partial signature of the random beacon.
    BeaconShare,
    /// A host's auditable selection for a task.
    Selection,
    /// A transaction.
    Transaction,
    /// The peer handshake.
    PeerHandshake,
    /// Proof of possession of a secret key, at registration.
    ProofOfPossession,
}

impl Domain {
    /// The hash-to-curve domain-separation tag (RFC 9380 style suite name).
    pub fn tag(self) -> &'static [u8] {
        match self {
            Domain::ProofBatch => b"GONKA-V1-PROOF-BATCH_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::ValidationSample => b"GONKA-V1-VALIDATION-SAMPLE_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::BlockVote => b"GONKA-V1-BLOCK-VOTE_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::BeaconShare => b"GONKA-V1-BEACON-SHARE_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::Selection => b"GONKA-V1-SELECTION_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::Transaction => b"GONKA-V1-TRANSACTION_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::PeerHandshake => b"GONKA-V1-PEER-HANDSHAKE_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_",
            Domain::ProofOfPossession => b"GONKA-V1-POP_BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_",
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

/// First line of a host key file.
const KEY_FILE_HEADER: &str = "gonka bls12-381 min_pk secret key v1";

/// A host's secret key.
pub struct HostKey {
    sk: SecretKey,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "HostKey({})", hex::encode(self.public_key()))
    }
}

impl HostKey {
    /// A fresh key from 32 bytes of OS randomness (IETF KeyGen).
    pub fn generate() -> Result<Self, CryptoError> {
        let mut ikm = [0u8; 32];
        getrandom::fill(&mut ikm).map_err(|e| CryptoError::Random(e.to_string()))?;
        Ok(Self::from_ikm(&ikm))
    }

    /// The key derived from input key material (≥ 32 bytes); for tests and simulations.
    pub fn from_ikm(ikm: &[u8; 32]) -> Self {
        let sk = SecretKey::key_gen(ikm, &[]).expect("32 bytes of key material is what KeyGen needs");
        Self { sk }
    }

    /// The compressed public key.
    pub fn public_key(&self) -> PublicKeyBytes {
        self.sk.sk_to_pk().compress()
    }

    /// Signs `msg` for `domain`.
    pub fn sign(&self, domain: Domain, msg: &[u8]) -> SignatureBytes {
        self.sk.sign(msg, domain.tag(), &[]).compress()
    }

    /// Writes the key to `path` with mode 0600, atomically; refuses to overwrite.
    pub fn save(&self, path: &Path) -> Result<(), CryptoError> {
        let io = |source| CryptoError::Io { path: path.to_owned(), source };
        if path.exists() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "refusing to overwrite a key",
            )));
        }
        let text = format!("{KEY_FILE_HEADER}\n{}\n", hex::encode(self.sk.to_bytes()));
        gonka_storage::write_atomic(path, text.as_bytes(), 0o600).map_err(io)
    }

    /// Reads a key file written by [`Self::save`].
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let io = |source| CryptoError::Io { path: path.to_owned(), source };
        let malformed = |why| CryptoError::Malformed { path: path.to_owned(), why };
        let meta = fs::metadata(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(CryptoError::LooseMode { path: path.to_owned(), mode });
            }
        }
        if meta.len() > 4096 {
            return Err(malformed("larger than any key file"));
        }
        let text = fs::read_to_string(path).map_err(io)?;
        let mut lines = text.lines();
        if lines.next() != Some(KEY_FILE_HEADER) {
            return Err(malformed("first line must be the key file header"));
        }
        let hex_sk = lines.next().ok_or_else(|| malformed("missing the secret key line"))?;
        let bytes = hex::decode(hex_sk.trim()).map_err(|_| malformed("secret key is not hex"))?;
        let sk = SecretKey::from_bytes(&bytes).map_err(|_| malformed("secret key is not a valid scalar"))?;
        Ok(Self { sk })
    }
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
    let sig = BlsSignature::sig_validate(sig, true).map_err(CryptoError::BadSignature)?;
    match sig.verify(true, msg, domain.tag(), &[], &pk, false) {
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
        assert!(
            verify(Domain::BlockVote, &pk, b"commitment", &sig).is_err(),
            "a signature must not cross domains"
        );
        assert!(
            verify(Domain::ProofBatch, &pk, b"other", &sig).is_err(),
            "a signature must not cover another message"
        );
        let other = HostKey::from_ikm(&[8u8; 32]).public_key();
        assert!(verify(Domain::ProofBatch, &other, b"commitment", &sig).is_err());
    }

    #[test]
    fn all_domain_tags_are_distinct() {
        use Domain::*;
        let all = [
            ProofBatch,
            ValidationSample,
            BlockVote,
            BeaconShare,
            Selection,
            Transaction,
            PeerHandshake,
            ProofOfPossession,
        ];
        let tags: std::collections::BTreeSet<&[u8]> = all.iter().map(|d| d.tag()).collect();
        assert_eq!(tags.len(), all.len());
    }

    #[test]
    fn key_file_roundtrip_mode_and_refusals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("host.key");
        let k = HostKey::generate().expect("os randomness");
        k.save(&path).expect("save");
        assert!(k.save(&path).is_err(), "save must not overwrite a key");
        let back = HostKey::load(&path).expect("load");
        assert_eq!(back.public_key(), k.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(matches!(HostKey::load(&path), Err(CryptoError::LooseMode { .. })));
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        fs::write(&path, "not a key\n").expect("overwrite");
        assert!(matches!(HostKey::load(&path), Err(CryptoError::Malformed { .. })));
    }
}
