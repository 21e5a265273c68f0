//! Inference on a real language model: the GGUF container ([`gguf`]), its
//! quantized blocks ([`quant`]), the byte-level BPE tokenizer and chat
//! template ([`tokenizer`]), a seed-generated tiny Llama for tests ([`tiny`]).

pub mod artifact;
pub mod gguf;
pub mod llama;
pub mod load;
pub mod qmatmul;
pub mod quant;
pub mod sampling;
pub mod tiny;
pub mod tokenizer;
