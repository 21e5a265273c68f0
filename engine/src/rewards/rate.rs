//! The integer formulas of the economy: the validation rate, the subsidy
//! schedule, and the "did at least a share of its expected work" test.
//!
//! ```text
//!  p_min(V) = clamp(full_check_requests / V, min_check_rate, 1)     V = max(previous, current) requests
//!  p(r)     = max(p_min, 1 − (1 − p_min) · min(r, N) / N)
//!  S_{e+1}  = S_e − ⌈S_e · decay⌉                                   Σ S_e ≈ S_0 / decay
//!  enough(done, E) ⇔ done ≥ share · E − 3·√E                       E in units of 2^-32
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
    let round_up = u128::from((subsidy % den) * num % den != 0);
    subsidy - (rate.of(subsidy) + round_up).min(subsidy)
}

/// Whether `done` reaches `share` of an expectation `expected` (units of
/// 2^-32 events), less three standard deviations of a Poisson count with
/// that mean: a host that does all it is drawn for passes except with
/// negligible probability, while one that does less than `share` of it
/// fails once the expectation is more than a handful.
pub fn enough(done: u64, expected_raw: u128, share: Share) -> bool {
    const ONE: u128 = 1 << 32;
    let wanted = share.of(expected_raw);
    // √E in units of 2^-32: √(E_raw · 2^32).
    let slack = 3 * expected_raw.saturating_mul(ONE).isqrt();
    u128::from(done).saturating_mul(ONE) + slack >= wanted
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
        assert!(enough(0, e(2), half), "two expected: zero is bad luck");
        assert!(enough(20, e(100), half), "half of 100 less 30");
        assert!(!enough(19, e(100), half));
        assert!(!enough(400, e(1000), half), "a host doing 40 % of 1000");
        assert!(enough(500, e(1000), half));
    }
}
