//! The wire of the Gonka host: authenticated peer connections on tokio,
//! framing, gossip, sync requests, back-pressure; the HTTP API server.
//!
//! This crate moves bytes and knows no protocol types. Until the peer layer
//! lands it holds the frame limits and the length-prefixed frame header that
//! every connection will use: a `u32` little-endian length, then the body.

pub mod api;
pub mod peer;

/// Largest frame a peer may send: a full proof batch of a long Sprint plus headroom.
pub const MAX_FRAME_BYTES: u32 = 16 << 20;

/// A frame header that cannot be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer than four bytes of header.
    #[error("frame header truncated: {0} of 4 bytes")]
    Truncated(usize),
    /// The declared body exceeds [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes")]
    TooLarge(u32),
}

/// Reads the body length of a frame from its 4-byte header.
pub fn frame_len(header: &[u8]) -> Result<u32, FrameError> {
    let h: [u8; 4] =
        header.get(..4).and_then(|h| h.try_into().ok()).ok_or(FrameError::Truncated(header.len()))?;
    let len = u32::from_le_bytes(h);
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_header_limits() {
        assert_eq!(frame_len(&[1, 0, 0, 0]), Ok(1));
        assert_eq!(frame_len(&[1, 0]), Err(FrameError::Truncated(2)));
        assert_eq!(frame_len(&u32::MAX.to_le_bytes()), Err(FrameError::TooLarge(u32::MAX)));
    }
}
