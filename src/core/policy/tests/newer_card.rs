//! A case that opens on a card the customer already replaced on another invoice charges the newer
//! card.

use super::*;
use crate::event::{Event, EventKind, EventObject};
use crate::policy::newer_card;

fn card(fingerprint: &str) -> Card {
    Card {
        fingerprint: fingerprint.into(),
        brand: "visa".into(),
        funding: None,
        expires_at: None,
    }
}

/// A case whose first decline (stolen card, never retried) came from `fp_old`: it waits for the
/// customer.
fn waiting_for_a_card() -> Case {
    let mut case = declined(0, DeclineClass::Hard, "stolen_card", "UTC");
    case.card = Some(card("fp_old"));
    case.state = State::AwaitingCustomer;
    let (planned, _) = replan::replan(&retries_only(), &mut case, now());
    assert!(
        case.timers
            .iter()
            .all(|t| !matches!(t.kind, TimerKind::Retry { .. })),
        "{planned}"
    );
    case
}

fn newer(method: &str, fingerprint: &str, since: Timestamp, at: Timestamp) -> Input {
    Input::NewerCard {
        method: method.into(),
        card: card(fingerprint),
        since,
        at,
    }
}

#[test]
fn a_case_told_of_the_customers_newer_card_charges_it_minutes_later() {
    let policy = retries_only();
    let case = waiting_for_a_card();
    let since = now() - SignedDuration::from_hours(24 * 30);
    let at = now() + SignedDuration::from_secs(1);
    let input = newer("pm_new", "fp_new", since, at);
    let told = decide(&policy, Some(&case), &input, at).case.unwrap();
    assert_eq!(told.state, State::Retrying);
    assert_eq!(
        told.card,
        Some(card("fp_new")),
        "the new card's budget is the one kept"
    );
    assert_eq!(
        told.timers,
        [Timer {
            at: at + policy.plan.after_new_card,
            kind: TimerKind::Retry { attempt: 2 }
        }]
    );
    let entry = told.timeline.last().unwrap();
    assert_eq!(entry.what, "customer's newer card");
    assert!(
        entry.detail.contains(
            "the customer gave the card pm_new on another invoice on 2026-10-02, after the card \
             this invoice failed on"
        ) && entry
            .detail
            .contains("new payment method pm_new arrived after attempt 1"),
        "{}",
        entry.detail
    );
    // Told again (after Stripe's next failure event), it changes nothing.
    assert_eq!(decide(&policy, Some(&told), &input, at).case, None);
    // What the new card comes to says nothing about the old card's moments.
    let due = told.timers[0].at;
    assert!(crate::policy::learning::Observation::of(&told, due, true).is_none());
}

#[test]
fn a_case_already_on_that_card_or_over_or_knowing_a_newer_one_is_not_moved() {
    let policy = retries_only();
    let since = now() - SignedDuration::from_hours(24);
    let at = now() + SignedDuration::from_secs(1);
    let case = waiting_for_a_card();
    // The invoice failed on the card the customer gave: nothing newer.
    let same = newer("pm_old", "fp_old", since, at);
    assert_eq!(decide(&policy, Some(&case), &same, at).case, None);
    // Over: recovered, closed.
    let mut over = case.clone();
    over.state = State::Closed;
    let input = newer("pm_new", "fp_new", since, at);
    assert_eq!(decide(&policy, Some(&over), &input, at).case, None);
    // The case has had a new payment method since that card came.
    let mut knows = case.clone();
    knows.new_payment_method = Some(Box::new(NewPaymentMethod {
        id: "pm_newest".into(),
        at: since + SignedDuration::from_hours(1),
    }));
    assert_eq!(decide(&policy, Some(&knows), &input, at).case, None);
    // The case heard of the card before its invoice failed on the old one (the customer's event,
    // replayed when it opened): the failure came after, so the card is tried.
    let mut heard = case.clone();
    heard.new_payment_method = Some(Box::new(NewPaymentMethod {
        id: "pm_new".into(),
        at: since,
    }));
    let tried = decide(&policy, Some(&heard), &input, at).case.unwrap();
    assert_eq!(
        tried.timers,
        [Timer {
            at: at + policy.plan.after_new_card,
            kind: TimerKind::Retry { attempt: 2 }
        }]
    );
    // No case: nothing to tell.
    assert_eq!(decide(&policy, None, &input, at).case, None);
}

#[test]
fn the_newest_card_in_the_customers_events_is_the_one_told() {
    let at = now();
    let attached = |id: &str, fingerprint: Option<&str>, created: i64| Event {
        id: format!("evt_{id}"),
        kind: EventKind::PaymentMethodAttached,
        created,
        livemode: false,
        api_version: None,
        object: EventObject::PaymentMethod(crate::event::PaymentMethod {
            id: id.into(),
            customer: Some("cus_1".into()),
            method_type: "card".into(),
            card: Some(crate::event::CardDetails {
                brand: Some("visa".into()),
                fingerprint: fingerprint.map(str::to_owned),
                ..Default::default()
            }),
        }),
    };
    let older = attached("pm_a", Some("fp_a"), NOW - 2 * 86_400);
    let newest = attached("pm_b", Some("fp_b"), NOW - 86_400);
    // A card Stripe gave no fingerprint of says nothing recoup can compare.
    let blind = attached("pm_c", None, NOW - 3_600);
    let mut other = older.clone();
    other.kind = EventKind::CustomerUpdated;
    let told = newer_card([&older, &blind, &newest, &other], at);
    assert_eq!(
        told,
        Some(newer(
            "pm_b",
            "fp_b",
            now() - SignedDuration::from_hours(24),
            at
        ))
    );
    assert_eq!(newer_card([&blind], at), None);
    assert_eq!(newer_card([], at), None);
}
