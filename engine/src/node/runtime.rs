//! The running host: the network (tokio), the core on its own thread (it
//! mines and applies blocks: CPU work that must not stall the runtime), a
//! timer, and the HTTP API.
//!
//! ```text
//!  gonka-net events ──decode──► flume (bounded) ──► core thread ──► NodeCore
//!  API requests ─────────────►        │                │  outputs: broadcast / send / ban (NetHandle, non-blocking)
//!  timer (deadline of the next timeout or tick) ───────┘  status line per block on stdout
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gonka_net::peer::{Identity, KindLimit, NetConfig, NetError, NetEvent, NetHandle, Network, PeerId};

use super::config::{NodeConfig, read_genesis};
use super::core::{CommitInfo, NodeCore, Output};
use super::inference::ModelRunner;
use super::messages::{NodeMessage, decode_message, kind, max_bytes};
use crate::chain::types::SignedTransaction;
use crate::consensus::{Timeout, TimeoutParams};
use crate::crypto::cache::SigCache;
use crate::crypto::{Domain, HostKey};
use crate::inference::{Server, ServerConfig};
use crate::store::{ChainStore, StoreConfig};

/// Version of the messages between hosts; peers of another version are refused.
pub const PROTOCOL_VERSION: u32 = 1;
/// How often the core announces its height and checks for progress.
const TICK_MS: u64 = 500;
/// Inputs waiting for the core.
const CORE_QUEUE: usize = 4096;

/// Why a node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration or genesis is unusable.
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    /// The key file.
    #[error(transparent)]
    Key(#[from] crate::crypto::CryptoError),
    /// The chain store.
    #[error(transparent)]
    Store(#[from] crate::store::ChainStoreError),
    /// The network.
    #[error("network: {0}")]
    Net(String),
    /// The core stopped on an error.
    #[error("halted: {0}")]
    Halted(String),
    /// The model cannot be served.
    #[error("model: {0}")]
    Model(String),
    /// The host's local store (its completions).
    #[error("local store: {0}")]
    Local(#[from] gonka_storage::StoreError),
}

/// The host's BLS identity for the peer handshake.
struct BlsIdentity {
    key: HostKey,
    cache: SigCache,
}

impl Identity for BlsIdentity {
    fn public_key(&self) -> Vec<u8> {
        self.key.public_key().to_vec()
    }
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(Domain::PeerHandshake, message).to_vec()
    }
    fn verify(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let (Ok(pk), Ok(sig)) = (<[u8; 48]>::try_from(public_key), <[u8; 96]>::try_from(signature)) else {
            return false;
        };
        self.cache.verify(Domain::PeerHandshake, &pk, message, &sig).is_ok()
    }
}

/// An inference request of this host's API.
#[derive(Debug)]
pub struct ApiRequest {
    /// The signed request transaction.
    pub tx: SignedTransaction,
    /// Its task id.
    pub task: gonka_kernels::encoding::Hash32,
    /// The request in tokens (its hash is the transaction's prompt commitment).
    pub payload: crate::inference::payload::InferencePayload,
    /// Where the completion goes.
    pub reply: flume::Sender<Result<super::core::Completion, String>>,
    /// Where output tokens go while the task runs (provisional), if wanted.
    pub partial: Option<flume::Sender<Vec<u32>>>,
}

/// What the core thread receives.
pub enum CoreInput {
    /// A decoded message from a peer.
    Message(Vec<u8>, Box<NodeMessage>),
    /// A peer connected.
    Connected(Vec<u8>),
    /// A transaction from this host's API.
    Submit(Box<SignedTransaction>),
    /// An inference request from this host's API, and where its completion goes.
    Request(Box<ApiRequest>),
    /// Runs a read of the core's state and sends back the answer.
    Query(Box<dyn FnOnce(&mut NodeCore) + Send>),
    /// Stop.
    Stop,
}

impl std::fmt::Debug for CoreInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoreInput::Message(_, m) => write!(f, "Message(kind {})", m.kind()),
            CoreInput::Connected(_) => f.write_str("Connected"),
            CoreInput::Submit(tx) => write!(f, "Submit({})", tx.body.kind()),
            CoreInput::Request(r) => write!(f, "Request({})", hex::encode(r.task)),
            CoreInput::Query(_) => f.write_str("Query"),
            CoreInput::Stop => f.write_str("Stop"),
        }
    }
}

/// The per-kind limits of the node's messages.
pub fn kind_limits() -> Vec<KindLimit> {
    let limit = |kind: u8, name: &'static str, per_second: u32, burst: u32| KindLimit {
        kind,
        name,
        // The frame also carries the kind byte.
        max_bytes: u32::try_from(max_bytes(kind)).unwrap_or(u32::MAX).min(gonka_net::MAX_FRAME_BYTES - 1),
        per_second,
        burst,
    };
    vec![
        limit(kind::TX, "transaction", 2_000, 20_000),
        limit(kind::PROPOSAL, "proposal", 20, 100),
        limit(kind::VOTE, "vote", 2_000, 10_000),
        limit(kind::STATUS, "status", 20, 100),
        limit(kind::GET_BLOCKS, "get blocks", 50, 200),
        limit(kind::BLOCKS, "blocks", 50, 200),
        limit(kind::GET_TASK_OUTPUT, "get task output", 200, 1_000),
        limit(kind::TASK_OUTPUT, "task output", 200, 1_000),
        limit(kind::PROMPT, "prompt", 200, 1_000),
        limit(kind::ADDRESSES, "addresses", 20, 200),
        limit(kind::PARTIAL, "partial output", 400, 2_000),
    ]
}

/// A started node: the handle to stop it and the sender the API uses.
#[derive(Debug)]
pub struct Node {
    /// Inputs of the core.
    pub inputs: flume::Sender<CoreInput>,
    net: NetHandle,
    core: Option<std::thread::JoinHandle<Option<String>>>,
    stop_api: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Node {
    /// Loads the store (initialising it from the genesis on first run),
    /// joins the network and starts the core. `on_commit` sees every block.
    pub async fn start(
        config: &NodeConfig,
        on_commit: impl Fn(&CommitInfo) + Send + 'static,
    ) -> Result<Self, NodeError> {
        let genesis = read_genesis(&config.genesis_file)?;
        let key = HostKey::load(&config.key_file)?;
        let store = ChainStore::open(&config.data_dir, StoreConfig::default())?;
        let cache = SigCache::default();
        let chain = store.load_or_init(&genesis, cache.clone())?;
        tracing::info!(height = chain.next_height(), root = %hex::encode(chain.state_root()), "state loaded");
        let p = chain.params();
        let timeouts = TimeoutParams {
            propose_ms: p.timeout_propose_ms,
            prevote_ms: p.timeout_vote_ms,
            precommit_ms: p.timeout_vote_ms,
            step_ms: p.timeout_step_ms,
        };
        let served = config.model.load().map_err(NodeError::Model)?;
        let model_index =
            genesis.params.economy.models.iter().position(|m| m.name == served.name).ok_or_else(|| {
                NodeError::Model(format!("model {} is not in the chain's model list", served.name))
            })? as u32;
        let server = Arc::new(Server::start(Arc::new(served), ServerConfig::default()));
        let local = super::local::LocalStore::open(&config.data_dir.join("local"))?;
        let runner = Arc::new(ModelRunner::new(Arc::clone(&server)).with_local_store(local));
        let mut core = NodeCore::new(
            chain,
            store,
            key.duplicate(),
            timeouts,
            config.nonces_per_sprint,
            config.threads,
            runner,
        );
        let net_config = NetConfig {
            dial: config.peers.clone(),
            queue_capacity: 1024,
            ban_duration: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(5),
            max_peers: 64,
            redial_max: Duration::from_secs(5),
            // Every host of a network on loopback shares one address: an
            // address ban there would refuse them all. Keys are banned still.
            ban_ips: !config.listen.ip().is_loopback(),
            ..NetConfig::new(genesis.digest(), PROTOCOL_VERSION, config.listen, kind_limits())
        };
        let identity = Arc::new(BlsIdentity { key, cache });
        let (net, events) =
            Network::start(net_config, identity).await.map_err(|e| NodeError::Net(e.to_string()))?;
        // The address peers can dial: `announce`, or the bound listen address.
        let announced = config.announce.unwrap_or_else(|| net.local_addr());
        if announced.ip().is_unspecified() {
            tracing::warn!(%announced, "no address to announce (set `announce` in node.toml): hosts without a connection to this one cannot reach it");
        } else {
            let now_unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            core.announce(announced, now_unix_ms);
        }
        let (inputs, inputs_rx) = flume::bounded::<CoreInput>(CORE_QUEUE);
        let core_net = net.clone();
        let core = std::thread::Builder::new()
            .name("gonka-core".into())
            .spawn(move || core_loop(core, inputs_rx, core_net, on_commit))
            .map_err(|e| NodeError::Net(format!("core thread: {e}")))?;
        tokio::spawn(forward_events(events, inputs.clone(), net.clone()));
        let mut keys = std::collections::BTreeMap::new();
        for k in &config.api_keys {
            keys.insert(k.key.clone(), Arc::new(HostKey::load(&k.account_key_file)?));
        }
        let models = genesis.params.economy.models.iter().map(|m| m.name.clone()).collect();
        let backend = Arc::new(super::api::NodeApi::new(inputs.clone(), keys, models, server, model_index));
        let listener = tokio::net::TcpListener::bind(config.api)
            .await
            .map_err(|e| NodeError::Net(format!("API address {}: {e}", config.api)))?;
        let router = gonka_net::api::router(backend, gonka_net::api::ApiLimits::default());
        let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = api_stopped.await;
            };
            if let Err(e) = gonka_net::api::serve(listener, router, shutdown).await {
                tracing::error!("API server: {e}");
            }
        });
        Ok(Self { inputs, net, core: Some(core), stop_api: Some(stop_api) })
    }

    /// The network handle.
    pub fn net(&self) -> &NetHandle {
        &self.net
    }

    /// Stops the core and the network; returns why the core halted, if it did.
    pub async fn stop(mut self) -> Result<(), NodeError> {
        let _ = self.inputs.send_async(CoreInput::Stop).await;
        if let Some(stop) = self.stop_api.take() {
            let _ = stop.send(());
        }
        self.net.shutdown();
        let halted = match self.core.take() {
            Some(h) => tokio::task::spawn_blocking(move || h.join().ok().flatten()).await.ok().flatten(),
            None => None,
        };
        match halted {
            Some(why) => Err(NodeError::Halted(why)),
            None => Ok(()),
        }
    }
}

/// Decodes peer messages for the core; a peer whose bytes do not decode is banned.
async fn forward_events(events: flume::Receiver<NetEvent>, inputs: flume::Sender<CoreInput>, net: NetHandle) {
    while let Ok(event) = events.recv_async().await {
        match event {
            NetEvent::Message { peer, kind, body } => match decode_message(kind, &body) {
                Ok(msg) => {
                    tracing::trace!(%peer, kind, bytes = body.len(), "message");
                    if inputs
                        .send_async(CoreInput::Message(peer.as_bytes().to_vec(), Box::new(msg)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(%peer, kind, "undecodable message: {e}");
                    net.ban(&peer, &format!("undecodable message: {e}"));
                }
            },
            NetEvent::Connected { peer, addr, .. } => {
                tracing::info!(%peer, %addr, "peer connected");
                if inputs.send_async(CoreInput::Connected(peer.as_bytes().to_vec())).await.is_err() {
                    return;
                }
            }
            NetEvent::Disconnected { peer, reason } => tracing::info!(%peer, reason, "peer disconnected"),
            other => tracing::warn!("{other:?}"),
        }
    }
}

/// The core's thread: inputs, timeouts and ticks in order, outputs to the network.
fn core_loop(
    mut core: NodeCore,
    inputs: flume::Receiver<CoreInput>,
    net: NetHandle,
    on_commit: impl Fn(&CommitInfo),
) -> Option<String> {
    let started = Instant::now();
    let now = || started.elapsed().as_millis() as u64;
    // (when, scheduling order): the timeout itself waits in `pending`.
    let mut timers: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut pending: std::collections::BTreeMap<u64, Timeout> = Default::default();
    let mut seq = 0u64;
    let mut next_tick = now() + TICK_MS;
    let mut outputs = core.start(now());
    loop {
        for o in outputs.drain(..) {
            match o {
                Output::Broadcast(m) => {
                    if let Err(e) = net.broadcast(m.kind(), m.encode(), None) {
                        tracing::warn!("broadcast: {e}");
                    }
                }
                Output::Send(peer, m) => {
                    if let Err(e) = net.send(&PeerId::from(peer.clone()), m.kind(), m.encode()) {
                        tracing::debug!("send: {e}");
                        // Not connected: dial the address it announced. The
                        // core sends again later (prompts and fetches resend).
                        if let (NetError::NotConnected { .. }, Some(addr)) = (&e, core.address_of(&peer))
                            && let Ok(true) = net.dial(addr)
                        {
                            tracing::info!(%addr, "dialing a host to reach it");
                        }
                    }
                }
                Output::Relay(from, m) => {
                    if let Err(e) = net.broadcast(m.kind(), m.encode(), Some(&PeerId::from(from))) {
                        tracing::warn!("relay: {e}");
                    }
                }
                Output::Ban(peer, why) => net.ban(&PeerId::from(peer), &why),
                Output::Schedule(t) => {
                    seq += 1;
                    pending.insert(seq, t);
                    timers.push(Reverse((t.at_ms, seq)));
                }
                Output::Committed(info) => on_commit(&info),
                Output::Halted(why) => {
                    tracing::error!("halted: {why}");
                    return Some(why);
                }
            }
        }
        let deadline = timers.peek().map_or(next_tick, |Reverse((at, _))| (*at).min(next_tick));
        let wait = Duration::from_millis(deadline.saturating_sub(now()));
        match inputs.recv_timeout(wait) {
            Ok(CoreInput::Message(peer, msg)) => outputs = core.on_message(&peer, *msg, now()),
            Ok(CoreInput::Connected(peer)) => outputs = core.on_connected(&peer),
            Ok(CoreInput::Submit(tx)) => outputs = core.submit(*tx),
            Ok(CoreInput::Request(r)) => {
                let ApiRequest { tx, task, payload, reply, partial } = *r;
                outputs = core.submit_api(tx, task, payload, reply, partial, now());
            }
            Ok(CoreInput::Query(f)) => f(&mut core),
            Ok(CoreInput::Stop) | Err(flume::RecvTimeoutError::Disconnected) => return None,
            Err(flume::RecvTimeoutError::Timeout) => {}
        }
        let t = now();
        while let Some(Reverse((at, id))) = timers.peek().copied() {
            if at > t {
                break;
            }
            timers.pop();
            if let Some(timeout) = pending.remove(&id) {
                outputs.extend(core.on_timeout(timeout, t));
            }
        }
        if t >= next_tick {
            next_tick = t + TICK_MS;
            outputs.extend(core.tick(t));
        }
    }
}
