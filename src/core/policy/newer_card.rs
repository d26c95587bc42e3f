//! The customer already gave a newer card, on another of their invoices: charge that one.
//!
//! A customer who answers a nudge with a new card fixes the invoices open at the time (each hears
//! of the card from Stripe's `payment_method.attached`). Their next renewal may still fail on the
//! old card — a subscription keeps its own default payment method, which the new card did not
//! replace — and its case would then wait for a card the customer has already given. So when a
//! failure on a card other than the customer's newest comes in, the case hears of the newer one
//! ([`super::Input::NewerCard`]), and takes it as a new payment method arriving now: the next
//! retry charges it [`after_new_card`](super::Plan::after_new_card) later, whatever the old card's
//! decline was, as for any new card. Even when the case heard of the card before its invoice
//! failed (Stripe's event for the customer, kept and replayed when the case opened): the failure on
//! the old card came after. Once per card and case: a case whose last attempt was on the card, whose
//! retry on it is still to come, or that knows a newer one, does nothing.

use jiff::Timestamp;

use super::events::card_of;
use super::replan::replan;
use super::{Card, Case, Decision, Entry, NewPaymentMethod, Policy, State};
use crate::event::{Event, EventKind, EventObject};

/// The customer's card `card` (payment method `method`) came on another invoice at `since`,
/// and `at` is when the case hears of it.
pub(super) fn on_newer_card(
    policy: &Policy,
    case: Case,
    method: &str,
    card: &Card,
    since: Timestamp,
    at: Timestamp,
) -> Decision {
    let open = matches!(case.state, State::Retrying | State::AwaitingCustomer);
    let same_card = case
        .card
        .as_ref()
        .is_some_and(|known| known.fingerprint == card.fingerprint);
    // A newer method than that one, or this one with its retry still to come, is known already.
    // This one known from before the failure is not: the invoice failed on the old card since.
    let known = case.new_payment_method.as_ref().is_some_and(|known| {
        (known.id != method && known.at > since)
            || (known.id == method && case.answered_by_new_card())
    });
    if !open || same_card || known {
        return Decision::unchanged(case);
    }
    let mut next = case;
    // Arriving now, for the case: the plan retries a payment method newer than its last attempt.
    next.new_payment_method = Some(Box::new(NewPaymentMethod {
        id: method.to_owned(),
        at,
    }));
    next.card = Some(card.clone());
    if next.state == State::AwaitingCustomer {
        next.state = State::Retrying;
    }
    let (planned, actions) = replan(policy, &mut next, at);
    next.record(Entry {
        at,
        what: "customer's newer card".to_owned(),
        detail: format!(
            "the customer gave the card {method} on another invoice on {}, after the card this \
             invoice failed on{planned}",
            since.strftime("%Y-%m-%d")
        ),
        event: None,
    });
    Decision {
        actions,
        ..Decision::save(next)
    }
}

/// What a case should hear, at `at`, of the newest card among Stripe's events about its customer
/// (`payment_method.attached` or `.automatically_updated`, with the card's details); `None` when
/// they name none. The case itself decides whether the card is news ([`super::Input::NewerCard`]):
/// the worker asks this with the events it keeps about the customer, the simulator with the card
/// its customer gave.
pub fn newer_card<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    at: Timestamp,
) -> Option<super::Input> {
    events
        .into_iter()
        .filter(|event| {
            matches!(
                event.kind,
                EventKind::PaymentMethodAttached | EventKind::PaymentMethodAutomaticallyUpdated
            )
        })
        .filter_map(|event| match &event.object {
            EventObject::PaymentMethod(pm) => Some((event.created, pm, card_of(pm)?)),
            _ => None,
        })
        .max_by_key(|(created, _, _)| *created)
        .map(|(created, pm, card)| super::Input::NewerCard {
            method: pm.id.clone(),
            card,
            since: Timestamp::from_second(created).unwrap_or(at),
            at,
        })
}
