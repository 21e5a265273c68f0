//! `gonka verify`: offline verification of a proof file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use gonka_engine::crypto::HostKey;
use gonka_engine::proofs::{
    MAX_PROOF_FILE_BYTES, PowVersion, VerifyError, VerifyOptions, VerifyReport, verify_proof_file,
};

use crate::args;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The proof file.
    file: PathBuf,
    /// The Sprint seed the batch must belong to, 64 hex digits.
    #[arg(long)]
    seed: String,
    /// Proofs to recompute.
    #[arg(long, default_value_t = 200)]
    sample: usize,
    /// The Sprint function the batch must use: v1 or v2.
    #[arg(long, default_value = "v2")]
    pow: PowVersion,
    /// v1's threshold (default: the model's default difficulty).
    #[arg(long)]
    r_target: Option<f32>,
    /// The validator's key; its signature over the batch picks the sample
    /// (default: a fresh key, so the sample is unpredictable).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Recomputation precision: f32 or bf16.
    #[arg(long, default_value = "f32")]
    precision: String,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

/// Exit status of a batch that was read and rejected (fraud or false claims).
const EXIT_REJECTED: u8 = 1;

pub fn run(a: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let seed = args::hex32(&a.seed)?;
    let validator = match &a.key {
        Some(p) => HostKey::load(p).context("loading the validator key")?,
        None => HostKey::generate().context("generating a validator key")?,
    };
    let len = std::fs::metadata(&a.file).with_context(|| format!("reading {}", a.file.display()))?.len();
    if len > MAX_PROOF_FILE_BYTES as u64 {
        anyhow::bail!("{}: {len} bytes exceeds the limit of {MAX_PROOF_FILE_BYTES} bytes", a.file.display());
    }
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let opts = VerifyOptions {
        sprint_seed: seed,
        pow: a.pow,
        r_target: a.r_target,
        sample: a.sample,
        validator: &validator,
        precision: args::precision(&a.precision)?,
        threads: args::threads(a.threads),
        batch: 16,
        params: None,
    };
    match verify_proof_file(&bytes, &opts) {
        Ok(r) => {
            print_report(&r);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let kind = match e {
                VerifyError::File(_) => "malformed",
                _ => "rejected",
            };
            eprintln!("{}: {kind}: {e}", a.file.display());
            Ok(ExitCode::from(if kind == "malformed" { 2 } else { EXIT_REJECTED }))
        }
    }
}

/// One line a person reads, then the audit details.
pub fn print_report(r: &VerifyReport) {
    let v = &r.verdict;
    println!(
        "valid: {} proofs by {} on {}; {}/{} sampled recomputed, {} mismatches (p = {:.3}), max |Δscore| {:.1e}",
        r.proofs,
        &hex::encode(r.pubkey)[..16],
        r.config.name,
        v.sampled,
        r.proofs,
        v.mismatches.len(),
        v.p_value,
        v.max_abs_diff
    );
    println!(
        "  {}; model init {:.2} s; recompute {:.2} s ({:.1} nonces/s)",
        r.difficulty,
        r.init_time.as_secs_f64(),
        r.recompute_time.as_secs_f64(),
        v.sampled as f64 / r.recompute_time.as_secs_f64().max(1e-9)
    );
    println!("  validator {} sample signature {}", hex::encode(r.validator.0), hex::encode(r.validator.1));
}
