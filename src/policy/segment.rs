//! Segments: which invoices get which retry plan.
//!
//! Not every customer should be chased the same way: a large, long-standing account earns fewer,
//! gentler tries than a small self-serve plan, and a plan's own customers may pay on their own
//! rhythm. A segment names the invoices it is for (amount, currency, price, invoice metadata) and
//! the plan they get. A case is placed in a segment once, when it opens, from the failed invoice
//! itself, and keeps the segment's name, so its timeline can say which plan it is on; the first
//! segment that matches wins, and an invoice no segment matches gets the policy's own plan.

use std::collections::BTreeMap;

use super::Plan;
use crate::webhook::event::Invoice;

/// A named group of invoices and the plan they get.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub name: String,
    pub when: Match,
    pub plan: Plan,
}

/// What an invoice must have to be in a segment; every condition given must hold, an absent one
/// holds for all.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Match {
    /// Amount due at least this, in the currency's smallest unit (cents).
    pub amount_at_least: Option<i64>,
    /// Amount due below this, in the currency's smallest unit.
    pub amount_below: Option<i64>,
    /// One of these currencies (lowercase ISO codes, as Stripe writes them).
    pub currencies: Vec<String>,
    /// An invoice line on one of these prices (`price_…`).
    pub prices: Vec<String>,
    /// The invoice's metadata holds each of these key-value pairs.
    pub metadata: BTreeMap<String, String>,
}

impl Match {
    pub fn matches(&self, invoice: &Invoice) -> bool {
        self.amount_at_least
            .is_none_or(|least| invoice.amount_due >= least)
            && self
                .amount_below
                .is_none_or(|below| invoice.amount_due < below)
            && (self.currencies.is_empty()
                || self
                    .currencies
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(&invoice.currency)))
            && (self.prices.is_empty() || self.prices.iter().any(|p| invoice.price_ids.contains(p)))
            && self
                .metadata
                .iter()
                .all(|(key, value)| invoice.metadata.get(key) == Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::event::{EventObject, Parsed, parse};

    fn invoice() -> Invoice {
        let body = include_bytes!("../../fixtures/events/invoice.payment_failed.json");
        let Ok(Parsed::Acted(event)) = parse(body) else {
            panic!("the fixture is acted on");
        };
        let EventObject::Invoice(invoice) = event.object else {
            panic!("an invoice event");
        };
        *invoice
    }

    #[test]
    fn every_condition_given_must_hold_and_an_empty_match_takes_all() {
        let invoice = invoice();
        assert!(Match::default().matches(&invoice));
        let price = invoice.price_ids[0].clone();
        let all = Match {
            amount_at_least: Some(invoice.amount_due),
            amount_below: Some(invoice.amount_due + 1),
            currencies: vec!["EUR".into(), invoice.currency.to_uppercase()],
            prices: vec!["price_other".into(), price],
            metadata: BTreeMap::new(),
        };
        assert!(all.matches(&invoice));
        let fails: [Match; 5] = [
            Match {
                amount_at_least: Some(invoice.amount_due + 1),
                ..all.clone()
            },
            Match {
                amount_below: Some(invoice.amount_due),
                ..all.clone()
            },
            Match {
                currencies: vec!["jpy".into()],
                ..all.clone()
            },
            Match {
                prices: vec!["price_other".into()],
                ..all.clone()
            },
            Match {
                metadata: BTreeMap::from([("tier".to_owned(), "enterprise".to_owned())]),
                ..all.clone()
            },
        ];
        for (n, fail) in fails.iter().enumerate() {
            assert!(!fail.matches(&invoice), "condition {n} should not hold");
        }
    }
}
