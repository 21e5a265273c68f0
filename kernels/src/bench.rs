//! Throughput measurement shared by the CLI's `pow bench` and the benches:
//! the miner's real pipeline for a while, and the peak rate of the matrix
//! product alone on the same cores, so each figure comes with its ceiling.

use std::time::{Duration, Instant};

use crate::encoding::Hash32;
use crate::gemm::{GemmScratch, PackedWeight, Precision, matmul};
use crate::miner::{MinerConfig, Progress, StopSignal, mine};
use crate::model::Model;

/// One measured configuration of the miner.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MinerRate {
    /// Nonces per batch and worker.
    pub batch: usize,
    /// Worker threads.
    pub threads: usize,
    /// Nonces completed in the timed window.
    pub nonces: u64,
    /// Proofs among them.
    pub proofs: u64,
    /// Length of the timed window.
    pub seconds: f64,
    /// `nonces / seconds`.
    pub nonces_per_s: f64,
    /// Matrix-product GFLOP/s implied by the nonce rate.
    pub gflops: f64,
}

/// Runs the miner for `seconds` (after a warm-up of one batch per worker) and
/// reports its rate.
pub fn miner_rate(
    model: &Model,
    sprint_seed: &Hash32,
    precision: Precision,
    r_target: f32,
    batch: usize,
    threads: usize,
    seconds: f64,
) -> MinerRate {
    let cfg = MinerConfig {
        sprint_seed: *sprint_seed,
        node_seed: crate::pow::node_seed(&[0xa5; 48]),
        r_target,
        precision,
        batch,
        threads,
        first_nonce: 0,
    };
    // Warm-up: touch every weight page and grow every buffer once.
    let warm = MinerConfig { first_nonce: u64::MAX / 2, ..cfg.clone() };
    let _ = crate::validate::recompute_distances(
        model,
        sprint_seed,
        &warm.node_seed,
        &(0..(batch * threads) as u64).collect::<Vec<_>>(),
        precision,
        batch,
        threads,
    );
    let report =
        mine(model, &cfg, &StopSignal::after(Duration::from_secs_f64(seconds)), &mut |_: &Progress| {});
    let secs = report.elapsed.as_secs_f64();
    let rate = report.nonces as f64 / secs;
    MinerRate {
        batch,
        threads,
        nonces: report.nonces,
        proofs: report.proofs.len() as u64,
        seconds: secs,
        nonces_per_s: rate,
        gflops: rate * model.config.flops_per_nonce() / 1e9,
    }
}

/// Shape of the peak measurement: the seed-64 feed-forward up projection for
/// 64 nonces, the product that dominates the Sprint.
const PEAK_M: usize = 256;
const PEAK_N: usize = 4096;
const PEAK_K: usize = 512;

/// GFLOP/s of our matrix product alone on `threads` cores (each its own copy
/// of the operands, as the miner's workers), measured for about `seconds`.
pub fn peak_gemm_gflops(precision: Precision, threads: usize, seconds: f64) -> f64 {
    let rows: Vec<u16> = (0..PEAK_N * PEAK_K)
        .map(|i| crate::encoding::bf16_bits(((i * 7919) % 1000) as f32 * 1e-3 - 0.5))
        .collect();
    let w = PackedWeight::from_rows(&rows, PEAK_N, PEAK_K);
    let x: Vec<f32> = (0..PEAK_M * PEAK_K).map(|i| ((i * 104_729) % 997) as f32 * 1e-3 - 0.5).collect();
    let flops_per_call = 2.0 * (PEAK_M * PEAK_N * PEAK_K) as f64;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let calls: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut y = vec![0f32; PEAK_M * PEAK_N];
                    let mut scratch = GemmScratch::default();
                    let mut calls = 0u64;
                    while Instant::now() < deadline {
                        matmul(&x, PEAK_M, &w, &mut y, false, precision, &mut scratch);
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    calls as f64 * flops_per_call / start.elapsed().as_secs_f64() / 1e9
}
