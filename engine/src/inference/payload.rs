//! What travels off chain with an inference task: the request in tokens
//! (whose hash is the prompt commitment on chain) and the executor's output
//! (whose hash is the output commitment).

use gonka_kernels::encoding::{Hash32, tagged_hash};
use gonka_kernels::llm::sampling::SamplingParams;
use rkyv::{Archive, Deserialize, Serialize};

use crate::crypto::wire::{WireError, bound};

/// Longest prompt a request may carry, in tokens: the served context.
pub const MAX_PROMPT_TOKENS: usize = 8192;

/// Most tokens a request may ask to generate.
pub const MAX_OUTPUT_TOKENS: usize = 4096;

/// Highest temperature accepted (OpenAI's bound).
pub const MAX_TEMPERATURE: f32 = 2.0;

/// An inference request as the executor runs it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct InferencePayload {
    /// Index of the model in the chain's model list.
    pub model: u32,
    /// The prompt, chat template applied.
    pub prompt: Vec<u32>,
    /// Most tokens to generate.
    pub max_output_tokens: u32,
    /// Sampling temperature (0: greedy).
    pub temperature: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// Seed of the sampling noise.
    pub seed: u64,
}

impl InferencePayload {
    /// The prompt commitment the chain's request carries.
    pub fn commitment(&self) -> Hash32 {
        let tokens: Vec<u8> = self.prompt.iter().flat_map(|t| t.to_le_bytes()).collect();
        tagged_hash(
            "gonka/inference-payload",
            &[
                &self.model.to_le_bytes(),
                &(self.prompt.len() as u64).to_le_bytes(),
                &tokens,
                &self.max_output_tokens.to_le_bytes(),
                &self.temperature.to_bits().to_le_bytes(),
                &self.top_p.to_bits().to_le_bytes(),
                &self.seed.to_le_bytes(),
            ],
        )
    }

    /// The sampling parameters.
    pub fn params(&self) -> SamplingParams {
        SamplingParams { temperature: self.temperature, top_p: self.top_p, seed: self.seed }
    }

    /// Tokens the chain request must allow: prompt and output.
    pub fn token_budget(&self) -> u32 {
        self.prompt.len() as u32 + self.max_output_tokens
    }

    /// Checks every field against its bound.
    pub fn check_bounds(&self) -> Result<(), WireError> {
        const KIND: &str = "inference payload";
        bound(KIND, "prompt tokens", self.prompt.len(), MAX_PROMPT_TOKENS)?;
        bound(KIND, "output tokens", self.max_output_tokens as usize, MAX_OUTPUT_TOKENS)?;
        let bad = |reason: String| Err(WireError::Malformed { kind: KIND, reason });
        if self.prompt.is_empty() || self.max_output_tokens == 0 {
            return bad("an empty prompt or no output tokens".into());
        }
        if !(0.0..=MAX_TEMPERATURE).contains(&self.temperature) {
            return bad(format!("temperature {} outside [0, {MAX_TEMPERATURE}]", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p {} outside (0, 1]", self.top_p));
        }
        Ok(())
    }
}

/// The output commitment of generated tokens.
pub fn output_commitment(tokens: &[u32]) -> Hash32 {
    let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
    tagged_hash("gonka/inference-output", &[&(tokens.len() as u64).to_le_bytes(), &bytes])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> InferencePayload {
        InferencePayload {
            model: 0,
            prompt: vec![1, 2, 3],
            max_output_tokens: 8,
            temperature: 0.7,
            top_p: 0.9,
            seed: 5,
        }
    }

    #[test]
    fn every_field_changes_the_commitment() {
        let base = payload().commitment();
        let variants = [
            InferencePayload { model: 1, ..payload() },
            InferencePayload { prompt: vec![1, 2], ..payload() },
            InferencePayload { max_output_tokens: 9, ..payload() },
            InferencePayload { temperature: 0.8, ..payload() },
            InferencePayload { top_p: 1.0, ..payload() },
            InferencePayload { seed: 6, ..payload() },
        ];
        for v in variants {
            assert_ne!(v.commitment(), base, "{v:?} has the base's commitment");
        }
        assert_ne!(output_commitment(&[1, 2]), output_commitment(&[1, 2, 0]));
    }

    #[test]
    fn out_of_bound_fields_are_refused() {
        assert!(payload().check_bounds().is_ok());
        for bad in [
            InferencePayload { prompt: vec![], ..payload() },
            InferencePayload { prompt: vec![0; MAX_PROMPT_TOKENS + 1], ..payload() },
            InferencePayload { max_output_tokens: 0, ..payload() },
            InferencePayload { temperature: f32::NAN, ..payload() },
            InferencePayload { temperature: 2.5, ..payload() },
            InferencePayload { top_p: 0.0, ..payload() },
        ] {
            assert!(bad.check_bounds().is_err(), "{bad:?} passed");
        }
    }
}
