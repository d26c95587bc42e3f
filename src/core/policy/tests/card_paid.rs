//! Another invoice's retry paying on the same card moves the case's next retry up.

use super::*;

/// A case whose insufficient_funds decline came from card `fp_shared`, one retry spent, with its
/// next retry planned on the schedule.
fn waiting_on_the_schedule() -> Case {
    let mut case = declined(1, DeclineClass::Soft, "insufficient_funds", "UTC");
    case.card = Some(Card {
        fingerprint: "fp_shared".into(),
        brand: "visa".into(),
        funding: None,
        expires_at: None,
    });
    let (planned, _) = replan::replan(&retries_only(), &mut case, now());
    assert!(planned.contains("next retry"), "{planned}");
    case
}

fn card_paid(invoice_id: &str, fingerprint: &str, at: Timestamp) -> Input {
    Input::CardPaid {
        invoice_id: invoice_id.into(),
        fingerprint: fingerprint.into(),
        at,
    }
}

#[test]
fn a_retry_paying_another_invoice_on_the_card_brings_the_next_retry_to_half_an_hour_later() {
    let policy = retries_only();
    let case = waiting_on_the_schedule();
    let scheduled = case.next_attempt_at.unwrap();
    let last = case.attempts.last().unwrap().at;
    let paid = last + SignedDuration::from_hours(3);
    let input = card_paid("in_other", "fp_shared", paid);
    let told = decide(&policy, Some(&case), &input, paid).case.unwrap();
    let due = timing::into_window(
        paid + AFTER_CARD_PAID,
        &timing::zone("UTC"),
        policy.plan.window,
    );
    assert!(due < scheduled, "{due} before the schedule's {scheduled}");
    assert_eq!(
        told.timers,
        [Timer {
            at: due,
            kind: TimerKind::Retry { attempt: 3 }
        }],
        "the plan's next retry, not one more"
    );
    assert_eq!(
        told.card_paid,
        Some(Box::new(CardPaid {
            invoice_id: "in_other".into(),
            at: paid
        }))
    );
    let entry = told.timeline.last().unwrap();
    assert_eq!(entry.what, "card paid another invoice");
    assert!(
        entry
            .detail
            .contains("a retry of in_other went through on the same card")
            && entry.detail.contains(
                "retry 2 of 12 for a soft decline: a retry of in_other went through on the same \
                 card at"
            )
            && entry.detail.contains("tried 30m later"),
        "{}",
        entry.detail
    );
    // Told twice (the firing and Stripe's event), it changes nothing the second time.
    assert_eq!(decide(&policy, Some(&told), &input, paid).case, None);
    // The moved retry's outcome is not evidence about its moment: the payment chose it.
    assert!(crate::policy::learning::Observation::of(&told, due, true).is_none());
    assert!(crate::policy::learning::Observation::of(&case, scheduled, true).is_some());
    // Once that retry is made, the schedule takes over again.
    let mut tried = told.clone();
    tried.attempts.push(Attempt {
        at: due,
        number: 3,
        outcome: Outcome::Failed,
        decline_code: Some("insufficient_funds".into()),
        errors: 0,
    });
    let next = policy.plan.next_retry(&tried).unwrap();
    assert!(!next.prompted && next.at >= due + SignedDuration::from_hours(24 * 3));
}

#[test]
fn another_card_an_older_payment_or_a_case_not_retrying_changes_nothing() {
    let policy = retries_only();
    let case = waiting_on_the_schedule();
    let last = case.attempts.last().unwrap().at;
    let paid = last + SignedDuration::from_hours(3);
    let unchanged = |case: &Case, input: &Input| decide(&policy, Some(case), input, paid).case;
    assert_eq!(
        unchanged(&case, &card_paid("in_other", "fp_else", paid)),
        None
    );
    assert_eq!(
        unchanged(
            &case,
            &card_paid(&case.invoice_id.clone(), "fp_shared", paid)
        ),
        None,
        "its own payment"
    );
    let mut waiting = case.clone();
    waiting.state = State::AwaitingCustomer;
    assert_eq!(
        unchanged(&waiting, &card_paid("in_other", "fp_shared", paid)),
        None
    );
    // A payment before the last attempt was followed already: the schedule stands.
    let mut old = case.clone();
    old.card_paid = Some(Box::new(CardPaid {
        invoice_id: "in_other".into(),
        at: last - SignedDuration::from_hours(1),
    }));
    assert_eq!(
        policy.plan.next_retry(&old).unwrap().at,
        policy.plan.next_retry(&case).unwrap().at
    );
    // No retry left on the plan: the payment adds none.
    let spent = declined(12, DeclineClass::Soft, "insufficient_funds", "UTC");
    let mut spent_told = spent.clone();
    spent_told.card_paid = Some(Box::new(CardPaid {
        invoice_id: "in_other".into(),
        at: spent.attempts.last().unwrap().at + SignedDuration::from_hours(1),
    }));
    assert!(policy.plan.next_retry(&spent_told).is_err());
}
