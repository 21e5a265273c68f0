//! The rkyv encoding of crypto messages and its checked decoder: a size
//! limit before parsing, bytecheck validation of every byte, then each type's
//! own bounds on its variable-length fields.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

/// Why bytes from outside are not a valid crypto message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Larger than the message kind allows.
    #[error("{kind} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The message kind.
        kind: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Fails rkyv validation.
    #[error("malformed {kind}: {reason}")]
    Malformed {
        /// The message kind.
        kind: &'static str,
        /// The validator's message.
        reason: String,
    },
    /// A field is longer than its bound.
    #[error("{kind}.{field} has {len} elements, at most {max} are allowed")]
    FieldTooLong {
        /// The message kind.
        kind: &'static str,
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
}

/// A message kind with a size limit and bounds on its fields.
pub trait WireMessage: Sized {
    /// Its name in errors.
    const KIND: &'static str;
    /// Largest encoding accepted.
    const MAX_BYTES: usize;
    /// Checks the bounds of variable-length fields after decoding.
    fn check_bounds(&self) -> Result<(), WireError>;
}

/// Encodes a message.
pub fn encode<T>(value: &T) -> Vec<u8>
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    rkyv::to_bytes::<rancor::Error>(value).expect("serialising to memory cannot fail").to_vec()
}

/// Decodes and validates a message from untrusted bytes.
pub fn decode<T>(bytes: &[u8]) -> Result<T, WireError>
where
    T: WireMessage + Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, HighDeserializer<rancor::Error>>,
{
    if bytes.len() > T::MAX_BYTES {
        return Err(WireError::TooLarge { kind: T::KIND, len: bytes.len(), max: T::MAX_BYTES });
    }
    let value = rkyv::from_bytes::<T, rancor::Error>(bytes)
        .map_err(|e| WireError::Malformed { kind: T::KIND, reason: e.to_string() })?;
    value.check_bounds()?;
    Ok(value)
}

/// `Err(FieldTooLong)` when `len > max`.
pub(crate) fn bound(
    kind: &'static str,
    field: &'static str,
    len: usize,
    max: usize,
) -> Result<(), WireError> {
    if len > max { Err(WireError::FieldTooLong { kind, field, len, max }) } else { Ok(()) }
}
