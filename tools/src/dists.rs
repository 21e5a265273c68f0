//! `gonka pow dists`: what the Sprint function yields for a nonce range, as
//! CSV for cross-checks between implementations: `nonce,dist` for v1,
//! `nonce,digest` (hex) for v2.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use gonka_engine::proofs::{PowVersion, V2_NONCES_PER_PROOF};
use gonka_kernels::model::Model;
use gonka_kernels::pow::default_r_target;
use gonka_kernels::pow::node_seed;
use gonka_kernels::sprint::{SprintV1, SprintV2};
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
    /// Sprint function: v1 (prints distances) or v2 (prints digests).
    #[arg(long, default_value = "v2")]
    pow: PowVersion,
    /// v1 activation precision: f32 (reference numerics) or bf16.
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
    let nonces: Vec<u64> = (first..=last).collect();
    let node = node_seed(&pubkey);
    let threads = args::threads(a.threads);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match a.pow {
        PowVersion::V1 => {
            let model = Model::generate(&config, &seed);
            let f = SprintV1::new(&model, seed, node, default_r_target(config.vocab), precision);
            writeln!(out, "nonce,dist")?;
            for (n, s) in nonces.iter().zip(recompute(&f, &nonces, 16, threads)) {
                writeln!(out, "{n},{:.12}", s.score)?;
            }
        }
        PowVersion::V2 => {
            let model = gonka_kernels::v2::Model::generate(&config, &seed)?;
            let f = SprintV2::new(&model, seed, node, V2_NONCES_PER_PROOF);
            writeln!(out, "nonce,digest")?;
            for (n, d) in nonces.iter().zip(f.digests(&nonces, 16, threads)) {
                writeln!(out, "{n},{}", hex::encode(d))?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
