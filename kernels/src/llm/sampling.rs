//! Sampling that a validator can recompute: the token at a position is a
//! deterministic function of the model's logits, the request's sampling
//! parameters, its seed and the position (Gumbel-max).
//!
//! ```text
//!  nucleus N = smallest set of most probable tokens (id breaks ties) with Σp ≥ top_p
//!  g_i       = −ln(−ln u_i),  u_i = ChaCha20[key = H(seed, position)] word i, in (0, 1)
//!  token     = argmax_{i ∈ N} ( logit_i / T + g_i )        (T = 0: argmax_i logit_i)
//! ```
//!
//! Gumbel-max draws exactly from `softmax(logits/T)` restricted to `N`, and
//! the noise is tied to the token id, not to the order candidates are visited
//! in. So an executor that generated with a cheaper model and reported the
//! real model's probabilities afterwards is caught: for its tokens to pass,
//! they must be the argmax of the real logits plus noise it cannot choose.
//! [`check_token`] accepts a token whose perturbed score is within a small
//! margin of the best, since a validator's logits differ from the executor's
//! in the last bits when their CPUs differ.

use sha2::{Digest, Sha256};

use crate::chacha::{StreamKey, fill_words, words_at};
use crate::simd::exp_f32;

/// Sampling parameters of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Nucleus mass in `(0, 1]`.
    pub top_p: f32,
    /// The request's seed.
    pub seed: u64,
}

impl SamplingParams {
    /// Greedy decoding.
    pub const GREEDY: Self = Self { temperature: 0.0, top_p: 1.0, seed: 0 };

    fn greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// How far below the best tempered logit a token can be and still be a
/// nucleus candidate (see `nucleus`).
const NUCLEUS_CUTOFF: f64 = 40.0;

/// Cutoffs tried first (tempered logits below the best), narrowest first.
const FIRST_CUTOFFS: [f32; 5] = [1.0, 2.0, 4.0, 8.0, 16.0];

/// Largest logits a [`RowStats`] keeps.
pub const ROW_TOP: usize = 4;

/// What sampling and the executor's record need to know about one row of
/// logits, from two passes over it: its largest logits, and its sums of
/// exponentials at the request's temperature and at temperature 1.
///
/// The exponentials are [`exp_f32`] of `(l − max)·(1/T)` in f32, summed per
/// lane in f64 and folded in a fixed order: the same operations on every
/// build, so every host gets the same bits from the same logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowStats {
    /// The largest logits, largest first, the lower id first among equals.
    pub top: [(u32, f32); ROW_TOP],
    /// `1/T`, or 1 when greedy.
    inv_t: f32,
    /// `Σ e^{(l − max)/T}`.
    tempered: f64,
    /// `Σ e^{l − max}`.
    plain: f64,
    /// `Σ e^{(l − max)/T}` over the tokens with `(l − max)/T > −c`, for each
    /// `c` of [`FIRST_CUTOFFS`] (summed in f32: a guess of the mass each
    /// cutoff keeps, which [`ranked`] verifies).
    within: [f64; FIRST_CUTOFFS.len()],
}

impl RowStats {
    /// The statistics of `logits` for sampling at `temperature`.
    pub fn new(logits: &[f32], temperature: f32) -> Self {
        #[cfg(target_arch = "x86_64")]
        if crate::simd::has_avx512() {
            // SAFETY: AVX-512F is present, checked by `has_avx512`.
            return unsafe { row_stats_avx512(logits, temperature) };
        }
        row_stats_generic(logits, temperature)
    }

    /// The largest logit.
    pub fn max(&self) -> f32 {
        self.top[0].1
    }

    /// `ln Σ e^l`, the normaliser of the log-probs at temperature 1.
    pub fn log_sum_exp(&self) -> f64 {
        self.max() as f64 + self.plain.ln()
    }

    /// The probability of a logit at the sampling temperature.
    fn mass(&self, logit: f32) -> f64 {
        exp_f32((logit - self.max()) * self.inv_t) as f64 / self.tempered
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn row_stats_avx512(logits: &[f32], temperature: f32) -> RowStats {
    let inv_t = inverse_temperature(temperature);
    let top = largest(logits);
    let (tempered, plain, within) = if inv_t == 1.0 {
        x86::exp_sums::<false>(logits, top[0].1, inv_t)
    } else {
        x86::exp_sums::<true>(logits, top[0].1, inv_t)
    };
    RowStats { top, inv_t, tempered, plain, within }
}

const LANES: usize = 16;

fn inverse_temperature(temperature: f32) -> f32 {
    if temperature > 0.0 { 1.0 / temperature } else { 1.0 }
}

#[inline(always)]
fn row_stats_generic(logits: &[f32], temperature: f32) -> RowStats {
    let inv_t = inverse_temperature(temperature);
    let top = largest(logits);
    let (tempered, plain, within) = if inv_t == 1.0 {
        exp_sums::<false>(logits, top[0].1, inv_t)
    } else {
        exp_sums::<true>(logits, top[0].1, inv_t)
    };
    RowStats { top, inv_t, tempered, plain, within }
}

/// The [`ROW_TOP`] largest values in id order of discovery (strictly larger
/// displaces, so the lower id wins a tie), screening sixteen at a time.
#[inline(always)]
fn largest(logits: &[f32]) -> [(u32, f32); ROW_TOP] {
    let mut top = [(0u32, f32::NEG_INFINITY); ROW_TOP];
    let chunks = logits.chunks_exact(LANES);
    let tail = logits.len() - chunks.remainder().len();
    for (c, chunk) in chunks.enumerate() {
        // Most chunks hold nothing above the fourth largest so far.
        let floor = top[ROW_TOP - 1].1;
        let mut any = false;
        for &v in chunk {
            any |= v > floor;
        }
        if any {
            for (j, &v) in chunk.iter().enumerate() {
                insert_top(&mut top, c * LANES + j, v);
            }
        }
    }
    for (j, &v) in logits[tail..].iter().enumerate() {
        insert_top(&mut top, tail + j, v);
    }
    top
}

#[inline(always)]
fn insert_top(top: &mut [(u32, f32); ROW_TOP], i: usize, v: f32) {
    if v > top[ROW_TOP - 1].1 {
        let mut at = ROW_TOP - 1;
        while at > 0 && v > top[at - 1].1 {
            top[at] = top[at - 1];
            at -= 1;
        }
        top[at] = (i as u32, v);
    }
}

/// The tempered and plain sums and the masses within each cutoff.
type ExpSums = (f64, f64, [f64; FIRST_CUTOFFS.len()]);

/// Per-lane accumulators of [`exp_sums`].
struct ExpLanes {
    tempered: [f64; LANES],
    plain: [f64; LANES],
    within: [[f32; LANES]; FIRST_CUTOFFS.len()],
}

impl ExpLanes {
    #[inline(always)]
    fn add<const TEMPERED: bool>(&mut self, lane: usize, l: f32, max: f32, inv_t: f32) {
        let d = l - max;
        let x = d * inv_t;
        let e = exp_f32(x);
        self.tempered[lane] += e as f64;
        if TEMPERED {
            self.plain[lane] += exp_f32(d) as f64;
        }
        for (m, c) in self.within.iter_mut().zip(FIRST_CUTOFFS) {
            m[lane] += if x > -c { e } else { 0.0 };
        }
    }

    /// Adds the last, partial chunk (lane by lane) and folds the lanes.
    #[inline(always)]
    fn finish<const TEMPERED: bool>(mut self, tail: &[f32], max: f32, inv_t: f32) -> ExpSums {
        for (lane, &l) in tail.iter().enumerate() {
            self.add::<TEMPERED>(lane, l, max, inv_t);
        }
        let tempered = fold_lanes(self.tempered);
        let plain = if TEMPERED { fold_lanes(self.plain) } else { tempered };
        (tempered, plain, self.within.map(|m| fold_lanes(m.map(f64::from))))
    }
}

/// Lanes folded in halves, a fixed order.
#[inline(always)]
fn fold_lanes(mut a: [f64; LANES]) -> f64 {
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            a[i] += a[i + w];
        }
    }
    a[0]
}

/// The two sums of exponentials and the cutoff masses of [`RowStats`]; the
/// tempered sum is the plain one when `TEMPERED` is false (`inv_t` = 1).
#[inline(always)]
fn exp_sums<const TEMPERED: bool>(logits: &[f32], max: f32, inv_t: f32) -> ExpSums {
    let mut acc =
        ExpLanes { tempered: [0.0; LANES], plain: [0.0; LANES], within: [[0.0; LANES]; FIRST_CUTOFFS.len()] };
    let chunks = logits.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &l) in chunk.iter().enumerate() {
            acc.add::<TEMPERED>(lane, l, max, inv_t);
        }
    }
    acc.finish::<TEMPERED>(tail, max, inv_t)
}

/// [`exp_sums`] in 512-bit registers: the portable code keeps its sixteen
/// f64 lanes and cutoff masses in memory. The same operations lane by lane,
/// so the same bits.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{ExpLanes, ExpSums, FIRST_CUTOFFS, LANES};

    /// `exp_f32` of sixteen values, operation for operation.
    #[target_feature(enable = "avx512f")]
    fn exp16(x: __m512) -> __m512 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        const MAGIC: f32 = 12_582_912.0;
        let c = _mm512_set1_ps;
        // `f32::clamp`: the register operand second, so a NaN stays a NaN.
        let x = _mm512_min_ps(c(88.0), _mm512_max_ps(c(-87.0), x));
        let t = _mm512_add_ps(_mm512_mul_ps(x, c(LOG2E)), c(MAGIC));
        let n = _mm512_sub_ps(t, c(MAGIC));
        let r = _mm512_sub_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, c(LN2_HI))), _mm512_mul_ps(n, c(LN2_LO)));
        let mut p = c(1.0 / 720.0);
        for k in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm512_add_ps(c(k), _mm512_mul_ps(r, p));
        }
        let ni = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(MAGIC.to_bits() as i32));
        let scale = _mm512_slli_epi32::<23>(_mm512_add_epi32(ni, _mm512_set1_epi32(127)));
        _mm512_mul_ps(p, _mm512_castsi512_ps(scale))
    }

    /// Adds sixteen f32 values, widened, to two f64 accumulators of eight lanes.
    #[target_feature(enable = "avx512f")]
    fn widen_add(acc: &mut [__m512d; 2], e: __m512) {
        let lo = _mm512_castps512_ps256(e);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(e)));
        acc[0] = _mm512_add_pd(acc[0], _mm512_cvtps_pd(lo));
        acc[1] = _mm512_add_pd(acc[1], _mm512_cvtps_pd(hi));
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn exp_sums<const TEMPERED: bool>(logits: &[f32], max: f32, inv_t: f32) -> ExpSums {
        let (vmax, vinv) = (_mm512_set1_ps(max), _mm512_set1_ps(inv_t));
        let mut tempered = [_mm512_setzero_pd(); 2];
        let mut plain = [_mm512_setzero_pd(); 2];
        let mut within = [_mm512_setzero_ps(); FIRST_CUTOFFS.len()];
        let chunks = logits.chunks_exact(LANES);
        let tail = chunks.remainder();
        for chunk in chunks {
            // SAFETY: the chunk holds sixteen f32.
            let l = unsafe { _mm512_loadu_ps(chunk.as_ptr()) };
            let d = _mm512_sub_ps(l, vmax);
            let x = _mm512_mul_ps(d, vinv);
            let e = exp16(x);
            widen_add(&mut tempered, e);
            if TEMPERED {
                widen_add(&mut plain, exp16(d));
            }
            for (m, c) in within.iter_mut().zip(FIRST_CUTOFFS) {
                let inside = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(-c));
                *m = _mm512_mask_add_ps(*m, inside, *m, e);
            }
        }
        let lanes = |acc: [__m512d; 2]| {
            let mut out = [0f64; LANES];
            // SAFETY: `out` holds sixteen f64.
            unsafe {
                _mm512_storeu_pd(out.as_mut_ptr(), acc[0]);
                _mm512_storeu_pd(out.as_mut_ptr().add(8), acc[1]);
            }
            out
        };
        let masses = |m: __m512| {
            let mut out = [0f32; LANES];
            // SAFETY: `out` holds sixteen f32.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), m) };
            out
        };
        let acc = ExpLanes { tempered: lanes(tempered), plain: lanes(plain), within: within.map(masses) };
        acc.finish::<TEMPERED>(tail, max, inv_t)
    }
}

/// The noise stream of one position.
fn noise_key(seed: u64, position: u32) -> StreamKey {
    let mut h = Sha256::new();
    h.update(b"gonka/sampling/gumbel/v1");
    h.update(seed.to_le_bytes());
    h.update(position.to_le_bytes());
    StreamKey::new(&h.finalize().into())
}

/// Gumbel noise from one 32-bit word: `u` is the word's top 24 bits plus a
/// half, over 2^24, so it is never 0 or 1.
fn gumbel(word: u32) -> f64 {
    let u = ((word >> 8) as f64 + 0.5) / (1u32 << 24) as f64;
    -(-u.ln()).ln()
}

/// Candidates put in order at first; most nuclei at top-p 0.95 hold fewer.
const FIRST_SORTED: usize = 32;

/// Reusable buffers.
#[derive(Debug, Default)]
pub struct SamplerScratch {
    order: Vec<u32>,
    /// For each candidate [`ranked`] keeps, the mass up to and including it.
    masses: Vec<f64>,
    words: Vec<u32>,
}

/// The candidates of a position, most probable first, with the mass of the
/// prefix ending with each in `masses`; every token, in id order and with no
/// masses, when `mass_wanted ≥ 1`.
fn ranked<'s>(
    logits: &[f32],
    stats: &RowStats,
    mass_wanted: f64,
    order: &'s mut Vec<u32>,
    masses: &mut Vec<f64>,
) -> &'s [u32] {
    order.clear();
    masses.clear();
    if mass_wanted >= 1.0 {
        order.extend(0..logits.len() as u32);
        return order;
    }
    // Only tokens within e^-40 of the most probable can be in a nucleus: all
    // the others together weigh less than V·e^-40 (2e-13 for 49 152 tokens),
    // and an f32 `top_p` below 1 is at most 1 − 6e-8. Sorting just those gives
    // the same nucleus as sorting the whole vocabulary. Most nuclei need far
    // fewer, so the candidates are first only the tokens within the narrowest
    // of [`FIRST_CUTOFFS`] whose mass (summed by [`RowStats`]) reaches the
    // nucleus's, widened step by step when the exact masses fall short.
    // Every such set is a prefix of the full order (every token above a
    // value), so its order and masses are the full sort's.
    let wanted = mass_wanted * stats.tempered;
    let mut step = stats.within.iter().position(|&m| m >= wanted).unwrap_or(FIRST_CUTOFFS.len());
    let max = stats.max() as f64;
    let t = 1.0 / stats.inv_t as f64;
    let keep = loop {
        let cutoff = FIRST_CUTOFFS.get(step).map_or(NUCLEUS_CUTOFF, |&c| f64::from(c));
        above(logits, (max - cutoff * t) as f32, order);
        if let Some(keep) = nucleus_prefix(logits, stats, mass_wanted, order, masses) {
            break keep;
        }
        if step >= FIRST_CUTOFFS.len() {
            break order.len();
        }
        step += 1;
    };
    &order[..keep]
}

/// The ids of every logit above `floor`, in id order: a prefix of the full
/// order whatever the rounding of `floor`.
fn above(logits: &[f32], floor: f32, ids: &mut Vec<u32>) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx512() {
        // SAFETY: AVX-512F is present, checked by `has_avx512`.
        unsafe { above_avx512(logits, floor, ids) };
        return;
    }
    above_generic(logits, floor, ids);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn above_avx512(logits: &[f32], floor: f32, ids: &mut Vec<u32>) {
    above_generic(logits, floor, ids);
}

#[inline(always)]
fn above_generic(logits: &[f32], floor: f32, ids: &mut Vec<u32>) {
    ids.clear();
    // Sixteen at a time, skipping the chunks with nothing above (most, for
    // the narrow cutoffs); branch-free within a chunk that has some.
    for (c, chunk) in logits.chunks(LANES).enumerate() {
        let mut any = false;
        for &l in chunk {
            any |= l > floor;
        }
        if any {
            let mut n = ids.len();
            ids.resize(n + LANES, 0);
            for (j, &l) in chunk.iter().enumerate() {
                ids[n] = (c * LANES + j) as u32;
                n += usize::from(l > floor);
            }
            ids.truncate(n);
        }
    }
}

/// Sorts the most probable of the candidates `order` first, only as far as
/// their running masses (kept in `masses`) reach `mass_wanted`, and says how
/// many that took; `None` when all of them fall short (all are then sorted
/// and in `masses`).
fn nucleus_prefix(
    logits: &[f32],
    stats: &RowStats,
    mass_wanted: f64,
    order: &mut [u32],
    masses: &mut Vec<f64>,
) -> Option<usize> {
    // Most probable first; the id decides between equal logits, so the order
    // is a function of the values alone.
    let most_probable_first =
        |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
    // Only the nucleus needs its order: select the `k` most probable, sort
    // just those, and take four times as many while their mass falls short.
    // The first `k` of the full order are the same tokens in the same order,
    // so the masses add up exactly as a full sort's would.
    let mut k = FIRST_SORTED.min(order.len());
    loop {
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, most_probable_first);
        }
        order[..k].sort_unstable_by(most_probable_first);
        masses.clear();
        let mut mass = 0.0;
        for (n, &i) in order[..k].iter().enumerate() {
            mass += stats.mass(logits[i as usize]);
            masses.push(mass);
            if mass >= mass_wanted {
                return Some(n + 1);
            }
        }
        if k == order.len() {
            return None;
        }
        k = (k * 4).min(order.len());
    }
}

/// The perturbed score of every token of the nucleus of mass `mass`.
fn scores(
    logits: &[f32],
    stats: &RowStats,
    p: &SamplingParams,
    position: u32,
    mass: f64,
    s: &mut SamplerScratch,
) -> Vec<(u32, f64)> {
    let candidates = ranked(logits, stats, mass, &mut s.order, &mut s.masses);
    let key = noise_key(p.seed, position);
    // Scattered words cost a sixteenth of a block each, the whole stream a
    // sixteenth of a block per token.
    let (words, t) = (&mut s.words, p.temperature as f64);
    if candidates.len() * LANES >= logits.len() {
        words.resize(logits.len(), 0);
        fill_words(&key, 0, words);
        candidates.iter().map(|&i| (i, logits[i as usize] as f64 / t + gumbel(words[i as usize]))).collect()
    } else {
        words.resize(candidates.len(), 0);
        words_at(&key, candidates, words);
        candidates
            .iter()
            .zip(words.iter())
            .map(|(&i, &w)| (i, logits[i as usize] as f64 / t + gumbel(w)))
            .collect()
    }
}

fn best(scored: &[(u32, f64)]) -> (u32, f64) {
    scored.iter().copied().fold((u32::MAX, f64::NEG_INFINITY), |b, c| if c.1 > b.1 { c } else { b })
}

/// The token at `position` (its index in the whole sequence) from `logits`.
pub fn sample(logits: &[f32], p: &SamplingParams, position: u32, s: &mut SamplerScratch) -> u32 {
    sample_with(logits, &RowStats::new(logits, p.temperature), p, position, s)
}

/// [`sample`] given the row's statistics at `p.temperature`.
pub fn sample_with(
    logits: &[f32],
    stats: &RowStats,
    p: &SamplingParams,
    position: u32,
    s: &mut SamplerScratch,
) -> u32 {
    if p.greedy() {
        return stats.top[0].0;
    }
    best(&scores(logits, stats, p, position, p.top_p as f64, s)).0
}

/// Whether `token` is what [`sample`] gives from `logits` up to `margin`
/// (see [`token_gap`], with no slack on the nucleus).
pub fn check_token(
    logits: &[f32],
    p: &SamplingParams,
    position: u32,
    token: u32,
    margin: f64,
    s: &mut SamplerScratch,
) -> bool {
    token_gap(logits, p, position, token, 0.0, s) <= margin
}

/// How far `token`'s perturbed score (greedy: its logit) is below the best
/// one; 0 when it is the sample, infinite when it is outside the nucleus or
/// the vocabulary.
///
/// `slack` allows for logits that differ slightly from the sampler's: a
/// token at the edge of the nucleus can be in one host's and out of
/// another's. The token must be in the nucleus of mass `top_p + slack`, and
/// it is compared with the best of the nucleus of mass `top_p − slack`,
/// which every host whose masses are within `slack` includes.
pub fn token_gap(
    logits: &[f32],
    p: &SamplingParams,
    position: u32,
    token: u32,
    slack: f64,
    s: &mut SamplerScratch,
) -> f64 {
    token_gap_with(logits, &RowStats::new(logits, p.temperature), p, position, token, slack, s)
}

/// [`token_gap`] given the row's statistics at `p.temperature`.
pub fn token_gap_with(
    logits: &[f32],
    stats: &RowStats,
    p: &SamplingParams,
    position: u32,
    token: u32,
    slack: f64,
    s: &mut SamplerScratch,
) -> f64 {
    let Some(&value) = logits.get(token as usize) else {
        return f64::INFINITY;
    };
    if p.greedy() {
        return stats.max() as f64 - value as f64;
    }
    let top_p = p.top_p as f64;
    let loose = scores(logits, stats, p, position, (top_p + slack).min(1.0), s);
    let Some(&(_, mine)) = loose.iter().find(|c| c.0 == token) else {
        return f64::INFINITY;
    };
    if slack <= 0.0 || top_p >= 1.0 {
        return best(&loose).1 - mine;
    }
    // The strict nucleus is a prefix of the loose one's ranking: the
    // candidates until the mass reaches `top_p − slack`. Without masses (a
    // loose nucleus of the whole vocabulary, in id order) it is ranked anew.
    let strict_mass = (top_p - slack).max(f64::MIN_POSITIVE);
    let best_strict = if s.masses.len() == loose.len() {
        let len = s.masses.iter().position(|&m| m >= strict_mass).map_or(loose.len(), |k| k + 1);
        loose[..len].iter().fold(f64::NEG_INFINITY, |b, c| b.max(c.1))
    } else {
        let mut strict = vec![false; logits.len()];
        for &i in ranked(logits, stats, strict_mass, &mut s.order, &mut s.masses) {
            strict[i as usize] = true;
        }
        loose.iter().filter(|c| strict[c.0 as usize]).fold(f64::NEG_INFINITY, |b, c| b.max(c.1))
    };
    (best_strict - mine).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(v: usize, seed: u8) -> Vec<f32> {
        let mut w = vec![0u32; v];
        fill_words(&StreamKey::new(&[seed; 32]), 0, &mut w);
        // Spread like a language model's logits: a few tokens far above the rest.
        w.iter().map(|x| (*x % 1000) as f32 / 33.0).collect()
    }

    #[test]
    fn sampling_is_a_function_of_logits_seed_and_position() {
        let l = logits(500, 1);
        let p = SamplingParams { temperature: 0.8, top_p: 0.95, seed: 7 };
        let mut s = SamplerScratch::default();
        let a: Vec<u32> = (0..50).map(|pos| sample(&l, &p, pos, &mut s)).collect();
        let b: Vec<u32> = (0..50).map(|pos| sample(&l, &p, pos, &mut s)).collect();
        assert_eq!(a, b);
        let other = SamplingParams { seed: 8, ..p };
        let c: Vec<u32> = (0..50).map(|pos| sample(&l, &other, pos, &mut s)).collect();
        assert_ne!(a, c, "another seed drew the same 50 tokens");
        for (pos, &t) in a.iter().enumerate() {
            assert!(check_token(&l, &p, pos as u32, t, 0.0, &mut s));
        }
    }

    #[test]
    fn row_stats_are_those_of_a_plain_computation_on_every_build() {
        for (v, seed, temperature) in [(5, 1u8, 0.8f32), (700, 2, 1.0), (49_152, 3, 0.7), (49_159, 4, 0.0)] {
            let mut l = logits(v, seed);
            l[v - 1] = l[v / 2]; // a tie, which the lower id wins
            let stats = RowStats::new(&l, temperature);
            assert_eq!(stats, row_stats_generic(&l, temperature), "{v} tokens: the builds differ");
            let mut ids: Vec<u32> = (0..v as u32).collect();
            ids.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]).then(a.cmp(&b)));
            let want: Vec<(u32, f32)> = ids[..ROW_TOP.min(v)].iter().map(|&i| (i, l[i as usize])).collect();
            assert_eq!(&stats.top[..want.len()], &want[..], "{v} tokens");
            let max = f64::from(stats.max());
            let t = if temperature > 0.0 { f64::from(temperature) } else { 1.0 };
            let sum = |t: f64| l.iter().map(|&x| ((f64::from(x) - max) / t).exp()).sum::<f64>();
            let (tempered, plain) = (sum(t), sum(1.0));
            assert!(
                (stats.tempered / tempered - 1.0).abs() < 1e-6,
                "{v} tokens: {} vs {tempered}",
                stats.tempered
            );
            assert!((stats.plain / plain - 1.0).abs() < 1e-6, "{v} tokens: {} vs {plain}", stats.plain);
            assert!((stats.log_sum_exp() - (max + plain.ln())).abs() < 1e-6);
            for (m, c) in stats.within.iter().zip(FIRST_CUTOFFS) {
                let want: f64 = l
                    .iter()
                    .map(|&x| (f64::from(x) - max) / t)
                    .filter(|&x| x > -f64::from(c))
                    .map(f64::exp)
                    .sum();
                assert!((m / want - 1.0).abs() < 1e-4, "{v} tokens, cutoff {c}: {m} vs {want}");
            }
            let floor = l[v / 3];
            let mut got = Vec::new();
            above(&l, floor, &mut got);
            let mut generic = Vec::new();
            above_generic(&l, floor, &mut generic);
            let want: Vec<u32> = (0..v as u32).filter(|&i| l[i as usize] > floor).collect();
            assert_eq!((&got, &generic), (&want, &want), "{v} tokens: ids above a floor");
        }
    }

    #[test]
    fn the_nucleus_is_the_prefix_of_the_full_sort() {
        // The selection in `ranked` against sorting every candidate.
        let mut order = Vec::new();
        let mut masses = Vec::new();
        // Spread, peaked (a few tokens far above the rest), nearly flat, and
        // in steps of a quarter.
        let shapes: [fn(f32) -> f32; 4] =
            [|x| x, |x| if x > 29.9 { x } else { x / 4.0 }, |x| x / 60.0, |x| (x * 4.0).round() / 4.0];
        let cases = [(700, 1u8, 0.8f32), (5000, 2, 0.3), (5000, 3, 2.0), (49_152, 4, 0.8), (49_152, 5, 1.0)];
        for ((v, seed, temperature), shape) in cases.into_iter().flat_map(|c| shapes.map(|s| (c, s))) {
            let mut l: Vec<f32> = logits(v, seed).into_iter().map(shape).collect();
            // Ties, which the id decides.
            l[7] = l[3];
            l[9] = l[3];
            let p = SamplingParams { temperature, top_p: 0.9, seed: 1 };
            for mass in [0.01, 0.5, 0.9, 0.999, 0.999_999] {
                let stats = RowStats::new(&l, p.temperature);
                let got = ranked(&l, &stats, mass, &mut order, &mut masses).to_vec();
                let t = f64::from(temperature);
                let max = l.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
                let mut all: Vec<u32> =
                    (0..v as u32).filter(|&i| (l[i as usize] as f64 - max) / t > -NUCLEUS_CUTOFF).collect();
                all.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]).then(a.cmp(&b)));
                let mut acc = 0.0;
                let mut want = Vec::new();
                for &i in &all {
                    want.push(i);
                    acc += stats.mass(l[i as usize]);
                    if acc >= mass {
                        break;
                    }
                }
                assert_eq!(got, want, "{v} tokens, temperature {temperature}, mass {mass}");
                assert_eq!(masses.len(), got.len());
                assert_eq!(masses.last().copied(), Some(acc), "masses add up as a full sort's");
            }
        }
    }

    #[test]
    fn the_strict_nucleus_is_the_prefix_of_the_loose_ranking() {
        // token_gap takes the strict nucleus from the loose ranking's masses;
        // ranking it separately must give the same best score.
        let mut s = SamplerScratch::default();
        let mut other = SamplerScratch::default();
        for seed in 0..6u8 {
            let l = logits(700, seed);
            let p = SamplingParams { temperature: 0.7, top_p: 0.9, seed: u64::from(seed) };
            for pos in 0..20u32 {
                let slack = 0.02;
                let stats = RowStats::new(&l, p.temperature);
                let loose = scores(&l, &stats, &p, pos, p.top_p as f64 + slack, &mut other);
                let mut strict_ids = Vec::new();
                ranked(&l, &stats, p.top_p as f64 - slack, &mut other.order, &mut other.masses)
                    .clone_into(&mut strict_ids);
                let best_strict = loose
                    .iter()
                    .filter(|c| strict_ids.contains(&c.0))
                    .fold(f64::NEG_INFINITY, |b, c| b.max(c.1));
                for &(token, score) in &loose {
                    let want = (best_strict - score).max(0.0);
                    let got = token_gap(&l, &p, pos, token, slack, &mut s);
                    assert!(
                        (got - want).abs() < 1e-12,
                        "seed {seed} position {pos} token {token}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn draws_follow_the_softmax() {
        // Four tokens with probabilities 0.1, 0.2, 0.3, 0.4 at temperature 1.
        let l: Vec<f32> = [0.1f32, 0.2, 0.3, 0.4].iter().map(|p| p.ln()).collect();
        let p = SamplingParams { temperature: 1.0, top_p: 1.0, seed: 0 };
        let mut s = SamplerScratch::default();
        let n = 40_000;
        let mut counts = [0u32; 4];
        for pos in 0..n {
            counts[sample(&l, &p, pos, &mut s) as usize] += 1;
        }
        for (i, c) in counts.iter().enumerate() {
            let f = *c as f64 / n as f64;
            let want = 0.1 * (i + 1) as f64;
            // Five standard deviations of a binomial proportion.
            let sd = (want * (1.0 - want) / n as f64).sqrt();
            assert!((f - want).abs() < 5.0 * sd, "token {i}: frequency {f}, expected {want}");
        }
    }

    #[test]
    fn top_p_keeps_draws_inside_the_nucleus_and_greedy_takes_the_argmax() {
        let l: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let p = SamplingParams { temperature: 1.0, top_p: 0.7, seed: 3 };
        let mut s = SamplerScratch::default();
        for pos in 0..2000 {
            assert!(sample(&l, &p, pos, &mut s) < 2, "drew outside the 0.7 nucleus {{0, 1}}");
        }
        assert_eq!(sample(&l, &SamplingParams::GREEDY, 0, &mut s), 0);
        assert!(!check_token(&l, &p, 0, 3, 1.0, &mut s), "a token outside the nucleus passed");
        assert!(!check_token(&l, &p, 0, 99, 1.0, &mut s), "an id outside the vocabulary passed");
    }

    #[test]
    fn slack_admits_a_token_at_the_edge_of_the_nucleus_and_nothing_far_outside() {
        // Masses 0.5, 0.3, 0.15, 0.05: with top_p 0.79 the nucleus is {0, 1}; a
        // host whose masses differ a little may have included token 2.
        let l: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let p = SamplingParams { temperature: 1.0, top_p: 0.79, seed: 1 };
        let mut s = SamplerScratch::default();
        assert_eq!(token_gap(&l, &p, 0, 2, 0.0, &mut s), f64::INFINITY);
        assert!(token_gap(&l, &p, 0, 2, 0.02, &mut s).is_finite(), "slack did not admit the edge token");
        assert_eq!(
            token_gap(&l, &p, 0, 3, 0.02, &mut s),
            f64::INFINITY,
            "slack admitted a token far outside"
        );
        let sampled = sample(&l, &p, 0, &mut s);
        assert_eq!(token_gap(&l, &p, 0, sampled, 0.02, &mut s), 0.0);
    }

    #[test]
    fn a_token_from_another_distribution_fails_the_check() {
        // A cheaper model proposes its own tokens, drawn with the request's own
        // noise; checked against the real logits, most of them are not the argmax.
        let real = logits(1000, 2);
        let cheap = logits(1000, 3);
        let p = SamplingParams { temperature: 1.0, top_p: 1.0, seed: 11 };
        let mut s = SamplerScratch::default();
        let caught = (0..200)
            .filter(|&pos| {
                let t = sample(&cheap, &p, pos, &mut s);
                !check_token(&real, &p, pos, t, 1e-3, &mut s)
            })
            .count();
        assert!(caught >= 190, "only {caught}/200 tokens of another model were caught");
    }
}
