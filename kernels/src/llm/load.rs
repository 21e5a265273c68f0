//! Loading a Llama-architecture GGUF file: the config from its metadata, the
//! tensors as [`QMatrix`] in their stored blocks (F16/BF16 widened to f32).

use std::path::Path;

use super::gguf::{Gguf, GgufError};
use super::llama::{Llama, LlamaConfig, LlamaError, WeightSource};
use super::qmatmul::{QMatrix, WeightFormat};
use super::quant::GgmlType;

/// Longest context we serve, whatever the file allows: bounds the RoPE
/// table and a request's KV cache (SmolLM2 declares 8192).
pub const MAX_CONTEXT: usize = 8192;

/// The model config of a GGUF llama file.
pub fn llama_config(g: &Gguf) -> Result<LlamaConfig, LlamaError> {
    let arch = g.get_str("general.architecture").map_err(config)?;
    if arch != "llama" {
        return Err(LlamaError::Config(format!("architecture {arch:?}, expected \"llama\"")));
    }
    let u = |k: &str| g.get_u32(&format!("llama.{k}")).map(|v| v as usize).map_err(config);
    let heads = u("attention.head_count")?;
    let d_model = u("embedding_length")?;
    let embed = g
        .tensor_info("token_embd.weight")
        .ok_or_else(|| LlamaError::Tensor { name: "token_embd.weight".into(), reason: "missing".into() })?;
    let c = LlamaConfig {
        layers: u("block_count")?,
        d_model,
        ffn: u("feed_forward_length")?,
        heads,
        kv_heads: u("attention.head_count_kv")?,
        head_dim: d_model.checked_div(heads).unwrap_or(0),
        vocab: embed.n_rows(),
        rope_base: f64::from(g.get_f32("llama.rope.freq_base").map_err(config)?),
        rms_eps: g.get_f32("llama.attention.layer_norm_rms_epsilon").map_err(config)?,
        max_seq: u("context_length")?.min(MAX_CONTEXT),
    };
    c.validate()?;
    Ok(c)
}

fn config(e: GgufError) -> LlamaError {
    LlamaError::Config(e.to_string())
}

/// Opens a GGUF file and loads its model.
pub fn load_gguf(path: &Path) -> Result<(Gguf, Llama), LoadError> {
    let g = Gguf::open(path)?;
    let config = llama_config(&g)?;
    let model = Llama::load(config, &mut GgufSource { file: &g })?;
    Ok((g, model))
}

/// A model file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The container.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The model in it.
    #[error(transparent)]
    Model(#[from] LlamaError),
}

/// The tensors of a parsed GGUF file.
#[derive(Debug)]
pub struct GgufSource<'a> {
    /// The file.
    pub file: &'a Gguf,
}

impl GgufSource<'_> {
    fn view(&self, name: &str, n: usize, k: usize) -> Result<super::gguf::TensorView<'_>, LlamaError> {
        let t = self
            .file
            .tensor(name)
            .map_err(|e| LlamaError::Tensor { name: name.into(), reason: e.to_string() })?;
        if t.info.row_len() != k || t.info.n_rows() != n {
            return Err(LlamaError::Tensor {
                name: name.into(),
                reason: format!("expected {n} rows of {k}, found dims {:?}", t.info.dims),
            });
        }
        Ok(t)
    }
}

impl WeightSource for GgufSource<'_> {
    fn matrix(&mut self, name: &str, n: usize, k: usize) -> Result<QMatrix, LlamaError> {
        let t = self.view(name, n, k)?;
        let matrix = |format, data: Vec<u8>| {
            QMatrix::new(format, n, k, data)
                .map_err(|source| LlamaError::Matrix { name: name.into(), source })
        };
        match t.info.dtype {
            GgmlType::Q4_1 => matrix(WeightFormat::Q4_1, t.data.to_vec()),
            GgmlType::Q8_0 => matrix(WeightFormat::Q8_0, t.data.to_vec()),
            GgmlType::Q4_0 => matrix(WeightFormat::Q4_0, t.data.to_vec()),
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
                let values = t
                    .dequantize()
                    .map_err(|e| LlamaError::Tensor { name: name.into(), reason: e.to_string() })?;
                QMatrix::from_f32(n, k, &values)
                    .map_err(|source| LlamaError::Matrix { name: name.into(), source })
            }
            other => {
                Err(LlamaError::Tensor { name: name.into(), reason: format!("unsupported type {other:?}") })
            }
        }
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, LlamaError> {
        let t = self.view(name, 1, len)?;
        t.dequantize().map_err(|e| LlamaError::Tensor { name: name.into(), reason: e.to_string() })
    }

    fn has(&self, name: &str) -> bool {
        self.file.tensor_info(name).is_some()
    }
}
