//! The v2 model and inputs (spec v2 §3–4): int8 values from the same ChaCha20
//! streams as v1 (same keys), generated in parallel and packed for the int8
//! kernels.

use rayon::prelude::*;

use super::V2Error;
use super::arith::{Shifts, Tables};
use super::gemm::PackedI8;
use crate::chacha::{StreamKey, fill_words};
use crate::config::ModelConfig;
use crate::encoding::Hash32;
use crate::model::Tensor;
use crate::pow::input_key;

/// v2's int8 of a stream word: the odd integer `2·(w >> 25) − 127`, uniform
/// on the 128 odd values in `−127..=127` (zero mean, symmetric).
#[inline(always)]
pub fn i8_of_word(w: u32) -> i8 {
    (2 * (w >> 25) as i32 - 127) as i8
}

/// Several tensors as row-major `[out, in]` int8, sharing one parallel pass.
pub fn generate_tensors(c: &ModelConfig, sprint_seed: &Hash32, which: &[(u32, Tensor)]) -> Vec<Vec<i8>> {
    crate::model::generate_tensors_with(c, sprint_seed, which, |words, _fan_in, out| {
        for (o, &w) in out.iter_mut().zip(words) {
            *o = i8_of_word(w);
        }
    })
}

/// One tensor, row-major `[out, in]` int8.
pub fn generate_tensor(c: &ModelConfig, sprint_seed: &Hash32, layer: u32, t: Tensor) -> Vec<i8> {
    generate_tensors(c, sprint_seed, &[(layer, t)]).pop().unwrap_or_default()
}

/// The packed weights of one layer; projections that read the same input are
/// fused: `wqkv = [wq; wk; wv]` (`[3d, d]`), `w13 = [w1; w3]` (`[2f, d]`).
#[derive(Debug)]
pub struct LayerWeights {
    /// `[wq; wk; wv]`.
    pub wqkv: PackedI8,
    /// `[d, d]`.
    pub wo: PackedI8,
    /// `[w1; w3]`: gate rows first, then up rows.
    pub w13: PackedI8,
    /// `[d, f]`.
    pub w2: PackedI8,
}

/// All v2 weights of one Sprint, with the config's shifts and tables.
#[derive(Debug)]
pub struct Model {
    /// Its shape.
    pub config: ModelConfig,
    /// The per-config shifts.
    pub shifts: Shifts,
    /// The exp, SiLU and rotary tables.
    pub tables: Tables,
    /// `L` layers.
    pub layers: Vec<LayerWeights>,
    /// `[V, d]`.
    pub w_out: PackedI8,
}

impl Model {
    /// Generates and packs every tensor on all cores; fails when the config
    /// cannot run v2 exactly (see [`Shifts::for_config`]).
    pub fn generate(c: &ModelConfig, sprint_seed: &Hash32) -> Result<Self, V2Error> {
        let _span = tracy_client::span!("v2_model_generate");
        let shifts = Shifts::for_config(c)?;
        let d = c.dim;
        let layers = (0..c.layers as u32)
            .into_par_iter()
            .map(|l| {
                let which: Vec<(u32, Tensor)> = Tensor::LAYER.iter().map(|&t| (l, t)).collect();
                let mut t = generate_tensors(c, sprint_seed, &which).into_iter();
                let mut next = || t.next().unwrap_or_default();
                let (wq, wk, wv, wo, w1, w3, w2) = (next(), next(), next(), next(), next(), next(), next());
                LayerWeights {
                    wqkv: PackedI8::from_row_blocks(&[&wq, &wk, &wv], d),
                    wo: PackedI8::from_rows(&wo, d, d),
                    w13: PackedI8::from_row_blocks(&[&w1, &w3], d),
                    w2: PackedI8::from_rows(&w2, d, c.ffn),
                }
            })
            .collect();
        let w_out = generate_tensor(c, sprint_seed, c.layers as u32, Tensor::WOut);
        Ok(Self {
            config: *c,
            shifts,
            tables: Tables::new(c.seq, c.head_dim()),
            layers,
            w_out: PackedI8::from_rows(&w_out, c.vocab, d),
        })
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

/// Writes a nonce's `[T, d]` int8 input: element `k` is `i8_of_word` of word
/// `k` of `stream(H("gonka/input", sprint_seed, node_seed, u64_le(nonce)))`,
/// the v1 input stream.
pub fn fill_input(sprint_seed: &Hash32, node_seed: &Hash32, nonce: u64, out: &mut [i8]) {
    let key = StreamKey::new(&input_key(sprint_seed, node_seed, nonce));
    let mut words = [0u32; 256];
    for (i, chunk) in out.chunks_mut(words.len()).enumerate() {
        let w = &mut words[..chunk.len()];
        fill_words(&key, (i * 256) as u64, w);
        for (o, &v) in chunk.iter_mut().zip(w.iter()) {
            *o = i8_of_word(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_of_word_is_odd_and_symmetric() {
        assert_eq!(i8_of_word(0), -127);
        assert_eq!(i8_of_word(u32::MAX), 127);
        assert_eq!(i8_of_word(0x8000_0000), 1);
        assert_eq!(i8_of_word(0x7fff_ffff), -1);
    }
}
