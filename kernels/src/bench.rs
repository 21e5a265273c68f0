//! Throughput measurement shared by the CLI's `pow bench` and the benches:
//! the miner's real pipeline for a while. Its ceiling, the matrix product
//! alone on the same cores, is [`crate::gemm::measure_peak_gflops`].

use std::time::Duration;

use crate::miner::{MinerConfig, Progress, StopSignal, mine};
use crate::sprint::SprintFunction;
use crate::validate::recompute;

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

/// Runs the miner on `f` for `seconds` (after a warm-up of one batch per
/// worker) and reports its rate.
pub fn miner_rate<F: SprintFunction>(f: &F, batch: usize, threads: usize, seconds: f64) -> MinerRate {
    // Warm-up: touch every weight page and grow every buffer once.
    let warm: Vec<u64> = (0..(batch * threads) as u64).map(|n| n + (u64::MAX >> 1)).collect();
    let _ = recompute(f, &warm, batch, threads);
    let cfg = MinerConfig { batch, threads, first_nonce: 0 };
    let report = mine(f, &cfg, &StopSignal::after(Duration::from_secs_f64(seconds)), &mut |_: &Progress| {});
    // Counted nonces over the time they took: a batch cut short by the
    // deadline is neither counted nor timed (as a reference that finishes its
    // last batch past the deadline counts it and its time).
    let secs = report.active.as_secs_f64().max(1e-9);
    let rate = report.nonces as f64 / secs;
    MinerRate {
        batch,
        threads,
        nonces: report.nonces,
        proofs: report.proofs.len() as u64,
        seconds: secs,
        nonces_per_s: rate,
        gflops: rate * f.config().flops_per_nonce() / 1e9,
    }
}

/// Tera-ops per second of v2's exact int8 matrix product alone on `threads`
/// cores (each its own operands), measured for about `seconds`: the ceiling of
/// the v2 miner, as [`crate::gemm::measure_peak_gflops`] is v1's. One
/// multiply-add counts as two operations.
pub fn peak_int8_gops(threads: usize, seconds: f64) -> f64 {
    use crate::v2::gemm::{GemmScratch, PackedI8, matmul};
    const M: usize = 256;
    const N: usize = 4096;
    const K: usize = 512;
    let rows: Vec<i8> = (0..N * K).map(|i| ((i * 7919) % 255) as i8).collect();
    let w = PackedI8::from_rows(&rows, N, K);
    let x: Vec<i8> = (0..M * K).map(|i| ((i * 104_729) % 251) as i8).collect();
    let start = std::time::Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let calls: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let (mut y, mut scratch, mut calls) = (vec![0i32; M * N], GemmScratch::default(), 0u64);
                    while calls == 0 || std::time::Instant::now() < deadline {
                        matmul(&x, M, &w, &mut y, &mut scratch);
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    calls as f64 * 2.0 * (M * N * K) as f64 / start.elapsed().as_secs_f64() / 1e9
}
