//! The statistics of the experiments report, as plain functions over counts.
//!
//! - **Recovery rate**: the difference of two proportions with **Newcombe's hybrid score interval**
//!   (method 10 of Newcombe, 1998), built from each arm's Wilson score interval. Unlike the Wald
//!   interval it stays inside [-1, 1] and keeps its coverage near rates of 0 or 1 and at the
//!   modest counts an experiment starts with.
//! - **Revenue recovered per invoice**: the difference of two means with the **normal
//!   approximation** (Welch's standard error, `sqrt(s₁²/n₁ + s₂²/n₂)`), each variance from the
//!   arm's sum and sum of squares. Revenue per invoice is skewed (most invoices 0, some large), so
//!   the interval is only meaningful with enough invoices: [`enough_data`].
//! - **Invoices needed**: per arm, to detect a given difference of rates at 80% power and a
//!   two-sided 5% level, the standard two-proportion formula
//!   `n = (z₀.₉₇₅·√(2·p̄·q̄) + z₀.₈·√(p₁q₁ + p₂q₂))² / (p₁ − p₂)²`, with p̄ the mean of the two rates.

use serde::Serialize;
use utoipa::ToSchema;

/// The normal quantile of 0.975: a two-sided 95% interval.
pub const Z_95: f64 = 1.959964;
/// The normal quantile of 0.8: 80% power.
pub const Z_POWER_80: f64 = 0.841621;

/// Final invoices each arm needs before its difference to the holdout is reported.
pub const MIN_INVOICES: u64 = 30;
/// Recovered, and not recovered, invoices each arm needs likewise.
pub const MIN_EACH_OUTCOME: u64 = 5;

/// The rule [`enough_data`] applies, in words, for the report to state.
pub const ENOUGH_DATA_RULE: &str = "at least 30 final invoices in each of the two arms, and in each at least 5 recovered and 5 not recovered";

/// An estimate with its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// Whether the interval excludes 0: the difference is unlikely to be chance alone.
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// Whether an arm of `invoices` final invoices, `recovered` of them recovered, has enough for an
/// interval to mean something ([`ENOUGH_DATA_RULE`]): the normal approximations behind both
/// intervals need a few of each outcome, not just many invoices.
pub fn enough_data(invoices: u64, recovered: u64) -> bool {
    invoices >= MIN_INVOICES
        && recovered >= MIN_EACH_OUTCOME
        && invoices.saturating_sub(recovered) >= MIN_EACH_OUTCOME
}

/// The Wilson score interval of `successes` out of `n` (`n` > 0).
pub fn wilson(successes: u64, n: u64) -> (f64, f64) {
    let (x, n) = (successes as f64, n as f64);
    let z2 = Z_95 * Z_95;
    let denominator = n + z2;
    let centre = (x + z2 / 2.0) / denominator;
    let half = Z_95 / denominator * (x * (n - x) / n + z2 / 4.0).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The difference of rates `x1/n1 − x2/n2` with Newcombe's hybrid score interval; `None` when
/// either side has no invoices.
pub fn rate_difference(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<Interval> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let (l1, u1) = wilson(x1, n1);
    let (l2, u2) = wilson(x2, n2);
    let estimate = p1 - p2;
    Some(Interval {
        estimate,
        low: estimate - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
        high: estimate + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
    })
}

/// The mean and the sample variance of `n` values from their sum and sum of squares; `None` with
/// fewer than two values.
pub fn mean_and_variance(n: u64, sum: f64, sum_squares: f64) -> Option<(f64, f64)> {
    if n < 2 {
        return None;
    }
    let count = n as f64;
    let mean = sum / count;
    // Rounding can take a variance of (nearly) 0 just below it.
    let variance = ((sum_squares - sum * sum / count) / (count - 1.0)).max(0.0);
    Some((mean, variance))
}

/// The difference of means per invoice, each side given as (invoices, sum, sum of squares), with
/// the normal approximation; `None` with fewer than two invoices on either side.
pub fn mean_difference(one: (u64, f64, f64), other: (u64, f64, f64)) -> Option<Interval> {
    let (m1, v1) = mean_and_variance(one.0, one.1, one.2)?;
    let (m2, v2) = mean_and_variance(other.0, other.1, other.2)?;
    let se = (v1 / one.0 as f64 + v2 / other.0 as f64).sqrt();
    let estimate = m1 - m2;
    Some(Interval {
        estimate,
        low: estimate - Z_95 * se,
        high: estimate + Z_95 * se,
    })
}

/// Invoices per arm needed to detect rates `p1` against `p2` at 80% power, two-sided 5%; `None`
/// when the rates are equal (no difference to detect).
pub fn invoices_needed(p1: f64, p2: f64) -> Option<u64> {
    let lift = p1 - p2;
    if lift.abs() < 1e-9 {
        return None;
    }
    let mean = (p1 + p2) / 2.0;
    let root = Z_95 * (2.0 * mean * (1.0 - mean)).sqrt()
        + Z_POWER_80 * (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt();
    Some((root * root / (lift * lift)).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(seen: f64, want: f64) {
        assert!((seen - want).abs() < 1e-5, "{seen} ≠ {want}");
    }

    #[test]
    fn wilson_matches_the_textbook() {
        // 60 of 100, by hand: z² = 3.841459, centre = (60 + 1.920730) / 103.841459 = 0.596300,
        // half = 1.959964 / 103.841459 · √(24 + 0.960365) = 0.094297: [0.502003, 0.690599] —
        // the 0.502–0.691 of Newcombe (1998), table I.
        let (low, high) = wilson(60, 100);
        close(low, 0.502_003);
        close(high, 0.690_599);
        // Never outside [0, 1], even at the edge.
        let (low, high) = wilson(0, 10);
        assert_eq!(low, 0.0);
        assert!(high > 0.0 && high < 0.35, "{high}");
    }

    #[test]
    fn newcombe_interval_of_a_difference_of_rates() {
        // 60/100 against 40/100: the Wilson intervals are [0.502003, 0.690599] and
        // [0.309401, 0.497997], so by hand
        //   low  = 0.2 − √((0.6 − 0.502003)² + (0.497997 − 0.4)²) = 0.2 − 0.138589 = 0.061411
        //   high = 0.2 + √((0.690599 − 0.6)² + (0.4 − 0.309401)²) = 0.2 + 0.128126 = 0.328126
        let d = rate_difference(60, 100, 40, 100).unwrap();
        close(d.estimate, 0.2);
        close(d.low, 0.061_411);
        close(d.high, 0.328_126);
        assert!(d.excludes_zero());
        // Equal rates: an interval around 0 that includes it.
        let same = rate_difference(10, 40, 10, 40).unwrap();
        assert!(!same.excludes_zero() && same.estimate == 0.0);
        assert_eq!(rate_difference(1, 0, 1, 2), None);
    }

    #[test]
    fn revenue_difference_by_the_normal_approximation() {
        // Arm: 1000, 1000, 0, 0 → mean 500, variance (2 000 000 − 2000²/4)/3 = 333 333.3.
        // Holdout: 1000, 0, 0, 0 → mean 250, variance (1 000 000 − 1000²/4)/3 = 250 000.
        // SE = √(333 333.3/4 + 250 000/4) = 381.881; 250 ± 1.959964 · 381.881 = [−498.47, 998.47].
        let d = mean_difference((4, 2000.0, 2e6), (4, 1000.0, 1e6)).unwrap();
        close(d.estimate, 250.0);
        assert!((d.low - -498.4736).abs() < 1e-3, "{d:?}");
        assert!((d.high - 998.4736).abs() < 1e-3, "{d:?}");
        assert_eq!(mean_difference((1, 5.0, 25.0), (4, 1.0, 1.0)), None);
    }

    #[test]
    fn invoices_needed_for_a_lift() {
        // 60% against 40%: (1.959964·√(2·0.5·0.5) + 0.841621·√(0.24 + 0.24))² / 0.2²
        //   = (1.385904 + 0.583092)² / 0.04 = 96.92 → 97 per arm.
        assert_eq!(invoices_needed(0.6, 0.4), Some(97));
        // A smaller lift needs many more.
        assert!(invoices_needed(0.42, 0.4).unwrap() > 9000);
        assert_eq!(invoices_needed(0.4, 0.4), None);
    }

    #[test]
    fn enough_data_needs_invoices_and_both_outcomes() {
        assert!(enough_data(30, 5));
        assert!(!enough_data(29, 10));
        assert!(!enough_data(100, 4));
        assert!(!enough_data(100, 96));
    }
}
