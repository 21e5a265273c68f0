//! The fast kernels against the portable reference, over shapes that hit every
//! edge of the blocking (partial tiles, odd k, several k and row blocks).

use super::{GemmScratch, NR, PackedWeight, Precision, matmul, portable};
use crate::encoding::{bf16_bits, bf16_to_f32, round_bf16};

/// Seed of every random matrix here; printed so a failure can be replayed.
const SEED: u64 = 0x5eed_0064;

/// xorshift64*: enough randomness for test data, no dependency.
struct Rng(u64);

impl Rng {
    fn new(salt: u64) -> Self {
        Self((SEED ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[-1, 1)`.
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

struct Case {
    x: Vec<f32>,
    w: PackedWeight,
    /// `W` in f32, row-major `[n, k]`, for the error bound.
    w_f32: Vec<f32>,
    y0: Vec<f32>,
    m: usize,
    n: usize,
    k: usize,
}

fn case(m: usize, n: usize, k: usize) -> Case {
    let mut rng = Rng::new((m * 1_000_003 + n * 1009 + k) as u64);
    let x: Vec<f32> = (0..m * k).map(|_| rng.unit()).collect();
    let rows: Vec<u16> = (0..n * k).map(|_| bf16_bits(rng.unit())).collect();
    let w_f32 = rows.iter().map(|&h| bf16_to_f32(h)).collect();
    let y0 = (0..m * n).map(|_| rng.unit()).collect();
    Case { x, w: PackedWeight::from_rows(&rows, n, k), w_f32, y0, m, n, k }
}

/// Checks `got` against `want` elementwise, within `tol` of the sum of the
/// magnitudes that entered each output (`|y0| + Σ|x||w|`): the summation
/// orders differ, so this is the scale of their rounding differences.
fn assert_close(c: &Case, got: &[f32], want: &[f32], accumulate: bool, round: bool, what: &str) {
    let tol = 1e-5;
    for i in 0..c.m {
        for j in 0..c.n {
            let mut scale: f32 = if accumulate { c.y0[i * c.n + j].abs() } else { 0.0 };
            for t in 0..c.k {
                let a = c.x[i * c.k + t];
                let a = if round { round_bf16(a) } else { a };
                scale += (a * c.w_f32[j * c.k + t]).abs();
            }
            let (g, e) = (got[i * c.n + j], want[i * c.n + j]);
            assert!(
                (g - e).abs() <= tol * scale.max(f32::MIN_POSITIVE),
                "{what} m={} n={} k={} y[{i},{j}]: got {g}, reference {e} (scale {scale}, seed {SEED:#x})",
                c.m,
                c.n,
                c.k,
            );
        }
    }
}

/// The reference: the portable kernel, with the same starting `y`.
fn reference(c: &Case, accumulate: bool, precision: Precision) -> Vec<f32> {
    let mut y = c.y0.clone();
    portable::matmul(&c.x, c.m, &c.w, &mut y, accumulate, precision, &mut GemmScratch::default());
    y
}

const MS: [usize; 5] = [1, 3, 13, 64, 257];
const NS: [usize; 5] = [1, 17, 32, 33, 100];
const KS: [usize; 5] = [1, 2, 7, 64, 513];

/// Runs `run` on every shape of the grid, both `accumulate` values, against
/// the reference for `precision`.
fn check_grid(precision: Precision, what: &str, run: impl Fn(&Case, &mut [f32], bool, &mut GemmScratch)) {
    println!("gemm tests: seed {SEED:#x}");
    let mut scratch = GemmScratch::default();
    for m in MS {
        for n in NS {
            for k in KS {
                let c = case(m, n, k);
                for accumulate in [false, true] {
                    let want = reference(&c, accumulate, precision);
                    let mut got = c.y0.clone();
                    run(&c, &mut got, accumulate, &mut scratch);
                    assert_close(&c, &got, &want, accumulate, precision == Precision::Bf16, what);
                }
            }
        }
    }
}

#[test]
fn packed_rows_round_trip() {
    for (n, k) in [(1, 1), (17, 7), (33, 64), (100, 513)] {
        let mut rng = Rng::new(7);
        let rows: Vec<u16> = (0..n * k).map(|_| bf16_bits(rng.unit())).collect();
        let w = PackedWeight::from_rows(&rows, n, k);
        assert_eq!((w.n(), w.k()), (n, k));
        for j in 0..n {
            assert_eq!(w.row(j), rows[j * k..(j + 1) * k], "row {j} of n={n} k={k}");
        }
        // ⌈n/32⌉ panels of ⌈k/2⌉ pairs of 128 bytes.
        assert_eq!(w.bytes(), n.div_ceil(NR) * k.div_ceil(2) * 128);
    }
}

#[test]
fn portable_matches_naive_f32_sum() {
    let c = case(5, 37, 9);
    let got = reference(&c, false, Precision::F32);
    let mut want = vec![0f32; c.m * c.n];
    for i in 0..c.m {
        for j in 0..c.n {
            want[i * c.n + j] = (0..c.k)
                .map(|t| f64::from(c.x[i * c.k + t]) * f64::from(c.w_f32[j * c.k + t]))
                .sum::<f64>() as f32;
        }
    }
    assert_close(&c, &got, &want, false, false, "portable vs f64");
}

#[test]
fn matmul_matches_reference_f32() {
    check_grid(Precision::F32, "matmul F32", |c, y, acc, s| {
        matmul(&c.x, c.m, &c.w, y, acc, Precision::F32, s)
    });
}

#[test]
fn matmul_matches_reference_bf16() {
    check_grid(Precision::Bf16, "matmul Bf16", |c, y, acc, s| {
        matmul(&c.x, c.m, &c.w, y, acc, Precision::Bf16, s)
    });
}

#[test]
fn empty_k_gives_zero_or_keeps_y() {
    let w = PackedWeight::from_rows(&[], 3, 0);
    let mut y = vec![1.0f32; 6];
    let mut s = GemmScratch::default();
    matmul(&[], 2, &w, &mut y, true, Precision::F32, &mut s);
    assert_eq!(y, [1.0; 6], "accumulating an empty sum must keep y");
    matmul(&[], 2, &w, &mut y, false, Precision::F32, &mut s);
    assert_eq!(y, [0.0; 6], "an empty sum is zero");
}

#[test]
fn measure_peak_reports_a_rate() {
    let g = super::measure_peak_gflops(Precision::F32, 1, 0.0);
    assert!(g.is_finite() && g > 0.0, "peak measured as {g} GFLOP/s");
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{self, Kernel};
    use super::*;

    fn has(features: &[&str]) -> bool {
        features.iter().all(|f| match *f {
            "avx512f" => is_x86_feature_detected!("avx512f"),
            "avx512bw" => is_x86_feature_detected!("avx512bw"),
            "avx512bf16" => is_x86_feature_detected!("avx512bf16"),
            _ => false,
        })
    }

    /// Every AVX-512 kernel against the reference, whichever one `matmul`
    /// dispatches to on this CPU.
    fn check_kernel(kernel: Kernel, precision: Precision, features: &[&str]) {
        if !has(features) {
            println!("skipped: CPU lacks one of {features:?}");
            return;
        }
        check_grid(precision, &format!("{kernel:?}"), |c, y, acc, s| {
            // SAFETY: `has` detected the kernel's features just above.
            unsafe { x86::matmul(&c.x, c.m, &c.w, y, acc, kernel, s) }
        });
    }

    #[test]
    fn fma_kernel_matches_reference() {
        check_kernel(Kernel::Fma, Precision::F32, &["avx512f", "avx512bw"]);
    }

    #[test]
    fn fma_bf16_input_kernel_matches_reference() {
        check_kernel(Kernel::FmaBf16Input, Precision::Bf16, &["avx512f", "avx512bw"]);
    }

    #[test]
    fn dpbf16_kernel_matches_reference() {
        check_kernel(Kernel::Dpbf16, Precision::Bf16, &["avx512f", "avx512bw", "avx512bf16"]);
    }

    /// Regression: several k blocks and row blocks (k = 600 pairs, m = 1100
    /// rows) must sum across blocks rather than overwrite.
    #[test]
    fn kernels_sum_across_blocks() {
        if !has(&["avx512f", "avx512bw"]) {
            return;
        }
        let c = case(1100, 40, 1200);
        let mut kernels = vec![(Kernel::Fma, Precision::F32), (Kernel::FmaBf16Input, Precision::Bf16)];
        if has(&["avx512bf16"]) {
            kernels.push((Kernel::Dpbf16, Precision::Bf16));
        }
        for (kernel, precision) in kernels {
            let want = reference(&c, false, precision);
            let mut got = c.y0.clone();
            // SAFETY: AVX-512F/BW detected above, AVX512-BF16 before adding
            // `Dpbf16`.
            unsafe { x86::matmul(&c.x, c.m, &c.w, &mut got, false, kernel, &mut GemmScratch::default()) };
            assert_close(&c, &got, &want, false, precision == Precision::Bf16, &format!("{kernel:?}"));
        }
    }
}
