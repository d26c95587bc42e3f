//! No time arithmetic in the policy can panic, whatever the clock says: the scheduler's `now` comes
//! from the test clock, whose offset is whatever the store holds, and Stripe's `created` times and
//! the policy file's durations come from outside. Every input is decided at instants anywhere in
//! jiff's range, the ends included, and `decide` must answer, not panic.

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;

/// Any instant, weighted toward the ends of time and ordinary days.
fn any_time() -> impl Strategy<Value = Timestamp> {
    let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    prop_oneof![
        1 => Just(Timestamp::MIN),
        1 => Just(Timestamp::MAX),
        2 => (min..=min + 90 * 86_400).prop_map(|s| Timestamp::from_second(s).unwrap()),
        2 => (max - 90 * 86_400..=max).prop_map(|s| Timestamp::from_second(s).unwrap()),
        2 => (min..=max).prop_map(|s| Timestamp::from_second(s).unwrap()),
        1 => (NOW..NOW + 60 * 86_400).prop_map(|s| Timestamp::from_second(s).unwrap()),
    ]
}

/// Any `created` second an event may claim, including ones no timestamp can hold.
fn any_created() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => any_time().prop_map(|t| t.as_second()),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => any::<i64>(),
    ]
}

fn an_input(what: usize, case: Option<&Case>, created: i64, at: Timestamp) -> Option<Input> {
    let attempt = case.and_then(|c| c.attempts.last()).map_or(1, |a| a.number);
    let declined = ChargeResult::Declined(Declined {
        code: Some("card_declined".to_owned()),
        decline_code: Some("insufficient_funds".to_owned()),
        card: Some(Card {
            fingerprint: "fp_extreme".to_owned(),
            brand: "mastercard".to_owned(),
            funding: None,
            expires_at: None,
        }),
        network_advice_code: Some("24".to_owned()),
        ..Declined::default()
    });
    Some(match what {
        0 => failed(&format!("evt_f{created}"), created, attempt + 1),
        1 => {
            let timer = *case?.timers.iter().min_by_key(|t| t.at)?;
            Input::Timer {
                timer,
                card: vec![budget::Try::new(at, "in_other", 1, true)],
            }
        }
        2 => Input::Charge(Box::new(Charge {
            attempt: case?.retry_under_way.map_or(attempt, |r| r.attempt),
            at,
            result: declined,
            fees: Vec::new(),
        })),
        3 => Input::Charge(Box::new(Charge {
            attempt,
            at,
            result: ChargeResult::Failed {
                error: "timeout".to_owned(),
            },
            fees: Vec::new(),
        })),
        4 => Input::Ended {
            at,
            result: EndResult::Failed {
                error: "timeout".to_owned(),
            },
        },
        5 => Input::Ended {
            at,
            result: EndResult::Done { already: false },
        },
        6 => {
            let nudged = case?.nudged.last()?;
            Input::Nudged {
                kind: nudged.kind,
                tier: nudged.tier,
                at,
                template: "en/x".to_owned(),
                results: vec![NudgeResult {
                    channel: Channel::Email,
                    sent: true,
                    passing: false,
                    note: String::new(),
                }],
            }
        }
        7 => {
            let nudged = case?.nudged.last()?;
            Input::NudgeHeld {
                kind: nudged.kind,
                tier: nudged.tier,
                until: at,
            }
        }
        8 => any_event(
            "payment_method.attached",
            &format!("evt_c{created}"),
            created,
        ),
        9 => paid(&format!("evt_p{created}"), created),
        10 => Input::Support(Box::new(Support {
            by: "ana".to_owned(),
            reason: "asked".to_owned(),
            at,
            act: SupportAct::Retry { card: Vec::new() },
        })),
        11 => Input::Support(Box::new(Support {
            by: "ana".to_owned(),
            reason: "asked".to_owned(),
            at,
            act: SupportAct::Hold,
        })),
        12 => Input::Support(Box::new(Support {
            by: "ana".to_owned(),
            reason: "asked".to_owned(),
            at,
            act: SupportAct::Resume,
        })),
        _ => Input::Resumed {
            at,
            result: EndResult::Done { already: false },
        },
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A case opened, fired, charged, ended and nudged at any instants, on the shipped policy (with
    /// its nudges, segments and endings) and on one whose durations are the longest the file
    /// allows: every decision is made, none panics.
    #[test]
    fn deciding_at_any_instant_never_panics(
        opened in any_created(),
        opened_now in any_time(),
        steps in prop::collection::vec((0usize..14, any_created(), any_time()), 1..24),
        long in any::<bool>(),
    ) {
        let mut policy = Policy::shipped();
        if long {
            let years = SignedDuration::from_hours(24 * 365 * 20_000);
            policy.plan.within = years;
            policy.plan.jitter = years;
            policy.plan.after_new_card = years;
            policy.ending.grace = years;
            policy.plan.soft = vec![years; 4];
        }
        let mut case = decide(&policy, None, &failed("evt_open", opened, 1), opened_now).case;
        for (what, created, at) in steps {
            let Some(input) = an_input(what, case.as_ref(), created, at) else {
                continue;
            };
            let decision = decide(&policy, case.as_ref(), &input, at);
            if let Some(next) = decision.case {
                case = Some(next);
            }
        }
        // And what a support agent or `recoup status` reads of it.
        if let Some(case) = &case {
            let _ = ending::announced(&policy, case, Timestamp::MAX);
            let _ = ending::due(&policy, case);
            let _ = policy.plan_for(case).next_retry(case);
        }
    }

    /// Expiring cards, at any instant.
    #[test]
    fn the_expiring_card_scan_never_panics(at in any_time(), month in 0u32..20, year in any::<u32>()) {
        let card = CardOnFile {
            id: "pm_1".to_owned(),
            brand: "visa".to_owned(),
            last4: "4242".to_owned(),
            exp_month: month,
            exp_year: year,
        };
        let _ = card.expired_by(at);
        let holder = expiring::CardHolder {
            card: Some(card),
            subscribed: true,
            timezone: "Pacific/Kiritimati".to_owned(),
            contact_window: None,
        };
        let _ = holder.due_in_scan(at);
        let _ = holder.into_window(&NudgePlan::default(), at);
    }
}
