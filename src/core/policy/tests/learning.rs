//! Learned timing: evidence moves a retry to the moment that paid, within the plan, the window,
//! the networks' waits and the policy's `within`; the same inputs always give the same plan.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;
use crate::policy::learning::{Evidence, Funding, Group, Moment, Reason, retime};

/// Evidence where attempts on `day` of the month paid `paid` times in `tries`, and every other
/// day of the month none of its tries, for insufficient funds in the US.
fn evidence_paying_on(day: i8, tries: u32, paid: u32) -> Evidence {
    evidence_paying_on_hours(day, tries, paid, 1)
}

/// The same, with the tries spread over `hours` hours of the day from 15:00 UTC on.
fn evidence_paying_on_hours(day: i8, tries: u32, paid: u32, hours: u32) -> Evidence {
    let mut evidence = Evidence::default();
    let mut case = declined(
        0,
        DeclineClass::Soft,
        "insufficient_funds",
        "America/New_York",
    );
    case.country = Some("US".to_owned());
    let start = Timestamp::from_second(NOW).unwrap();
    for n in 0..tries * 30 {
        let hour = i64::from(n / 30 % hours.max(1));
        let at = start + SignedDuration::from_hours(i64::from(n % 30) * 24 + 15 + hour);
        let local = at.to_zoned(timing::zone("America/New_York"));
        evidence.record(&case, at, local.day() == day && n / 30 < paid);
    }
    evidence
}

fn insufficient_funds_in_the_us() -> Case {
    let mut case = declined(
        0,
        DeclineClass::Soft,
        "insufficient_funds",
        "America/New_York",
    );
    case.country = Some("US".to_owned());
    case
}

fn learning_policy(evidence: Evidence) -> Policy {
    Policy {
        evidence: Arc::new(evidence),
        ..Policy::default()
    }
}

#[test]
fn evidence_that_a_day_pays_moves_the_retry_to_that_day_and_says_why() {
    let case = insufficient_funds_in_the_us();
    let failed = case
        .failed_at
        .unwrap()
        .to_zoned(timing::zone("America/New_York"));
    // A day some two weeks after the failure that is neither the 1st nor the 15th.
    let day = failed
        .date()
        .checked_add(jiff::Span::new().days(12))
        .unwrap();
    let day = if [1, 15].contains(&day.day()) {
        day.tomorrow().unwrap()
    } else {
        day
    };
    let policy = learning_policy(evidence_paying_on(day.day(), 40, 30));
    let plan = policy.plan_for(&case);
    let static_next = plan.next_retry(&case).unwrap();
    let (next, choice) = retime(
        &policy.learning,
        &policy.evidence,
        plan,
        &case,
        static_next.clone(),
    );
    let local = next.at.to_zoned(timing::zone("America/New_York"));
    assert_eq!(local.day(), day.day(), "{}", next.why);
    assert!((9..20).contains(&local.hour()), "{local}");
    assert_eq!(next.attempt, static_next.attempt);
    let choice = choice.expect("a learned choice");
    assert!(
        next.why.contains("chosen by what earlier attempts came to"),
        "{}",
        next.why
    );
    assert!(
        next.why
            .contains(&format!("day {} of the month", day.day())),
        "{}",
        next.why
    );
    assert!(next.why.contains("runner-up"), "{}", next.why);
    assert_eq!(choice.at, next.at);
}

/// Evidence of insufficient funds in the US over 30 days, tried at every second local hour of
/// `hours` in New York: attempts at `paying` paid half the time, the rest one time in twenty.
fn evidence_by_hour(hours: std::ops::Range<i8>, paying: i8) -> Evidence {
    let mut evidence = Evidence::default();
    let case = insufficient_funds_in_the_us();
    let zone = timing::zone("America/New_York");
    let first = Timestamp::from_second(NOW)
        .unwrap()
        .to_zoned(zone.clone())
        .date();
    for day in 0..30 {
        let date = first.checked_add(jiff::Span::new().days(day)).unwrap();
        for hour in hours.clone().step_by(2) {
            let at = date.at(hour, 0, 0, 0).to_zoned(zone.clone()).unwrap();
            for n in 0..20 {
                let paid = if hour == paying { n % 2 == 0 } else { n == 0 };
                evidence.record(&case, at.timestamp(), paid);
            }
        }
    }
    evidence
}

#[test]
fn evidence_that_money_is_there_before_the_window_moves_the_retry_there_and_says_so() {
    let case = insufficient_funds_in_the_us();
    let policy = learning_policy(evidence_by_hour(5..21, 7));
    let plan = policy.plan_for(&case);
    let static_next = plan.next_retry(&case).unwrap();
    let (next, _) = retime(&policy.learning, &policy.evidence, plan, &case, static_next);
    let local = next.at.to_zoned(timing::zone("America/New_York"));
    assert_eq!(local.hour(), 7, "{}", next.why);
    assert!(
        next.why
            .contains("America/New_York, outside the plan's 09:00–20:00, estimated"),
        "{}",
        next.why
    );

    // Learning kept to the plan's window does not go there, whatever the evidence.
    let window = plan.window;
    let mut kept = policy.clone();
    kept.learning.hours = window;
    let plan = kept.plan_for(&case);
    let static_next = plan.next_retry(&case).unwrap();
    let (next, _) = retime(&kept.learning, &kept.evidence, plan, &case, static_next);
    let local = next.at.to_zoned(timing::zone("America/New_York"));
    assert!((9..20).contains(&local.hour()), "{}", next.why);
}

#[test]
fn an_hour_outside_the_window_with_no_evidence_of_its_own_does_not_win_over_the_window() {
    // Every hour inside the window paid alike, and nothing was ever tried before 09:00. The
    // invoice failed at 22:00, so the first moments a day later are those of the next morning:
    // 03:00 or 05:00 would be as good a guess as 09:00 and come sooner, but they have shown nothing.
    let mut case = insufficient_funds_in_the_us();
    let zone = timing::zone("America/New_York");
    let late = Timestamp::from_second(NOW)
        .unwrap()
        .to_zoned(zone.clone())
        .date()
        .at(22, 0, 0, 0)
        .to_zoned(zone)
        .unwrap()
        .timestamp();
    case.failed_at = Some(late);
    case.attempts[0].at = late;
    let policy = learning_policy(evidence_by_hour(9..20, -1));
    let plan = policy.plan_for(&case);
    let static_next = plan.next_retry(&case).unwrap();
    let (next, choice) = retime(&policy.learning, &policy.evidence, plan, &case, static_next);
    assert!(choice.is_some(), "learning chose");
    let local = next.at.to_zoned(timing::zone("America/New_York"));
    assert!((9..20).contains(&local.hour()), "{}", next.why);
}

#[test]
fn thin_evidence_leaves_the_static_plan_and_so_does_learning_off() {
    let case = insufficient_funds_in_the_us();
    let thin = learning_policy(evidence_paying_on(20, 2, 2));
    assert!(thin.evidence.tries(Reason::InsufficientFunds) < thin.learning.min_evidence);
    let plan = thin.plan_for(&case);
    let static_next = plan.next_retry(&case).unwrap();
    let (next, choice) = retime(
        &thin.learning,
        &thin.evidence,
        plan,
        &case,
        static_next.clone(),
    );
    assert_eq!((next, choice), (static_next.clone(), None));

    let mut off = learning_policy(evidence_paying_on(20, 40, 30));
    off.learning.enabled = false;
    let (next, choice) = retime(
        &off.learning,
        &off.evidence,
        plan,
        &case,
        static_next.clone(),
    );
    assert_eq!((next, choice), (static_next, None));
}

#[test]
fn a_choice_made_is_kept_until_the_next_attempt() {
    let mut case = insufficient_funds_in_the_us();
    let policy = learning_policy(evidence_paying_on(20, 40, 30));
    let plan = policy.plan_for(&case);
    let static_next = plan.next_retry(&case).unwrap();
    let (first, choice) = retime(
        &policy.learning,
        &policy.evidence,
        plan,
        &case,
        static_next.clone(),
    );
    case.retry_choice = choice.clone();
    // Evidence changes (another day paid far more); the pending retry stays where it was.
    let mut more = (*policy.evidence).clone();
    more.merge(&evidence_paying_on(5, 100, 100));
    let (again, kept) = retime(&policy.learning, &more, plan, &case, static_next.clone());
    assert_eq!((&again, &kept), (&first, &choice));
    // A new attempt makes a new choice.
    let mut later = declined(
        1,
        DeclineClass::Soft,
        "insufficient_funds",
        "America/New_York",
    );
    later.country = Some("US".to_owned());
    later.retry_choice = choice;
    let next = plan.next_retry(&later).unwrap();
    let (_, fresh) = retime(&policy.learning, &more, plan, &later, next);
    assert_ne!(fresh.map(|c| c.attempt), Some(first.attempt));
}

#[test]
fn evidence_reads_back_what_it_wrote_and_names_a_bad_line() {
    let evidence = evidence_paying_on(25, 10, 4);
    let text = evidence.export();
    assert_eq!(Evidence::parse(&text), Ok(evidence));
    for (bad, why) in [
        ("insufficient_funds US day 25 10", "expected seven words"),
        ("broke US * day 25 10 4", "unknown reason"),
        (
            "soft US cash day 25 10 4",
            "the funding must be credit, debit, prepaid or *",
        ),
        ("soft usa day 25 10 4", "two capital letters"),
        ("soft US day 32 10 4", "unknown feature or value"),
        ("soft US hour 3 4 10", "more paid than tries"),
    ] {
        let error = Evidence::parse(&format!("# evidence\n{bad}\n")).unwrap_err();
        assert!(
            error.starts_with("line 2: ") && error.contains(why),
            "{error}"
        );
    }
}

#[test]
fn evidence_of_the_first_version_without_funding_reads_as_every_cards() {
    let evidence =
        Evidence::parse("insufficient_funds US day 25 10 4\nsoft * all 0 7 1\n").unwrap();
    let us = Group {
        reason: Reason::InsufficientFunds,
        country: Some("US".to_owned()),
        funding: None,
    };
    let counts = &evidence.groups[&us];
    assert_eq!((counts.tries[0], counts.paid[0]), (0, 0));
    assert!(
        evidence
            .export()
            .contains("insufficient_funds US * day 25 10 4\n")
    );
    assert_eq!(evidence.tries(Reason::Soft), 7);
}

/// A case of insufficient funds in the US on a card of `funding`.
fn on_card(funding: &str) -> Case {
    let mut case = insufficient_funds_in_the_us();
    case.card = Some(Card {
        fingerprint: format!("fp_{funding}"),
        brand: "visa".into(),
        funding: Some(funding.to_owned()),
        expires_at: None,
    });
    case
}

#[test]
fn cards_of_one_funding_learn_apart_within_their_country_and_say_so() {
    // In the US, debit cards paid on the 10th and credit cards on the 20th, 15:00 UTC.
    let mut evidence = Evidence::default();
    // A year of them, so that no weekday stands for the day of the month.
    let first = jiff::civil::date(2025, 4, 1);
    for (funding, paying) in [("debit", 10), ("credit", 20)] {
        let case = on_card(funding);
        for month in 0..12 {
            for day in 0..28 {
                let date = first
                    .checked_add(jiff::Span::new().months(month).days(day))
                    .unwrap();
                let at = date
                    .at(15, 0, 0, 0)
                    .to_zoned(jiff::tz::TimeZone::UTC)
                    .unwrap();
                for n in 0..5 {
                    evidence.record(&case, at.timestamp(), date.day() == paying && n < 4);
                }
            }
        }
    }
    // Each attempt counted in its country on its funding's cards, its country, its funding's
    // cards everywhere, and everywhere.
    let group = |country: Option<&str>, funding: Option<Funding>| Group {
        reason: Reason::InsufficientFunds,
        country: country.map(str::to_owned),
        funding,
    };
    assert_eq!(evidence.groups.len(), 6);
    assert_eq!(
        evidence.groups[&group(Some("US"), Some(Funding::Debit))].tries[0],
        1680
    );
    assert_eq!(
        evidence.groups[&group(None, Some(Funding::Credit))].tries[0],
        1680
    );
    assert_eq!(evidence.groups[&group(Some("US"), None)].tries[0], 3360);
    assert_eq!(evidence.tries(Reason::InsufficientFunds), 3360);
    assert_eq!(Evidence::parse(&evidence.export()), Ok(evidence.clone()));

    let policy = learning_policy(evidence);
    for (funding, paying) in [("debit", 10), ("credit", 20)] {
        let mut case = on_card(funding);
        case.failed_at = Some("2026-04-02T15:00:00Z".parse().unwrap());
        case.attempts[0].at = case.failed_at.unwrap();
        let plan = policy.plan_for(&case);
        let next = plan.next_retry(&case).unwrap();
        let (next, _) = retime(&policy.learning, &policy.evidence, plan, &case, next);
        let local = next.at.to_zoned(timing::zone("America/New_York"));
        assert_eq!(local.day(), paying, "{funding}: {}", next.why);
        assert!(
            next.why.contains(&format!(
                "from 1680 tries of insufficient_funds declines in US on {funding} cards"
            )),
            "{}",
            next.why
        );
    }
}

#[test]
fn the_days_before_a_customers_payday_are_counted_apart_and_read_back() {
    let mut case = insufficient_funds_in_the_us();
    // Their earlier invoices were paid on the 15th: money may come a day or three before.
    case.paydays = vec![15];
    let at = |day: i8| {
        jiff::civil::date(2027, 1, day)
            .at(12, 0, 0, 0)
            .to_zoned(timing::zone("America/New_York"))
            .unwrap()
            .timestamp()
    };
    let payday_slot = |day| Moment::of(&case, at(day)).slots[3];
    let words = |day| Moment::words(payday_slot(day));
    assert_eq!(words(15), "their payday");
    assert_eq!(words(14), "the day before their payday");
    assert_eq!(words(12), "3 days before their payday");
    assert_eq!(words(16), "the day after their payday");
    assert_eq!(words(18), "3 days after their payday");
    // Four days before the 15th is 27 days after the last one.
    assert_eq!(words(11), "a week or more after their payday");
    assert_ne!(payday_slot(12), payday_slot(11));

    let mut evidence = Evidence::default();
    for (day, paid) in [(14, true), (13, false), (12, true), (15, false)] {
        evidence.record(&case, at(day), paid);
    }
    let text = evidence.export();
    assert!(
        text.contains("insufficient_funds US * before 1 1 1\n"),
        "{text}"
    );
    assert!(
        text.contains("insufficient_funds US * before 3 1 1\n"),
        "{text}"
    );
    assert_eq!(Evidence::parse(&text), Ok(evidence));
    let error = Evidence::parse("soft US before 4 1 0\n").unwrap_err();
    assert!(error.contains("before 1–3"), "{error}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the evidence, a learned retry keeps the plan's attempt number, stays inside the
    /// hours learning may retry in, the policy's `within` and the card's expiry, waits at least `min_gap` and any Mastercard
    /// wait, and comes out the same twice — and the same for a case that keeps no story, whose
    /// choice skips the days that cannot win.
    #[test]
    fn whatever_the_evidence_a_learned_retry_keeps_every_bound(
        day in 1i8..=28,
        tries in 1u32..60,
        paid_share in 0u32..=100,
        retries in 0u32..4,
        advice in prop::option::of(prop::sample::select(vec!["24", "25", "26", "27"])),
        zone in prop::sample::select(vec!["America/New_York", "Asia/Tokyo", "Europe/Berlin", "UTC"]),
        expires_in_hours in prop::option::of(1i64..1_500),
        explore in any::<bool>(),
        hours in 1u32..10,
    ) {
        let mut case = declined(retries, DeclineClass::Soft, "insufficient_funds", zone);
        case.country = Some("US".to_owned());
        let expires = expires_in_hours.map(|hours| case.attempts.last().unwrap().at + SignedDuration::from_hours(hours));
        case.card = Some(Card { fingerprint: "fp_1".into(), brand: "visa".into(), funding: None, expires_at: expires });
        let opened = case.opened_at;
        if let Some(decline) = case.decline.as_mut() {
            decline.network_advice_code = advice.map(str::to_owned);
            decline.network_wait = advice.and_then(|code| {
                let signals = decline::Signals {
                    network_advice_code: Some(code),
                    brand: Some("mastercard"),
                    ..decline::Signals::default()
                };
                decline::classify(&signals, &crate::policy::Networks::built_in(), opened).not_before
            });
        }
        let mut policy = learning_policy(evidence_paying_on_hours(day, tries.max(12), tries * paid_share / 100, hours));
        policy.learning.explore = if explore { 100 } else { 0 };
        let plan = policy.plan_for(&case);
        let Ok(static_next) = plan.next_retry(&case) else {
            return Ok(());
        };
        let once = retime(&policy.learning, &policy.evidence, plan, &case, static_next.clone());
        let twice = retime(&policy.learning, &policy.evidence, plan, &case, static_next.clone());
        prop_assert_eq!(&once, &twice);
        let untold = Case { untold: true, ..case.clone() };
        let (untold_next, _) = retime(&policy.learning, &policy.evidence, plan, &untold, static_next.clone());
        prop_assert_eq!(untold_next.at, once.0.at);
        let next = once.0;
        let last = case.attempts.last().unwrap().at;
        prop_assert_eq!(next.attempt, static_next.attempt);
        let wait = case.decline.as_ref().and_then(|d| d.network_wait).unwrap_or(SignedDuration::ZERO);
        prop_assert!(next.at >= last + policy.learning.min_gap.min(static_next.at.duration_since(last)).max(wait));
        prop_assert!(next.at <= case.failed_at.unwrap() + plan.within);
        prop_assert!(expires.is_none_or(|expires| next.at < expires), "{} after the card expires", next.at);
        // The plan's window (09:00–20:00) widened to learning's hours (03:00–21:00).
        let local = next.at.to_zoned(timing::zone(zone));
        prop_assert!((3..21).contains(&local.hour()), "{}", local);
    }
}
