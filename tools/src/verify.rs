//! `gonka verify`: offline verification of a proof file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use gonka_engine::crypto::HostKey;
use gonka_engine::proofs::{
    MAX_PROOF_FILE_BYTES, PowVersion, VerifyError, VerifyOptions, VerifyReport, verify_proof_file,
};
use gonka_engine::store::ChainStore;
use gonka_engine::store::audit::audit_epoch;

use crate::args;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The proof file.
    #[arg(required_unless_present = "db", conflicts_with = "db")]
    file: Option<PathBuf>,
    /// The Sprint seed the batch must belong to, 64 hex digits.
    #[arg(long, required_unless_present = "db", conflicts_with = "db")]
    seed: Option<String>,
    /// A host's chain store: re-verify the stored Sprint of `--epoch` and
    /// compare with the recorded verdicts and weights.
    #[arg(long, requires = "epoch")]
    db: Option<PathBuf>,
    /// The epoch to re-verify from `--db`.
    #[arg(long, requires = "db")]
    epoch: Option<u64>,
    /// Proofs to recompute per batch (with `--db`, default: the chain's validation sample).
    #[arg(long)]
    sample: Option<usize>,
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
    let validator = match &a.key {
        Some(p) => HostKey::load(p).context("loading the validator key")?,
        None => HostKey::generate().context("generating a validator key")?,
    };
    if let (Some(db), Some(epoch)) = (&a.db, a.epoch) {
        return verify_epoch(db, epoch, &validator, a.sample, args::threads(a.threads));
    }
    let (Some(file), Some(seed)) = (&a.file, &a.seed) else {
        anyhow::bail!("give a proof file and --seed, or --db and --epoch");
    };
    let seed = args::hex32(seed)?;
    let len = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?.len();
    if len > MAX_PROOF_FILE_BYTES as u64 {
        anyhow::bail!("{}: {len} bytes exceeds the limit of {MAX_PROOF_FILE_BYTES} bytes", file.display());
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let opts = VerifyOptions {
        sprint_seed: seed,
        pow: a.pow,
        r_target: a.r_target,
        sample: a.sample.unwrap_or(200),
        validator: &validator,
        precision: args::precision(&a.precision)?,
        threads: args::threads(a.threads),
        batch: 16,
        params: None,
        difficulty: None,
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
            eprintln!("{}: {kind}: {e}", file.display());
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

/// `--db --epoch`: the stored Sprint re-verified; exit 1 on any disagreement.
fn verify_epoch(
    db: &Path,
    epoch: u64,
    validator: &HostKey,
    sample: Option<usize>,
    threads: usize,
) -> anyhow::Result<ExitCode> {
    let store =
        ChainStore::open_read_only(db).with_context(|| format!("opening the store {}", db.display()))?;
    let audit = audit_epoch(&store, epoch, validator, sample, threads)?;
    match audit.seed {
        Some(seed) => println!("epoch {epoch}: Sprint seed {}", hex::encode(seed)),
        None => println!("epoch {epoch}: no Sprint (the beacon failed); weights carried over"),
    }
    for b in &audit.batches {
        let ours = match &b.ours {
            Ok(()) => "valid".to_string(),
            Err(why) => format!("invalid: {why}"),
        };
        let mark = if b.agrees() { "agrees" } else { "DISAGREES" };
        println!(
            "  batch of host {:>3}: {:>7} proofs, chain {:?}, ours {ours} — {mark}",
            b.host, b.proofs, b.recorded
        );
    }
    let differing: Vec<_> = audit.weights.iter().filter(|w| w.2 != w.3).collect();
    for (id, key, recorded, ours) in &differing {
        println!("  weight of host {id} ({}…): recorded {recorded}, ours {ours}", &hex::encode(key)[..12]);
    }
    let disagreeing = audit.batches.iter().filter(|b| !b.agrees()).count();
    println!(
        "epoch {epoch}: {} batches re-verified, {disagreeing} verdicts and {} of {} weights disagree with the chain",
        audit.batches.len(),
        differing.len(),
        audit.weights.len()
    );
    Ok(if audit.agrees() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_REJECTED) })
}
