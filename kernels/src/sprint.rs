//! The Sprint function as the miner and validators see it: nonces in, one
//! [`Scored`] per nonce out. [`SprintV1`] is spec v1 (distance to a target);
//! other versions implement the same trait, so the miner, validation and tools
//! are written once.

use crate::ModelConfig;
use crate::encoding::Hash32;
use crate::forward::{ForwardScratch, Rope, forward_batch_until};
use crate::gemm::Precision;
use crate::model::Model;
use crate::pow;

/// One nonce's result.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Scored {
    /// The function's figure of merit: v1's distance, or another version's
    /// score; smaller is better.
    pub score: f64,
    /// Whether the nonce is a proof.
    pub proof: bool,
}

/// A Sprint function bound to one Sprint and one host.
pub trait SprintFunction: Sync {
    /// A batch's inputs, prepared off the compute threads.
    type Prepared: Send;
    /// Per-worker buffers.
    type Scratch: Default + Send;

    /// The version's short name (`v1`, `v2`).
    fn version(&self) -> &'static str;

    /// The model shape.
    fn config(&self) -> &ModelConfig;

    /// Prepares `nonces` (any order, any gaps).
    fn prepare(&self, nonces: &[u64]) -> Self::Prepared;

    /// Scores a prepared batch into `out` (one per nonce). Gives up and
    /// returns `false` once `cancelled` says so (`out` is then unspecified).
    fn run(
        &self,
        prepared: &Self::Prepared,
        scratch: &mut Self::Scratch,
        out: &mut [Scored],
        cancelled: &dyn Fn() -> bool,
    ) -> bool;

    /// Whether a claimed score says "proof" by its own account.
    fn claims_proof(&self, claimed: f64) -> bool;

    /// Whether a validator's recomputation fails to back a claimed proof,
    /// allowing `tolerance` of honest numeric noise where the version has any.
    fn is_mismatch(&self, recomputed: &Scored, tolerance: f64) -> bool;
}

/// Spec v1: a nonce's score is its distance; a proof is below `r_target`.
#[derive(Debug)]
pub struct SprintV1<'m> {
    model: &'m Model,
    sprint_seed: Hash32,
    node_seed: Hash32,
    r_target: f32,
    precision: Precision,
    target: Vec<f64>,
    rope: Rope,
}

impl<'m> SprintV1<'m> {
    /// Binds `model` (generated from `sprint_seed`) to the host with `node_seed`.
    pub fn new(
        model: &'m Model,
        sprint_seed: Hash32,
        node_seed: Hash32,
        r_target: f32,
        precision: Precision,
    ) -> Self {
        let c = model.config;
        Self {
            model,
            sprint_seed,
            node_seed,
            r_target,
            precision,
            target: pow::target(&sprint_seed, c.vocab),
            rope: Rope::new(c.seq, c.head_dim()),
        }
    }
}

/// A v1 batch: inputs `[n·T, d]` and permutations `[n, V]`.
#[derive(Debug)]
pub struct V1Batch {
    inputs: Vec<f32>,
    perms: Vec<u32>,
    n: usize,
}

/// A v1 worker's buffers.
#[derive(Debug, Default)]
pub struct V1Scratch {
    forward: ForwardScratch,
    y: Vec<f32>,
}

impl SprintFunction for SprintV1<'_> {
    type Prepared = V1Batch;
    type Scratch = V1Scratch;

    fn version(&self) -> &'static str {
        "v1"
    }

    fn config(&self) -> &ModelConfig {
        &self.model.config
    }

    fn prepare(&self, nonces: &[u64]) -> V1Batch {
        let c = &self.model.config;
        let (len, v) = (c.seq * c.dim, c.vocab);
        let mut b = V1Batch {
            inputs: vec![0f32; nonces.len() * len],
            perms: vec![0u32; nonces.len() * v],
            n: nonces.len(),
        };
        let mut words = Vec::new();
        for (i, &nonce) in nonces.iter().enumerate() {
            let (s, n) = (&self.sprint_seed, &self.node_seed);
            pow::fill_input(s, n, nonce, &mut b.inputs[i * len..(i + 1) * len], &mut words);
            pow::fill_permutation(s, n, nonce, &mut b.perms[i * v..(i + 1) * v], &mut words);
        }
        b
    }

    fn run(&self, b: &V1Batch, s: &mut V1Scratch, out: &mut [Scored], cancelled: &dyn Fn() -> bool) -> bool {
        let v = self.model.config.vocab;
        s.y.resize(b.n * v, 0.0);
        let y = &mut s.y[..b.n * v];
        if !forward_batch_until(
            self.model,
            &self.rope,
            &b.inputs,
            b.n,
            self.precision,
            &mut s.forward,
            y,
            cancelled,
        ) {
            return false;
        }
        for (i, o) in out[..b.n].iter_mut().enumerate() {
            let dist = pow::distance(&y[i * v..(i + 1) * v], &b.perms[i * v..(i + 1) * v], &self.target);
            *o = Scored { score: dist, proof: dist < self.r_target as f64 };
        }
        true
    }

    fn claims_proof(&self, claimed: f64) -> bool {
        claimed < self.r_target as f64
    }

    fn is_mismatch(&self, recomputed: &Scored, tolerance: f64) -> bool {
        // A non-number never backs a claim.
        recomputed.score.is_nan() || recomputed.score >= self.r_target as f64 + tolerance
    }
}
