//! Deterministic simulation of a whole network in one process: N hosts, each
//! with its own chain replica, consensus state and agent, exchanging real
//! signed messages over a simulated network (latency, loss, partitions)
//! under a seeded clock, mining the real Sprint on the `tiny` model.
//!
//! ```text
//!  EventQueue (time, seq) ──► Deliver(msg) ─► Consensus ─► actions ─► Network.send ─► EventQueue
//!                        ──► Timeout      ─► Consensus
//!                        ──► Commit       ─► Chain.apply ─► Agent.on_block ─► txs ─► gossip
//! ```
//!
//! Same seed, same output, bit for bit: the only randomness is [`SimRng`],
//! the only clock is the queue's, every map is ordered. [`run`] checks the
//! safety properties as it goes (one final block per height, one state root
//! per height among honest hosts) and returns a [`SimReport`].

pub mod host;
pub mod network;
pub mod producer;
mod report;
mod runner;
pub mod users;

pub use host::{Role, SimHost};
pub use network::{NetworkConfig, Partition, SimRng};
pub use report::{EpochRow, SimReport, StrategyRow};
pub use runner::run;

use crate::params::ChainParams;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Hosts.
    pub hosts: usize,
    /// Share of hosts that are adversaries, percent; they cycle through [`Role::ADVERSARIES`].
    pub adversarial_percent: u32,
    /// Epochs to run.
    pub epochs: u64,
    /// Stop after this many blocks even if the epochs are not done.
    pub max_blocks: Option<u64>,
    /// The seed of everything random.
    pub seed: u64,
    /// Links.
    pub network: NetworkConfig,
    /// Chain parameters (the `tiny` ones by default).
    pub params: ChainParams,
    /// Nonces an honest host computes per Sprint: drawn per host in `[n/2, 2n]`.
    pub nonces_per_sprint: u64,
    /// Cores for mining and validation.
    pub threads: usize,
    /// Cut a fifth of the honest hosts off for part of the second epoch.
    pub partition_minority: bool,
    /// Called at each epoch's end with its row and the wall seconds so far.
    pub on_epoch: Option<fn(&EpochRow, f64)>,
    /// Each host's genesis weight (from a genesis file); `None` gives every host 10.
    pub genesis_weights: Option<Vec<u64>>,
    /// Inference requests the users send per epoch.
    pub requests_per_epoch: u64,
    /// Users sending them, each funded at genesis.
    pub users: usize,
    /// Per thousand of their finished tasks a user reports.
    pub report_permille: u32,
    /// How inference outputs and checks behave.
    pub inference: crate::agent::tasks::SimulatedInference,
    /// Every this many blocks (0: never) the last honest host restarts: its
    /// chain is rebuilt from the rkyv encoding of its own state snapshot,
    /// the path a node takes when it loads its store.
    pub restart_every_blocks: u64,
    /// The first honest host keeps its chain store here (an empty or new directory).
    pub store: Option<std::path::PathBuf>,
}

/// The key material of simulated host `index` under `seed` (what a genesis
/// file for a simulated network names the hosts by).
pub fn host_key_material(seed: u64, index: usize) -> gonka_kernels::encoding::Hash32 {
    gonka_kernels::encoding::tagged_hash(
        "gonka/sim-key",
        &[&seed.to_le_bytes(), &(index as u64).to_le_bytes()],
    )
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            hosts: 50,
            adversarial_percent: 20,
            epochs: 10,
            max_blocks: None,
            seed: 0,
            network: NetworkConfig::default(),
            params: ChainParams::tiny(),
            nonces_per_sprint: 2048,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            partition_minority: true,
            on_epoch: None,
            genesis_weights: None,
            requests_per_epoch: 120,
            users: 16,
            report_permille: 20,
            inference: Default::default(),
            restart_every_blocks: 1,
            store: None,
        }
    }
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Bad configuration.
    #[error("invalid simulation: {0}")]
    Config(String),
    /// The chain refused the genesis.
    #[error(transparent)]
    Chain(#[from] crate::chain::ChainError),
    /// The chain store failed.
    #[error(transparent)]
    Store(#[from] crate::store::ChainStoreError),
}
