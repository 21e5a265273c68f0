//! The math of the Gonka host: the Sprint PoW function, the batched transformer
//! forward, CPU SIMD kernels.
//!
//! Start at [`pow`] for the per-nonce pieces of `../shared/spec/sprint-pow.md`
//! (input, permutation, target, distance), [`model`] for the seed-generated
//! weights, [`forward`] for the batched pass and [`gemm`] for the matrix
//! products under it. [`miner`] runs a Sprint on all cores; [`validate`]
//! recomputes a sample of someone else's proofs and decides with a binomial test.
//!
//! ```text
//!  sprint_seed ──► Model (bf16, packed)      node_seed, nonce ──► input [T,d], π
//!                      │                                   │
//!                      └────► forward_batch(B nonces) ◄────┘
//!                                   │ y [B,V]
//!                       permute, normalise, ‖z/‖z‖ − t‖ ──► dist < r_target ⇒ proof
//! ```
//!
//! Feature `profile`: Tracy spans on the miner and the forward pass.

pub mod bench;
pub mod chacha;
pub mod config;
pub mod encoding;
pub mod forward;
pub mod gemm;
pub mod llm;
pub mod miner;
pub mod model;
pub mod pow;
pub mod simd;
pub mod sprint;
pub mod team;
pub mod v2;
pub mod validate;

pub use config::ModelConfig;
pub use encoding::Hash32;
pub use gemm::Precision;
