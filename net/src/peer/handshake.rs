//! The handshake (format and timeline in [`super::wire`]) and what happens
//! when one fails: a Reject with the reason, a ban for a violation, a
//! `Refused` event, and a lingering close so the reason gets through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tracing::{debug, info, warn};

use super::conn::Established;
use super::node::Shared;
use super::wire::{
    Frame, Hello, KIND_ACCEPT, KIND_AUTH, KIND_HELLO, KIND_REJECT, MAX_SIGNATURE_BYTES, Role, WireError,
    decode_reason, encode_frame, encode_reason, handshake_digest, read_frame,
};
use super::{NetEvent, PeerId};

/// Longest we try to hand a closing notice (Reject) to a peer.
pub(crate) const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long, and how many bytes, we read and discard after sending a
/// closing notice. Closing a socket with unread input makes the kernel send
/// a reset, which can destroy the notice before the peer reads it.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// A handshake that did not complete, and what to do about it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) reason: String,
    pub(crate) peer: Option<PeerId>,
    action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// We refuse: tell the peer why.
    Reject,
    /// The peer broke the protocol: tell it, and ban its IP.
    Ban,
    /// Nothing to tell: the peer refused us, or the connection broke.
    Quiet,
}

impl Failure {
    pub(crate) fn reject(reason: impl Into<String>, peer: Option<PeerId>) -> Self {
        Self { reason: reason.into(), peer, action: Action::Reject }
    }

    pub(crate) fn quiet(reason: impl Into<String>, peer: Option<PeerId>) -> Self {
        Self { reason: reason.into(), peer, action: Action::Quiet }
    }

    fn violation(reason: impl Into<String>, peer: Option<PeerId>) -> Self {
        Self { reason: reason.into(), peer, action: Action::Ban }
    }

    fn wire(error: WireError, peer: Option<PeerId>) -> Self {
        if error.is_violation() {
            Self::violation(format!("handshake: {error}"), peer)
        } else {
            Self::quiet(format!("connection lost during handshake: {}", error_chain(&error)), peer)
        }
    }
}

/// An error and its sources on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

async fn send(
    writer: &mut OwnedWriteHalf,
    kind: u8,
    body: &[u8],
    peer: &Option<PeerId>,
) -> Result<(), Failure> {
    let frame =
        encode_frame(kind, body).map_err(|e| Failure::quiet(format!("cannot frame: {e}"), peer.clone()))?;
    writer.write_all(&frame).await.map_err(|e| Failure::wire(e.into(), peer.clone()))
}

/// Reads the next handshake frame, expecting `kind`; a Reject ends the
/// handshake with the peer's reason, any other kind is a violation.
async fn expect(
    shared: &Shared,
    reader: &mut BufReader<OwnedReadHalf>,
    kind: u8,
    peer: &Option<PeerId>,
) -> Result<Vec<u8>, Failure> {
    let Frame { kind: got, body } =
        read_frame(reader, &shared.handshake_limits).await.map_err(|e| Failure::wire(e, peer.clone()))?;
    match got {
        k if k == kind => Ok(body),
        KIND_REJECT => {
            Err(Failure::quiet(format!("refused by peer: {}", decode_reason(&body)), peer.clone()))
        }
        other => Err(Failure::violation(
            format!("handshake: expected kind {kind:#04x}, got {other:#04x}"),
            peer.clone(),
        )),
    }
}

/// Runs the handshake on a fresh connection, and registers the peer.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    reader: &mut BufReader<OwnedReadHalf>,
    writer: &mut OwnedWriteHalf,
    addr: SocketAddr,
    role: Role,
) -> Result<Established, Failure> {
    let peer = authenticate(shared, reader, writer, role).await?;
    let known = Some(peer.clone());
    let (reservation, queue, control) = shared
        .reserve(&peer, addr, role == Role::Listener)
        .map_err(|reason| Failure::reject(reason, known.clone()))?;
    send(writer, KIND_ACCEPT, &[], &known).await?;
    expect(shared, reader, KIND_ACCEPT, &known).await?;
    Ok(Established { peer, addr, inbound: role == Role::Listener, reservation, queue, control })
}

/// Hello and Auth: returns the peer's id once it has proven its key.
async fn authenticate(
    shared: &Shared,
    reader: &mut BufReader<OwnedReadHalf>,
    writer: &mut OwnedWriteHalf,
    role: Role,
) -> Result<PeerId, Failure> {
    let mut challenge = [0u8; 32];
    getrandom::fill(&mut challenge)
        .map_err(|e| Failure::quiet(format!("no randomness for a challenge: {e}"), None))?;
    let ours = Hello {
        version: shared.config.protocol_version,
        chain_id: shared.config.chain_id,
        challenge,
        public_key: shared.local_id.as_bytes().to_vec(),
    }
    .encode();
    send(writer, KIND_HELLO, &ours, &None).await?;
    let theirs = expect(shared, reader, KIND_HELLO, &None).await?;
    let hello = Hello::decode(&theirs).map_err(|e| Failure::violation(format!("handshake: {e}"), None))?;
    let peer = PeerId::new(&hello.public_key);
    let known = Some(peer.clone());
    check_hello(shared, &hello, &peer).map_err(|reason| Failure::reject(reason, known.clone()))?;

    let (dialer_hello, listener_hello) = match role {
        Role::Dialer => (&ours, &theirs),
        Role::Listener => (&theirs, &ours),
    };
    let our_digest = handshake_digest(role, dialer_hello, listener_hello);
    let their_digest = handshake_digest(role.other(), dialer_hello, listener_hello);
    let identity = shared.identity.clone();
    let signature = tokio::task::spawn_blocking(move || identity.sign(&our_digest))
        .await
        .map_err(|e| Failure::quiet(format!("signing failed: {e}"), known.clone()))?;
    if signature.len() > MAX_SIGNATURE_BYTES {
        return Err(Failure::quiet(
            format!("own signature of {} bytes exceeds {MAX_SIGNATURE_BYTES}", signature.len()),
            known,
        ));
    }
    send(writer, KIND_AUTH, &signature, &known).await?;
    let their_signature = expect(shared, reader, KIND_AUTH, &known).await?;
    let identity = shared.identity.clone();
    let key = hello.public_key;
    let valid = tokio::task::spawn_blocking(move || identity.verify(&key, &their_digest, &their_signature))
        .await
        .map_err(|e| Failure::quiet(format!("verification failed: {e}"), known.clone()))?;
    if !valid {
        // Only the address is banned: the key was claimed, not proven, and
        // banning it would let anyone get an honest peer banned.
        return Err(Failure::violation(format!("bad handshake signature for key {peer}"), known));
    }
    Ok(peer)
}

/// The checks on a peer's hello; the error is the reason it is told.
fn check_hello(shared: &Shared, hello: &Hello, peer: &PeerId) -> Result<(), String> {
    let config = &shared.config;
    if hello.version != config.protocol_version {
        return Err(format!(
            "protocol version mismatch: expected {}, found {}",
            config.protocol_version, hello.version
        ));
    }
    if hello.chain_id != config.chain_id {
        return Err(format!(
            "chain id mismatch: expected {}, found {}",
            hex::encode(config.chain_id),
            hex::encode(hello.chain_id)
        ));
    }
    if *peer == shared.local_id {
        return Err("connected to ourselves".into());
    }
    if let Some(ban) = shared.peer_ban(peer) {
        return Err(format!("peer {peer} {}", ban.describe(std::time::Instant::now())));
    }
    Ok(())
}

/// Ends a failed handshake: bans on a violation, tells the peer why, reports
/// `Refused`, and closes after a short linger.
pub(crate) async fn fail(
    shared: &Shared,
    failure: Failure,
    addr: SocketAddr,
    reader: BufReader<OwnedReadHalf>,
    mut writer: OwnedWriteHalf,
) {
    let Failure { reason, peer, action } = failure;
    let told = match action {
        Action::Ban if shared.config.ban_ips => {
            shared.ban(None, Some(addr.ip()), &reason);
            warn!(%addr, ?peer, %reason, "address banned during handshake");
            shared.emit_lossy(NetEvent::Banned { peer: None, addr, reason: reason.clone() });
            Some(format!("{reason}; banned for {} s", shared.config.ban_duration.as_secs()))
        }
        // Without IP bans, a violation before the key is proven is only refused.
        Action::Ban | Action::Reject => {
            info!(%addr, ?peer, %reason, "handshake refused");
            Some(reason.clone())
        }
        Action::Quiet => {
            debug!(%addr, ?peer, %reason, "handshake failed");
            None
        }
    };
    if let Some(told) = told {
        let notice = encode_frame(KIND_REJECT, &encode_reason(&told)).unwrap_or_default();
        let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, writer.write_all(&notice)).await;
    }
    shared.emit_lossy(NetEvent::Refused { peer, addr, reason });
    let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, writer.shutdown()).await;
    linger(shared, reader).await;
}

/// Reads and discards input for a bounded time and size, so that a closing
/// notice just written is not destroyed by a reset (see [`LINGER_TIME`]).
pub(crate) async fn linger(shared: &Shared, mut reader: impl AsyncRead + Unpin) {
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_BYTES {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(LINGER_TIME, drain) => {}
        () = shared.shutdown_signal() => {}
    }
}
