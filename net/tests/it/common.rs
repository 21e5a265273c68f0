//! Shared helpers: a toy identity, node configs, event waits, and a raw peer
//! that speaks the wire format by hand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gonka_net::peer::wire::{
    FRAME_HEADER_BYTES, Frame, FrameLimits, Hello, KIND_ACCEPT, KIND_AUTH, KIND_HELLO, KIND_REJECT, Role,
    decode_reason, encode_frame, handshake_digest, read_frame,
};
use gonka_net::peer::{Identity, KindLimit, NetConfig, NetEvent, NetHandle, Network, PeerId};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The chain of every test node.
pub const CHAIN: [u8; 32] = [7; 32];
/// The protocol version of every test node.
pub const VERSION: u32 = 1;
/// A small, frequent kind.
pub const KIND_TX: u8 = 1;
/// A large kind.
pub const KIND_BLOCK: u8 = 2;
/// Largest body of [`KIND_TX`].
pub const TX_MAX: u32 = 1024;
/// Largest body of [`KIND_BLOCK`].
pub const BLOCK_MAX: u32 = 64 << 10;
/// Longest wait for an expected event; far above what any step needs.
pub const WAIT: Duration = Duration::from_secs(10);

/// Test double of the engine's BLS identity. Its "signature" is
/// `sha256(key ‖ message)`, which anyone who knows the public key can forge:
/// fine for exercising the handshake, never acceptable as crypto.
#[derive(Debug)]
pub struct ToyIdentity {
    key: Vec<u8>,
    /// Signs the wrong bytes, to play a peer whose proof fails.
    wrong: bool,
}

impl ToyIdentity {
    /// The identity of test node `seed`.
    pub fn new(seed: u64) -> Arc<Self> {
        let key = Sha256::digest(seed.to_le_bytes()).to_vec();
        Arc::new(Self { key, wrong: false })
    }

    /// An identity whose signatures do not verify.
    pub fn forger(seed: u64) -> Arc<Self> {
        let key = Sha256::digest(seed.to_le_bytes()).to_vec();
        Arc::new(Self { key, wrong: true })
    }

    /// Its peer id.
    pub fn id(&self) -> PeerId {
        PeerId::new(&self.key)
    }

    fn toy_sign(key: &[u8], message: &[u8]) -> Vec<u8> {
        Sha256::new()
            .chain_update(b"toy-signature")
            .chain_update(key)
            .chain_update(message)
            .finalize()
            .to_vec()
    }
}

impl Identity for ToyIdentity {
    fn public_key(&self) -> Vec<u8> {
        self.key.clone()
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        if self.wrong {
            Self::toy_sign(&self.key, b"something else")
        } else {
            Self::toy_sign(&self.key, message)
        }
    }

    fn verify(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        Self::toy_sign(public_key, message) == signature
    }
}

/// The test kinds, with limits no honest test comes near.
pub fn kinds() -> Vec<KindLimit> {
    vec![
        KindLimit::new(KIND_TX, "tx", TX_MAX, 100_000, 100_000),
        KindLimit::new(KIND_BLOCK, "block", BLOCK_MAX, 100_000, 100_000),
    ]
}

/// A config on a free loopback port with short timeouts.
pub fn config() -> NetConfig {
    let mut c = NetConfig::new(CHAIN, VERSION, SocketAddr::from(([127, 0, 0, 1], 0)), kinds());
    c.handshake_timeout = Duration::from_secs(5);
    c.redial_min = Duration::from_millis(20);
    c.redial_max = Duration::from_millis(200);
    c.ban_duration = Duration::from_secs(60);
    c
}

/// A running node.
pub struct Node {
    pub net: NetHandle,
    pub events: flume::Receiver<NetEvent>,
    pub id: PeerId,
}

impl Node {
    pub fn addr(&self) -> SocketAddr {
        self.net.local_addr()
    }
}

/// Starts node `seed` with `config`.
pub async fn node(config: NetConfig, seed: u64) -> Node {
    node_with(config, ToyIdentity::new(seed)).await
}

/// Starts a node with a given identity.
pub async fn node_with(config: NetConfig, identity: Arc<ToyIdentity>) -> Node {
    let id = identity.id();
    let (net, events) = Network::start(config, identity).await.expect("network starts");
    Node { net, events, id }
}

/// Waits for the first event that `pick` accepts, skipping others; panics
/// naming `what` if none comes within [`WAIT`].
pub async fn wait_for<T>(node: &Node, what: &str, mut pick: impl FnMut(NetEvent) -> Option<T>) -> T {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let event = node.events.recv_async().await.expect("event channel open");
            if let Some(t) = pick(event) {
                return t;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits for `Connected` to `peer`.
pub async fn connected(node: &Node, peer: &PeerId) {
    wait_for(node, &format!("Connected to {peer}"), |e| match e {
        NetEvent::Connected { peer: p, .. } if p == *peer => Some(()),
        _ => None,
    })
    .await
}

/// Waits for `Connected` to each of `peers`, in any order.
pub async fn connected_all(node: &Node, peers: &[&PeerId]) {
    let mut missing: Vec<PeerId> = peers.iter().map(|p| (*p).clone()).collect();
    while !missing.is_empty() {
        let what = format!("Connected to each of {missing:?}");
        let peer = wait_for(node, &what, |e| match e {
            NetEvent::Connected { peer, .. } => Some(peer),
            _ => None,
        })
        .await;
        missing.retain(|p| *p != peer);
    }
}

/// Waits for a message of `kind` from `from`; returns its body.
pub async fn message(node: &Node, from: &PeerId, kind: u8) -> Vec<u8> {
    wait_for(node, &format!("message of kind {kind} from {from}"), |e| match e {
        NetEvent::Message { peer, kind: k, body } if peer == *from && k == kind => Some(body),
        _ => None,
    })
    .await
}

/// Waits for a `Refused` event; returns its reason.
pub async fn refused(node: &Node) -> String {
    wait_for(node, "Refused", |e| match e {
        NetEvent::Refused { reason, .. } => Some(reason),
        _ => None,
    })
    .await
}

/// Waits for a `Banned` event; returns the banned peer (if known) and the reason.
pub async fn banned(node: &Node) -> (Option<PeerId>, String) {
    wait_for(node, "Banned", |e| match e {
        NetEvent::Banned { peer, reason, .. } => Some((peer, reason)),
        _ => None,
    })
    .await
}

/// Every event already queued, without waiting.
pub fn drain(node: &Node) -> Vec<NetEvent> {
    node.events.try_iter().collect()
}

/// Two started nodes, the second dialing the first, both past `Connected`.
pub async fn pair() -> (Node, Node) {
    let a = node(config(), 1).await;
    let mut cb = config();
    cb.dial = vec![a.addr()];
    let b = node(cb, 2).await;
    connected(&a, &b.id).await;
    connected(&b, &a.id).await;
    (a, b)
}

/// Deterministic bytes for the garbage tests (xorshift64 from `seed`).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.max(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

/// A hand-driven peer connection.
pub struct RawPeer {
    pub stream: TcpStream,
}

impl RawPeer {
    /// Writes bytes as they are.
    pub async fn write(&mut self, bytes: &[u8]) {
        // The node may already have closed on us; what matters is what it reports.
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// Writes one well-formed frame.
    pub async fn frame(&mut self, kind: u8, body: &[u8]) {
        self.write(&encode_frame(kind, body).expect("frame within limits")).await;
    }

    /// Reads frames of any kind until a Reject or the end; returns the
    /// Reject's reason.
    pub async fn reject_reason(&mut self) -> Option<String> {
        let read = tokio::time::timeout(WAIT, async {
            loop {
                let mut header = [0u8; FRAME_HEADER_BYTES];
                self.stream.read_exact(&mut header).await.ok()?;
                let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
                let mut body = vec![0u8; len.checked_sub(1)? as usize];
                self.stream.read_exact(&mut body).await.ok()?;
                if header[4] == KIND_REJECT {
                    return Some(decode_reason(&body));
                }
            }
        });
        read.await.expect("the node closes within the wait")
    }
}

/// Dials `addr` and runs the dialer's side of the handshake by hand, as
/// `identity`, on `chain`. Returns the open connection, or the node's reason
/// (or the error) when it refused.
pub async fn raw_handshake(
    addr: SocketAddr,
    identity: &ToyIdentity,
    chain: [u8; 32],
) -> Result<RawPeer, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let limits = FrameLimits::handshake();
    let ours =
        Hello { version: VERSION, chain_id: chain, challenge: [9; 32], public_key: identity.public_key() };
    let ours = ours.encode();
    stream
        .write_all(&encode_frame(KIND_HELLO, &ours).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())?;
    let theirs = expect(&mut stream, &limits, KIND_HELLO).await?;
    let digest = handshake_digest(Role::Dialer, &ours, &theirs);
    let auth = encode_frame(KIND_AUTH, &identity.sign(&digest)).map_err(|e| e.to_string())?;
    stream.write_all(&auth).await.map_err(|e| e.to_string())?;
    expect(&mut stream, &limits, KIND_AUTH).await?;
    stream
        .write_all(&encode_frame(KIND_ACCEPT, &[]).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())?;
    expect(&mut stream, &limits, KIND_ACCEPT).await?;
    Ok(RawPeer { stream })
}

/// Reads a handshake frame of `kind`; a Reject gives its reason.
async fn expect(stream: &mut TcpStream, limits: &FrameLimits, kind: u8) -> Result<Vec<u8>, String> {
    match read_frame(stream, limits).await {
        Ok(Frame { kind: k, body }) if k == kind => Ok(body),
        Ok(Frame { kind: KIND_REJECT, body }) => Err(decode_reason(&body)),
        Ok(Frame { kind: k, .. }) => Err(format!("unexpected kind {k:#04x}")),
        Err(e) => Err(e.to_string()),
    }
}

/// A raw handshake that must succeed.
pub async fn raw_peer(addr: SocketAddr, seed: u64) -> (RawPeer, PeerId) {
    let identity = ToyIdentity::new(seed);
    let raw = raw_handshake(addr, &identity, CHAIN).await.expect("raw handshake accepted");
    (raw, identity.id())
}
