//! Expiring cards, before they fail: which card gets a `card_expiring` nudge, and against which
//! date it is checked.
//!
//! Three things can tell recoup a card will not last: Stripe's `customer.source.expiring` (legacy
//! card sources only), an `invoice.upcoming` (the customer's default card must still work on the
//! renewal), and the worker's daily scan of the default cards of every customer recoup knows (for
//! accounts that send no `invoice.upcoming`). Each card and expiry is nudged once. A card the
//! network updater refreshed (`payment_method.automatically_updated`) already shows its new expiry,
//! so it never looks expired here. The worker reads the cards from Stripe; this module decides.

use jiff::{SignedDuration, Timestamp};

use super::CardOnFile;
use crate::event::{Event, EventKind, EventObject};

/// How far ahead the daily scan looks: a card that will have expired by then is nudged. A month and
/// a few days covers the next renewal of a monthly plan; customers on yearly plans hear early.
pub const SCAN_AHEAD: SignedDuration = SignedDuration::from_hours(35 * 24);

/// What an event says about a card that may not last until it is charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiring {
    /// Stripe warned about this card itself.
    Card { customer: String, card: CardOnFile },
    /// A renewal is coming: the customer's default card must still work at `renewal`, when
    /// `amount_due` in `currency` will be charged.
    Renewal {
        customer: String,
        renewal: Timestamp,
        amount_due: i64,
        currency: String,
    },
}

/// What `event` says about an expiring card, if anything.
pub fn from_event(event: &Event) -> Option<Expiring> {
    match (&event.object, event.kind) {
        (EventObject::Card(source), EventKind::CustomerSourceExpiring) => {
            let details = &source.card;
            Some(Expiring::Card {
                customer: source.customer.clone()?,
                card: CardOnFile {
                    id: source.id.clone(),
                    brand: details.brand.clone().unwrap_or_else(|| "card".to_owned()),
                    last4: details.last4.clone().unwrap_or_default(),
                    // A warning without an expiry still means the card is going: nudge it.
                    exp_month: details.exp_month.unwrap_or(12),
                    exp_year: details.exp_year.unwrap_or(0),
                },
            })
        }
        (EventObject::Invoice(upcoming), EventKind::InvoiceUpcoming) => {
            // The first moment Stripe will charge: its planned attempt, else the due date, else
            // the end of the period the invoice renews.
            let renewal = upcoming
                .next_payment_attempt
                .or(upcoming.due_date)
                .or(upcoming.period_end)
                .and_then(|t| Timestamp::from_second(t).ok())?;
            Some(Expiring::Renewal {
                customer: upcoming.customer.clone(),
                renewal,
                amount_due: upcoming.amount_due,
                currency: upcoming.currency.clone(),
            })
        }
        _ => None,
    }
}

/// Whether the daily scan at `now` nudges `card`: it will have expired within [`SCAN_AHEAD`].
pub fn due_in_scan(card: &CardOnFile, now: Timestamp) -> bool {
    card.expired_by(super::time::later(now, SCAN_AHEAD))
}

/// The name under which a card's nudge is remembered, so each card and expiry is nudged once (a
/// renewed card with a new expiry is a new name).
pub fn once_key(customer: &str, card: &CardOnFile) -> String {
    format!(
        "expiring:{customer}:{}:{}-{}",
        card.id, card.exp_year, card.exp_month
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::wire::{Parsed, parse};

    fn fixture(kind: &str) -> Event {
        let path = format!(
            "{}/../../fixtures/events/{kind}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let Ok(Parsed::Acted(event)) = parse(&std::fs::read(path).expect("fixture")) else {
            panic!("{kind} is an event recoup acts on");
        };
        *event
    }

    fn card(exp_month: u32, exp_year: u32) -> CardOnFile {
        CardOnFile {
            id: "pm_1".to_owned(),
            brand: "visa".to_owned(),
            last4: "4242".to_owned(),
            exp_month,
            exp_year,
        }
    }

    #[test]
    fn a_source_warning_names_its_card_and_an_upcoming_invoice_its_renewal() {
        let Some(Expiring::Card { customer, card }) =
            from_event(&fixture("customer.source.expiring"))
        else {
            panic!("a source warning is about its card");
        };
        assert!(customer.starts_with("cus_"), "{customer}");
        assert!(card.exp_year > 0);
        let Some(Expiring::Renewal { renewal, .. }) = from_event(&fixture("invoice.upcoming"))
        else {
            panic!("an upcoming invoice is about the renewal");
        };
        assert!(renewal > Timestamp::UNIX_EPOCH);
        assert_eq!(from_event(&fixture("invoice.paid")), None);
    }

    #[test]
    fn the_scan_nudges_a_card_that_expires_within_five_weeks_and_once_per_expiry() {
        let now: Timestamp = "2026-11-30T00:00:00Z".parse().expect("time");
        assert!(due_in_scan(&card(11, 2026), now));
        assert!(due_in_scan(&card(12, 2026), now), "gone by 1 January");
        assert!(!due_in_scan(&card(1, 2027), now));
        assert_ne!(
            once_key("cus_1", &card(12, 2026)),
            once_key("cus_1", &card(12, 2029))
        );
    }
}
