//! Segments: which invoices get which retry plan.
//!
//! Not every customer should be chased the same way: a large, long-standing account earns fewer,
//! gentler tries than a small self-serve plan, and a plan's own customers may pay on their own
//! rhythm. A segment names the invoices it is for (amount, currency, price, invoice metadata; the
//! customer's metadata, tenure and past failures) and the plan they get. A case is placed in a
//! segment once, when it opens, from the failed invoice and what Stripe shows of its customer
//! ([`CustomerFacts`]), and keeps the segment's name, so its timeline can say which plan it is on;
//! the first segment that matches wins, and an invoice no segment matches gets the policy's own
//! plan.

use std::collections::BTreeMap;

use jiff::{Timestamp, Unit};

use super::{EndPlan, NudgePlan, Plan};
use crate::event::Invoice;

/// What Stripe shows of a failed invoice's customer when the case opens, and how often recoup has
/// seen them fail before.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustomerFacts {
    pub metadata: BTreeMap<String, String>,
    /// The billing address's country (ISO 3166-1 alpha-2).
    pub country: Option<String>,
    /// When the customer was created in Stripe: where their tenure starts.
    pub created: Option<Timestamp>,
    /// The customer's earlier invoices recoup opened a case for.
    pub past_failures: u32,
    /// How to reach them, for nudges.
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Their languages, most preferred first (`de-DE`, `en`).
    pub preferred_locales: Vec<String>,
    /// The local days of the month their earlier invoices were paid on (a bounded number).
    pub payment_days: Vec<u8>,
}

impl CustomerFacts {
    /// Whole months from the customer's creation to `at`; 0 when Stripe did not say.
    pub fn tenure_months(&self, at: Timestamp) -> u32 {
        let zone = jiff::tz::TimeZone::UTC;
        self.created
            .and_then(|created| {
                created
                    .to_zoned(zone.clone())
                    .until((Unit::Month, &at.to_zoned(zone)))
                    .ok()
            })
            .map_or(0, |span| u32::try_from(span.get_months()).unwrap_or(0))
    }
}

/// A named group of invoices and the plan they get.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub name: String,
    pub when: Match,
    pub plan: Plan,
    /// The segment's own nudges (`[segment.nudges]`, over the policy's `[nudges]`).
    pub nudges: NudgePlan,
    /// What happens when dunning runs out (`[segment.end]`, over the policy's `[end]`).
    pub ending: EndPlan,
}

/// An amount an invoice's amount due is held against, in the currency's smallest unit: one figure
/// for every currency, or one per currency — 20000 is $200.00 but ₩20,000, about $14, so a
/// threshold that means "a large account" names each currency; an invoice in a currency the table
/// does not name does not meet it.
#[derive(Debug, Clone, PartialEq)]
pub enum Threshold {
    Every(i64),
    PerCurrency(BTreeMap<String, i64>),
}

impl Threshold {
    /// The figure for `currency` (any case), if the threshold has one.
    pub fn in_currency(&self, currency: &str) -> Option<i64> {
        match self {
            Threshold::Every(amount) => Some(*amount),
            Threshold::PerCurrency(table) => table.get(&currency.to_ascii_lowercase()).copied(),
        }
    }
}

/// What an invoice must have to be in a segment; every condition given must hold, an absent one
/// holds for all.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Match {
    /// Amount due at least this, in the currency's smallest unit (cents).
    pub amount_at_least: Option<Threshold>,
    /// Amount due below this, in the currency's smallest unit.
    pub amount_below: Option<Threshold>,
    /// One of these currencies (lowercase ISO codes, as Stripe writes them).
    pub currencies: Vec<String>,
    /// An invoice line on one of these prices (`price_…`).
    pub prices: Vec<String>,
    /// The invoice's metadata holds each of these key-value pairs.
    pub metadata: BTreeMap<String, String>,
    /// The customer's metadata holds each of these key-value pairs.
    pub customer_metadata: BTreeMap<String, String>,
    /// The customer has been with the business at least this many whole months.
    pub tenure_months_at_least: Option<u32>,
    /// ...and fewer than this many.
    pub tenure_months_below: Option<u32>,
    /// recoup has seen at least this many earlier invoices of the customer fail.
    pub past_failures_at_least: Option<u32>,
    /// ...and fewer than this many.
    pub past_failures_below: Option<u32>,
}

impl Match {
    /// Whether a failed invoice (at `at`) of a customer described by `customer` is in the segment.
    pub fn matches(&self, invoice: &Invoice, customer: &CustomerFacts, at: Timestamp) -> bool {
        let tenure = customer.tenure_months(at);
        let between = |n: u32, least: Option<u32>, below: Option<u32>| {
            least.is_none_or(|l| n >= l) && below.is_none_or(|b| n < b)
        };
        self.invoice_matches(invoice)
            && self
                .customer_metadata
                .iter()
                .all(|(key, value)| customer.metadata.get(key) == Some(value))
            && between(
                tenure,
                self.tenure_months_at_least,
                self.tenure_months_below,
            )
            && between(
                customer.past_failures,
                self.past_failures_at_least,
                self.past_failures_below,
            )
    }

    fn invoice_matches(&self, invoice: &Invoice) -> bool {
        let holds = |threshold: &Option<Threshold>, test: fn(i64, i64) -> bool| {
            threshold.as_ref().is_none_or(|t| {
                t.in_currency(&invoice.currency)
                    .is_some_and(|figure| test(invoice.amount_due, figure))
            })
        };
        holds(&self.amount_at_least, |due, least| due >= least)
            && holds(&self.amount_below, |due, below| due < below)
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
    use crate::event::EventObject;
    use crate::event::wire::{Parsed, parse};

    fn invoice() -> Invoice {
        let body = include_bytes!("../../../fixtures/events/invoice.payment_failed.json");
        let Ok(Parsed::Acted(event)) = parse(body) else {
            panic!("the fixture is acted on");
        };
        let EventObject::Invoice(invoice) = event.object else {
            panic!("an invoice event");
        };
        *invoice
    }

    fn at() -> Timestamp {
        "2026-11-30T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn every_condition_given_must_hold_and_an_empty_match_takes_all() {
        let invoice = invoice();
        let anyone = CustomerFacts::default();
        let matches = |m: &Match| m.matches(&invoice, &anyone, at());
        assert!(matches(&Match::default()));
        let price = invoice.price_ids[0].clone();
        let all = Match {
            amount_at_least: Some(Threshold::Every(invoice.amount_due)),
            amount_below: Some(Threshold::PerCurrency(BTreeMap::from([(
                invoice.currency.clone(),
                invoice.amount_due + 1,
            )]))),
            currencies: vec!["EUR".into(), invoice.currency.to_uppercase()],
            prices: vec!["price_other".into(), price],
            ..Match::default()
        };
        assert!(matches(&all));
        let fails: [Match; 6] = [
            Match {
                amount_at_least: Some(Threshold::Every(invoice.amount_due + 1)),
                ..all.clone()
            },
            Match {
                amount_below: Some(Threshold::Every(invoice.amount_due)),
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
            // A threshold per currency that does not name the invoice's: not met, however large.
            Match {
                amount_at_least: Some(Threshold::PerCurrency(BTreeMap::from([(
                    "krw".to_owned(),
                    1,
                )]))),
                ..all.clone()
            },
        ];
        for (n, fail) in fails.iter().enumerate() {
            assert!(!matches(fail), "condition {n} should not hold");
        }
    }

    #[test]
    fn customer_conditions_read_metadata_tenure_and_past_failures() {
        let invoice = invoice();
        let customer = CustomerFacts {
            metadata: BTreeMap::from([("plan".to_owned(), "team".to_owned())]),
            country: Some("DE".to_owned()),
            created: Some("2024-11-30T13:00:00Z".parse().unwrap()),
            past_failures: 2,
            ..CustomerFacts::default()
        };
        // Two years less an hour: 23 whole months.
        assert_eq!(customer.tenure_months(at()), 23);
        let loyal = Match {
            customer_metadata: customer.metadata.clone(),
            tenure_months_at_least: Some(23),
            past_failures_below: Some(3),
            ..Match::default()
        };
        assert!(loyal.matches(&invoice, &customer, at()));
        for fail in [
            Match {
                tenure_months_at_least: Some(24),
                ..loyal.clone()
            },
            Match {
                tenure_months_below: Some(23),
                ..loyal.clone()
            },
            Match {
                past_failures_at_least: Some(3),
                ..loyal.clone()
            },
            Match {
                customer_metadata: BTreeMap::from([("plan".to_owned(), "solo".to_owned())]),
                ..loyal.clone()
            },
        ] {
            assert!(!fail.matches(&invoice, &customer, at()), "{fail:?}");
        }
        // A customer Stripe told nothing about has no tenure.
        assert_eq!(CustomerFacts::default().tenure_months(at()), 0);
    }
}
