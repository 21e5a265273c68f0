//! The model a host serves: the network's model (SmolLM2-135M-Instruct from
//! its GGUF file, with its tokenizer and chat template) or the seed-generated
//! tiny model that tests use (byte tokens, no template).

use std::path::Path;

use gonka_kernels::llm::gguf::Gguf;
use gonka_kernels::llm::llama::{Llama, LlamaError};
use gonka_kernels::llm::load::{LoadError, llama_config};
use gonka_kernels::llm::tiny::{SafetensorsSource, TINY_EOS, tiny_safetensors};
use gonka_kernels::llm::tokenizer::{ChatMessage, Tokenizer, TokenizerError};
use thiserror::Error;

/// A model that cannot be served.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The file or its tensors.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The tokenizer in the file.
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
}

/// A loaded model with what it needs to turn text into tokens and back.
#[derive(Debug)]
pub struct ServedModel {
    /// The name clients use (`/v1/models`).
    pub name: String,
    /// The network.
    pub llama: Llama,
    /// Text ↔ tokens; `None` for the tiny model, whose tokens are bytes.
    pub tokenizer: Option<Tokenizer>,
    /// Tokens that end a completion.
    pub stop_tokens: Vec<u32>,
}

impl ServedModel {
    /// Loads a GGUF llama file with its tokenizer.
    pub fn load_gguf(path: &Path, name: &str) -> Result<Self, ModelError> {
        let g = Gguf::open(path).map_err(LoadError::from)?;
        let config = llama_config(&g).map_err(LoadError::from)?;
        let llama = Llama::load(config, &mut gonka_kernels::llm::load::GgufSource { file: &g })
            .map_err(LoadError::from)?;
        let tokenizer = Tokenizer::from_gguf(&g)?;
        let stop_tokens = tokenizer.stop_tokens().to_vec();
        Ok(Self { name: name.into(), llama, tokenizer: Some(tokenizer), stop_tokens })
    }

    /// The tiny model of `seed`.
    pub fn tiny(seed: u64, name: &str) -> Result<Self, LlamaError> {
        let bytes = tiny_safetensors(seed);
        let (config, mut source) = SafetensorsSource::parse(&bytes)?;
        let llama = Llama::load(config, &mut source)?;
        Ok(Self { name: name.into(), llama, tokenizer: None, stop_tokens: vec![TINY_EOS] })
    }

    /// The prompt tokens of a chat (template applied, generation prompt added).
    pub fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, TokenizerError> {
        match &self.tokenizer {
            Some(t) => t.encode_chat(messages, true),
            None => {
                let mut out = vec![gonka_kernels::llm::tiny::TINY_BOS];
                for m in messages {
                    out.extend(
                        m.role.bytes().chain(*b": ").chain(m.content.bytes()).chain(*b"\n").map(u32::from),
                    );
                }
                Ok(out)
            }
        }
    }

    /// The prompt tokens of a plain completion prompt.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        match &self.tokenizer {
            Some(t) => t.encode(text),
            None => Ok(std::iter::once(gonka_kernels::llm::tiny::TINY_BOS)
                .chain(text.bytes().map(u32::from))
                .collect()),
        }
    }

    /// The bytes of `token` (nothing for a control token of the tiny model).
    pub fn token_bytes(&self, token: u32) -> Vec<u8> {
        match &self.tokenizer {
            Some(t) => t.bytes_of(token).map(<[u8]>::to_vec).unwrap_or_default(),
            None => u8::try_from(token).map(|b| vec![b]).unwrap_or_default(),
        }
    }

    /// The text of `tokens` (a final stop token left out).
    pub fn decode(&self, tokens: &[u32]) -> String {
        let body = match tokens.split_last() {
            Some((last, rest)) if self.stop_tokens.contains(last) => rest,
            _ => tokens,
        };
        let bytes: Vec<u8> = body.iter().flat_map(|&t| self.token_bytes(t)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Appends `token`'s bytes to `text` and returns the text completed since
    /// `sent` (held back while a character is unfinished).
    pub fn stream_text(&self, text: &mut Vec<u8>, sent: &mut usize, token: u32) -> String {
        text.extend(self.token_bytes(token));
        let pending = &text[*sent..];
        let valid = match std::str::from_utf8(pending) {
            Ok(_) => pending.len(),
            // An unfinished character at the end waits for the next token;
            // an invalid byte in the middle goes out as U+FFFD.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => pending.len(),
        };
        let out = String::from_utf8_lossy(&pending[..valid]).into_owned();
        *sent += valid;
        out
    }
}
