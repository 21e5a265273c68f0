//! Sprint proof batches: the rkyv type a host submits, its file format, its
//! commitment, and the auditable sample a validator draws from it.
//!
//! ```text
//!  file  = "GONKAPRF" ‖ u16_le version ‖ u16_le 0 ‖ u32_le payload_len ‖ payload
//!  payload = rkyv(ProofBatch)           (validated with bytecheck on every read)
//!  commitment = H("gonka/proof-batch", sprint_seed, pubkey, shape, difficulty, merkle_root(proofs))
//!  signature  = BLS(host key, Domain::ProofBatch, commitment)
//!  sample     = ChaCha20(H("gonka/validation-sample", BLS(validator key, Domain::ValidationSample, commitment)))
//! ```
//!
//! A validator's sample is a pure function of its own deterministic BLS
//! signature over the commitment: the submitter cannot predict it before
//! committing, and anyone holding the validator's public key can audit it.

mod codec;
pub mod components;
pub mod plugin;
mod sample;
pub mod systems;
mod verify;

pub use codec::{
    FORMAT_VERSION, MAGIC, MAX_PROOF_FILE_BYTES, ProofFileError, decode_proof_file, encode_proof_file,
};
pub use sample::sample_indices;
pub use verify::{
    VerifyError, VerifyOptions, VerifyReport, check_batch, expected_difficulty, verify_batch,
    verify_proof_file,
};

use gonka_kernels::ModelConfig;
use gonka_kernels::encoding::{Hash32, tagged_hash};
use rkyv::{Archive, Deserialize, Serialize};

use crate::crypto::{Domain, HostKey, PublicKeyBytes, SignatureBytes};

/// The model shape a batch was mined on (spec §2's six integers).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelShape {
    /// `L`.
    pub layers: u32,
    /// `d`.
    pub dim: u32,
    /// `h`.
    pub heads: u32,
    /// `f`.
    pub ffn: u32,
    /// `V`.
    pub vocab: u32,
    /// `T`.
    pub seq: u32,
}

impl ModelShape {
    /// The shape of a config.
    pub fn of(c: &ModelConfig) -> Self {
        let u = |x: usize| u32::try_from(x).expect("model sizes fit in u32");
        Self {
            layers: u(c.layers),
            dim: u(c.dim),
            heads: u(c.heads),
            ffn: u(c.ffn),
            vocab: u(c.vocab),
            seq: u(c.seq),
        }
    }

    /// The named config with this shape, if any. Only named configs are
    /// accepted from outside: a hostile file must not make a validator build
    /// an arbitrarily large model.
    pub fn named_config(&self) -> Option<ModelConfig> {
        gonka_kernels::config::NAMED.into_iter().find(|c| Self::of(c) == *self)
    }

    fn to_bytes(self) -> [u8; 24] {
        let mut out = [0u8; 24];
        for (i, v) in
            [self.layers, self.dim, self.heads, self.ffn, self.vocab, self.seq].into_iter().enumerate()
        {
            out[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        out
    }
}

/// Which Sprint function: v1 (distance to a target, `../shared/spec/sprint-pow.md`)
/// or v2 (integer-exact forward and a hash predicate, `docs/spec/sprint-pow-v2.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PowVersion {
    /// Spec v1.
    V1,
    /// Spec v2, the default.
    #[default]
    V2,
}

impl std::str::FromStr for PowVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v1" => Ok(PowVersion::V1),
            "v2" => Ok(PowVersion::V2),
            _ => Err(format!("unknown Sprint function {s:?}; expected v1 or v2")),
        }
    }
}

/// v2's default difficulty: one proof in this many nonces, exactly.
pub const V2_NONCES_PER_PROOF: u64 = 900;

/// The Sprint function a batch was mined with, and its difficulty parameter.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Difficulty {
    /// Spec v1: a proof's distance is below `r_target` (f32 bits).
    V1 {
        /// `r_target` as f32 bits.
        r_target_bits: u32,
    },
    /// Spec v2: a proof's digest is below `⌊2²⁵⁶ / nonces_per_proof⌋`.
    V2 {
        /// Expected nonces per proof.
        nonces_per_proof: u64,
    },
}

impl std::fmt::Display for Difficulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Difficulty::V1 { r_target_bits } => write!(f, "v1, r_target {}", f32::from_bits(r_target_bits)),
            Difficulty::V2 { nonces_per_proof } => write!(f, "v2, one proof per {nonces_per_proof} nonces"),
        }
    }
}

impl Difficulty {
    /// v1 at `r_target`.
    pub fn v1(r_target: f32) -> Self {
        Difficulty::V1 { r_target_bits: r_target.to_bits() }
    }

    /// The version's name.
    pub fn version(&self) -> &'static str {
        match self {
            Difficulty::V1 { .. } => "v1",
            Difficulty::V2 { .. } => "v2",
        }
    }

    fn to_bytes(self) -> [u8; 9] {
        let mut out = [0u8; 9];
        match self {
            Difficulty::V1 { r_target_bits } => {
                out[0] = 1;
                out[1..5].copy_from_slice(&r_target_bits.to_le_bytes());
            }
            Difficulty::V2 { nonces_per_proof } => {
                out[0] = 2;
                out[1..9].copy_from_slice(&nonces_per_proof.to_le_bytes());
            }
        }
        out
    }
}

/// One claimed proof.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct ProofEntry {
    /// The nonce.
    pub nonce: u64,
    /// Its claimed score: v1's distance (below `r_target`), or v2's digest
    /// read as a fraction (informational: v2 validation recomputes the digest).
    pub score: f64,
}

/// A host's proofs for one Sprint.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ProofBatch {
    /// The Sprint seed (the Sprint's identity offline).
    pub sprint_seed: Hash32,
    /// The model the Sprint ran.
    pub shape: ModelShape,
    /// The mining host.
    pub pubkey: PublicKeyBytes,
    /// Which Sprint function, and its difficulty.
    pub difficulty: Difficulty,
    /// Nonces the host computed (informational: it cannot be checked).
    pub nonces_tried: u64,
    /// Proofs sorted strictly by nonce: no duplicates, one canonical order.
    pub proofs: Vec<ProofEntry>,
    /// The host's signature over [`ProofBatch::commitment`].
    pub signature: SignatureBytes,
}

impl ProofBatch {
    /// Builds and signs a batch. `proofs` are sorted and deduplicated here.
    pub fn new_signed(
        key: &HostKey,
        sprint_seed: Hash32,
        config: &ModelConfig,
        difficulty: Difficulty,
        nonces_tried: u64,
        mut proofs: Vec<ProofEntry>,
    ) -> Self {
        proofs.sort_by_key(|p| p.nonce);
        proofs.dedup_by_key(|p| p.nonce);
        let mut b = Self {
            sprint_seed,
            shape: ModelShape::of(config),
            pubkey: key.public_key(),
            difficulty,
            nonces_tried,
            proofs,
            signature: [0u8; 96],
        };
        b.signature = key.sign(Domain::ProofBatch, &b.commitment());
        b
    }

    /// What the host signs and validators sample from.
    pub fn commitment(&self) -> Hash32 {
        tagged_hash(
            "gonka/proof-batch",
            &[
                &self.sprint_seed,
                &self.pubkey,
                &self.shape.to_bytes(),
                &self.difficulty.to_bytes(),
                &merkle_root(&self.proofs),
            ],
        )
    }
}

/// Merkle root of the proofs: leaves `H("gonka/proof-leaf", nonce, score bits)`,
/// nodes `H("gonka/proof-node", left, right)`, an odd node moves up unchanged.
/// The empty list's root is `H("gonka/proof-leaf")` with no parts.
pub fn merkle_root(proofs: &[ProofEntry]) -> Hash32 {
    let mut level: Vec<Hash32> = proofs
        .iter()
        .map(|p| tagged_hash("gonka/proof-leaf", &[&p.nonce.to_le_bytes(), &p.score.to_bits().to_le_bytes()]))
        .collect();
    if level.is_empty() {
        return tagged_hash("gonka/proof-leaf", &[]);
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => tagged_hash("gonka/proof-node", &[l, r]),
                [one] => *one,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
    }
    level[0]
}
