//! The end of dunning through `decide`: when the decision comes and which one per segment, what a
//! result from Stripe does to the case, the way back for a paused customer; holds by disputes,
//! support and the dashboard; and support's retry with the rules that refuse it.

use super::*;
use crate::event::{PauseCollection, Subscription};
use crate::policy::budget::Try;

const DAY: i64 = 86_400;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).unwrap()
}

fn soft() -> ChargeResult {
    ChargeResult::Declined(Declined {
        code: Some("card_declined".into()),
        decline_code: Some("insufficient_funds".into()),
        card: Some(Card {
            fingerprint: "fp_1".into(),
            brand: "visa".into(),
            funding: None,
            expires_at: None,
        }),
        ..Declined::default()
    })
}

fn hard() -> ChargeResult {
    ChargeResult::Declined(Declined {
        code: Some("card_declined".into()),
        decline_code: Some("stolen_card".into()),
        ..Declined::default()
    })
}

/// A case opened by Stripe's failed first attempt, for a customer `tenure_months` old, on an
/// invoice of `amount_due`, its decline read as `first`.
fn opened(policy: &Policy, amount_due: i64, tenure_months: i64, first: ChargeResult) -> Case {
    let Input::Event(mut event) = failed("evt_f1", NOW, 1) else {
        unreachable!()
    };
    if let EventObject::Invoice(invoice) = &mut event.object {
        invoice.amount_due = amount_due;
    }
    let customer = CustomerFacts {
        created: Some(at(NOW - tenure_months * 31 * DAY)),
        ..CustomerFacts::default()
    };
    let case = decide(
        policy,
        None,
        &Input::Opening {
            event,
            customer: Box::new(customer),
            untold: false,
        },
        now(),
    )
    .case
    .unwrap();
    let decline = Input::Charge(Box::new(Charge {
        attempt: 1,
        at: at(NOW),
        result: first,
        fees: Vec::new(),
    }));
    decide(policy, Some(&case), &decline, now()).case.unwrap()
}

/// Fires the case's earliest timer at its time, answering every charge with `charged` and every
/// nudge as delivered; returns the case and what it asked for besides charges.
fn step(policy: &Policy, case: &Case, charged: &ChargeResult) -> (Case, Vec<Action>) {
    step_reporting(policy, case, charged, |_| true)
}

/// The same, reporting as delivered only the nudges of the kinds `reported` picks: the others stay
/// under way.
fn step_reporting(
    policy: &Policy,
    case: &Case,
    charged: &ChargeResult,
    reported: impl Fn(NudgeKind) -> bool,
) -> (Case, Vec<Action>) {
    let timer = *case.timers.iter().min_by_key(|t| t.at).expect("a timer");
    let decision = decide(policy, Some(case), &due(timer), timer.at);
    let mut case = decision.case.expect("the timer changes the case");
    let mut asked = Vec::new();
    for action in decision.actions {
        match action {
            Action::Retry { attempt } => {
                let charge = Input::Charge(Box::new(Charge {
                    attempt,
                    at: timer.at,
                    result: charged.clone(),
                    fees: Vec::new(),
                }));
                let decision = decide(policy, Some(&case), &charge, timer.at);
                case = decision.case.unwrap();
                asked.extend(decision.actions);
            }
            Action::Nudge { kind, tier } => {
                if reported(kind) {
                    let sent = emailed(kind, tier, timer.at, true, false);
                    case = decide(policy, Some(&case), &sent, timer.at).case.unwrap();
                }
                asked.push(action);
            }
            other => asked.push(other),
        }
    }
    (case, asked)
}

/// Runs the case's timers until it asks for its end decision; returns the case and the end.
fn run_out(policy: &Policy, mut case: Case, charged: &ChargeResult) -> (Case, End) {
    for _ in 0..30 {
        let (next, asked) = step(policy, &case, charged);
        case = next;
        if let Some(Action::End(end)) = asked.iter().find(|a| matches!(a, Action::End(_))) {
            return (case, *end);
        }
    }
    panic!("no decision in 30 timers: {:?}", case.timers)
}

fn ended(policy: &Policy, case: &Case, second: i64, result: EndResult) -> Case {
    let input = Input::Ended {
        at: at(second),
        result,
    };
    decide(policy, Some(case), &input, at(second)).case.unwrap()
}

fn sent(case: &Case, kind: NudgeKind) -> Option<Timestamp> {
    case.nudged.iter().find(|n| n.kind == kind).map(|n| n.at)
}

#[test]
fn exhausted_retries_end_a_week_after_the_final_notice_by_segment() {
    let shipped = Policy::shipped();
    let cancel = End::Cancel {
        at_period_end: true,
    };
    let pause = End::Pause {
        behavior: PauseBehavior::KeepAsDraft,
        resume_after: None,
    };
    for (amount, tenure, end, rule) in [
        (4_900, 3, cancel, "the policy's own: retries exhausted"),
        (
            49_900,
            3,
            pause,
            "segment \"high value\": retries exhausted",
        ),
        (
            4_900,
            30,
            pause,
            "segment \"long tenure\": retries exhausted",
        ),
    ] {
        let case = opened(&shipped, amount, tenure, soft());
        let (case, chosen) = run_out(&shipped, case, &soft());
        assert_eq!(chosen, end, "{amount} after {tenure} months");
        let attempts = case.attempts.len();
        assert!(attempts >= 2, "retried before the end: {attempts}");
        let notice = sent(&case, NudgeKind::FinalNotice).expect("the final notice went out");
        let decision = case.decision.as_ref().unwrap();
        let last = case.attempts.iter().map(|a| a.at).max().unwrap();
        assert_eq!(
            decision.at,
            notice.max(last) + SignedDuration::from_hours(7 * 24)
        );
        assert_eq!(decision.rule, rule);
        assert_eq!(decision.outcome, DecisionOutcome::UnderWay);
        let said = format!(
            "{attempts} attempt(s) failed, the last declined insufficient_funds (soft); final notice"
        );
        assert!(decision.reason.starts_with(&said), "{}", decision.reason);
        let done = ended(
            &shipped,
            &case,
            // Carried out the second after it was made (the decision has milliseconds).
            decision.at.as_second() + 1,
            EndResult::Done { already: false },
        );
        let expected = if end == pause {
            State::Paused
        } else {
            State::Canceled
        };
        assert_eq!(done.state, expected);
        assert_eq!(
            done.decision.as_ref().unwrap().outcome,
            DecisionOutcome::CarriedOut
        );
        assert!(done.timers.is_empty(), "{:?}", done.timers);
        assert_eq!(done.timeline.last().unwrap().what, "decision carried out");
    }
}

#[test]
fn a_hard_decline_waits_for_the_final_notice_and_its_grace_then_takes_the_no_new_card_end() {
    let policy = Policy {
        ending: EndPlan {
            exhausted: End::LeavePastDue,
            no_new_card: End::Cancel {
                at_period_end: false,
            },
            grace: SignedDuration::from_hours(3 * 24),
        },
        ..Policy::default()
    };
    let case = opened(&policy, 4_900, 3, hard());
    assert_eq!(case.state, State::AwaitingCustomer);
    assert!(
        !case.timers.iter().any(|t| t.kind == TimerKind::Decide),
        "the final notice comes first"
    );
    let (case, end) = run_out(&policy, case, &hard());
    assert_eq!(case.attempts.len(), 1, "never retried");
    assert_eq!(
        end,
        End::Cancel {
            at_period_end: false
        }
    );
    let notice = sent(&case, NudgeKind::FinalNotice).unwrap();
    let decision = case.decision.clone().unwrap();
    assert_eq!(decision.at, notice + SignedDuration::from_hours(3 * 24));
    assert!(
        decision
            .rule
            .ends_with("a decline no retry fixes, and no new card")
    );
    // The final notice announced exactly this end and date.
    let before_notice = {
        let mut c = case.clone();
        c.decision = None;
        c
    };
    assert_eq!(
        ending::announced(&policy, &before_notice, notice),
        (end, decision.at)
    );
}

#[test]
fn without_a_final_notice_the_grace_runs_from_the_last_attempt_and_leaving_past_due_closes() {
    let policy = Policy {
        ending: EndPlan {
            exhausted: End::LeavePastDue,
            ..EndPlan::default()
        },
        ..retries_only()
    };
    let case = opened(&policy, 4_900, 3, soft());
    let (case, end) = run_out(&policy, case, &soft());
    assert_eq!(end, End::LeavePastDue);
    let last = case.attempts.iter().map(|a| a.at).max().unwrap();
    assert_eq!(
        case.decision.as_ref().unwrap().at,
        last + SignedDuration::from_hours(7 * 24)
    );
    let left = ended(
        &policy,
        &case,
        NOW + 60 * DAY,
        EndResult::Done { already: false },
    );
    assert_eq!(left.state, State::Closed);
    assert!(
        left.closure
            .as_ref()
            .unwrap()
            .reason
            .starts_with("left past due")
    );
    // Paid later all the same: recovered.
    let paid = decide(&policy, Some(&left), &paid("evt_p", NOW + 61 * DAY), now());
    assert_eq!(paid.case.unwrap().state, State::Recovered);
}

#[test]
fn a_payment_or_a_change_in_stripe_right_before_acting_is_recorded_and_nothing_else_is_done() {
    let policy = Policy::shipped();
    let (case, _) = run_out(&policy, opened(&policy, 4_900, 3, soft()), &soft());
    let second = case.decision.as_ref().unwrap().at.as_second();

    let paid = ended(
        &policy,
        &case,
        second,
        EndResult::NotOpen {
            status: "paid".into(),
        },
    );
    assert_eq!(paid.state, State::Recovered);
    let decision = paid.decision.as_ref().unwrap();
    assert_eq!(decision.outcome, DecisionOutcome::NotCarriedOut);
    assert_eq!(
        decision.note.as_deref(),
        Some("the invoice is paid in Stripe")
    );
    // The webhook of that payment, arriving later, agrees and changes nothing of substance.
    let webhook = decide(&policy, Some(&paid), &paid_event(second - 5), at(second));
    assert_eq!(webhook.case.unwrap().state, State::Recovered);

    let changed = ended(
        &policy,
        &case,
        second,
        EndResult::Changed {
            now: "collection is already paused in Stripe (void)".into(),
        },
    );
    assert_eq!(changed.state, State::Closed);
    assert_eq!(
        changed.decision.as_ref().unwrap().outcome,
        DecisionOutcome::NotCarriedOut
    );
    assert!(changed.timers.is_empty());
}

fn paid_event(created: i64) -> Input {
    paid("evt_paid_late", created)
}

#[test]
fn a_failed_decision_call_is_made_again_ten_minutes_later_with_the_same_end() {
    let policy = Policy::shipped();
    let (case, end) = run_out(&policy, opened(&policy, 4_900, 3, soft()), &soft());
    let second = case.decision.as_ref().unwrap().at.as_second();
    let failed = ended(
        &policy,
        &case,
        second,
        EndResult::Failed {
            error: "Stripe answered 503".into(),
        },
    );
    assert_eq!(failed.state, State::Retrying, "nothing changed yet");
    assert_eq!(
        failed.timers,
        [Timer {
            at: at(second + 600),
            kind: TimerKind::Decide
        }]
    );
    let (again, asked) = step(&policy, &failed, &soft());
    assert_eq!(asked, [Action::End(end)]);
    assert_eq!(again.timeline.last().unwrap().what, "decision tried again");
}

#[test]
fn a_paused_customers_new_card_is_retried_and_paying_resumes_collection() {
    let policy = Policy::shipped();
    let (case, _) = run_out(&policy, opened(&policy, 49_900, 3, soft()), &soft());
    let second = case.decision.as_ref().unwrap().at.as_second();
    let paused = ended(&policy, &case, second, EndResult::Done { already: false });
    assert_eq!(paused.state, State::Paused);

    let Input::Event(mut card) = any_event("payment_method.attached", "evt_pm", second + DAY)
    else {
        unreachable!()
    };
    if let EventObject::PaymentMethod(pm) = &mut card.object {
        pm.customer = Some(paused.customer_id.clone());
    }
    let with_card = decide(
        &policy,
        Some(&paused),
        &Input::Event(card),
        at(second + DAY),
    )
    .case
    .unwrap();
    assert_eq!(with_card.state, State::Paused);
    let retry = with_card.timers[0];
    assert_eq!(retry.at, at(second + DAY) + SignedDuration::from_mins(5));
    let next = u32::try_from(paused.attempts.len()).unwrap() + 1;
    assert_eq!(retry.kind, TimerKind::Retry { attempt: next });

    let (recovered, asked) = step(&policy, &with_card, &ChargeResult::Paid);
    assert_eq!(recovered.state, State::Recovered);
    assert_eq!(recovered.recovered_by, Some(RecoveredBy::Retry));
    assert!(
        asked.contains(&Action::Nudge {
            kind: NudgeKind::Recovered,
            tier: 1
        }),
        "the thank-you: {asked:?}"
    );
    assert_eq!(kinds(&recovered.timers), [TimerKind::Resume]);
    let (resuming, asked) = step(&policy, &recovered, &ChargeResult::Paid);
    assert_eq!(asked, [Action::Resume]);
    let resumed = decide(
        &policy,
        Some(&resuming),
        &Input::Resumed {
            at: at(second + DAY + 400),
            result: EndResult::Done { already: false },
        },
        now(),
    )
    .case
    .unwrap();
    assert_eq!(
        resumed.resumption.as_ref().unwrap().outcome,
        DecisionOutcome::CarriedOut
    );
    assert!(resumed.timers.is_empty());
}

fn support(act: SupportAct, second: i64) -> Input {
    Input::Support(Box::new(Support {
        by: "ana".into(),
        reason: "customer on the phone".into(),
        at: at(second),
        act,
    }))
}

#[test]
fn a_support_hold_keeps_the_plan_lets_due_timers_go_and_resume_plans_again() {
    let policy = Policy::default();
    let case = opened(&policy, 4_900, 3, soft());
    let planned = case.next_attempt_at.unwrap();
    let held = decide(
        &policy,
        Some(&case),
        &support(SupportAct::Hold, NOW + 60),
        now(),
    )
    .case
    .unwrap();
    assert_eq!(held.state, State::OnHold);
    assert_eq!(held.timers, case.timers, "timers kept");
    assert_eq!(held.holds[0].by, HoldBy::Support { name: "ana".into() });
    assert!(
        held.timeline
            .last()
            .unwrap()
            .detail
            .starts_with("by ana: customer on the phone")
    );

    // Every timer that comes due while held is let go: no charge, no nudge.
    let mut quiet = held.clone();
    while !quiet.timers.is_empty() {
        let (next, asked) = step(&policy, &quiet, &soft());
        assert!(asked.is_empty(), "{asked:?}");
        assert_eq!(next.attempts.len(), 1, "nothing charged");
        quiet = next;
    }
    let resume_at = planned.as_second() + DAY;
    let resumed = decide(
        &policy,
        Some(&quiet),
        &support(SupportAct::Resume, resume_at),
        now(),
    )
    .case
    .unwrap();
    assert_eq!(resumed.state, State::Retrying);
    assert!(resumed.holds.is_empty());
    assert_eq!(
        resumed.next_attempt_at, case.next_attempt_at,
        "the missed retry is planned again, due at once"
    );

    // Resuming what support did not hold is refused with the reason.
    let refused = decide(
        &policy,
        Some(&resumed),
        &support(SupportAct::Resume, resume_at),
        now(),
    );
    assert_eq!(refused.case, None);
    assert_eq!(
        refused.refused.as_deref(),
        Some("the case is retrying, not on hold")
    );
}

#[test]
fn support_retry_runs_now_or_names_the_rule_that_forbids_it() {
    let policy = Policy::default();
    let case = opened(&policy, 4_900, 3, soft());
    let asked = decide(
        &policy,
        Some(&case),
        &support(SupportAct::Retry { card: Vec::new() }, NOW + 3_600),
        now(),
    )
    .case
    .unwrap();
    assert_eq!(asked.next_attempt_at, Some(at(NOW + 3_600)));
    assert!(matches!(
        asked
            .timers
            .iter()
            .find(|t| t.at == at(NOW + 3_600))
            .unwrap()
            .kind,
        TimerKind::Retry { attempt: 2 }
    ));

    let refusal = |case: &Case, card: Vec<Try>| {
        decide(
            &policy,
            Some(case),
            &support(SupportAct::Retry { card }, NOW + 3_600),
            now(),
        )
        .refused
        .expect("refused")
    };
    // Visa allows 20 reattempts of one invoice in 30 days.
    let spent: Vec<Try> = (1..=21)
        .map(|n| Try::new(at(NOW - 3_600 * i64::from(n)), &case.invoice_id, n, true))
        .collect();
    assert!(refusal(&case, spent).contains("the earliest legal retry is"));
    let stolen = opened(&policy, 4_900, 3, hard());
    assert!(
        refusal(&stolen, Vec::new())
            .starts_with("the last decline (stolen_card, hard) needs the customer"),
        "{}",
        refusal(&stolen, Vec::new())
    );
    let held = decide(&policy, Some(&case), &support(SupportAct::Hold, NOW), now())
        .case
        .unwrap();
    assert!(refusal(&held, Vec::new()).starts_with("the case is on hold (customer on the phone)"));
}

fn dispute(kind: &str, id: &str, created: i64) -> Input {
    let Input::Event(event) = any_event(kind, id, created) else {
        unreachable!()
    };
    Input::Dispute {
        event,
        card: Some(Card {
            fingerprint: "fp_1".into(),
            brand: "visa".into(),
            funding: None,
            expires_at: None,
        }),
    }
}

#[test]
fn a_dispute_holds_the_case_and_a_lost_one_stops_the_disputed_card() {
    let policy = Policy::default();
    let case = opened(&policy, 4_900, 3, soft());
    let held = decide(
        &policy,
        Some(&case),
        &dispute("charge.dispute.created", "evt_d1", NOW + 60),
        now(),
    )
    .case
    .unwrap();
    assert_eq!(held.state, State::OnHold);
    assert!(held.holds[0].reason.starts_with("dispute du_"));
    // A support resume does not lift a dispute's hold.
    let refused = decide(
        &policy,
        Some(&held),
        &support(SupportAct::Resume, NOW + 120),
        now(),
    );
    assert!(
        refused
            .refused
            .unwrap()
            .contains("for another reason (dispute du_")
    );

    let closed = decide(
        &policy,
        Some(&held),
        &dispute("charge.dispute.closed", "evt_d2", NOW + 600),
        now(),
    )
    .case
    .unwrap();
    assert!(closed.holds.is_empty());
    assert_eq!(
        closed.state,
        State::AwaitingCustomer,
        "the card is stopped; a new one is needed"
    );
    assert_eq!(
        closed.lost_dispute.as_ref().unwrap().card.as_deref(),
        Some("fp_1")
    );
    assert!(
        !closed
            .timers
            .iter()
            .any(|t| matches!(t.kind, TimerKind::Retry { .. }))
    );
    assert_eq!(
        ending::choose(&policy, &closed).1,
        "the policy's own: a card the customer won a dispute on, and no new card"
    );

    let keeps = Policy {
        disputes: DisputePlan {
            stop_card_when_lost: false,
        },
        ..Policy::default()
    };
    let kept = decide(
        &keeps,
        Some(&held),
        &dispute("charge.dispute.closed", "evt_d2", NOW + 600),
        now(),
    )
    .case
    .unwrap();
    assert_eq!(kept.state, State::Retrying);
    assert!(
        kept.timers
            .iter()
            .any(|t| matches!(t.kind, TimerKind::Retry { .. }))
    );
}

fn subscription_event(
    kind: &str,
    id: &str,
    created: i64,
    change: impl Fn(&mut Subscription),
) -> Input {
    let Input::Event(mut event) = any_event(kind, id, created) else {
        unreachable!()
    };
    if let EventObject::Subscription(subscription) = &mut event.object {
        change(subscription);
    }
    Input::Event(event)
}

#[test]
fn changes_in_the_dashboard_close_or_hold_the_case_without_a_fight() {
    let policy = Policy::default();
    let case = opened(&policy, 4_900, 3, soft());
    let paused = subscription_event("customer.subscription.updated", "evt_s1", NOW + 60, |s| {
        s.pause_collection = Some(PauseCollection {
            behavior: "void".into(),
            resumes_at: None,
        });
    });
    let held = decide(&policy, Some(&case), &paused, now()).case.unwrap();
    assert_eq!(held.state, State::OnHold);
    assert_eq!(held.holds[0].reason, "collection paused in Stripe (void)");

    let resumed = subscription_event("customer.subscription.updated", "evt_s2", NOW + 120, |s| {
        s.pause_collection = None;
    });
    let back = decide(&policy, Some(&held), &resumed, now()).case.unwrap();
    assert_eq!(back.state, State::Retrying);

    let deleted = subscription_event("customer.subscription.deleted", "evt_s3", NOW + 180, |_| {});
    let closed = decide(&policy, Some(&back), &deleted, now()).case.unwrap();
    assert_eq!(closed.state, State::Closed);
    assert!(closed.timers.is_empty());
    assert!(
        closed
            .closure
            .as_ref()
            .unwrap()
            .reason
            .contains("canceled in Stripe")
    );

    // recoup's own cancellation, reported back, changes nothing.
    let mut canceled = back.clone();
    canceled.state = State::Canceled;
    assert_eq!(decide(&policy, Some(&canceled), &deleted, now()).case, None);
}

#[test]
fn no_decision_while_stripe_retries_itself() {
    let policy = Policy::default();
    let case = run(&[failed_with_stripe_retrying("evt_a", NOW, 1)]).unwrap();
    assert!(
        !case.timers.iter().any(|t| t.kind == TimerKind::Decide),
        "Stripe's own end settings apply while its retries are on"
    );
    assert_eq!(ending::due(&policy, &case), None);
}

#[test]
fn a_paused_customer_who_pays_by_themselves_is_recovered_and_a_dashboard_resume_is_respected() {
    let policy = Policy::shipped();
    let (case, _) = run_out(&policy, opened(&policy, 49_900, 3, soft()), &soft());
    let second = case.decision.as_ref().unwrap().at.as_second();
    let paused = ended(&policy, &case, second, EndResult::Done { already: false });
    let paid = decide(
        &policy,
        Some(&paused),
        &paid("evt_self_paid", second + DAY),
        now(),
    )
    .case
    .unwrap();
    assert_eq!(paid.state, State::Recovered);
    assert_eq!(
        paid.timers,
        [Timer {
            at: at(second + DAY),
            kind: TimerKind::Resume
        }]
    );
    let resumed = |result| {
        decide(
            &policy,
            Some(&paid),
            &Input::Resumed {
                at: at(second + DAY + 60),
                result,
            },
            now(),
        )
        .case
        .unwrap()
    };
    // Someone resumed it in the dashboard first: recoup leaves it, and says so.
    let left = resumed(EndResult::Changed {
        now: "collection is not paused any more (resumed in Stripe)".into(),
    });
    assert_eq!(
        left.resumption.as_ref().unwrap().outcome,
        DecisionOutcome::NotCarriedOut
    );
    assert!(left.timers.is_empty());
    assert_eq!(
        left.timeline.last().unwrap().what,
        "collection left as it is"
    );
    // Stripe down: tried again ten minutes later.
    let failed = resumed(EndResult::Failed {
        error: "Stripe answered 503".into(),
    });
    assert_eq!(
        failed.timers,
        [Timer {
            at: at(second + DAY + 60 + 600),
            kind: TimerKind::Resume
        }]
    );
}

#[test]
fn a_lost_dispute_on_an_unknown_card_stops_the_case_until_a_new_card_arrives() {
    let policy = Policy::default();
    let case = opened(&policy, 4_900, 3, soft());
    let Input::Dispute { event, .. } = dispute("charge.dispute.closed", "evt_lost", NOW + 60)
    else {
        unreachable!()
    };
    let lost = decide(
        &policy,
        Some(&case),
        &Input::Dispute { event, card: None },
        now(),
    )
    .case
    .unwrap();
    assert_eq!(lost.state, State::AwaitingCustomer);
    assert_eq!(lost.lost_dispute.as_ref().unwrap().card, None);
    let refused = decide(
        &policy,
        Some(&lost),
        &support(SupportAct::Retry { card: Vec::new() }, NOW + 120),
        now(),
    );
    assert!(refused.refused.is_some());

    let Input::Event(mut card) = any_event("payment_method.attached", "evt_pm2", NOW + 3_600)
    else {
        unreachable!()
    };
    if let EventObject::PaymentMethod(pm) = &mut card.object {
        pm.customer = Some(lost.customer_id.clone());
    }
    let back = decide(&policy, Some(&lost), &Input::Event(card), now())
        .case
        .unwrap();
    assert_eq!(back.state, State::Retrying);
    assert!(
        back.timers
            .iter()
            .any(|t| matches!(t.kind, TimerKind::Retry { .. }))
    );
}

proptest! {
    /// Whatever holds come and go and whatever timers come due meanwhile, a case on hold is never
    /// charged, nudged or ended, and keeps its timers until they come due.
    #[test]
    fn nothing_happens_to_a_case_on_hold(
        steps in proptest::collection::vec(0usize..6, 1..24),
    ) {
        let policy = Policy::shipped();
        let mut case = opened(&policy, 4_900, 3, soft());
        for (n, step) in steps.into_iter().enumerate() {
            let second = NOW + 3_600 * (n as i64 + 1);
            let input = match step {
                0 => support(SupportAct::Hold, second),
                1 => support(SupportAct::Resume, second),
                2 => dispute("charge.dispute.created", &format!("evt_dc{n}"), second),
                3 => {
                    let Input::Dispute { mut event, card } =
                        dispute("charge.dispute.closed", &format!("evt_dx{n}"), second)
                    else {
                        unreachable!()
                    };
                    if let EventObject::Dispute(d) = &mut event.object {
                        d.status = "won".into();
                    }
                    Input::Dispute { event, card }
                }
                _ => match case.timers.iter().min_by_key(|t| t.at) {
                    Some(&timer) => due(timer),
                    None => continue,
                },
            };
            let decision = decide(&policy, Some(&case), &input, at(second));
            if case.state == State::OnHold {
                prop_assert!(decision.actions.is_empty(), "{:?} on hold", decision.actions);
            }
            if let Some(next) = decision.case {
                if next.state == State::OnHold && !matches!(input, Input::Timer { .. }) {
                    prop_assert!(case.timers.iter().all(|t| next.timers.contains(t)), "timers kept");
                }
                prop_assert_eq!(next.state == State::OnHold, !next.holds.is_empty());
                case = next;
            }
        }
    }
}

/// Every order the inputs can arrive in, applied to `case`.
fn in_every_order(policy: &Policy, case: &Case, inputs: &[Input]) -> Vec<Case> {
    super::permutations(inputs)
        .into_iter()
        .map(|order| {
            order.iter().fold(case.clone(), |case, input| {
                decide(policy, Some(&case), input, now())
                    .case
                    .unwrap_or(case)
            })
        })
        .collect()
}

#[test]
fn a_dispute_closed_before_its_opening_arrives_holds_nothing_in_any_order() {
    let policy = Policy::default();
    let case = opened(&policy, 4_900, 3, soft());
    let opened_then_closed = [
        dispute("charge.dispute.created", "evt_d1", NOW + 60),
        dispute("charge.dispute.closed", "evt_d2", NOW + 600),
    ];
    let ends = in_every_order(&policy, &case, &opened_then_closed);
    for after in &ends {
        assert!(after.holds.is_empty(), "{:#?}", after.timeline);
        // The dispute was lost: its card is stopped and the case waits for a new one.
        assert_eq!(
            after.state,
            State::AwaitingCustomer,
            "{:#?}",
            after.timeline
        );
        assert_eq!(after.timers, ends[0].timers, "{:#?}", after.timeline);
    }
}

#[test]
fn a_dashboard_resume_that_arrives_before_its_pause_holds_nothing_and_the_newest_zone_wins() {
    let policy = Policy::default();
    let case = opened(&policy, 4_900, 3, soft());
    let pause = |s: &mut Subscription| {
        s.pause_collection = Some(PauseCollection {
            behavior: "void".into(),
            resumes_at: None,
        });
    };
    let paused_then_resumed = [
        subscription_event("customer.subscription.updated", "evt_s1", NOW + 60, pause),
        subscription_event("customer.subscription.updated", "evt_s2", NOW + 120, |s| {
            s.pause_collection = None;
        }),
    ];
    for after in in_every_order(&policy, &case, &paused_then_resumed) {
        assert!(after.holds.is_empty(), "{:#?}", after.timeline);
        assert_eq!(after.state, State::Retrying);
    }
    // Resumed, then paused again later: held, whatever the order.
    let paused_again = [
        paused_then_resumed[1].clone(),
        subscription_event("customer.subscription.updated", "evt_s3", NOW + 180, pause),
    ];
    for after in in_every_order(&policy, &case, &paused_again) {
        assert_eq!(after.state, State::OnHold, "{:#?}", after.timeline);
    }

    let moved = |id: &str, created: i64, zone: &str| {
        let Input::Event(mut event) = any_event("customer.updated", id, created) else {
            unreachable!()
        };
        if let EventObject::Customer(customer) = &mut event.object {
            customer.id = case.customer_id.clone();
            customer.metadata.insert("timezone".into(), zone.into());
        }
        Input::Event(event)
    };
    let moves = [
        moved("evt_c1", NOW + 60, "Europe/Berlin"),
        moved("evt_c2", NOW + 120, "Asia/Tokyo"),
    ];
    for after in in_every_order(&policy, &case, &moves) {
        assert_eq!(
            after.customer_timezone, "Asia/Tokyo",
            "{:#?}",
            after.timeline
        );
    }
}

/// A hard decline under a three-day grace, run until its final notice goes out; returns the policy
/// and the case with the notice's first try under way.
fn final_notice_going_out() -> (Policy, Case) {
    let policy = Policy {
        ending: EndPlan {
            exhausted: End::LeavePastDue,
            no_new_card: End::LeavePastDue,
            grace: SignedDuration::from_hours(3 * 24),
        },
        ..Policy::default()
    };
    let mut case = opened(&policy, 4_900, 3, hard());
    for _ in 0..10 {
        let (next, asked) = step_reporting(&policy, &case, &hard(), |kind| {
            kind != NudgeKind::FinalNotice
        });
        case = next;
        let final_notice = Action::Nudge {
            kind: NudgeKind::FinalNotice,
            tier: 1,
        };
        if asked.contains(&final_notice) {
            return (policy, case);
        }
    }
    panic!("no final notice: {:?}", case.timers)
}

fn decide_timer(case: &Case) -> Option<Timestamp> {
    case.timers
        .iter()
        .find(|t| t.kind == TimerKind::Decide)
        .map(|t| t.at)
}

#[test]
fn a_retry_under_way_is_let_go_when_a_late_decline_leaves_the_card_to_the_customer() {
    let policy = Policy::default();
    let mut case = opened(&policy, 4_900, 3, soft());
    // Retry 2 goes out; its worker dies before the result is in.
    let timer = *case
        .timers
        .iter()
        .find(|t| t.kind == TimerKind::Retry { attempt: 2 })
        .unwrap();
    case = decide(&policy, Some(&case), &due(timer), timer.at)
        .case
        .unwrap();
    assert!(case.retry_under_way.is_some());
    // Then Stripe's first decline is read at last: a stolen card.
    let late = Input::Charge(Box::new(Charge {
        attempt: 1,
        at: at(NOW),
        result: hard(),
        fees: Vec::new(),
    }));
    let later = timer.at + SignedDuration::from_mins(1);
    let case = decide(&policy, Some(&case), &late, later).case.unwrap();
    assert_eq!(case.state, State::AwaitingCustomer);
    // The retry is not made again (a new try of a stolen card, if the first call never reached
    // Stripe), and the case is not left without a plan: its end decision waits for the final
    // notice, whose nudge is planned.
    assert_eq!(case.retry_under_way, None);
    assert!(
        !case
            .timers
            .iter()
            .any(|t| matches!(t.kind, TimerKind::Retry { .. })),
        "{:?}",
        case.timers
    );
    assert!(!case.timers.is_empty(), "a case with nothing planned");
    assert!(
        case.timeline
            .iter()
            .any(|e| e.detail.contains("retry 2 (under way since")),
        "{:#?}",
        case.timeline
    );
}

#[test]
fn a_final_notice_whose_first_try_never_reports_back_is_tried_again_and_no_decision_counts_from_it()
{
    // The worker marked the notice and died, or failed before any channel was asked (the store
    // did not answer): no result comes back.
    let (policy, case) = final_notice_going_out();
    let first = sent(&case, NudgeKind::FinalNotice).unwrap();
    assert_eq!(
        decide_timer(&case),
        None,
        "no decision counted from a notice that may never have gone out"
    );
    let again = case
        .timers
        .iter()
        .find(|t| {
            t.kind
                == TimerKind::Nudge {
                    nudge: NudgeKind::FinalNotice,
                    tier: 1,
                }
        })
        .copied()
        .expect("the notice is tried once more");
    assert_eq!(again.at, first + SignedDuration::from_hours(1));
    let decision = decide(&policy, Some(&case), &due(again), again.at);
    assert_eq!(
        decision.actions,
        [Action::Nudge {
            kind: NudgeKind::FinalNotice,
            tier: 1
        }]
    );
    let case = decision.case.unwrap();
    assert_eq!(case.timeline.last().unwrap().what, "nudge tried again");
    assert_eq!(decide_timer(&case), None);
}

#[test]
fn a_final_notice_whose_results_never_come_back_is_given_up_after_six_tries() {
    let (policy, mut case) = final_notice_going_out();
    let mut tries = 1;
    for _ in 0..10 {
        let Some(timer) = nudge_timer(&case) else {
            break;
        };
        let decision = decide(&policy, Some(&case), &due(timer), timer.at);
        tries += decision.actions.len();
        case = decision.case.unwrap();
    }
    assert_eq!(tries, 6, "six tries, not one an hour for ever");
    assert_eq!(case.timeline.last().unwrap().what, "nudge given up");
    assert!(
        decide_timer(&case).is_some(),
        "the decision counts from then"
    );
}

#[test]
fn an_undelivered_final_notice_is_tried_again_in_daytime_and_grace_counts_from_its_delivery() {
    let (policy, case) = final_notice_going_out();
    let first = sent(&case, NudgeKind::FinalNotice).unwrap();
    let mut case = decide(
        &policy,
        Some(&case),
        &emailed(NudgeKind::FinalNotice, 1, first, false, true),
        first,
    )
    .case
    .unwrap();
    assert_eq!(
        decide_timer(&case),
        None,
        "no decision counted from a notice only due"
    );
    let said = &case.timeline.last().unwrap();
    assert_eq!(said.what, "nudge not delivered");
    assert!(said.detail.contains("tried again at"), "{}", said.detail);
    assert!(
        said.detail
            .contains("the end decision waits for its delivery"),
        "{}",
        said.detail
    );

    // Two more tries find the mail server still busy; the fourth is delivered.
    let mut delivered_at = None;
    for try_ in 2..=4 {
        let timer = nudge_timer(&case).expect("a retry is planned");
        let local = timer.at.to_zoned(timing::zone(&case.customer_timezone));
        assert!(
            (9..20).contains(&local.hour()),
            "a retry in quiet hours: {local}"
        );
        let fired = decide(&policy, Some(&case), &due(timer), timer.at);
        assert_eq!(
            fired.actions,
            [Action::Nudge {
                kind: NudgeKind::FinalNotice,
                tier: 1
            }]
        );
        let fired = fired.case.unwrap();
        assert_eq!(
            decide_timer(&fired),
            None,
            "no decision while a try is under way"
        );
        let sent = try_ == 4;
        let result = emailed(NudgeKind::FinalNotice, 1, timer.at, sent, true);
        case = decide(&policy, Some(&fired), &result, timer.at)
            .case
            .unwrap();
        if sent {
            delivered_at = Some(timer.at);
        }
    }
    let delivered_at = delivered_at.unwrap();
    let notice = case
        .nudged
        .iter()
        .find(|n| n.kind == NudgeKind::FinalNotice)
        .unwrap();
    assert_eq!(notice.delivered_at, Some(delivered_at));
    assert_eq!(notice.failed_tries, 3);
    assert!(delivered_at > first + SignedDuration::from_hours(12));
    assert_eq!(
        decide_timer(&case),
        Some(delivered_at + SignedDuration::from_hours(3 * 24))
    );
    let (case, _) = run_out(&policy, case, &hard());
    let decision = case.decision.unwrap();
    assert_eq!(
        decision.at,
        delivered_at + SignedDuration::from_hours(3 * 24)
    );
    assert!(
        decision
            .reason
            .contains(&format!("final notice delivered {delivered_at}")),
        "{}",
        decision.reason
    );
}

/// Found by the chaos run: the first try's worker stalled with its result (the mail server had
/// said "try later") while the retry went out and was delivered; the stale result, applied last,
/// made the delivered notice look unsettled again, and the end decision was never planned.
#[test]
fn a_late_failed_try_of_a_delivered_final_notice_takes_nothing_back() {
    let (policy, case) = final_notice_going_out();
    let first = sent(&case, NudgeKind::FinalNotice).unwrap();
    // The first try's timer comes due again while its result is still out: the second try.
    let redo = nudge_timer(&case).expect("a try under way keeps a timer");
    let second = decide(&policy, Some(&case), &due(redo), redo.at)
        .case
        .unwrap();
    let delivered = emailed(NudgeKind::FinalNotice, 1, redo.at, true, true);
    let case = decide(&policy, Some(&second), &delivered, redo.at)
        .case
        .unwrap();
    let decision_at = decide_timer(&case).expect("grace counts from the delivery");

    let late = emailed(NudgeKind::FinalNotice, 1, first, false, true);
    let after = decide(&policy, Some(&case), &late, redo.at).case.unwrap();
    let notice = after
        .nudged
        .iter()
        .find(|n| n.kind == NudgeKind::FinalNotice)
        .unwrap();
    assert_eq!(notice.delivered_at, Some(redo.at));
    assert_eq!((notice.retry_at, notice.failed_tries), (None, 0));
    assert_eq!(
        decide_timer(&after),
        Some(decision_at),
        "{:?}",
        after.timers
    );
    assert_eq!(
        nudge_timer(&after),
        None,
        "a delivered notice is not tried again"
    );
    let said = after
        .timeline
        .iter()
        .find(|e| e.what == "nudge not delivered")
        .unwrap();
    assert!(said.detail.contains("settled first"), "{}", said.detail);
}

#[test]
fn a_final_notice_refused_for_good_or_out_of_tries_is_given_up_and_grace_counts_from_then() {
    let (policy, case) = final_notice_going_out();
    let first = sent(&case, NudgeKind::FinalNotice).unwrap();
    let refused = emailed(NudgeKind::FinalNotice, 1, first, false, false);
    let given_up = decide(&policy, Some(&case), &refused, first).case.unwrap();
    assert!(
        !given_up
            .timers
            .iter()
            .any(|t| matches!(t.kind, TimerKind::Nudge { .. })),
        "a refusal for good is not tried again"
    );
    assert_eq!(
        decide_timer(&given_up),
        Some(first + SignedDuration::from_hours(3 * 24))
    );
    let said = &given_up.timeline.last().unwrap().detail;
    assert!(
        said.ends_with("not tried again: no channel can take it")
            || said.contains("not tried again: no channel can take it;"),
        "{said}"
    );

    // A server that stays busy: six tries, then recoup stops, and grace runs from the last.
    let mut case = case;
    let mut at = first;
    for _ in 0..=RETRY_GAPS.len() {
        let busy = emailed(NudgeKind::FinalNotice, 1, at, false, true);
        case = decide(&policy, Some(&case), &busy, at).case.unwrap();
        let Some(timer) = nudge_timer(&case) else {
            break;
        };
        case = decide(&policy, Some(&case), &due(timer), timer.at)
            .case
            .unwrap();
        at = timer.at;
    }
    let notice = case
        .nudged
        .iter()
        .find(|n| n.kind == NudgeKind::FinalNotice)
        .unwrap();
    assert_eq!(notice.given_up_at, Some(at));
    assert_eq!(notice.delivered_at, None);
    assert_eq!(
        usize::try_from(notice.failed_tries).unwrap(),
        RETRY_GAPS.len()
    );
    assert!(
        case.timeline
            .last()
            .unwrap()
            .detail
            .contains("given up after 6 tries")
    );
    assert_eq!(
        decide_timer(&case),
        Some(at + SignedDuration::from_hours(3 * 24))
    );
}
