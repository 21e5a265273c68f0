//! `gonka demo`: what a newcomer runs first — a host key, a short Sprint on the
//! `small` model, the proof file, and its verification by a second key.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use gonka_engine::crypto::HostKey;
use gonka_engine::proofs::{PowVersion, VerifyOptions, verify_proof_file};
use gonka_kernels::Precision;
use gonka_kernels::pow::default_r_target;

use crate::sprint::{SprintPlan, default_batch, mine_to_file, print_summary};
use crate::{args, verify};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Model config.
    #[arg(long, default_value = "small")]
    config: String,
    /// Sprint function: v1 or v2.
    #[arg(long, default_value = "v2")]
    pow: PowVersion,
    /// How long to mine.
    #[arg(long, default_value = "20s")]
    duration: String,
    /// Sprint seed (default: a fixed demo seed).
    #[arg(long, default_value = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")]
    seed: String,
}

pub fn run(a: &DemoArgs) -> anyhow::Result<ExitCode> {
    let config = args::config(&a.config)?;
    let seed = args::hex32(&a.seed)?;
    let dir = std::env::temp_dir().join(format!("gonka-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let key_path = dir.join("host.key");
    let host = HostKey::generate()?;
    host.save(&key_path)?;
    println!("host key {} (public {})", key_path.display(), hex::encode(host.public_key()));
    let out = dir.join("proofs.bin");
    let threads = args::threads(None);
    let plan = SprintPlan {
        pow: a.pow,
        config,
        seed,
        key: &host,
        duration: args::duration(&a.duration)?,
        r_target: default_r_target(config.vocab),
        precision: Precision::Bf16,
        batch: default_batch(&config),
        threads,
        out: &out,
    };
    let summary = mine_to_file(&plan)?;
    print_summary(&summary, &out);
    println!();
    if summary.proofs == 0 {
        println!("No proofs in so short a Sprint: nothing to verify (try --duration 60s).");
        std::fs::remove_dir_all(&dir).ok();
        return Ok(ExitCode::SUCCESS);
    }
    println!("Verifying with a second key (recomputation of up to 200 sampled proofs)…");
    let validator = HostKey::generate()?;
    let bytes = std::fs::read(&out)?;
    let opts = VerifyOptions {
        sprint_seed: seed,
        pow: a.pow,
        r_target: None,
        sample: 200,
        validator: &validator,
        precision: Precision::F32,
        threads,
        batch: 16,
        params: None,
        difficulty: None,
    };
    let code = match verify_proof_file(&bytes, &opts) {
        Ok(r) => {
            verify::print_report(&r);
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("verification failed: {e}");
            ExitCode::from(1)
        }
    };
    std::fs::remove_dir_all(&dir).ok();
    Ok(code)
}
