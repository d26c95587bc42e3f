use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;
use crate::event::wire::{Parsed, parse};

const NOW: i64 = 1_793_548_900;

/// [`super::decide`] as these tests read it: the case lent, not given, and a decision that saves
/// nothing equal to [`Decision::default`] (the case it would hand back left out).
fn decide(policy: &Policy, case: Option<&Case>, input: &Input, now: Timestamp) -> Decision {
    Decision {
        unchanged: None,
        ..super::decide(policy, case.cloned(), input, now)
    }
}

/// The default policy without its nudges: most of these tests are about retries, and a nudge timer
/// beside each retry would only blur what they check.
fn retries_only() -> Policy {
    Policy {
        nudges: NudgePlan {
            steps: Vec::new(),
            ..NudgePlan::default()
        },
        ..Policy::default()
    }
}

/// What a case's timers will do.
fn kinds(timers: &[Timer]) -> Vec<TimerKind> {
    timers.iter().map(|t| t.kind).collect()
}

/// A timer coming due on a case whose card is not known.
fn due(timer: Timer) -> Input {
    Input::Timer {
        timer,
        card: Vec::new(),
    }
}

/// The case's pending nudge timer, if any.
fn nudge_timer(case: &Case) -> Option<Timer> {
    case.timers
        .iter()
        .find(|t| matches!(t.kind, TimerKind::Nudge { .. }))
        .copied()
}

/// One try of a nudge at `at`, on email, as the worker reports it: sent, or refused (for a passing
/// reason or for good).
fn emailed(kind: NudgeKind, tier: u32, at: Timestamp, sent: bool, passing: bool) -> Input {
    let note = match (sent, passing) {
        (true, _) => "",
        (false, true) => "SMTP: 451 4.3.2 try again later",
        (false, false) => "SMTP: 550 5.1.1 no such mailbox",
    };
    Input::Nudged {
        kind,
        tier,
        at,
        template: format!("en/{}-{tier}", kind.as_str()),
        results: vec![NudgeResult {
            channel: Channel::Email,
            sent,
            passing,
            note: note.into(),
        }],
    }
}

fn now() -> Timestamp {
    Timestamp::from_second(NOW).unwrap()
}

/// An invoice event built from the bundled fixture of its type, with its own id and times.
fn event(kind: &str, id: &str, created: i64, attempt_count: u32) -> Input {
    let path = format!(
        "{}/../../fixtures/events/{kind}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read(&path).unwrap();
    let Parsed::Acted(mut event) = parse(&body).unwrap() else {
        panic!("{kind} is acted on");
    };
    event.id = id.to_owned();
    event.created = created;
    if let EventObject::Invoice(invoice) = &mut event.object {
        invoice.attempt_count = attempt_count;
    }
    Input::Event(event)
}

/// Any bundled event, with its own id and creation time.
fn any_event(kind: &str, id: &str, created: i64) -> Input {
    let path = format!(
        "{}/../../fixtures/events/{kind}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let Parsed::Acted(mut event) = parse(&std::fs::read(&path).unwrap()).unwrap() else {
        panic!("{kind} is acted on");
    };
    event.id = id.to_owned();
    event.created = created;
    Input::Event(event)
}

fn failed(id: &str, created: i64, attempt: u32) -> Input {
    event("invoice.payment_failed", id, created, attempt)
}

fn paid(id: &str, created: i64) -> Input {
    event("invoice.paid", id, created, 2)
}

/// Feeds inputs one by one, as the worker does, and returns the case they leave.
fn run(inputs: &[Input]) -> Option<Case> {
    let policy = retries_only();
    inputs.iter().fold(None, |case, input| {
        decide(&policy, case.as_ref(), input, now()).case.or(case)
    })
}

/// What must not depend on delivery order: everything but the order of same-time timeline lines.
fn outcome(case: &Case) -> impl PartialEq + std::fmt::Debug + use<> {
    let mut lines: Vec<_> = case.timeline.iter().map(|e| e.event.clone()).collect();
    lines.sort();
    (
        case.state,
        case.attempts.clone(),
        case.next_attempt_at,
        case.recovered_by,
        case.timers.clone(),
        case.closure.clone(),
        lines,
    )
}

#[test]
fn a_failure_opens_a_retrying_case_with_its_first_retry_due() {
    let case = run(&[failed("evt_a", NOW - 60, 1)]).unwrap();
    assert_eq!(case.state, State::Retrying);
    assert_eq!(case.invoice_id, "in_1QaZ4rB7WZ01zgkWfT9s8KpM");
    assert_eq!(case.customer_id, "cus_R3cvP0qK8yWm2d");
    assert_eq!(case.attempts.len(), 1);
    assert_eq!(case.attempts[0].number, 1);
    // Three days after Stripe's failed attempt, plus the invoice's jitter, in the customer's daytime.
    let due = case.next_attempt_at.expect("a retry is planned");
    let failed_at = Timestamp::from_second(NOW - 60).unwrap();
    let three_days = failed_at + SignedDuration::from_hours(72);
    assert!(due >= three_days && due < three_days + SignedDuration::from_hours(24));
    let local = due.to_zoned(timing::zone(&case.customer_timezone));
    assert!((9..20).contains(&local.hour()), "{local}");
    assert_eq!(
        case.timers,
        vec![Timer {
            at: due,
            kind: TimerKind::Retry { attempt: 2 }
        }]
    );
    assert_eq!(case.timeline.len(), 1);
    assert!(case.timeline[0].detail.contains("case opened retrying"));
    assert!(
        case.timeline[0]
            .detail
            .contains("next retry 2026-11-04T16:26:26.457Z for now: the decline's details are read from Stripe next"),
        "{}",
        case.timeline[0].detail
    );
}

#[test]
fn the_same_event_twice_changes_nothing_the_second_time() {
    let input = failed("evt_a", NOW - 60, 1);
    let case = run(std::slice::from_ref(&input)).unwrap();
    let again = decide(&retries_only(), Some(&case), &input, now());
    assert_eq!(again, Decision::default());
}

#[test]
fn paid_after_a_failure_is_recovered_and_stops_every_timer() {
    let case = run(&[failed("evt_a", NOW - 60, 1), paid("evt_b", NOW)]).unwrap();
    assert_eq!(case.state, State::Recovered);
    assert_eq!(case.recovered_by, Some(RecoveredBy::Unknown));
    assert!(case.timers.is_empty());
    assert_eq!(case.next_attempt_at, None);
}

#[test]
fn paid_before_the_failure_closes_the_case_and_the_late_failure_schedules_nothing() {
    let case = run(&[paid("evt_b", NOW - 60), failed("evt_a", NOW, 1)]).unwrap();
    assert_eq!(case.state, State::Closed);
    assert!(case.timers.is_empty());
    assert_eq!(case.next_attempt_at, None);
    assert_eq!(
        case.attempts.len(),
        1,
        "the late failure is still on record"
    );
    assert!(
        case.timeline
            .iter()
            .any(|e| e.detail.contains("paid before any failure"))
    );
}

#[test]
fn within_one_second_arrival_order_decides_between_closed_and_recovered() {
    let failure_first = run(&[failed("evt_a", NOW, 1), paid("evt_b", NOW)]).unwrap();
    assert_eq!(failure_first.state, State::Recovered);
    let payment_first = run(&[paid("evt_b", NOW), failed("evt_a", NOW, 1)]).unwrap();
    assert_eq!(payment_first.state, State::Closed);
}

#[test]
fn voided_and_uncollectible_invoices_close_the_case_but_a_later_payment_recovers_it() {
    let voided = run(&[
        failed("evt_a", NOW - 60, 1),
        event("invoice.voided", "evt_v", NOW, 1),
    ])
    .unwrap();
    assert_eq!(voided.state, State::Closed);
    assert_eq!(voided.closure.unwrap().reason, "voided in Stripe");
    assert!(voided.timers.is_empty());

    let written_off_then_paid = run(&[
        failed("evt_a", NOW - 60, 1),
        event("invoice.marked_uncollectible", "evt_u", NOW - 30, 1),
        paid("evt_b", NOW),
    ])
    .unwrap();
    assert_eq!(written_off_then_paid.state, State::Recovered);
}

#[test]
fn action_required_waits_for_the_customer_without_a_retry() {
    let case = run(&[event("invoice.payment_action_required", "evt_r", NOW, 1)]).unwrap();
    assert_eq!(case.state, State::AwaitingCustomer);
    // Only the end decision waits, for when no one acted (no final notice in this policy).
    assert_eq!(kinds(&case.timers), [TimerKind::Decide]);
}

#[test]
fn a_held_timer_fires_once_and_asks_for_the_retry() {
    let case = run(&[failed("evt_a", NOW - 60, 1)]).unwrap();
    let timer = case.timers[0];
    let fired = decide(&retries_only(), Some(&case), &due(timer), timer.at);
    assert_eq!(fired.actions, vec![Action::Retry { attempt: 2 }]);
    let after = fired.case.unwrap();
    assert!(after.timers.is_empty());
    assert_eq!(after.timeline.last().unwrap().what, "retry due");

    let again = decide(&retries_only(), Some(&after), &due(timer), timer.at);
    assert_eq!(
        again,
        Decision::default(),
        "a fired timer cannot fire again"
    );
    let no_case = decide(&retries_only(), None, &due(timer), timer.at);
    assert_eq!(no_case, Decision::default());
}

#[test]
fn events_without_an_invoice_case_change_nothing() {
    let upcoming = event("invoice.upcoming", "evt_up", NOW, 0);
    assert_eq!(run(&[upcoming]), None);
}

fn permutations(items: &[Input]) -> Vec<Vec<Input>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let head = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, head.clone());
            all.push(tail);
        }
    }
    all
}

#[test]
fn every_delivery_order_of_the_same_events_ends_in_the_same_case() {
    let stories = [
        vec![
            failed("evt_1", NOW - 300, 1),
            failed("evt_2", NOW - 200, 2),
            paid("evt_3", NOW - 100),
            event("invoice.payment_succeeded", "evt_4", NOW - 99, 2),
        ],
        vec![
            failed("evt_1", NOW - 300, 1),
            event("invoice.payment_action_required", "evt_2", NOW - 250, 1),
            event("invoice.marked_uncollectible", "evt_3", NOW - 100, 2),
            paid("evt_4", NOW - 50),
        ],
        vec![
            paid("evt_1", NOW - 300),
            failed("evt_2", NOW - 200, 1),
            event("invoice.voided", "evt_3", NOW - 100, 1),
        ],
    ];
    for story in stories {
        let expected = outcome(&run(&story).unwrap());
        for order in permutations(&story) {
            let mut twice = order.clone();
            twice.extend(order.iter().rev().cloned());
            assert_eq!(outcome(&run(&order).unwrap()), expected);
            assert_eq!(outcome(&run(&twice).unwrap()), expected);
        }
    }
}

/// Invoice events of the kinds given (indexes into the six invoice event types), ten seconds apart
/// in Stripe's time, each failure one attempt further.
fn story(kinds: &[usize]) -> Vec<Input> {
    const KINDS: [&str; 6] = [
        "invoice.payment_failed",
        "invoice.payment_action_required",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.voided",
        "invoice.marked_uncollectible",
    ];
    kinds
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            let created = NOW - 1000 + 10 * i as i64;
            event(KINDS[k], &format!("evt_{i}"), created, i as u32 + 1)
        })
        .collect()
}

proptest! {
    #[test]
    fn random_deliveries_with_repeats_end_as_the_story_in_stripe_order(
        kinds in prop::collection::vec(0usize..6, 1..7),
        order in prop::collection::vec(any::<prop::sample::Index>(), 1..14),
    ) {
        let story = story(&kinds);
        let delivered: Vec<Input> = order.iter().map(|i| story[i.index(story.len())].clone()).collect();
        // Whatever was delivered, in whatever order, ends as those same events delivered once each
        // in Stripe's order.
        let mut seen: Vec<Input> = Vec::new();
        for input in &delivered {
            if !seen.contains(input) {
                seen.push(input.clone());
            }
        }
        seen.sort_by_key(|input| match input {
            Input::Event(e) => e.created,
            _ => unreachable!("the stories are events"),
        });
        let got = run(&delivered).map(|c| outcome(&c));
        let want = run(&seen).map(|c| outcome(&c));
        prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
    }

    /// The same stories with a new card at the end of Stripe's story, delivered at any point once
    /// the case exists: the same case as Stripe's order gives but for the card's own timeline line,
    /// and whatever the story, a
    /// closed or recovered case holds no timer, and a retrying one holds exactly one, due no earlier
    /// than the card (a card is tried soon, never before it arrived).
    #[test]
    fn a_new_card_anywhere_in_the_deliveries_ends_as_in_stripe_order(
        kinds in prop::collection::vec(0usize..6, 1..6),
        card_at in any::<prop::sample::Index>(),
    ) {
        let story = story(&kinds);
        let card_created = NOW;
        let card = any_event("payment_method.attached", "evt_card", card_created);
        let mut in_order = story.clone();
        in_order.push(card.clone());
        // Delivered anywhere after the first event (a card event never opens a case).
        let mut delivered = story.clone();
        delivered.insert(1 + card_at.index(story.len()), card);
        let got = run(&delivered);
        let want = run(&in_order);
        // The card's own timeline line may differ: delivered while the case was open it is noted,
        // after the case ended it changes nothing.
        let without_card = |case: &Case| {
            let mut case = case.clone();
            case.timeline.retain(|e| e.event.as_deref() != Some("evt_card"));
            format!("{:?}", outcome(&case))
        };
        prop_assert_eq!(got.as_ref().map(without_card), want.as_ref().map(without_card));
        if let Some(case) = got {
            if case.state.is_final() {
                prop_assert!(case.timers.is_empty());
            }
            if case.state == State::Retrying && case.paid_at.is_none() {
                prop_assert_eq!(case.timers.len(), 1, "{:?}", case.timeline);
                prop_assert!(case.timers[0].at >= Timestamp::from_second(card_created).unwrap());
            }
        }
    }
}

/// A case that failed at `NOW` and has had `retries` retries since, each a day apart, declined with
/// `class` (and `code`), for a customer in `zone`.
fn declined(retries: u32, class: DeclineClass, code: &str, zone: &str) -> Case {
    let mut case = run(&[failed("evt_f", NOW, 1)]).unwrap();
    for n in 1..=retries {
        case.attempts.push(Attempt {
            at: now() + SignedDuration::from_hours(24 * i64::from(n)),
            number: n + 1,
            outcome: Outcome::Failed,
            decline_code: Some(code.to_owned()),
            errors: 0,
        });
    }
    case.decline = Some(Decline::of_code(code, class));
    case.customer_timezone = zone.to_owned();
    case
}

#[test]
fn a_soft_decline_is_retried_on_the_plans_gaps_until_they_run_out() {
    let plan = Plan::default();
    let mut gaps_seen = Vec::new();
    for retries in 0..12 {
        let case = declined(
            retries,
            DeclineClass::Soft,
            "processing_error",
            "Europe/Paris",
        );
        let next = plan.next_retry(&case).expect("a retry is left");
        let last = case.attempts.last().unwrap();
        assert_eq!(next.attempt, last.number + 1);
        let waited = next.at.duration_since(last.at);
        gaps_seen.push(waited.as_hours() / 24);
        let local = next.at.to_zoned(timing::zone("Europe/Paris"));
        assert!((9..20).contains(&local.hour()), "{local}");
    }
    assert_eq!(
        gaps_seen,
        [3, 3, 3, 4, 4, 4, 5, 5, 5, 5, 5, 5],
        "whole days waited before each retry"
    );
    let spent = declined(12, DeclineClass::Soft, "processing_error", "Europe/Paris");
    assert_eq!(
        plan.next_retry(&spent).unwrap_err(),
        "no retry left: the plan has 12 for a soft decline"
    );
}

#[test]
fn mastercard_advice_to_wait_outlasts_a_shorter_gap() {
    let mut case = declined(1, DeclineClass::Soft, "try_again_later", "UTC");
    let decline = case.decline.as_mut().unwrap();
    decline.network_advice_code = Some("30".to_owned());
    // As the networks file reads advice 30 when the decline is classified.
    decline.network_wait = Some(SignedDuration::from_hours(240));
    let next = Plan::default().next_retry(&case).unwrap();
    let last = case.attempts.last().unwrap().at;
    assert!(
        next.at >= last + SignedDuration::from_hours(240),
        "{}",
        next.at
    );
    assert!(next.why.contains("10 days after attempt 2"), "{}", next.why);
}

#[test]
fn insufficient_funds_waits_for_a_payday() {
    let case = declined(0, DeclineClass::Soft, "insufficient_funds", "Asia/Tokyo");
    let next = Plan::default().next_retry(&case).unwrap();
    let local = next.at.to_zoned(timing::zone("Asia/Tokyo"));
    assert!([1, 15].contains(&local.day()), "{local}");
    assert!(next.at >= now() + SignedDuration::from_hours(72));
    assert!(next.why.contains("on the next payday"), "{}", next.why);
}

#[test]
fn the_day_an_invoice_renews_on_is_not_taken_for_a_payday() {
    // Paid before on the 20th, and on the day of the month this invoice failed on: that one is its
    // renewal day (an invoice paid when billed), and the money was not there on it this time.
    let Input::Event(event) = failed("evt_f1", NOW, 1) else {
        unreachable!()
    };
    let renews_on = now().to_zoned(jiff::tz::TimeZone::UTC).day();
    let mut customer = CustomerFacts::default();
    customer.metadata.insert("timezone".into(), "UTC".into());
    let other = if renews_on == 20 { 21 } else { 20 };
    customer.payment_days = vec![u8::try_from(renews_on).unwrap(), other];
    let opening = Input::Opening {
        event,
        customer: Box::new(customer),
        untold: false,
    };
    let case = decide(&Policy::default(), None, &opening, now())
        .case
        .unwrap();
    assert_eq!(case.paydays, [other]);
}

#[test]
fn no_retry_for_a_decline_that_time_does_not_fix() {
    for class in [
        DeclineClass::Hard,
        DeclineClass::CardData,
        DeclineClass::ActionRequired,
    ] {
        let case = declined(0, class, "lost_card", "UTC");
        let none = Plan::default().next_retry(&case).unwrap_err();
        assert!(
            none.ends_with("decline is not retried on a schedule; a new payment method is"),
            "{none}"
        );
    }
}

#[test]
fn an_insufficient_funds_retry_with_no_payday_left_before_the_end_is_made_after_its_gap() {
    // Failed at NOW, retried once a day later; paydays only on the 28th, and 10 days to go.
    let mut case = declined(1, DeclineClass::Soft, "insufficient_funds", "UTC");
    let failure_day = now().to_zoned(jiff::tz::TimeZone::UTC).day();
    let payday: i8 = if (18..=28).contains(&failure_day) {
        10
    } else {
        28
    };
    case.paydays = vec![payday.unsigned_abs()];
    let plan = Plan {
        within: SignedDuration::from_hours(10 * 24),
        ..Plan::default()
    };
    let next = plan.next_retry(&case).unwrap();
    let gap = plan.soft[1];
    assert!(next.at >= case.attempts[1].at + gap, "{}", next.at);
    assert!(next.at <= now() + plan.within, "{}", next.at);
    assert_ne!(next.at.to_zoned(jiff::tz::TimeZone::UTC).day(), payday);
    assert!(
        next.why
            .contains("no payday of theirs is left before the policy's end"),
        "{}",
        next.why
    );
    // With a payday still ahead it waits for it, as before.
    let roomy = Plan {
        within: SignedDuration::from_hours(45 * 24),
        ..Plan::default()
    };
    let next = roomy.next_retry(&case).unwrap();
    assert_eq!(next.at.to_zoned(jiff::tz::TimeZone::UTC).day(), payday);
}

#[test]
fn the_attempt_cap_and_the_overall_window_end_the_plan() {
    let case = declined(1, DeclineClass::Soft, "processing_error", "UTC");
    let capped = Plan {
        max_attempts: 2,
        ..Plan::default()
    };
    assert_eq!(
        capped.next_retry(&case).unwrap_err(),
        "no retry left: 2 attempts is the most the policy allows"
    );
    let short = Plan {
        within: SignedDuration::from_hours(48),
        ..Plan::default()
    };
    assert_eq!(
        short.next_retry(&case).unwrap_err(),
        "no retry left: the next would fall after the policy's 2 days from the first failure"
    );
}

#[test]
fn no_retry_is_planned_after_the_card_expires() {
    // Soft-declined at NOW, retried once a day later; the card stops working 4 days after NOW.
    let mut case = declined(1, DeclineClass::Soft, "insufficient_funds", "UTC");
    let expires = now() + SignedDuration::from_hours(4 * 24);
    case.card = Some(Card {
        fingerprint: "fp_1".into(),
        brand: "visa".into(),
        funding: None,
        expires_at: Some(expires),
    });
    let plan = Plan::default();
    // The next payday or the gap would come after the expiry: the retry comes before it, in the
    // customer's daytime, after no payday (none is left before the end).
    match plan.next_retry(&case) {
        Ok(next) => {
            assert!(next.at < expires, "{} not before {expires}", next.at);
            assert!(
                next.at >= case.attempts[1].at + plan.soft[1].min(SignedDuration::from_hours(24))
            );
        }
        Err(why) => assert!(why.contains("the card's expiry"), "{why}"),
    }
    // Once the expiry is nearer than any gap, the plan says so instead of planning a retry that
    // would be declined as expired.
    case.card.as_mut().unwrap().expires_at =
        Some(case.attempts[1].at + SignedDuration::from_hours(1));
    let none = plan.next_retry(&case).unwrap_err();
    assert!(
        none.starts_with("no retry left: the next would fall after the card's expiry ("),
        "{none}"
    );
    assert!(none.ends_with("only a new card can pay now"), "{none}");
    // A card without a known expiry is retried as before.
    case.card.as_mut().unwrap().expires_at = None;
    assert!(plan.next_retry(&case).is_ok());
}

proptest! {
    /// Whatever the history, class, decline and zone: the plan never retries a decline time does not
    /// fix, never plans outside the customer's daytime, never before the gap or after its window,
    /// and gives the same answer for the same case.
    #[test]
    fn the_plan_keeps_its_rules_for_any_case(
        retries in 0u32..6,
        class in prop_oneof![
            Just(DeclineClass::Soft), Just(DeclineClass::Ambiguous), Just(DeclineClass::CardData),
            Just(DeclineClass::ActionRequired), Just(DeclineClass::Hard),
        ],
        code in prop_oneof![Just("insufficient_funds"), Just("processing_error"), Just("do_not_honor")],
        zone in prop_oneof![
            Just("UTC"), Just("America/Los_Angeles"), Just("Asia/Kolkata"), Just("Australia/Lord_Howe"),
            Just("Pacific/Chatham"), Just("Europe/London"),
        ],
        start_hour in 0u8..23,
        hours in 1u8..12,
        expires_in_days in prop::option::of(0i64..70),
    ) {
        let plan = Plan {
            window: timing::Window { start_hour, end_hour: (start_hour + hours).min(24) },
            ..Plan::default()
        };
        let mut case = declined(retries, class, code, zone);
        let expires = expires_in_days.map(|days| now() + SignedDuration::from_hours(24 * days));
        case.card = Some(Card { fingerprint: "fp_1".into(), brand: "visa".into(), funding: None, expires_at: expires });
        let next = plan.next_retry(&case);
        prop_assert_eq!(&next, &plan.next_retry(&case));
        let Ok(next) = next else { return Ok(()) };
        prop_assert!(matches!(class, DeclineClass::Soft | DeclineClass::Ambiguous));
        let local = next.at.to_zoned(timing::zone(zone));
        prop_assert!(
            (plan.window.start_hour..plan.window.end_hour).contains(&(local.hour() as u8)),
            "{} outside {:?}", local, plan.window
        );
        let last = case.attempts.last().unwrap();
        prop_assert!(next.at >= last.at + plan.soft[0].min(plan.ambiguous[0]));
        prop_assert!(next.at <= case.failed_at.unwrap() + plan.within);
        prop_assert!(expires.is_none_or(|expires| next.at < expires), "{} after the expiry", next.at);
        prop_assert!(next.attempt <= plan.max_attempts);
    }
}

/// A failure whose invoice says when Stripe will try again itself.
fn failed_with_stripe_retrying(id: &str, created: i64, attempt: u32) -> Input {
    let Input::Event(mut event) = failed(id, created, attempt) else {
        unreachable!()
    };
    if let EventObject::Invoice(invoice) = &mut event.object {
        invoice.next_payment_attempt = Some(created + 3 * 86_400);
    }
    Input::Event(event)
}

#[test]
fn while_stripe_retries_itself_recoup_plans_no_retry_and_says_why() {
    let case = run(&[failed_with_stripe_retrying("evt_s1", NOW, 1)]).unwrap();
    assert_eq!(case.state, State::Retrying);
    assert!(case.timers.is_empty(), "{:?}", case.timers);
    assert!(
        case.timeline[0]
            .detail
            .contains("no retry: Stripe will retry this invoice itself"),
        "{}",
        case.timeline[0].detail
    );
    // Stripe's retries turned off: its next failure carries no next attempt, and recoup takes over;
    // the older failure arriving late does not turn deferral back on.
    let later = failed("evt_s2", NOW + 3 * 86_400, 2);
    for order in [
        vec![failed_with_stripe_retrying("evt_s1", NOW, 1), later.clone()],
        vec![later.clone(), failed_with_stripe_retrying("evt_s1", NOW, 1)],
    ] {
        let case = run(&order).unwrap();
        assert_eq!(case.stripe_retries_at, None);
        assert_eq!(case.timers.len(), 1, "{:?}", case.timeline);
    }
    let insisting = Policy {
        plan: Plan {
            defer_to_stripe: false,
            ..Plan::default()
        },
        ..retries_only()
    };
    let case = decide(
        &insisting,
        None,
        &failed_with_stripe_retrying("evt_s1", NOW, 1),
        now(),
    )
    .case
    .unwrap();
    assert_eq!(case.timers.len(), 1);
}

#[test]
fn a_new_card_is_tried_within_minutes_even_after_a_hard_decline() {
    for (kind, method) in [
        ("payment_method.attached", "pm_1QbB9kB7WZ01zgkWnEw2Card"),
        (
            "payment_method.automatically_updated",
            "pm_1QaZ2nB7WZ01zgkWcD4fG6hJ",
        ),
        ("customer.updated", "pm_1QbB9kB7WZ01zgkWnEw2Card"),
    ] {
        let mut hard = declined(1, DeclineClass::Hard, "stolen_card", "UTC");
        hard.state = State::AwaitingCustomer;
        assert!(hard.timers.is_empty() || Plan::default().next_retry(&hard).is_err());
        let arrived = NOW + 3 * 86_400;
        let input = any_event(kind, "evt_card", arrived);
        let case = decide(&retries_only(), Some(&hard), &input, now())
            .case
            .unwrap_or_else(|| panic!("{kind} changes the case"));
        let due = Timestamp::from_second(arrived).unwrap() + SignedDuration::from_mins(5);
        assert_eq!(case.state, State::Retrying, "{kind}");
        assert_eq!(
            case.timers,
            [Timer {
                at: due,
                kind: TimerKind::Retry { attempt: 3 }
            }],
            "{kind}"
        );
        let entry = case.timeline.last().unwrap();
        assert_eq!(entry.what, kind);
        assert!(
            entry.detail.contains(&format!(
                "the customer's new payment method {method} arrived after attempt 2: tried 5m later"
            )),
            "{}",
            entry.detail
        );
        // The same delivery again changes nothing.
        assert_eq!(
            decide(&retries_only(), Some(&case), &input, now()),
            Decision::default()
        );
    }
}

#[test]
fn card_events_change_only_open_cases_of_their_own_customer() {
    let input = any_event("payment_method.attached", "evt_card", NOW + 60);
    let mut other = declined(0, DeclineClass::Hard, "lost_card", "UTC");
    other.customer_id = "cus_someone_else".into();
    assert_eq!(
        decide(&retries_only(), Some(&other), &input, now()),
        Decision::default()
    );
    let mut paid = declined(0, DeclineClass::Hard, "lost_card", "UTC");
    paid.state = State::Recovered;
    assert_eq!(
        decide(&retries_only(), Some(&paid), &input, now()),
        Decision::default()
    );
    assert_eq!(
        decide(&retries_only(), None, &input, now()),
        Decision::default(),
        "a card event never opens a case"
    );
    // A card that came before the last attempt was already tried: the plan goes on as before.
    let old_card = any_event("payment_method.attached", "evt_old", NOW - 60);
    let soft = declined(1, DeclineClass::Soft, "processing_error", "UTC");
    let case = decide(&retries_only(), Some(&soft), &old_card, now())
        .case
        .unwrap();
    assert_eq!(
        case.next_attempt_at,
        Some(Plan::default().next_retry(&soft).unwrap().at)
    );
}

#[test]
fn retries_moved_to_the_windows_opening_keep_their_jitter() {
    let mut seen = std::collections::BTreeSet::new();
    for n in 0..50 {
        // Failed at 01:01 in Tokyo: every retry moves to the 09:00 opening, local.
        let mut case = declined(0, DeclineClass::Soft, "processing_error", "Asia/Tokyo");
        case.invoice_id = format!("in_night_{n}");
        let next = Plan::default().next_retry(&case).unwrap();
        let local = next.at.to_zoned(timing::zone("Asia/Tokyo"));
        assert_eq!(local.hour(), 9, "{local}");
        seen.insert(next.at);
    }
    assert!(seen.len() > 45, "only {} distinct moments", seen.len());
}

#[test]
fn a_case_opens_in_its_customers_time_zone_and_a_segment_of_their_tenure() {
    let loyal = Segment {
        name: "two years and more".to_owned(),
        when: Match {
            tenure_months_at_least: Some(24),
            past_failures_below: Some(1),
            ..Match::default()
        },
        plan: Plan::default(),
        nudges: NudgePlan::default(),
        ending: EndPlan::default(),
    };
    let policy = Policy {
        segments: vec![loyal],
        ..retries_only()
    };
    let Input::Event(event) = failed("evt_open", NOW, 1) else {
        unreachable!()
    };
    let customer = CustomerFacts {
        metadata: [("timezone".to_owned(), "Asia/Tokyo".to_owned())].into(),
        country: Some("US".to_owned()),
        created: Some(now() - SignedDuration::from_hours(25 * 31 * 24)),
        ..CustomerFacts::default()
    };
    let opening = Input::Opening {
        event: event.clone(),
        customer: Box::new(customer.clone()),
        untold: false,
    };
    let case = decide(&policy, None, &opening, now()).case.unwrap();
    assert_eq!(case.customer_timezone, "Asia/Tokyo");
    assert_eq!(case.segment.as_deref(), Some("two years and more"));
    let local = case
        .next_attempt_at
        .unwrap()
        .to_zoned(timing::zone("Asia/Tokyo"));
    assert!((9..20).contains(&local.hour()), "{local}");

    // A customer who failed before, or an event without the customer, opens no segment.
    let again = CustomerFacts {
        past_failures: 1,
        ..customer.clone()
    };
    let opening = Input::Opening {
        event: event.clone(),
        customer: Box::new(again),
        untold: false,
    };
    assert_eq!(
        decide(&policy, None, &opening, now()).case.unwrap().segment,
        None
    );
    let plain = decide(&policy, None, &Input::Event(event), now())
        .case
        .unwrap();
    assert_eq!(plain.segment, None);
    assert_ne!(plain.customer_timezone, "Asia/Tokyo");

    // Once the case exists, an opening event is the plain event: seen once, changes nothing again.
    assert_eq!(
        decide(&policy, Some(&case), &opening, now()),
        Decision::default()
    );
}

#[test]
fn a_case_opens_in_the_first_matching_segment_and_follows_its_plan() {
    let segment = |name: &str, when: Match, gap_days: i64| Segment {
        name: name.to_owned(),
        when,
        plan: Plan {
            ambiguous: vec![SignedDuration::from_hours(24 * gap_days)],
            ..Plan::default()
        },
        nudges: NudgePlan::default(),
        ending: EndPlan::default(),
    };
    let policy = Policy {
        segments: vec![
            segment(
                "enterprise",
                Match {
                    amount_at_least: Some(Threshold::Every(100_000)),
                    ..Match::default()
                },
                1,
            ),
            segment(
                "self-serve usd",
                Match {
                    currencies: vec!["usd".into()],
                    ..Match::default()
                },
                10,
            ),
            segment("everyone", Match::default(), 20),
        ],
        ..retries_only()
    };
    let case = decide(&policy, None, &failed("evt_seg", NOW, 1), now())
        .case
        .unwrap();
    assert_eq!(case.segment.as_deref(), Some("self-serve usd"));
    let due = case.next_attempt_at.unwrap();
    let ten_days = now() + SignedDuration::from_hours(240);
    assert!(
        due >= ten_days && due < ten_days + SignedDuration::from_hours(24),
        "{due}"
    );
    assert!(
        case.timeline[0]
            .detail
            .contains("case opened retrying in segment \"self-serve usd\""),
        "{}",
        case.timeline[0].detail
    );
    // A policy that no longer has the segment plans with its own plan instead.
    let replanned = decide(
        &retries_only(),
        Some(&case),
        &failed("evt_seg2", NOW + 60, 2),
        now(),
    )
    .case
    .unwrap();
    assert_eq!(
        replanned.next_attempt_at,
        Plan::default().next_retry(&replanned).ok().map(|n| n.at)
    );
}

#[test]
fn a_retry_under_way_is_not_planned_again_and_a_later_try_takes_the_next_attempt() {
    let policy = retries_only();
    let opened = run(&[failed("evt_a", NOW, 1)]).unwrap();
    let timer = opened.timers[0];
    let fired = decide(&policy, Some(&opened), &due(timer), timer.at)
        .case
        .unwrap();
    assert_eq!(
        fired.retry_under_way,
        Some(RetryUnderWay {
            attempt: 2,
            at: timer.at
        })
    );

    // A late event about attempt 1 does not plan attempt 2 again.
    let late = decide(
        &policy,
        Some(&fired),
        &failed("evt_late", NOW + 5, 1),
        now(),
    )
    .case
    .unwrap();
    // Only a redo of attempt 2 itself (the same idempotency key), for when its result never comes.
    assert_eq!(
        late.timers,
        [Timer {
            at: timer.at + SignedDuration::from_mins(10),
            kind: TimerKind::Retry { attempt: 2 }
        }]
    );
    let entry = late
        .timeline
        .iter()
        .find(|e| e.event.as_deref() == Some("evt_late"));
    let detail = &entry.unwrap().detail;
    assert!(detail.contains("retry 2 is under way since"), "{detail}");

    // Stripe's failure of attempt 2 is its result: the plan moves on to attempt 3.
    let after = timer.at.as_second() + 60;
    let result = decide(&policy, Some(&late), &failed("evt_r2", after, 2), now())
        .case
        .unwrap();
    let kinds: Vec<_> = result.timers.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TimerKind::Retry { attempt: 3 }]);

    // A new card while attempt 2 is under way is tried as attempt 3, under a key of its own.
    let card = any_event("payment_method.attached", "evt_c", after);
    let carded = decide(&policy, Some(&fired), &card, now()).case.unwrap();
    let kinds: Vec<_> = carded.timers.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TimerKind::Retry { attempt: 3 }]);
}

/// `customer.updated` from the fixture, edited: its metadata, and whether it changed the default
/// payment method.
fn customer_updated(id: &str, created: i64, timezone: Option<&str>, new_default: bool) -> Input {
    let Input::Event(mut event) = any_event("customer.updated", id, created) else {
        unreachable!()
    };
    if let EventObject::Customer(customer) = &mut event.object {
        customer.metadata.clear();
        customer
            .metadata
            .extend(timezone.map(|tz| ("timezone".to_owned(), tz.to_owned())));
        customer.country = None;
        customer.default_payment_method_changed = new_default;
    }
    Input::Event(event)
}

#[test]
fn the_customers_own_time_zone_moves_the_planned_retry_into_their_daytime() {
    let policy = retries_only();
    let opened = run(&[failed("evt_a", NOW, 1)]).unwrap();
    assert_eq!(
        opened.customer_timezone, "America/New_York",
        "from the billing country"
    );

    let tokyo = customer_updated("evt_tz", NOW + 60, Some("Asia/Tokyo"), false);
    let moved = decide(&policy, Some(&opened), &tokyo, now()).case.unwrap();
    assert_eq!(moved.customer_timezone, "Asia/Tokyo");
    let local = moved
        .next_attempt_at
        .unwrap()
        .to_zoned(timing::zone("Asia/Tokyo"));
    assert!((9..20).contains(&local.hour()), "{local}");
    let detail = &moved.timeline.last().unwrap().detail;
    assert!(
        detail.starts_with("the customer's time zone is Asia/Tokyo; next retry"),
        "{detail}"
    );

    // An update that says nothing about the zone or the card changes nothing; nor does a zone
    // nobody knows replace the one the case has.
    for quiet in [
        customer_updated("evt_q1", NOW + 60, None, false),
        customer_updated("evt_q2", NOW + 60, Some("Mars/Olympus"), false),
    ] {
        assert_eq!(
            decide(&policy, Some(&opened), &quiet, now()),
            Decision::default()
        );
    }
    // The zone it already has only moves the time as of which it is known (an older update that
    // arrives later must not undo it); the plan and the timeline stay as they are.
    let same = customer_updated("evt_q3", NOW + 60, Some("America/New_York"), false);
    let known = decide(&policy, Some(&opened), &same, now()).case.unwrap();
    assert_eq!(known.zone_as_of, Timestamp::from_second(NOW + 60).ok());
    assert_eq!(
        Case {
            zone_as_of: None,
            ..known
        },
        opened
    );
}

mod card_paid;
mod charges;
mod endings;
pub(crate) mod experiments;
mod extremes;
mod feedback;
mod learning;
mod newer_card;
mod nudges;
mod opened;
