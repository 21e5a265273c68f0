//! The byte format of a peer connection: frames, and the handshake messages
//! carried in the reserved kinds. Public so that fuzz targets and test peers
//! can speak it; the engine only needs [`super::NetHandle`].
//!
//! A frame (all integers little-endian):
//!
//! ```text
//!  0        4      5                    4 + len
//!  ┌────────┬──────┬───────────────────┐
//!  │ len u32│ kind │ body (len-1 bytes)│   len counts kind + body: 1 ..= MAX_FRAME_BYTES
//!  └────────┴──────┴───────────────────┘
//! ```
//!
//! The header is checked before any of the body is read: the length against
//! [`MAX_FRAME_BYTES`], the kind against the table of the connection's phase,
//! and the body length against that kind's `max_bytes`. Kinds from
//! [`FIRST_RESERVED_KIND`] up belong to this layer:
//!
//! ```text
//!  dialer                                   listener
//!    │── Hello {version, chain id, challenge, key} ──►│   both send at once,
//!    │◄── Hello ──────────────────────────────────────│   then check version, chain, self, bans
//!    │── Auth {sign(digest(Dialer))} ────────────────►│
//!    │◄── Auth {sign(digest(Listener))} ──────────────│   verify the other's signature
//!    │── Accept  (or Reject {reason}) ───────────────►│   registered (or duplicate, full)
//!    │◄── Accept (or Reject {reason}) ────────────────│
//!    │◄═══════ application frames, Ping, Reject ═════►│
//!
//!  digest(role) = sha256(HANDSHAKE_DOMAIN ‖ role byte ‖ u32 len ‖ dialer hello ‖ u32 len ‖ listener hello)
//! ```
//!
//! Each side's signature covers both fresh challenges and its own role, so it
//! is valid for this connection only and cannot be reflected back at its
//! signer. Hello body: `version u32 ‖ chain_id [32] ‖ challenge [32] ‖ public key`
//! (the rest of the body). Auth body: the signature. Reject body: a UTF-8
//! reason of at most [`MAX_REASON_BYTES`]. Accept and Ping bodies are empty.

use std::io;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::config::KindLimit;
use crate::{FrameError, MAX_FRAME_BYTES, frame_len};

/// Bytes of a frame header: the `u32` length and the kind byte.
pub const FRAME_HEADER_BYTES: usize = 5;
/// Kinds from here up are the peer layer's own; the engine's kinds are below.
pub const FIRST_RESERVED_KIND: u8 = 0xF0;
/// The first handshake message: version, chain, challenge, key.
pub const KIND_HELLO: u8 = 0xF0;
/// The handshake signature.
pub const KIND_AUTH: u8 = 0xF1;
/// The end of a successful handshake.
pub const KIND_ACCEPT: u8 = 0xF2;
/// A refusal or a closing notice, with a reason; valid in every phase.
pub const KIND_REJECT: u8 = 0xF3;
/// A keep-alive sent by an idle writer.
pub const KIND_PING: u8 = 0xF4;

/// Largest public key: a BLS12-381 G2 point uncompressed is 192 bytes.
pub const MAX_PUBLIC_KEY_BYTES: usize = 256;
/// Largest handshake signature: a BLS12-381 G2 point uncompressed is 192 bytes.
pub const MAX_SIGNATURE_BYTES: usize = 256;
/// Largest reason in a Reject; longer reasons are cut at a character boundary.
pub const MAX_REASON_BYTES: usize = 256;
/// Hello bytes before the public key: version, chain id, challenge.
pub const HELLO_FIXED_BYTES: usize = 4 + 32 + 32;
/// Domain separation of the handshake digest.
pub const HANDSHAKE_DOMAIN: &[u8] = b"gonka/net-handshake/v1";
/// Pings a peer may send per second. Writers ping after a third of the idle
/// timeout without traffic, so at most three per second at [`super::MIN_IDLE_TIMEOUT`].
pub const PING_PER_SECOND: u32 = 4;
/// Pings a peer may send at once.
pub const PING_BURST: u32 = 4;

/// Bodies above this are read in chunks of this size, so that a peer that
/// declares a large frame and then stalls does not make us allocate all of it.
const READ_CHUNK_BYTES: usize = 1 << 20;

const _: () = assert!((HELLO_FIXED_BYTES + MAX_PUBLIC_KEY_BYTES) < MAX_FRAME_BYTES as usize);
const _: () = assert!(KIND_PING >= FIRST_RESERVED_KIND && KIND_HELLO >= FIRST_RESERVED_KIND);

/// A frame that could not be read, or a handshake message that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer closed the connection between frames.
    #[error("connection closed by the peer")]
    Closed,
    /// The socket failed, or closed inside a frame.
    #[error("i/o error")]
    Io(#[from] io::Error),
    /// A length of zero: a frame has at least its kind byte.
    #[error("empty frame: the length must count the kind byte")]
    EmptyFrame,
    /// The length exceeds [`MAX_FRAME_BYTES`].
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A kind that is not valid in this phase of the connection.
    #[error("unexpected message kind {kind:#04x}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// A body longer than its kind allows.
    #[error("frame of kind {name} ({kind:#04x}) declares {len} body bytes, limit {max}")]
    KindTooLarge {
        /// The kind byte.
        kind: u8,
        /// Its name.
        name: &'static str,
        /// The declared body length.
        len: u32,
        /// The kind's limit.
        max: u32,
    },
    /// A handshake message whose fields do not parse.
    #[error("malformed {what}: {problem}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl WireError {
    /// Whether the error is the peer breaking the protocol (and so a reason to
    /// ban it), rather than the connection going away.
    pub fn is_violation(&self) -> bool {
        !matches!(self, Self::Closed | Self::Io(_))
    }
}

/// A frame as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The kind byte.
    pub kind: u8,
    /// The body.
    pub body: Vec<u8>,
}

/// The kinds accepted in one phase of a connection, with their body limits.
#[derive(Clone)]
pub struct FrameLimits {
    table: Box<[Option<(u32, &'static str)>; 256]>,
}

impl std::fmt::Debug for FrameLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<_> = (0..=u8::MAX)
            .filter_map(|k| self.table[usize::from(k)].map(|(max, name)| (k, name, max)))
            .collect();
        f.debug_struct("FrameLimits").field("kinds", &kinds).finish()
    }
}

impl FrameLimits {
    fn empty() -> Self {
        Self { table: Box::new([None; 256]) }
    }

    fn with(mut self, kind: u8, name: &'static str, max_bytes: usize) -> Self {
        let max = u32::try_from(max_bytes).unwrap_or(u32::MAX);
        self.table[usize::from(kind)] = Some((max, name));
        self
    }

    /// The handshake phase: Hello, Auth, Accept and Reject.
    pub fn handshake() -> Self {
        Self::empty()
            .with(KIND_HELLO, "hello", HELLO_FIXED_BYTES + MAX_PUBLIC_KEY_BYTES)
            .with(KIND_AUTH, "auth", MAX_SIGNATURE_BYTES)
            .with(KIND_ACCEPT, "accept", 0)
            .with(KIND_REJECT, "reject", MAX_REASON_BYTES)
    }

    /// The established phase: the engine's kinds, Ping and Reject.
    pub fn established(kinds: &[KindLimit]) -> Self {
        let base = Self::empty().with(KIND_PING, "ping", 0).with(KIND_REJECT, "reject", MAX_REASON_BYTES);
        kinds.iter().fold(base, |t, k| t.with(k.kind, k.name, k.max_bytes as usize))
    }

    /// The body limit and name of a kind accepted in this phase.
    pub fn limit(&self, kind: u8) -> Option<(u32, &'static str)> {
        self.table[usize::from(kind)]
    }

    /// Checks a frame header and returns its kind and body length. This is the
    /// whole decision on a frame's size; nothing of the body is read before it.
    pub fn check_header(&self, header: &[u8; FRAME_HEADER_BYTES]) -> Result<(u8, u32), WireError> {
        let len = frame_len(&header[..4])?;
        if len == 0 {
            return Err(WireError::EmptyFrame);
        }
        let kind = header[4];
        let body_len = len - 1;
        match self.table[usize::from(kind)] {
            None => Err(WireError::UnknownKind { kind }),
            Some((max, name)) if body_len > max => {
                Err(WireError::KindTooLarge { kind, name, len: body_len, max })
            }
            Some(_) => Ok((kind, body_len)),
        }
    }
}

/// Reads one frame, checking its header before reading its body.
///
/// Not cancel-safe: dropped halfway, it leaves the stream inside a frame.
/// Callers cancel it only to abandon the connection.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &FrameLimits,
) -> Result<Frame, WireError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let first = reader.read(&mut header).await?;
    if first == 0 {
        return Err(WireError::Closed);
    }
    reader.read_exact(&mut header[first..]).await?;
    let (kind, body_len) = limits.check_header(&header)?;
    let body_len = body_len as usize;
    let mut body = Vec::new();
    while body.len() < body_len {
        let chunk = (body_len - body.len()).min(READ_CHUNK_BYTES);
        body.reserve_exact(chunk);
        // `take` bounds the read to this chunk; `read_buf` fills the spare
        // capacity without zeroing it first.
        let mut limited = (&mut *reader).take(chunk as u64);
        while limited.limit() > 0 {
            if limited.read_buf(&mut body).await? == 0 {
                return Err(WireError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
    Ok(Frame { kind, body })
}

/// The header of a frame with a body of `body_len` bytes.
pub fn frame_header(kind: u8, body_len: usize) -> Result<[u8; FRAME_HEADER_BYTES], FrameError> {
    let len = u32::try_from(body_len).ok().and_then(|n| n.checked_add(1)).unwrap_or(u32::MAX);
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4] = kind;
    Ok(header)
}

/// A whole frame in one buffer.
pub fn encode_frame(kind: u8, body: &[u8]) -> Result<Vec<u8>, FrameError> {
    let header = frame_header(kind, body.len())?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);
    Ok(frame)
}

/// Writes one frame (header, then body) without flushing.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, kind: u8, body: &[u8]) -> io::Result<()> {
    let header = frame_header(kind, body.len()).map_err(io::Error::other)?;
    writer.write_all(&header).await?;
    writer.write_all(body).await
}

/// The first handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The sender's protocol version.
    pub version: u32,
    /// The sender's chain.
    pub chain_id: [u8; 32],
    /// Fresh random bytes for the other side to sign over.
    pub challenge: [u8; 32],
    /// The sender's public key: 1 ..= [`MAX_PUBLIC_KEY_BYTES`] bytes.
    pub public_key: Vec<u8>,
}

impl Hello {
    /// The body bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HELLO_FIXED_BYTES + self.public_key.len());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.chain_id);
        out.extend_from_slice(&self.challenge);
        out.extend_from_slice(&self.public_key);
        out
    }

    /// Parses a body; checks only lengths (the caller checks the values).
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let malformed = |problem: String| WireError::Malformed { what: "hello", problem };
        let (version, rest) = body
            .split_first_chunk::<4>()
            .ok_or_else(|| malformed(format!("{} bytes, need at least {HELLO_FIXED_BYTES}", body.len())))?;
        let (chain_id, rest) = rest
            .split_first_chunk::<32>()
            .ok_or_else(|| malformed(format!("{} bytes, need at least {HELLO_FIXED_BYTES}", body.len())))?;
        let (challenge, public_key) = rest
            .split_first_chunk::<32>()
            .ok_or_else(|| malformed(format!("{} bytes, need at least {HELLO_FIXED_BYTES}", body.len())))?;
        if public_key.is_empty() || public_key.len() > MAX_PUBLIC_KEY_BYTES {
            return Err(malformed(format!(
                "public key of {} bytes, expected 1 to {MAX_PUBLIC_KEY_BYTES}",
                public_key.len()
            )));
        }
        Ok(Self {
            version: u32::from_le_bytes(*version),
            chain_id: *chain_id,
            challenge: *challenge,
            public_key: public_key.to_vec(),
        })
    }
}

/// Which end of a connection a side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side that opened the TCP connection.
    Dialer,
    /// The side that accepted it.
    Listener,
}

impl Role {
    /// The other end.
    pub fn other(self) -> Self {
        match self {
            Self::Dialer => Self::Listener,
            Self::Listener => Self::Dialer,
        }
    }

    fn byte(self) -> u8 {
        match self {
            Self::Dialer => 0,
            Self::Listener => 1,
        }
    }
}

/// What the side playing `signer` signs: both hello bodies as sent, in the
/// fixed order dialer then listener, under the handshake domain and the role.
pub fn handshake_digest(signer: Role, dialer_hello: &[u8], listener_hello: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(HANDSHAKE_DOMAIN);
    h.update([signer.byte()]);
    for hello in [dialer_hello, listener_hello] {
        // Hello bodies are bounded by their frame limit, far below u32::MAX.
        h.update((hello.len() as u32).to_le_bytes());
        h.update(hello);
    }
    h.finalize().into()
}

/// A Reject body: the reason, cut to [`MAX_REASON_BYTES`] at a character boundary.
pub fn encode_reason(reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.as_bytes()[..end].to_vec()
}

/// The reason in a Reject body; invalid UTF-8 is replaced, not refused.
pub fn decode_reason(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(MAX_REASON_BYTES)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(seed: u8) -> Hello {
        Hello { version: 7, chain_id: [seed; 32], challenge: [seed ^ 0xff; 32], public_key: vec![seed; 48] }
    }

    /// Tiny deterministic generator for the no-panic sweep (seed printed by the test).
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn hello_round_trips_and_rejects_bad_lengths() {
        let h = hello(3);
        assert_eq!(Hello::decode(&h.encode()).ok(), Some(h.clone()));
        let bytes = h.encode();
        assert!(matches!(Hello::decode(&bytes[..HELLO_FIXED_BYTES]), Err(WireError::Malformed { .. })));
        assert!(Hello::decode(&bytes[..10]).is_err());
        let mut long = h.clone();
        long.public_key = vec![1; MAX_PUBLIC_KEY_BYTES + 1];
        assert!(Hello::decode(&long.encode()).is_err());
    }

    /// Frozen format: the handshake digest and frame encoding of fixed values.
    /// Changing either splits the network; bump `HANDSHAKE_DOMAIN` and the version instead.
    #[test]
    fn handshake_digest_and_frame_are_frozen() {
        let d = handshake_digest(Role::Dialer, &hello(1).encode(), &hello(2).encode());
        let l = handshake_digest(Role::Listener, &hello(1).encode(), &hello(2).encode());
        assert_ne!(d, l, "the role must be part of the digest");
        assert_eq!(hex::encode(d), "2d8f6ebcd1088798261ce1d47672d3de2ed86ad6c318b0c6c80b607c0157303d");
        assert_eq!(encode_frame(0x12, b"abc").ok(), Some(vec![4, 0, 0, 0, 0x12, b'a', b'b', b'c']));
    }

    #[test]
    fn header_checks_length_kind_and_limit() {
        let limits = FrameLimits::established(&[KindLimit::new(1, "tx", 100, 1, 1)]);
        let header = |len: u32, kind: u8| {
            let mut h = [0u8; FRAME_HEADER_BYTES];
            h[..4].copy_from_slice(&len.to_le_bytes());
            h[4] = kind;
            h
        };
        assert_eq!(limits.check_header(&header(101, 1)).ok(), Some((1, 100)));
        assert!(matches!(
            limits.check_header(&header(102, 1)),
            Err(WireError::KindTooLarge { len: 101, .. })
        ));
        assert!(matches!(limits.check_header(&header(0, 1)), Err(WireError::EmptyFrame)));
        assert!(matches!(limits.check_header(&header(5, 2)), Err(WireError::UnknownKind { kind: 2 })));
        assert!(matches!(limits.check_header(&header(u32::MAX, 1)), Err(WireError::Frame(_))));
        assert!(matches!(limits.check_header(&header(1, KIND_HELLO)), Err(WireError::UnknownKind { .. })));
        assert!(limits.check_header(&header(1, KIND_PING)).is_ok());
        assert!(FrameLimits::handshake().check_header(&header(1, 1)).is_err());
    }

    #[tokio::test]
    async fn bodies_longer_than_a_read_chunk_round_trip() {
        let limits = FrameLimits::established(&[KindLimit::new(1, "big", 4 << 20, 1, 1)]);
        let body: Vec<u8> = (0..(READ_CHUNK_BYTES * 5 / 2 + 1)).map(|i| i as u8).collect();
        let mut bytes = encode_frame(1, &body).expect("within the cap");
        bytes.extend_from_slice(&encode_frame(KIND_PING, &[]).expect("empty"));
        let mut reader = bytes.as_slice();
        let frame = read_frame(&mut reader, &limits).await.expect("a whole frame");
        assert_eq!((frame.kind, frame.body.len()), (1, body.len()));
        assert!(frame.body == body, "the body arrives intact across chunks");
        assert_eq!(
            read_frame(&mut reader, &limits).await.ok(),
            Some(Frame { kind: KIND_PING, body: vec![] })
        );
        assert!(matches!(read_frame(&mut reader, &limits).await, Err(WireError::Closed)));
        let mut truncated = &bytes[..bytes.len() / 2];
        assert!(matches!(read_frame(&mut truncated, &limits).await, Err(WireError::Io(_))));
    }

    #[test]
    fn reasons_are_cut_at_char_boundaries() {
        let long = "é".repeat(MAX_REASON_BYTES);
        let body = encode_reason(&long);
        assert!(body.len() <= MAX_REASON_BYTES);
        assert_eq!(decode_reason(&body), "é".repeat(MAX_REASON_BYTES / 2));
        assert_eq!(decode_reason(&[0xff, b'a']), "\u{fffd}a");
    }

    /// Guards against a panic on any byte sequence: random streams through the
    /// frame reader and the hello decoder must only ever return errors or frames.
    #[tokio::test]
    async fn random_bytes_never_panic() {
        let seed = 0x5eed_u64;
        println!("seed {seed:#x}");
        let mut state = seed;
        let limits = FrameLimits::established(&[KindLimit::new(1, "tx", 64, 1, 1)]);
        for round in 0..2000 {
            let len = (xorshift(&mut state) % 80) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
            if round % 3 == 0 && bytes.len() >= 5 {
                // Make some headers plausible, so bodies get read too.
                bytes[..4].copy_from_slice(&((len as u32).saturating_sub(4)).to_le_bytes());
                bytes[4] = 1;
            }
            let _ = Hello::decode(&bytes);
            let mut reader = bytes.as_slice();
            while let Ok(frame) = read_frame(&mut reader, &limits).await {
                assert!(frame.body.len() <= 64);
            }
        }
    }
}
