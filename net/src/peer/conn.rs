//! Established connections: the registry of peers, and per connection a
//! reader (which owns the connection's lifetime and its events) and a writer.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tracing::{debug, info, trace, warn};

use super::handshake::{CLOSE_WRITE_TIMEOUT, error_chain, linger};
use super::limits::RateLimits;
use super::node::Shared;
use super::wire::{KIND_PING, KIND_REJECT, decode_reason, encode_reason, read_frame, write_frame};
use super::{NetError, NetEvent, PeerId, PeerInfo};

/// Write buffer per connection: small frames are batched into one system
/// call until the queue runs empty.
const WRITE_BUFFER_BYTES: usize = 64 << 10;

/// A message body: owned by one send, or shared by a broadcast.
#[derive(Debug)]
pub(crate) enum Body {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Owned(v) => v,
            Self::Shared(s) => s,
        }
    }
}

/// An entry of a peer's outbound queue.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) kind: u8,
    pub(crate) body: Body,
}

/// Why a connection is closing, and whether to tell the peer.
#[derive(Debug, Clone)]
pub(crate) struct Close {
    pub(crate) reason: String,
    pub(crate) notify_peer: bool,
}

/// The close signal of one connection; the first reason set wins.
#[derive(Debug)]
pub(crate) struct Control {
    state: watch::Sender<Option<Close>>,
}

impl Control {
    fn new() -> Arc<Self> {
        Arc::new(Self { state: watch::Sender::new(None) })
    }

    pub(crate) fn close(&self, reason: &str, notify_peer: bool) {
        self.state.send_if_modified(|state| {
            let first = state.is_none();
            if first {
                *state = Some(Close { reason: reason.to_owned(), notify_peer });
            }
            first
        });
    }

    fn current(&self) -> Option<Close> {
        self.state.borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<Option<Close>> {
        self.state.subscribe()
    }
}

/// Resolves once the connection is closing.
async fn closing(rx: &mut watch::Receiver<Option<Close>>) {
    // An error means the control is gone, which also ends the connection.
    let _ = rx.wait_for(Option::is_some).await;
}

struct Entry {
    conn: u64,
    addr: SocketAddr,
    inbound: bool,
    queue: flume::Sender<Outgoing>,
    control: Arc<Control>,
    /// The handshake finished; the engine may send.
    established: bool,
    /// The engine was told `Connected` (by this connection or the one it replaced).
    announced: bool,
}

/// The connections by peer: at most one per peer.
#[derive(Default)]
pub(crate) struct Registry {
    peers: HashMap<PeerId, Entry>,
    next_conn: u64,
}

impl Registry {
    pub(crate) fn contains(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    fn established(&self, peer: &PeerId) -> Option<&Entry> {
        self.peers.get(peer).filter(|e| e.established)
    }

    pub(crate) fn sender(&self, peer: &PeerId) -> Result<flume::Sender<Outgoing>, NetError> {
        self.established(peer)
            .map(|e| e.queue.clone())
            .ok_or_else(|| NetError::NotConnected { peer: peer.clone() })
    }

    pub(crate) fn senders(&self, except: Option<&PeerId>) -> Vec<(PeerId, flume::Sender<Outgoing>)> {
        self.peers
            .iter()
            .filter(|(p, e)| e.established && Some(*p) != except)
            .map(|(p, e)| (p.clone(), e.queue.clone()))
            .collect()
    }

    pub(crate) fn addr(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.peers.get(peer).map(|e| e.addr)
    }

    pub(crate) fn list(&self) -> Vec<PeerInfo> {
        let mut list: Vec<PeerInfo> = self
            .peers
            .iter()
            .filter(|(_, e)| e.established)
            .map(|(p, e)| PeerInfo { peer: p.clone(), addr: e.addr, inbound: e.inbound })
            .collect();
        list.sort_by(|a, b| a.peer.cmp(&b.peer));
        list
    }

    pub(crate) fn close(&self, peer: &PeerId, reason: &str) -> bool {
        self.peers.get(peer).map(|e| e.control.close(reason, true)).is_some()
    }

    pub(crate) fn close_all(&self, reason: &str) {
        for e in self.peers.values() {
            e.control.close(reason, true);
        }
    }

    /// Marks a connection established; `Some(true)` if the engine must now be
    /// told `Connected`, `None` if the connection was replaced meanwhile.
    fn establish(&mut self, peer: &PeerId, conn: u64) -> Option<bool> {
        let entry = self.peers.get_mut(peer).filter(|e| e.conn == conn)?;
        entry.established = true;
        Some(!std::mem::replace(&mut entry.announced, true))
    }

    /// Removes a connection if it is still the peer's; returns whether the
    /// engine had been told `Connected`.
    fn remove(&mut self, peer: &PeerId, conn: u64) -> Option<bool> {
        match self.peers.get(peer) {
            Some(e) if e.conn == conn => self.peers.remove(peer).map(|e| e.announced),
            _ => None,
        }
    }
}

impl Shared {
    /// Registers a connection whose peer has proven its key, or says why not.
    ///
    /// At most one connection per peer. When two peers dial each other at
    /// once, each ends up with an inbound and an outbound connection; both
    /// sides then keep the one dialed by the smaller id, so they agree
    /// without talking. Otherwise the existing connection stays.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        peer: &PeerId,
        addr: SocketAddr,
        inbound: bool,
    ) -> Result<(Reservation, flume::Receiver<Outgoing>, Arc<Control>), String> {
        let mut registry = self.registry();
        if self.is_shutting_down() {
            return Err("node shutting down".into());
        }
        let mut announced = false;
        if let Some(old) = registry.peers.get(peer) {
            let canonical_is_inbound = *peer < self.local_id;
            if old.inbound == inbound || inbound != canonical_is_inbound {
                return Err(format!("already connected to {peer}"));
            }
            debug!(%peer, %addr, "simultaneous connection replaces the other");
            old.control.close("replaced by the simultaneous connection", false);
            announced = old.announced;
        } else if registry.peers.len() >= self.config.max_peers {
            return Err(format!("too many peers ({} connected)", self.config.max_peers));
        }
        let conn = registry.next_conn;
        registry.next_conn += 1;
        let (queue, queue_rx) = flume::bounded(self.config.queue_capacity);
        let control = Control::new();
        let entry =
            Entry { conn, addr, inbound, queue, control: control.clone(), established: announced, announced };
        registry.peers.insert(peer.clone(), entry);
        let reservation = Reservation { shared: self.clone(), peer: peer.clone(), conn, released: false };
        Ok((reservation, queue_rx, control))
    }
}

/// A connection's place in the registry; dropping it removes the entry.
pub(crate) struct Reservation {
    shared: Arc<Shared>,
    peer: PeerId,
    conn: u64,
    released: bool,
}

impl Reservation {
    /// Removes the entry; returns whether the engine had been told `Connected`.
    fn release(mut self) -> bool {
        self.released = true;
        let announced = self.shared.registry().remove(&self.peer, self.conn).unwrap_or(false);
        self.shared.peer_left.notify_waiters();
        announced
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let announced = self.shared.registry().remove(&self.peer, self.conn).unwrap_or(false);
        self.shared.peer_left.notify_waiters();
        // Only a handshake that replaced an announced connection and then
        // failed gets here announced; the engine must still hear it went.
        if announced {
            let reason = "handshake failed after replacing the previous connection".to_owned();
            self.shared.emit_lossy(NetEvent::Disconnected { peer: self.peer.clone(), reason });
        }
    }
}

/// A connection whose handshake completed.
pub(crate) struct Established {
    pub(crate) peer: PeerId,
    pub(crate) addr: SocketAddr,
    pub(crate) inbound: bool,
    pub(crate) reservation: Reservation,
    pub(crate) queue: flume::Receiver<Outgoing>,
    pub(crate) control: Arc<Control>,
}

/// Runs an established connection until it closes: spawns the writer, reads
/// in this task, then reports `Disconnected`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    established: Established,
    mut reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
) {
    let Established { peer, addr, inbound, reservation, queue, control } = established;
    let writer = shared.spawn(write_loop(shared.clone(), peer.clone(), queue, writer, control.clone()));
    let announce = shared.registry().establish(&peer, reservation.conn);
    if announce.is_some() {
        info!(%peer, %addr, inbound, "peer connected");
        if announce == Some(true) {
            shared.emit(NetEvent::Connected { peer: peer.clone(), addr, inbound }).await;
        }
        read_loop(&shared, &peer, addr, &mut reader, &control).await;
    }
    let close = control.current().unwrap_or(Close { reason: "replaced".into(), notify_peer: false });
    let announced = reservation.release();
    if announced {
        info!(%peer, %addr, reason = %close.reason, "peer disconnected");
        shared.emit(NetEvent::Disconnected { peer, reason: close.reason.clone() }).await;
    }
    let _ = writer.await;
    if close.notify_peer {
        linger(&shared, reader).await;
    }
}

/// When a connection half last made progress, for its watchdog, or paused
/// while it waits on something that is not the peer's fault (the engine, an
/// empty queue, pacing). Atomic so that the task's future stays `Send`.
struct Progress {
    base: Instant,
    /// Nanoseconds after `base`, or [`Progress::PAUSED`].
    at: AtomicU64,
}

impl Progress {
    const PAUSED: u64 = u64::MAX;

    fn new() -> Self {
        Self { base: Instant::now(), at: AtomicU64::new(Self::PAUSED) }
    }

    fn mark(&self, now: Instant) {
        let nanos =
            u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1);
        self.at.store(nanos.min(Self::PAUSED - 1), Ordering::Relaxed);
    }

    fn pause(&self) {
        self.at.store(Self::PAUSED, Ordering::Relaxed);
    }

    fn since(&self) -> Option<Instant> {
        let at = self.at.load(Ordering::Relaxed);
        (at != Self::PAUSED).then(|| self.base + Duration::from_nanos(at))
    }
}

/// Resolves once `progress` has stood still, unpaused, for `limit`. It wakes
/// about once per `limit`, not per frame: the hot loops only store a time.
async fn stalled(progress: &Progress, limit: Duration) {
    loop {
        let wake = progress.since().unwrap_or_else(Instant::now) + limit;
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
        if progress.since().is_some_and(|since| since.elapsed() >= limit) {
            return;
        }
    }
}

/// Reads frames and delivers them until the connection closes; always leaves
/// a close reason set.
async fn read_loop(
    shared: &Shared,
    peer: &PeerId,
    addr: SocketAddr,
    reader: &mut BufReader<OwnedReadHalf>,
    control: &Control,
) {
    let idle = shared.config.idle_timeout;
    let progress = Progress::new();
    progress.mark(Instant::now());
    let mut closed = control.subscribe();
    // One select for the connection's life, not one per frame: a close
    // cancels `receive` wherever it waits.
    tokio::select! {
        biased;
        () = closing(&mut closed) => {}
        () = stalled(&progress, idle) => control.close(&format!("nothing received for {idle:?}"), true),
        () = receive(shared, peer, addr, reader, control, &progress) => {}
    }
}

/// Reads frames and hands them to the engine until one ends the connection,
/// setting the close reason.
async fn receive(
    shared: &Shared,
    peer: &PeerId,
    addr: SocketAddr,
    reader: &mut BufReader<OwnedReadHalf>,
    control: &Control,
    progress: &Progress,
) {
    let mut limits = RateLimits::inbound(&shared.config.kinds, Instant::now());
    loop {
        let frame = match read_frame(reader, &shared.frame_limits).await {
            Ok(frame) => frame,
            Err(e) if e.is_violation() => return punish(shared, peer, addr, control, e.to_string()),
            Err(e) => return control.close(&error_chain(&e), false),
        };
        let now = Instant::now();
        progress.mark(now);
        if frame.kind == KIND_REJECT {
            return control.close(&format!("closed by peer: {}", decode_reason(&frame.body)), false);
        }
        if !limits.admit(frame.kind, now) {
            let reason = match shared.config.kind(frame.kind) {
                Some(k) => {
                    format!("kind {} over its rate limit of {}/s, burst {}", k.name, k.per_second, k.burst)
                }
                None => format!("kind {:#04x} over its rate limit", frame.kind),
            };
            return punish(shared, peer, addr, control, reason);
        }
        if frame.kind == KIND_PING {
            continue;
        }
        trace!(%peer, kind = frame.kind, bytes = frame.body.len(), "frame received");
        let message = NetEvent::Message { peer: peer.clone(), kind: frame.kind, body: frame.body };
        let message = match shared.events().try_send(message) {
            Ok(()) => continue,
            Err(flume::TrySendError::Full(message)) => message,
            Err(flume::TrySendError::Disconnected(_)) => {
                return control.close("the engine dropped its event receiver", true);
            }
        };
        // The engine is behind: wait for it, which stops reading and so
        // pushes back to the peer. The wait is neither the peer's silence nor
        // its burst: frames it sent meanwhile arrive at once afterwards.
        progress.pause();
        if shared.events().send_async(message).await.is_err() {
            return control.close("the engine dropped its event receiver", true);
        }
        let after = Instant::now();
        progress.mark(after);
        limits.credit(now, after);
    }
}

/// Bans a peer the network caught breaking the protocol, and closes.
fn punish(shared: &Shared, peer: &PeerId, addr: SocketAddr, control: &Control, reason: String) {
    shared.ban(Some(peer), Some(addr.ip()), &reason);
    warn!(%peer, %addr, %reason, "peer banned");
    control.close(&format!("banned: {reason}"), true);
    shared.emit_lossy(NetEvent::Banned { peer: Some(peer.clone()), addr, reason });
}

/// Writes queued frames until the connection closes. On close, sends the
/// reason if the stream is at a frame boundary.
async fn write_loop(
    shared: Arc<Shared>,
    peer: PeerId,
    queue: flume::Receiver<Outgoing>,
    writer: OwnedWriteHalf,
    control: Arc<Control>,
) {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer);
    let idle = shared.config.idle_timeout;
    let progress = Progress::new();
    // False while a frame is half written: then nothing more may follow it.
    let mut at_boundary = true;
    let mut closed = control.subscribe();
    let outcome = tokio::select! {
        biased;
        () = closing(&mut closed) => Ok(()),
        () = stalled(&progress, idle) => Err(format!("peer did not read for {idle:?}")),
        sent = send_frames(&shared, &peer, &queue, &mut out, &progress, &mut at_boundary) => sent,
    };
    if let Err(reason) = outcome {
        debug!(%peer, %reason, "writer stopped");
        control.close(&reason, false);
    }
    if let Some(close) = control.current().filter(|c| c.notify_peer && at_boundary) {
        let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, async {
            write_frame(&mut out, KIND_REJECT, &encode_reason(&close.reason)).await?;
            out.flush().await
        })
        .await;
    }
    let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, out.shutdown()).await;
}

/// Writes queued frames until the queue closes or a write fails. Frames are
/// batched in the buffer while more are queued, and flushed when the queue
/// runs empty; each kind is paced to its rate limit; an idle writer pings.
async fn send_frames(
    shared: &Shared,
    peer: &PeerId,
    queue: &flume::Receiver<Outgoing>,
    out: &mut BufWriter<OwnedWriteHalf>,
    progress: &Progress,
    at_boundary: &mut bool,
) -> Result<(), String> {
    let ping_after = shared.config.idle_timeout / 3;
    let mut pacing = RateLimits::outbound(&shared.config.kinds, Instant::now());
    let failed = |e: io::Error| format!("write failed: {e}");
    loop {
        let (kind, body) = match queue.try_recv() {
            Ok(Outgoing { kind, body }) => (kind, body),
            Err(flume::TryRecvError::Disconnected) => return Ok(()),
            Err(flume::TryRecvError::Empty) => {
                progress.mark(Instant::now());
                out.flush().await.map_err(failed)?;
                progress.pause();
                match tokio::time::timeout(ping_after, queue.recv_async()).await {
                    Err(_) => (KIND_PING, Body::Owned(Vec::new())),
                    Ok(Err(_)) => return Ok(()),
                    Ok(Ok(Outgoing { kind, body })) => (kind, body),
                }
            }
        };
        let mut now = Instant::now();
        while let Some(wait) = pacing.pace(kind, now) {
            trace!(%peer, kind, ?wait, "pacing");
            // What is buffered goes out before the wait, not after it.
            progress.mark(now);
            out.flush().await.map_err(failed)?;
            progress.pause();
            tokio::time::sleep(wait).await;
            now = Instant::now();
        }
        progress.mark(now);
        *at_boundary = false;
        write_frame(out, kind, &body).await.map_err(failed)?;
        *at_boundary = true;
    }
}
