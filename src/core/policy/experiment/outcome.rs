//! What an arm's invoices came to, as sums only: the counters the store keeps per arm, and what one
//! case adds to them once its outcome is final.
//!
//! An invoice counts when its case first reaches a final state — recovered, paused, canceled or
//! closed — and never while it is still in dunning: a case still retrying has no outcome yet, and
//! counting it as unrecovered would make every arm look worse the faster it grows. Cases that never
//! saw a failure (an invoice paid before recoup saw it fail) are not counted. Every figure is a
//! count or a sum, so the counters stay the same size however many invoices they count, and a
//! variance is known from the sum and the sum of squares.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::policy::{Case, NudgeKind, State};

/// What one final case adds to its arm's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    /// The invoice's currency (lowercase ISO code): revenue is never added across currencies.
    pub currency: String,
    /// What was recovered, in the currency's smallest unit; `None` when it was not.
    pub recovered: Option<i64>,
    /// Charge attempts after the first failure (Stripe's first, failed one not counted).
    pub attempts: u32,
    /// Nudges sent, the thank-you not counted.
    pub nudges: u32,
    /// The customer was lost: dunning ended with their subscription canceled.
    pub lost: bool,
}

impl Contribution {
    /// What `case` adds to its arm, or `None` while it has none to add: still in dunning, or never
    /// failed.
    pub fn of(case: &Case) -> Option<Self> {
        if !case.state.is_final() || case.failed_at.is_none() {
            return None;
        }
        Some(Self {
            currency: case.currency.to_ascii_lowercase(),
            recovered: (case.state == State::Recovered).then(|| case.still_due()),
            attempts: u32::try_from(case.attempts.len().saturating_sub(1)).unwrap_or(u32::MAX),
            nudges: u32::try_from(
                case.nudged
                    .iter()
                    .filter(|n| n.kind != NudgeKind::Recovered)
                    .count(),
            )
            .unwrap_or(u32::MAX),
            lost: case.state == State::Canceled,
        })
    }
}

/// The revenue side of one currency in an arm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Revenue {
    /// Final invoices in the currency: what revenue per invoice divides by.
    pub invoices: u64,
    /// Recovered, in the currency's smallest unit.
    pub sum: i64,
    /// The sum of each invoice's recovered amount squared (0 for one not recovered): with `sum`
    /// and `invoices`, the variance of revenue per invoice. A float, as Redis keeps it
    /// (`HINCRBYFLOAT`): squares of large amounts overflow an integer long before they lose
    /// meaningful precision.
    pub sum_squares: f64,
}

/// One arm's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArmCounts {
    /// Invoices whose outcome is final.
    pub invoices: u64,
    /// Of them, recovered.
    pub recovered: u64,
    pub attempts: u64,
    pub nudges: u64,
    /// Final invoices whose dunning ended with the subscription canceled.
    pub lost: u64,
    /// By currency.
    pub revenue: BTreeMap<String, Revenue>,
}

impl ArmCounts {
    /// Counts one final invoice: its outcome and, when it was recovered, its recovery.
    pub fn add(&mut self, c: &Contribution) {
        self.add_outcome(c);
        if let Some(amount) = c.recovered {
            self.add_recovery(&c.currency, amount);
        }
    }

    /// Counts a final invoice's outcome, all but its recovery: counted once, when the case is
    /// first final.
    pub fn add_outcome(&mut self, c: &Contribution) {
        self.invoices += 1;
        self.attempts += u64::from(c.attempts);
        self.nudges += u64::from(c.nudges);
        self.lost += u64::from(c.lost);
        self.revenue.entry(c.currency.clone()).or_default().invoices += 1;
    }

    /// Counts an invoice's recovery of `amount`: counted once, when the case is recovered — with
    /// its outcome, or later (a paused subscription whose customer pays).
    pub fn add_recovery(&mut self, currency: &str, amount: i64) {
        self.recovered += 1;
        let revenue = self.revenue.entry(currency.to_owned()).or_default();
        revenue.sum += amount;
        revenue.sum_squares += (amount as f64).powi(2);
    }

    /// Adds another tally of the same arm (a simulation's threads, say).
    pub fn merge(&mut self, other: &ArmCounts) {
        self.invoices += other.invoices;
        self.recovered += other.recovered;
        self.attempts += other.attempts;
        self.nudges += other.nudges;
        self.lost += other.lost;
        for (currency, theirs) in &other.revenue {
            let mine = self.revenue.entry(currency.clone()).or_default();
            mine.invoices += theirs.invoices;
            mine.sum += theirs.sum;
            mine.sum_squares += theirs.sum_squares;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contribution(recovered: Option<i64>, lost: bool) -> Contribution {
        Contribution {
            currency: "usd".to_owned(),
            recovered,
            attempts: 2,
            nudges: 1,
            lost,
        }
    }

    #[test]
    fn counts_add_up_and_squares_give_the_spread() {
        let mut counts = ArmCounts::default();
        counts.add(&contribution(Some(1000), false));
        counts.add(&contribution(Some(3000), false));
        counts.add(&contribution(None, true));
        assert_eq!(
            (
                counts.invoices,
                counts.recovered,
                counts.attempts,
                counts.nudges
            ),
            (3, 2, 6, 3)
        );
        assert_eq!(counts.lost, 1);
        let usd = counts.revenue["usd"];
        assert_eq!((usd.invoices, usd.sum), (3, 4000));
        assert_eq!(usd.sum_squares, 1_000_000.0 + 9_000_000.0);
        let mut twice = counts.clone();
        twice.merge(&counts);
        assert_eq!((twice.invoices, twice.revenue["usd"].sum), (6, 8000));
    }
}
