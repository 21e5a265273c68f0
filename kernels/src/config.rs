//! Model configurations (spec §2): the six integers that shape the Sprint model.

use std::fmt;
use std::str::FromStr;

/// `layers L, dim d, heads h, ffn f, vocab V, seq T`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModelConfig {
    /// Short name (`tiny`, `small`, `seed-64`, or `custom`).
    pub name: &'static str,
    /// Transformer layers `L`.
    pub layers: usize,
    /// Model width `d`.
    pub dim: usize,
    /// Attention heads `h`; head size is `d / h`.
    pub heads: usize,
    /// Feed-forward width `f`.
    pub ffn: usize,
    /// Output size `V`.
    pub vocab: usize,
    /// Positions per nonce `T`.
    pub seq: usize,
}

/// Unit tests and test vectors.
pub const TINY: ModelConfig =
    ModelConfig { name: "tiny", layers: 2, dim: 64, heads: 4, ffn: 256, vocab: 256, seq: 4 };
/// Integration tests and quick benches.
pub const SMALL: ModelConfig =
    ModelConfig { name: "small", layers: 8, dim: 256, heads: 8, ffn: 1024, vocab: 1024, seq: 4 };
/// The whitepaper's model, about 0.88 B parameters.
pub const SEED_64: ModelConfig =
    ModelConfig { name: "seed-64", layers: 64, dim: 512, heads: 128, ffn: 8192, vocab: 8192, seq: 4 };

/// Every named config.
pub const NAMED: [ModelConfig; 3] = [TINY, SMALL, SEED_64];

/// A config that cannot run the spec's model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// No named config has this name.
    #[error("unknown model config {0:?}; expected one of tiny, small, seed-64")]
    Unknown(String),
    /// The shape is not usable.
    #[error("invalid model config {name}: {why}")]
    Invalid {
        /// Config name.
        name: &'static str,
        /// What is wrong.
        why: &'static str,
    },
}

impl ModelConfig {
    /// Head size `e = d / h`.
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads
    }

    /// Checks the relations the forward pass relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |why| Err(ConfigError::Invalid { name: self.name, why });
        if self.layers == 0 || self.dim == 0 || self.heads == 0 || self.ffn == 0 {
            return bad("all sizes must be positive");
        }
        if self.vocab < 2 || self.seq == 0 {
            return bad("vocab must be at least 2 and seq at least 1");
        }
        if !self.dim.is_multiple_of(self.heads) || !self.head_dim().is_multiple_of(2) {
            return bad("dim must split into heads of even size (rotary pairs)");
        }
        Ok(())
    }

    /// Parameters in all weight tensors.
    pub fn param_count(&self) -> u64 {
        let (l, d, f, v) = (self.layers as u64, self.dim as u64, self.ffn as u64, self.vocab as u64);
        l * (4 * d * d + 3 * f * d) + v * d
    }

    /// Multiply-adds times two of one nonce's forward pass as the spec
    /// prescribes it (last layer at position `T−1` only), matrix products only.
    pub fn flops_per_nonce(&self) -> f64 {
        let (d, f, v, t) = (self.dim as f64, self.ffn as f64, self.vocab as f64, self.seq as f64);
        let l = self.layers as f64;
        let per_pos_layer = 2.0 * (4.0 * d * d + 3.0 * d * f);
        // Last layer: k and v for all positions, q/o/ffn for the last one only.
        let last = 2.0 * (2.0 * d * d) * t + per_pos_layer - 2.0 * 2.0 * d * d;
        per_pos_layer * t * (l - 1.0) + last + 2.0 * d * v
    }
}

impl FromStr for ModelConfig {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NAMED.iter().find(|c| c.name == s).copied().ok_or_else(|| ConfigError::Unknown(s.to_owned()))
    }
}

impl fmt::Display for ModelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (L={} d={} h={} f={} V={} T={})",
            self.name, self.layers, self.dim, self.heads, self.ffn, self.vocab, self.seq
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_configs_are_valid_and_sized() {
        for c in NAMED {
            c.validate().expect("named config must be valid");
        }
        assert_eq!(SEED_64.head_dim(), 4);
        // About 0.88 B parameters, as the spec says.
        assert!((SEED_64.param_count() as f64 - 0.88e9).abs() < 0.02e9);
        // About 7 GFLOP per nonce.
        assert!((SEED_64.flops_per_nonce() / 1e9 - 7.0).abs() < 0.3);
    }
}
