//! Host identities: secret keys, key files readable by their owner only, and
//! the proof of possession a host shows when it registers its public key.
//!
//! The proof of possession follows the IETF BLS signature draft's PoP scheme
//! (`PopProve` / `PopVerify`): a signature, under its own domain tag, over the
//! compressed public key itself. Only someone who knows the secret key can
//! make it, which rules out rogue keys (`pk_evil = g^x − pk_victim`) that
//! would otherwise let one host forge an aggregate vote of several.

use std::fs;
use std::path::Path;

use blst::min_pk::{PublicKey as BlsPublicKey, SecretKey};

use super::scalar::Scalar;
use super::{CryptoError, Domain, PublicKeyBytes, SignatureBytes, verify_parsed};

/// First line of a host key file.
const KEY_FILE_HEADER: &str = "gonka bls12-381 min_pk secret key v1";
/// Largest key file read: the header, 64 hex digits and some whitespace.
const MAX_KEY_FILE_BYTES: u64 = 4096;

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

    /// A second handle on the same secret, for another part of this host
    /// (its consensus signer beside its agent). Not `Clone`, so that copies
    /// of a secret are always deliberate.
    pub fn duplicate(&self) -> Self {
        Self { sk: self.sk.clone() }
    }

    /// The compressed public key.
    pub fn public_key(&self) -> PublicKeyBytes {
        self.sk.sk_to_pk().compress()
    }

    /// Signs `msg` for `domain`.
    pub fn sign(&self, domain: Domain, msg: &[u8]) -> SignatureBytes {
        self.sk.sign(msg, domain.tag(), &[]).compress()
    }

    /// The proof of possession shown at registration: a signature over the
    /// compressed public key under [`Domain::ProofOfPossession`] (IETF `PopProve`).
    pub fn proof_of_possession(&self) -> SignatureBytes {
        self.sign(Domain::ProofOfPossession, &self.public_key())
    }

    /// The secret scalar, for the DKG's share encryption.
    pub(crate) fn secret_scalar(&self) -> Scalar {
        let mut le = self.sk.to_bytes();
        le.reverse();
        Scalar::from_le_bytes(&le).expect("a blst secret key is a canonical scalar")
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
        if meta.len() > MAX_KEY_FILE_BYTES {
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

/// Checks a registration: `pk` is a valid non-identity G1 subgroup point and
/// `pop` is its proof of possession (IETF `PopVerify`). Run once per key, when
/// it is registered; aggregate verification relies on it afterwards.
pub fn verify_possession(pk: &PublicKeyBytes, pop: &SignatureBytes) -> Result<(), CryptoError> {
    let parsed = BlsPublicKey::key_validate(pk).map_err(CryptoError::BadPublicKey)?;
    verify_parsed(Domain::ProofOfPossession, &parsed, pk, pop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_of_possession_binds_the_key() {
        let k = HostKey::from_ikm(&[1u8; 32]);
        let pop = k.proof_of_possession();
        verify_possession(&k.public_key(), &pop).expect("own proof verifies");
        let other = HostKey::from_ikm(&[2u8; 32]);
        assert!(
            verify_possession(&other.public_key(), &pop).is_err(),
            "a proof must not transfer to another key"
        );
        // A signature over the key bytes in another domain is no proof.
        let wrong_domain = k.sign(Domain::Transaction, &k.public_key());
        assert!(verify_possession(&k.public_key(), &wrong_domain).is_err());
        assert!(verify_possession(&[0u8; 48], &pop).is_err(), "garbage key is rejected");
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
