//! A case told for people: what support reads in `recoup status` and on the status page.
//!
//! The case JSON holds every fact; this says them the way an agent on a call needs them — state and
//! amount, every attempt with its decline class and what the class means, every message, the
//! decision — with each time in the customer's zone and in UTC, and one plain sentence for what
//! happens next and why ("next retry Tue 2026-12-01 09:10 America/Chicago (15:10 UTC): …"). Nothing
//! here decides: the next retry's reason is the plan's own, asked of the policy again, and the card
//! budgets are the networks' rules counted over the card's history.

use std::fmt;

use jiff::Timestamp;

use crate::notify::templates::format_amount;
use crate::policy::budget::{self, Try};
use crate::policy::decline::{self, Signals};
use crate::policy::{
    Case, DeclineClass, Outcome, Policy, RecoveredBy, State, TimerKind, ending, timing,
};

/// A case, told; serialised for the status page's template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Told {
    /// `in_… · $49.00 · retrying`.
    pub title: String,
    /// Customer, subscription, time zone, segment, the decline: label and value.
    pub facts: Vec<(&'static str, String)>,
    pub attempts: Vec<String>,
    pub nudges: Vec<String>,
    pub decision: Option<String>,
    /// What happens next, and why, in one sentence.
    pub next: String,
    /// The timeline, oldest first: when, what, detail.
    pub timeline: Vec<(String, String, String)>,
}

/// Tells `case` as of `now`; `card` is the history of the case's card (for the budgets left).
pub fn tell(case: &Case, policy: &Policy, card: &[Try], now: Timestamp) -> Told {
    let zone = case.customer_timezone.as_str();
    let amount = format_amount(case.still_due(), &case.currency, "en");
    let mut facts = vec![("Customer", case.customer_id.clone())];
    if let Some(subscription) = &case.subscription_id {
        facts.push(("Subscription", subscription.clone()));
    }
    facts.push(("Amount", amount.clone()));
    facts.push(("State", case.state.as_str().to_owned()));
    facts.push(("Time zone", zone.to_owned()));
    facts.push((
        "Segment",
        case.segment
            .clone()
            .unwrap_or_else(|| "none (the policy's own plan)".to_owned()),
    ));
    if let Some(assigned) = &case.arm {
        let plan = if assigned.holdout {
            "the holdout: the plain baseline plan"
        } else {
            "its variant of the plan"
        };
        facts.push((
            "Experiment",
            format!(
                "{:?}, arm {:?} ({plan}, for every invoice of the customer)",
                assigned.experiment, assigned.arm
            ),
        ));
    }
    if let Some(decline) = &case.decline {
        facts.push((
            "Decline",
            format!(
                "{} ({}): {}",
                decline.code.as_deref().unwrap_or("no code"),
                decline.class.as_str(),
                advice(decline.class)
            ),
        ));
    }
    if let Some(card) = &case.card {
        facts.push(("Card", format!("{} {}", card.brand, card.fingerprint)));
    }
    if let Some(first) = case.link_opened_at {
        let times = match case.link_opens {
            0 | 1 => "once".to_owned(),
            n => format!("{n} times"),
        };
        facts.push((
            "Update link",
            format!("opened {times}, first {}", when(first, zone)),
        ));
    }
    if let Some(answer) = &case.answer {
        let wrote = answer
            .text
            .as_deref()
            .map(|t| format!(", writing {t:?}"))
            .unwrap_or_default();
        facts.push((
            "Answer",
            format!(
                "{:?}{wrote} ({}; {})",
                answer.answer.words(),
                when(answer.at, zone),
                answer.reaction.as_str().replace('_', " ")
            ),
        ));
    }
    for hold in &case.holds {
        facts.push((
            "On hold",
            format!(
                "{} (since {})",
                local_times(&hold.reason, zone),
                when(hold.at, zone)
            ),
        ));
    }
    let attempts = case
        .attempts
        .iter()
        .map(|a| {
            let outcome = match (a.outcome, &a.decline_code) {
                (Outcome::Failed, Some(code)) => {
                    let class = decline::classify(
                        &Signals {
                            code: None,
                            decline_code: Some(code),
                            advice_code: None,
                            network_advice_code: None,
                            network_decline_code: None,
                            brand: case.card.as_ref().map(|c| c.brand.as_str()),
                        },
                        &policy.networks,
                        a.at,
                    );
                    format!(
                        "declined: {code} ({}, {})",
                        class.class.as_str(),
                        class.because()
                    )
                }
                (Outcome::Failed, None) => "failed".to_owned(),
                (Outcome::Succeeded, _) => "paid".to_owned(),
                (Outcome::Error, _) => {
                    "no result (Stripe did not answer); made again with the same key".to_owned()
                }
            };
            format!("#{} {} — {outcome}", a.number, when(a.at, zone))
        })
        .collect();
    let nudges = case
        .nudges
        .iter()
        .map(|n| {
            format!(
                "{} — {} tier {} by {}",
                when(n.at, zone),
                n.kind.as_str(),
                n.tier,
                n.channel.as_str()
            )
        })
        .collect();
    let decision = case.decision.as_ref().map(|d| {
        let note = d
            .note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let told = format!(
            "{} on {}: {} — {}; {}. Outcome: {}{note}",
            d.action.as_str(),
            when(d.at, zone),
            d.how,
            d.rule,
            d.reason,
            d.outcome.as_str().replace('_', " ")
        );
        local_times(&told, zone)
    });
    let timeline = case
        .timeline
        .iter()
        .map(|e| {
            (
                when(e.at, zone),
                e.what.clone(),
                local_times(&e.detail, zone),
            )
        })
        .collect();
    Told {
        title: format!("{} · {amount} · {}", case.invoice_id, case.state.as_str()),
        facts,
        attempts,
        nudges,
        decision,
        next: local_times(&next(case, policy, card, now), zone),
        timeline,
    }
}

/// What a decline class means for the customer and for recoup.
fn advice(class: DeclineClass) -> &'static str {
    match class {
        DeclineClass::Soft => "time fixes it; retried on a schedule",
        DeclineClass::Ambiguous => "unexplained; a few spaced retries, then it is the customer's",
        DeclineClass::CardData => {
            "the card's details are wrong or out of date; the customer must update them"
        }
        DeclineClass::ActionRequired => "the customer must confirm the payment (3-D Secure)",
        DeclineClass::Hard => "the card will not work again; only a new card fixes it",
    }
}

/// `Tue 2026-12-01 09:10 America/Chicago (15:10 UTC)`; UTC alone for customers in UTC.
pub fn when(at: Timestamp, zone_name: &str) -> String {
    let utc = at.to_zoned(jiff::tz::TimeZone::UTC);
    if zone_name == "UTC" {
        return format!("{} UTC", utc.strftime("%a %Y-%m-%d %H:%M"));
    }
    let local = at.to_zoned(timing::zone(zone_name));
    format!(
        "{} {zone_name} ({} UTC)",
        local.strftime("%a %Y-%m-%d %H:%M"),
        utc.strftime("%H:%M")
    )
}

/// Words the core wrote, with each instant in them (RFC 3339 in UTC, as the store and the API keep
/// them) told like every other time here: [`when`], in the customer's zone, to the minute — when
/// read, not when stored, so the JSON stays machine-readable and old cases read the same.
fn local_times(words: &str, zone_name: &str) -> String {
    let mut told = String::with_capacity(words.len());
    let mut rest = words;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        let (before, from) = rest.split_at(start);
        told.push_str(before);
        // An instant's characters; what follows (`:`, `.`, `;`) may be the sentence's own, so the
        // longest prefix that reads as an instant is the instant.
        let word = from
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '+' | '-')))
            .unwrap_or(from.len());
        let instant = (1..=word)
            .rev()
            .find_map(|end| Some((from[..end].parse::<Timestamp>().ok()?, end)));
        let end = match instant {
            Some((at, end)) => {
                told.push_str(&when(at, zone_name));
                end
            }
            None => {
                told.push_str(&from[..word]);
                word
            }
        };
        rest = &from[end..];
    }
    told.push_str(rest);
    told
}

/// The plain sentence for what happens next, and why.
fn next(case: &Case, policy: &Policy, card: &[Try], now: Timestamp) -> String {
    let zone = case.customer_timezone.as_str();
    match case.state {
        State::Recovered => {
            let by = match case.recovered_by {
                Some(RecoveredBy::Retry) => " by recoup's retry",
                Some(RecoveredBy::Customer) => " by the customer",
                Some(RecoveredBy::Unknown) | None => "",
            };
            let paid = case
                .paid_at
                .map(|p| format!(" {}", when(p, zone)))
                .unwrap_or_default();
            return format!("Nothing: the invoice was paid{paid}{by}.");
        }
        State::Closed => {
            let why = case
                .closure
                .as_ref()
                .map_or("dunning is over".to_owned(), |c| c.reason.clone());
            return format!("Nothing: the case is closed ({why}).");
        }
        State::Paused => {
            return "Nothing until the customer is back: collection is paused; a new card is \
                    retried at once, and paying resumes collection."
                .to_owned();
        }
        State::Canceled => {
            return "Nothing: the subscription was canceled by the decision below.".to_owned();
        }
        State::OnHold => {
            let reasons: Vec<&str> = case.holds.iter().map(|h| h.reason.as_str()).collect();
            return format!(
                "Nothing while the case is on hold ({}); when the hold ends, the plan continues.",
                reasons.join("; ")
            );
        }
        State::Retrying | State::AwaitingCustomer => {}
    }
    let mut said = Vec::new();
    if let Some(at) = case.next_attempt_at {
        let plan = policy.plan_for(case);
        let why = plan
            .next_retry(case)
            .ok()
            .filter(|n| n.at == at)
            .map_or_else(
                || "moved by a network rule (see the timeline)".to_owned(),
                |n| n.why,
            );
        let mut sentence = format!("Next retry {}: {why}", when(at, zone));
        if let Some(c) = &case.card {
            let attempt = case.attempts.last().map_or(1, |a| a.number) + 1;
            let next = budget::Try::of_case(case, attempt, now);
            let left = budget::left_after(&policy.networks, &c.brand, card, &next);
            if !left.is_empty() {
                let left: Vec<String> = left
                    .into_iter()
                    .map(|(rule, n)| format!("{n} left of {rule}"))
                    .collect();
                sentence += &format!("; {}", left.join("; "));
            }
        }
        said.push(sentence + ".");
    } else if case.state == State::AwaitingCustomer {
        let needs = case
            .decline
            .as_ref()
            .map_or("the customer must confirm the payment", |d| advice(d.class));
        said.push(format!("No retry until the customer acts: {needs}."));
    } else {
        said.push("No retry is planned.".to_owned());
    }
    for timer in &case.timers {
        match timer.kind {
            TimerKind::Nudge { nudge, tier } => said.push(format!(
                "Next message: {} tier {tier}, {}.",
                nudge.as_str(),
                when(timer.at, zone)
            )),
            TimerKind::Decide => {
                let (end, rule, _) = ending::choose(policy, case);
                said.push(format!(
                    "If nothing changes: {} ({}) {}, by the rule {rule}.",
                    end.action().as_str(),
                    end.how(),
                    when(timer.at, zone)
                ));
            }
            TimerKind::Retry { .. } | TimerKind::Resume => {}
        }
    }
    said.join(" ")
}

impl fmt::Display for Told {
    /// The text `recoup status` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.title)?;
        for (label, value) in &self.facts {
            writeln!(f, "  {label:<13}{value}")?;
        }
        writeln!(f, "\nNext: {}", self.next)?;
        let list = |f: &mut fmt::Formatter<'_>, heading: &str, items: &[String]| {
            if items.is_empty() {
                return Ok(());
            }
            writeln!(f, "\n{heading}")?;
            items.iter().try_for_each(|item| writeln!(f, "  {item}"))
        };
        list(f, "Attempts", &self.attempts)?;
        list(f, "Messages", &self.nudges)?;
        if let Some(decision) = &self.decision {
            writeln!(f, "\nDecision\n  {decision}")?;
        }
        writeln!(f, "\nTimeline")?;
        for (at, what, detail) in &self.timeline {
            writeln!(f, "  {at}  {what}")?;
            if !detail.is_empty() {
                writeln!(f, "      {detail}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::wire::{Parsed, parse};
    use crate::policy::{
        Charge, ChargeResult, CustomerFacts, Declined, EndResult, Input, Support, SupportAct,
        decide,
    };

    /// 2026-11-02 15:00 UTC, a Monday.
    const NOW: i64 = 1_793_631_600;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    /// A case opened by the bundled failure for a customer in Chicago, its decline read as
    /// `decline_code` on a Visa card.
    fn declined(policy: &Policy, decline_code: &str) -> Case {
        let body = include_bytes!("../fixtures/events/invoice.payment_failed.json");
        let Ok(Parsed::Acted(mut event)) = parse(body) else {
            panic!("the fixture is an acted-on event")
        };
        event.created = NOW;
        let mut customer = CustomerFacts::default();
        customer
            .metadata
            .insert("timezone".into(), "America/Chicago".into());
        let case = decide(
            policy,
            None,
            &Input::Opening {
                event,
                customer: Box::new(customer),
                untold: false,
            },
            at(NOW),
        )
        .case
        .unwrap();
        let charge = Input::Charge(Box::new(Charge {
            attempt: 1,
            at: at(NOW),
            result: ChargeResult::Declined(Declined {
                code: Some("card_declined".into()),
                decline_code: Some(decline_code.into()),
                card: Some(crate::policy::Card {
                    fingerprint: "Xt5EWLLDS7FJjR1c".into(),
                    brand: "visa".into(),
                    funding: None,
                    expires_at: None,
                }),
                ..Declined::default()
            }),
            fees: Vec::new(),
        }));
        decide(policy, Some(case.clone()), &charge, at(NOW))
            .case
            .unwrap()
    }

    fn told(case: &Case, policy: &Policy) -> String {
        tell(case, policy, &[], at(NOW + 60)).to_string()
    }

    #[test]
    fn a_soft_decline_waits_for_payday_and_says_so() {
        let policy = Policy::shipped();
        let case = declined(&policy, "insufficient_funds");
        insta::assert_snapshot!(told(&case, &policy));
    }

    #[test]
    fn a_stolen_card_waits_for_the_customer() {
        let policy = Policy::shipped();
        let case = declined(&policy, "stolen_card");
        insta::assert_snapshot!(told(&case, &policy));
    }

    #[test]
    fn a_case_on_hold_says_who_holds_it() {
        let policy = Policy::shipped();
        let case = declined(&policy, "do_not_honor");
        let hold = Input::Support(Box::new(Support {
            by: "ana".into(),
            reason: "customer on the phone about the amount".into(),
            at: at(NOW + 600),
            act: SupportAct::Hold,
        }));
        let held = decide(&policy, Some(case.clone()), &hold, at(NOW + 600))
            .case
            .unwrap();
        insta::assert_snapshot!(told(&held, &policy));
    }

    #[test]
    fn an_opened_update_link_is_a_fact_of_the_case() {
        let policy = Policy::shipped();
        let mut case = declined(&policy, "expired_card");
        for minutes in [5, 8] {
            let opened = Input::LinkOpened {
                at: at(NOW + minutes * 60),
                outcome: crate::policy::LinkOutcome::Portal,
            };
            case = decide(&policy, Some(case.clone()), &opened, at(NOW))
                .case
                .unwrap();
        }
        let told = told(&case, &policy);
        assert!(
            told.contains("Update link  opened 2 times, first "),
            "{told}"
        );
        assert!(told.contains("update link opened"), "{told}");
    }

    #[test]
    fn the_customers_answer_is_a_fact_of_the_case() {
        let policy = Policy::shipped();
        let case = declined(&policy, "do_not_honor");
        let answered = Input::Answered {
            at: at(NOW + 300),
            answer: crate::policy::Answer::CantPayNow,
            text: Some("payday is the 15th".into()),
        };
        let case = decide(&policy, Some(case.clone()), &answered, at(NOW + 300))
            .case
            .unwrap();
        let told = told(&case, &policy);
        assert!(
            told.contains(
                "Answer       \"I can't pay right now\", writing \"payday is the 15th\" ("
            ) && told.contains("; retry on payday)"),
            "{told}"
        );
    }

    #[test]
    fn a_recovered_case_says_who_paid() {
        let policy = Policy::shipped();
        let case = declined(&policy, "insufficient_funds");
        let paid = Input::Charge(Box::new(Charge {
            attempt: 2,
            at: at(NOW + 14 * 86_400),
            result: ChargeResult::Paid,
            fees: Vec::new(),
        }));
        let recovered = decide(&policy, Some(case.clone()), &paid, at(NOW))
            .case
            .unwrap();
        insta::assert_snapshot!(told(&recovered, &policy));
    }

    #[test]
    fn a_decided_case_tells_the_decision_and_its_rule() {
        let policy = Policy::shipped();
        let mut case = declined(&policy, "stolen_card");
        // The end decision comes due; Stripe carries it out.
        while let Some(timer) = case.timers.iter().min_by_key(|t| t.at).copied() {
            let fired = decide(
                &policy,
                Some(case.clone()),
                &Input::Timer {
                    timer,
                    card: Vec::new(),
                },
                timer.at,
            );
            case = fired.case.unwrap();
            // The worker reports each nudge it sends: these went out.
            for action in fired.actions {
                if let crate::policy::Action::Nudge { kind, tier } = action {
                    let sent = Input::Nudged {
                        kind,
                        tier,
                        at: timer.at,
                        template: format!("en/{}-{tier}", kind.as_str()),
                        results: vec![crate::policy::NudgeResult {
                            channel: crate::policy::Channel::Email,
                            sent: true,
                            passing: false,
                            note: String::new(),
                        }],
                    };
                    case = decide(&policy, Some(case.clone()), &sent, timer.at)
                        .case
                        .unwrap();
                }
            }
            if timer.kind == TimerKind::Decide {
                let ended = Input::Ended {
                    at: timer.at,
                    result: EndResult::Done { already: false },
                };
                case = decide(&policy, Some(case.clone()), &ended, timer.at)
                    .case
                    .unwrap();
                break;
            }
        }
        assert_eq!(case.state, State::Canceled);
        insta::assert_snapshot!(told(&case, &policy));
    }

    #[test]
    fn the_timeline_tells_its_instants_in_the_customers_time() {
        let policy = Policy::shipped();
        let case = declined(&policy, "insufficient_funds");
        let told = tell(&case, &policy, &[], at(NOW + 60));
        let details: Vec<&str> = told.timeline.iter().map(|(_, _, d)| d.as_str()).collect();
        assert!(
            details
                .iter()
                .all(|d| !d.contains("Z:") && !d.contains(".457")),
            "{details:#?}"
        );
        assert!(
            details[1].contains("next retry Sun 2026-11-15 09:25 America/Chicago (15:25 UTC): "),
            "{details:#?}"
        );
        // Stored as it was written: machine-readable for the API, and old cases still render.
        assert!(
            case.timeline[1]
                .detail
                .contains("next retry 2026-11-15T15:25:46.457Z: ")
        );
    }

    #[test]
    fn an_instant_inside_words_is_told_in_the_zone_and_the_rest_kept() {
        assert_eq!(
            local_times(
                "retry at 2026-11-02T16:00:00Z. in_1QaZ4, 2026-11-05T15:25:46.457Z: (3 of 6) \
                 until 2026-12-02T15:00:00Z; 15:00 4900 usd",
                "America/Chicago"
            ),
            "retry at Mon 2026-11-02 10:00 America/Chicago (16:00 UTC). in_1QaZ4, \
             Thu 2026-11-05 09:25 America/Chicago (15:25 UTC): (3 of 6) \
             until Wed 2026-12-02 09:00 America/Chicago (15:00 UTC); 15:00 4900 usd"
        );
        assert_eq!(
            local_times("due 2026-11-02T16:00:00Z", "UTC"),
            "due Mon 2026-11-02 16:00 UTC"
        );
        assert_eq!(local_times("no time — here", "UTC"), "no time — here");
    }

    #[test]
    fn times_are_local_and_utc() {
        assert_eq!(
            when(at(NOW), "America/Chicago"),
            "Mon 2026-11-02 09:00 America/Chicago (15:00 UTC)"
        );
        assert_eq!(when(at(NOW), "UTC"), "Mon 2026-11-02 15:00 UTC");
    }
}
