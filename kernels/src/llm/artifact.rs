//! What an executor commits to about a completion, and how a validator
//! checks it with one teacher-forced pass over prompt and output.
//!
//! Per generated token the executor records the top-[`TOP_K`] log-probs of
//! the distribution it sampled from and a 64-bit locality-sensitive digest of
//! the final hidden state (signs of its projections on 64 seeded directions).
//! Records are grouped in chunks of [`CHUNK_TOKENS`]; the artifact's
//! commitment hashes the chunks in order, so a later dispute can open one
//! chunk at a time.
//!
//! ```text
//!  executor:  generate o_1..o_n  ──► per token: top-4 (id, logprob), digest(h_t)
//!  validator: one pass over prompt ‖ o_1..o_{n−1}, logits and h for the last n rows
//!             ├─ o_t = Gumbel-max(logits_t, seed, position)      (within margin)
//!             ├─ |logprob_exec − logprob_val| ≤ τ for the recorded top-4
//!             └─ hamming(digest_exec, digest_val) ≤ τ_bits
//! ```
//!
//! The check has no shortcut: a length, a token count or a stop that does not
//! match is a failure, as is a record missing for a token.

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::llama::{Llama, LlamaError, LlamaScratch, Outputs, SeqStep};
use super::sampling::{ROW_TOP, RowStats, SamplerScratch, SamplingParams, sample_with, token_gap_with};
use crate::chacha::{StreamKey, fill_words};

/// Log-probs recorded per token.
pub const TOP_K: usize = ROW_TOP;

/// Tokens per artifact chunk.
pub const CHUNK_TOKENS: usize = 32;

/// Bits of the hidden-state digest.
const DIGEST_BITS: usize = 64;

/// What the executor records about one generated token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenRecord {
    /// The most probable ids of the distribution the token was sampled from.
    pub top_ids: [u32; TOP_K],
    /// Their log-probabilities (temperature 1).
    pub top_logprobs: [f32; TOP_K],
    /// Signs of the final hidden state's projections.
    pub digest: u64,
}

/// The executor's record of a whole completion.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Artifact {
    /// One per output token.
    pub records: Vec<TokenRecord>,
}

impl Artifact {
    /// Bytes of one encoded record.
    pub const RECORD_BYTES: usize = TOP_K * 8 + 8;

    /// The commitment: a hash over the chunk hashes, in order.
    pub fn commitment(&self) -> [u8; 32] {
        let mut outer = Sha256::new();
        outer.update(b"gonka/inference-artifact/v1");
        outer.update((self.records.len() as u64).to_le_bytes());
        for chunk in self.records.chunks(CHUNK_TOKENS) {
            let mut inner = Sha256::new();
            for r in chunk {
                inner.update(encode_record(r));
            }
            outer.update(inner.finalize());
        }
        outer.finalize().into()
    }

    /// The records as bytes (for the wire).
    pub fn encode(&self) -> Vec<u8> {
        self.records.iter().flat_map(encode_record).collect()
    }

    /// Records from bytes; `None` when the length is not whole records.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(Self::RECORD_BYTES) {
            return None;
        }
        let records = bytes
            .chunks_exact(Self::RECORD_BYTES)
            .map(|b| {
                let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
                let mut r = TokenRecord { top_ids: [0; TOP_K], top_logprobs: [0.0; TOP_K], digest: 0 };
                for k in 0..TOP_K {
                    r.top_ids[k] = word(8 * k);
                    r.top_logprobs[k] = f32::from_bits(word(8 * k + 4));
                }
                r.digest = u64::from(word(8 * TOP_K)) | (u64::from(word(8 * TOP_K + 4)) << 32);
                r
            })
            .collect();
        Some(Self { records })
    }
}

fn encode_record(r: &TokenRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(Artifact::RECORD_BYTES);
    for k in 0..TOP_K {
        out.extend_from_slice(&r.top_ids[k].to_le_bytes());
        out.extend_from_slice(&r.top_logprobs[k].to_bits().to_le_bytes());
    }
    out.extend_from_slice(&r.digest.to_le_bytes());
    out
}

/// The 64 projection directions for hidden states of width `d`, fixed for
/// everyone (a ChaCha20 stream under a constant key), `[64][d]`.
#[derive(Debug, Clone)]
pub struct DigestBasis {
    d: usize,
    directions: Vec<f32>,
}

impl DigestBasis {
    /// The basis for width `d`.
    pub fn new(d: usize) -> Self {
        let key: [u8; 32] = Sha256::digest(b"gonka/inference-artifact/digest-basis/v1").into();
        let mut words = vec![0u32; DIGEST_BITS * d];
        fill_words(&StreamKey::new(&key), 0, &mut words);
        let directions = words.iter().map(|&w| (w >> 8) as f32 / (1u32 << 23) as f32 - 1.0).collect();
        Self { d, directions }
    }

    /// Bit `i` is set when the projection of `h` on direction `i` is positive.
    pub fn digest(&self, h: &[f32]) -> u64 {
        assert_eq!(h.len(), self.d, "hidden state of the basis's width");
        #[cfg(target_arch = "x86_64")]
        if crate::simd::has_avx512() {
            // SAFETY: AVX-512F is present, checked by `has_avx512`.
            return unsafe { digest_avx512(&self.directions, h) };
        }
        digest_generic(&self.directions, h)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn digest_avx512(directions: &[f32], h: &[f32]) -> u64 {
    digest_generic(directions, h)
}

/// Each projection summed in sixteen lanes, folded in halves: a fixed order,
/// the same bits on every build.
#[inline(always)]
fn digest_generic(directions: &[f32], h: &[f32]) -> u64 {
    const LANES: usize = 16;
    let mut bits = 0u64;
    for (i, dir) in directions.chunks_exact(h.len()).enumerate() {
        let mut acc = [0f32; LANES];
        let (body, tail) = (dir.len() / LANES * LANES, dir.len() % LANES);
        for (a, b) in dir[..body].chunks_exact(LANES).zip(h[..body].chunks_exact(LANES)) {
            for j in 0..LANES {
                acc[j] += a[j] * b[j];
            }
        }
        for j in 0..tail {
            acc[j] += dir[body + j] * h[body + j];
        }
        let mut w = LANES;
        while w > 1 {
            w /= 2;
            for j in 0..w {
                acc[j] += acc[j + w];
            }
        }
        if acc[0] > 0.0 {
            bits |= 1 << i;
        }
    }
    bits
}

/// `log softmax(logits)[id]` for the top ids, from one row.
pub fn record(logits: &[f32], hidden: &[f32], basis: &DigestBasis) -> TokenRecord {
    record_with(&RowStats::new(logits, 1.0), hidden, basis)
}

/// [`record`] given the row's statistics (at any temperature: the record's
/// log-probs are at temperature 1).
pub fn record_with(stats: &RowStats, hidden: &[f32], basis: &DigestBasis) -> TokenRecord {
    let lse = stats.log_sum_exp();
    TokenRecord {
        top_ids: stats.top.map(|t| t.0),
        top_logprobs: stats.top.map(|t| (t.1 as f64 - lse) as f32),
        digest: basis.digest(hidden),
    }
}

/// How far an honest validator's recomputation may drift from the executor's.
///
/// The defaults come from measured honest variation (`docs/inference.md`):
/// the kernels are batch-invariant, so an f32 executor drifts by exactly
/// zero at any batch size; an executor with bf16 activations drifted at most
/// 0.222 in log-prob, 4 digest bits and 0.098 in token score over 512
/// SmolLM2 completions, and the defaults leave 2–3× room above that.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Largest gap between the sampled token's perturbed score and the best.
    pub token_margin: f64,
    /// Probability mass by which the executor's nucleus may differ from the
    /// validator's (see [`super::sampling::token_gap`]).
    pub nucleus_slack: f64,
    /// Largest |Δ log-prob| on a recorded top entry.
    pub logprob: f32,
    /// Largest Hamming distance between digests of one token.
    pub digest_bits: u32,
    /// Tokens allowed to miss the logprob or digest bound (not the token check).
    pub soft_misses: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { token_margin: 0.3, nucleus_slack: 0.02, logprob: 0.5, digest_bits: 12, soft_misses: 0 }
    }
}

/// The completion under check.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The prompt's tokens.
    pub prompt: &'a [u32],
    /// The output's tokens, a final stop token included when generation stopped on one.
    pub output: &'a [u32],
    /// Sampling parameters and seed of the request.
    pub params: SamplingParams,
    /// The request's token budget.
    pub max_tokens: usize,
    /// Tokens that end generation.
    pub stop_tokens: &'a [u32],
    /// The executor's records.
    pub artifact: &'a Artifact,
}

/// Why a completion failed its check (the first reason found).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// The output is empty, longer than the budget, or stops where it may not.
    Length { tokens: usize, max_tokens: usize },
    /// A stop token inside the output, or none at the end of a short output.
    Stop { position: usize },
    /// The artifact's record count differs from the output's length.
    Records { records: usize, tokens: usize },
    /// A token is not what sampling gives from the model's logits.
    Token { position: usize, token: u32 },
    /// Recorded log-probs or hidden digests drift beyond the thresholds.
    Drift { misses: usize, worst_logprob: f32, worst_bits: u32 },
}

/// Numbers of one check, for measuring honest variation.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// The verdict.
    pub verdict: Verdict,
    /// Largest |Δ log-prob| seen.
    pub worst_logprob: f32,
    /// Largest digest distance seen.
    pub worst_bits: u32,
    /// Largest token score gap seen.
    pub worst_token_gap: f64,
}

/// Checks `claim` against `model` in one teacher-forced pass.
pub fn check(
    model: &Llama,
    claim: &Claim<'_>,
    thresholds: &Thresholds,
    scratch: &mut LlamaScratch,
) -> Result<CheckReport, LlamaError> {
    let n = claim.output.len();
    let fail = |verdict| Ok(CheckReport { verdict, worst_logprob: 0.0, worst_bits: 0, worst_token_gap: 0.0 });
    if n == 0 || n > claim.max_tokens || claim.prompt.is_empty() {
        return fail(Verdict::Length { tokens: n, max_tokens: claim.max_tokens });
    }
    if let Some(p) = claim.output[..n - 1].iter().position(|t| claim.stop_tokens.contains(t)) {
        return fail(Verdict::Stop { position: p });
    }
    let stopped = claim.stop_tokens.contains(&claim.output[n - 1]);
    let at_context = claim.prompt.len() + n >= model.config().max_seq;
    if !stopped && n < claim.max_tokens && !at_context {
        return fail(Verdict::Stop { position: n - 1 });
    }
    if claim.artifact.records.len() != n {
        return fail(Verdict::Records { records: claim.artifact.records.len(), tokens: n });
    }
    let mut input = claim.prompt.to_vec();
    input.extend_from_slice(&claim.output[..n - 1]);
    let mut cache = model.new_cache();
    let out = model.step_check(
        &mut [SeqStep { cache: &mut cache, tokens: &input, outputs: Outputs::Tail(n) }],
        scratch,
    )?;
    let (v, d) = (model.config().vocab, model.config().d_model);
    let basis = DigestBasis::new(d);
    // Each position is judged on its own (two full-vocabulary passes of
    // exponentials each), so they run in parallel; the fold below takes them
    // in order, and so reports exactly what a sequential check would.
    let judged: Vec<Judged> = claim
        .output
        .par_iter()
        .zip(&claim.artifact.records)
        .enumerate()
        .map_init(SamplerScratch::default, |sampler, (t, (&token, rec))| {
            let logits = &out.logits[t * v..(t + 1) * v];
            let position = (claim.prompt.len() + t) as u32;
            let stats = RowStats::new(logits, claim.params.temperature);
            let gap = token_gap_with(
                logits,
                &stats,
                &claim.params,
                position,
                token,
                thresholds.nucleus_slack,
                sampler,
            );
            if gap > thresholds.token_margin {
                // Later positions are never looked at.
                return Judged { gap, drift: 0.0, bits: 0 };
            }
            let lse = stats.log_sum_exp();
            let mine = record_with(&stats, &out.hidden[t * d..(t + 1) * d], &basis);
            let mut drift = 0f32;
            for (&id, &lp) in rec.top_ids.iter().zip(&rec.top_logprobs) {
                let Some(&l) = logits.get(id as usize) else {
                    drift = f32::INFINITY;
                    break;
                };
                let diff = ((l as f64 - lse) as f32 - lp).abs();
                drift = if diff.is_nan() { f32::INFINITY } else { drift.max(diff) };
            }
            // The validator's own most probable token must be among the recorded
            // ones unless it is a near tie with the executor's first.
            if !rec.top_ids.contains(&mine.top_ids[0]) {
                drift = drift.max(mine.top_logprobs[0] - mine.top_logprobs[TOP_K - 1]);
            }
            Judged { gap, drift, bits: (rec.digest ^ mine.digest).count_ones() }
        })
        .collect();
    let mut report =
        CheckReport { verdict: Verdict::Pass, worst_logprob: 0.0, worst_bits: 0, worst_token_gap: 0.0 };
    let mut misses = 0;
    for (t, (j, &token)) in judged.iter().zip(claim.output).enumerate() {
        report.worst_token_gap = report.worst_token_gap.max(j.gap);
        if j.gap > thresholds.token_margin {
            report.verdict = Verdict::Token { position: t, token };
            return Ok(report);
        }
        report.worst_logprob = report.worst_logprob.max(j.drift);
        report.worst_bits = report.worst_bits.max(j.bits);
        if j.drift > thresholds.logprob || j.bits > thresholds.digest_bits {
            misses += 1;
        }
    }
    if misses > thresholds.soft_misses {
        report.verdict =
            Verdict::Drift { misses, worst_logprob: report.worst_logprob, worst_bits: report.worst_bits };
    }
    Ok(report)
}

/// One position's findings in [`check`].
struct Judged {
    /// How far the claimed token is from the sampler's choice.
    gap: f64,
    /// Worst log-prob difference over the recorded ids.
    drift: f32,
    /// Digest bits that differ.
    bits: u32,
}

/// A completion with its records, from [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Output tokens (a final stop token included).
    pub output: Vec<u32>,
    /// One record per output token.
    pub artifact: Artifact,
}

/// Generates one completion token by token: the reference the batched
/// server must agree with, and the executor of tests.
pub fn generate(
    model: &Llama,
    prompt: &[u32],
    params: &SamplingParams,
    max_tokens: usize,
    stop_tokens: &[u32],
    scratch: &mut LlamaScratch,
) -> Result<Completion, LlamaError> {
    let basis = DigestBasis::new(model.config().d_model);
    let mut sampler = SamplerScratch::default();
    let mut cache = model.new_cache();
    let mut next = prompt.to_vec();
    let mut completion = Completion { output: Vec::new(), artifact: Artifact::default() };
    let v = model.config().vocab;
    while completion.output.len() < max_tokens && cache.len() + next.len() <= model.config().max_seq {
        let out = model
            .step(&mut [SeqStep { cache: &mut cache, tokens: &next, outputs: Outputs::Last }], scratch)?;
        let logits = &out.logits[..v];
        let stats = RowStats::new(logits, params.temperature);
        let token = sample_with(logits, &stats, params, cache.len() as u32, &mut sampler);
        completion.artifact.records.push(record_with(&stats, &out.hidden, &basis));
        completion.output.push(token);
        if stop_tokens.contains(&token) {
            break;
        }
        next = vec![token];
    }
    Ok(completion)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::Precision;
    use crate::llm::tiny::{SafetensorsSource, TINY_EOS, tiny_safetensors};

    fn tiny(seed: u64) -> Llama {
        let bytes = tiny_safetensors(seed);
        let (config, mut source) = SafetensorsSource::parse(&bytes).expect("our own file");
        Llama::load(config, &mut source).expect("loads")
    }

    const PARAMS: SamplingParams = SamplingParams { temperature: 0.9, top_p: 0.95, seed: 42 };
    const PROMPT: &[u32] = &[256, 72, 101, 108, 108, 111];

    fn claim<'a>(prompt: &'a [u32], c: &'a Completion, params: SamplingParams, max: usize) -> Claim<'a> {
        Claim {
            prompt,
            output: &c.output,
            params,
            max_tokens: max,
            stop_tokens: &[TINY_EOS],
            artifact: &c.artifact,
        }
    }

    #[test]
    fn an_honest_completion_passes_with_no_drift() {
        let model = tiny(0);
        let mut s = LlamaScratch::default();
        let c = generate(&model, PROMPT, &PARAMS, 40, &[TINY_EOS], &mut s).expect("fits");
        assert_eq!(c.output.len(), c.artifact.records.len());
        let report =
            check(&model, &claim(PROMPT, &c, PARAMS, 40), &Thresholds::default(), &mut s).expect("fits");
        assert_eq!(report.verdict, Verdict::Pass);
        assert_eq!((report.worst_logprob, report.worst_bits, report.worst_token_gap), (0.0, 0, 0.0));
    }

    #[test]
    fn a_bf16_executor_passes_an_f32_validator() {
        let mut exec = tiny(0);
        exec.set_precision(Precision::Bf16);
        let validator = tiny(0);
        let mut s = LlamaScratch::default();
        for seed in 0..5 {
            let params = SamplingParams { seed, ..PARAMS };
            let c = generate(&exec, PROMPT, &params, 40, &[TINY_EOS], &mut s).expect("fits");
            let r = check(&validator, &claim(PROMPT, &c, params, 40), &Thresholds::default(), &mut s)
                .expect("fits");
            assert_eq!(r.verdict, Verdict::Pass, "seed {seed}: {r:?}");
        }
    }

    #[test]
    fn a_wrong_seed_a_tampered_token_and_another_model_fail() {
        let model = tiny(0);
        let mut s = LlamaScratch::default();
        let t = Thresholds::default();
        let c = generate(&model, PROMPT, &PARAMS, 40, &[TINY_EOS], &mut s).expect("fits");
        let other_seed = SamplingParams { seed: 43, ..PARAMS };
        let r = check(&model, &claim(PROMPT, &c, other_seed, 40), &t, &mut s).expect("fits");
        assert!(matches!(r.verdict, Verdict::Token { .. }), "wrong seed: {r:?}");

        let mut tampered = c.clone();
        tampered.output[3] = (tampered.output[3] + 1) % 256;
        let r = check(&model, &claim(PROMPT, &tampered, PARAMS, 40), &t, &mut s).expect("fits");
        assert!(matches!(r.verdict, Verdict::Token { position: 3, .. }), "tampered token: {r:?}");

        let other = tiny(1);
        let c2 = generate(&other, PROMPT, &PARAMS, 40, &[TINY_EOS], &mut s).expect("fits");
        let r = check(&model, &claim(PROMPT, &c2, PARAMS, 40), &t, &mut s).expect("fits");
        assert_ne!(r.verdict, Verdict::Pass, "another model's completion passed");
    }

    #[test]
    fn tokens_of_a_cheaper_model_fail_even_with_the_real_models_records() {
        // The executor samples with a cheap model, then computes the records
        // with the real one in one pass: the records match, the tokens do not.
        let real = tiny(0);
        let cheap = tiny(7);
        let mut s = LlamaScratch::default();
        let c = generate(&cheap, PROMPT, &PARAMS, 40, &[TINY_EOS], &mut s).expect("fits");
        let mut input = PROMPT.to_vec();
        input.extend_from_slice(&c.output[..c.output.len() - 1]);
        let mut cache = real.new_cache();
        let n = c.output.len();
        let out = real
            .step(&mut [SeqStep { cache: &mut cache, tokens: &input, outputs: Outputs::Tail(n) }], &mut s)
            .expect("fits");
        let (v, d) = (real.config().vocab, real.config().d_model);
        let basis = DigestBasis::new(d);
        let forged = Completion {
            output: c.output.clone(),
            artifact: Artifact {
                records: (0..n)
                    .map(|t| record(&out.logits[t * v..(t + 1) * v], &out.hidden[t * d..(t + 1) * d], &basis))
                    .collect(),
            },
        };
        let r =
            check(&real, &claim(PROMPT, &forged, PARAMS, 40), &Thresholds::default(), &mut s).expect("fits");
        assert!(matches!(r.verdict, Verdict::Token { .. }), "{r:?}");
    }

    #[test]
    fn lengths_stops_and_record_counts_are_checked() {
        let model = tiny(0);
        let mut s = LlamaScratch::default();
        let t = Thresholds::default();
        let c = generate(&model, PROMPT, &PARAMS, 20, &[TINY_EOS], &mut s).expect("fits");
        let r = check(&model, &claim(PROMPT, &c, PARAMS, 10), &t, &mut s).expect("fits");
        assert!(matches!(r.verdict, Verdict::Length { .. }), "over budget: {r:?}");
        let mut short = c.clone();
        short.output.truncate(5);
        short.artifact.records.truncate(5);
        let r = check(&model, &claim(PROMPT, &short, PARAMS, 20), &t, &mut s).expect("fits");
        assert_eq!(r.verdict, Verdict::Stop { position: 4 }, "cut short without a stop");
        let mut missing = c.clone();
        missing.artifact.records.pop();
        let r = check(&model, &claim(PROMPT, &missing, PARAMS, 20), &t, &mut s).expect("fits");
        assert!(matches!(r.verdict, Verdict::Records { .. }));
        let empty = Completion { output: vec![], artifact: Artifact::default() };
        let r = check(&model, &claim(PROMPT, &empty, PARAMS, 20), &t, &mut s).expect("fits");
        assert!(matches!(r.verdict, Verdict::Length { tokens: 0, .. }));
    }

    #[test]
    fn a_drifted_record_fails_and_the_encoding_round_trips() {
        let model = tiny(0);
        let mut s = LlamaScratch::default();
        let c = generate(&model, PROMPT, &PARAMS, 20, &[TINY_EOS], &mut s).expect("fits");
        let decoded = Artifact::decode(&c.artifact.encode()).expect("whole records");
        assert_eq!(decoded, c.artifact);
        assert!(Artifact::decode(&[0; 7]).is_none());
        let mut drifted = c.clone();
        drifted.artifact.records[2].top_logprobs[0] -= 1.0;
        assert_ne!(drifted.artifact.commitment(), c.artifact.commitment());
        let r = check(&model, &claim(PROMPT, &drifted, PARAMS, 20), &Thresholds::default(), &mut s)
            .expect("fits");
        assert!(matches!(r.verdict, Verdict::Drift { misses: 1, .. }), "{r:?}");
        let mut flipped = c.clone();
        flipped.artifact.records[1].digest ^= 0xFFFF;
        let r = check(&model, &claim(PROMPT, &flipped, PARAMS, 20), &Thresholds::default(), &mut s)
            .expect("fits");
        assert!(matches!(r.verdict, Verdict::Drift { .. }), "{r:?}");
    }
}
