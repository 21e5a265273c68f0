//! `gonka pow bench`: the miner's rate on this machine, with the peak rate of
//! the matrix product alone measured in the same run as its ceiling.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use gonka_engine::proofs::{PowVersion, V2_NONCES_PER_PROOF};
use gonka_kernels::bench::{MinerRate, miner_rate, peak_int8_gops};
use gonka_kernels::gemm::{kernel_name, measure_peak_gflops};
use gonka_kernels::model::Model;
use gonka_kernels::pow::{default_r_target, node_seed};
use gonka_kernels::sprint::{SprintFunction, SprintV1, SprintV2};

use crate::args;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model config: tiny, small or seed-64.
    #[arg(long, default_value = "small")]
    config: String,
    /// Seconds to mine for each batch size.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// v1 activation precision: f32 or bf16 (v2 is exact int8).
    #[arg(long, default_value = "bf16")]
    precision: String,
    /// Batch sizes per worker to try (default depends on the config).
    #[arg(long, value_delimiter = ',')]
    batch: Vec<usize>,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Sprint function: v1 or v2.
    #[arg(long, default_value = "v2")]
    pow: PowVersion,
    /// Also print one JSON line with the best result, for scripts.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let config = args::config(&a.config)?;
    let precision = args::precision(&a.precision)?;
    let threads = args::threads(a.threads);
    let seed = [0x5a; 32];
    let node = node_seed(&[0xa5; 48]);
    let batches = if a.batch.is_empty() {
        if config.dim >= 512 { vec![16, 24, 32, 48] } else { vec![64, 128, 256] }
    } else {
        a.batch.clone()
    };
    let t0 = Instant::now();
    match a.pow {
        PowVersion::V1 => {
            let model = Model::generate(&config, &seed);
            let init_s = t0.elapsed().as_secs_f64();
            println!("model {config}, v1: init {init_s:.2} s on {threads} threads");
            let peak = measure_peak_gflops(precision, threads, 3.0);
            let kernel = format!("{} {}", args::precision_name(precision), kernel_name(precision));
            let f = SprintV1::new(&model, seed, node, default_r_target(config.vocab), precision);
            sweep(
                &f,
                &Run {
                    a,
                    batches: &batches,
                    threads,
                    peak,
                    kernel: &kernel,
                    init_s,
                    mode: args::precision_name(precision),
                },
            );
        }
        PowVersion::V2 => {
            let model = gonka_kernels::v2::Model::generate(&config, &seed)?;
            let init_s = t0.elapsed().as_secs_f64();
            println!("model {config}, v2: init {init_s:.2} s on {threads} threads");
            let peak = peak_int8_gops(threads, 3.0);
            let kernel = format!("int8 {}", gonka_kernels::v2::gemm::Kernel::best().name());
            let f = SprintV2::new(&model, seed, node, V2_NONCES_PER_PROOF);
            sweep(&f, &Run { a, batches: &batches, threads, peak, kernel: &kernel, init_s, mode: "int8" });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One bench invocation's settings and ceiling.
struct Run<'a> {
    a: &'a BenchArgs,
    batches: &'a [usize],
    threads: usize,
    /// Peak rate of the matrix product alone (GFLOP/s, or int8 GOP/s).
    peak: f64,
    kernel: &'a str,
    init_s: f64,
    mode: &'a str,
}

fn sweep<F: SprintFunction>(f: &F, r: &Run<'_>) {
    let config = f.config();
    println!("peak GEMM ({}, {} threads): {:.1} G(FL)OP/s", r.kernel, r.threads, r.peak);
    let mut best: Option<MinerRate> = None;
    for &b in r.batches {
        let m = miner_rate(f, b, r.threads, r.a.seconds);
        println!(
            "batch {:>4}: {:>9.2} nonces/s  {:>7.1} G(FL)OP/s  {:>5.1}% of peak  ({} nonces, {} proofs in {:.1} s)",
            b,
            m.nonces_per_s,
            m.gflops,
            100.0 * m.gflops / r.peak,
            m.nonces,
            m.proofs,
            m.seconds
        );
        if best.as_ref().is_none_or(|x| m.nonces_per_s > x.nonces_per_s) {
            best = Some(m);
        }
    }
    let Some(m) = best else { return };
    println!(
        "best: batch {} at {:.2} nonces/s, {:.1} G(FL)OP/s = {:.1}% of the {:.1} peak",
        m.batch,
        m.nonces_per_s,
        m.gflops,
        100.0 * m.gflops / r.peak,
        r.peak
    );
    if r.a.json {
        println!(
            "{{\"impl\":\"gonka\",\"pow\":\"{}\",\"config\":\"{}\",\"precision\":\"{}\",\"nonces_per_s\":{:.4},\"gflops\":{:.2},\"peak_gflops\":{:.2},\"batch\":{},\"threads\":{},\"init_s\":{:.3}}}",
            f.version(),
            config.name,
            r.mode,
            m.nonces_per_s,
            m.gflops,
            r.peak,
            m.batch,
            r.threads,
            r.init_s
        );
    }
}
