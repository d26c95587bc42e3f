//! A second synthetic profile, so that a policy — and above all a learning one — is not judged
//! only on the population it was built beside.
//!
//! `--profile later` takes the standard population and moves every customer's pay 24 days and 4
//! hours later: money that came on the 1st comes on the 25th, the 15th's on the 9th, Friday's on
//! Monday, and it lands around noon instead of early morning; the days of the month the customers
//! paid on before (`past_payment_days`) move with it. Declines whose money does not wait for a
//! payday (an issuer's glitch) and everything else about the customers stay as they were. A
//! policy tuned to the 1st and 15th loses on it; one that learns when money arrives should not —
//! and the same binary, with the same policy file, is run on both.

use jiff::SignedDuration;

use super::super::population::FailedInvoice;

/// Which synthetic population `--synthetic` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Profile {
    /// Paydays on the 1st and 15th, the last of the month, Fridays; money early in the morning.
    #[default]
    Standard,
    /// The same customers paid 24 days and 4 hours later: the 25th and 9th, Mondays, noon.
    Later,
}

/// How much later the `later` profile pays.
const LATER: SignedDuration = SignedDuration::from_hours(24 * 24 + 4);

impl Profile {
    /// One customer's invoices as this profile makes them.
    pub fn apply(self, mut customer: Vec<FailedInvoice>) -> Vec<FailedInvoice> {
        if self == Profile::Standard {
            return customer;
        }
        for invoice in &mut customer {
            let waits_for_pay =
                invoice.first_decline.decline_code.as_deref() == Some("insufficient_funds");
            if !waits_for_pay {
                continue;
            }
            for funds in &mut invoice.funds {
                funds.from += LATER;
                funds.to += LATER;
            }
            for day in &mut invoice.past_payment_days {
                // 24 days on, in a 30-day month: the 1st → the 25th, the 15th → the 9th.
                *day = (*day - 1 + 24) % 30 + 1;
            }
        }
        customer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_later_profile_moves_pay_and_leaves_the_rest() {
        let standard: Vec<_> = super::super::population(2_000, 3).collect();
        let later: Vec<_> = standard
            .iter()
            .cloned()
            .map(|c| Profile::Later.apply(c))
            .collect();
        let mut moved = 0;
        for (a, b) in standard.iter().flatten().zip(later.iter().flatten()) {
            assert_eq!(
                (&a.invoice_id, &a.card, a.failed_at, &a.updates_card),
                (&b.invoice_id, &b.card, b.failed_at, &b.updates_card)
            );
            let waits = a.first_decline.decline_code.as_deref() == Some("insufficient_funds");
            if waits && !a.funds.is_empty() {
                moved += 1;
                assert_eq!(b.funds[0].from, a.funds[0].from + LATER);
            } else {
                assert_eq!(a.funds, b.funds);
            }
            if waits && a.past_payment_days.contains(&1) {
                assert!(
                    b.past_payment_days.contains(&25),
                    "{:?}",
                    b.past_payment_days
                );
            }
        }
        assert!(moved > 100, "{moved} customers' pay moved");
        assert_eq!(Profile::Standard.apply(standard[0].clone()), standard[0]);
    }
}
