//! CPU matrix-product benches: our `matmul` in both precisions against the
//! `gemm` crate's f32 kernel (weights pre-converted to f32), single thread, on
//! the seed-64 model's shapes. Throughput is in FLOP (2·m·n·k per call), so
//! criterion's elements/s reads as FLOP/s.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gonka_kernels::gemm::{GemmScratch, PackedWeight, Precision, kernel_name, matmul};

/// Rows per call: a batch of 64 nonces × T = 4.
const M: usize = 256;

/// `(n, k)` of the seed-64 model's products: fused qkv, wo, fused gate/up,
/// w2, and a vocabulary-sized output.
const SHAPES: [(usize, usize); 5] = [(1536, 512), (512, 512), (16384, 512), (512, 8192), (8192, 512)];

/// Deterministic test data in `[-1, 1)`; the values do not affect speed.
fn data(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i.wrapping_mul(2_654_435_761).wrapping_add(salt) >> 7) % 2048) as f32 / 1024.0 - 1.0)
        .collect()
}

/// bf16 bits of `v` (truncation is fine for bench data).
fn bf16(v: f32) -> u16 {
    (v.to_bits() >> 16) as u16
}

fn gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm");
    group.sample_size(10);
    println!("kernels: f32 = {}, bf16 = {}", kernel_name(Precision::F32), kernel_name(Precision::Bf16));
    for (n, k) in SHAPES {
        let x = data(M * k, 1);
        let rows: Vec<u16> = data(n * k, 2).into_iter().map(bf16).collect();
        let w = PackedWeight::from_rows(&rows, n, k);
        let mut y = vec![0f32; M * n];
        let mut scratch = GemmScratch::default();
        group.throughput(Throughput::Elements((2 * M * n * k) as u64));
        let shape = format!("m={M} n={n} k={k}");
        for (name, precision) in [("f32", Precision::F32), ("bf16", Precision::Bf16)] {
            group.bench_function(format!("{name} {shape}"), |b| {
                b.iter(|| matmul(&x, M, &w, &mut y, false, precision, &mut scratch));
            });
        }
        // The reference: `gemm` f32 on the same weights widened to f32, in
        // the `[n, k]` layout read as the k × n right-hand side (column
        // stride k, row stride 1).
        let w_f32: Vec<f32> = rows.iter().map(|&h| f32::from_bits(u32::from(h) << 16)).collect();
        group.bench_function(format!("gemm-crate-f32 {shape}"), |b| {
            b.iter(|| {
                // SAFETY: `y` is M·n, `x` M·k and `w_f32` n·k values, matching
                // the dimensions and strides passed; `read_dst` is false, so
                // `y`'s old contents are not read.
                unsafe {
                    gemm::gemm(
                        M,
                        n,
                        k,
                        y.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        x.as_ptr(),
                        1,
                        k as isize,
                        w_f32.as_ptr(),
                        k as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, gemm);
criterion_main!(benches);
