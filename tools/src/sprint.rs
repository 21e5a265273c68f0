//! `gonka sprint`: mine for a while, then write the signed proof batch.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use gonka_engine::crypto::HostKey;
use gonka_engine::proofs::{
    Difficulty, PowVersion, ProofBatch, ProofEntry, V2_NONCES_PER_PROOF, encode_proof_file,
};
use gonka_kernels::miner::{MineReport, MinerConfig, Progress, StopSignal, mine};
use gonka_kernels::model::Model;
use gonka_kernels::pow::{default_r_target, expected_proof_rate, node_seed};
use gonka_kernels::sprint::{SprintFunction, SprintV1, SprintV2};
use gonka_kernels::{Hash32, ModelConfig, Precision};

use crate::args;

#[derive(Debug, Args)]
pub struct SprintArgs {
    /// Model config: tiny, small or seed-64.
    #[arg(long, default_value = "small")]
    config: String,
    /// Sprint seed, 64 hex digits.
    #[arg(long)]
    seed: String,
    /// The host key file (from `gonka keygen`).
    #[arg(long)]
    key: PathBuf,
    /// How long to mine: 30s, 2m, …
    #[arg(long, default_value = "30s")]
    duration: String,
    /// Sprint function: v1 (distance to a target) or v2 (integer-exact, hash predicate).
    #[arg(long, default_value = "v2")]
    pow: PowVersion,
    /// v1's distance threshold (default: one proof in about 900 nonces).
    #[arg(long)]
    r_target: Option<f32>,
    /// Where to write the proof batch.
    #[arg(long)]
    out: PathBuf,
    /// Activation precision: f32 or bf16.
    #[arg(long, default_value = "bf16")]
    precision: String,
    /// Nonces per batch and worker (default depends on the config).
    #[arg(long)]
    batch: Option<usize>,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

/// What a Sprint produced, for the summary.
#[derive(Debug)]
pub struct SprintSummary {
    pub config: ModelConfig,
    pub init: Duration,
    pub elapsed: Duration,
    pub nonces: u64,
    pub proofs: usize,
    pub difficulty: Difficulty,
    pub file_bytes: usize,
    pub pubkey: [u8; 48],
}

/// A sensible batch per worker: big enough for full-speed matrix products,
/// small enough that a deadline cuts little work.
pub fn default_batch(c: &ModelConfig) -> usize {
    if c.dim >= 512 { 24 } else { 128 }
}

pub struct SprintPlan<'a> {
    pub pow: PowVersion,
    pub config: ModelConfig,
    pub seed: Hash32,
    pub key: &'a HostKey,
    pub duration: Duration,
    pub r_target: f32,
    pub precision: Precision,
    pub batch: usize,
    pub threads: usize,
    pub out: &'a Path,
}

/// Generates the model, mines with a live progress line, writes the batch.
pub fn mine_to_file(p: &SprintPlan<'_>) -> anyhow::Result<SprintSummary> {
    eprintln!("generating {} model ({}) for seed {}…", p.config, p.pow_name(), hex::encode(&p.seed[..8]));
    let node = node_seed(&p.key.public_key());
    let t0 = Instant::now();
    let (report, init, difficulty) = match p.pow {
        PowVersion::V1 => {
            let model = Model::generate(&p.config, &p.seed);
            let init = t0.elapsed();
            report_model(init, model.bytes());
            let f = SprintV1::new(&model, p.seed, node, p.r_target, p.precision);
            (mine_live(&f, p), init, Difficulty::v1(p.r_target))
        }
        PowVersion::V2 => {
            let model = gonka_kernels::v2::Model::generate(&p.config, &p.seed)?;
            let init = t0.elapsed();
            report_model(init, model.bytes());
            let f = SprintV2::new(&model, p.seed, node, V2_NONCES_PER_PROOF);
            (mine_live(&f, p), init, Difficulty::V2 { nonces_per_proof: V2_NONCES_PER_PROOF })
        }
    };
    let proofs: Vec<ProofEntry> =
        report.proofs.iter().map(|p| ProofEntry { nonce: p.nonce, score: p.score }).collect();
    let n_proofs = proofs.len();
    let batch = ProofBatch::new_signed(p.key, p.seed, &p.config, difficulty, report.nonces, proofs);
    let bytes = encode_proof_file(&batch);
    gonka_storage::write_atomic(p.out, &bytes, 0o644)
        .with_context(|| format!("writing {}", p.out.display()))?;
    Ok(SprintSummary {
        config: p.config,
        init,
        elapsed: report.elapsed,
        nonces: report.nonces,
        proofs: n_proofs,
        difficulty,
        file_bytes: bytes.len(),
        pubkey: p.key.public_key(),
    })
}

fn report_model(init: Duration, bytes: usize) {
    eprintln!("model ready in {:.2} s ({:.0} MiB)", init.as_secs_f64(), bytes as f64 / (1 << 20) as f64);
}

/// Mines `f` until the plan's deadline or Ctrl-C, with a live progress line.
fn mine_live<F: SprintFunction>(f: &F, p: &SprintPlan<'_>) -> MineReport {
    let cfg = MinerConfig { batch: p.batch, threads: p.threads, first_nonce: 0 };
    let stop = StopSignal::after(p.duration);
    let flag = stop.cancel_flag();
    // Ctrl-C ends the Sprint early; the proofs found so far are still written.
    let _ = ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::Relaxed));
    let total = p.duration.as_secs_f64();
    // A terminal gets one line rewritten in place; a log gets a line every few seconds.
    let tty = std::io::stderr().is_terminal();
    let mut calls = 0u64;
    let mut show = |pr: &Progress| {
        calls += 1;
        let line = format!(
            "  {:>6.1}/{:.0} s  {:>10} nonces  {:>9.1} nonces/s  {:>6} proofs",
            pr.elapsed.as_secs_f64(),
            total,
            pr.nonces,
            pr.rate(),
            pr.proofs
        );
        if tty {
            eprint!("\r{line} ");
            let _ = std::io::stderr().flush();
        } else if calls.is_multiple_of(10) {
            eprintln!("{line}");
        }
    };
    let report = mine(f, &cfg, &stop, &mut show);
    if tty {
        eprintln!();
    }
    report
}

/// The proof rate a difficulty promises on `config`.
fn expected_rate(d: Difficulty, config: &ModelConfig) -> f64 {
    match d {
        Difficulty::V1 { r_target_bits } => expected_proof_rate(config.vocab, f32::from_bits(r_target_bits)),
        Difficulty::V2 { nonces_per_proof } => 1.0 / nonces_per_proof as f64,
    }
}

impl SprintPlan<'_> {
    fn pow_name(&self) -> &'static str {
        match self.pow {
            PowVersion::V1 => "Sprint function v1",
            PowVersion::V2 => "Sprint function v2",
        }
    }
}

/// The human-readable end of a Sprint.
pub fn print_summary(s: &SprintSummary, out: &Path) {
    let rate = s.nonces as f64 / s.elapsed.as_secs_f64().max(1e-9);
    let rate_expected = expected_rate(s.difficulty, &s.config);
    let expected = s.nonces as f64 * rate_expected;
    println!("Sprint summary");
    println!("  model        {}", s.config);
    println!("  host         {}", hex::encode(s.pubkey));
    println!("  init         {:.2} s", s.init.as_secs_f64());
    println!("  mined        {:.1} s, {} nonces, {:.1} nonces/s", s.elapsed.as_secs_f64(), s.nonces, rate);
    println!("  throughput   {:.1} GFLOP/s (matrix products)", rate * s.config.flops_per_nonce() / 1e9);
    println!(
        "  proofs       {} ({}; the spec expects {:.1}, one per {:.0} nonces)",
        s.proofs,
        s.difficulty,
        expected,
        1.0 / rate_expected
    );
    println!("  proof file   {} ({} bytes)", out.display(), s.file_bytes);
}

pub fn run(a: &SprintArgs) -> anyhow::Result<ExitCode> {
    let config = args::config(&a.config)?;
    let key = HostKey::load(&a.key).context("loading the host key")?;
    let plan = SprintPlan {
        pow: a.pow,
        config,
        seed: args::hex32(&a.seed)?,
        key: &key,
        duration: args::duration(&a.duration)?,
        r_target: a.r_target.unwrap_or_else(|| default_r_target(config.vocab)),
        precision: args::precision(&a.precision)?,
        batch: a.batch.unwrap_or_else(|| default_batch(&config)),
        threads: args::threads(a.threads),
        out: &a.out,
    };
    let summary = mine_to_file(&plan)?;
    print_summary(&summary, &a.out);
    Ok(ExitCode::SUCCESS)
}
