//! The portable kernel: plain loops the compiler vectorises for any target.

use super::{GemmScratch, PackedWeight, Precision};
use crate::encoding::{bf16_to_f32, round_bf16};

pub(super) fn matmul(
    x: &[f32],
    m: usize,
    w: &PackedWeight,
    y: &mut [f32],
    accumulate: bool,
    precision: Precision,
    scratch: &mut GemmScratch,
) {
    let (n, k) = (w.n, w.k);
    let a = &mut scratch.packed_a;
    a.clear();
    match precision {
        Precision::F32 => a.extend_from_slice(&x[..m * k]),
        Precision::Bf16 => a.extend(x[..m * k].iter().map(|&v| round_bf16(v))),
    }
    let mut wrow = vec![0f32; k];
    for j in 0..n {
        for (dst, &h) in wrow.iter_mut().zip(&w.data[j * k..(j + 1) * k]) {
            *dst = bf16_to_f32(h);
        }
        for i in 0..m {
            let s = dot(&a[i * k..(i + 1) * k], &wrow);
            let out = &mut y[i * n + j];
            *out = if accumulate { *out + s } else { s };
        }
    }
}

/// Eight partial sums, so the compiler can keep a vector accumulator.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
}
