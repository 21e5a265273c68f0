//! Sprint PoW v2 (`docs/spec/sprint-pow-v2.md`): an integer-exact forward pass
//! whose exact output is hashed, so a proof is a hash below a threshold and
//! validation is a bitwise recomputation.
//!
//! Start at [`Model::generate`] (int8 weights from the Sprint seed, packed for
//! the int8 kernels), [`fill_input`] (one nonce's int8 input), then
//! [`forward_batch`] (many nonces at once) and [`digest`] / [`is_proof`].
//! [`gemm`] holds the exact int8 matrix products (AVX-512 VNNI with a portable
//! fallback); [`arith`] the spec's integer operations and tables, and
//! [`lanes`] their vectorised forms that the forward pass runs.
//!
//! ```text
//!  sprint_seed ──► Model (int8, packed)     node_seed, nonce ──► input [T,d] int8
//!                      │                                 │
//!                      └──► forward_batch(B nonces) ◄────┘   (int32 sums, exact)
//!                                  │ y [B,V] int32
//!     H("gonka/proof-v2", sprint_seed, node_seed, nonce, y) < ⌊2²⁵⁶/900⌋ ⇒ proof
//! ```

pub mod arith;
pub mod forward;
pub mod gemm;
pub mod lanes;
pub mod model;
pub mod proof;

pub use arith::Shifts;
pub use forward::{Scratch, forward_batch};
pub use model::{Model, fill_input};
pub use proof::{DEFAULT_NONCES_PER_PROOF, digest, is_proof, is_proof_at, proof_threshold, score};

/// Why the v2 function cannot run on a model config.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum V2Error {
    /// The shape itself is unusable (see [`crate::config::ModelConfig::validate`]).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// An intermediate could leave the integer range the spec guarantees.
    #[error("config {name}: {what} can reach {bound}, above the limit {limit}")]
    Range {
        /// Config name.
        name: &'static str,
        /// Which quantity.
        what: &'static str,
        /// Its worst-case magnitude.
        bound: u128,
        /// The largest value allowed.
        limit: u128,
    },
}
