//! `gonka genesis`: writes a genesis file (JSON) for a simulated network or
//! a local test network, and reads one back for `gonka sim --genesis`.
//!
//! ```text
//! { "params": "tiny" | "default", "seed": "<64 hex>", "key_seed": 0,
//!   "hosts": [ { "public_key": "<96 hex>", "proof_of_possession": "<192 hex>", "weight": 10 }, … ] }
//! ```
//! `key_seed` names the seed the simulator derives the hosts' keys from; a
//! file read back must list exactly those keys, each with a valid proof of
//! possession.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail, ensure};
use clap::Args;
use gonka_engine::chain::{Genesis, GenesisHost};
use gonka_engine::crypto::HostKey;
use gonka_engine::crypto::cache::SigCache;
use gonka_engine::params::ChainParams;
use gonka_engine::sim::host_key_material;
use serde_json::{Value, json};

/// Largest genesis file read.
const MAX_GENESIS_BYTES: u64 = 64 << 20;

#[derive(Debug, Args)]
pub struct GenesisArgs {
    /// Hosts.
    #[arg(long, default_value_t = 50)]
    hosts: usize,
    /// Seed the hosts' keys are derived from (as `gonka sim --seed`).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Genesis weights: one for all, or one per host, comma-separated.
    #[arg(long, default_value = "10")]
    weights: String,
    /// Parameter set: tiny (simulation) or default.
    #[arg(long, default_value = "tiny")]
    params: String,
    /// Where to write it; never overwritten.
    #[arg(long)]
    out: PathBuf,
}

fn params_named(name: &str) -> anyhow::Result<ChainParams> {
    match name {
        "tiny" => Ok(ChainParams::tiny()),
        "default" => Ok(ChainParams::default()),
        _ => bail!("unknown parameter set {name:?}; expected tiny or default"),
    }
}

pub fn run(a: &GenesisArgs) -> anyhow::Result<ExitCode> {
    let weights: Vec<u64> = a
        .weights
        .split(',')
        .map(|w| w.trim().parse::<u64>().context("weights are integers"))
        .collect::<Result<_, _>>()?;
    let weights = match weights.len() {
        1 => vec![weights[0]; a.hosts],
        n if n == a.hosts => weights,
        n => bail!("{n} weights for {} hosts", a.hosts),
    };
    params_named(&a.params)?;
    let hosts: Vec<Value> = weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| {
            let key = HostKey::from_ikm(&host_key_material(a.seed, i));
            json!({
                "public_key": hex::encode(key.public_key()),
                "proof_of_possession": hex::encode(key.proof_of_possession()),
                "weight": weight,
            })
        })
        .collect();
    let file = json!({
        "params": a.params,
        "seed": hex::encode(gonka_kernels::encoding::tagged_hash("gonka/sim-genesis", &[&a.seed.to_le_bytes()])),
        "key_seed": a.seed,
        "hosts": hosts,
    });
    let text = serde_json::to_string_pretty(&file).context("encoding the genesis")?;
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).open(&a.out).with_context(|| {
            format!("creating {} (an existing file is never overwritten)", a.out.display())
        })?;
    std::io::Write::write_all(&mut f, text.as_bytes()).context("writing the genesis")?;
    println!("wrote {} with {} hosts", a.out.display(), a.hosts);
    Ok(ExitCode::SUCCESS)
}

/// A genesis file read back: the genesis and the seed its keys come from.
#[derive(Debug)]
pub struct GenesisFile {
    pub genesis: Genesis,
    pub key_seed: u64,
}

fn hex_array<const N: usize>(v: &Value, what: &str) -> anyhow::Result<[u8; N]> {
    let s = v.as_str().with_context(|| format!("{what} must be a hex string"))?;
    let bytes = hex::decode(s).with_context(|| format!("{what} is not hex"))?;
    bytes.try_into().map_err(|b: Vec<u8>| anyhow::anyhow!("{what} has {} bytes, expected {N}", b.len()))
}

/// Reads and checks a genesis file: parameters, keys, proofs of possession.
pub fn read(path: &Path) -> anyhow::Result<GenesisFile> {
    let len = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    ensure!(
        len <= MAX_GENESIS_BYTES,
        "{} has {len} bytes, more than the {MAX_GENESIS_BYTES} allowed",
        path.display()
    );
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let params = params_named(v["params"].as_str().context("\"params\" must be a string")?)?;
    let seed = hex_array::<32>(&v["seed"], "seed")?;
    let key_seed = v["key_seed"].as_u64().context("\"key_seed\" must be an unsigned integer")?;
    let list = v["hosts"].as_array().context("\"hosts\" must be a list")?;
    let mut hosts = Vec::with_capacity(list.len());
    for (i, h) in list.iter().enumerate() {
        hosts.push(GenesisHost {
            public_key: hex_array(&h["public_key"], &format!("hosts[{i}].public_key"))?,
            proof_of_possession: hex_array(
                &h["proof_of_possession"],
                &format!("hosts[{i}].proof_of_possession"),
            )?,
            weight: h["weight"]
                .as_u64()
                .with_context(|| format!("hosts[{i}].weight must be an unsigned integer"))?,
            models: match &h["models"] {
                serde_json::Value::Null => u64::MAX,
                m => m.as_u64().with_context(|| format!("hosts[{i}].models must be a bit mask"))?,
            },
        });
    }
    let genesis = Genesis { params, seed, hosts, accounts: Vec::new(), reserve: 0 };
    genesis.validate(&SigCache::default()).context("checking the genesis")?;
    Ok(GenesisFile { genesis, key_seed })
}
