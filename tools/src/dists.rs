//! `gonka pow dists`: distances of a nonce range as CSV, for cross-checks
//! between implementations.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use gonka_kernels::model::Model;
use gonka_kernels::pow::default_r_target;
use gonka_kernels::pow::node_seed;
use gonka_kernels::sprint::SprintV1;
use gonka_kernels::validate::recompute;

use crate::args;

#[derive(Debug, Args)]
pub struct DistsArgs {
    /// Model config: tiny, small or seed-64.
    #[arg(long)]
    config: String,
    /// Sprint seed, 64 hex digits.
    #[arg(long)]
    seed: String,
    /// Host public key, 96 hex digits (compressed G1).
    #[arg(long)]
    pubkey: String,
    /// Nonce range A-B, both included.
    #[arg(long)]
    nonces: String,
    /// Activation precision: f32 (reference numerics) or bf16.
    #[arg(long, default_value = "f32")]
    precision: String,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

/// Most nonces one call prints: the output is for checks, not for mining.
const MAX_NONCES: u64 = 1 << 20;

pub fn run(a: &DistsArgs) -> anyhow::Result<ExitCode> {
    let config = args::config(&a.config)?;
    let seed = args::hex32(&a.seed)?;
    let pubkey = args::hex48(&a.pubkey)?;
    let (first, last) = args::nonce_range(&a.nonces)?;
    if last - first >= MAX_NONCES {
        bail!("at most {MAX_NONCES} nonces per call");
    }
    let precision = args::precision(&a.precision)?;
    let model = Model::generate(&config, &seed);
    let nonces: Vec<u64> = (first..=last).collect();
    let f = SprintV1::new(&model, seed, node_seed(&pubkey), default_r_target(config.vocab), precision);
    let dists: Vec<f64> =
        recompute(&f, &nonces, 16, args::threads(a.threads)).iter().map(|s| s.score).collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "nonce,dist")?;
    for (n, d) in nonces.iter().zip(&dists) {
        writeln!(out, "{n},{d:.12}")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
