//! Expiring cards, before they fail: which card gets a `card_expiring` nudge, and against which
//! date it is checked.
//!
//! Three things can tell recoup a card will not last: Stripe's `customer.source.expiring` (legacy
//! card sources only), an `invoice.upcoming` (the customer's default card must still work on the
//! renewal), and the worker's daily scan of the default cards of every customer recoup knows (for
//! accounts that send no `invoice.upcoming`). Each card and expiry is nudged once. A card the
//! network updater refreshed (`payment_method.automatically_updated`) already shows its new expiry,
//! so it never looks expired here. The scan leaves out customers no subscription will charge, and an
//! expiring card's nudge waits for the customer's contact window and daily cap like any other. The
//! worker reads the cards from Stripe; this module decides.

use jiff::{SignedDuration, Timestamp};

use super::timing::{self, Window};
use super::{CardOnFile, NudgePlan};
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

/// A customer as an expiring card's nudge needs them, read from Stripe in one call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CardHolder {
    /// Their default payment method, if it is a card.
    pub card: Option<CardOnFile>,
    /// Whether a subscription will charge it: one that is active, trialing or past due.
    pub subscribed: bool,
    /// Their time zone, as a case of theirs would have it (metadata `timezone`, else country).
    pub timezone: String,
    /// Their own contact hours (metadata `contact_window`), if they named any.
    pub contact_window: Option<Window>,
}

impl CardHolder {
    /// The card the daily scan at `now` nudges them about: their default card, when it will have
    /// expired within [`SCAN_AHEAD`] and a subscription will charge it (a customer who left needs
    /// no new card).
    pub fn due_in_scan(&self, now: Timestamp) -> Option<&CardOnFile> {
        self.card
            .as_ref()
            .filter(|card| self.subscribed && card.expired_by(super::time::later(now, SCAN_AHEAD)))
    }

    /// `at`, or the next opening of their contact window when `at` falls in their quiet hours.
    pub fn into_window(&self, plan: &NudgePlan, at: Timestamp) -> Timestamp {
        let zone = timing::zone(&self.timezone);
        timing::into_window(at, &zone, self.contact_window.unwrap_or(plan.window))
    }
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

    fn holder(exp_month: u32, exp_year: u32) -> CardHolder {
        CardHolder {
            card: Some(card(exp_month, exp_year)),
            subscribed: true,
            timezone: "America/Chicago".to_owned(),
            contact_window: None,
        }
    }

    #[test]
    fn the_scan_nudges_a_card_that_expires_within_five_weeks_and_once_per_expiry() {
        let now: Timestamp = "2026-11-30T00:00:00Z".parse().expect("time");
        assert!(holder(11, 2026).due_in_scan(now).is_some());
        assert!(
            holder(12, 2026).due_in_scan(now).is_some(),
            "gone by 1 January"
        );
        assert!(holder(1, 2027).due_in_scan(now).is_none());
        assert_ne!(
            once_key("cus_1", &card(12, 2026)),
            once_key("cus_1", &card(12, 2029))
        );
    }

    #[test]
    fn the_scan_leaves_out_a_customer_no_subscription_will_charge() {
        let now: Timestamp = "2026-11-30T00:00:00Z".parse().expect("time");
        let left = CardHolder {
            subscribed: false,
            ..holder(12, 2026)
        };
        assert_eq!(left.due_in_scan(now), None);
        let no_card = CardHolder {
            card: None,
            ..holder(12, 2026)
        };
        assert_eq!(no_card.due_in_scan(now), None);
    }

    #[test]
    fn an_expiring_card_nudge_waits_for_the_customer_s_window() {
        let plan = NudgePlan::default();
        // 06:00 in Chicago: before the default window opens at 09:00.
        let dawn: Timestamp = "2026-12-15T12:00:00Z".parse().expect("time");
        let nine: Timestamp = "2026-12-15T15:00:00Z".parse().expect("time");
        assert_eq!(holder(12, 2026).into_window(&plan, dawn), nine);
        assert_eq!(holder(12, 2026).into_window(&plan, nine), nine);
        // Their own hours win over the plan's.
        let evenings = CardHolder {
            contact_window: super::super::nudge::contact_window("18-22"),
            ..holder(12, 2026)
        };
        let six_pm: Timestamp = "2026-12-16T00:00:00Z".parse().expect("time");
        assert_eq!(evenings.into_window(&plan, nine), six_pm);
    }
}
