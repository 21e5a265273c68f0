//! Measurements behind the PoW v2 figures of `docs/pow.md`.
//!
//! ```sh
//! cargo run --release -p gonka-benches --example pow_v2_study -- rate seed-64 20 16
//! cargo run --release -p gonka-benches --example pow_v2_study -- proof-rate small 200000
//! cargo run --release -p gonka-benches --example pow_v2_study -- v1-prefilter small 4096
//! cargo run --release -p gonka-benches --example pow_v2_study -- kernels small 512
//! ```
//!
//! - `rate CONFIG SECONDS BATCH`: nonces/s of v1 (f32 and bf16 activations)
//!   and v2 (VNNI and portable kernels) on all cores, each worker running whole
//!   batches (inputs, forward, distance or digest), median of three windows.
//! - `proof-rate CONFIG N`: v2 proofs among nonces `0..N` against `N/900`.
//! - `v1-prefilter CONFIG N`: v1's best stop-after-k-layers pre-filter: the
//!   correlation of the full `c = cos(z,t)·√V` with the prefix's, and the
//!   gain in proofs per unit of work at 1/900 of the bivariate-normal model.
//! - `kernels CONFIG N`: v2 outputs of the portable and VNNI kernels compared
//!   bit for bit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use gonka_kernels::config::ModelConfig;
use gonka_kernels::encoding::Hash32;
use gonka_kernels::forward::{ForwardScratch, Rope};
use gonka_kernels::model::{LayerWeights, Model};
use gonka_kernels::v2::forward::forward_batch_until;
use gonka_kernels::v2::gemm::Kernel;
use gonka_kernels::{Precision, pow, v2};

const SEED: Hash32 = {
    let mut s = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        s[i] = i as u8;
        i += 1;
    }
    s
};

fn node() -> Hash32 {
    let mut pk = [0u8; 48];
    for (i, b) in pk.iter_mut().enumerate() {
        *b = 0xa0 + i as u8;
    }
    pow::node_seed(&pk)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let cfg: ModelConfig = arg(1, "small").parse().expect("config name");
    match arg(0, "rate").as_str() {
        "rate" => rate(&cfg, arg(2, "10").parse().expect("seconds"), arg(3, "16").parse().expect("batch")),
        "proof-rate" => proof_rate(&cfg, arg(2, "100000").parse().expect("nonces")),
        "v1-prefilter" => v1_prefilter(&cfg, arg(2, "4096").parse().expect("nonces")),
        "kernels" => kernels(&cfg, arg(2, "512").parse().expect("nonces")),
        other => panic!("unknown command {other}"),
    }
}

/// Runs `work(first_nonce, batch)` on every core for `seconds`, three times;
/// returns the median nonces/s.
fn measure(threads: usize, batch: usize, seconds: f64, work: &(dyn Fn(u64, usize) + Sync)) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..3 {
        let next = AtomicU64::new(0);
        let done = AtomicU64::new(0);
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    while start.elapsed().as_secs_f64() < seconds {
                        let n0 = next.fetch_add(batch as u64, Ordering::Relaxed);
                        work(n0, batch);
                        done.fetch_add(batch as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        rates.push(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[1]
}

fn rate(c: &ModelConfig, seconds: f64, batch: usize) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let node = node();
    let t0 = Instant::now();
    let m2 = v2::Model::generate(c, &SEED).expect("config runs v2");
    println!("v2 init {:.1} s, {} MB packed", t0.elapsed().as_secs_f64(), m2.bytes() >> 20);
    for kernel in [Kernel::Vnni, Kernel::Portable].into_iter().filter(|k| k.is_available()) {
        // The portable kernel is slow on seed-64: a short window says enough.
        let secs = if kernel == Kernel::Portable { seconds / 4.0 } else { seconds };
        let work = |n0: u64, b: usize| {
            let per = c.seq * c.dim;
            let mut x = vec![0i8; b * per];
            for i in 0..b {
                v2::fill_input(&SEED, &node, n0 + i as u64, &mut x[i * per..(i + 1) * per]);
            }
            let mut y = vec![0i32; b * c.vocab];
            forward_batch_until(kernel, &m2, &x, b, &mut v2::Scratch::default(), &mut y, &|| false);
            for i in 0..b {
                std::hint::black_box(v2::digest(
                    &SEED,
                    &node,
                    n0 + i as u64,
                    &y[i * c.vocab..(i + 1) * c.vocab],
                ));
            }
        };
        let r = measure(threads, batch, secs, &work);
        println!("v2 {} {c} batch={batch} threads={threads}: {r:.2} nonces/s", kernel.name());
    }
    drop(m2);
    let t0 = Instant::now();
    let m1 = Model::generate(c, &SEED);
    println!("v1 init {:.1} s, {} MB packed", t0.elapsed().as_secs_f64(), m1.bytes() >> 20);
    let rope = Rope::new(c.seq, c.head_dim());
    let target = pow::target(&SEED, c.vocab);
    for precision in [Precision::F32, Precision::Bf16] {
        let work = |n0: u64, b: usize| {
            let per = c.seq * c.dim;
            let (mut x, mut words, mut perm) = (vec![0f32; b * per], Vec::new(), vec![0u32; c.vocab]);
            for i in 0..b {
                pow::fill_input(&SEED, &node, n0 + i as u64, &mut x[i * per..(i + 1) * per], &mut words);
            }
            let mut y = vec![0f32; b * c.vocab];
            gonka_kernels::forward::forward_batch(
                &m1,
                &rope,
                &x,
                b,
                precision,
                &mut ForwardScratch::default(),
                &mut y,
            );
            for i in 0..b {
                pow::fill_permutation(&SEED, &node, n0 + i as u64, &mut perm, &mut words);
                std::hint::black_box(pow::distance(&y[i * c.vocab..(i + 1) * c.vocab], &perm, &target));
            }
        };
        let r = measure(threads, batch, seconds, &work);
        println!("v1 {precision:?} {c} batch={batch} threads={threads}: {r:.2} nonces/s");
    }
}

/// v2 outputs of nonces `first..first + n` with a kernel.
fn v2_outputs(m: &v2::Model, kernel: Kernel, first: u64, n: usize) -> Vec<i32> {
    let c = &m.config;
    let per = c.seq * c.dim;
    let node = node();
    let mut x = vec![0i8; n * per];
    for i in 0..n {
        v2::fill_input(&SEED, &node, first + i as u64, &mut x[i * per..(i + 1) * per]);
    }
    let mut y = vec![0i32; n * c.vocab];
    forward_batch_until(kernel, m, &x, n, &mut v2::Scratch::default(), &mut y, &|| false);
    y
}

fn proof_rate(c: &ModelConfig, n: u64) {
    let m = v2::Model::generate(c, &SEED).expect("config runs v2");
    let node = node();
    let batch = 64u64;
    let proofs = AtomicU64::new(0);
    let next = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..std::thread::available_parallelism().map_or(1, |n| n.get()) {
            s.spawn(|| {
                loop {
                    let n0 = next.fetch_add(batch, Ordering::Relaxed);
                    if n0 >= n {
                        break;
                    }
                    let b = batch.min(n - n0) as usize;
                    let y = v2_outputs(&m, Kernel::best(), n0, b);
                    let found = (0..b)
                        .filter(|&i| {
                            let d =
                                v2::digest(&SEED, &node, n0 + i as u64, &y[i * c.vocab..(i + 1) * c.vocab]);
                            v2::is_proof(&d)
                        })
                        .count();
                    proofs.fetch_add(found as u64, Ordering::Relaxed);
                }
            });
        }
    });
    let k = proofs.load(Ordering::Relaxed);
    let expect = n as f64 / 900.0;
    println!(
        "v2 {c}: {k} proofs in {n} nonces = 1 in {:.0} (expected {expect:.1}, 1 in 900; Poisson z = {:+.2}) in {:.0} s",
        n as f64 / k.max(1) as f64,
        (k as f64 - expect) / expect.sqrt(),
        start.elapsed().as_secs_f64()
    );
}

fn kernels(c: &ModelConfig, n: usize) {
    let m = v2::Model::generate(c, &SEED).expect("config runs v2");
    if !Kernel::Vnni.is_available() {
        println!("VNNI not available");
        return;
    }
    let mut same = 0;
    for first in (0..n).step_by(32) {
        let b = 32.min(n - first);
        let (a, v) = (
            v2_outputs(&m, Kernel::Portable, first as u64, b),
            v2_outputs(&m, Kernel::Vnni, first as u64, b),
        );
        same += (0..b)
            .filter(|&i| a[i * c.vocab..(i + 1) * c.vocab] == v[i * c.vocab..(i + 1) * c.vocab])
            .count();
    }
    println!("v2 {c}: portable vs VNNI bit-identical on {same}/{n} nonces");
}

/// `c = cos(z, t)·√V` of v1 for every nonce, with the model's layers.
fn v1_c(m: &Model, first: u64, n: usize) -> Vec<f64> {
    let c = &m.config;
    let node = node();
    let rope = Rope::new(c.seq, c.head_dim());
    let target = pow::target(&SEED, c.vocab);
    let per = c.seq * c.dim;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = n.div_ceil(threads);
    let mut out = vec![0f64; n];
    std::thread::scope(|s| {
        for (t, o) in out.chunks_mut(chunk).enumerate() {
            let (rope, target) = (&rope, &target);
            s.spawn(move || {
                let mut words = Vec::new();
                let mut perm = vec![0u32; c.vocab];
                let mut scratch = ForwardScratch::default();
                for (j, part) in o.chunks_mut(32).enumerate() {
                    let n0 = first + (t * chunk + j * 32) as u64;
                    let b = part.len();
                    let mut x = vec![0f32; b * per];
                    for i in 0..b {
                        pow::fill_input(
                            &SEED,
                            &node,
                            n0 + i as u64,
                            &mut x[i * per..(i + 1) * per],
                            &mut words,
                        );
                    }
                    let mut y = vec![0f32; b * c.vocab];
                    gonka_kernels::forward::forward_batch(
                        m,
                        rope,
                        &x,
                        b,
                        Precision::F32,
                        &mut scratch,
                        &mut y,
                    );
                    for (i, v) in part.iter_mut().enumerate() {
                        pow::fill_permutation(&SEED, &node, n0 + i as u64, &mut perm, &mut words);
                        let d = pow::distance(&y[i * c.vocab..(i + 1) * c.vocab], &perm, target);
                        *v = (1.0 - d * d / 2.0) * (c.vocab as f64).sqrt();
                    }
                }
            });
        }
    });
    out
}

/// The first `k` layers of a model (shares nothing: packed weights are cloned).
fn prefix(m: &Model, k: usize) -> Model {
    let layers = m.layers[..k]
        .iter()
        .map(|l| LayerWeights {
            wqkv: l.wqkv.clone(),
            wo: l.wo.clone(),
            w13: l.w13.clone(),
            w2: l.w2.clone(),
        })
        .collect();
    Model { config: ModelConfig { layers: k, ..m.config }, layers, w_out: m.w_out.clone() }
}

fn v1_prefilter(c: &ModelConfig, n: usize) {
    let m = Model::generate(c, &SEED);
    let full = v1_c(&m, 0, n);
    let ks: Vec<usize> = if c.layers >= 16 {
        vec![1, c.layers / 8, c.layers / 4, c.layers / 2, 3 * c.layers / 4, c.layers - 1]
    } else {
        (1..c.layers).collect()
    };
    // A prefix of 0 layers is not a model the forward pass runs; the input
    // alone (rms(x)·w_outᵀ) is the 1-layer prefix's first term, so start at 1.
    println!("v1 {c}, {n} nonces: mean c {:+.3}, std {:.3}", mean(&full), std(&full));
    for k in ks {
        let approx = v1_c(&prefix(&m, k), 0, n);
        let rho = pearson(&full, &approx);
        let cost = prefix_cost(c, k);
        let (gain, q) = best_gain(rho, cost);
        println!(
            "v1 {c}: stop after {k} layers (cost {cost:.3}): rho = {rho:+.3}, best gain {gain:.2}x at top {:.1}%",
            100.0 * q
        );
    }
}

/// Cost of a k-layer prefix (every position, plus the output head) relative
/// to the full pass, in multiply-adds.
fn prefix_cost(c: &ModelConfig, k: usize) -> f64 {
    let (d, f, v, t) = (c.dim as f64, c.ffn as f64, c.vocab as f64, c.seq as f64);
    let layer = t * (4.0 * d * d + 3.0 * d * f);
    (k as f64 * layer + d * v) / (c.flops_per_nonce() / 2.0)
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn std(x: &[f64]) -> f64 {
    let m = mean(x);
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / x.len() as f64).sqrt()
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (mean(a), mean(b));
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    cov / (std(a) * std(b) * a.len() as f64)
}

/// Upper tail `Q(x) = P(N(0,1) > x)`.
fn q_tail(x: f64) -> f64 {
    0.5 * pow::erfc(x / std::f64::consts::SQRT_2)
}

/// Inverse of `q_tail` by bisection.
fn q_inv(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if q_tail(mid) > p { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

/// Best proofs-per-work ratio against honest mining of a pre-filter whose
/// score has correlation `rho` with the true `c` and costs `cost` (reused when
/// the nonce is finished): run the full pass on the top fraction `q`.
fn best_gain(rho: f64, cost: f64) -> (f64, f64) {
    let c_star = q_inv(1.0 / 900.0);
    let s = (1.0 - rho * rho).max(1e-12).sqrt();
    let mut best = (0.0, 1.0);
    for i in 0..=300 {
        let q = 10f64.powf(-3.0 + 3.0 * i as f64 / 300.0);
        let xq = q_inv(q);
        // P(c > c*, ĉ > x_q) = ∫_{x_q}^∞ φ(x) Q((c* − ρx)/s) dx.
        let (mut p, steps) = (0.0, 4000);
        let h = (12.0 - xq).max(0.0) / steps as f64;
        for j in 0..steps {
            let x = xq + (j as f64 + 0.5) * h;
            let phi = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            p += phi * q_tail((c_star - rho * x) / s) * h;
        }
        let gain = p * 900.0 / (cost + q * (1.0 - cost));
        if gain > best.0 {
            best = (gain, q);
        }
    }
    best
}
