//! The peer layer: authenticated TCP connections between hosts, length-prefixed
//! frames with a size cap and a rate limit per message kind, bans for peers that
//! misbehave, and a de-duplication set for gossip. It moves `(kind, bytes)`
//! pairs and knows no protocol type: the engine gives the bytes meaning.
//!
//! Start at [`Network::start`]: it binds the listener, spawns the tasks and
//! returns a [`NetHandle`] (send, broadcast, disconnect, ban, shut down) and
//! the bounded receiver of [`NetEvent`]s. [`NetConfig`] lists every limit;
//! [`wire`] is the byte format (public so that fuzz targets and test peers
//! can speak it). Then `node.rs` (listener, dialers, handle), `handshake.rs`,
//! `conn.rs` (registry, reader, writer), `limits.rs` (token buckets, bans).
//!
//! ```text
//!  engine ── NetHandle::send ──► per-peer queue (bounded, try_send) ─► writer task ─► TCP
//!  engine ◄── NetEvent ◄── shared event channel (bounded, awaited) ◄── reader task ◄── TCP
//!
//!  one listener task, one dialer task per configured address,
//!  and per connection: one reader task (it owns the connection) + one writer task
//! ```
//!
//! Threading: everything runs as tasks on the tokio runtime that called
//! [`Network::start`]; the handle's methods (but `send_async` and `closed`)
//! are plain non-blocking calls, usable from any thread, and the event
//! receiver works both blocking (`recv`) and async (`recv_async`).
//!
//! Back-pressure runs end to end. When the engine does not drain events, the
//! reader tasks wait on the event channel, stop reading their sockets, and the
//! kernel windows fill, so the senders' writers block and their per-peer queues
//! fill: [`NetHandle::send`] there returns [`NetError::Backpressure`]. The
//! writer paces each kind to the rate limit the receiver enforces (with half
//! its burst), so an honest node does not get itself banned by sending too
//! fast; and a receiver credits the time it stalled on its engine to the
//! sender, so the frames that piled up meanwhile do not count as a flood.
//!
//! Events arrive in order per connection: `Connected`, its `Message`s, then
//! exactly one `Disconnected`. `Banned` and `Refused` are informational and
//! dropped (with a log line) when the event channel is full, so that a flood
//! of bad connections cannot crowd out messages.
//!
//! Bans: a frame with an unknown kind, a size over its kind's cap or
//! [`crate::MAX_FRAME_BYTES`], or beyond its kind's rate bans the peer's key
//! and IP for [`NetConfig::ban_duration`]; so does [`NetHandle::ban`]. A
//! violation before the key is proven (garbage, a bad signature) bans the IP
//! only. Connections from a banned IP or key are refused with the reason.
//! Hosts that share an IP share its bans, unless [`NetConfig::ban_ips`] is off.
//!
//! Security model: the handshake proves that the other end holds the private
//! key of its [`PeerId`] (see [`wire`] for the transcript). Frames after it are
//! neither encrypted nor individually authenticated; whoever can hijack a TCP
//! stream can inject frames, so anything whose origin matters must be signed
//! by the engine at the protocol layer.

mod config;
mod conn;
mod error;
mod handshake;
mod limits;
mod node;
mod seen;
pub mod wire;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{
    DEFAULT_BAN_DURATION, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_PEERS,
    DEFAULT_QUEUE_CAPACITY, DEFAULT_REDIAL_MAX, DEFAULT_REDIAL_MIN, KindLimit, MAX_SETTING_DURATION,
    MIN_IDLE_TIMEOUT, NetConfig,
};
pub use error::NetError;
pub use node::{NetHandle, Network};
pub use seen::SeenCache;

/// The receiving end of the network's events, as [`Network::start`] returns it.
pub type EventReceiver = flume::Receiver<NetEvent>;

/// The node's long-term key, as the peer layer needs it: the engine implements
/// it with BLS under its own domain tag.
///
/// `sign` and `verify` run on tokio's blocking pool during handshakes, so a
/// millisecond-long pairing check does not stall the reactor.
pub trait Identity: Send + Sync + 'static {
    /// The public key that peers will know this node by (its [`PeerId`]); at
    /// most [`wire::MAX_PUBLIC_KEY_BYTES`] bytes.
    fn public_key(&self) -> Vec<u8>;
    /// Signs a 32-byte handshake digest; at most [`wire::MAX_SIGNATURE_BYTES`] bytes.
    fn sign(&self, message: &[u8]) -> Vec<u8>;
    /// Checks a signature by `public_key` over `message`. All three come from
    /// the network: an invalid key or signature must return `false`, never panic.
    fn verify(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool;
}

/// A peer, named by the public key it proved it holds during the handshake.
///
/// Cheap to clone (shared bytes). Orders and hashes by the key bytes; displays
/// as the first six bytes in hex, which is enough to tell peers apart in logs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(Arc<[u8]>);

impl PeerId {
    /// Bytes shown by `Display`.
    const SHORT_BYTES: usize = 6;

    /// The peer id of a public key.
    pub fn new(public_key: &[u8]) -> Self {
        Self(public_key.into())
    }

    /// The public key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The whole public key in hex.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl From<&[u8]> for PeerId {
    fn from(public_key: &[u8]) -> Self {
        Self::new(public_key)
    }
}

impl From<Vec<u8>> for PeerId {
    fn from(public_key: Vec<u8>) -> Self {
        Self(public_key.into())
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = &self.0[..self.0.len().min(Self::SHORT_BYTES)];
        f.write_str(&hex::encode(short))?;
        if self.0.len() > Self::SHORT_BYTES {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// A connected peer, as [`NetHandle::peers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Who.
    pub peer: PeerId,
    /// The remote socket address of the connection.
    pub addr: SocketAddr,
    /// Whether the peer dialed us.
    pub inbound: bool,
}

/// What the network reports to the engine, through the bounded channel that
/// [`Network::start`] returns.
#[derive(Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// A handshake completed; messages to and from `peer` may flow.
    Connected {
        /// Who.
        peer: PeerId,
        /// The remote socket address.
        addr: SocketAddr,
        /// Whether the peer dialed us.
        inbound: bool,
    },
    /// A frame of a configured kind arrived, within its size and rate limits.
    /// The body is untrusted bytes: the engine validates them.
    Message {
        /// Who sent it.
        peer: PeerId,
        /// Its kind, one of [`NetConfig::kinds`].
        kind: u8,
        /// Its body.
        body: Vec<u8>,
    },
    /// The connection that `Connected` announced has ended.
    Disconnected {
        /// Who.
        peer: PeerId,
        /// Why, in words (local decision, error, or the peer's stated reason).
        reason: String,
    },
    /// The network banned a peer for a protocol violation (malformed or
    /// oversized frame, unknown kind, rate exceeded, bad handshake signature).
    /// `peer` is `None` when the violation came before the peer proved its key;
    /// then only the address is banned.
    Banned {
        /// Who, when known.
        peer: Option<PeerId>,
        /// Their address; its IP is banned too.
        addr: SocketAddr,
        /// The violation.
        reason: String,
    },
    /// A handshake did not complete: refused by us or by the peer (the reason
    /// says which), timed out, or broke off.
    Refused {
        /// Who, when their hello arrived.
        peer: Option<PeerId>,
        /// The remote socket address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

impl fmt::Debug for NetEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connected { peer, addr, inbound } => {
                write!(f, "Connected {{ peer: {peer}, addr: {addr}, inbound: {inbound} }}")
            }
            // Bodies can be megabytes: show their length only.
            Self::Message { peer, kind, body } => {
                write!(f, "Message {{ peer: {peer}, kind: {kind:#04x}, body: {} bytes }}", body.len())
            }
            Self::Disconnected { peer, reason } => {
                write!(f, "Disconnected {{ peer: {peer}, reason: {reason:?} }}")
            }
            Self::Banned { peer, addr, reason } => {
                write!(f, "Banned {{ peer: {peer:?}, addr: {addr}, reason: {reason:?} }}")
            }
            Self::Refused { peer, addr, reason } => {
                write!(f, "Refused {{ peer: {peer:?}, addr: {addr}, reason: {reason:?} }}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_displays_short_hex() {
        let id = PeerId::new(&[0xab; 48]);
        assert_eq!(id.to_string(), "abababababab…");
        assert_eq!(PeerId::new(&[1, 2]).to_string(), "0102");
        assert_eq!(id.to_hex().len(), 96);
        assert!(PeerId::new(&[1]) < PeerId::new(&[2]));
    }
}
