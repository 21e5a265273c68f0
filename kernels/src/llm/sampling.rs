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

use crate::chacha::{StreamKey, fill_words};
use crate::simd::{exp_f64, sum_exp};

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

/// Candidates sorted at first when ranking a nucleus; most nuclei of a
/// language model at top-p 0.95 are far smaller.
const NUCLEUS_FIRST_GUESS: usize = 256;

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
    p: &SamplingParams,
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
    let t = p.temperature as f64;
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let z = sum_exp(logits, max, t);
    // Only tokens within e^-40 of the most probable can be in a nucleus: all
    // the others together weigh less than V·e^-40 (2e-13 for 49 152 tokens),
    // and an f32 `top_p` below 1 is at most 1 − 6e-8. Sorting just those gives
    // the same nucleus as sorting the whole vocabulary. Most nuclei need far
    // fewer, so the candidates are first only the tokens within a narrower
    // `cutoff` (see `first_cutoff`), widened to the full one when their mass
    // falls short. Either way they are a prefix of the full order (every
    // token above a value), so their order and masses are the full sort's.
    let mut cutoff = first_cutoff(logits, max, t);
    let keep = loop {
        // Every token above one value: a prefix of the full order whatever
        // the rounding of that value. Branch-free, as most tokens are out.
        let above = (max - cutoff * t) as f32;
        order.resize(logits.len(), 0);
        let mut n = 0;
        for (i, &l) in logits.iter().enumerate() {
            order[n] = i as u32;
            n += usize::from(l > above);
        }
        order.truncate(n);
        if let Some(keep) = nucleus_prefix(logits, (max, t, z), mass_wanted, order, masses) {
            break keep;
        }
        if cutoff >= NUCLEUS_CUTOFF {
            break order.len();
        }
        cutoff = NUCLEUS_CUTOFF;
    };
    &order[..keep]
}

/// Sorts the most probable of the candidates `order` first, only as far as
/// their running masses (kept in `masses`) reach `mass_wanted`, and says how
/// many that took; `None` when all of them fall short (all are then sorted
/// and in `masses`).
fn nucleus_prefix(
    logits: &[f32],
    (max, t, z): (f64, f64, f64),
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
    let mut k = NUCLEUS_FIRST_GUESS.min(order.len());
    loop {
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, most_probable_first);
        }
        order[..k].sort_unstable_by(most_probable_first);
        masses.clear();
        let mut mass = 0.0;
        for (n, &i) in order[..k].iter().enumerate() {
            mass += exp_f64((logits[i as usize] as f64 - max) / t) / z;
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

/// Cutoffs tried first (tempered logits below the best), narrowest first.
const FIRST_CUTOFFS: [f32; 4] = [2.0, 4.0, 8.0, 16.0];

/// The narrowest of [`FIRST_CUTOFFS`] that keeps at least
/// [`NUCLEUS_FIRST_GUESS`] tokens (counted in f32, one vectorised pass),
/// else `NUCLEUS_CUTOFF`. Only a guess: `ranked` widens it when the nucleus
/// needs more.
fn first_cutoff(logits: &[f32], max: f64, t: f64) -> f64 {
    let top = max as f32;
    let bounds = FIRST_CUTOFFS.map(|c| c * t as f32);
    let mut counts = [0u32; FIRST_CUTOFFS.len()];
    for &l in logits {
        let below = top - l;
        for (n, &b) in counts.iter_mut().zip(&bounds) {
            *n += u32::from(below < b);
        }
    }
    FIRST_CUTOFFS
        .iter()
        .zip(counts)
        .find(|&(_, n)| n as usize >= NUCLEUS_FIRST_GUESS)
        .map_or(NUCLEUS_CUTOFF, |(&c, _)| f64::from(c))
}

/// The perturbed score of every token of the nucleus of mass `mass`.
fn scores(
    logits: &[f32],
    p: &SamplingParams,
    position: u32,
    mass: f64,
    s: &mut SamplerScratch,
) -> Vec<(u32, f64)> {
    let candidates = ranked(logits, p, mass, &mut s.order, &mut s.masses);
    let key = noise_key(p.seed, position);
    s.words.resize(logits.len(), 0);
    if candidates.len() * 4 >= logits.len() {
        fill_words(&key, 0, &mut s.words);
    } else {
        for &i in candidates {
            s.words[i as usize] = key.word(u64::from(i));
        }
    }
    let t = p.temperature as f64;
    candidates.iter().map(|&i| (i, logits[i as usize] as f64 / t + gumbel(s.words[i as usize]))).collect()
}

fn best(scored: &[(u32, f64)]) -> (u32, f64) {
    scored.iter().copied().fold((u32::MAX, f64::NEG_INFINITY), |b, c| if c.1 > b.1 { c } else { b })
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in logits.iter().enumerate() {
        if *v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The token at `position` (its index in the whole sequence) from `logits`.
pub fn sample(logits: &[f32], p: &SamplingParams, position: u32, s: &mut SamplerScratch) -> u32 {
    if p.greedy() {
        return argmax(logits);
    }
    best(&scores(logits, p, position, p.top_p as f64, s)).0
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
    let Some(&value) = logits.get(token as usize) else {
        return f64::INFINITY;
    };
    if p.greedy() {
        return logits[argmax(logits) as usize] as f64 - value as f64;
    }
    let top_p = p.top_p as f64;
    let loose = scores(logits, p, position, (top_p + slack).min(1.0), s);
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
        for &i in ranked(logits, p, strict_mass, &mut s.order, &mut s.masses) {
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
                let got = ranked(&l, &p, mass, &mut order, &mut masses).to_vec();
                let t = f64::from(temperature);
                let max = l.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
                let z = sum_exp(&l, max, t);
                let mut all: Vec<u32> =
                    (0..v as u32).filter(|&i| (l[i as usize] as f64 - max) / t > -NUCLEUS_CUTOFF).collect();
                all.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]).then(a.cmp(&b)));
                let mut acc = 0.0;
                let mut want = Vec::new();
                for &i in &all {
                    want.push(i);
                    acc += exp_f64((l[i as usize] as f64 - max) / t) / z;
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
                let loose = scores(&l, &p, pos, p.top_p as f64 + slack, &mut other);
                let mut strict_ids = Vec::new();
                ranked(&l, &p, p.top_p as f64 - slack, &mut other.order, &mut other.masses)
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
