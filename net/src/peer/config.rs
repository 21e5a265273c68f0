//! The network's configuration: who we are on which chain, where to listen and
//! dial, and every limit a peer is held to.

use std::net::SocketAddr;
use std::time::Duration;

use super::NetError;
use super::wire::FIRST_RESERVED_KIND;
use crate::MAX_FRAME_BYTES;

/// Default per-peer outbound queue and event channel capacity, in frames:
/// about a second of gossip at a busy node.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Default time a misbehaving peer stays banned.
pub const DEFAULT_BAN_DURATION: Duration = Duration::from_secs(10 * 60);
/// Default time allowed for a whole handshake, including two signature checks.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default silence after which a connection is presumed dead. Writers send a
/// ping after a third of it without traffic.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Smallest idle timeout: pings go out every third of it, and the ping rate
/// limit ([`super::wire::PING_PER_SECOND`]) must cover them.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest duration any setting may have: far beyond any sensible value, and
/// short enough that deadlines computed from it never overflow.
pub const MAX_SETTING_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default number of connections, inbound and outbound together.
pub const DEFAULT_MAX_PEERS: usize = 64;
/// Default first wait before redialing an address.
pub const DEFAULT_REDIAL_MIN: Duration = Duration::from_millis(250);
/// Default longest wait between redials (the wait doubles up to it).
pub const DEFAULT_REDIAL_MAX: Duration = Duration::from_secs(30);

/// The limits of one message kind. The engine defines its kinds; the network
/// only enforces these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindLimit {
    /// The kind byte; below [`FIRST_RESERVED_KIND`], which the handshake uses.
    pub kind: u8,
    /// A name for logs and errors.
    pub name: &'static str,
    /// Largest body, in bytes (the frame length field counts one more, the kind byte).
    pub max_bytes: u32,
    /// Sustained frames per second a peer may send (token-bucket refill rate).
    pub per_second: u32,
    /// Frames a peer may send at once above the sustained rate (bucket size).
    /// Senders pace themselves with half of it, so the other half is the
    /// margin for frames that bunch up on the way (network and scheduling
    /// jitter): make it at least `per_second` times the worst jitter expected.
    pub burst: u32,
}

impl KindLimit {
    /// A kind with its limits.
    pub const fn new(kind: u8, name: &'static str, max_bytes: u32, per_second: u32, burst: u32) -> Self {
        Self { kind, name, max_bytes, per_second, burst }
    }
}

/// Everything the network needs to know; [`NetConfig::new`] fills in defaults.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The chain this node follows; a peer on another chain is refused.
    pub chain_id: [u8; 32],
    /// The peer protocol version; a peer with another version is refused.
    pub protocol_version: u32,
    /// Where to listen (port 0 picks a free port; see [`super::NetHandle::local_addr`]).
    pub listen: SocketAddr,
    /// Addresses to keep a connection to: each is dialed, and redialed with
    /// exponential backoff from `redial_min` to `redial_max` while not connected.
    pub dial: Vec<SocketAddr>,
    /// The message kinds peers may send, with their limits. Anything else is a
    /// violation.
    pub kinds: Vec<KindLimit>,
    /// Capacity of each peer's outbound queue and of the shared event channel, in frames.
    pub queue_capacity: usize,
    /// How long a peer (its key and its IP) stays banned after a violation.
    pub ban_duration: Duration,
    /// Time allowed for a whole handshake.
    pub handshake_timeout: Duration,
    /// Silence after which a connection is closed; also the longest a single
    /// write may stall on a peer that does not read.
    pub idle_timeout: Duration,
    /// Most connections at once, inbound and outbound together.
    pub max_peers: usize,
    /// Whether a ban also covers the peer's IP address (default `true`).
    /// Turn it off where honest hosts share an address: a local test network
    /// on one machine, or hosts behind one NAT. Violations before a key is
    /// proven are then not banned at all, only refused.
    pub ban_ips: bool,
    /// First wait before redialing.
    pub redial_min: Duration,
    /// Longest wait between redials.
    pub redial_max: Duration,
}

impl NetConfig {
    /// A configuration with default queues, timeouts and limits, no addresses to dial.
    pub fn new(chain_id: [u8; 32], protocol_version: u32, listen: SocketAddr, kinds: Vec<KindLimit>) -> Self {
        Self {
            chain_id,
            protocol_version,
            listen,
            dial: Vec::new(),
            kinds,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            ban_duration: DEFAULT_BAN_DURATION,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_peers: DEFAULT_MAX_PEERS,
            ban_ips: true,
            redial_min: DEFAULT_REDIAL_MIN,
            redial_max: DEFAULT_REDIAL_MAX,
        }
    }

    /// The limits of an application kind, if configured.
    pub fn kind(&self, kind: u8) -> Option<&KindLimit> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// Checks that the numbers make sense together.
    pub fn validate(&self) -> Result<(), NetError> {
        let bad = |field: &'static str, problem: String| Err(NetError::Config { field, problem });
        let mut seen = [false; 256];
        for k in &self.kinds {
            if k.kind >= FIRST_RESERVED_KIND {
                return bad(
                    "kinds",
                    format!("kind {:#04x} ({}) is reserved for the handshake", k.kind, k.name),
                );
            }
            if std::mem::replace(&mut seen[usize::from(k.kind)], true) {
                return bad("kinds", format!("kind {:#04x} ({}) is listed twice", k.kind, k.name));
            }
            if k.max_bytes >= MAX_FRAME_BYTES {
                return bad(
                    "kinds",
                    format!(
                        "max_bytes {} of {} leaves no room for the kind byte in a frame",
                        k.max_bytes, k.name
                    ),
                );
            }
            if k.per_second == 0 || k.burst == 0 {
                return bad("kinds", format!("{} needs per_second >= 1 and burst >= 1", k.name));
            }
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity", "must be at least 1".into());
        }
        if self.max_peers == 0 {
            return bad("max_peers", "must be at least 1".into());
        }
        let durations = [
            ("ban_duration", self.ban_duration),
            ("handshake_timeout", self.handshake_timeout),
            ("idle_timeout", self.idle_timeout),
            ("redial_max", self.redial_max),
        ];
        for (field, d) in durations {
            if d > MAX_SETTING_DURATION {
                return bad(field, format!("{d:?} exceeds {MAX_SETTING_DURATION:?}"));
            }
        }
        if self.handshake_timeout.is_zero() {
            return bad("handshake_timeout", "must be positive".into());
        }
        if self.idle_timeout < MIN_IDLE_TIMEOUT {
            return bad("idle_timeout", format!("{:?} is below {MIN_IDLE_TIMEOUT:?}", self.idle_timeout));
        }
        if self.redial_min.is_zero() || self.redial_min > self.redial_max {
            return bad(
                "redial_min",
                format!(
                    "need 0 < redial_min <= redial_max, got {:?}, {:?}",
                    self.redial_min, self.redial_max
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kinds: Vec<KindLimit>) -> NetConfig {
        NetConfig::new([0; 32], 1, SocketAddr::from(([127, 0, 0, 1], 0)), kinds)
    }

    #[test]
    fn validate_rejects_inconsistent_kinds() {
        assert!(config(vec![KindLimit::new(1, "a", 10, 1, 1)]).validate().is_ok());
        let reserved = config(vec![KindLimit::new(FIRST_RESERVED_KIND, "a", 10, 1, 1)]);
        assert!(matches!(reserved.validate(), Err(NetError::Config { field: "kinds", .. })));
        let twice = config(vec![KindLimit::new(1, "a", 10, 1, 1), KindLimit::new(1, "b", 10, 1, 1)]);
        assert!(twice.validate().is_err());
        assert!(config(vec![KindLimit::new(1, "a", MAX_FRAME_BYTES, 1, 1)]).validate().is_err());
        assert!(config(vec![KindLimit::new(1, "a", 10, 0, 1)]).validate().is_err());
    }

    #[test]
    fn validate_rejects_zero_limits() {
        let mut c = config(vec![]);
        c.queue_capacity = 0;
        assert!(c.validate().is_err());
        let mut c = config(vec![]);
        c.idle_timeout = Duration::from_millis(10);
        assert!(c.validate().is_err());
        let mut c = config(vec![]);
        c.redial_min = c.redial_max + Duration::from_secs(1);
        assert!(c.validate().is_err());
        let mut c = config(vec![]);
        c.ban_duration = Duration::MAX;
        assert!(matches!(c.validate(), Err(NetError::Config { field: "ban_duration", .. })));
    }
}
