//! The proof file: a fixed header, then the rkyv payload. Every read checks
//! sizes, magic and version before bytecheck validates the payload.

use rkyv::rancor;

use super::ProofBatch;

/// First eight bytes of every proof file.
pub const MAGIC: [u8; 8] = *b"GONKAPRF";
/// The payload layout this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Largest file accepted: four million proofs (16 bytes each) plus headroom.
/// At one proof in 900 nonces that is a Sprint of 3.6 billion nonces.
pub const MAX_PROOF_FILE_BYTES: usize = 64 << 20;
const HEADER_BYTES: usize = 16;

/// Why a proof file cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofFileError {
    /// Shorter than the header.
    #[error("truncated proof file: {len} bytes, the header alone is {HEADER_BYTES}")]
    TruncatedHeader {
        /// File length.
        len: usize,
    },
    /// Larger than [`MAX_PROOF_FILE_BYTES`].
    #[error("proof file of {len} bytes exceeds the limit of {MAX_PROOF_FILE_BYTES} bytes")]
    TooLarge {
        /// File length.
        len: usize,
    },
    /// Not a proof file.
    #[error("not a proof file: magic {found:02x?}, expected \"GONKAPRF\"")]
    BadMagic {
        /// The first eight bytes.
        found: [u8; 8],
    },
    /// Written by another format version.
    #[error("unsupported proof file version {found}; this build reads version {FORMAT_VERSION}")]
    UnsupportedVersion {
        /// The file's version.
        found: u16,
    },
    /// Reserved header bytes are not zero.
    #[error("reserved header field is {found}, expected 0")]
    Reserved {
        /// Its value.
        found: u16,
    },
    /// The header's length disagrees with the file.
    #[error("payload length mismatch: header says {declared} bytes, file holds {actual}")]
    LengthMismatch {
        /// From the header.
        declared: usize,
        /// After the header.
        actual: usize,
    },
    /// The payload fails rkyv validation.
    #[error("malformed proof payload: {0}")]
    Payload(String),
}

/// Serialises a batch into a complete file.
pub fn encode_proof_file(batch: &ProofBatch) -> Vec<u8> {
    let payload = rkyv::to_bytes::<rancor::Error>(batch).expect("serialising to memory cannot fail");
    let len = u32::try_from(payload.len()).expect("proof batch fits the 4 GiB length field");
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Reads a file's batch, validating every byte. Semantic checks (order,
/// distances, signature) are [`super::check_batch`]'s.
pub fn decode_proof_file(bytes: &[u8]) -> Result<ProofBatch, ProofFileError> {
    if bytes.len() > MAX_PROOF_FILE_BYTES {
        return Err(ProofFileError::TooLarge { len: bytes.len() });
    }
    let Some((header, payload)) = bytes.split_first_chunk::<HEADER_BYTES>() else {
        return Err(ProofFileError::TruncatedHeader { len: bytes.len() });
    };
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&header[..8]);
    if magic != MAGIC {
        return Err(ProofFileError::BadMagic { found: magic });
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != FORMAT_VERSION {
        return Err(ProofFileError::UnsupportedVersion { found: version });
    }
    let reserved = u16::from_le_bytes([header[10], header[11]]);
    if reserved != 0 {
        return Err(ProofFileError::Reserved { found: reserved });
    }
    let declared = u32::from_le_bytes([header[12], header[13], header[14], header[15]]) as usize;
    if declared != payload.len() {
        return Err(ProofFileError::LengthMismatch { declared, actual: payload.len() });
    }
    rkyv::from_bytes::<ProofBatch, rancor::Error>(payload).map_err(|e| ProofFileError::Payload(e.to_string()))
}
