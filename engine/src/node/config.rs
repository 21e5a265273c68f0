//! `node.toml`: what one host needs to run, and the local network writer
//! that makes a directory of them.
//!
//! ```text
//! localnet/
//! ├── genesis.bin          rkyv Genesis: hosts, funded users, parameters
//! ├── host-0/
//! │   ├── node.toml        this file's format
//! │   ├── host.key         BLS secret key, mode 0600
//! │   └── chain/           the chain store (created on first run)
//! ├── …
//! └── users/user-0.key     payer accounts behind the API keys
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chain::genesis::GenesisAccount;
use crate::chain::{Genesis, GenesisHost};
use crate::crypto::HostKey;
use crate::crypto::wire::{decode, encode};
use crate::params::{Amount, ChainParams};
use crate::proofs::{Difficulty, ModelShape};

/// Largest config or genesis file read.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not in its format.
    #[error("{path}: {why}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// One API key and the payer account it spends from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiKeyConfig {
    /// The bearer token clients send.
    pub key: String,
    /// The payer's key file (relative to the config file's directory).
    pub account_key_file: PathBuf,
}

/// `node.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeConfig {
    /// Where the chain store lives (relative paths are from the config file's directory).
    pub data_dir: PathBuf,
    /// The host's key file.
    pub key_file: PathBuf,
    /// The genesis file (rkyv).
    pub genesis_file: PathBuf,
    /// Peer listen address.
    pub listen: SocketAddr,
    /// Peers to dial.
    pub peers: Vec<SocketAddr>,
    /// The peer address other hosts should dial (signed and gossiped);
    /// `listen` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<SocketAddr>,
    /// HTTP API listen address.
    pub api: SocketAddr,
    /// API keys.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// Nonces the miner computes per Sprint.
    pub nonces_per_sprint: u64,
    /// Cores for mining and validation.
    pub threads: usize,
    /// The model this host serves.
    pub model: ModelConfig,
}

/// The network's model name for SmolLM2-135M-Instruct.
pub const SMOLLM2_NAME: &str = "SmolLM2-135M-Instruct";

/// The model a host serves: a GGUF file, or the seed-generated tiny model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Its name in the chain's model list.
    pub name: String,
    /// A GGUF llama file (relative paths are from the config file's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf: Option<PathBuf>,
    /// The seed of the tiny model, when there is no file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiny_seed: Option<u64>,
}

impl ModelConfig {
    /// Loads the model.
    pub fn load(&self) -> Result<crate::inference::ServedModel, String> {
        match (&self.gguf, self.tiny_seed) {
            (Some(path), None) => {
                crate::inference::ServedModel::load_gguf(path, &self.name).map_err(|e| e.to_string())
            }
            (None, Some(seed)) => {
                crate::inference::ServedModel::tiny(seed, &self.name).map_err(|e| e.to_string())
            }
            _ => Err(format!("model {}: give exactly one of `gguf` and `tiny_seed`", self.name)),
        }
    }
}

impl NodeConfig {
    /// Reads `path`; relative paths in it become relative to its directory.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = read_bounded(path)?;
        let text = String::from_utf8(text)
            .map_err(|_| ConfigError::Malformed { path: path.into(), why: "not UTF-8".into() })?;
        let mut c: NodeConfig = toml::from_str(&text)
            .map_err(|e| ConfigError::Malformed { path: path.into(), why: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut c.data_dir, &mut c.key_file, &mut c.genesis_file] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(p) = c.model.gguf.as_mut()
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
        for k in &mut c.api_keys {
            if k.account_key_file.is_relative() {
                k.account_key_file = base.join(&k.account_key_file);
            }
        }
        Ok(c)
    }

    /// Writes the config to `path`.
    pub fn write(&self, path: &Path) -> Result<(), ConfigError> {
        let text = toml::to_string_pretty(self)
            .map_err(|e| ConfigError::Malformed { path: path.into(), why: e.to_string() })?;
        gonka_storage::write_atomic(path, text.as_bytes(), 0o644)
            .map_err(|source| ConfigError::Io { path: path.into(), source })
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let io = |source| ConfigError::Io { path: path.into(), source };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE_BYTES {
        return Err(ConfigError::Malformed { path: path.into(), why: format!("{len} bytes is too large") });
    }
    std::fs::read(path).map_err(io)
}

/// Reads a genesis file written by [`write_genesis`].
pub fn read_genesis(path: &Path) -> Result<Genesis, ConfigError> {
    let bytes = read_bounded(path)?;
    decode::<Genesis>(&bytes).map_err(|e| ConfigError::Malformed { path: path.into(), why: e.to_string() })
}

/// Writes `genesis` to `path`.
pub fn write_genesis(path: &Path, genesis: &Genesis) -> Result<(), ConfigError> {
    gonka_storage::write_atomic(path, &encode(genesis), 0o644)
        .map_err(|source| ConfigError::Io { path: path.into(), source })
}

/// The local network's parameters: `tiny`'s epoch layout, the `small` model
/// for the Sprint, timeouts for real processes on one machine, and `model`
/// as the one model requests may name.
pub fn localnet_params(model: &str) -> ChainParams {
    let tiny = ChainParams::tiny();
    ChainParams {
        economy: crate::params::EconomyParams {
            models: vec![crate::params::ModelPrice { name: model.into(), price_per_token: 10 }],
            // Blocks come every ~50–100 ms here, and a completion of the real
            // model takes seconds on shared cores: an executor gets about 20 s,
            // a checker about 10 s to fetch the output and re-run it.
            task_timeout_blocks: 300,
            task_validation_blocks: 150,
            dispute_blocks: 150,
            ..tiny.economy.clone()
        },
        pow_shape: ModelShape::of(&gonka_kernels::config::SMALL),
        pow_difficulty: Difficulty::V2 { nonces_per_proof: 16 },
        timeout_propose_ms: 1_500,
        timeout_vote_ms: 600,
        timeout_step_ms: 400,
        block_interval_ms: 200,
        // Mining runs beside consensus, not in its place: the Sprint must last
        // long enough in blocks for every host to finish its nonces on cores
        // it shares with the others.
        epoch_blocks: 60,
        sprint_blocks: 20,
        ..tiny
    }
}

/// Each user's genesis balance on the local network.
pub const LOCALNET_USER_FUNDS: Amount = 1_000_000_000_000;
/// Nonces each local host mines per Sprint (about 16 proofs at 1 in 16),
/// in slices on its model server's idle capacity.
pub const LOCALNET_NONCES: u64 = 256;

/// Which hosts of a local network dial which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Every pair of hosts is connected.
    Mesh,
    /// Host `i` dials host `i + 1` (the last dials the first): two
    /// connections a host, and everything else travels by relay (gossip) or
    /// over connections dialed when needed, from the hosts' signed addresses.
    Ring,
}

impl Topology {
    /// The hosts host `i` of `n` dials.
    pub fn dials(self, i: usize, n: usize) -> Vec<usize> {
        match self {
            // Each host dials the ones before it: every pair is connected once.
            Topology::Mesh => (0..i).collect(),
            Topology::Ring if n < 2 => Vec::new(),
            // Two hosts: one connection, dialed by the first.
            Topology::Ring if n == 2 => (i == 0).then_some(1).into_iter().collect(),
            Topology::Ring => vec![(i + 1) % n],
        }
    }
}

/// Writes a local network of `hosts` hosts under `dir`: keys, users, the
/// genesis and one `node.toml` per host, peers on loopback from `base_port`
/// (API ports from `base_port + 1000`) connected as `topology` says.
/// Returns the config paths.
pub fn write_localnet(
    dir: &Path,
    hosts: usize,
    base_port: u16,
    model: &ModelConfig,
    topology: Topology,
) -> Result<Vec<PathBuf>, ConfigError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ConfigError::Io { path: path.clone(), source }
    };
    std::fs::create_dir_all(dir.join("users")).map_err(io(dir))?;
    let keys: Vec<HostKey> = (0..hosts).map(|_| generate()).collect::<Result<_, _>>()?;
    let users: Vec<HostKey> = (0..hosts).map(|_| generate()).collect::<Result<_, _>>()?;
    let mut accounts: Vec<GenesisAccount> =
        users.iter().map(|u| GenesisAccount { key: u.public_key(), balance: LOCALNET_USER_FUNDS }).collect();
    accounts.sort_by_key(|a| a.key);
    let genesis = Genesis {
        params: localnet_params(&model.name),
        seed: random32()?,
        hosts: keys.iter().map(|k| GenesisHost::new(k, 10)).collect(),
        accounts,
        reserve: LOCALNET_USER_FUNDS * 100,
    };
    let genesis_path = dir.join("genesis.bin");
    write_genesis(&genesis_path, &genesis)?;
    let peer_addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], base_port + i as u16));
    let mut paths = Vec::with_capacity(hosts);
    for (i, (key, user)) in keys.iter().zip(&users).enumerate() {
        let host_dir = dir.join(format!("host-{i}"));
        std::fs::create_dir_all(&host_dir).map_err(io(&host_dir))?;
        let key_file = host_dir.join("host.key");
        key.save(&key_file)
            .map_err(|e| ConfigError::Malformed { path: key_file.clone(), why: e.to_string() })?;
        let user_file = dir.join("users").join(format!("user-{i}.key"));
        user.save(&user_file)
            .map_err(|e| ConfigError::Malformed { path: user_file.clone(), why: e.to_string() })?;
        let config = NodeConfig {
            data_dir: PathBuf::from("chain"),
            key_file: PathBuf::from("host.key"),
            genesis_file: PathBuf::from("../genesis.bin"),
            listen: peer_addr(i),
            peers: topology.dials(i, hosts).into_iter().map(peer_addr).collect(),
            announce: None,
            api: SocketAddr::from(([127, 0, 0, 1], base_port + 1000 + i as u16)),
            api_keys: vec![ApiKeyConfig {
                key: format!("sk-local-{i}"),
                account_key_file: PathBuf::from(format!("../users/user-{i}.key")),
            }],
            nonces_per_sprint: LOCALNET_NONCES,
            threads: 1,
            model: model.clone(),
        };
        let path = host_dir.join("node.toml");
        config.write(&path)?;
        paths.push(path);
    }
    Ok(paths)
}

fn generate() -> Result<HostKey, ConfigError> {
    HostKey::generate()
        .map_err(|e| ConfigError::Malformed { path: PathBuf::from("<random>"), why: e.to_string() })
}

fn random32() -> Result<[u8; 32], ConfigError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)
        .map_err(|e| ConfigError::Malformed { path: PathBuf::from("<random>"), why: e.to_string() })?;
    Ok(b)
}
