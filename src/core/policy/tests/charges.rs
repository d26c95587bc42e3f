//! What charge results and the networks' budgets do to a case.

use super::*;
use crate::policy::budget::{self, Try};
use crate::policy::networks::{Counts, Dates, Fee, Key, Networks, Rule};

const HOUR: i64 = 3_600;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).unwrap()
}

fn charge(attempt: u32, second: i64, result: ChargeResult) -> Input {
    Input::Charge(Box::new(Charge {
        attempt,
        at: at(second),
        result,
        fees: Vec::new(),
    }))
}

fn declined_on(decline_code: &str, advice_code: Option<&str>, brand: &str) -> ChargeResult {
    ChargeResult::Declined(Declined {
        code: Some("card_declined".to_owned()),
        decline_code: Some(decline_code.to_owned()),
        advice_code: advice_code.map(str::to_owned),
        card: Some(Card {
            fingerprint: "fp_1".to_owned(),
            brand: brand.to_owned(),
            funding: None,
            expires_at: None,
        }),
        ..Declined::default()
    })
}

fn apply(case: &Case, input: &Input) -> Case {
    decide(&retries_only(), Some(case), input, now())
        .case
        .expect("the input changes the case")
}

/// A case whose first failure is at NOW and whose retry (attempt 2) has just fired.
fn fired() -> (Case, Timer) {
    let opened = run(&[failed("evt_f1", NOW, 1)]).unwrap();
    let timer = opened.timers[0];
    let decision = decide(&retries_only(), Some(&opened), &due(timer), timer.at);
    assert_eq!(decision.actions, [Action::Retry { attempt: 2 }]);
    (decision.case.unwrap(), timer)
}

#[test]
fn the_decline_of_stripes_attempt_sets_class_card_and_plan() {
    let opened = run(&[failed("evt_f1", NOW, 1)]).unwrap();
    assert_eq!(opened.decline, None, "a failure event carries no decline");

    let hard = apply(
        &opened,
        &charge(1, NOW, declined_on("stolen_card", None, "visa")),
    );
    assert_eq!(hard.state, State::AwaitingCustomer);
    assert_eq!(
        kinds(&hard.timers),
        [TimerKind::Decide],
        "no retry, only the end"
    );
    assert_eq!(hard.decline.as_ref().unwrap().class, DeclineClass::Hard);
    assert_eq!(hard.card.as_ref().unwrap().fingerprint, "fp_1");
    assert_eq!(
        hard.attempts[0].decline_code.as_deref(),
        Some("stolen_card")
    );
    let said = &hard.timeline.last().unwrap().detail;
    assert!(said.contains("hard (decline code stolen_card)"), "{said}");
    assert!(said.contains("no retry"), "{said}");

    let soft = apply(
        &opened,
        &charge(1, NOW, declined_on("insufficient_funds", None, "visa")),
    );
    assert_eq!(soft.state, State::Retrying);
    assert_eq!(soft.decline.as_ref().unwrap().class, DeclineClass::Soft);
    let retry = soft.timers[0]
        .at
        .to_zoned(timing::zone(&soft.customer_timezone));
    assert!([1, 15].contains(&retry.day()), "a payday: {retry}");

    // Told again (the worker's redo, or a second lookup), the same result changes nothing.
    let again = &charge(1, NOW, declined_on("insufficient_funds", None, "visa"));
    assert_eq!(
        decide(&retries_only(), Some(&soft), again, now()),
        Decision::default()
    );
}

/// Stripe's failure event carries no decline: the worker reads it next, as the attempt's result.
/// The opening line does not explain a plan for a decline not yet known, and the line of the
/// decline tells the plan with its reason — even when the time stays — so the timeline reads as
/// one story. What the policy decides is the same either way.
#[test]
fn the_opening_leaves_the_retry_plan_to_the_decline_read_next() {
    let opened = run(&[failed("evt_f1", NOW, 1)]).unwrap();
    let first = &opened.timeline[0].detail;
    assert!(!first.contains("ambiguous"), "{first}");
    assert!(
        first.contains(" for now: the decline's details are read from Stripe next"),
        "{first}"
    );
    assert_eq!(kinds(&opened.timers), [TimerKind::Retry { attempt: 2 }]);

    let soft = apply(
        &opened,
        &charge(1, NOW, declined_on("insufficient_funds", None, "visa")),
    );
    let said = &soft.timeline.last().unwrap().detail;
    assert!(
        said.contains(": retry 1 of 12 for a soft decline: "),
        "{said}"
    );

    let ambiguous = apply(
        &opened,
        &charge(1, NOW, declined_on("do_not_honor", None, "visa")),
    );
    assert_eq!(ambiguous.timers, opened.timers, "the time stays");
    let said = &ambiguous.timeline.last().unwrap().detail;
    assert!(
        said.contains(": retry 1 of 8 for an ambiguous decline: "),
        "{said}"
    );

    // A failure whose decline recoup already has (its own attempt's result came first) is told
    // as before, with the plan's reason.
    let (fired, timer) = fired();
    let known = apply(
        &fired,
        &charge(
            2,
            timer.at.as_second(),
            declined_on("do_not_honor", None, "visa"),
        ),
    );
    let late = apply(&known, &failed("evt_f2", timer.at.as_second(), 2));
    let said = &late.timeline.last().unwrap().detail;
    assert!(!said.contains("read from Stripe next"), "{said}");
}

#[test]
fn an_older_attempts_decline_does_not_replace_the_latest() {
    let (fired, timer) = fired();
    let second = apply(
        &fired,
        &charge(
            2,
            timer.at.as_second(),
            declined_on("insufficient_funds", None, "visa"),
        ),
    );
    let late = apply(
        &second,
        &charge(1, NOW, declined_on("stolen_card", None, "visa")),
    );
    assert_eq!(late.decline.as_ref().unwrap().class, DeclineClass::Soft);
    assert_eq!(
        late.attempts[0].decline_code.as_deref(),
        Some("stolen_card")
    );
    assert_eq!(late.timers, second.timers);
}

#[test]
fn a_paid_retry_recovers_the_case_by_retry_and_the_late_webhook_agrees() {
    let (fired, timer) = fired();
    let paid_at = timer.at.as_second() + 2;
    let recovered = apply(&fired, &charge(2, paid_at, ChargeResult::Paid));
    assert_eq!(recovered.state, State::Recovered);
    assert_eq!(recovered.recovered_by, Some(RecoveredBy::Retry));
    assert_eq!(recovered.attempts[1].outcome, Outcome::Succeeded);
    assert_eq!(recovered.retry_under_way, None);
    assert_eq!(recovered.timers, []);

    let webhook = apply(&recovered, &paid("evt_paid", paid_at + 1));
    assert_eq!(webhook.state, State::Recovered);
    assert_eq!(webhook.recovered_by, Some(RecoveredBy::Retry));
}

#[test]
fn an_invoice_no_longer_open_is_not_charged_and_ends_the_case() {
    let (fired, timer) = fired();
    let t = timer.at.as_second();
    let not_open = |status: &str| ChargeResult::NotOpen {
        status: status.to_owned(),
    };
    let voided = apply(&fired, &charge(2, t, not_open("void")));
    assert_eq!(voided.state, State::Closed);
    assert_eq!(voided.closure.unwrap().reason, "invoice is void in Stripe");
    assert_eq!(voided.attempts.len(), 1, "no attempt was made");

    let paid = apply(&fired, &charge(2, t, not_open("paid")));
    assert_eq!(paid.state, State::Recovered);
    assert_eq!(paid.recovered_by, Some(RecoveredBy::Unknown));
}

#[test]
fn an_attempt_without_a_result_eight_times_in_a_row_is_held_for_support_not_tried_for_weeks() {
    let (mut case, timer) = fired();
    let mut due_at = timer.at;
    let mut waits = Vec::new();
    for n in 1..=Attempt::MAX_ERRORS {
        let error = ChargeResult::Failed {
            error: "Stripe answered 404: no such invoice".to_owned(),
        };
        case = apply(&case, &charge(2, due_at.as_second(), error));
        assert_eq!(case.attempts[1].errors, n);
        if n == Attempt::MAX_ERRORS {
            break;
        }
        let again = case.timers[0];
        assert_eq!(again.kind, TimerKind::Retry { attempt: 2 });
        waits.push(again.at.duration_since(case.attempts[1].at));
        case = apply(&case, &due(again));
        due_at = again.at;
    }
    // Spaced 10 minutes doubling (moved into the customer's daytime when due at night).
    for (n, wait) in waits.iter().enumerate() {
        let least = SignedDuration::from_mins(10 * (1 << n));
        assert!(*wait >= least, "wait {n}: {wait} < {least}");
    }
    assert_eq!(case.state, State::OnHold);
    assert_eq!(
        case.holds[0].by,
        HoldBy::Support {
            name: "recoup".into()
        }
    );
    assert!(
        case.holds[0]
            .reason
            .contains("no result 8 times in a row (last: Stripe answered 404"),
        "{:?}",
        case.holds
    );
    assert!(
        case.timers
            .iter()
            .all(|t| !matches!(t.kind, TimerKind::Retry { .. })),
        "no more tries: {:?}",
        case.timers
    );

    // Support fixes the cause and resumes: the attempt is made again, its count started afresh.
    let resume = Input::Support(Box::new(Support {
        by: "ana".into(),
        reason: "the API key has its permission back".into(),
        at: due_at + SignedDuration::from_hours(1),
        act: SupportAct::Resume,
    }));
    let resumed = apply(&case, &resume);
    assert_eq!(resumed.state, State::Retrying);
    assert_eq!(resumed.attempts[1].errors, 0);
    assert!(
        resumed
            .timers
            .iter()
            .any(|t| t.kind == TimerKind::Retry { attempt: 2 }),
        "{:?}",
        resumed.timers
    );
}

#[test]
fn an_attempt_without_a_result_is_made_again_under_the_same_number() {
    let (fired, timer) = fired();
    let t = timer.at.as_second();
    let error = ChargeResult::Failed {
        error: "Stripe answered 500".to_owned(),
    };
    let failed_call = apply(&fired, &charge(2, t, error));
    assert_eq!(failed_call.attempts[1].outcome, Outcome::Error);
    assert_eq!(failed_call.state, State::Retrying);
    let again = failed_call.timers[0];
    assert_eq!(again.kind, TimerKind::Retry { attempt: 2 });
    assert!(again.at >= at(t) + SignedDuration::from_mins(10));
    let local = again
        .at
        .to_zoned(timing::zone(&failed_call.customer_timezone));
    assert!((9..20).contains(&local.hour()), "{local}");

    // The same attempt, fired again, gets a real result, which replaces the error.
    let refired = apply(&failed_call, &due(again));
    let result = apply(
        &refired,
        &charge(
            2,
            again.at.as_second(),
            declined_on("insufficient_funds", None, "visa"),
        ),
    );
    assert_eq!(result.attempts.len(), 2);
    assert_eq!(result.attempts[1].outcome, Outcome::Failed);
    assert_eq!(result.attempts[1].at, again.at);
    let kinds: Vec<_> = result.timers.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TimerKind::Retry { attempt: 3 }]);
}

/// A case on a card of `brand` with retry 2 due at `due`.
fn due_on_card(brand: &str) -> (Case, Timer) {
    let opened = run(&[failed("evt_f1", NOW, 1)]).unwrap();
    let mut case = apply(
        &opened,
        &charge(1, NOW, declined_on("do_not_honor", None, brand)),
    );
    case.version = 1;
    let timer = case.timers[0];
    (case, timer)
}

fn tries(invoice: &str, declined: bool, seconds: impl IntoIterator<Item = i64>) -> Vec<Try> {
    seconds
        .into_iter()
        .enumerate()
        .map(|(n, s)| Try::new(at(s), invoice, n as u32 + 1, declined))
        .collect()
}

#[test]
fn a_card_past_its_network_budget_moves_the_retry_and_says_why() {
    let (case, timer) = due_on_card("mastercard");
    let fire_at = timer.at.as_second();
    // Ten declines on the same card for other invoices in the last few hours.
    let card = tries(
        "in_other",
        true,
        (0..10).map(|n| fire_at - 5 * HOUR + n * 60),
    );
    let input = Input::Timer { timer, card };
    let decision = decide(&retries_only(), Some(&case), &input, timer.at);
    assert_eq!(decision.actions, []);
    let moved = decision.case.unwrap();
    let later = moved.timers[0];
    assert_eq!(later.kind, timer.kind, "the same attempt, later");
    assert!(
        later.at >= at(fire_at - 5 * HOUR + 24 * HOUR),
        "{}",
        later.at
    );
    assert_eq!(moved.next_attempt_at, Some(later.at));
    let said = &moved.timeline.last().unwrap().detail;
    assert!(
        said.contains("mastercard declines a day: at most 10 declines per card in 1 day"),
        "{said}"
    );

    // The attempt's own try, reserved before a crash, does not count against it.
    let own = vec![Try::new(timer.at, &case.invoice_id, 2, true)];
    let redo = decide(
        &retries_only(),
        Some(&case),
        &Input::Timer { timer, card: own },
        timer.at,
    );
    assert_eq!(redo.actions, [Action::Retry { attempt: 2 }]);
}

#[test]
fn a_fired_retry_says_how_much_of_each_network_budget_it_leaves() {
    let (case, timer) = due_on_card("mastercard");
    let card = tries("in_other", true, [timer.at.as_second() - 600]);
    let fired = decide(
        &retries_only(),
        Some(&case),
        &Input::Timer { timer, card },
        timer.at,
    );
    assert_eq!(fired.actions, [Action::Retry { attempt: 2 }]);
    let fired = fired.case.unwrap();
    let said = &fired.timeline.last().unwrap().detail;
    assert!(
        said.starts_with("attempt 2 on mastercard card fp_1"),
        "{said}"
    );
    assert!(
        said.contains("mastercard declines a day: at most 10 declines per card in 1 day: 8 left"),
        "{said}"
    );
    assert!(
        said.contains(
            "mastercard declines per amount: at most 35 declines per card and amount in 30 days: \
             33 left"
        ),
        "{said}"
    );
}

#[test]
fn a_new_card_becomes_the_card_whose_budget_the_retry_spends() {
    let opened = run(&[failed("evt_f1", NOW, 1)]).unwrap();
    let hard = apply(
        &opened,
        &charge(1, NOW, declined_on("stolen_card", None, "visa")),
    );
    let carded = apply(
        &hard,
        &any_event("payment_method.attached", "evt_pm", NOW + 60),
    );
    assert_eq!(carded.state, State::Retrying);
    assert_eq!(
        carded.card,
        Some(Card {
            fingerprint: "Qm8ZvN2pLk4TyR7w".into(),
            brand: "visa".into(),
            funding: Some("credit".into()),
            // The card shows 03/2029: it works through March.
            expires_at: Some("2029-04-01T00:00:00Z".parse().unwrap()),
        })
    );
}

#[test]
fn a_rule_that_allows_nothing_drops_the_retry() {
    let (case, timer) = due_on_card("amex");
    let policy = Policy {
        networks: std::sync::Arc::new(Networks {
            rules: vec![Rule {
                name: "no amex".to_owned(),
                brand: "amex".to_owned(),
                counts: Counts::Attempts,
                key: Key::default(),
                max: 0,
                per: SignedDuration::from_hours(24),
                resets: false,
                fee: Fee::ZERO,
                dates: Dates::default(),
                source: "a test".to_owned(),
            }],
            ..Networks::default()
        }),
        ..retries_only()
    };
    let input = Input::Timer {
        timer,
        card: Vec::new(),
    };
    let decision = decide(&policy, Some(&case), &input, timer.at);
    assert_eq!(decision.actions, []);
    let dropped = decision.case.unwrap();
    assert_eq!(
        kinds(&dropped.timers),
        [TimerKind::Decide],
        "the end takes its place"
    );
    assert_eq!(dropped.next_attempt_at, None);
    let said = &dropped.timeline.last().unwrap().detail;
    assert!(said.contains("allows no try on this card"), "{said}");
    assert!(said.contains("; decision due "), "{said}");
}

proptest! {
    /// Whatever the card's recent history, a retry the engine makes at `now` fits every network
    /// rule in the window that ends with it, and one it holds back moves later, never earlier.
    #[test]
    fn the_engine_never_charges_past_a_network_budget(
        past in proptest::collection::vec((0i64..40 * 86_400, any::<bool>(), 0usize..3), 0..90),
        brand in prop_oneof![Just("visa"), Just("mastercard")],
        late in 0i64..6 * HOUR,
    ) {
        let (case, timer) = due_on_card(brand);
        let now = timer.at + SignedDuration::from_secs(late);
        let invoices = [case.invoice_id.as_str(), "in_b", "in_c"];
        let card: Vec<Try> = past
            .iter()
            .enumerate()
            .map(|(n, &(ago, declined, i))| Try::new(now - SignedDuration::from_secs(ago + 1), invoices[i], 100 + n as u32, declined))
            .collect();
        let policy = retries_only();
        let decision = decide(&policy, Some(&case), &Input::Timer { timer, card: card.clone() }, now);
        let after = decision.case.expect("a held timer always changes the case");
        if decision.actions.is_empty() {
            prop_assert!(after.timers.iter().all(|t| t.at > now));
            return Ok(());
        }
        let planned = Try::of_case(&case, 2, now);
        let broken = budget::broken(&policy.networks, brand, &card, &planned);
        prop_assert!(broken.is_empty(), "{broken:?}");
    }
}

proptest! {
    /// Whatever Stripe reports, in whatever order, and whatever the charges come to: a paid,
    /// voided or written-off invoice is never charged, and a card that declined for good is never
    /// charged again (no new card arrives in these stories).
    #[test]
    fn no_charge_for_a_closed_invoice_nor_again_on_a_card_that_declined_for_good(
        kinds in proptest::collection::vec(0usize..6, 1..6),
        steps in proptest::collection::vec((0usize..4, 0usize..5, any::<prop::sample::Index>()), 1..16),
    ) {
        const CODES: [&str; 5] =
            ["stolen_card", "insufficient_funds", "generic_decline", "expired_card", "do_not_honor"];
        let policy = retries_only();
        let story = story(&kinds);
        let mut case = run(&story[..1]);
        let mut untold = story[1..].to_vec();
        for (step, (what, code, pick)) in steps.into_iter().enumerate() {
            let Some(current) = case.clone() else { break };
            let attempt = current.attempts.last().map_or(1, |a| a.number);
            let second = NOW + 3_600 * step as i64;
            let input = match what {
                0 if !untold.is_empty() => untold.remove(pick.index(untold.len())),
                0 | 1 => charge(attempt, second, declined_on(CODES[code], None, "visa")),
                2 => charge(attempt + 1, second, ChargeResult::Failed { error: "timeout".into() }),
                _ => match current.timers.first() {
                    Some(&timer) => due(timer),
                    None => continue,
                },
            };
            let decision = decide(&policy, Some(&current), &input, at(second));
            if decision.actions.iter().any(|a| matches!(a, Action::Retry { .. })) {
                prop_assert!(!current.state.is_final(), "charged a {:?} case", current.state);
                prop_assert!(
                    current.decline.as_ref().is_none_or(|d| d.class == DeclineClass::Soft
                        || d.class == DeclineClass::Ambiguous),
                    "charged after {:?}", current.decline
                );
            }
            if let Some(next) = decision.case {
                if next.state.is_final() {
                    // Resuming a paused collection is the one thing a case does once it is over.
                    prop_assert!(next.timers.iter().all(|t| t.kind == TimerKind::Resume));
                }
                // No case in dunning is ever stuck: something is planned or awaited.
                let dunning = matches!(next.state, State::Retrying | State::AwaitingCustomer);
                let awaited = next.retry_under_way.is_some()
                    || next.stripe_retries_at.is_some()
                    || next
                        .decision
                        .as_ref()
                        .is_some_and(|d| d.outcome == DecisionOutcome::UnderWay);
                if dunning && next.failed_at.is_some() {
                    prop_assert!(!next.timers.is_empty() || awaited, "stuck: {:?}", next.timeline);
                }
                case = Some(next);
            }
        }
    }
}
