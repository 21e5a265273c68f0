//! The running network: shared state, [`Network::start`], the listener and dialer
//! tasks, and the engine's [`NetHandle`].

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::conn::{self, Body, Outgoing, Registry};
use super::handshake::{self, Failure};
use super::limits::{Ban, BanList};
use super::wire::{FIRST_RESERVED_KIND, FrameLimits, MAX_PUBLIC_KEY_BYTES, Role};
use super::{EventReceiver, Identity, NetConfig, NetError, NetEvent, PeerId, PeerInfo};

/// Handshakes in progress at once (inbound); further connections are dropped
/// unanswered until one finishes, so a connection flood costs bounded work.
const MAX_PENDING_HANDSHAKES: usize = 64;
/// Read buffer per connection: a few typical frames per system call.
pub(crate) const READ_BUFFER_BYTES: usize = 64 << 10;
/// Pause after a failed `accept` (out of file descriptors, say), so the
/// listener does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// State shared by the handle and every task.
pub(crate) struct Shared {
    pub(crate) config: NetConfig,
    pub(crate) identity: Arc<dyn Identity>,
    pub(crate) local_id: PeerId,
    pub(crate) local_addr: SocketAddr,
    pub(crate) handshake_limits: FrameLimits,
    pub(crate) frame_limits: FrameLimits,
    registry: Mutex<Registry>,
    bans: Mutex<BanList>,
    events: flume::Sender<NetEvent>,
    shutdown: watch::Sender<bool>,
    /// Woken whenever a connection ends, for dialers waiting on their peer.
    pub(crate) peer_left: Notify,
    handshakes: Arc<Semaphore>,
    tasks: Arc<TaskCount>,
    /// Addresses with a one-shot dial ([`NetHandle::dial`]) in progress or connected.
    dialing: Mutex<std::collections::HashSet<SocketAddr>>,
    /// The runtime the network started on: tasks spawn there, whichever thread asks.
    runtime: tokio::runtime::Handle,
}

impl Shared {
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        // The lock guards plain bookkeeping with no panics inside; a poisoned
        // lock still holds consistent data.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bans(&self) -> MutexGuard<'_, BanList> {
        self.bans.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns a task that [`NetHandle::shutdown`] waits for.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let guard = TaskGuard::new(&self.tasks);
        self.runtime.spawn(async move {
            let _guard = guard;
            task.await;
        })
    }

    /// The event channel, for the readers' ordered, awaited deliveries.
    pub(crate) fn events(&self) -> &flume::Sender<NetEvent> {
        &self.events
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves once shutdown has begun.
    pub(crate) fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            // An error means the sender is gone, which is a shutdown too.
            let _ = rx.wait_for(|down| *down).await;
        }
    }

    /// Delivers an event that the engine must see in order (Connected,
    /// Disconnected), waiting for room; during shutdown it is dropped instead.
    pub(crate) async fn emit(&self, event: NetEvent) {
        tokio::select! {
            biased;
            sent = self.events.send_async(event) => {
                if sent.is_err() {
                    debug!("event receiver dropped");
                }
            }
            () = self.shutdown_signal() => {}
        }
    }

    /// Delivers an informational event (Banned, Refused) if there is room.
    pub(crate) fn emit_lossy(&self, event: NetEvent) {
        if let Err(flume::TrySendError::Full(event)) = self.events.try_send(event) {
            debug!(?event, "event channel full; informational event dropped");
        }
    }

    /// Bans a peer (when known) and an IP for the configured duration.
    pub(crate) fn ban(&self, peer: Option<&PeerId>, ip: Option<IpAddr>, reason: &str) {
        let now = Instant::now();
        let ban = Ban { until: now + self.config.ban_duration, reason: reason.to_owned() };
        let mut bans = self.bans();
        if let Some(peer) = peer {
            bans.ban_peer(peer.clone(), ban.clone(), now);
        }
        if let Some(ip) = ip.filter(|_| self.config.ban_ips) {
            bans.ban_ip(ip, ban, now);
        }
    }

    pub(crate) fn peer_ban(&self, peer: &PeerId) -> Option<Ban> {
        self.bans().peer(peer, Instant::now())
    }

    pub(crate) fn ip_ban(&self, ip: IpAddr) -> Option<Ban> {
        self.bans().ip(ip, Instant::now())
    }

    pub(crate) fn is_connected(&self, peer: &PeerId) -> bool {
        self.registry().contains(peer)
    }

    fn begin_shutdown(&self) {
        if !self.shutdown.send_replace(true) {
            info!(peer = %self.local_id, "network shutting down");
        }
        self.registry().close_all("node shutting down");
    }
}

/// Counts live tasks so that shutdown can wait for all of them.
#[derive(Default)]
struct TaskCount {
    live: AtomicUsize,
    idle: Notify,
}

impl TaskCount {
    async fn wait_idle(&self) {
        loop {
            let mut idle = pin!(self.idle.notified());
            idle.as_mut().enable();
            if self.live.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

struct TaskGuard(Arc<TaskCount>);

impl TaskGuard {
    fn new(count: &Arc<TaskCount>) -> Self {
        count.live.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The peer network; [`Network::start`] runs one.
#[derive(Debug)]
pub enum Network {}

impl Network {
    /// Starts the network on the current tokio runtime: binds `config.listen`,
    /// spawns the listener and one dialer per `config.dial` address, and returns
    /// the handle and the event receiver (capacity `config.queue_capacity`).
    ///
    /// Must be called from within a tokio runtime with time and I/O enabled (a
    /// multi-threaded one, so that socket work runs beside the engine). The
    /// network runs until [`NetHandle::shutdown`] or until the last handle is dropped.
    pub async fn start(
        config: NetConfig,
        identity: Arc<dyn Identity>,
    ) -> Result<(NetHandle, EventReceiver), NetError> {
        start_network(config, identity).await
    }
}

async fn start_network(
    config: NetConfig,
    identity: Arc<dyn Identity>,
) -> Result<(NetHandle, EventReceiver), NetError> {
    config.validate()?;
    let public_key = identity.public_key();
    if public_key.is_empty() || public_key.len() > MAX_PUBLIC_KEY_BYTES {
        return Err(NetError::Config {
            field: "identity",
            problem: format!(
                "public key of {} bytes, expected 1 to {MAX_PUBLIC_KEY_BYTES}",
                public_key.len()
            ),
        });
    }
    let listen = config.listen;
    let listener =
        TcpListener::bind(listen).await.map_err(|source| NetError::Bind { addr: listen, source })?;
    let local_addr = listener.local_addr().map_err(|source| NetError::Bind { addr: listen, source })?;
    let (events, events_rx) = flume::bounded(config.queue_capacity);
    let shared = Arc::new(Shared {
        identity,
        local_id: PeerId::new(&public_key),
        local_addr,
        handshake_limits: FrameLimits::handshake(),
        frame_limits: FrameLimits::established(&config.kinds),
        registry: Mutex::new(Registry::default()),
        bans: Mutex::new(BanList::default()),
        events,
        shutdown: watch::Sender::new(false),
        peer_left: Notify::new(),
        handshakes: Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES)),
        tasks: Arc::default(),
        dialing: Mutex::default(),
        runtime: tokio::runtime::Handle::current(),
        config,
    });
    info!(peer = %shared.local_id, %local_addr, "network listening");
    shared.spawn(listen_loop(shared.clone(), listener));
    for &addr in &shared.config.dial {
        shared.spawn(dial_loop(shared.clone(), addr));
    }
    let owner = Arc::new(Owner(shared.clone()));
    Ok((NetHandle { shared, _owner: owner }, events_rx))
}

async fn listen_loop(shared: Arc<Shared>, listener: TcpListener) {
    let shutdown = shared.shutdown_signal();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, addr)) => match shared.handshakes.clone().try_acquire_owned() {
                Ok(permit) => {
                    shared.spawn(inbound(shared.clone(), stream, addr, permit));
                }
                Err(_) => debug!(%addr, "too many handshakes in progress; connection dropped"),
            },
            Err(error) => {
                warn!(%error, "accept failed");
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(ACCEPT_RETRY) => {}
                }
            }
        }
    }
}

async fn inbound(shared: Arc<Shared>, stream: TcpStream, addr: SocketAddr, permit: OwnedSemaphorePermit) {
    if let Some(ban) = shared.ip_ban(addr.ip()) {
        debug!(%addr, "refusing a banned address");
        let (read, write) = stream.into_split();
        let failure = Failure::reject(format!("address {}", ban.describe(Instant::now())), None);
        handshake::fail(&shared, failure, addr, BufReader::new(read), write).await;
        return;
    }
    connection(shared, stream, addr, Role::Listener, Some(permit)).await;
}

/// Runs one connection from handshake to close. Returns the peer's id if its
/// hello arrived, and whether the handshake completed.
async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    role: Role,
    permit: Option<OwnedSemaphorePermit>,
) -> (Option<PeerId>, bool) {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%addr, %error, "cannot set TCP_NODELAY");
    }
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, read);
    let timeout = shared.config.handshake_timeout;
    let outcome = tokio::select! {
        biased;
        () = shared.shutdown_signal() => Err(Failure::quiet("node shutting down", None)),
        done = tokio::time::timeout(timeout, handshake::run(&shared, &mut reader, &mut write, addr, role)) => {
            done.unwrap_or_else(|_| Err(Failure::quiet(format!("handshake timed out after {timeout:?}"), None)))
        }
    };
    drop(permit);
    match outcome {
        Ok(established) => {
            let peer = established.peer.clone();
            conn::run(shared, established, reader, write).await;
            (Some(peer), true)
        }
        Err(failure) => {
            let peer = failure.peer.clone();
            handshake::fail(&shared, failure, addr, reader, write).await;
            (peer, false)
        }
    }
}

/// Keeps a connection to `addr`: dials, runs the connection, and redials with
/// doubling backoff. While the peer last seen there is connected (perhaps
/// because it dialed us), the dialer waits instead.
async fn dial_loop(shared: Arc<Shared>, addr: SocketAddr) {
    let (min, max) = (shared.config.redial_min, shared.config.redial_max);
    let mut backoff = min;
    let mut known: Option<PeerId> = None;
    let shutdown = shared.shutdown_signal();
    let mut shutdown = pin!(shutdown);
    loop {
        let mut peer_left = pin!(shared.peer_left.notified());
        peer_left.as_mut().enable();
        let wait = if known.as_ref().is_some_and(|p| shared.is_connected(p)) {
            Some(max)
        } else {
            shared.ip_ban(addr.ip()).map(|ban| ban.until.saturating_duration_since(Instant::now()).min(max))
        };
        if let Some(wait) = wait {
            tokio::select! {
                () = &mut shutdown => return,
                () = peer_left => {}
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let dialed = tokio::select! {
            () = &mut shutdown => return,
            dialed = tokio::time::timeout(shared.config.handshake_timeout, TcpStream::connect(addr)) => dialed,
        };
        match dialed {
            Ok(Ok(stream)) => {
                let (peer, established) = connection(shared.clone(), stream, addr, Role::Dialer, None).await;
                if peer.as_ref() == Some(&shared.local_id) {
                    info!(%addr, "dial address is this node; not dialing it again");
                    return;
                }
                known = peer.or(known);
                if established {
                    backoff = min;
                }
            }
            Ok(Err(error)) => debug!(%addr, %error, "dial failed"),
            Err(_) => debug!(%addr, "dial timed out"),
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(backoff + jitter(backoff / 4)) => {}
        }
        backoff = (backoff * 2).min(max);
    }
}

/// Dials `addr` once and runs the connection until it closes; no redial.
/// `addr` leaves [`Shared::dialing`] when it ends, so a later call dials again.
async fn dial_once(shared: Arc<Shared>, addr: SocketAddr) {
    let shutdown = shared.shutdown_signal();
    let dialed = tokio::select! {
        () = shutdown => None,
        dialed = tokio::time::timeout(shared.config.handshake_timeout, TcpStream::connect(addr)) => Some(dialed),
    };
    match dialed {
        Some(Ok(Ok(stream))) => {
            let (peer, established) = connection(shared.clone(), stream, addr, Role::Dialer, None).await;
            debug!(%addr, ?peer, established, "one-shot connection ended");
        }
        Some(Ok(Err(error))) => debug!(%addr, %error, "dial failed"),
        Some(Err(_)) => debug!(%addr, "dial timed out"),
        None => {}
    }
    shared.dialing.lock().unwrap_or_else(PoisonError::into_inner).remove(&addr);
}

/// A random duration up to `max`, so that dialers that failed together do
/// not retry in lockstep. Zero if the system has no randomness to give.
fn jitter(max: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() || max.is_zero() {
        return Duration::ZERO;
    }
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(u64::from_le_bytes(bytes) % nanos)
}

/// Shuts the network down when the last handle goes.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.begin_shutdown();
    }
}

/// The engine's side of the network. Cheap to clone; all methods but the
/// `async` ones return at once and may be called from any thread, inside or
/// outside the runtime. Dropping the last clone shuts the network down.
#[derive(Clone)]
pub struct NetHandle {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

impl std::fmt::Debug for NetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetHandle")
            .field("local_id", &self.shared.local_id)
            .field("local_addr", &self.shared.local_addr)
            .finish_non_exhaustive()
    }
}

impl NetHandle {
    /// This node's id (its public key).
    pub fn local_id(&self) -> &PeerId {
        &self.shared.local_id
    }

    /// The address the listener is bound to (with the real port when the
    /// config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    fn check(&self, kind: u8, len: usize) -> Result<(), NetError> {
        if self.shared.is_shutting_down() {
            return Err(NetError::Shutdown);
        }
        // The receivers' table of the established phase, less this layer's own kinds.
        let limit = self.shared.frame_limits.limit(kind).filter(|_| kind < FIRST_RESERVED_KIND);
        let (max, name) = limit.ok_or(NetError::UnknownKind { kind })?;
        if len > max as usize {
            return Err(NetError::TooLarge { kind, name, len, max });
        }
        Ok(())
    }

    /// Queues a message to a peer without waiting. A full queue (the peer reads
    /// slower than we send) gives [`NetError::Backpressure`] and the message is
    /// not queued: this call never blocks. A queued message may still be lost
    /// if the connection closes before it is written.
    pub fn send(&self, peer: &PeerId, kind: u8, body: Vec<u8>) -> Result<(), NetError> {
        self.check(kind, body.len())?;
        let queue = self.shared.registry().sender(peer)?;
        queue.try_send(Outgoing { kind, body: Body::Owned(body) }).map_err(|e| match e {
            flume::TrySendError::Full(_) => {
                NetError::Backpressure { peer: peer.clone(), capacity: queue_capacity(&queue) }
            }
            flume::TrySendError::Disconnected(_) => NetError::NotConnected { peer: peer.clone() },
        })
    }

    /// Queues a message, waiting for room in the peer's queue. The wait is
    /// bounded: a peer that stops reading is disconnected after
    /// [`NetConfig::idle_timeout`], which ends the wait with `NotConnected`.
    pub async fn send_async(&self, peer: &PeerId, kind: u8, body: Vec<u8>) -> Result<(), NetError> {
        self.check(kind, body.len())?;
        let queue = self.shared.registry().sender(peer)?;
        queue
            .send_async(Outgoing { kind, body: Body::Owned(body) })
            .await
            .map_err(|_| NetError::NotConnected { peer: peer.clone() })
    }

    /// Queues one message to every connected peer but `except`, without
    /// waiting; peers whose queue is full are skipped. Returns how many peers
    /// it was queued for. The body is shared, not copied, between peers (pass
    /// an `Arc<[u8]>` to share it with the caller too).
    pub fn broadcast(
        &self,
        kind: u8,
        body: impl Into<Arc<[u8]>>,
        except: Option<&PeerId>,
    ) -> Result<usize, NetError> {
        let body = body.into();
        self.check(kind, body.len())?;
        let queues = self.shared.registry().senders(except);
        let mut sent = 0;
        for (peer, queue) in queues {
            match queue.try_send(Outgoing { kind, body: Body::Shared(body.clone()) }) {
                Ok(()) => sent += 1,
                Err(_) => debug!(%peer, kind, "broadcast skipped a peer with a full queue"),
            }
        }
        Ok(sent)
    }

    /// Dials `addr` once, in the background, unless a dial of it made here
    /// is still in progress or connected; the connection is not redialed when
    /// it ends. For a peer the engine must reach and has an address for (the
    /// addresses of [`NetConfig::dial`] are kept connected anyway). Returns
    /// whether a dial started. Its outcome shows as a `Connected` event, or
    /// in the logs only.
    pub fn dial(&self, addr: SocketAddr) -> Result<bool, NetError> {
        if self.shared.is_shutting_down() {
            return Err(NetError::Shutdown);
        }
        if addr == self.shared.local_addr || self.shared.ip_ban(addr.ip()).is_some() {
            return Ok(false);
        }
        if !self.shared.dialing.lock().unwrap_or_else(PoisonError::into_inner).insert(addr) {
            return Ok(false);
        }
        self.shared.spawn(dial_once(self.shared.clone(), addr));
        Ok(true)
    }

    /// The connected peers, sorted by id.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared.registry().list()
    }

    /// Whether the peer has an established connection.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.shared.registry().sender(peer).is_ok()
    }

    /// Whether the peer is banned now.
    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.shared.peer_ban(peer).is_some()
    }

    /// Closes the connection to a peer, telling it `reason`; messages still
    /// queued to it are dropped. Returns whether it was connected. A
    /// `Disconnected` event follows. Either side's dialer may reconnect
    /// later; to keep a peer away, [`NetHandle::ban`] it.
    pub fn disconnect(&self, peer: &PeerId, reason: &str) -> bool {
        self.shared.registry().close(peer, reason)
    }

    /// Bans a peer (its key, and the IP it is connected from) for
    /// [`NetConfig::ban_duration`] and closes its connection; for the engine
    /// when a message decodes but breaks the protocol. A peer not connected is
    /// banned by key only. A `Disconnected` event follows if it was connected.
    pub fn ban(&self, peer: &PeerId, reason: &str) {
        let ip = self.shared.registry().addr(peer).map(|a| a.ip());
        self.shared.ban(Some(peer), ip, reason);
        warn!(%peer, ?ip, reason, "peer banned by the engine");
        self.shared.registry().close(peer, &format!("banned: {reason}"));
    }

    /// Shuts the network down without waiting: the listener and dialers
    /// stop, every connection is closed with a reason sent to the peer, and
    /// later calls fail with [`NetError::Shutdown`]. No events are guaranteed
    /// after this. Await [`NetHandle::closed`] to know that every task ended.
    pub fn shutdown(&self) {
        self.shared.begin_shutdown();
    }

    /// Resolves once every task of the network has ended, which happens soon
    /// after [`NetHandle::shutdown`] (each connection gets at most about a
    /// second to say goodbye), and not before.
    pub async fn closed(&self) {
        self.shared.tasks.wait_idle().await;
    }
}

fn queue_capacity(queue: &flume::Sender<Outgoing>) -> usize {
    queue.capacity().unwrap_or(usize::MAX)
}
