//! Errors the peer layer returns to the engine.

use std::io;
use std::net::SocketAddr;

use super::PeerId;

/// Why a network call failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The configuration is inconsistent.
    #[error("invalid network config field `{field}`: {problem}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The configured listen address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// There is no established connection to the peer.
    #[error("peer {peer} is not connected")]
    NotConnected {
        /// Who.
        peer: PeerId,
    },
    /// The peer's outbound queue is full: it reads slower than we send. The
    /// message was not queued; the caller may drop it or retry later.
    #[error("outbound queue to peer {peer} is full ({capacity} frames)")]
    Backpressure {
        /// Who.
        peer: PeerId,
        /// The queue capacity ([`super::NetConfig::queue_capacity`]).
        capacity: usize,
    },
    /// The kind is not one of [`super::NetConfig::kinds`]; a peer would ban us for it.
    #[error("message kind {kind:#04x} is not configured")]
    UnknownKind {
        /// The kind.
        kind: u8,
    },
    /// The body exceeds its kind's `max_bytes`; a peer would ban us for it.
    #[error("body of {len} bytes exceeds the {max}-byte limit of kind {name} ({kind:#04x})")]
    TooLarge {
        /// The kind.
        kind: u8,
        /// Its name.
        name: &'static str,
        /// The body length.
        len: usize,
        /// The kind's limit.
        max: u32,
    },
    /// The network has been shut down.
    #[error("the network is shut down")]
    Shutdown,
}
