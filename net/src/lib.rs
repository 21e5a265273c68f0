//! The wire of the Gonka host: authenticated peer connections on tokio,
//! framing, gossip, sync requests, back-pressure; the HTTP API server.
//!
//! This crate moves bytes and knows no protocol types: the engine gives them
//! meaning. Start reading at the two modules:
//!
//! - [`peer`]: TCP between hosts. [`peer::Network::start`] returns a
//!   [`peer::NetHandle`] (send, broadcast, disconnect, ban, shutdown) and the
//!   bounded receiver of [`peer::NetEvent`]s. In the handshake both sides
//!   prove their key ([`peer::Identity`]; BLS in the engine) by signing both
//!   fresh challenges, and chain id and protocol version must match. Each
//!   message kind has a size cap and a rate limit ([`peer::KindLimit`]); a
//!   peer that breaks one is banned, by key and IP. [`peer::SeenCache`]
//!   de-duplicates gossip; [`peer::wire`] is the byte format.
//! - [`api`]: the HTTP API server.
//!
//! Every frame on a peer connection, checked from its header before the body
//! is read:
//!
//! ```text
//!  ┌──────────────┬──────┬─────────────────────┐
//!  │ len: u32 LE  │ kind │ body: len - 1 bytes │   1 <= len <= MAX_FRAME_BYTES
//!  └──────────────┴──────┴─────────────────────┘
//! ```
//!
//! No cargo features.

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
