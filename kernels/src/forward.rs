//! The batched forward pass (spec §4 step 2–3) over many nonces at once: one
//! matrix product per fused weight per layer over all `batch × T` rows; the
//! last layer's attention output and feed-forward for position `T−1` only.
//!
//! ```text
//!  x [B·T, d] ──rms──► a ──·wqkvᵀ──► q k v ──rope──► causal attention ──► o [B·T, d]
//!     ▲                                                                   │
//!     └──────────────── x += o·woᵀ ◄──────────────────────────────────────┘
//!     x ──rms──► b ──·w13ᵀ──► [gate | up] ──silu(gate)·up──► h ──► x += h·w2ᵀ
//!  (last layer: after attention keep rows t = T−1 only, so m = B from there)
//!  y [B, V] = rms(x[T−1]) · w_outᵀ
//! ```

use crate::config::ModelConfig;
use crate::gemm::{GemmScratch, Precision, matmul};
use crate::model::Model;
use crate::simd::{exp_f32, swiglu_rows};

/// `ε` of RMSNorm (an f32 constant, spec §4).
const RMS_EPS: f32 = 1e-5;

/// Cosines and sines of the rotary angles `p · 10000^(−2i/e)`, computed in f64
/// and rounded once to f32; `[T][e/2]`.
#[derive(Debug, Clone)]
pub struct Rope {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    /// Tables for `seq` positions and head size `head_dim`.
    pub fn new(seq: usize, head_dim: usize) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(seq * half);
        let mut sin = Vec::with_capacity(seq * half);
        for p in 0..seq {
            for i in 0..half {
                let angle = p as f64 * 10000f64.powf(-2.0 * i as f64 / head_dim as f64);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self { half, cos, sin }
    }
}

/// Buffers of one worker, reused across batches.
#[derive(Debug, Default)]
pub struct ForwardScratch {
    x: Vec<f32>,
    a: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    ffn: Vec<f32>,
    h: Vec<f32>,
    last_x: Vec<f32>,
    last_attn: Vec<f32>,
    scores: Vec<f32>,
    gemm: GemmScratch,
}

fn resize(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

/// Runs `batch` nonces whose inputs are `inputs` (`[batch·T, d]`) and writes
/// the outputs `y` (`[batch, V]`, before the permutation) to `out`.
pub fn forward_batch(
    model: &Model,
    rope: &Rope,
    inputs: &[f32],
    batch: usize,
    precision: Precision,
    s: &mut ForwardScratch,
    out: &mut [f32],
) {
    let done = forward_batch_until(model, rope, inputs, batch, precision, s, out, &|| false);
    debug_assert!(done, "a forward pass that is never cancelled completes");
}

/// [`forward_batch`] that asks `cancelled` before each layer and gives up
/// (returning `false`, `out` unspecified) once it says yes: a Sprint's deadline
/// cuts a long batch short instead of waiting seconds for it.
#[allow(clippy::too_many_arguments)] // The batch, its buffers and the model: splitting them hides nothing.
pub fn forward_batch_until(
    model: &Model,
    rope: &Rope,
    inputs: &[f32],
    batch: usize,
    precision: Precision,
    s: &mut ForwardScratch,
    out: &mut [f32],
    cancelled: &dyn Fn() -> bool,
) -> bool {
    let _span = tracy_client::span!("forward_batch");
    let c: &ModelConfig = &model.config;
    let (d, t, f) = (c.dim, c.seq, c.ffn);
    let rows = batch * t;
    assert_eq!(inputs.len(), rows * d, "inputs must be [batch·T, d]");
    assert_eq!(out.len(), batch * c.vocab, "out must be [batch, V]");
    resize(&mut s.x, rows * d).copy_from_slice(inputs);
    for (l, w) in model.layers.iter().enumerate() {
        if cancelled() {
            return false;
        }
        let last = l + 1 == c.layers;
        // Attention block over all rows.
        rms_norm_rows(&s.x, d, resize(&mut s.a, rows * d));
        matmul(&s.a, rows, &w.wqkv, resize(&mut s.qkv, rows * 3 * d), false, precision, &mut s.gemm);
        apply_rope(&mut s.qkv, c, rope);
        resize(&mut s.attn, rows * d);
        resize(&mut s.scores, t);
        causal_attention(&s.qkv, batch, c, &mut s.attn, &mut s.scores);
        // From the last layer's attention output on, only position T−1 matters.
        let (x, attn, m) = if last {
            gather_last(&s.x, batch, t, d, resize(&mut s.last_x, batch * d));
            gather_last(&s.attn, batch, t, d, resize(&mut s.last_attn, batch * d));
            (&mut s.last_x, &s.last_attn, batch)
        } else {
            (&mut s.x, &s.attn, rows)
        };
        matmul(attn, m, &w.wo, x, true, precision, &mut s.gemm);
        // Feed-forward block.
        rms_norm_rows(x, d, resize(&mut s.a, m * d));
        matmul(&s.a, m, &w.w13, resize(&mut s.ffn, m * 2 * f), false, precision, &mut s.gemm);
        swiglu_rows(&s.ffn, f, resize(&mut s.h, m * f));
        matmul(&s.h, m, &w.w2, x, true, precision, &mut s.gemm);
    }
    rms_norm_rows(&s.last_x, d, resize(&mut s.a, batch * d));
    matmul(&s.a, batch, &model.w_out, out, false, precision, &mut s.gemm);
    true
}

/// `out = v / sqrt(mean(v²) + ε)` for each row of width `d`.
fn rms_norm_rows(x: &[f32], d: usize, out: &mut [f32]) {
    crate::simd::rms_norm_rows(x, d, RMS_EPS, out);
}

/// Rotates the `(2i, 2i+1)` feature pairs of every head of `q` and `k`.
fn apply_rope(qkv: &mut [f32], c: &ModelConfig, rope: &Rope) {
    let (d, t, e) = (c.dim, c.seq, c.head_dim());
    let half = rope.half;
    for (r, row) in qkv.chunks_exact_mut(3 * d).enumerate() {
        let p = r % t;
        let (cos, sin) = (&rope.cos[p * half..(p + 1) * half], &rope.sin[p * half..(p + 1) * half]);
        // q is features 0..d, k is d..2d; both rotate the same way.
        for head in row[..2 * d].chunks_exact_mut(e) {
            for i in 0..half {
                let (u, w) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = u * cos[i] - w * sin[i];
                head[2 * i + 1] = u * sin[i] + w * cos[i];
            }
        }
    }
}

/// Causal softmax attention per nonce and head; writes heads concatenated.
fn causal_attention(qkv: &[f32], batch: usize, c: &ModelConfig, out: &mut [f32], scores: &mut [f32]) {
    let (d, t, e) = (c.dim, c.seq, c.head_dim());
    let inv_sqrt_e = 1.0 / (e as f32).sqrt();
    for b in 0..batch {
        let block = &qkv[b * t * 3 * d..(b + 1) * t * 3 * d];
        let o_block = &mut out[b * t * d..(b + 1) * t * d];
        for head in 0..c.heads {
            let off = head * e;
            for qt in 0..t {
                let q = &block[qt * 3 * d + off..qt * 3 * d + off + e];
                let mut max = f32::NEG_INFINITY;
                for s in 0..=qt {
                    let k = &block[s * 3 * d + d + off..s * 3 * d + d + off + e];
                    let dot: f32 = q.iter().zip(k).map(|(a, b)| a * b).sum();
                    scores[s] = dot * inv_sqrt_e;
                    max = max.max(scores[s]);
                }
                let mut total = 0.0f32;
                for sc in &mut scores[..=qt] {
                    *sc = exp_f32(*sc - max);
                    total += *sc;
                }
                let o = &mut o_block[qt * d + off..qt * d + off + e];
                o.fill(0.0);
                for (s, &p) in scores[..=qt].iter().enumerate() {
                    let v = &block[s * 3 * d + 2 * d + off..s * 3 * d + 2 * d + off + e];
                    let p = p / total;
                    for (o, &v) in o.iter_mut().zip(v) {
                        *o += p * v;
                    }
                }
            }
        }
    }
}

/// Copies row `T−1` of each nonce's `[T, d]` block.
fn gather_last(x: &[f32], batch: usize, t: usize, d: usize, out: &mut [f32]) {
    for b in 0..batch {
        let src = (b * t + t - 1) * d;
        out[b * d..(b + 1) * d].copy_from_slice(&x[src..src + d]);
    }
}
