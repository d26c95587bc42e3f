//! "What's in the way?" through `decide`: each answer kept on the case and told on its timeline,
//! and the policy's reaction to it — a payday retry with nudges paused, dunning stopped or ended,
//! the update link sent again, or nothing but the record — and nothing but the record once the
//! case is over.

use super::*;

/// A case opened by Stripe's failed first attempt under `policy`, declined as a soft decline on a
/// known card, for a customer who was paid on the 20th before.
fn opened(policy: &Policy) -> Case {
    let case = decide(policy, None, &failed("evt_f1", NOW, 1), now())
        .case
        .unwrap();
    let decline = Input::Charge(Box::new(Charge {
        attempt: 1,
        at: now(),
        result: ChargeResult::Declined(Declined {
            code: Some("card_declined".into()),
            decline_code: Some("do_not_honor".into()),
            card: Some(Card {
                fingerprint: "fp_1".into(),
                brand: "visa".into(),
                funding: None,
                expires_at: None,
            }),
            ..Declined::default()
        }),
        fees: Vec::new(),
    }));
    let mut case = decide(policy, Some(&case), &decline, now()).case.unwrap();
    case.paydays = vec![20];
    case
}

fn answer(policy: &Policy, case: &Case, at: Timestamp, answer: Answer, text: &str) -> Decision {
    let input = Input::Answered {
        at,
        answer,
        text: (!text.is_empty()).then(|| text.to_owned()),
    };
    decide(policy, Some(case), &input, at)
}

fn retry_timer(case: &Case) -> Option<Timer> {
    case.timers
        .iter()
        .find(|t| matches!(t.kind, TimerKind::Retry { .. }))
        .copied()
}

fn told(case: &Case) -> String {
    let line = case
        .timeline
        .iter()
        .rev()
        .find(|e| e.what == "customer answered")
        .expect("the answer is told");
    line.detail.clone()
}

fn minutes(n: i64) -> Timestamp {
    now() + SignedDuration::from_mins(n)
}

#[test]
fn cant_pay_now_moves_the_next_retry_to_the_customers_payday_and_pauses_nudges_until_it_is_made() {
    let policy = Policy::default();
    let case = opened(&policy);
    let planned = retry_timer(&case).unwrap();
    assert!(nudge_timer(&case).is_some(), "a nudge was planned");

    let decision = answer(&policy, &case, minutes(10), Answer::CantPayNow, "");
    assert!(decision.actions.is_empty());
    let case = decision.case.unwrap();
    let answered = case.answer.clone().unwrap();
    assert_eq!(
        (answered.answer, answered.reaction, answered.at),
        (Answer::CantPayNow, Reaction::RetryOnPayday, minutes(10))
    );
    // Moved from the plan's gap (3 days on, the 4th) to the customer's own payday, the 20th, in
    // their daytime.
    let moved = retry_timer(&case).unwrap();
    let local = moved.at.to_zoned(timing::zone(&case.customer_timezone));
    assert_eq!((local.month(), local.day()), (11, 20), "{local}");
    assert!((9..20).contains(&local.hour()), "{local}");
    assert_ne!(moved.at, planned.at);
    assert_eq!(case.next_attempt_at, Some(moved.at));
    assert_eq!(
        nudge_timer(&case),
        None,
        "no nudge while the payday retry waits"
    );
    let detail = told(&case);
    assert!(
        detail.starts_with(
            "on the feedback link, \"What's in the way?\": \"I can't pay right now\"; the next \
             retry moves to their next payday"
        ),
        "{detail}"
    );
    assert!(
        detail.contains(
            "the customer answered they cannot pay right now: moved to their next payday"
        ),
        "{detail}"
    );

    // The retry still goes through its timer; while it is under way nudges still wait.
    let fired = decide(&policy, Some(&case), &due(moved), moved.at);
    assert_eq!(fired.actions, [Action::Retry { attempt: 2 }]);
    let case = fired.case.unwrap();
    assert_eq!(nudge_timer(&case), None);
    // Once it has come to something — declined again — the nudges go on.
    let declined = Input::Charge(Box::new(Charge {
        attempt: 2,
        at: moved.at,
        result: ChargeResult::Declined(Declined {
            code: Some("card_declined".into()),
            decline_code: Some("do_not_honor".into()),
            ..Declined::default()
        }),
        fees: Vec::new(),
    }));
    let case = decide(&policy, Some(&case), &declined, moved.at)
        .case
        .unwrap();
    assert!(nudge_timer(&case).is_some(), "{:?}", case.timers);
    let next = retry_timer(&case).unwrap();
    assert!(next.at > moved.at, "the plan's own gaps take over again");
}

#[test]
fn want_to_cancel_stops_dunning_and_leaves_the_subscription_to_the_business() {
    let policy = Policy::default();
    let case = opened(&policy);
    let decision = answer(
        &policy,
        &case,
        minutes(5),
        Answer::WantToCancel,
        "Too expensive for us now.",
    );
    assert!(decision.actions.is_empty(), "nothing is done in Stripe");
    let case = decision.case.unwrap();
    assert_eq!(case.state, State::Closed);
    assert!(case.timers.is_empty(), "{:?}", case.timers);
    assert_eq!(case.decision, None);
    let closure = case.closure.clone().unwrap();
    assert!(closure.reason.contains("asked to cancel"), "{closure:?}");
    let answered = case.answer.clone().unwrap();
    assert_eq!(answered.reaction, Reaction::StopDunning);
    assert_eq!(answered.text.as_deref(), Some("Too expensive for us now."));
    assert_eq!(
        told(&case),
        "on the feedback link, \"What's in the way?\": \"I want to cancel\" and wrote \"Too \
         expensive for us now.\"; dunning stopped — no more retries or nudges; the subscription is \
         left to the business"
    );
}

#[test]
fn want_to_cancel_can_end_the_subscription_now_by_the_policys_end_decision() {
    let policy = Policy {
        feedback: FeedbackPlan {
            want_to_cancel: Reaction::EndNow,
            ..FeedbackPlan::default()
        },
        ..Policy::default()
    };
    let case = opened(&policy);
    let case = answer(&policy, &case, minutes(5), Answer::WantToCancel, "")
        .case
        .unwrap();
    assert_eq!(
        case.state,
        State::Retrying,
        "until the decision is carried out"
    );
    assert_eq!(
        kinds(&case.timers),
        [TimerKind::Decide],
        "no retry or nudge, the decision due"
    );
    assert_eq!(case.timers[0].at, minutes(5));
    let decided = decide(&policy, Some(&case), &due(case.timers[0]), minutes(5));
    assert_eq!(
        decided.actions,
        [Action::End(End::Cancel {
            at_period_end: true
        })]
    );
    let decision = decided.case.unwrap().decision.unwrap();
    assert!(
        decision.rule.ends_with("the customer asked to cancel"),
        "{}",
        decision.rule
    );
    assert!(
        decision
            .reason
            .starts_with("the customer asked to cancel on the feedback link"),
        "{}",
        decision.reason
    );
}

#[test]
fn card_changed_sends_the_update_link_now_once_past_the_caps_and_quiet_hours() {
    let policy = Policy::default();
    let case = opened(&policy);
    // 23:30 in the customer's zone (UTC): quiet hours.
    let late = "2026-11-01T23:30:00Z".parse::<Timestamp>().unwrap();
    let case = answer(&policy, &case, late, Answer::CardChanged, "")
        .case
        .unwrap();
    assert_eq!(
        case.answer.as_ref().unwrap().reaction,
        Reaction::SendUpdateLink
    );
    let timer = nudge_timer(&case).unwrap();
    assert_eq!(
        timer,
        Timer {
            at: late,
            kind: TimerKind::Nudge {
                nudge: NudgeKind::UpdateLink,
                tier: 1
            }
        }
    );
    assert!(told(&case).ends_with(
        "the update link is sent to them again now; next nudge update_link tier 1 at \
         2026-11-01T23:30:00Z"
    ));
    let fired = decide(&policy, Some(&case), &due(timer), late);
    assert_eq!(
        fired.actions,
        [Action::Nudge {
            kind: NudgeKind::UpdateLink,
            tier: 1
        }]
    );
    let zone = timing::zone("UTC");
    assert_eq!(
        NudgePlan::capped_day(NudgeKind::UpdateLink, &zone, late),
        None,
        "never counted toward or held by the daily cap"
    );
    let delivered = emailed(NudgeKind::UpdateLink, 1, late, true, false);
    let case = decide(&policy, Some(&fired.case.unwrap()), &delivered, late)
        .case
        .unwrap();
    // Once only: the plan's own nudges follow, and the link's nudge does not come back.
    let next = nudge_timer(&case).unwrap();
    assert!(
        !matches!(
            next.kind,
            TimerKind::Nudge {
                nudge: NudgeKind::UpdateLink,
                ..
            }
        ),
        "{next:?}"
    );
    assert!(
        policy.nudges.will_send_final_notice(&case),
        "the per-case cap is untouched"
    );
}

#[test]
fn something_else_and_reactions_set_to_record_change_no_plan() {
    let recording = Policy {
        feedback: FeedbackPlan {
            card_changed: Reaction::Record,
            cant_pay_now: Reaction::Record,
            want_to_cancel: Reaction::Record,
            ..FeedbackPlan::default()
        },
        ..Policy::default()
    };
    for (policy, said) in [
        (&Policy::default(), Answer::SomethingElse),
        (&recording, Answer::CardChanged),
        (&recording, Answer::CantPayNow),
        (&recording, Answer::WantToCancel),
    ] {
        let case = opened(policy);
        let decision = answer(policy, &case, minutes(5), said, "  we moved banks  ");
        assert!(decision.actions.is_empty());
        let after = decision.case.unwrap();
        assert_eq!(after.timers, case.timers, "{said:?}");
        assert_eq!(after.state, case.state);
        let answered = after.answer.clone().unwrap();
        assert_eq!(
            (answered.answer, answered.reaction),
            (said, Reaction::Record)
        );
        assert_eq!(answered.text.as_deref(), Some("we moved banks"), "trimmed");
        assert!(
            told(&after).ends_with("and wrote \"we moved banks\"; recorded; the plan is unchanged"),
            "{}",
            told(&after)
        );
    }
}

#[test]
fn an_answer_on_a_final_case_is_recorded_and_changes_nothing_else() {
    let policy = Policy::default();
    let case = decide(
        &policy,
        Some(&opened(&policy)),
        &paid("evt_p", NOW + 60),
        now(),
    )
    .case
    .unwrap();
    assert_eq!(case.state, State::Recovered);
    let decision = answer(&policy, &case, minutes(30), Answer::WantToCancel, "");
    assert!(decision.actions.is_empty());
    let after = decision.case.unwrap();
    assert_eq!(after.state, State::Recovered);
    assert_eq!(after.closure, None);
    assert_eq!(after.timers, case.timers);
    assert_eq!(after.answer.as_ref().unwrap().reaction, Reaction::Record);
    assert!(
        told(&after).ends_with("the case is already recovered, so nothing changes"),
        "{}",
        told(&after)
    );
}

#[test]
fn the_customers_words_are_kept_bounded_and_no_case_means_no_change() {
    let policy = Policy::default();
    let case = opened(&policy);
    let long = "é".repeat(crate::policy::feedback::MAX_TEXT + 100);
    let after = answer(&policy, &case, minutes(1), Answer::SomethingElse, &long)
        .case
        .unwrap();
    let kept = after.answer.unwrap().text.unwrap();
    assert_eq!(kept.chars().count(), crate::policy::feedback::MAX_TEXT);

    let input = Input::Answered {
        at: now(),
        answer: Answer::SomethingElse,
        text: None,
    };
    assert_eq!(decide(&policy, None, &input, now()), Decision::default());
}
