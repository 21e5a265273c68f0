//! The batched integer forward pass of spec v2 §4 over many nonces at once:
//! one int8 matrix product per fused weight per layer over all `batch × T`
//! rows; from the last layer's attention output on, position `T−1` only.
//!
//! ```text
//!  r [B·T,d] i32 ─rms8─► a ─·wqkvᵀ─► q k v (i8) ─rope─► causal table-softmax ─► o (i8)
//!     ▲                                                                         │
//!     └────────── r += rshift(o·woᵀ, s_o) ◄────────────────────────────────────┘
//!     r ─rms8─► b ─·w13ᵀ─► gate, up (i8) ─SILU[gate]·up─► h (i8) ─► r += rshift(h·w2ᵀ, s_d)
//!  y [B,V] i32 = rms8(r[T−1]) · w_outᵀ
//! ```

use super::arith::{Tables, div_round, rshift_round};
use super::gemm::{GemmScratch, Kernel, matmul_with};
use super::lanes::{requant_rows, residual_add, rms_norm_rows, rope_rows, swiglu_rows};
use super::model::Model;
use crate::config::ModelConfig;

/// Buffers of one worker, reused across batches.
#[derive(Debug, Default)]
pub struct Scratch {
    r: Vec<i32>,
    a: Vec<i8>,
    acc: Vec<i32>,
    qkv: Vec<i8>,
    qk_rot: Vec<i32>,
    o: Vec<i8>,
    h: Vec<i8>,
    last_r: Vec<i32>,
    last_o: Vec<i8>,
    gemm: GemmScratch,
}

/// The first `n` values of `v`, growing it if needed. It never shrinks: the
/// buffers alternate between sizes every layer, and `Vec::resize` would
/// zero-fill the regrown part each time (megabytes per layer) although every
/// step overwrites its output.
fn resize<T: Copy + Default>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() < n {
        v.resize(n, T::default());
    }
    &mut v[..n]
}

/// Runs `batch` nonces whose inputs are `inputs` (`[batch·T, d]` int8, from
/// [`super::fill_input`]) and writes their outputs `y` (`[batch, V]`) to `out`.
pub fn forward_batch(model: &Model, inputs: &[i8], batch: usize, s: &mut Scratch, out: &mut [i32]) {
    let done = forward_batch_until(Kernel::best(), model, inputs, batch, s, out, &|| false);
    debug_assert!(done, "a forward pass that is never cancelled completes");
}

/// [`forward_batch`] with a chosen matrix-product kernel, asking `cancelled`
/// before each layer and returning `false` (with `out` unspecified) once it
/// says yes.
pub fn forward_batch_until(
    kernel: Kernel,
    model: &Model,
    inputs: &[i8],
    batch: usize,
    s: &mut Scratch,
    out: &mut [i32],
    cancelled: &dyn Fn() -> bool,
) -> bool {
    let _span = tracy_client::span!("v2_forward_batch");
    let c: &ModelConfig = &model.config;
    let sh = model.shifts;
    let (d, t, f) = (c.dim, c.seq, c.ffn);
    let rows = batch * t;
    assert_eq!(inputs.len(), rows * d, "inputs must be [batch·T, d]");
    assert_eq!(out.len(), batch * c.vocab, "out must be [batch, V]");
    // Every buffer may be longer than this batch needs (`resize` never
    // shrinks), so each step below is handed exactly its rows.
    for (r, &x) in resize(&mut s.r, rows * d).iter_mut().zip(inputs) {
        *r = i32::from(x) << sh.s_r;
    }
    let tab = &model.tables;
    for (l, w) in model.layers.iter().enumerate() {
        if cancelled() {
            return false;
        }
        let last = l + 1 == c.layers;
        rms_norm_rows(&s.r[..rows * d], d, resize(&mut s.a, rows * d));
        matmul_with(kernel, &s.a, rows, &w.wqkv, resize(&mut s.acc, rows * 3 * d), &mut s.gemm);
        requant_rows(&s.acc[..rows * 3 * d], sh.s_qkv, resize(&mut s.qkv, rows * 3 * d));
        let (qkv, dims) = (&s.qkv[..rows * 3 * d], (d, t, c.head_dim()));
        rope_rows(qkv, dims, &tab.rope_cos, &tab.rope_sin, resize(&mut s.qk_rot, rows * 2 * d));
        attention(&s.qk_rot, qkv, batch, c, tab, sh.s_sc, resize(&mut s.o, rows * d));
        // From the last layer's attention output on, only position T−1 matters.
        let (r, o, m) = if last {
            gather_last(&s.r, batch, t, d, resize(&mut s.last_r, batch * d));
            gather_last(&s.o, batch, t, d, resize(&mut s.last_o, batch * d));
            (&mut s.last_r[..batch * d], &s.last_o[..batch * d], batch)
        } else {
            (&mut s.r[..rows * d], &s.o[..rows * d], rows)
        };
        matmul_with(kernel, o, m, &w.wo, resize(&mut s.acc, m * d), &mut s.gemm);
        residual_add(r, &s.acc[..m * d], sh.s_o);
        rms_norm_rows(r, d, resize(&mut s.a, m * d));
        matmul_with(kernel, &s.a, m, &w.w13, resize(&mut s.acc, m * 2 * f), &mut s.gemm);
        swiglu_rows(&s.acc[..m * 2 * f], f, &tab.silu, (sh.s_qkv, sh.s_h), resize(&mut s.h, m * f));
        matmul_with(kernel, &s.h, m, &w.w2, resize(&mut s.acc, m * d), &mut s.gemm);
        residual_add(r, &s.acc[..m * d], sh.s_d);
    }
    rms_norm_rows(&s.last_r[..batch * d], d, resize(&mut s.a, batch * d));
    matmul_with(kernel, &s.a, batch, &model.w_out, out, &mut s.gemm);
    true
}

/// Causal attention per nonce and head with the exp table: position `t`
/// weighs position `s ≤ t` by `EXP[min(255, rshift(max − score_s, s_sc))]`,
/// and the output is the rounded weighted mean of the int8 values.
fn attention(qk: &[i32], qkv: &[i8], batch: usize, c: &ModelConfig, tab: &Tables, s_sc: u32, out: &mut [i8]) {
    let (d, t, e) = (c.dim, c.seq, c.head_dim());
    let mut scores = vec![0i64; t];
    let mut weights = vec![0i64; t];
    for b in 0..batch {
        let rot = &qk[b * t * 2 * d..(b + 1) * t * 2 * d];
        let vals = &qkv[b * t * 3 * d..(b + 1) * t * 3 * d];
        let o_block = &mut out[b * t * d..(b + 1) * t * d];
        for off in (0..d).step_by(e) {
            for qt in 0..t {
                let q = &rot[qt * 2 * d + off..qt * 2 * d + off + e];
                for (s, sc) in scores[..=qt].iter_mut().enumerate() {
                    let k = &rot[s * 2 * d + d + off..s * 2 * d + d + off + e];
                    *sc = q.iter().zip(k).map(|(&x, &y)| i64::from(x) * i64::from(y)).sum();
                }
                let max = scores[..=qt].iter().copied().max().unwrap_or(0);
                for (w, &sc) in weights[..=qt].iter_mut().zip(&scores[..=qt]) {
                    *w = i64::from(tab.exp[rshift_round(max - sc, s_sc).min(255) as usize]);
                }
                // EXP[0] = 65 536 at the maximum, so the total is positive.
                let total: i64 = weights[..=qt].iter().sum();
                for i in 0..e {
                    let num: i64 =
                        (0..=qt).map(|s| weights[s] * i64::from(vals[s * 3 * d + 2 * d + off + i])).sum();
                    o_block[qt * d + off + i] = div_round(num, total) as i8;
                }
            }
        }
    }
}

/// Copies row `T−1` of each nonce's `[T, d]` block.
fn gather_last<T: Copy>(x: &[T], batch: usize, t: usize, d: usize, out: &mut [T]) {
    for b in 0..batch {
        let src = (b * t + t - 1) * d;
        out[b * d..(b + 1) * d].copy_from_slice(&x[src..src + d]);
    }
}
