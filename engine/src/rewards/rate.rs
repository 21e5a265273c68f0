//! The integer formulas of the economy: the validation rate, the subsidy
//! schedule, and the "did at least a share of its expected work" test.
//!
//! ```text
//!  p_min(V) = clamp(full_check_requests / V, min_check_rate, 1)     V = max(previous, current) requests
//!  p(r)     = max(p_min, 1 − (1 − p_min) · min(r, N) / N)
//!  S_{e+1}  = S_e − ⌈S_e · decay⌉                                   Σ S_e ≈ S_0 / decay
//!  enough(done, E) ⇔ done ≥ min(share · E, t(E))                      E in units of 2^-32
//!  t(E)     = the largest t with P(Poisson(E) < t) ≤ 10^-6           (table to E = 200, then E − 5·√E)
//! ```

use crate::crypto::selection::Probability;
use crate::params::{Amount, EconomyParams, Share};

/// `p_min` for a request volume: every task is checked up to
/// `full_check_requests` requests per epoch; above, the rate falls as
/// `full_check_requests / V` (a constant expected number of checks per
/// epoch) down to its floor.
pub fn min_check_rate(params: &EconomyParams, volume: u64) -> Probability {
    let floor =
        Probability::from_ratio(u128::from(params.min_check_rate.num), u128::from(params.min_check_rate.den))
            .unwrap_or(Probability::ONE);
    let falling = Probability::from_ratio(u128::from(params.full_check_requests), u128::from(volume))
        .unwrap_or(Probability::ONE);
    falling.max(floor)
}

/// The executor's required validation rate:
/// `p = max(p_min, 1 − (1 − p_min) · min(r, N) / N)`.
pub fn check_rate(p_min: Probability, reputation: u32, full: u32) -> Probability {
    let full = u64::from(full.max(1));
    let r = u64::from(reputation).min(full);
    let gap = Probability::ONE.raw() - p_min.raw();
    let p = Probability::ONE.raw() - (u128::from(gap) * u128::from(r) / u128::from(full)) as u64;
    Probability::from_raw(p).max(p_min)
}

/// The subsidy after `subsidy` for one epoch of decay, rounding the
/// decrement up so the subsidy reaches zero and `Σ S_e ≤ S_0 / decay`.
pub fn decay(subsidy: Amount, rate: Share) -> Amount {
    let (num, den) = (u128::from(rate.num), u128::from(rate.den));
    let round_up = u128::from(!((subsidy % den) * num).is_multiple_of(den));
    subsidy - (rate.of(subsidy) + round_up).min(subsidy)
}

/// `t(E)` for integer `E` up to 200: the largest `t` with
/// `P(Poisson(E) < t) ≤ 10^-6`, computed once and checked by a test.
const POISSON_FLOOR: [u8; 201] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 9, 10,
    10, 11, 11, 12, 13, 13, 14, 14, 15, 16, 16, 17, 18, 18, 19, 20, 20, 21, 22, 22, 23, 24, 24, 25, 26, 26,
    27, 28, 28, 29, 30, 31, 31, 32, 33, 33, 34, 35, 35, 36, 37, 38, 38, 39, 40, 41, 41, 42, 43, 44, 44, 45,
    46, 46, 47, 48, 49, 49, 50, 51, 52, 52, 53, 54, 55, 55, 56, 57, 58, 59, 59, 60, 61, 62, 62, 63, 64, 65,
    65, 66, 67, 68, 69, 69, 70, 71, 72, 72, 73, 74, 75, 76, 76, 77, 78, 79, 80, 80, 81, 82, 83, 84, 84, 85,
    86, 87, 88, 88, 89, 90, 91, 92, 92, 93, 94, 95, 96, 96, 97, 98, 99, 100, 100, 101, 102, 103, 104, 104,
    105, 106, 107, 108, 108, 109, 110, 111, 112, 113, 113, 114, 115, 116, 117, 117, 118, 119, 120, 121, 122,
    122, 123, 124, 125, 126, 127, 127, 128, 129, 130, 131, 132, 132, 133, 134, 135, 136, 137,
];

/// The count below which an honest host doing all it is drawn for falls
/// with probability at most 10^-6, for an expectation `expected_raw` in units
/// of 2^-32 (its counts are sums of independent draws, no more spread than
/// a Poisson count of that mean; `E` is rounded down, which only lowers it).
fn poisson_floor(expected_raw: u128) -> u128 {
    let e = expected_raw >> 32;
    match POISSON_FLOOR.get(e as usize) {
        Some(&t) => u128::from(t),
        None => e.saturating_sub(5 * e.isqrt() + 5),
    }
}

/// Whether `done` reaches `share` of an expectation `expected_raw` (units of
/// 2^-32 events) — or, where the expectation is too small to tell shirking
/// from bad luck, the count an honest host reaches but with probability
/// 10^-6: `done ≥ min(share · E, t(E))`. A host that does nothing fails as
/// soon as `E ≥ 14`; one that does less than `share` of its part fails once
/// `E` is about 90 or more.
pub fn enough(done: u64, expected_raw: u128, share: Share) -> bool {
    let wanted = share.of(expected_raw);
    let floor = poisson_floor(expected_raw) << 32;
    u128::from(done) << 32 >= wanted.min(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(x: f64) -> Probability {
        Probability::from_raw((x * 4294967296.0) as u64)
    }

    fn close(a: Probability, b: Probability) -> bool {
        a.raw().abs_diff(b.raw()) <= 2
    }

    #[test]
    fn p_min_falls_from_one_to_its_floor() {
        let e = EconomyParams::standard();
        assert_eq!(min_check_rate(&e, 0), Probability::ONE);
        assert_eq!(min_check_rate(&e, 100), Probability::ONE);
        assert!(close(min_check_rate(&e, 200), p(0.5)));
        assert!(close(min_check_rate(&e, 5_000), p(0.02)));
        assert!(close(min_check_rate(&e, 10_000), p(0.01)));
        assert!(close(min_check_rate(&e, 1_000_000), p(0.01)));
        // Monotone between the ends.
        let mut last = Probability::ONE;
        for v in (100..20_000).step_by(37) {
            let now = min_check_rate(&e, v);
            assert!(now <= last, "p_min rose at {v}");
            last = now;
        }
    }

    #[test]
    fn reputation_lowers_the_rate_to_p_min() {
        let p_min = p(0.01);
        assert_eq!(check_rate(p_min, 0, 30), Probability::ONE);
        assert!(close(check_rate(p_min, 15, 30), p(1.0 - 0.99 * 0.5)));
        assert_eq!(check_rate(p_min, 30, 30), p_min);
        assert_eq!(check_rate(p_min, 1000, 30), p_min);
        // With p_min = 1 reputation buys nothing.
        assert_eq!(check_rate(Probability::ONE, 30, 30), Probability::ONE);
    }

    #[test]
    fn the_subsidy_sums_to_about_s0_over_the_decay() {
        let e = EconomyParams::tiny();
        let (mut s, mut total) = (e.epoch_subsidy, 0u128);
        for _ in 0..100_000 {
            total += s;
            s = decay(s, e.subsidy_decay);
        }
        let bound = e.epoch_subsidy * u128::from(e.subsidy_decay.den) / u128::from(e.subsidy_decay.num);
        assert!(total <= bound && total > bound - bound / 100, "{total} vs {bound}");
        let std = EconomyParams::standard();
        let implied =
            std.epoch_subsidy * u128::from(std.subsidy_decay.den) / u128::from(std.subsidy_decay.num);
        assert!(implied.abs_diff(680_000_000 * crate::params::GNK) < crate::params::GNK, "680 M GNK in all");
    }

    #[test]
    fn enough_allows_poisson_noise_but_not_shirking() {
        let half = Share { num: 1, den: 2 };
        let e = |x: u64| u128::from(x) << 32;
        assert!(enough(0, e(13), half), "thirteen expected: zero is bad luck (p = 2e-6)");
        assert!(!enough(0, e(14), half), "fourteen expected: zero is shirking");
        assert!(enough(50, e(100), half), "half of 100");
        assert!(!enough(49, e(100), half));
        assert!(!enough(400, e(1000), half), "a host doing 40 % of 1000");
        assert!(enough(500, e(1000), half));
    }

    fn poisson_below(t: u64, e: f64) -> f64 {
        let (mut sum, mut term) = (0.0, (-e).exp());
        for k in 0..t {
            sum += term;
            term *= e / (k + 1) as f64;
        }
        sum
    }

    #[test]
    fn the_poisson_floor_table_is_the_one_in_a_million_quantile() {
        for (e, &t) in POISSON_FLOOR.iter().enumerate() {
            let e = e as f64;
            assert!(poisson_below(u64::from(t), e) <= 1e-6, "t({e}) = {t} is too high");
            assert!(poisson_below(u64::from(t) + 1, e) > 1e-6, "t({e}) = {t} is too low");
        }
        for e in [201u64, 500, 10_000] {
            let t = poisson_floor(u128::from(e) << 32) as u64;
            assert!(poisson_below(t, e as f64) <= 1e-6, "beyond the table, t({e}) = {t} is too high");
        }
    }
}
