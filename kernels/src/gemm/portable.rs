//! The portable kernel: plain loops over the packed layout that the compiler
//! vectorises for any target. It is the fallback on CPUs without AVX-512 and
//! the reference the fast kernels are tested against.

use super::{GemmScratch, LINE_U16, NR, PackedWeight, Precision};
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
    // Rows padded to an even length so the pair loop has no edge case; the
    // padded weight is zero.
    let kp2 = 2 * w.kpairs;
    let a = &mut scratch.packed_a;
    a.clear();
    a.resize(m * kp2, 0.0);
    for (dst, src) in a.chunks_exact_mut(kp2).zip(x.chunks_exact(k.max(1))).take(m) {
        for (d, &v) in dst.iter_mut().zip(&src[..k]) {
            *d = match precision {
                Precision::F32 => v,
                Precision::Bf16 => round_bf16(v),
            };
        }
    }
    for p in 0..w.panels {
        let panel = w.panel(p);
        let cols = NR.min(n - p * NR);
        for i in 0..m {
            let acc = panel_row(&a[i * kp2..(i + 1) * kp2], panel);
            let out = &mut y[i * n + p * NR..i * n + p * NR + cols];
            for (o, &s) in out.iter_mut().zip(&acc) {
                *o = if accumulate { *o + s } else { s };
            }
        }
    }
}

/// One row of activations times one panel: 32 sums, each over `k` in order.
fn panel_row(a: &[f32], panel: &[u16]) -> [f32; NR] {
    let mut acc = [0f32; NR];
    for (pair, lines) in a.chunks_exact(2).zip(panel.chunks_exact(2 * LINE_U16)) {
        for (c, s) in acc.iter_mut().enumerate() {
            let word = &lines[2 * c..2 * c + 2];
            *s += pair[0] * bf16_to_f32(word[0]);
            *s += pair[1] * bf16_to_f32(word[1]);
        }
    }
    acc
}
