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

use super::arith::{
    ROPE_BITS, Tables, clamp8, div_round, requant_rows, residual_add, rms_norm_rows, rshift_round,
};
use super::gemm::{GemmScratch, Kernel, matmul_with};
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

fn resize<T: Copy + Default>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    v.resize(n, T::default());
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
    for (r, &x) in resize(&mut s.r, rows * d).iter_mut().zip(inputs) {
        *r = i32::from(x) << sh.s_r;
    }
    for (l, w) in model.layers.iter().enumerate() {
        if cancelled() {
            return false;
        }
        let last = l + 1 == c.layers;
        rms_norm_rows(&s.r, d, resize(&mut s.a, rows * d));
        matmul_with(kernel, &s.a, rows, &w.wqkv, resize(&mut s.acc, rows * 3 * d), &mut s.gemm);
        requant_rows(&s.acc, sh.s_qkv, resize(&mut s.qkv, rows * 3 * d));
        rope_rows(&s.qkv, c, &model.tables, resize(&mut s.qk_rot, rows * 2 * d));
        attention(&s.qk_rot, &s.qkv, batch, c, &model.tables, sh.s_sc, resize(&mut s.o, rows * d));
        // From the last layer's attention output on, only position T−1 matters.
        let (r, o, m) = if last {
            gather_last(&s.r, batch, t, d, resize(&mut s.last_r, batch * d));
            gather_last(&s.o, batch, t, d, resize(&mut s.last_o, batch * d));
            (&mut s.last_r, &s.last_o, batch)
        } else {
            (&mut s.r, &s.o, rows)
        };
        matmul_with(kernel, o, m, &w.wo, resize(&mut s.acc, m * d), &mut s.gemm);
        residual_add(r, &s.acc, sh.s_o);
        rms_norm_rows(r, d, resize(&mut s.a, m * d));
        matmul_with(kernel, &s.a, m, &w.w13, resize(&mut s.acc, m * 2 * f), &mut s.gemm);
        swiglu_rows(&s.acc, f, &model.tables.silu, (sh.s_qkv, sh.s_h), resize(&mut s.h, m * f));
        matmul_with(kernel, &s.h, m, &w.w2, resize(&mut s.acc, m * d), &mut s.gemm);
        residual_add(r, &s.acc, sh.s_d);
    }
    rms_norm_rows(&s.last_r, d, resize(&mut s.a, batch * d));
    matmul_with(kernel, &s.a, batch, &model.w_out, out, &mut s.gemm);
    true
}

/// Rotates the `(2i, 2i+1)` pairs of every head of `q` and `k` (the first
/// `2d` values of each `[q | k | v]` row) into `out` (`[rows, 2d]`, int32,
/// not clamped: a rotated pair may reach 127·√2).
fn rope_rows(qkv: &[i8], c: &ModelConfig, tab: &Tables, out: &mut [i32]) {
    let (d, t, e, half) = (c.dim, c.seq, c.head_dim(), tab.rope_half);
    for (r, (row, o)) in qkv.chunks_exact(3 * d).zip(out.chunks_exact_mut(2 * d)).enumerate() {
        let p = r % t;
        let (cos, sin) = (&tab.rope_cos[p * half..(p + 1) * half], &tab.rope_sin[p * half..(p + 1) * half]);
        for (src, dst) in row[..2 * d].chunks_exact(e).zip(o.chunks_exact_mut(e)) {
            for i in 0..half {
                let (u, w) = (i64::from(src[2 * i]), i64::from(src[2 * i + 1]));
                let (cs, sn) = (i64::from(cos[i]), i64::from(sin[i]));
                dst[2 * i] = rshift_round(u * cs - w * sn, ROPE_BITS) as i32;
                dst[2 * i + 1] = rshift_round(u * sn + w * cs, ROPE_BITS) as i32;
            }
        }
    }
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

/// `h = clamp8(rshift(SILU[g] · u, s_h))` with `g`, `u` the requantized gate
/// and up values of rows laid out `[gate (f) | up (f)]`.
fn swiglu_rows(acc: &[i32], f: usize, silu: &[i8], (s_gu, s_h): (u32, u32), h: &mut [i8]) {
    for (row, out) in acc.chunks_exact(2 * f).zip(h.chunks_exact_mut(f)) {
        let (gate, up) = row.split_at(f);
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            let g = clamp8(rshift_round(i64::from(g), s_gu));
            let u = clamp8(rshift_round(i64::from(u), s_gu));
            let sg = silu[(i32::from(g) + 127) as usize];
            *o = clamp8(rshift_round(i64::from(sg) * i64::from(u), s_h));
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
