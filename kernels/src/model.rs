//! The Sprint model (spec §3): every weight tensor generated from the Sprint
//! seed, in parallel on all cores, kept as bf16 and packed for the kernels.

use rayon::prelude::*;

use crate::chacha::{StreamKey, fill_words};
use crate::config::ModelConfig;
use crate::encoding::{Hash32, bf16_bits, scale, tagged_hash, unit};
use crate::gemm::PackedWeight;

/// Weight tensors of one layer, with the spec's stream ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tensor {
    /// Query projection `[d, d]`, id 0.
    Wq,
    /// Key projection `[d, d]`, id 1.
    Wk,
    /// Value projection `[d, d]`, id 2.
    Wv,
    /// Attention output `[d, d]`, id 3.
    Wo,
    /// Feed-forward gate `[f, d]`, id 4.
    W1,
    /// Feed-forward up `[f, d]`, id 5.
    W3,
    /// Feed-forward down `[d, f]`, id 6.
    W2,
    /// Output head `[V, d]` at layer `L`, id 7.
    WOut,
}

impl Tensor {
    /// Layer tensors in the spec's order.
    pub const LAYER: [Tensor; 7] =
        [Tensor::Wq, Tensor::Wk, Tensor::Wv, Tensor::Wo, Tensor::W1, Tensor::W3, Tensor::W2];

    /// The stream id of spec §3.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// `[out, in]` for a config.
    pub fn shape(self, c: &ModelConfig) -> (usize, usize) {
        match self {
            Tensor::Wq | Tensor::Wk | Tensor::Wv | Tensor::Wo => (c.dim, c.dim),
            Tensor::W1 | Tensor::W3 => (c.ffn, c.dim),
            Tensor::W2 => (c.dim, c.ffn),
            Tensor::WOut => (c.vocab, c.dim),
        }
    }
}

/// `H("gonka/weight", sprint_seed, u32_le(layer), u32_le(id))`.
pub fn weight_key(sprint_seed: &Hash32, layer: u32, tensor: Tensor) -> Hash32 {
    tagged_hash("gonka/weight", &[sprint_seed, &layer.to_le_bytes(), &tensor.id().to_le_bytes()])
}

/// Words generated per parallel job: large enough to amortise scheduling,
/// small enough to balance the last tensor across cores.
const INIT_CHUNK_WORDS: usize = 1 << 16;

/// One tensor, row-major `[out, in]` bf16 bits, generated on all cores.
pub fn generate_tensor(c: &ModelConfig, sprint_seed: &Hash32, layer: u32, t: Tensor) -> Vec<u16> {
    let mut all = generate_tensors(c, sprint_seed, &[(layer, t)]);
    all.pop().unwrap_or_default()
}

/// Several tensors at once, sharing one parallel pass.
pub fn generate_tensors(c: &ModelConfig, sprint_seed: &Hash32, which: &[(u32, Tensor)]) -> Vec<Vec<u16>> {
    generate_tensors_with(c, sprint_seed, which, |words, fan_in, out| {
        let s = scale(fan_in);
        for (o, &w) in out.iter_mut().zip(words) {
            *o = bf16_bits(unit(w) * s);
        }
    })
}

/// The stream words of several weight tensors (spec §3 keys), turned into
/// elements by `convert(words, fan_in, out)` chunk by chunk on all cores.
/// Every Sprint function draws its weights this way; only `convert` differs.
pub fn generate_tensors_with<T: Copy + Default + Send>(
    c: &ModelConfig,
    sprint_seed: &Hash32,
    which: &[(u32, Tensor)],
    convert: impl Fn(&[u32], usize, &mut [T]) + Sync,
) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = which
        .iter()
        .map(|&(_, t)| {
            let (n, k) = t.shape(c);
            vec![T::default(); n * k]
        })
        .collect();
    let mut jobs = Vec::new();
    for (buf, &(layer, t)) in out.iter_mut().zip(which) {
        let key = StreamKey::new(&weight_key(sprint_seed, layer, t));
        let fan_in = t.shape(c).1;
        for (i, chunk) in buf.chunks_mut(INIT_CHUNK_WORDS).enumerate() {
            jobs.push((key, fan_in, (i * INIT_CHUNK_WORDS) as u64, chunk));
        }
    }
    jobs.into_par_iter().for_each_init(
        || vec![0u32; INIT_CHUNK_WORDS],
        |words, (key, fan_in, start, chunk)| {
            let words = &mut words[..chunk.len()];
            fill_words(&key, start, words);
            convert(words, fan_in, chunk);
        },
    );
    out
}

/// The packed weights of one layer. Projections that read the same input are
/// fused: `wqkv = [wq; wk; wv]` (`[3d, d]`) and `w13 = [w1; w3]` (`[2f, d]`).
#[derive(Debug)]
pub struct LayerWeights {
    /// `[wq; wk; wv]`, `[3d, d]`.
    pub wqkv: PackedWeight,
    /// `[d, d]`.
    pub wo: PackedWeight,
    /// `[w1; w3]`, `[2f, d]`: gate rows first, then up rows.
    pub w13: PackedWeight,
    /// `[d, f]`.
    pub w2: PackedWeight,
}

/// All weights of the Sprint model for one seed.
#[derive(Debug)]
pub struct Model {
    /// Its shape.
    pub config: ModelConfig,
    /// `L` layers.
    pub layers: Vec<LayerWeights>,
    /// `[V, d]`.
    pub w_out: PackedWeight,
}

impl Model {
    /// Generates and packs every tensor on all cores. Raw row-major bf16 lives
    /// only per layer in flight, so peak memory stays near the packed size.
    pub fn generate(c: &ModelConfig, sprint_seed: &Hash32) -> Self {
        let _span = tracy_client::span!("model_generate");
        let (d, f) = (c.dim, c.ffn);
        // Layers in parallel (each also splits its streams into parallel
        // chunks), so packing overlaps with generation on the other cores.
        let layers = (0..c.layers as u32)
            .into_par_iter()
            .map(|l| {
                let which: Vec<(u32, Tensor)> = Tensor::LAYER.iter().map(|&t| (l, t)).collect();
                let mut t = generate_tensors(c, sprint_seed, &which).into_iter();
                let mut next = || t.next().unwrap_or_default();
                let (wq, wk, wv, wo, w1, w3, w2) = (next(), next(), next(), next(), next(), next(), next());
                LayerWeights {
                    wqkv: PackedWeight::from_row_blocks(&[&wq, &wk, &wv], d),
                    wo: PackedWeight::from_rows(&wo, d, d),
                    w13: PackedWeight::from_row_blocks(&[&w1, &w3], d),
                    w2: PackedWeight::from_rows(&w2, d, f),
                }
            })
            .collect();
        let w_out = generate_tensor(c, sprint_seed, c.layers as u32, Tensor::WOut);
        Self { config: *c, layers, w_out: PackedWeight::from_rows(&w_out, c.vocab, d) }
    }

    /// Bytes held by the packed weights.
    pub fn bytes(&self) -> usize {
        self.w_out.bytes()
            + self
                .layers
                .iter()
                .map(|l| l.wqkv.bytes() + l.wo.bytes() + l.w13.bytes() + l.w2.bytes())
                .sum::<usize>()
    }
}
