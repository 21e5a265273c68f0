//! Throughput measurement shared by the CLI's `pow bench` and the benches:
//! the miner's real pipeline for a while. Its ceiling, the matrix product
//! alone on the same cores, is [`crate::gemm::measure_peak_gflops`].

use std::time::Duration;

use crate::encoding::Hash32;
use crate::gemm::Precision;
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
