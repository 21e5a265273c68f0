//! A seed-generated tiny Llama for fast tests: two blocks of width 64 over a
//! byte-level vocabulary (256 bytes and four control tokens), weights drawn
//! from a ChaCha20 stream keyed by a seed, written and read as safetensors
//! with the config in the file's metadata.
//!
//! It is not a language model (its weights are noise), but it exercises
//! every path of the real one: grouped-query attention, RoPE, the KV cache,
//! tied embeddings, batching and the file format round trip.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};

use super::llama::{LlamaConfig, LlamaError, WeightSource};
use super::qmatmul::QMatrix;
use crate::chacha::{StreamKey, fill_words};

/// The metadata key holding the config as JSON.
const CONFIG_KEY: &str = "gonka.llama_config";

/// Control tokens after the 256 byte tokens.
pub const TINY_BOS: u32 = 256;
/// End of text.
pub const TINY_EOS: u32 = 257;

/// The tiny model's shape.
pub fn tiny_config() -> LlamaConfig {
    LlamaConfig {
        layers: 2,
        d_model: 64,
        ffn: 128,
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        vocab: 260,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        max_seq: 512,
    }
}

/// Every tensor of a model of `config`: `(name, shape [n, k] or [len], values)`.
pub fn generate(config: &LlamaConfig, seed: u64) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let (d, f, kv) = (config.d_model, config.ffn, config.kv_heads * config.head_dim);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![("token_embd.weight".into(), vec![config.vocab, d])];
    for i in 0..config.layers {
        for (t, shape) in [
            ("attn_norm", vec![d]),
            ("attn_q", vec![d, d]),
            ("attn_k", vec![kv, d]),
            ("attn_v", vec![kv, d]),
            ("attn_output", vec![d, d]),
            ("ffn_norm", vec![d]),
            ("ffn_gate", vec![f, d]),
            ("ffn_up", vec![f, d]),
            ("ffn_down", vec![d, f]),
        ] {
            shapes.push((format!("blk.{i}.{t}.weight"), shape));
        }
    }
    shapes.push(("output_norm.weight".into(), vec![d]));
    let key: [u8; 32] = Sha256::new()
        .chain_update(b"gonka/tiny-llama/weights/v1")
        .chain_update(seed.to_le_bytes())
        .finalize()
        .into();
    let stream = StreamKey::new(&key);
    let mut at = 0u64;
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let len: usize = shape.iter().product();
            let mut words = vec![0u32; len];
            fill_words(&stream, at, &mut words);
            at += len as u64;
            let uniform = |w: u32| (w >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
            let values = if shape.len() == 1 {
                // Norm gains near one.
                words.iter().map(|&w| 1.0 + 0.1 * uniform(w)).collect()
            } else {
                // Products scaled 1/√k keep activations of order one; the (tied)
                // embeddings at 0.3 give logits of spread about one, so sampling
                // at temperature 1 has real choices, as a language model's does.
                let scale = if name == "token_embd.weight" { 0.3 } else { 1.0 / (shape[1] as f32).sqrt() };
                words.iter().map(|&w| scale * uniform(w)).collect()
            };
            (name, shape, values)
        })
        .collect()
}

/// The tiny model of `seed` as a safetensors file.
pub fn tiny_safetensors(seed: u64) -> Vec<u8> {
    let config = tiny_config();
    write_safetensors(&config, &generate(&config, seed))
}

/// Writes f32 tensors and `config` as a safetensors file.
pub fn write_safetensors(config: &LlamaConfig, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views = tensors.iter().zip(&bytes).map(|((name, shape, _), data)| {
        let view = TensorView::new(Dtype::F32, shape.clone(), data).expect("shape matches the data we wrote");
        (name.clone(), view)
    });
    let meta = HashMap::from([(CONFIG_KEY.to_string(), config_json(config))]);
    safetensors::serialize(views, Some(meta)).expect("in-memory serialization of well-formed tensors")
}

fn config_json(c: &LlamaConfig) -> String {
    serde_json::json!({
        "layers": c.layers, "d_model": c.d_model, "ffn": c.ffn, "heads": c.heads,
        "kv_heads": c.kv_heads, "head_dim": c.head_dim, "vocab": c.vocab,
        "rope_base": c.rope_base, "rms_eps": c.rms_eps, "max_seq": c.max_seq,
    })
    .to_string()
}

/// Largest dimension a config in a file may claim: far above any model here,
/// far below an allocation that could hurt.
const MAX_DIM: u64 = 1 << 20;

fn parse_config(json: &str) -> Result<LlamaConfig, LlamaError> {
    let bad = |what: String| LlamaError::Config(what);
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(format!("config JSON: {e}")))?;
    let dim = |k: &str| -> Result<usize, LlamaError> {
        let n =
            v.get(k).and_then(serde_json::Value::as_u64).ok_or_else(|| bad(format!("config lacks {k}")))?;
        if n > MAX_DIM {
            return Err(bad(format!("{k} = {n} exceeds {MAX_DIM}")));
        }
        Ok(n as usize)
    };
    let float = |k: &str| {
        v.get(k).and_then(serde_json::Value::as_f64).ok_or_else(|| bad(format!("config lacks {k}")))
    };
    let config = LlamaConfig {
        layers: dim("layers")?,
        d_model: dim("d_model")?,
        ffn: dim("ffn")?,
        heads: dim("heads")?,
        kv_heads: dim("kv_heads")?,
        head_dim: dim("head_dim")?,
        vocab: dim("vocab")?,
        rope_base: float("rope_base")?,
        rms_eps: float("rms_eps")? as f32,
        max_seq: dim("max_seq")?,
    };
    config.validate()?;
    Ok(config)
}

/// A safetensors file of f32 tensors as a [`WeightSource`].
#[derive(Debug)]
pub struct SafetensorsSource<'a> {
    file: SafeTensors<'a>,
}

impl<'a> SafetensorsSource<'a> {
    /// Parses `bytes` and the config in its metadata.
    pub fn parse(bytes: &'a [u8]) -> Result<(LlamaConfig, Self), LlamaError> {
        let bad = |e: safetensors::SafeTensorError| LlamaError::Config(format!("safetensors: {e}"));
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(bad)?;
        let json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(CONFIG_KEY))
            .ok_or_else(|| LlamaError::Config(format!("safetensors metadata lacks {CONFIG_KEY}")))?;
        let config = parse_config(json)?;
        let file = SafeTensors::deserialize(bytes).map_err(bad)?;
        Ok((config, Self { file }))
    }

    fn values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, LlamaError> {
        let err = |reason: String| LlamaError::Tensor { name: name.into(), reason };
        let t = self.file.tensor(name).map_err(|e| err(e.to_string()))?;
        if t.dtype() != Dtype::F32 {
            return Err(err(format!("expected F32, found {:?}", t.dtype())));
        }
        if t.shape() != shape {
            return Err(err(format!("expected shape {shape:?}, found {:?}", t.shape())));
        }
        Ok(t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

impl WeightSource for SafetensorsSource<'_> {
    fn matrix(&mut self, name: &str, n: usize, k: usize) -> Result<QMatrix, LlamaError> {
        let values = self.values(name, &[n, k])?;
        QMatrix::from_f32(n, k, &values).map_err(|source| LlamaError::Matrix { name: name.into(), source })
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, LlamaError> {
        self.values(name, &[len])
    }

    fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::llama::{Llama, LlamaScratch, Outputs, SeqStep};

    fn tiny(seed: u64) -> Llama {
        let bytes = tiny_safetensors(seed);
        let (config, mut source) = SafetensorsSource::parse(&bytes).expect("our own file parses");
        assert_eq!(config, tiny_config(), "config survives the metadata round trip");
        Llama::load(config, &mut source).expect("our own file loads")
    }

    fn argmax(v: &[f32]) -> usize {
        v.iter().enumerate().fold(0, |b, (i, x)| if *x > v[b] { i } else { b })
    }

    #[test]
    fn the_same_seed_gives_the_same_file_and_another_seed_another() {
        assert_eq!(tiny_safetensors(1), tiny_safetensors(1));
        assert_ne!(tiny_safetensors(1), tiny_safetensors(2));
    }

    #[test]
    fn incremental_decoding_matches_one_pass_over_the_whole_sequence() {
        let model = tiny(0);
        let tokens: Vec<u32> = b"hello tiny model".iter().map(|&b| u32::from(b)).collect();
        let mut s = LlamaScratch::default();
        let mut full = model.new_cache();
        let all = model
            .step(&mut [SeqStep { cache: &mut full, tokens: &tokens, outputs: Outputs::All }], &mut s)
            .expect("in range");
        let v = model.config().vocab;
        let mut cache = model.new_cache();
        let (prompt, rest) = tokens.split_at(5);
        let first = model
            .step(&mut [SeqStep { cache: &mut cache, tokens: prompt, outputs: Outputs::Last }], &mut s)
            .expect("in range");
        assert_eq!(first.logits, all.logits[4 * v..5 * v], "prefill's last row differs from the full pass");
        for (i, t) in rest.iter().enumerate() {
            let out = model
                .step(&mut [SeqStep { cache: &mut cache, tokens: &[*t], outputs: Outputs::Last }], &mut s)
                .expect("in range");
            let row = 5 + i;
            assert_eq!(
                out.logits,
                all.logits[row * v..(row + 1) * v],
                "decode step at position {row} differs"
            );
        }
        assert_eq!(cache.len(), tokens.len());
    }

    #[test]
    fn a_sequence_gives_the_same_logits_alone_and_in_a_batch() {
        // Guards the batch invariance validation depends on.
        let model = tiny(3);
        let mut s = LlamaScratch::default();
        let prompts: Vec<Vec<u32>> =
            (0..5u32).map(|i| (0..(3 + 7 * i)).map(|t| (t * 31 + i) % 256).collect()).collect();
        let mut alone = Vec::new();
        for p in &prompts {
            let mut c = model.new_cache();
            let out = model.step(&mut [SeqStep { cache: &mut c, tokens: p, outputs: Outputs::All }], &mut s);
            alone.push(out.expect("in range").logits);
        }
        let mut caches: Vec<_> = prompts.iter().map(|_| model.new_cache()).collect();
        let mut steps: Vec<SeqStep<'_>> = caches
            .iter_mut()
            .zip(&prompts)
            .map(|(cache, p)| SeqStep { cache, tokens: p, outputs: Outputs::All })
            .collect();
        let batch = model.step(&mut steps, &mut s).expect("in range");
        let v = model.config().vocab;
        let mut at = 0;
        for (i, (rows, want)) in batch.rows_per_seq.iter().zip(&alone).enumerate() {
            assert_eq!(&batch.logits[at..at + rows * v], &want[..], "sequence {i} differs inside the batch");
            at += rows * v;
        }
    }

    #[test]
    fn logits_are_finite_and_depend_on_the_context() {
        let model = tiny(0);
        let mut s = LlamaScratch::default();
        let mut a = model.new_cache();
        let mut b = model.new_cache();
        model
            .step(&mut [SeqStep { cache: &mut a, tokens: &[97, 98], outputs: Outputs::None }], &mut s)
            .expect("in range");
        let la = model
            .step(&mut [SeqStep { cache: &mut a, tokens: &[99], outputs: Outputs::Last }], &mut s)
            .expect("in range")
            .logits;
        let lb = model
            .step(&mut [SeqStep { cache: &mut b, tokens: &[99], outputs: Outputs::Last }], &mut s)
            .expect("in range")
            .logits;
        assert!(la.iter().all(|v| v.is_finite()));
        assert!(argmax(&la) < 260);
        assert_ne!(la, lb, "the cache had no effect on the next token's logits");
    }

    #[test]
    fn bad_input_is_refused_and_leaves_the_cache_alone() {
        let model = tiny(0);
        let mut s = LlamaScratch::default();
        let mut c = model.new_cache();
        let err =
            model.step(&mut [SeqStep { cache: &mut c, tokens: &[1, 260], outputs: Outputs::Last }], &mut s);
        assert!(matches!(err, Err(LlamaError::Token { token: 260, .. })));
        let long = vec![1u32; 513];
        let err = model.step(&mut [SeqStep { cache: &mut c, tokens: &long, outputs: Outputs::Last }], &mut s);
        assert!(matches!(err, Err(LlamaError::Context { len: 513, max: 512 })));
        assert_eq!(c.len(), 0);
        let mut bytes = tiny_safetensors(0);
        bytes.truncate(bytes.len() - 1);
        assert!(SafetensorsSource::parse(&bytes).is_err(), "a truncated file must be refused");
    }
}
