//! `gonka sim`: a whole network in one process, deterministic under a seed,
//! with adversaries, printing a row per epoch and a summary.

use std::process::ExitCode;

use anyhow::{Context, bail, ensure};
use clap::Args;
use gonka_engine::sim::{EpochRow, NetworkConfig, SimConfig, run};

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Hosts in the network.
    #[arg(long, default_value_t = 50)]
    hosts: usize,
    /// Epochs to run.
    #[arg(long, default_value_t = 10)]
    epochs: u64,
    /// Stop after this many blocks.
    #[arg(long)]
    blocks: Option<u64>,
    /// Percent of hosts that are adversaries, cycling through: fabricated proofs,
    /// wrong outputs, lazy validator, colluding validator, colluding executor,
    /// smaller model, skipped validation, inflated counts, duplicate nonces,
    /// an equivocating proposer, offline.
    #[arg(long, default_value_t = 20)]
    adversarial: u32,
    /// Seed of every random choice: same seed, same output.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// One-way latency range in ms, `MIN-MAX`.
    #[arg(long, default_value = "5-40")]
    latency: String,
    /// Messages lost, per thousand.
    #[arg(long, default_value_t = 10)]
    loss: u32,
    /// No partition of an honest minority in the second epoch.
    #[arg(long)]
    no_partition: bool,
    /// Nonces an average honest host computes per Sprint.
    #[arg(long, default_value_t = 2048)]
    nonces: u64,
    /// Cores for mining and validation (default: all).
    #[arg(long)]
    threads: Option<usize>,
    /// Inference requests the users send per epoch.
    #[arg(long, default_value_t = 120)]
    requests: u64,
    /// Users sending them.
    #[arg(long, default_value_t = 16)]
    users: usize,
    /// Per thousand of their finished tasks a user reports.
    #[arg(long, default_value_t = 20)]
    report_permille: u32,
    /// A genesis file (`gonka genesis`): its hosts, weights, parameters and
    /// key seed replace `--hosts` and `--seed`.
    #[arg(long)]
    genesis: Option<std::path::PathBuf>,
    /// The first honest host keeps its chain store in this (new or empty)
    /// directory; read it afterwards with `gonka inspect --db`.
    #[arg(long)]
    db: Option<std::path::PathBuf>,
}

fn print_row(r: &EpochRow, wall_s: f64) {
    eprintln!("{:>7.1} s  {}", wall_s, r.summary());
}

pub fn run_sim(a: &SimArgs) -> anyhow::Result<ExitCode> {
    let (lo, hi) = a.latency.split_once('-').context("latency must be MIN-MAX in ms")?;
    let (latency_ms_min, latency_ms_max): (u64, u64) =
        (lo.trim().parse().context("latency minimum")?, hi.trim().parse().context("latency maximum")?);
    if latency_ms_min > latency_ms_max || a.loss > 1000 || a.adversarial > 100 || a.hosts == 0 {
        bail!("need latency MIN ≤ MAX, loss ≤ 1000 per thousand, adversarial ≤ 100 %, at least one host");
    }
    let defaults = SimConfig::default();
    let mut config = SimConfig {
        hosts: a.hosts,
        adversarial_percent: a.adversarial,
        epochs: a.epochs,
        max_blocks: a.blocks,
        seed: a.seed,
        network: NetworkConfig {
            latency_ms_min,
            latency_ms_max,
            loss_permille: a.loss,
            partitions: Vec::new(),
        },
        nonces_per_sprint: a.nonces,
        threads: a.threads.unwrap_or(defaults.threads),
        partition_minority: !a.no_partition,
        requests_per_epoch: a.requests,
        users: a.users,
        report_permille: a.report_permille.min(1000),
        on_epoch: Some(print_row),
        store: a.db.clone(),
        ..defaults
    };
    if let Some(path) = &a.genesis {
        let file = crate::genesis::read(path)?;
        for (i, h) in file.genesis.hosts.iter().enumerate() {
            let derived = gonka_engine::crypto::HostKey::from_ikm(&gonka_engine::sim::host_key_material(
                file.key_seed,
                i,
            ));
            ensure!(
                derived.public_key() == h.public_key,
                "host {i} of {} is not the simulator's key {i} for key_seed {}",
                path.display(),
                file.key_seed
            );
        }
        let seed = gonka_kernels::encoding::tagged_hash("gonka/sim-genesis", &[&file.key_seed.to_le_bytes()]);
        ensure!(
            file.genesis.seed == seed,
            "the simulator derives the genesis seed from key_seed; {} names another",
            path.display()
        );
        config.hosts = file.genesis.hosts.len();
        config.seed = file.key_seed;
        config.genesis_weights = Some(file.genesis.hosts.iter().map(|h| h.weight).collect());
        config.params = file.genesis.params;
    }
    eprintln!(
        "simulating {} hosts ({} % adversarial) for {} epochs of {} blocks, seed {}",
        config.hosts, config.adversarial_percent, config.epochs, config.params.epoch_blocks, config.seed
    );
    let report = run(config)?;
    print!("{}", report.render());
    let bad: u32 = report.epochs.iter().map(|r| r.bad_accepted + r.good_rejected + r.honest_withheld).sum();
    let unsafe_run = report.conflicting_commits + report.root_mismatches + report.halted + bad > 0;
    Ok(if unsafe_run { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
