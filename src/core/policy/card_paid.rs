//! The same card just paid another of the customer's invoices: their money is there now.
//!
//! A customer's money comes and goes — a payday lands overnight and is spent within hours or
//! days — and no evidence about moments says as much about it as a payment that just went
//! through on the card. So when one of a customer's invoices is paid by a retry, their other
//! open cases on the same card hear of it ([`super::Input::CardPaid`]), and each one's next
//! scheduled retry moves to [`AFTER_CARD_PAID`] after that payment (in the retry window, after any
//! wait the card's network asked for). It is the plan's next retry made sooner, not one more: a
//! case with no retry left makes none, and the networks' budgets are still counted when it fires.
//!
//! Only recoup's own retries tell (the worker and the simulator alike): a customer who paid
//! through the portal may have paid another way, and a new card is already tried on every open
//! invoice by itself.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::replan::replan;
use super::{Case, Decision, Entry, Policy, State};

/// How long after the other invoice's payment the moved retry comes: soon enough to find the
/// money the shortest-lived windows leave (a few hours), late enough that the two charges do not
/// reach the issuer as one burst.
pub const AFTER_CARD_PAID: SignedDuration = SignedDuration::from_mins(30);

/// Another invoice of the case's customer that was paid on the case's card, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CardPaid {
    pub invoice_id: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

impl Case {
    /// The other invoice's payment that the next retry follows: one newer than the case's last
    /// attempt (an older one was followed already).
    pub fn card_paid_since_last_attempt(&self) -> Option<&CardPaid> {
        self.card_paid
            .as_deref()
            .filter(|paid| self.attempts.iter().all(|a| a.at < paid.at))
    }
}

/// `invoice_id`, another invoice of the case's customer, was paid at `at` by a retry on the card
/// `fingerprint`.
pub(super) fn on_card_paid(
    policy: &Policy,
    case: Case,
    invoice_id: &str,
    fingerprint: &str,
    at: Timestamp,
) -> Decision {
    let same_card = case
        .card
        .as_ref()
        .is_some_and(|card| card.fingerprint == fingerprint);
    let known = case.card_paid.as_ref().is_some_and(|paid| paid.at >= at);
    if case.invoice_id == invoice_id || !same_card || known || case.state != State::Retrying {
        return Decision::unchanged(case);
    }
    let mut next = case;
    next.card_paid = Some(Box::new(CardPaid {
        invoice_id: invoice_id.to_owned(),
        at,
    }));
    let (planned, actions) = replan(policy, &mut next, at);
    next.record(Entry {
        at,
        what: "card paid another invoice".to_owned(),
        detail: format!("a retry of {invoice_id} went through on the same card{planned}"),
        event: None,
    });
    Decision {
        actions,
        ..Decision::save(next)
    }
}
