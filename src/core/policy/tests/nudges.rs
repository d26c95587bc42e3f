//! The nudge plan through `decide`: tiers at their local times, never in quiet hours, stopped by a
//! payment with one thank-you, held by the daily cap, and recorded per channel.

use super::*;

fn opened_in(zone: &str, metadata: &[(&str, &str)]) -> Case {
    let Input::Event(event) = failed("evt_f1", NOW, 1) else {
        unreachable!()
    };
    let mut customer = CustomerFacts::default();
    customer.metadata.insert("timezone".into(), zone.into());
    for (key, value) in metadata {
        customer.metadata.insert((*key).into(), (*value).into());
    }
    let opening = Input::Opening {
        event,
        customer: Box::new(customer),
        untold: false,
    };
    decide(&Policy::default(), None, &opening, now())
        .case
        .unwrap()
}

/// Fires the case's nudge timer and returns the case and what it asked for.
fn fire(case: &Case) -> (Case, Vec<Action>) {
    let timer = nudge_timer(case).expect("a nudge is planned");
    let decision = decide(&Policy::default(), Some(case), &due(timer), timer.at);
    (decision.case.unwrap(), decision.actions)
}

/// Fires the case's nudge timer under `policy` and reports the nudge it asked for delivered, as
/// the worker would; returns the case and what the timer asked for.
fn fire_delivered(policy: &Policy, case: &Case) -> (Case, Vec<Action>) {
    let timer = nudge_timer(case).expect("a nudge is planned");
    let decision = decide(policy, Some(case), &due(timer), timer.at);
    let mut case = decision.case.unwrap();
    for action in &decision.actions {
        if let Action::Nudge { kind, tier } = *action {
            let sent = super::emailed(kind, tier, timer.at, true, false);
            case = decide(policy, Some(&case), &sent, timer.at).case.unwrap();
        }
    }
    (case, decision.actions)
}

/// Every nudge `case` gets under the default policy, each delivered: kind, tier and whole days
/// after the failure. Each goes out in the customer's daytime.
fn nudges_sent(mut case: Case) -> (Case, Vec<(NudgeKind, u32, i64)>) {
    let mut sent = Vec::new();
    while let Some(timer) = nudge_timer(&case) {
        let local = timer.at.to_zoned(timing::zone("America/Chicago"));
        assert!(
            (9..20).contains(&local.hour()),
            "a nudge in quiet hours: {local}"
        );
        let (next, actions) = fire_delivered(&Policy::default(), &case);
        let [Action::Nudge { kind, tier }] = actions[..] else {
            panic!("{actions:?}");
        };
        let days = timer.at.duration_since(case.failed_at.unwrap()).as_hours() / 24;
        sent.push((kind, tier, days));
        case = next;
    }
    (case, sent)
}

#[test]
fn a_failed_payment_gets_its_note_in_the_customers_daytime_then_the_final_notice() {
    // A decline never read counts as ambiguous: its note waits 14 days for the retries.
    let (case, sent) = nudges_sent(opened_in("America/Chicago", &[]));
    assert_eq!(
        sent,
        [
            (NudgeKind::PaymentFailed, 1, 14),
            (NudgeKind::FinalNotice, 1, 50),
        ]
    );
    assert_eq!(case.nudged.len(), 2);
    let said = case
        .timeline
        .iter()
        .filter(|e| e.what == "nudge due")
        .count();
    assert_eq!(said, 2);
}

#[test]
fn only_a_decline_no_retry_fixes_gets_the_reminder_on_day_ten() {
    // The first note: within the hour where only the customer can help, but after 14 days for a
    // soft or ambiguous decline, which a retry usually fixes before the customer need hear of it.
    for (code, class, first, reminded) in [
        ("stolen_card", DeclineClass::Hard, 0, true),
        ("expired_card", DeclineClass::CardData, 0, true),
        ("insufficient_funds", DeclineClass::Soft, 14, false),
        ("do_not_honor", DeclineClass::Ambiguous, 14, false),
    ] {
        let mut case = opened_in("America/Chicago", &[]);
        case.decline = Some(Decline::of_code(code, class));
        // As the decline's arrival does: the nudge planned again for it.
        crate::policy::replan::plan_nudge(&Policy::default(), &mut case);
        let (_, sent) = nudges_sent(case);
        let mut expected = vec![(NudgeKind::PaymentFailed, 1, first)];
        if reminded {
            expected.push((NudgeKind::PaymentFailed, 2, 10));
        }
        expected.push((NudgeKind::FinalNotice, 1, 50));
        assert_eq!(sent, expected, "{code}");
    }
}

#[test]
fn a_payment_to_confirm_gets_the_action_required_tiers() {
    let confirm = event("invoice.payment_action_required", "evt_a", NOW, 1);
    let case = decide(&Policy::default(), None, &confirm, now())
        .case
        .unwrap();
    let Some(Timer {
        kind: TimerKind::Nudge { nudge, tier },
        ..
    }) = nudge_timer(&case)
    else {
        panic!("{:?}", case.timers);
    };
    assert_eq!((nudge, tier), (NudgeKind::ActionRequired, 1));
}

#[test]
fn payment_stops_the_nudges_and_sends_one_thank_you() {
    let (nudged, _) = fire(&opened_in("Europe/Berlin", &[]));
    let thanked = decide(
        &Policy::default(),
        Some(&nudged),
        &paid("evt_p", NOW + 7_200),
        now(),
    );
    assert_eq!(
        thanked.actions,
        [Action::Nudge {
            kind: NudgeKind::Recovered,
            tier: 1
        }]
    );
    let recovered = thanked.case.unwrap();
    assert_eq!(recovered.state, State::Recovered);
    assert_eq!(nudge_timer(&recovered), None, "nothing more is nudged");
    let again = decide(
        &Policy::default(),
        Some(&recovered),
        &any_event("invoice.payment_succeeded", "evt_p2", NOW + 7_300),
        now(),
    );
    assert_eq!(again.actions, [], "one thank-you");

    // A customer recoup never wrote to is not thanked for fixing what they did not know was broken.
    let quiet = opened_in("Europe/Berlin", &[]);
    let unthanked = decide(
        &Policy::default(),
        Some(&quiet),
        &paid("evt_p", NOW + 60),
        now(),
    );
    assert_eq!(unthanked.actions, []);
}

#[test]
fn a_customers_own_contact_window_is_kept() {
    let case = opened_in("Asia/Kolkata", &[("contact_window", "18-22")]);
    let local = nudge_timer(&case)
        .unwrap()
        .at
        .to_zoned(timing::zone("Asia/Kolkata"));
    assert!((18..22).contains(&local.hour()), "{local}");
}

#[test]
fn the_per_case_cap_ends_the_plan() {
    let policy = Policy {
        nudges: NudgePlan {
            per_case: 2,
            ..NudgePlan::default()
        },
        ..Policy::default()
    };
    let mut case = opened_in("UTC", &[]);
    for _ in 0..2 {
        case = fire_delivered(&policy, &case).0;
    }
    assert_eq!(nudge_timer(&case), None);
}

#[test]
fn a_nudge_held_by_the_daily_cap_goes_out_the_next_day_in_the_window() {
    let (fired, _) = fire(&opened_in("UTC", &[]));
    let until = Timestamp::from_second(NOW + 86_400).unwrap();
    let held = decide(
        &Policy::default(),
        Some(&fired),
        &Input::NudgeHeld {
            kind: NudgeKind::PaymentFailed,
            tier: 1,
            until,
        },
        now(),
    )
    .case
    .unwrap();
    assert!(!held.has_nudged(NudgeKind::PaymentFailed, 1));
    let again = nudge_timer(&held).unwrap();
    assert_eq!(
        again.kind,
        TimerKind::Nudge {
            nudge: NudgeKind::PaymentFailed,
            tier: 1
        }
    );
    assert!(again.at >= until);
    let said = &held.timeline.last().unwrap().detail;
    assert!(said.contains("already had 1 nudge(s) today"), "{said}");
}

#[test]
fn a_hold_that_comes_back_after_the_nudge_was_delivered_or_tried_again_takes_nothing_back() {
    let held = |case: &Case| {
        let until = Timestamp::from_second(NOW + 86_400).unwrap();
        let hold = Input::NudgeHeld {
            kind: NudgeKind::PaymentFailed,
            tier: 1,
            until,
        };
        decide(&Policy::default(), Some(case), &hold, now())
    };
    // A worker took the first try, another worker delivered it meanwhile: the late hold is stale.
    let (delivered, _) = fire_delivered(&Policy::default(), &opened_in("UTC", &[]));
    assert!(delivered.nudged[0].delivered_at.is_some());
    assert_eq!(
        held(&delivered).case,
        None,
        "a delivered nudge was taken back"
    );
    // The first try's result never came back and it was tried again: that try is not counted
    // against the day, so a hold of it can only be the first try's, late.
    let (fired, _) = fire(&opened_in("UTC", &[]));
    let timer = nudge_timer(&fired).unwrap();
    let again = decide(&Policy::default(), Some(&fired), &due(timer), timer.at)
        .case
        .unwrap();
    assert_eq!(again.nudged[0].tries, 2);
    assert_eq!(
        held(&again).case,
        None,
        "a nudge tried again was taken back"
    );
}

#[test]
fn deliveries_are_recorded_per_channel_once() {
    let (fired, _) = fire(&opened_in("UTC", &[]));
    let at = fired.nudged[0].at;
    let delivered = Input::Nudged {
        kind: NudgeKind::PaymentFailed,
        tier: 1,
        at,
        template: "en/payment_failed-1".into(),
        results: vec![
            NudgeResult {
                channel: Channel::Email,
                sent: true,
                passing: false,
                note: String::new(),
            },
            NudgeResult {
                channel: Channel::Sms,
                sent: false,
                passing: false,
                note: "the customer has not opted in to SMS".into(),
            },
        ],
    };
    let recorded = decide(&Policy::default(), Some(&fired), &delivered, now())
        .case
        .unwrap();
    assert_eq!(recorded.nudges.len(), 1);
    assert_eq!(recorded.nudges[0].channel, Channel::Email);
    let said = &recorded.timeline.last().unwrap().detail;
    // Delivered, it is no longer the pending nudge: the plan's next one is.
    assert!(
        said.starts_with(
            "payment_failed tier 1 (en/payment_failed-1): email sent, sms not sent (the customer \
             has not opted in to SMS); next nudge final_notice tier 1 at "
        ),
        "{said}"
    );
    assert_eq!(
        decide(&Policy::default(), Some(&recorded), &delivered, now()),
        Decision::default()
    );
}

#[test]
fn a_case_on_hold_hears_nothing() {
    let mut case = opened_in("UTC", &[]);
    case.state = State::OnHold;
    assert_eq!(Policy::default().nudges.next(&case), None);
}

#[test]
fn a_nudge_coming_due_in_quiet_hours_waits_for_the_window_to_open() {
    let case = opened_in("America/Chicago", &[]);
    let timer = nudge_timer(&case).unwrap();
    let chicago = timing::zone("America/Chicago");
    // The clock jumped on to 23:30 the next night, local time.
    let night = timer
        .at
        .to_zoned(chicago.clone())
        .date()
        .tomorrow()
        .unwrap()
        .at(23, 30, 0, 0)
        .to_zoned(chicago.clone())
        .unwrap()
        .timestamp();
    let moved = decide(&Policy::default(), Some(&case), &due(timer), night);
    assert!(moved.actions.is_empty(), "{:?}", moved.actions);
    let moved = moved.case.unwrap();
    assert!(moved.nudged.is_empty(), "nothing went out");
    let again = nudge_timer(&moved).unwrap();
    assert_eq!(again.kind, timer.kind);
    let local = again.at.to_zoned(chicago);
    assert_eq!((local.hour(), local.minute()), (9, 0), "{local}");
    assert!(again.at > night);
    assert_eq!(
        moved.timeline.last().unwrap().what,
        "nudge moved out of quiet hours"
    );
    let (_, actions) = fire(&moved);
    assert_eq!(
        actions,
        [Action::Nudge {
            kind: NudgeKind::PaymentFailed,
            tier: 1
        }]
    );
}

#[test]
fn a_thank_you_no_channel_took_is_tried_again_after_the_case_is_over_and_a_reminder_is_not() {
    let (nudged, _) = fire(&opened_in("Europe/Berlin", &[]));
    let busy = |kind, at| Input::Nudged {
        kind,
        tier: 1,
        at,
        template: "en/x".into(),
        results: vec![NudgeResult {
            channel: Channel::Webhook,
            sent: false,
            passing: true,
            note: "nudge webhook answered 503 Service Unavailable".into(),
        }],
    };
    // The reminder's retry is planned while the case is in dunning...
    let first = nudged.nudged[0].at;
    let retrying = decide(
        &Policy::default(),
        Some(&nudged),
        &busy(NudgeKind::PaymentFailed, first),
        first,
    )
    .case
    .unwrap();
    let retry = nudge_timer(&retrying).unwrap();
    assert_eq!(
        retry.kind,
        TimerKind::Nudge {
            nudge: NudgeKind::PaymentFailed,
            tier: 1
        }
    );
    // ...and dropped once the invoice is paid; the thank-you, turned away too, is tried again.
    let paid_at = NOW + 7_200;
    let thanked = decide(
        &Policy::default(),
        Some(&retrying),
        &paid("evt_p", paid_at),
        now(),
    )
    .case
    .unwrap();
    assert_eq!(nudge_timer(&thanked), None);
    let at = Timestamp::from_second(paid_at).unwrap();
    let unthanked = decide(
        &Policy::default(),
        Some(&thanked),
        &busy(NudgeKind::Recovered, at),
        at,
    )
    .case
    .unwrap();
    assert_eq!(unthanked.state, State::Recovered);
    let again = nudge_timer(&unthanked).expect("the thank-you is tried again");
    assert_eq!(
        again.kind,
        TimerKind::Nudge {
            nudge: NudgeKind::Recovered,
            tier: 1
        }
    );
    assert!(again.at >= at + SignedDuration::from_hours(1));
}

/// Case `invoice_id` of the fixture's subscription, opened at `NOW`, its first nudge due.
fn of_subscription(invoice_id: &str) -> Case {
    let mut case = opened_in("UTC", &[]);
    case.invoice_id = invoice_id.to_owned();
    case
}

#[test]
fn a_renewal_failing_while_the_last_is_unpaid_is_not_told_the_same_twice() {
    let policy = Policy::default();
    let plan = policy.nudges_for(&of_subscription("in_b"));
    let (first, _) = fire_delivered(&policy, &of_subscription("in_a"));
    let told = first.nudged[0].delivered_at.unwrap();
    let second = of_subscription("in_b");
    let timer = nudge_timer(&second).unwrap();
    let fired = decide(&policy, Some(&second), &due(timer), timer.at)
        .case
        .unwrap();
    let nudge = (NudgeKind::PaymentFailed, 1);
    let cover = plan
        .covered_by(&fired, nudge, [&first, &fired], timer.at)
        .expect("in_a's note speaks for in_b's");
    assert_eq!(
        cover,
        Cover {
            invoice_id: "in_a".into(),
            at: told,
            why: Covered::Conversation
        }
    );
    let covered = Input::NudgeCovered {
        kind: nudge.0,
        tier: nudge.1,
        at: timer.at,
        cover,
    };
    let case = decide(&policy, Some(&fired), &covered, timer.at)
        .case
        .unwrap();
    assert_eq!(case.nudged[0].covered_by.as_deref(), Some("in_a"));
    assert!(
        case.nudges.is_empty(),
        "nothing went out: {:?}",
        case.nudges
    );
    let said = &case.timeline.last().unwrap().detail;
    assert!(
        said.contains("payment_failed tier 1 not sent: the customer had it at")
            && said.contains("about in_a, another invoice of subscription sub_"),
        "{said}"
    );
    // The plan goes on to the final notice, which a covered note does not count against the case.
    let next = nudge_timer(&case).unwrap();
    assert_eq!(
        next.kind,
        TimerKind::Nudge {
            nudge: NudgeKind::FinalNotice,
            tier: 1
        }
    );
    // A cover that comes back after the nudge went out is stale.
    assert_eq!(decide(&policy, Some(&case), &covered, timer.at).case, None);
}

#[test]
fn only_a_recent_note_of_the_same_subscription_speaks_for_another() {
    let policy = Policy::default();
    let plan = policy.nudges_for(&of_subscription("in_b"));
    let (first, _) = fire_delivered(&policy, &of_subscription("in_a"));
    let second = of_subscription("in_b");
    let at = first.nudged[0].delivered_at.unwrap();
    let covered = |other: &Case, nudge: (NudgeKind, u32), now: Timestamp| {
        plan.covered_by(&second, nudge, [other], now).is_some()
    };
    let note = (NudgeKind::PaymentFailed, 1);
    assert!(covered(&first, note, at));
    let day = SignedDuration::from_hours(24);
    assert!(covered(&first, note, at + 60 * day));
    assert!(!covered(&first, note, at + 61 * day), "too long ago");
    assert!(!covered(&first, (NudgeKind::FinalNotice, 1), at), "not had");
    // Paid since, its note still speaks for a renewal failing a month on: the same problem. Its
    // final notice does not: the consequence it told of is off.
    let mut paid = first.clone();
    paid.state = State::Recovered;
    assert!(covered(&paid, note, at), "paid since");
    let final_notice = (NudgeKind::FinalNotice, 1);
    let mut notice = first.clone();
    notice.nudged[0].kind = NudgeKind::FinalNotice;
    assert!(covered(&notice, final_notice, at));
    notice.state = State::Recovered;
    assert!(!covered(&notice, final_notice, at), "paid: no consequence");
    let mut elsewhere = first.clone();
    elsewhere.subscription_id = Some("sub_other".into());
    assert!(!covered(&elsewhere, note, at));
    let mut itself = first.clone();
    itself.invoice_id = "in_b".into();
    assert!(!covered(&itself, note, at));
    // A payment to confirm is the invoice's own, and a plan may give each invoice its own.
    let mut confirm = first.clone();
    confirm.nudged[0].kind = NudgeKind::ActionRequired;
    assert!(!covered(&confirm, (NudgeKind::ActionRequired, 1), at));
    let own = NudgePlan {
        once_per_subscription: SignedDuration::ZERO,
        ..plan.clone()
    };
    assert_eq!(own.covered_by(&second, note, [&first], at), None);
    // A message that was itself covered speaks for nothing: only what reached the customer does.
    let mut hearsay = first.clone();
    hearsay.nudged[0].covered_by = Some("in_z".into());
    assert!(!covered(&hearsay, note, at));
}

#[test]
fn a_covered_final_notice_gives_the_whole_grace_from_when_it_was_covered() {
    let policy = Policy::default();
    let case = of_subscription("in_b");
    let final_notice = (NudgeKind::FinalNotice, 1);
    let mut fired = case.clone();
    fired
        .nudged
        .push(Nudged::going_out(final_notice.0, 1, now()));
    let later = now() + SignedDuration::from_hours(24 * 40);
    let cover = Cover {
        invoice_id: "in_a".into(),
        at: now(),
        why: Covered::Conversation,
    };
    let covered = Input::NudgeCovered {
        kind: final_notice.0,
        tier: final_notice.1,
        at: later,
        cover,
    };
    let case = decide(&policy, Some(&fired), &covered, later).case.unwrap();
    // What the end decision's grace counts from (`ending::due`): the cover, not the other notice.
    let notice = case.nudged.last().unwrap();
    assert_eq!(notice.settled_at(), Some(later));
    assert_eq!(notice.reached(), None, "no channel took it for this case");
}

#[test]
fn a_customer_who_had_their_budget_of_messages_gets_no_note_or_request_but_the_final_notice() {
    let policy = Policy::default();
    let day = SignedDuration::from_hours(24);
    // Two messages delivered to the customer, about invoices of two other subscriptions.
    let told = |invoice: &str, subscription: &str, kind: NudgeKind, at: Timestamp| {
        let mut case = of_subscription(invoice);
        case.subscription_id = Some(subscription.into());
        let mut nudged = Nudged::going_out(kind, 1, at);
        nudged.delivered_at = Some(at);
        case.nudged.push(nudged);
        case
    };
    let a = told("in_a", "sub_a", NudgeKind::PaymentFailed, now());
    let b = told("in_b", "sub_b", NudgeKind::FinalNotice, now() + 10 * day);
    let case = of_subscription("in_c");
    let plan = policy.nudges_for(&case);
    assert_eq!((plan.per_customer, plan.per_customer_within), (2, 90 * day));
    let at = now() + 20 * day;
    let note = (NudgeKind::PaymentFailed, 1);
    let cover = plan.covered_by(&case, note, [&a, &b, &case], at);
    assert_eq!(
        cover,
        Some(Cover {
            invoice_id: "in_b".into(),
            at: now() + 10 * day,
            why: Covered::Budget(2)
        }),
        "the latest of the two is named"
    );
    let request = (NudgeKind::ActionRequired, 2);
    assert!(plan.covered_by(&case, request, [&a, &b], at).is_some());
    // The final notice is the last word before the end decision: never held back by the budget.
    let final_notice = (NudgeKind::FinalNotice, 1);
    assert_eq!(plan.covered_by(&case, final_notice, [&a, &b], at), None);
    // One message is within the budget; so is what fell out of the 90 days.
    assert_eq!(plan.covered_by(&case, note, [&b], at), None);
    assert_eq!(
        plan.covered_by(&case, note, [&a, &b], now() + 91 * day),
        None
    );
    // Thank-yous, update links asked for and messages left unsent are not counted.
    let mut thanks = told("in_d", "sub_d", NudgeKind::Recovered, now());
    assert_eq!(plan.covered_by(&case, note, [&thanks, &b], at), None);
    thanks.nudged[0].kind = NudgeKind::PaymentFailed;
    thanks.nudged[0].covered_by = Some("in_z".into());
    assert_eq!(plan.covered_by(&case, note, [&thanks, &b], at), None);
    let none = NudgePlan {
        per_customer: 0,
        ..plan.clone()
    };
    assert_eq!(none.covered_by(&case, note, [&a, &b], at), None);
    // The timeline says why, in one sentence.
    let timer = nudge_timer(&case).unwrap();
    let fired = decide(&policy, Some(&case), &due(timer), timer.at)
        .case
        .unwrap();
    let covered = Input::NudgeCovered {
        kind: note.0,
        tier: note.1,
        at,
        cover: cover.unwrap(),
    };
    let case = decide(&policy, Some(&fired), &covered, at).case.unwrap();
    assert!(case.nudges.is_empty(), "nothing went out");
    let said = &case.timeline.last().unwrap().detail;
    assert!(
        said.starts_with(
            "payment_failed tier 1 not sent: the customer had 2 messages within 90 days, the most \
             the policy sends a customer (the latest at"
        ) && said.contains("about in_b)"),
        "{said}"
    );
}
