//! `gonka pow bench`: the miner's rate on this machine, with the peak rate of
//! the matrix product alone measured in the same run as its ceiling.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use gonka_kernels::bench::{MinerRate, miner_rate};
use gonka_kernels::gemm::{kernel_name, measure_peak_gflops};
use gonka_kernels::model::Model;
use gonka_kernels::pow::{default_r_target, node_seed};
use gonka_kernels::sprint::SprintV1;

use crate::args;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model config: tiny, small or seed-64.
    #[arg(long, default_value = "small")]
    config: String,
    /// Seconds to mine for each batch size.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Activation precision: f32 or bf16.
    #[arg(long, default_value = "bf16")]
    precision: String,
    /// Batch sizes per worker to try (default depends on the config).
    #[arg(long, value_delimiter = ',')]
    batch: Vec<usize>,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Also print one JSON line with the best result, for scripts.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let config = args::config(&a.config)?;
    let precision = args::precision(&a.precision)?;
    let threads = args::threads(a.threads);
    let seed = [0x5a; 32];
    let batches = if a.batch.is_empty() {
        if config.dim >= 512 { vec![32, 64] } else { vec![64, 128, 256] }
    } else {
        a.batch.clone()
    };
    let t0 = Instant::now();
    let model = Model::generate(&config, &seed);
    let init_s = t0.elapsed().as_secs_f64();
    println!("model {config}: init {init_s:.2} s on {threads} threads");
    let peak = measure_peak_gflops(precision, threads, 3.0);
    println!(
        "peak GEMM ({}, kernel {}, {threads} threads): {peak:.1} GFLOP/s",
        args::precision_name(precision),
        kernel_name(precision)
    );
    let mut best = None;
    let f = SprintV1::new(&model, seed, node_seed(&[0xa5; 48]), default_r_target(config.vocab), precision);
    for &b in &batches {
        let r = miner_rate(&f, b, threads, a.seconds);
        println!(
            "batch {:>4}: {:>9.2} nonces/s  {:>7.1} GFLOP/s  {:>5.1}% of peak  ({} nonces, {} proofs in {:.1} s)",
            b,
            r.nonces_per_s,
            r.gflops,
            100.0 * r.gflops / peak,
            r.nonces,
            r.proofs,
            r.seconds
        );
        if best.as_ref().is_none_or(|x: &MinerRate| r.nonces_per_s > x.nonces_per_s) {
            best = Some(r);
        }
    }
    if let Some(r) = best {
        println!(
            "best: batch {} at {:.2} nonces/s, {:.1} GFLOP/s = {:.1}% of the {:.1} GFLOP/s peak",
            r.batch,
            r.nonces_per_s,
            r.gflops,
            100.0 * r.gflops / peak,
            peak
        );
        if a.json {
            println!(
                "{{\"impl\":\"gonka\",\"config\":\"{}\",\"precision\":\"{}\",\"nonces_per_s\":{:.4},\"gflops\":{:.2},\"peak_gflops\":{:.2},\"batch\":{},\"threads\":{},\"init_s\":{:.3}}}",
                config.name,
                args::precision_name(precision),
                r.nonces_per_s,
                r.gflops,
                peak,
                r.batch,
                threads,
                init_s
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
