//! A Llama-architecture decoder (SmolLM2 and the seed-generated tiny model)
//! run over a batch of sequences in one step: every sequence brings the
//! tokens it adds (a whole prompt, one sampled token, or a prompt and output
//! to check), all of them are one set of rows for the matrix products, and
//! each sequence attends over its own [`KvCache`].
//!
//! ```text
//!  rows = ‖ seq tokens        x [R, d] = embed(tokens)
//!  per layer:  a = rms(x)·g₁ ──·Wqkvᵀ──► q k v ──rope(pos)──► k,v → cache
//!              o = softmax(q·Kᵀ/√e)·V per (row, head), causal over the cache
//!              x += o·Woᵀ;   b = rms(x)·g₂ ──·W13ᵀ──► silu(gate)·up ──·W2ᵀ──► x +=
//!  logits [rows asked, V] = rms(x)·g_out · Eᵀ   (E tied to the embeddings)
//! ```
//!
//! Every row is computed by the same operations whatever else is in the
//! batch (the products are batch-invariant, see [`super::qmatmul`], and
//! attention and norms work row by row), so a token's logits do not depend on
//! batch size or on whether they came from generation or from a one-pass
//! re-run of prompt and output; validation relies on that.
//!
//! RoPE rotates interleaved pairs `(2i, 2i+1)` of each head by
//! `pos · base^(−2i/e)`, the convention of GGUF llama files (their q and k
//! rows are stored permuted for it).

use rayon::prelude::*;
use thiserror::Error;

use super::qmatmul::{QMatrix, QMatrixError, int16_is_fast};
use crate::gemm::Precision;
use crate::simd::{exp_f32, rms_norm_rows, swiglu_rows};

/// Attention work (one row, one key/value head and its query heads) handed
/// to a worker at a time.
const ATTENTION_UNITS_PER_TASK: usize = 3;

/// Multiply-adds of attention (query · key and weights · values, over every
/// row, head and cached position) below which a step stays on one thread.
const ATTENTION_PARALLEL_MIN: usize = 1 << 18;

/// Shape and constants of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Decoder blocks.
    pub layers: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Hidden width of the feed-forward block.
    pub ffn: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention: `heads` is a multiple).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab: usize,
    /// RoPE base.
    pub rope_base: f64,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Longest sequence (prompt and output) the model accepts.
    pub max_seq: usize,
}

impl LlamaConfig {
    /// Checks the relations the forward pass relies on.
    pub fn validate(&self) -> Result<(), LlamaError> {
        let bad = |what: String| Err(LlamaError::Config(what));
        if self.layers == 0 || self.d_model == 0 || self.vocab == 0 || self.max_seq == 0 {
            return bad(format!("empty dimension in {self:?}"));
        }
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!("{} heads cannot share {} kv heads", self.heads, self.kv_heads));
        }
        if !self.head_dim.is_multiple_of(2) || self.heads * self.head_dim != self.d_model {
            return bad(format!("{} heads × {} ≠ d_model {}", self.heads, self.head_dim, self.d_model));
        }
        // Written so that NaN fails too.
        if self.rope_base.partial_cmp(&1.0) != Some(std::cmp::Ordering::Greater)
            || self.rms_eps.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return bad(format!("rope base {} / rms eps {}", self.rope_base, self.rms_eps));
        }
        Ok(())
    }

    fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    fn qkv_dim(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }
}

/// A model that cannot be built or a step that cannot run.
#[derive(Debug, Error)]
pub enum LlamaError {
    /// Inconsistent shape.
    #[error("model config: {0}")]
    Config(String),
    /// A tensor is missing or has the wrong shape.
    #[error("tensor {name}: {reason}")]
    Tensor { name: String, reason: String },
    /// A weight matrix could not be built.
    #[error("tensor {name}: {source}")]
    Matrix {
        name: String,
        #[source]
        source: QMatrixError,
    },
    /// A token id outside the vocabulary.
    #[error("token {token} is outside the vocabulary of {vocab}")]
    Token { token: u32, vocab: usize },
    /// A sequence would exceed the context.
    #[error("sequence of {len} tokens exceeds the context of {max}")]
    Context { len: usize, max: usize },
}

/// Where the loader gets tensors: a GGUF file, a safetensors file.
///
/// Names follow GGUF's llama convention (`token_embd.weight`,
/// `blk.{i}.attn_q.weight`, …); a matrix is `[n, k]` with rows of `k`.
pub trait WeightSource {
    /// The matrix `name` of `n` rows of `k`, in whatever format it is stored.
    fn matrix(&mut self, name: &str, n: usize, k: usize) -> Result<QMatrix, LlamaError>;
    /// The f32 vector `name` of `len` values.
    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, LlamaError>;
    /// Whether `name` exists (for the optional untied output head).
    fn has(&self, name: &str) -> bool;
}

#[derive(Debug)]
struct Layer {
    attn_norm: Vec<f32>,
    /// q rows, then k rows, then v rows.
    wqkv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    /// gate rows, then up rows.
    w13: QMatrix,
    w2: QMatrix,
}

/// A loaded model.
#[derive(Debug)]
pub struct Llama {
    config: LlamaConfig,
    embed: QMatrix,
    layers: Vec<Layer>,
    out_norm: Vec<f32>,
    /// `None`: the output head is the embedding matrix.
    head: Option<QMatrix>,
    /// `cos, sin` of `pos · θ_i`, `[max_seq][head_dim/2]`, computed in f64.
    rope: Vec<(f32, f32)>,
    /// How activations enter the products.
    precision: Precision,
    /// Decoder blocks left out at the end (a cheaper, wrong model for studies).
    skip_last: usize,
    /// Activations rounded to 8 bits per block of 32 before every product
    /// (for studies of an 8-bit validator's drift); overrides `precision`.
    int8_activations: bool,
    /// How [`Llama::step_check`] multiplies.
    check_products: Products,
}

/// How a pass multiplies activations by the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Products {
    /// f32 activations times the exactly decoded weights: what executors run.
    #[default]
    F32,
    /// Activations rounded to 16 bits per block of 32 inputs times the
    /// weights' integer quants ([`QMatrix::matmul_int16`]).
    Int16,
}

impl Products {
    /// What checks run unless told otherwise: `Int16` where the CPU has
    /// AVX512-VNNI (twice the multiply-adds per instruction of f32), `F32`
    /// elsewhere.
    pub fn for_checks() -> Self {
        if int16_is_fast() { Products::Int16 } else { Products::F32 }
    }
}

fn stack(name: String, parts: &[&QMatrix]) -> Result<QMatrix, LlamaError> {
    QMatrix::stack(parts).map_err(|source| LlamaError::Matrix { name, source })
}

impl Llama {
    /// Loads every tensor of `config` from `source`.
    pub fn load(config: LlamaConfig, source: &mut dyn WeightSource) -> Result<Self, LlamaError> {
        config.validate()?;
        let (d, f, kv) = (config.d_model, config.ffn, config.kv_dim());
        let embed = source.matrix("token_embd.weight", config.vocab, d)?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            let q = source.matrix(&name("attn_q"), d, d)?;
            let k = source.matrix(&name("attn_k"), kv, d)?;
            let v = source.matrix(&name("attn_v"), kv, d)?;
            let gate = source.matrix(&name("ffn_gate"), f, d)?;
            let up = source.matrix(&name("ffn_up"), f, d)?;
            layers.push(Layer {
                attn_norm: source.vector(&name("attn_norm"), d)?,
                wqkv: stack(name("attn_qkv"), &[&q, &k, &v])?,
                wo: source.matrix(&name("attn_output"), d, d)?,
                ffn_norm: source.vector(&name("ffn_norm"), d)?,
                w13: stack(name("ffn_gate_up"), &[&gate, &up])?,
                w2: source.matrix(&name("ffn_down"), d, f)?,
            });
        }
        let out_norm = source.vector("output_norm.weight", d)?;
        let head = if source.has("output.weight") {
            Some(source.matrix("output.weight", config.vocab, d)?)
        } else {
            None
        };
        let rope = rope_table(&config);
        Ok(Self {
            config,
            embed,
            layers,
            out_norm,
            head,
            rope,
            precision: Precision::F32,
            skip_last: 0,
            int8_activations: false,
            check_products: Products::for_checks(),
        })
    }

    /// Rounds activations to bf16 before every product (`Bf16`), as an
    /// executor on bf16 hardware would, or keeps them f32 (the default).
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    /// The activation precision.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Leaves out the last `n` decoder blocks: the model a cheating executor
    /// might run to save work (for detection studies).
    pub fn skip_last_layers(&mut self, n: usize) {
        self.skip_last = n.min(self.layers.len());
    }

    /// Rounds activations before every product to 8 bits per block of 32
    /// inputs, symmetric with the block's largest magnitude as 127, as an
    /// 8-bit integer kernel would take them: for studies of what such a
    /// validator's drift would be (the products themselves stay f32).
    pub fn set_int8_activations(&mut self, on: bool) {
        self.int8_activations = on;
    }

    /// How [`Llama::step_check`] multiplies (by default
    /// [`Products::for_checks`]).
    pub fn set_check_products(&mut self, products: Products) {
        self.check_products = products;
    }

    /// How [`Llama::step_check`] multiplies.
    pub fn check_products(&self) -> Products {
        self.check_products
    }

    /// `y = x · Wᵀ` on `products`.
    fn product(products: Products, w: &QMatrix, x: &[f32], m: usize, y: &mut [f32]) {
        match products {
            Products::F32 => w.matmul(x, m, y),
            Products::Int16 => w.matmul_int16(x, m, y),
        }
    }

    /// Whether activations are rounded before the products.
    fn rounds(&self) -> bool {
        self.int8_activations || self.precision == Precision::Bf16
    }

    fn round(&self, x: &mut [f32]) {
        if self.int8_activations {
            // Row widths are whole blocks, so the blocks never straddle rows.
            for block in x.chunks_mut(32) {
                let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                if max > 0.0 && max.is_finite() {
                    let step = max / 127.0;
                    for v in block {
                        *v = (*v / step).round() * step;
                    }
                }
            }
        } else if self.precision == Precision::Bf16 {
            for v in x {
                *v = half::bf16::from_f32(*v).to_f32();
            }
        }
    }

    /// The model's shape.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Bytes of weights in memory.
    pub fn weight_bytes(&self) -> usize {
        let layers: usize =
            self.layers.iter().map(|l| l.wqkv.bytes() + l.wo.bytes() + l.w13.bytes() + l.w2.bytes()).sum();
        self.embed.bytes() + layers + self.head.as_ref().map_or(0, QMatrix::bytes)
    }

    /// An empty cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            kv_dim: self.config.kv_dim(),
            len: 0,
            k: vec![Vec::new(); self.config.layers],
            v: vec![Vec::new(); self.config.layers],
        }
    }
}

fn rope_table(c: &LlamaConfig) -> Vec<(f32, f32)> {
    let half = c.head_dim / 2;
    let mut t = Vec::with_capacity(c.max_seq * half);
    for p in 0..c.max_seq {
        for i in 0..half {
            let angle = p as f64 * c.rope_base.powf(-2.0 * i as f64 / c.head_dim as f64);
            t.push((angle.cos() as f32, angle.sin() as f32));
        }
    }
    t
}

/// Keys and values of one sequence's past tokens, per layer `[pos][kv_dim]`.
#[derive(Debug, Clone)]
pub struct KvCache {
    kv_dim: usize,
    len: usize,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl KvCache {
    /// Tokens the cache holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache holds no token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every token from `len` on.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            for l in self.k.iter_mut().chain(self.v.iter_mut()) {
                l.truncate(len * self.kv_dim);
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|l| l.len() * 4).sum()
    }
}

/// Which rows of a sequence's step produce logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outputs {
    /// None (a prompt chunk whose continuation comes in a later step).
    None,
    /// The last token's.
    Last,
    /// Every token's.
    All,
    /// The last `n` tokens' (teacher-forced checking of an output of `n`).
    Tail(usize),
}

/// One sequence's part of a step.
#[derive(Debug)]
pub struct SeqStep<'a> {
    /// Its cache; the step appends `tokens` to it.
    pub cache: &'a mut KvCache,
    /// The tokens it adds.
    pub tokens: &'a [u32],
    /// Which of them produce logits.
    pub outputs: Outputs,
}

/// What a step returns: for every sequence in order, for every row it asked
/// for, the logits (`vocab` values) and the final normalised hidden state
/// (`d_model` values).
#[derive(Debug, Default)]
pub struct StepOutput {
    /// `[rows asked][vocab]`.
    pub logits: Vec<f32>,
    /// `[rows asked][d_model]`, after the output norm.
    pub hidden: Vec<f32>,
    /// Rows asked per sequence, in the order of the step's sequences.
    pub rows_per_seq: Vec<usize>,
}

/// Buffers reused across steps.
#[derive(Debug, Default)]
pub struct LlamaScratch {
    x: Vec<f32>,
    a: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    tmp: Vec<f32>,
    ffn: Vec<f32>,
    h: Vec<f32>,
}

/// Where one row of the step sits: its sequence and its position.
#[derive(Debug, Clone, Copy)]
struct RowPlace {
    seq: usize,
    pos: usize,
}

impl Llama {
    /// Runs one step over all `seqs` and appends their tokens to their caches.
    ///
    /// On an error nothing is appended.
    pub fn step(&self, seqs: &mut [SeqStep<'_>], s: &mut LlamaScratch) -> Result<StepOutput, LlamaError> {
        self.step_with(seqs, s, Products::F32)
    }

    /// [`Llama::step`] on the check products (see
    /// [`Llama::set_check_products`]): a validator's teacher-forced pass.
    pub fn step_check(
        &self,
        seqs: &mut [SeqStep<'_>],
        s: &mut LlamaScratch,
    ) -> Result<StepOutput, LlamaError> {
        self.step_with(seqs, s, self.check_products)
    }

    fn step_with(
        &self,
        seqs: &mut [SeqStep<'_>],
        s: &mut LlamaScratch,
        products: Products,
    ) -> Result<StepOutput, LlamaError> {
        let c = &self.config;
        let mut places = Vec::new();
        for (i, seq) in seqs.iter().enumerate() {
            let len = seq.cache.len + seq.tokens.len();
            if len > c.max_seq {
                return Err(LlamaError::Context { len, max: c.max_seq });
            }
            if let Some(&token) = seq.tokens.iter().find(|&&t| t as usize >= c.vocab) {
                return Err(LlamaError::Token { token, vocab: c.vocab });
            }
            places.extend((0..seq.tokens.len()).map(|t| RowPlace { seq: i, pos: seq.cache.len + t }));
        }
        let rows = places.len();
        let d = c.d_model;
        s.x.resize(rows * d, 0.0);
        let tokens = seqs.iter().flat_map(|q| q.tokens.iter().copied());
        for (token, row) in tokens.zip(s.x.chunks_exact_mut(d)) {
            self.embed.decode_row(token as usize, row);
        }
        let run = self.layers.len() - self.skip_last;
        for (l, layer) in self.layers.iter().enumerate().take(run) {
            self.attention_block(l, layer, seqs, &places, s, products);
            self.ffn_block(layer, rows, s, products);
        }
        if run < self.layers.len() {
            // The caches of skipped blocks still need one entry per token.
            let kv = self.config.kv_dim();
            for seq in seqs.iter_mut() {
                for l in run..self.layers.len() {
                    let n = seq.tokens.len() * kv;
                    seq.cache.k[l].extend(std::iter::repeat_n(0.0, n));
                    seq.cache.v[l].extend(std::iter::repeat_n(0.0, n));
                }
            }
        }
        for seq in seqs.iter_mut() {
            seq.cache.len += seq.tokens.len();
        }
        Ok(self.outputs(seqs, s, products))
    }

    fn attention_block(
        &self,
        l: usize,
        layer: &Layer,
        seqs: &mut [SeqStep<'_>],
        places: &[RowPlace],
        s: &mut LlamaScratch,
        products: Products,
    ) {
        let c = &self.config;
        let (d, e, rows) = (c.d_model, c.head_dim, places.len());
        let (qkv_dim, kv) = (c.qkv_dim(), c.kv_dim());
        norm_rows(&s.x, d, c.rms_eps, &layer.attn_norm, &mut s.a);
        self.round(&mut s.a);
        s.qkv.resize(rows * qkv_dim, 0.0);
        Self::product(products, &layer.wqkv, &s.a, rows, &mut s.qkv);
        for (row, place) in s.qkv.chunks_exact_mut(qkv_dim).zip(places) {
            let table = &self.rope[place.pos * e / 2..(place.pos + 1) * e / 2];
            // q and k heads are adjacent in the row; v follows untouched.
            for head in row[..d + kv].chunks_exact_mut(e) {
                rotate(head, table);
            }
        }
        for (row, place) in s.qkv.chunks_exact(qkv_dim).zip(places) {
            let cache = &mut *seqs[place.seq].cache;
            cache.k[l].extend_from_slice(&row[d..d + kv]);
            cache.v[l].extend_from_slice(&row[d + kv..]);
        }
        s.attn.resize(rows * d, 0.0);
        let caches: Vec<(&[f32], &[f32])> =
            seqs.iter().map(|q| (&q.cache.k[l][..], &q.cache.v[l][..])).collect();
        let group = c.heads / c.kv_heads;
        let scale = 1.0 / (e as f32).sqrt();
        let qkv = &s.qkv;
        // A unit is one row's query heads that share a key/value head: they
        // read the same cached rows, so they take them together.
        let unit_len = group * e;
        let task = |scores: &mut Vec<f32>, (t, out): (usize, &mut [f32])| {
            for (u, o) in out.chunks_exact_mut(unit_len).enumerate() {
                let unit = t * ATTENTION_UNITS_PER_TASK + u;
                let (row, kv_head) = (unit / c.kv_heads, unit % c.kv_heads);
                let place = places[row];
                let q = &qkv[row * qkv_dim + kv_head * unit_len..][..unit_len];
                let (keys, values) = caches[place.seq];
                let h = Head { q, e, keys, values, stride: kv, offset: kv_head * e, n: place.pos + 1, scale };
                attend(&h, scores, o);
            }
        };
        // Waking the other threads costs more than a few short heads take.
        let work: usize = places.iter().map(|p| p.pos + 1).sum::<usize>() * c.heads * e;
        if work < ATTENTION_PARALLEL_MIN {
            let mut scores = Vec::new();
            s.attn
                .chunks_mut(unit_len * ATTENTION_UNITS_PER_TASK)
                .enumerate()
                .for_each(|job| task(&mut scores, job));
        } else {
            s.attn
                .par_chunks_mut(unit_len * ATTENTION_UNITS_PER_TASK)
                .enumerate()
                .for_each_init(Vec::new, task);
        }
        s.tmp.resize(rows * d, 0.0);
        self.round(&mut s.attn);
        Self::product(products, &layer.wo, &s.attn, rows, &mut s.tmp);
        add(&mut s.x, &s.tmp);
    }

    fn ffn_block(&self, layer: &Layer, rows: usize, s: &mut LlamaScratch, products: Products) {
        let c = &self.config;
        let (d, f) = (c.d_model, c.ffn);
        norm_rows(&s.x, d, c.rms_eps, &layer.ffn_norm, &mut s.a);
        self.round(&mut s.a);
        s.ffn.resize(rows * 2 * f, 0.0);
        Self::product(products, &layer.w13, &s.a, rows, &mut s.ffn);
        s.h.resize(rows * f, 0.0);
        swiglu_rows(&s.ffn, f, &mut s.h);
        self.round(&mut s.h);
        s.tmp.resize(rows * d, 0.0);
        Self::product(products, &layer.w2, &s.h, rows, &mut s.tmp);
        add(&mut s.x, &s.tmp);
    }

    fn outputs(&self, seqs: &[SeqStep<'_>], s: &mut LlamaScratch, products: Products) -> StepOutput {
        let c = &self.config;
        let d = c.d_model;
        let mut picked = Vec::new();
        let mut rows_per_seq = Vec::with_capacity(seqs.len());
        let mut first = 0;
        for seq in seqs {
            let n = seq.tokens.len();
            let asked: Vec<usize> = match seq.outputs {
                Outputs::None => vec![],
                Outputs::Last if n > 0 => vec![first + n - 1],
                Outputs::Last => vec![],
                Outputs::All => (first..first + n).collect(),
                Outputs::Tail(t) => (first + n - t.min(n)..first + n).collect(),
            };
            rows_per_seq.push(asked.len());
            picked.extend(asked);
            first += n;
        }
        let mut chosen = Vec::with_capacity(picked.len() * d);
        for &r in &picked {
            chosen.extend_from_slice(&s.x[r * d..(r + 1) * d]);
        }
        let mut hidden = Vec::new();
        norm_rows(&chosen, d, c.rms_eps, &self.out_norm, &mut hidden);
        let mut logits = vec![0f32; picked.len() * c.vocab];
        let head = self.head.as_ref().unwrap_or(&self.embed);
        if self.rounds() {
            let mut input = hidden.clone();
            self.round(&mut input);
            Self::product(products, head, &input, picked.len(), &mut logits);
        } else {
            Self::product(products, head, &hidden, picked.len(), &mut logits);
        }
        StepOutput { logits, hidden, rows_per_seq }
    }
}

/// `out = rms(x) · g` row by row.
fn norm_rows(x: &[f32], d: usize, eps: f32, g: &[f32], out: &mut Vec<f32>) {
    out.resize(x.len(), 0.0);
    rms_norm_rows(x, d, eps, out);
    for row in out.chunks_exact_mut(d) {
        for (v, w) in row.iter_mut().zip(g) {
            *v *= w;
        }
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Rotates the interleaved pairs of one head.
fn rotate(head: &mut [f32], table: &[(f32, f32)]) {
    for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(table) {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * cos - b * sin;
        pair[1] = a * sin + b * cos;
    }
}

/// What the query heads of one row that share a key/value head attend
/// with: their queries of `e` values side by side, and the cache's keys and
/// values at `offset` in rows of `stride`, over positions `0..n`.
#[derive(Clone, Copy)]
struct Head<'a> {
    q: &'a [f32],
    e: usize,
    keys: &'a [f32],
    values: &'a [f32],
    stride: usize,
    offset: usize,
    n: usize,
    scale: f32,
}

/// Query heads of one row that share a key/value head: for each, softmax
/// over positions `0..n` of the cache; `out` holds their outputs side by
/// side, `scores` is scratch.
///
/// The operations are fixed per row and head (sixteen-lane dot products and
/// sums with a fixed tree, one fused multiply-add chain per output value
/// over the positions in order), so the AVX-512 build and the portable one
/// give the same bits, and a row's result does not depend on the batch or
/// on which heads are taken together.
fn attend(h: &Head<'_>, scores: &mut Vec<f32>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx512() {
        // SAFETY: AVX-512F (with FMA) is present, checked by `has_avx512`.
        unsafe { attend_avx512(h, scores, out) };
        return;
    }
    attend_generic(h, scores, out);
}

/// [`attend`] with AVX-512: for heads of 16 to 128 values, the scores'
/// lane trees and the output's accumulators in registers; other heads run
/// the portable code compiled for 512-bit registers. Same bits either way.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn attend_avx512(h: &Head<'_>, scores: &mut Vec<f32>, out: &mut [f32]) {
    match h.e {
        16 => attend_chunks::<1>(h, scores, out),
        32 => attend_chunks::<2>(h, scores, out),
        48 => attend_chunks::<3>(h, scores, out),
        64 => attend_chunks::<4>(h, scores, out),
        80 => attend_chunks::<5>(h, scores, out),
        96 => attend_chunks::<6>(h, scores, out),
        112 => attend_chunks::<7>(h, scores, out),
        128 => attend_chunks::<8>(h, scores, out),
        _ => attend_generic(h, scores, out),
    }
}

/// Query heads in one unit at most (on the AVX-512 path).
const MAX_GROUP: usize = 16;

/// [`attend_avx512`] for heads of `16·C` values: the loops over a head's
/// registers unrolled; keys sixteen positions at a time, for each of the
/// unit's heads while they are in the L1 cache; values for a few heads at
/// once.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn attend_chunks<const C: usize>(h: &Head<'_>, scores: &mut Vec<f32>, out: &mut [f32]) {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_cvtss_f32, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_max_ps,
        _mm512_mul_ps, _mm512_permute_ps, _mm512_reduce_max_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_shuffle_f32x4, _mm512_storeu_ps,
    };
    let Head { q, e, keys, values, stride, offset, n, scale } = *h;
    let heads = q.len() / e;
    if e != 16 * C || heads > MAX_GROUP {
        attend_generic(h, scores, out);
        return;
    }
    assert!(q.len() == heads * e && out.len() == q.len());
    assert!(
        n == 0
            || (keys.len() >= (n - 1) * stride + offset + e && values.len() >= (n - 1) * stride + offset + e)
    );
    let query = |hd: usize| -> [__m512; C] {
        // SAFETY: head `hd < heads` holds `e = 16·C` values of `q` (asserted).
        std::array::from_fn(|c| unsafe { _mm512_loadu_ps(q.as_ptr().add(hd * e + 16 * c)) })
    };
    // Every score is written below: no need to clear what is kept.
    scores.resize(heads * n, 0.0);
    let sc = _mm512_set1_ps(scale);
    let mut top = [_mm512_set1_ps(f32::NEG_INFINITY); MAX_GROUP];
    // Sixteen positions at a time: their sixteen dot-product registers are
    // reduced together, the lane tree of each done by shuffles across them,
    // so the trees do not wait on one another.
    let whole = n / 16 * 16;
    for p0 in (0..whole).step_by(16) {
        for (hd, top) in top.iter_mut().enumerate().take(heads) {
            let qv = query(hd);
            let mut acc = [_mm512_setzero_ps(); 16];
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: row `p0 + j < n` holds `offset + e ≤ stride` values here (asserted).
                let k = unsafe { keys.as_ptr().add((p0 + j) * stride + offset) };
                for (c, qc) in qv.iter().enumerate() {
                    // SAFETY: as above, `16c + 16 ≤ e`.
                    *a = _mm512_fmadd_ps(*qc, unsafe { _mm512_loadu_ps(k.add(16 * c)) }, *a);
                }
            }
            let s = _mm512_mul_ps(tree16(&acc), sc);
            *top = _mm512_max_ps(*top, s);
            // SAFETY: `hd·n + p0 + 16 ≤ heads·n = scores.len()`.
            unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add(hd * n + p0), s) };
        }
    }
    for (hd, top) in top.iter_mut().enumerate().take(heads) {
        let qv = query(hd);
        for p in whole..n {
            // SAFETY: row `p` of the cache holds `offset + e ≤ stride` values here (asserted).
            let k = unsafe { keys.as_ptr().add(p * stride + offset) };
            let mut acc = _mm512_setzero_ps();
            for (c, qc) in qv.iter().enumerate() {
                // SAFETY: as above, `16c + 16 ≤ e`.
                acc = _mm512_fmadd_ps(*qc, unsafe { _mm512_loadu_ps(k.add(16 * c)) }, acc);
            }
            // The lane tree of `reduce_lanes`: i + (i+8), then + (i+4), (i+2), (i+1).
            acc = _mm512_add_ps(acc, _mm512_shuffle_f32x4::<0b01_00_11_10>(acc, acc));
            acc = _mm512_add_ps(acc, _mm512_shuffle_f32x4::<0b10_11_00_01>(acc, acc));
            acc = _mm512_add_ps(acc, _mm512_permute_ps::<0b01_00_11_10>(acc));
            acc = _mm512_add_ps(acc, _mm512_permute_ps::<0b10_11_00_01>(acc));
            let s = _mm512_mul_ps(acc, sc);
            // Every lane holds the score.
            *top = _mm512_max_ps(*top, s);
            scores[hd * n + p] = _mm512_cvtss_f32(s);
        }
    }
    let mut inv = [_mm512_setzero_ps(); MAX_GROUP];
    for (hd, (top, inv)) in top.iter().zip(&mut inv).enumerate().take(heads) {
        // The largest score: the value `f32::max` in order gives, for scores
        // that are numbers (a ±0 tie gives either zero, and `s − max` is the
        // same either way).
        let max = _mm512_reduce_max_ps(*top);
        let row = &mut scores[hd * n..(hd + 1) * n];
        for s in row.iter_mut() {
            *s = exp_f32(*s - max);
        }
        *inv = _mm512_set1_ps(1.0 / sum_lanes(row));
    }
    // Values: heads in threes (twos for wide heads), each output value one
    // chain over the positions in order, the chains of a few heads side by
    // side so that each waits less on its last step.
    let mut o = [[_mm512_setzero_ps(); C]; MAX_GROUP];
    let mut hd = 0;
    while hd < heads {
        let rows = Weights { scores, n, first: hd };
        let left = heads - hd;
        // SAFETY: heads `hd ..` are below `heads`; the value rows as asserted.
        hd += unsafe {
            if left >= 3 && C <= 4 {
                weigh_values::<C, 3>(rows, values, stride, offset, &mut o[hd..hd + 3])
            } else if left >= 2 && C <= 8 {
                weigh_values::<C, 2>(rows, values, stride, offset, &mut o[hd..hd + 2])
            } else {
                weigh_values::<C, 1>(rows, values, stride, offset, &mut o[hd..hd + 1])
            }
        };
    }
    for (hd, (oh, inv)) in o.iter().zip(&inv).enumerate().take(heads) {
        for (c, a) in oh.iter().enumerate() {
            // SAFETY: `out` holds `heads·e` values (asserted).
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(hd * e + 16 * c), _mm512_mul_ps(*a, *inv)) };
        }
    }
}

/// The softmax weights of a unit's heads from `first` on: `n` per head.
#[derive(Clone, Copy)]
struct Weights<'a> {
    scores: &'a [f32],
    n: usize,
    first: usize,
}

/// `o[h] = Σ_p w[h][p] · v[p]` for `G` heads of `16·C` values, positions in
/// order (one fused multiply-add chain per output value); says `G`.
///
/// # Safety
/// AVX-512F is present; `values` holds `n` rows of `stride` with `offset +
/// 16·C` values in each; `w` holds `first + G` heads of `n` weights.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,fma")]
unsafe fn weigh_values<const C: usize, const G: usize>(
    w: Weights<'_>,
    values: &[f32],
    stride: usize,
    offset: usize,
    o: &mut [[std::arch::x86_64::__m512; C]],
) -> usize {
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps};
    let Weights { scores, n, first } = w;
    assert!(o.len() == G && scores.len() >= (first + G) * n);
    let mut acc: [[_; C]; G] = std::array::from_fn(|g| o[g]);
    for p in 0..n {
        // SAFETY: row `p < n` holds `offset + 16·C` values (the caller's word).
        let v = unsafe { values.as_ptr().add(p * stride + offset) };
        // SAFETY: as above.
        let vs: [_; C] = std::array::from_fn(|c| unsafe { _mm512_loadu_ps(v.add(16 * c)) });
        for (g, a) in acc.iter_mut().enumerate() {
            let wv = _mm512_set1_ps(scores[(first + g) * n + p]);
            for (a, v) in a.iter_mut().zip(vs) {
                *a = _mm512_fmadd_ps(wv, v, *a);
            }
        }
    }
    o.copy_from_slice(&acc);
    G
}

/// The lane tree of `reduce_lanes` of each of sixteen registers, lane `j`
/// of the result from `acc[j]`: level by level, each level's additions of
/// all sixteen at once (`i + (i+8)`, then `+4`, `+2`, `+1`, the operands the
/// tree of one register adds, so the same bits).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
fn tree16(acc: &[std::arch::x86_64::__m512; 16]) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_permutexvar_ps, _mm512_setr_epi32, _mm512_shuffle_f32x4, _mm512_shuffle_ps,
    };
    // Lanes 0–7 of x[j]: acc[j]'s i + (i+8); lanes 8–15: acc[j+8]'s.
    let x: [_; 8] = std::array::from_fn(|j| {
        let (a, b) = (acc[j], acc[j + 8]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(a, b), _mm512_shuffle_f32x4::<0xEE>(a, b))
    });
    // Blocks of four: + (i+4), for acc[j], acc[j+8], acc[j+4], acc[j+12].
    let y: [_; 4] = std::array::from_fn(|j| {
        let (a, b) = (x[j], x[j + 4]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(a, b), _mm512_shuffle_f32x4::<0xDD>(a, b))
    });
    // Pairs: + (i+2), y[j]'s block then y[j+2]'s.
    let z: [_; 2] = std::array::from_fn(|j| {
        let (a, b) = (y[j], y[j + 2]);
        _mm512_add_ps(_mm512_shuffle_ps::<0x44>(a, b), _mm512_shuffle_ps::<0xEE>(a, b))
    });
    // + (i+1): lane 4k + m holds register [0, 2, 1, 3][m] + [0, 8, 4, 12][k].
    let w = _mm512_add_ps(_mm512_shuffle_ps::<0x88>(z[0], z[1]), _mm512_shuffle_ps::<0xDD>(z[0], z[1]));
    _mm512_permutexvar_ps(_mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15), w)
}

#[inline(always)]
fn attend_generic(h: &Head<'_>, scores: &mut Vec<f32>, out: &mut [f32]) {
    let Head { q, e, keys, values, stride, offset, n, scale } = *h;
    assert!(q.len().is_multiple_of(e) && out.len() == q.len());
    // Plain loops, no closures: a closure is a function of its own, compiled
    // without this one's target features.
    for (q, out) in q.chunks_exact(e).zip(out.chunks_exact_mut(e)) {
        scores.clear();
        let mut max = f32::NEG_INFINITY;
        for p in 0..n {
            let s = dot(q, &keys[p * stride + offset..][..e]) * scale;
            max = max.max(s);
            scores.push(s);
        }
        for s in scores.iter_mut() {
            *s = exp_f32(*s - max);
        }
        let sum = sum_lanes(scores);
        out.fill(0.0);
        for (p, &w) in scores.iter().enumerate() {
            let v = &values[p * stride + offset..][..e];
            for (o, &x) in out.iter_mut().zip(v) {
                *o = w.mul_add(x, *o);
            }
        }
        let inv = 1.0 / sum;
        for o in out.iter_mut() {
            *o *= inv;
        }
    }
}

/// `Σ a·b`: sixteen lanes of fused multiply-adds, the fixed lane tree, then
/// the tail in order.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail = ca.remainder().iter().zip(cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    let mut s = reduce_lanes(&acc);
    for (x, y) in tail {
        s = x.mul_add(*y, s);
    }
    s
}

/// `Σ v`: sixteen lanes, the fixed lane tree, then the tail in order.
#[inline(always)]
fn sum_lanes(v: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    let mut s = reduce_lanes(&acc);
    for x in tail {
        s += x;
    }
    s
}

/// Adds sixteen lanes in a fixed tree: halves, then quarters, down to one.
#[inline(always)]
fn reduce_lanes(v: &[f32; 16]) -> f32 {
    let mut a = [0f32; 8];
    for i in 0..8 {
        a[i] = v[i] + v[i + 8];
    }
    let b = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    let c = [b[0] + b[2], b[1] + b[3]];
    c[0] + c[1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_gives_the_same_bits_on_every_path() {
        // Heads of 64 and 128 take the AVX-512 registers where present, 24
        // the portable code compiled for them; both must equal the portable
        // build, and heads taken together must equal heads taken alone.
        let wave = |i: usize, f: f32| ((i as f32 * f).sin() * 1.7).to_bits() as f32 / u32::MAX as f32 - 0.3;
        for e in [24usize, 64, 128] {
            let (stride, offset) = (3 * e, e);
            for n in [1usize, 7, 16, 33, 100] {
                let heads = 3;
                let q: Vec<f32> = (0..heads * e).map(|i| wave(i, 0.37)).collect();
                let keys: Vec<f32> = (0..n * stride).map(|i| wave(i, 0.11)).collect();
                let values: Vec<f32> = (0..n * stride).map(|i| wave(i, 0.23)).collect();
                let (mut a, mut b) = (vec![0f32; heads * e], vec![0f32; heads * e]);
                let mut scores = Vec::new();
                let h = Head { q: &q, e, keys: &keys, values: &values, stride, offset, n, scale: 0.125 };
                attend(&h, &mut scores, &mut a);
                attend_generic(&h, &mut scores, &mut b);
                assert_eq!(a, b, "heads of {e}, {n} positions");
                for hd in 0..heads {
                    let mut one = vec![0f32; e];
                    attend(&Head { q: &q[hd * e..(hd + 1) * e], ..h }, &mut scores, &mut one);
                    assert_eq!(one, a[hd * e..(hd + 1) * e], "head {hd} of {e} alone, {n} positions");
                    // And it is a softmax-weighted mean of the values.
                    let qh = &q[hd * e..(hd + 1) * e];
                    let s: Vec<f64> = (0..n)
                        .map(|p| {
                            (0..e).map(|i| qh[i] as f64 * keys[p * stride + offset + i] as f64).sum::<f64>()
                                * 0.125
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let w: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = w.iter().sum();
                    for i in 0..e {
                        let want: f64 =
                            (0..n).map(|p| w[p] * values[p * stride + offset + i] as f64).sum::<f64>() / z;
                        assert!((one[i] as f64 - want).abs() < 1e-5, "head of {e}, {n} positions, value {i}");
                    }
                }
            }
        }
    }
}

/// Timing of attention for development (`--ignored --nocapture`).
#[cfg(test)]
mod attend_speed {
    use super::*;

    /// One thread, heads of 64 over 16, 84 and 166 cached positions, one
    /// query head alone and three sharing a key/value head.
    #[test]
    #[ignore]
    fn print_attend() {
        let (e, stride, offset) = (64usize, 192usize, 64usize);
        for heads in [1usize, 3] {
            for n in [16usize, 84, 166] {
                let wave = |i: usize, f: f32| (i as f32 * f).sin();
                let q: Vec<f32> = (0..heads * e).map(|i| wave(i, 0.37)).collect();
                let keys: Vec<f32> = (0..n * stride).map(|i| wave(i, 0.11)).collect();
                let values: Vec<f32> = (0..n * stride).map(|i| wave(i, 0.23)).collect();
                let mut out = vec![0f32; heads * e];
                let mut scores = Vec::new();
                let h = Head { q: &q, e, keys: &keys, values: &values, stride, offset, n, scale: 0.125 };
                let reps = 100_000;
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    attend(std::hint::black_box(&h), &mut scores, &mut out);
                }
                let ns = t.elapsed().as_secs_f64() * 1e9 / (reps * heads) as f64;
                eprintln!("{heads} heads, n {n}: {ns:.0} ns a head, {:.2} ns a position", ns / n as f64);
            }
        }
    }
}
