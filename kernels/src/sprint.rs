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

/// Spec v2 (`docs/spec/sprint-pow-v2.md`): a nonce's score is its digest's
/// leading 64 bits as a fraction; a proof is a digest below the exact 256-bit
/// threshold. Recomputation is bit-exact, so no tolerance applies.
#[derive(Debug)]
pub struct SprintV2<'m> {
    model: &'m crate::v2::Model,
    sprint_seed: Hash32,
    node_seed: Hash32,
    nonces_per_proof: u64,
    threshold: Hash32,
}

impl<'m> SprintV2<'m> {
    /// Binds `model` (generated from `sprint_seed`) to the host with
    /// `node_seed`, at one proof per `nonces_per_proof` nonces.
    pub fn new(
        model: &'m crate::v2::Model,
        sprint_seed: Hash32,
        node_seed: Hash32,
        nonces_per_proof: u64,
    ) -> Self {
        Self {
            model,
            sprint_seed,
            node_seed,
            nonces_per_proof,
            threshold: crate::v2::proof_threshold(nonces_per_proof),
        }
    }

    /// The digests of `nonces` (for cross-implementation checks), computed in
    /// batches of `batch` on `threads` cores.
    pub fn digests(&self, nonces: &[u64], batch: usize, threads: usize) -> Vec<Hash32> {
        let v = self.model.config.vocab;
        let mut out = vec![[0u8; 32]; nonces.len()];
        let jobs: Vec<(&[u64], &mut [Hash32])> =
            nonces.chunks(batch.max(1)).zip(out.chunks_mut(batch.max(1))).collect();
        let next = std::sync::Mutex::new(jobs.into_iter());
        std::thread::scope(|scope| {
            for _ in 0..threads.max(1) {
                scope.spawn(|| {
                    let mut scratch = V2Scratch::default();
                    let mut scored = vec![Scored::default(); batch.max(1)];
                    loop {
                        let job = next.lock().unwrap_or_else(|e| e.into_inner()).next();
                        let Some((ns, digests)) = job else { break };
                        self.run(&self.prepare(ns), &mut scratch, &mut scored, &|| false);
                        for (i, d) in digests.iter_mut().enumerate() {
                            let y = &scratch.y[i * v..(i + 1) * v];
                            *d = crate::v2::digest(&self.sprint_seed, &self.node_seed, ns[i], y);
                        }
                    }
                });
            }
        });
        out
    }
}

/// A v2 batch: int8 inputs `[n·T, d]` and the nonces they belong to.
#[derive(Debug)]
pub struct V2Batch {
    inputs: Vec<i8>,
    nonces: Vec<u64>,
}

/// A v2 worker's buffers.
#[derive(Debug, Default)]
pub struct V2Scratch {
    forward: crate::v2::Scratch,
    y: Vec<i32>,
}

impl SprintFunction for SprintV2<'_> {
    type Prepared = V2Batch;
    type Scratch = V2Scratch;

    fn version(&self) -> &'static str {
        "v2"
    }

    fn config(&self) -> &ModelConfig {
        &self.model.config
    }

    fn prepare(&self, nonces: &[u64]) -> V2Batch {
        let c = &self.model.config;
        let len = c.seq * c.dim;
        let mut inputs = vec![0i8; nonces.len() * len];
        for (i, &nonce) in nonces.iter().enumerate() {
            crate::v2::fill_input(
                &self.sprint_seed,
                &self.node_seed,
                nonce,
                &mut inputs[i * len..(i + 1) * len],
            );
        }
        V2Batch { inputs, nonces: nonces.to_vec() }
    }

    fn run(&self, b: &V2Batch, s: &mut V2Scratch, out: &mut [Scored], cancelled: &dyn Fn() -> bool) -> bool {
        let (n, v) = (b.nonces.len(), self.model.config.vocab);
        s.y.resize(n * v, 0);
        let kernel = crate::v2::gemm::Kernel::best();
        let y = &mut s.y[..n * v];
        if !crate::v2::forward::forward_batch_until(
            kernel,
            self.model,
            &b.inputs,
            n,
            &mut s.forward,
            y,
            cancelled,
        ) {
            return false;
        }
        for (i, o) in out[..n].iter_mut().enumerate() {
            let d =
                crate::v2::digest(&self.sprint_seed, &self.node_seed, b.nonces[i], &y[i * v..(i + 1) * v]);
            *o = Scored { score: crate::v2::score(&d), proof: crate::v2::is_proof_at(&d, &self.threshold) };
        }
        true
    }

    fn claims_proof(&self, claimed: f64) -> bool {
        claimed <= 1.0 / self.nonces_per_proof as f64
    }

    fn is_mismatch(&self, recomputed: &Scored, _tolerance: f64) -> bool {
        // Exact arithmetic: the recomputed digest decides, with no allowance.
        !recomputed.proof
    }
}
